package schema

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Value is one typed scalar. Which field holds the value depends on Type:
//
//	signed integers (CHAR SHORT INT LONG)      I
//	BOOL (0 or 1) and unsigned integers         U
//	FLOAT, DOUBLE                               F (a FLOAT holds a float32-rounded number)
//	STRING (without NUL padding), IPV4/IPV6/MAC B
//
// Values are plain data, safe to copy; B must not be modified once the value is shared.
type Value struct {
	Type Type
	I    int64
	U    uint64
	F    float64
	B    []byte
}

// IntValue returns a value of a signed integer type.
func IntValue(t Type, v int64) Value { return Value{Type: t, I: v} }

// UintValue returns a value of BOOL or an unsigned integer type.
func UintValue(t Type, v uint64) Value { return Value{Type: t, U: v} }

// FloatValue returns a FLOAT or DOUBLE value; a FLOAT is rounded to float32.
func FloatValue(t Type, v float64) Value {
	if t == Float {
		v = float64(float32(v))
	}
	return Value{Type: t, F: v}
}

// BytesValue returns a STRING, IPV4, IPV6 or MAC value.
func BytesValue(t Type, b []byte) Value { return Value{Type: t, B: b} }

// Addr returns the IP address of an IPV4 or IPV6 value.
func (v Value) Addr() netip.Addr {
	switch v.Type {
	case IPv4:
		if len(v.B) == 4 {
			return netip.AddrFrom4([4]byte(v.B))
		}
	case IPv6:
		if len(v.B) == 16 {
			return netip.AddrFrom16([16]byte(v.B))
		}
	}
	return netip.Addr{}
}

// String formats the value for people: numbers in decimal, addresses in their usual notation,
// strings as they are.
func (v Value) String() string {
	switch {
	case v.Type.IsSigned():
		return strconv.FormatInt(v.I, 10)
	case v.Type == Bool:
		return strconv.FormatBool(v.U != 0)
	case v.Type.IsUnsigned():
		return strconv.FormatUint(v.U, 10)
	case v.Type == Float:
		return strconv.FormatFloat(v.F, 'g', -1, 32)
	case v.Type == Double:
		return strconv.FormatFloat(v.F, 'g', -1, 64)
	case v.Type == String:
		return string(v.B)
	case v.Type.IsIP():
		return v.Addr().String()
	case v.Type == MAC:
		return net.HardwareAddr(v.B).String()
	}
	return "<invalid>"
}

// Any returns the value as a Go value suited to JSON: int64, uint64, float64, bool or string.
func (v Value) Any() any {
	switch {
	case v.Type.IsSigned():
		return v.I
	case v.Type == Bool:
		return v.U != 0
	case v.Type.IsUnsigned():
		return v.U
	case v.Type.IsFloat():
		return v.F
	}
	return v.String()
}

// Compare compares two values of the same type in that type: -1, 0 or +1. FLOAT values compare as
// float32, so a literal 0.1 equals a stored 0.1f. NaN sorts before every number. Values of
// different types compare by type.
func Compare(a, b Value) int {
	if a.Type != b.Type {
		return cmpInt(int(a.Type), int(b.Type))
	}
	switch {
	case a.Type.IsSigned():
		return cmpInt(a.I, b.I)
	case a.Type.IsUnsigned():
		return cmpInt(a.U, b.U)
	case a.Type == Float:
		return cmpFloat(float64(float32(a.F)), float64(float32(b.F)))
	case a.Type == Double:
		return cmpFloat(a.F, b.F)
	default:
		return bytes.Compare(a.B, b.B)
	}
}

func cmpInt[T int | int64 | uint64](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func cmpFloat(a, b float64) int {
	an, bn := math.IsNaN(a), math.IsNaN(b)
	switch {
	case an && bn:
		return 0
	case an:
		return -1
	case bn:
		return 1
	}
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// ParseValue parses text as a value of the column's type. Errors name the column and the reason.
//
// Accepted forms: BOOL true/false/1/0; integers in decimal, 0x hex, 0o octal or 0b binary; CHAR
// also a single character; FLOAT/DOUBLE any Go float syntax; STRING at most Size bytes; IPV4
// dotted quad; IPV6 any RFC 4291 form or an IPv4 address (stored IPv4-mapped); MAC six octets
// separated by ':' or '-'.
func (c *Column) ParseValue(text string) (Value, error) {
	bad := func(format string, args ...any) (Value, error) {
		return Value{}, fmt.Errorf("%w: column %q (%s): %s", ErrValue, c.Name, c.TypeString(), fmt.Sprintf(format, args...))
	}
	s := strings.TrimSpace(text)
	switch t := c.Type; {
	case t == Bool:
		switch strings.ToLower(s) {
		case "true", "1":
			return UintValue(Bool, 1), nil
		case "false", "0":
			return UintValue(Bool, 0), nil
		}
		return bad("%q is not true, false, 1 or 0", text)
	case t == Char && len(s) == 1 && (s[0] < '0' || s[0] > '9') && s[0] != '-':
		return IntValue(Char, int64(int8(s[0]))), nil
	case t.IsSigned():
		v, err := strconv.ParseInt(s, 0, 8*c.Size)
		if err != nil {
			return bad("%s", numError(s, err))
		}
		return IntValue(t, v), nil
	case t.IsUnsigned():
		v, err := strconv.ParseUint(s, 0, 8*c.Size)
		if err != nil {
			return bad("%s", numError(s, err))
		}
		return UintValue(t, v), nil
	case t.IsFloat():
		v, err := strconv.ParseFloat(s, 8*c.Size)
		if err != nil {
			return bad("%s", numError(s, err))
		}
		return FloatValue(t, v), nil
	case t == String:
		if len(text) > c.Size {
			return bad("string of %d bytes is longer than %d", len(text), c.Size)
		}
		if strings.IndexByte(text, 0) >= 0 {
			return bad("string contains a NUL byte")
		}
		return BytesValue(String, []byte(text)), nil
	case t == IPv4:
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Unmap().Is4() {
			return bad("%q is not an IPv4 address", text)
		}
		b := a.Unmap().As4()
		return BytesValue(IPv4, b[:]), nil
	case t == IPv6:
		a, err := netip.ParseAddr(s)
		if err != nil {
			return bad("%q is not an IP address", text)
		}
		b := a.As16()
		return BytesValue(IPv6, b[:]), nil
	case t == MAC:
		hw, err := net.ParseMAC(s)
		if err != nil || len(hw) != 6 {
			return bad("%q is not a 6-byte MAC address", text)
		}
		return BytesValue(MAC, hw), nil
	}
	return bad("column has no valid type")
}

func numError(s string, err error) string {
	if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
		return fmt.Sprintf("%q is out of range", s)
	}
	return fmt.Sprintf("%q is not a number of this type", s)
}

// Get reads the column's value from a record. The returned B aliases rec (trimmed of NUL padding
// for STRING); copy it to keep it past the record's lifetime.
func (c *Column) Get(rec []byte) Value {
	f := rec[c.Offset : c.Offset+c.Size]
	switch c.Type {
	case Bool, UChar:
		return UintValue(c.Type, uint64(f[0]))
	case Char:
		return IntValue(Char, int64(int8(f[0])))
	case Short:
		return IntValue(Short, int64(int16(binary.LittleEndian.Uint16(f))))
	case UShort:
		return UintValue(UShort, uint64(binary.LittleEndian.Uint16(f)))
	case Int:
		return IntValue(Int, int64(int32(binary.LittleEndian.Uint32(f))))
	case UInt:
		return UintValue(UInt, uint64(binary.LittleEndian.Uint32(f)))
	case Long:
		return IntValue(Long, int64(binary.LittleEndian.Uint64(f)))
	case ULong:
		return UintValue(ULong, binary.LittleEndian.Uint64(f))
	case Float:
		return Value{Type: Float, F: float64(math.Float32frombits(binary.LittleEndian.Uint32(f)))}
	case Double:
		return Value{Type: Double, F: math.Float64frombits(binary.LittleEndian.Uint64(f))}
	case String:
		if i := bytes.IndexByte(f, 0); i >= 0 {
			f = f[:i]
		}
		return BytesValue(String, f)
	default:
		return BytesValue(c.Type, f)
	}
}

// Put stores v in the column of rec. v must have the column's type and fit it; a STRING may end
// in NUL padding but hold no NUL before its last other byte.
func (c *Column) Put(rec []byte, v Value) error {
	if v.Type != c.Type {
		return fmt.Errorf("%w: column %q (%s): value of type %s", ErrValue, c.Name, c.TypeString(), v.Type)
	}
	f := rec[c.Offset : c.Offset+c.Size]
	switch c.Type {
	case Bool, UChar:
		if v.U > math.MaxUint8 || (c.Type == Bool && v.U > 1) {
			return fmt.Errorf("%w: column %q (%s): %d out of range", ErrValue, c.Name, c.TypeString(), v.U)
		}
		f[0] = byte(v.U)
	case Char, Short, Int, Long:
		bits := 8 * c.Size
		if bits < 64 && (v.I < -(1<<(bits-1)) || v.I >= 1<<(bits-1)) {
			return fmt.Errorf("%w: column %q (%s): %d out of range", ErrValue, c.Name, c.TypeString(), v.I)
		}
		putUint(f, uint64(v.I))
	case UShort, UInt, ULong:
		if bits := 8 * c.Size; bits < 64 && v.U >= 1<<bits {
			return fmt.Errorf("%w: column %q (%s): %d out of range", ErrValue, c.Name, c.TypeString(), v.U)
		}
		putUint(f, v.U)
	case Float:
		binary.LittleEndian.PutUint32(f, math.Float32bits(float32(v.F)))
	case Double:
		binary.LittleEndian.PutUint64(f, math.Float64bits(v.F))
	case String:
		if len(v.B) > c.Size {
			return fmt.Errorf("%w: column %q (%s): string of %d bytes is too long", ErrValue, c.Name, c.TypeString(), len(v.B))
		}
		// NUL pads the field, so a NUL before other bytes would cut the string short when read
		// back; trailing NULs are padding already.
		if i := bytes.IndexByte(v.B, 0); i >= 0 && len(bytes.TrimRight(v.B[i:], "\x00")) > 0 {
			return fmt.Errorf("%w: column %q (%s): string contains a NUL byte at %d, before its end", ErrValue, c.Name, c.TypeString(), i)
		}
		n := copy(f, v.B)
		clear(f[n:])
	default:
		if len(v.B) != c.Size {
			return fmt.Errorf("%w: column %q (%s): %d bytes, want %d", ErrValue, c.Name, c.TypeString(), len(v.B), c.Size)
		}
		copy(f, v.B)
	}
	return nil
}

func putUint(f []byte, u uint64) {
	for i := range f {
		f[i] = byte(u >> (8 * i))
	}
}

// AppendKey appends the column's value in rec as order-preserving key bytes: comparing keys with
// bytes.Compare orders them as Compare orders the values (integers big-endian with the sign bit
// flipped, floats by the IEEE total-order trick, bytes as stored). Keys have the column's size.
// Two float exceptions follow from the total order: -0 and +0 have distinct adjacent keys though
// they compare equal, and a NaN's key sorts by its sign bit (below -Inf or above +Inf) where
// Compare puts every NaN first.
func (c *Column) AppendKey(dst, rec []byte) []byte {
	f := rec[c.Offset : c.Offset+c.Size]
	switch c.Type {
	case Char, Short, Int, Long:
		var u uint64
		for i := range f {
			u |= uint64(f[i]) << (8 * i)
		}
		return appendBigEndian(dst, u^(1<<(8*c.Size-1)), c.Size)
	case Bool, UChar, UShort, UInt, ULong:
		var u uint64
		for i := range f {
			u |= uint64(f[i]) << (8 * i)
		}
		return appendBigEndian(dst, u, c.Size)
	case Float:
		return appendBigEndian(dst, floatKey32(binary.LittleEndian.Uint32(f)), 4)
	case Double:
		return appendBigEndian(dst, floatKey64(binary.LittleEndian.Uint64(f)), 8)
	default:
		return append(dst, f...)
	}
}

// AppendValueKey appends v's order-preserving key bytes, equal to AppendKey of a record holding v.
func (c *Column) AppendValueKey(dst []byte, v Value) []byte {
	switch c.Type {
	case Char, Short, Int, Long:
		return appendBigEndian(dst, uint64(v.I)^(1<<(8*c.Size-1)), c.Size)
	case Bool, UChar, UShort, UInt, ULong:
		return appendBigEndian(dst, v.U, c.Size)
	case Float:
		return appendBigEndian(dst, floatKey32(math.Float32bits(float32(v.F))), 4)
	case Double:
		return appendBigEndian(dst, floatKey64(math.Float64bits(v.F)), 8)
	default:
		n := len(dst)
		dst = append(dst, v.B...)
		for len(dst)-n < c.Size {
			dst = append(dst, 0)
		}
		return dst[:n+c.Size]
	}
}

func floatKey32(b uint32) uint64 {
	if b&(1<<31) != 0 {
		return uint64(^b)
	}
	return uint64(b | 1<<31)
}

func floatKey64(b uint64) uint64 {
	if b&(1<<63) != 0 {
		return ^b
	}
	return b | 1<<63
}

func appendBigEndian(dst []byte, u uint64, size int) []byte {
	for i := size - 1; i >= 0; i-- {
		dst = append(dst, byte(u>>(8*i)))
	}
	return dst
}

// Encode builds a record from Go values, one per column in order. The timestamp may be left out
// (values for every column but the timestamp), in which case it is 0. Accepted Go values: Value,
// bool, any integer or float kind, string (STRING columns take it as is; other columns parse it),
// []byte, netip.Addr, net.IP, net.HardwareAddr, and time.Time for the timestamp.
func (s *Schema) Encode(values ...any) ([]byte, error) {
	rec := make([]byte, s.RecordSize)
	cols := s.Columns
	if len(values) == len(cols)-1 {
		cols = cols[1:]
	} else if len(values) != len(cols) {
		return nil, fmt.Errorf("%w: %d values for %d columns (%d without the timestamp)", ErrValue, len(values), len(cols), len(cols)-1)
	}
	for i := range cols {
		c := &cols[i]
		v, err := c.convert(values[i])
		if err != nil {
			return nil, err
		}
		if err := c.Put(rec, v); err != nil {
			return nil, err
		}
	}
	return rec, nil
}

// EncodeStrings builds a record from string forms of the values, parsed with ParseValue; like
// Encode, the timestamp may be left out.
func (s *Schema) EncodeStrings(values []string) ([]byte, error) {
	rec := make([]byte, s.RecordSize)
	cols := s.Columns
	if len(values) == len(cols)-1 {
		cols = cols[1:]
	} else if len(values) != len(cols) {
		return nil, fmt.Errorf("%w: %d values for %d columns (%d without the timestamp)", ErrValue, len(values), len(cols), len(cols)-1)
	}
	for i := range cols {
		v, err := cols[i].ParseValue(values[i])
		if err != nil {
			return nil, err
		}
		if err := cols[i].Put(rec, v); err != nil {
			return nil, err
		}
	}
	return rec, nil
}

// Decode returns every column's value of rec.
func (s *Schema) Decode(rec []byte) ([]Value, error) {
	if len(rec) != s.RecordSize {
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrRecordLen, len(rec), s.RecordSize)
	}
	out := make([]Value, len(s.Columns))
	for i := range s.Columns {
		out[i] = s.Columns[i].Get(rec)
	}
	return out, nil
}

func (c *Column) convert(x any) (Value, error) {
	wrong := func() (Value, error) {
		return Value{}, fmt.Errorf("%w: column %q (%s): cannot store a %T", ErrValue, c.Name, c.TypeString(), x)
	}
	switch v := x.(type) {
	case Value:
		return v, nil
	case string:
		return c.ParseValue(v)
	case bool:
		if c.Type != Bool {
			return wrong()
		}
		if v {
			return UintValue(Bool, 1), nil
		}
		return UintValue(Bool, 0), nil
	case time.Time:
		if c.Type != ULong && c.Type != Long {
			return wrong()
		}
		return c.fromInt(v.UnixNano())
	case []byte:
		if !c.Type.IsBytes() {
			return wrong()
		}
		return BytesValue(c.Type, v), nil
	case netip.Addr:
		switch {
		case c.Type == IPv4 && v.Unmap().Is4():
			b := v.Unmap().As4()
			return BytesValue(IPv4, b[:]), nil
		case c.Type == IPv6 && v.IsValid():
			b := v.As16()
			return BytesValue(IPv6, b[:]), nil
		}
		return wrong()
	case net.IP:
		a, ok := netip.AddrFromSlice(v)
		if !ok {
			return wrong()
		}
		return c.convert(a)
	case net.HardwareAddr:
		if c.Type != MAC {
			return wrong()
		}
		return BytesValue(MAC, v), nil
	case float32:
		return c.fromFloat(float64(v))
	case float64:
		return c.fromFloat(v)
	case int:
		return c.fromInt(int64(v))
	case int8:
		return c.fromInt(int64(v))
	case int16:
		return c.fromInt(int64(v))
	case int32:
		return c.fromInt(int64(v))
	case int64:
		return c.fromInt(v)
	case uint:
		return c.fromUint(uint64(v))
	case uint8:
		return c.fromUint(uint64(v))
	case uint16:
		return c.fromUint(uint64(v))
	case uint32:
		return c.fromUint(uint64(v))
	case uint64:
		return c.fromUint(v)
	}
	return wrong()
}

func (c *Column) fromInt(v int64) (Value, error) {
	switch {
	case c.Type.IsSigned():
		return IntValue(c.Type, v), nil
	case c.Type.IsUnsigned():
		if v < 0 {
			return Value{}, fmt.Errorf("%w: column %q (%s): %d is out of range", ErrValue, c.Name, c.TypeString(), v)
		}
		return UintValue(c.Type, uint64(v)), nil
	case c.Type.IsFloat():
		return FloatValue(c.Type, float64(v)), nil
	}
	return Value{}, fmt.Errorf("%w: column %q (%s): cannot store an integer", ErrValue, c.Name, c.TypeString())
}

func (c *Column) fromUint(v uint64) (Value, error) {
	if c.Type.IsSigned() {
		if v > math.MaxInt64 {
			return Value{}, fmt.Errorf("%w: column %q (%s): %d is out of range", ErrValue, c.Name, c.TypeString(), v)
		}
		return IntValue(c.Type, int64(v)), nil
	}
	if c.Type.IsUnsigned() {
		return UintValue(c.Type, v), nil
	}
	if c.Type.IsFloat() {
		return FloatValue(c.Type, float64(v)), nil
	}
	return Value{}, fmt.Errorf("%w: column %q (%s): cannot store an integer", ErrValue, c.Name, c.TypeString())
}

func (c *Column) fromFloat(v float64) (Value, error) {
	if !c.Type.IsFloat() {
		return Value{}, fmt.Errorf("%w: column %q (%s): cannot store a float", ErrValue, c.Name, c.TypeString())
	}
	if c.Type == Float && !math.IsInf(v, 0) && !math.IsNaN(v) && math.Abs(v) > math.MaxFloat32 {
		return Value{}, fmt.Errorf("%w: column %q (%s): %g is out of range", ErrValue, c.Name, c.TypeString(), v)
	}
	return FloatValue(c.Type, v), nil
}
