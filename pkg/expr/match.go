package expr

import (
	"bytes"
	"encoding/binary"
	"math"
	"net/netip"
	"slices"

	"github.com/confluo-go/confluo/pkg/schema"
)

// A matcher evaluates one node of a typed tree on a record whose length has been checked.
//
// Columns of up to 8 bytes (BOOL, integers, FLOAT, DOUBLE, IPV4, MAC) are compared as "ordered
// keys": the field is loaded as a uint64 whose unsigned order is the column's order (signed
// integers with the sign bit flipped after sign extension, IPV4 and MAC big-endian, floats by the
// IEEE total-order trick), and every comparison becomes a range test lo <= key <= hi, computed as
// key-lo <= hi-lo with one unsigned comparison, optionally negated (for !=). Float ranges are
// chosen to keep IEEE semantics (see floatOpRange). IPV6 compares as two big-endian uint64;
// STRING with bytes.Compare on the NUL-padded field.
type matcher interface {
	match(rec []byte) bool
}

// compileMatcher builds the matcher of a typed tree.
func compileMatcher(e Expr) matcher {
	switch e := e.(type) {
	case *And:
		ms := make([]matcher, 0, len(e.Terms))
		for _, t := range e.Terms {
			m := compileMatcher(t)
			if c, ok := m.(constMatcher); ok {
				if !c {
					return constMatcher(false)
				}
				continue
			}
			ms = append(ms, m)
		}
		ms, empty := mergeRanges(ms)
		if empty {
			return constMatcher(false)
		}
		switch len(ms) {
		case 0:
			return constMatcher(true)
		case 1:
			return ms[0]
		case 2:
			return &and2{ms[0], ms[1]}
		}
		return &andN{ms}
	case *Or:
		ms := make([]matcher, 0, len(e.Terms))
		for _, t := range mergeEqualities(e.Terms) {
			m := compileMatcher(t)
			if c, ok := m.(constMatcher); ok {
				if c {
					return constMatcher(true)
				}
				continue
			}
			ms = append(ms, m)
		}
		switch len(ms) {
		case 0:
			return constMatcher(false)
		case 1:
			return ms[0]
		case 2:
			return &or2{ms[0], ms[1]}
		}
		return &orN{ms}
	case *Not:
		m := compileMatcher(e.X)
		switch m := m.(type) {
		case constMatcher:
			return !m
		case negatable:
			return m.negate()
		}
		return &notMatcher{m}
	case *True:
		return constMatcher(true)
	case *Compare:
		return compareMatcher(e)
	case *MaskCompare:
		k, _ := loadKindOf(e.Column)
		r, empty := opRange(e.Op, e.Value.U)
		if empty {
			return constMatcher(false)
		}
		return &maskMatcher{kind: k, off: e.Column.Offset, mask: e.Mask, r: r}
	case *In:
		return inMatcher(e)
	case *InPrefix:
		return prefixMatcher(e)
	}
	return constMatcher(false)
}

type negatable interface {
	negate() matcher
}

// ranged is implemented by the range matchers of columns of up to 8 bytes.
type ranged interface {
	rangeOf() (loadKind, int, keyRange)
}

// mergeRanges intersects the ranges of And terms that test the same field
// (len >= 100 && len < 1400 becomes one test). empty reports that the intersection is empty.
func mergeRanges(ms []matcher) (out []matcher, empty bool) {
	type field struct {
		kind loadKind
		off  int
	}
	at := map[field]int{} // field -> index in out of its merged range
	for _, m := range ms {
		rm, ok := m.(ranged)
		if !ok {
			out = append(out, m)
			continue
		}
		k, off, r := rm.rangeOf()
		if r.neg {
			out = append(out, m)
			continue
		}
		i, seen := at[field{k, off}]
		if !seen {
			at[field{k, off}] = len(out)
			out = append(out, m)
			continue
		}
		_, _, q := out[i].(ranged).rangeOf()
		lo, hi := max(q.lo, r.lo), min(q.lo+q.span, r.lo+r.span)
		if lo > hi {
			return nil, true
		}
		out[i] = rangeMatcher(k, off, keyRange{lo: lo, span: hi - lo})
	}
	return out, false
}

// mergeEqualities combines the Or terms that test equality on the same column of up to 8 bytes
// (port == 80 || port == 443) into one In, keeping the other terms in order. Columns are told
// apart by offset: the terms all come from one schema.
func mergeEqualities(terms []Expr) []Expr {
	byColumn := map[int][]schema.Value{} // column offset -> values
	first := map[int]int{}               // column offset -> index of its first term
	count := map[int]int{}               // column offset -> number of its terms
	for i, t := range terms {
		var c *schema.Column
		var vals []schema.Value
		switch t := t.(type) {
		case *Compare:
			if t.Op == OpEq {
				c, vals = t.Column, []schema.Value{t.Value}
			}
		case *In:
			c, vals = t.Column, t.Values
		}
		if c == nil {
			continue
		}
		if _, ok := loadKindOf(c); !ok {
			continue
		}
		if _, ok := first[c.Offset]; !ok {
			first[c.Offset] = i
		}
		byColumn[c.Offset] = append(byColumn[c.Offset], vals...)
		count[c.Offset]++
	}
	merged := false
	for _, n := range count {
		merged = merged || n > 1
	}
	if !merged {
		return terms
	}
	out := make([]Expr, 0, len(terms))
	for i, t := range terms {
		var c *schema.Column
		switch t := t.(type) {
		case *Compare:
			if t.Op == OpEq {
				c = t.Column
			}
		case *In:
			c = t.Column
		}
		if c == nil || count[c.Offset] < 2 {
			out = append(out, t)
			continue
		}
		if first[c.Offset] == i {
			out = append(out, &In{Column: c, Values: byColumn[c.Offset]})
		}
	}
	return out
}

type constMatcher bool

func (m constMatcher) match([]byte) bool { return bool(m) }

type and2 struct{ x, y matcher }

func (m *and2) match(rec []byte) bool { return m.x.match(rec) && m.y.match(rec) }

type or2 struct{ x, y matcher }

func (m *or2) match(rec []byte) bool { return m.x.match(rec) || m.y.match(rec) }

type andN struct{ terms []matcher }

func (m *andN) match(rec []byte) bool {
	for _, t := range m.terms {
		if !t.match(rec) {
			return false
		}
	}
	return true
}

type orN struct{ terms []matcher }

func (m *orN) match(rec []byte) bool {
	for _, t := range m.terms {
		if t.match(rec) {
			return true
		}
	}
	return false
}

// maskMatcher tests (field & mask) against a key range, for unsigned integer fields.
type maskMatcher struct {
	kind loadKind
	off  int
	mask uint64
	r    keyRange
}

func (m *maskMatcher) match(rec []byte) bool { return m.r.test(m.kind.load(rec, m.off) & m.mask) }

func (m *maskMatcher) negate() matcher {
	n := *m
	n.r = n.r.negated()
	return &n
}

type notMatcher struct{ x matcher }

func (m *notMatcher) match(rec []byte) bool { return !m.x.match(rec) }

// loadKind says how to load a column's ordered key.
type loadKind uint8

const (
	loadU8 loadKind = iota
	loadU16
	loadU32
	loadU64
	loadI8
	loadI16
	loadI32
	loadI64
	loadBE32 // IPV4
	loadBE48 // MAC
	loadF32  // FLOAT, IEEE total-order key
	loadF64  // DOUBLE, IEEE total-order key
)

const signFlip = 1 << 63

func loadKindOf(c *schema.Column) (loadKind, bool) {
	switch c.Type {
	case schema.Bool, schema.UChar:
		return loadU8, true
	case schema.UShort:
		return loadU16, true
	case schema.UInt:
		return loadU32, true
	case schema.ULong:
		return loadU64, true
	case schema.Char:
		return loadI8, true
	case schema.Short:
		return loadI16, true
	case schema.Int:
		return loadI32, true
	case schema.Long:
		return loadI64, true
	case schema.IPv4:
		return loadBE32, true
	case schema.MAC:
		return loadBE48, true
	case schema.Float:
		return loadF32, true
	case schema.Double:
		return loadF64, true
	}
	return 0, false
}

// load reads the ordered key of a field (slow path, for sets and tests).
func (k loadKind) load(rec []byte, off int) uint64 {
	switch k {
	case loadU8:
		return uint64(rec[off])
	case loadU16:
		return uint64(binary.LittleEndian.Uint16(rec[off:]))
	case loadU32:
		return uint64(binary.LittleEndian.Uint32(rec[off:]))
	case loadU64:
		return binary.LittleEndian.Uint64(rec[off:])
	case loadI8:
		return uint64(int64(int8(rec[off]))) ^ signFlip
	case loadI16:
		return uint64(int64(int16(binary.LittleEndian.Uint16(rec[off:])))) ^ signFlip
	case loadI32:
		return uint64(int64(int32(binary.LittleEndian.Uint32(rec[off:])))) ^ signFlip
	case loadI64:
		return binary.LittleEndian.Uint64(rec[off:]) ^ signFlip
	case loadBE32:
		return uint64(binary.BigEndian.Uint32(rec[off:]))
	case loadBE48:
		b := rec[off : off+6]
		return uint64(b[0])<<40 | uint64(b[1])<<32 | uint64(b[2])<<24 | uint64(b[3])<<16 | uint64(b[4])<<8 | uint64(b[5])
	case loadF32:
		return floatKey32(binary.LittleEndian.Uint32(rec[off:]))
	case loadF64:
		return floatKey64(binary.LittleEndian.Uint64(rec[off:]))
	}
	return 0
}

// floatKey32 maps FLOAT bits to a key whose unsigned order is the IEEE total order: -NaN < -Inf <
// ... < -0 < +0 < ... < +Inf < +NaN (negative numbers have every bit flipped, positive ones the
// sign bit). It is branch-free.
func floatKey32(b uint32) uint64 { return uint64(b ^ (uint32(int32(b)>>31) | 1<<31)) }

// floatKey64 is floatKey32 for DOUBLE.
func floatKey64(b uint64) uint64 { return b ^ (uint64(int64(b)>>63) | 1<<63) }

// floatValueKey returns the key of a float of the column's type.
func floatValueKey(t schema.Type, f float64) uint64 {
	if t == schema.Float {
		return floatKey32(math.Float32bits(float32(f)))
	}
	return floatKey64(math.Float64bits(f))
}

// floatOpRange returns the key range of "x op v" for a FLOAT or DOUBLE field under IEEE rules:
// the ranges of <, <=, ==, >=, > lie within [-Inf, +Inf], so no NaN is in them, and != is the
// complement of ==, so every NaN is in it; -0 and +0 are equal. constant is set when the result
// does not depend on the record.
func floatOpRange(t schema.Type, op Op, v float64) (r keyRange, constant matcher) {
	if math.IsNaN(v) {
		return r, constMatcher(op == OpNe)
	}
	minK, maxK := floatValueKey(t, math.Inf(-1)), floatValueKey(t, math.Inf(1))
	eqLo, eqHi := floatValueKey(t, v), floatValueKey(t, v)
	if v == 0 {
		eqLo, eqHi = floatValueKey(t, math.Copysign(0, -1)), floatValueKey(t, 0)
	}
	between := func(lo, hi uint64) (keyRange, matcher) { return keyRange{lo: lo, span: hi - lo}, nil }
	switch op {
	case OpEq:
		return between(eqLo, eqHi)
	case OpNe:
		r, _ := between(eqLo, eqHi)
		r.neg = true
		return r, nil
	case OpLt:
		if eqLo == minK {
			return r, constMatcher(false)
		}
		return between(minK, eqLo-1)
	case OpLe:
		return between(minK, eqHi)
	case OpGt:
		if eqHi == maxK {
			return r, constMatcher(false)
		}
		return between(eqHi+1, maxK)
	case OpGe:
		return between(eqLo, maxK)
	}
	return r, constMatcher(false)
}

// valueKey returns the ordered key of a value of an integer-like column.
func valueKey(v schema.Value) uint64 {
	switch {
	case v.Type.IsSigned():
		return uint64(v.I) ^ signFlip
	case v.Type.IsUnsigned():
		return v.U
	case v.Type == schema.IPv4 && len(v.B) == 4:
		return uint64(binary.BigEndian.Uint32(v.B))
	case v.Type == schema.MAC && len(v.B) == 6:
		b := v.B
		return uint64(b[0])<<40 | uint64(b[1])<<32 | uint64(b[2])<<24 | uint64(b[3])<<16 | uint64(b[4])<<8 | uint64(b[5])
	}
	return 0
}

// keyRange is the inclusive range [lo, lo+span] of ordered keys, or its complement if neg.
type keyRange struct {
	lo, span uint64
	neg      bool
}

// opRange returns the key range of "key op v", or ok=false if it is empty (or, negated, full).
func opRange(op Op, v uint64) (r keyRange, empty bool) {
	switch op {
	case OpEq:
		return keyRange{lo: v}, false
	case OpNe:
		return keyRange{lo: v, neg: true}, false
	case OpLt:
		if v == 0 {
			return r, true
		}
		return keyRange{span: v - 1}, false
	case OpLe:
		return keyRange{span: v}, false
	case OpGt:
		if v == math.MaxUint64 {
			return r, true
		}
		return keyRange{lo: v + 1, span: math.MaxUint64 - v - 1}, false
	case OpGe:
		return keyRange{lo: v, span: math.MaxUint64 - v}, false
	}
	return r, true
}

func compareMatcher(e *Compare) matcher {
	c := e.Column
	off := c.Offset
	if c.Type.IsFloat() {
		r, constant := floatOpRange(c.Type, e.Op, e.Value.F)
		if constant != nil {
			return constant
		}
		k, _ := loadKindOf(c)
		return rangeMatcher(k, off, r)
	}
	if k, ok := loadKindOf(c); ok {
		r, empty := opRange(e.Op, valueKey(e.Value))
		if empty {
			return constMatcher(false)
		}
		return rangeMatcher(k, off, r)
	}
	switch c.Type {
	case schema.IPv6:
		var b [16]byte
		copy(b[:], e.Value.B)
		hi, lo := binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
		m := &ipv6Matcher{off: off}
		switch e.Op {
		case OpEq:
			m.lo, m.hi = [2]uint64{hi, lo}, [2]uint64{hi, lo}
		case OpNe:
			m.lo, m.hi, m.neg = [2]uint64{hi, lo}, [2]uint64{hi, lo}, true
		case OpLt, OpLe:
			m.hi = [2]uint64{hi, lo}
			if e.Op == OpLt {
				if hi == 0 && lo == 0 {
					return constMatcher(false)
				}
				m.hi = dec128(m.hi)
			}
		case OpGt, OpGe:
			m.lo, m.hi = [2]uint64{hi, lo}, [2]uint64{math.MaxUint64, math.MaxUint64}
			if e.Op == OpGt {
				if hi == math.MaxUint64 && lo == math.MaxUint64 {
					return constMatcher(false)
				}
				m.lo = inc128(m.lo)
			}
		}
		return m
	default: // STRING
		v := make([]byte, c.Size)
		copy(v, e.Value.B)
		if e.Op == OpEq || e.Op == OpNe {
			return &bytesEqMatcher{off: off, end: off + c.Size, v: v, neg: e.Op == OpNe}
		}
		return &bytesCmpMatcher{off: off, end: off + c.Size, v: v, op: e.Op}
	}
}

func dec128(x [2]uint64) [2]uint64 {
	if x[1] == 0 {
		return [2]uint64{x[0] - 1, math.MaxUint64}
	}
	return [2]uint64{x[0], x[1] - 1}
}

func inc128(x [2]uint64) [2]uint64 {
	if x[1] == math.MaxUint64 {
		return [2]uint64{x[0] + 1, 0}
	}
	return [2]uint64{x[0], x[1] + 1}
}

func less128(a, b [2]uint64) bool { return a[0] < b[0] || (a[0] == b[0] && a[1] < b[1]) }

// rangeMatcher returns the specialised range matcher for a load kind.
func rangeMatcher(k loadKind, off int, r keyRange) matcher {
	switch k {
	case loadU8:
		return &rangeU8{off, r}
	case loadU16:
		return &rangeU16{off, r}
	case loadU32:
		return &rangeU32{off, r}
	case loadU64:
		return &rangeU64{off, r}
	case loadI8:
		return &rangeI8{off, r}
	case loadI16:
		return &rangeI16{off, r}
	case loadI32:
		return &rangeI32{off, r}
	case loadI64:
		return &rangeI64{off, r}
	case loadBE32:
		return &rangeBE32{off, r}
	case loadF32:
		return &rangeF32{off, r}
	case loadF64:
		return &rangeF64{off, r}
	}
	return &rangeBE48{off, r}
}

func (r *keyRange) test(key uint64) bool { return (key-r.lo <= r.span) != r.neg }

func (r keyRange) negated() keyRange { r.neg = !r.neg; return r }

// One type per load kind keeps the load inlined: no switch or indirect call per record.
type (
	rangeU8 struct {
		off int
		r   keyRange
	}
	rangeU16 struct {
		off int
		r   keyRange
	}
	rangeU32 struct {
		off int
		r   keyRange
	}
	rangeU64 struct {
		off int
		r   keyRange
	}
	rangeI8 struct {
		off int
		r   keyRange
	}
	rangeI16 struct {
		off int
		r   keyRange
	}
	rangeI32 struct {
		off int
		r   keyRange
	}
	rangeI64 struct {
		off int
		r   keyRange
	}
	rangeBE32 struct {
		off int
		r   keyRange
	}
	rangeBE48 struct {
		off int
		r   keyRange
	}
	rangeF32 struct {
		off int
		r   keyRange
	}
	rangeF64 struct {
		off int
		r   keyRange
	}
)

func (m *rangeU8) match(rec []byte) bool { return m.r.test(uint64(rec[m.off])) }
func (m *rangeU16) match(rec []byte) bool {
	return m.r.test(uint64(binary.LittleEndian.Uint16(rec[m.off:])))
}
func (m *rangeU32) match(rec []byte) bool {
	return m.r.test(uint64(binary.LittleEndian.Uint32(rec[m.off:])))
}
func (m *rangeU64) match(rec []byte) bool { return m.r.test(binary.LittleEndian.Uint64(rec[m.off:])) }
func (m *rangeI8) match(rec []byte) bool {
	return m.r.test(uint64(int64(int8(rec[m.off]))) ^ signFlip)
}
func (m *rangeI16) match(rec []byte) bool {
	return m.r.test(uint64(int64(int16(binary.LittleEndian.Uint16(rec[m.off:])))) ^ signFlip)
}
func (m *rangeI32) match(rec []byte) bool {
	return m.r.test(uint64(int64(int32(binary.LittleEndian.Uint32(rec[m.off:])))) ^ signFlip)
}
func (m *rangeI64) match(rec []byte) bool {
	return m.r.test(binary.LittleEndian.Uint64(rec[m.off:]) ^ signFlip)
}
func (m *rangeBE32) match(rec []byte) bool {
	return m.r.test(uint64(binary.BigEndian.Uint32(rec[m.off:])))
}
func (m *rangeBE48) match(rec []byte) bool { return m.r.test(loadBE48.load(rec, m.off)) }
func (m *rangeF32) match(rec []byte) bool {
	return m.r.test(floatKey32(binary.LittleEndian.Uint32(rec[m.off:])))
}
func (m *rangeF64) match(rec []byte) bool {
	return m.r.test(floatKey64(binary.LittleEndian.Uint64(rec[m.off:])))
}

func (m *rangeU8) negate() matcher   { return &rangeU8{m.off, m.r.negated()} }
func (m *rangeU16) negate() matcher  { return &rangeU16{m.off, m.r.negated()} }
func (m *rangeU32) negate() matcher  { return &rangeU32{m.off, m.r.negated()} }
func (m *rangeU64) negate() matcher  { return &rangeU64{m.off, m.r.negated()} }
func (m *rangeI8) negate() matcher   { return &rangeI8{m.off, m.r.negated()} }
func (m *rangeI16) negate() matcher  { return &rangeI16{m.off, m.r.negated()} }
func (m *rangeI32) negate() matcher  { return &rangeI32{m.off, m.r.negated()} }
func (m *rangeI64) negate() matcher  { return &rangeI64{m.off, m.r.negated()} }
func (m *rangeBE32) negate() matcher { return &rangeBE32{m.off, m.r.negated()} }
func (m *rangeBE48) negate() matcher { return &rangeBE48{m.off, m.r.negated()} }
func (m *rangeF32) negate() matcher  { return &rangeF32{m.off, m.r.negated()} }
func (m *rangeF64) negate() matcher  { return &rangeF64{m.off, m.r.negated()} }

func (m *rangeU8) rangeOf() (loadKind, int, keyRange)   { return loadU8, m.off, m.r }
func (m *rangeU16) rangeOf() (loadKind, int, keyRange)  { return loadU16, m.off, m.r }
func (m *rangeU32) rangeOf() (loadKind, int, keyRange)  { return loadU32, m.off, m.r }
func (m *rangeU64) rangeOf() (loadKind, int, keyRange)  { return loadU64, m.off, m.r }
func (m *rangeI8) rangeOf() (loadKind, int, keyRange)   { return loadI8, m.off, m.r }
func (m *rangeI16) rangeOf() (loadKind, int, keyRange)  { return loadI16, m.off, m.r }
func (m *rangeI32) rangeOf() (loadKind, int, keyRange)  { return loadI32, m.off, m.r }
func (m *rangeI64) rangeOf() (loadKind, int, keyRange)  { return loadI64, m.off, m.r }
func (m *rangeBE32) rangeOf() (loadKind, int, keyRange) { return loadBE32, m.off, m.r }
func (m *rangeBE48) rangeOf() (loadKind, int, keyRange) { return loadBE48, m.off, m.r }
func (m *rangeF32) rangeOf() (loadKind, int, keyRange)  { return loadF32, m.off, m.r }
func (m *rangeF64) rangeOf() (loadKind, int, keyRange)  { return loadF64, m.off, m.r }

// ipv6Matcher tests lo <= addr <= hi (or its complement) on 128-bit big-endian addresses.
type ipv6Matcher struct {
	off    int
	lo, hi [2]uint64
	neg    bool
}

func (m *ipv6Matcher) match(rec []byte) bool {
	b := rec[m.off : m.off+16]
	a := [2]uint64{binary.BigEndian.Uint64(b), binary.BigEndian.Uint64(b[8:])}
	return !(less128(a, m.lo) || less128(m.hi, a)) != m.neg
}

func (m *ipv6Matcher) negate() matcher {
	n := *m
	n.neg = !n.neg
	return &n
}

type bytesEqMatcher struct {
	off, end int
	v        []byte
	neg      bool
}

func (m *bytesEqMatcher) match(rec []byte) bool { return bytes.Equal(rec[m.off:m.end], m.v) != m.neg }

func (m *bytesEqMatcher) negate() matcher {
	n := *m
	n.neg = !n.neg
	return &n
}

type bytesCmpMatcher struct {
	off, end int
	v        []byte
	op       Op
}

func (m *bytesCmpMatcher) match(rec []byte) bool {
	c := bytes.Compare(rec[m.off:m.end], m.v)
	switch m.op {
	case OpLt:
		return c < 0
	case OpLe:
		return c <= 0
	case OpGt:
		return c > 0
	}
	return c >= 0
}

// smallSet is the largest set searched linearly.
const smallSet = 8

func inMatcher(e *In) matcher {
	c := e.Column
	if k, ok := loadKindOf(c); ok {
		keys := make([]uint64, 0, len(e.Values))
		for _, v := range e.Values {
			switch {
			case !c.Type.IsFloat():
				keys = append(keys, valueKey(v))
			case math.IsNaN(v.F):
				// Equal to nothing.
			case v.F == 0:
				keys = append(keys, floatValueKey(c.Type, math.Copysign(0, -1)), floatValueKey(c.Type, 0))
			default:
				keys = append(keys, floatValueKey(c.Type, v.F))
			}
		}
		slices.Sort(keys)
		keys = slices.Compact(keys)
		if len(keys) == 0 {
			return constMatcher(false)
		}
		if len(keys) == 1 {
			return rangeMatcher(k, c.Offset, keyRange{lo: keys[0]})
		}
		switch c.Size {
		case 1:
			m := &bitmap8Matcher{off: c.Offset}
			for _, key := range keys {
				if b := uint8(key); k.load([]byte{b}, 0) == key { // else the value does not fit the field
					m.bits[b/64] |= 1 << (b % 64)
				}
			}
			return m
		case 2:
			if len(keys) <= 4 {
				break // four comparisons beat 8 KiB of bitmap
			}
			m := &bitmap16Matcher{off: c.Offset, bits: make([]uint64, 1<<16/64)}
			for _, key := range keys {
				if b := uint16(key); k.load([]byte{byte(b), byte(b >> 8)}, 0) == key {
					m.bits[b/64] |= 1 << (b % 64)
				}
			}
			return m
		}
		if len(keys) <= 4 {
			m := &set4Matcher{kind: k, off: c.Offset}
			for i := range m.keys {
				m.keys[i] = keys[min(i, len(keys)-1)] // pad by repeating the last key
			}
			return m
		}
		return &keySetMatcher{kind: k, off: c.Offset, keys: keys}
	}
	set := make(map[string]struct{}, len(e.Values))
	for _, v := range e.Values {
		padded := make([]byte, c.Size)
		copy(padded, v.B)
		set[string(padded)] = struct{}{}
	}
	return &bytesSetMatcher{off: c.Offset, end: c.Offset + c.Size, set: set}
}

type keySetMatcher struct {
	kind loadKind
	off  int
	keys []uint64 // sorted, unique
}

func (m *keySetMatcher) match(rec []byte) bool {
	k := m.kind.load(rec, m.off)
	if len(m.keys) <= smallSet {
		// No early exit: branch-free comparisons beat mispredicted branches on real traffic.
		hit := 0
		for _, v := range m.keys {
			hit |= b2i(v == k)
		}
		return hit != 0
	}
	_, found := slices.BinarySearch(m.keys, k)
	return found
}

// set4Matcher tests a field against up to four keys without a branch.
type set4Matcher struct {
	kind loadKind
	off  int
	keys [4]uint64
}

func (m *set4Matcher) match(rec []byte) bool {
	k := m.kind.load(rec, m.off)
	return b2i(k == m.keys[0])|b2i(k == m.keys[1])|b2i(k == m.keys[2])|b2i(k == m.keys[3]) != 0
}

// bitmap8Matcher tests a 1-byte field's raw bits against a 256-bit set.
type bitmap8Matcher struct {
	off  int
	bits [4]uint64
}

func (m *bitmap8Matcher) match(rec []byte) bool {
	b := rec[m.off]
	return m.bits[b>>6]&(1<<(b&63)) != 0
}

// bitmap16Matcher tests a 2-byte field's raw bits (little-endian) against a 65536-bit set (8 KiB).
type bitmap16Matcher struct {
	off  int
	bits []uint64 // 1024 words
}

func (m *bitmap16Matcher) match(rec []byte) bool {
	b := binary.LittleEndian.Uint16(rec[m.off:])
	return m.bits[b>>6&1023]&(1<<(b&63)) != 0
}

type bytesSetMatcher struct {
	off, end int
	set      map[string]struct{}
}

func (m *bytesSetMatcher) match(rec []byte) bool {
	_, ok := m.set[string(rec[m.off:m.end])] // no allocation: the compiler reads the map in place
	return ok
}

func prefixMatcher(e *InPrefix) matcher {
	c := e.Column
	p := e.Prefix
	if c.Type == schema.IPv4 {
		base := uint64(binary.BigEndian.Uint32(p.Addr().AsSlice()))
		span := uint64(1)<<(32-p.Bits()) - 1
		return &rangeBE32{c.Offset, keyRange{lo: base, span: span}}
	}
	lo, hi := prefixBounds16(p)
	return &ipv6Matcher{
		off: c.Offset,
		lo:  [2]uint64{binary.BigEndian.Uint64(lo[:8]), binary.BigEndian.Uint64(lo[8:])},
		hi:  [2]uint64{binary.BigEndian.Uint64(hi[:8]), binary.BigEndian.Uint64(hi[8:])},
	}
}

// prefixBounds16 returns the first and last address of an IPv6 prefix.
func prefixBounds16(p netip.Prefix) (lo, hi [16]byte) {
	lo = p.Masked().Addr().As16()
	hi = lo
	for i := p.Bits(); i < 128; i++ {
		hi[i/8] |= 0x80 >> (i % 8)
	}
	return lo, hi
}
