// Package schema defines the fixed-size record schemas of Confluo-Go's Atomic MultiLog.
//
// A schema is an ordered list of typed columns. Every column has a fixed size, so every record of a
// schema has the same size (Confluo's two properties: data is never updated and every field has a
// fixed size). The first column is always the implicit timestamp, nanoseconds since the Unix epoch.
//
// Schema text:
//
//	{src: IPV4, dst: IPV4, sport: USHORT, dport: USHORT, len: UINT, app: STRING(16)}
//
// Type and column names are case-insensitive; columns are stored lower-case. A user column named
// timestamp must be ULONG and becomes the implicit column. The filter language's keywords (and,
// or, not, in, true, false) cannot name columns.
//
// Record layout (columns packed in order, no padding):
//
//	offset 0         8                      8+size(c1)
//	       +---------+----------------------+------------------+-----
//	       |timestamp| column 1             | column 2         | ...
//	       |ULONG LE | per type (see below) |                  |
//	       +---------+----------------------+------------------+-----
//
//	BOOL 1 (0 or 1)   CHAR 1 (int8)     UCHAR 1          SHORT 2 LE    USHORT 2 LE
//	INT 4 LE          UINT 4 LE         LONG 8 LE        ULONG 8 LE
//	FLOAT 4 IEEE LE   DOUBLE 8 IEEE LE  STRING(N) N bytes, NUL-padded
//	IPV4 4, IPV6 16, MAC 6: network (wire) byte order
//
// Schemas are immutable once built and safe for concurrent use.
package schema

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Type is a column type.
type Type uint8

// The column types, with Confluo's names.
const (
	Invalid Type = iota
	Bool
	Char
	UChar
	Short
	UShort
	Int
	UInt
	Long
	ULong
	Float
	Double
	String
	IPv4
	IPv6
	MAC
)

var typeNames = [...]string{
	Invalid: "INVALID", Bool: "BOOL", Char: "CHAR", UChar: "UCHAR", Short: "SHORT", UShort: "USHORT",
	Int: "INT", UInt: "UINT", Long: "LONG", ULong: "ULONG", Float: "FLOAT", Double: "DOUBLE",
	String: "STRING", IPv4: "IPV4", IPv6: "IPV6", MAC: "MAC",
}

var typeSizes = [...]int{
	Bool: 1, Char: 1, UChar: 1, Short: 2, UShort: 2, Int: 4, UInt: 4, Long: 8, ULong: 8,
	Float: 4, Double: 8, IPv4: 4, IPv6: 16, MAC: 6,
}

// MaxStringSize is the largest N accepted for STRING(N).
const MaxStringSize = 65535

// TimestampColumn is the name of the implicit first column.
const TimestampColumn = "timestamp"

// Sentinel errors; returned errors wrap them.
var (
	ErrSyntax    = errors.New("schema: syntax error")
	ErrColumn    = errors.New("schema: bad column")
	ErrValue     = errors.New("schema: bad value")
	ErrRecordLen = errors.New("schema: record has wrong length")
)

func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return "Type(" + strconv.Itoa(int(t)) + ")"
}

// FixedSize is the size in bytes of a value of t, or 0 for STRING, whose size is part of the column.
func (t Type) FixedSize() int {
	if int(t) < len(typeSizes) {
		return typeSizes[t]
	}
	return 0
}

// IsSigned reports whether t is a signed integer type (CHAR, SHORT, INT, LONG).
func (t Type) IsSigned() bool { return t == Char || t == Short || t == Int || t == Long }

// IsUnsigned reports whether t is an unsigned integer type (BOOL, UCHAR, USHORT, UINT, ULONG).
func (t Type) IsUnsigned() bool {
	return t == Bool || t == UChar || t == UShort || t == UInt || t == ULong
}

// IsFloat reports whether t is FLOAT or DOUBLE.
func (t Type) IsFloat() bool { return t == Float || t == Double }

// IsNumeric reports whether values of t are numbers (integers, floats or BOOL).
func (t Type) IsNumeric() bool { return t.IsSigned() || t.IsUnsigned() || t.IsFloat() }

// IsBytes reports whether values of t are byte strings (STRING, IPV4, IPV6, MAC).
func (t Type) IsBytes() bool { return t == String || t == IPv4 || t == IPv6 || t == MAC }

// IsIP reports whether t is IPV4 or IPV6.
func (t Type) IsIP() bool { return t == IPv4 || t == IPv6 }

// ParseType parses a type name such as "uint" or "STRING(16)"; size is the column size in bytes.
func ParseType(text string) (t Type, size int, err error) {
	s := strings.ToUpper(strings.TrimSpace(text))
	if rest, ok := strings.CutPrefix(s, "STRING"); ok {
		rest = strings.TrimSpace(rest)
		if !strings.HasPrefix(rest, "(") || !strings.HasSuffix(rest, ")") {
			return Invalid, 0, fmt.Errorf("%w: type %q: STRING needs a size, as in STRING(16)", ErrSyntax, text)
		}
		n, err := strconv.Atoi(strings.TrimSpace(rest[1 : len(rest)-1]))
		if err != nil || n < 1 || n > MaxStringSize {
			return Invalid, 0, fmt.Errorf("%w: type %q: STRING size must be 1..%d", ErrSyntax, text, MaxStringSize)
		}
		return String, n, nil
	}
	for t := Bool; t <= MAC; t++ {
		if t != String && typeNames[t] == s {
			return t, typeSizes[t], nil
		}
	}
	return Invalid, 0, fmt.Errorf("%w: unknown type %q", ErrSyntax, text)
}

// Column is one column of a schema. Columns are values owned by their schema; do not modify them.
type Column struct {
	Name   string // lower-case
	Type   Type
	Size   int // bytes in the record
	Offset int // byte offset in the record
	Index  int // position in Schema.Columns
}

// TypeString is the column's type as schema text: "INT", "STRING(16)".
func (c *Column) TypeString() string {
	if c.Type == String {
		return "STRING(" + strconv.Itoa(c.Size) + ")"
	}
	return c.Type.String()
}

// Schema is an immutable, ordered set of fixed-size columns. Safe for concurrent use.
type Schema struct {
	// Columns in record order; Columns[0] is the timestamp.
	Columns []Column
	// RecordSize is the size in bytes of every record.
	RecordSize int

	byName map[string]int
}

// Column returns the column with the given name, ignoring case.
func (s *Schema) Column(name string) (*Column, bool) {
	i, ok := s.byName[strings.ToLower(name)]
	if !ok {
		return nil, false
	}
	return &s.Columns[i], true
}

// String returns the schema text; Parse(s.String()) yields an equal schema.
func (s *Schema) String() string {
	var b strings.Builder
	b.WriteByte('{')
	for i := range s.Columns {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(s.Columns[i].Name)
		b.WriteString(": ")
		b.WriteString(s.Columns[i].TypeString())
	}
	b.WriteByte('}')
	return b.String()
}

// Equal reports whether two schemas have the same columns in the same order.
func (s *Schema) Equal(o *Schema) bool {
	if len(s.Columns) != len(o.Columns) {
		return false
	}
	for i := range s.Columns {
		a, b := s.Columns[i], o.Columns[i]
		if a.Name != b.Name || a.Type != b.Type || a.Size != b.Size {
			return false
		}
	}
	return true
}

// Timestamp returns the timestamp of a record of any schema (the first 8 bytes, little-endian).
func Timestamp(rec []byte) int64 {
	_ = rec[7]
	return int64(uint64(rec[0]) | uint64(rec[1])<<8 | uint64(rec[2])<<16 | uint64(rec[3])<<24 |
		uint64(rec[4])<<32 | uint64(rec[5])<<40 | uint64(rec[6])<<48 | uint64(rec[7])<<56)
}

// SetTimestamp stores ts (nanoseconds since the epoch) as the record's timestamp.
func SetTimestamp(rec []byte, ts int64) {
	_ = rec[7]
	u := uint64(ts)
	rec[0], rec[1], rec[2], rec[3] = byte(u), byte(u>>8), byte(u>>16), byte(u>>24)
	rec[4], rec[5], rec[6], rec[7] = byte(u>>32), byte(u>>40), byte(u>>48), byte(u>>56)
}

// Builder builds a Schema column by column. Errors are collected and returned by Build.
// A Builder is not safe for concurrent use.
type Builder struct {
	cols []Column
	errs []error
}

// NewBuilder returns an empty builder; the timestamp column is added implicitly.
func NewBuilder() *Builder { return &Builder{} }

// Add appends a column of a fixed-size type. Use AddString for STRING columns.
func (b *Builder) Add(name string, t Type) *Builder {
	if t == String || t == Invalid || t > MAC {
		b.errs = append(b.errs, fmt.Errorf("%w %q: type %v needs AddString or is invalid", ErrColumn, name, t))
		return b
	}
	b.cols = append(b.cols, Column{Name: name, Type: t, Size: typeSizes[t]})
	return b
}

// AddString appends a STRING(size) column.
func (b *Builder) AddString(name string, size int) *Builder {
	if size < 1 || size > MaxStringSize {
		b.errs = append(b.errs, fmt.Errorf("%w %q: STRING size %d not in 1..%d", ErrColumn, name, size, MaxStringSize))
		return b
	}
	b.cols = append(b.cols, Column{Name: name, Type: String, Size: size})
	return b
}

// Build validates the columns and lays out the record.
func (b *Builder) Build() (*Schema, error) {
	if len(b.errs) > 0 {
		return nil, errors.Join(b.errs...)
	}
	s := &Schema{byName: make(map[string]int, len(b.cols)+1)}
	s.Columns = append(s.Columns, Column{Name: TimestampColumn, Type: ULong, Size: 8})
	s.byName[TimestampColumn] = 0
	userColumns := 0
	for _, c := range b.cols {
		// Check the name as given: lower-casing first would let a non-ASCII letter through
		// as its ASCII lower case (the Kelvin sign K becomes k).
		if !validName(c.Name) {
			return nil, fmt.Errorf("%w %q: a name is a letter or _ followed by letters, digits or _", ErrColumn, c.Name)
		}
		name := strings.ToLower(c.Name)
		if reservedNames[name] {
			return nil, fmt.Errorf("%w %q: a keyword of the filter language (and, or, not, in, true, false) cannot name a column", ErrColumn, c.Name)
		}
		if name == TimestampColumn {
			if c.Type != ULong {
				return nil, fmt.Errorf("%w %q: the timestamp column must be ULONG, not %s", ErrColumn, c.Name, c.TypeString())
			}
			if s.byName[TimestampColumn] < 0 {
				return nil, fmt.Errorf("%w %q: duplicate column", ErrColumn, c.Name)
			}
			s.byName[TimestampColumn] = -1 // mark as given explicitly; reset below
			continue
		}
		if _, dup := s.byName[name]; dup {
			return nil, fmt.Errorf("%w %q: duplicate column", ErrColumn, c.Name)
		}
		c.Name = name
		c.Index = len(s.Columns)
		s.byName[name] = c.Index
		s.Columns = append(s.Columns, c)
		userColumns++
	}
	s.byName[TimestampColumn] = 0
	if userColumns == 0 {
		return nil, fmt.Errorf("%w: a schema needs at least one column besides the timestamp", ErrColumn)
	}
	off := 0
	for i := range s.Columns {
		s.Columns[i].Offset = off
		off += s.Columns[i].Size
	}
	s.RecordSize = off
	return s, nil
}

// reservedNames are the keywords of the filter language (package expr): a column so named
// could never be used in a filter.
var reservedNames = map[string]bool{"and": true, "or": true, "not": true, "in": true, "true": true, "false": true}

// validName reports whether s is an ASCII identifier (either case).
func validName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z'):
		case i > 0 && r >= '0' && r <= '9':
		default:
			return false
		}
	}
	return true
}

// SyntaxError is a schema text error with its byte position.
type SyntaxError struct {
	Pos int // byte offset in the text
	Msg string
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("schema: at offset %d: %s", e.Pos, e.Msg) }

// Unwrap makes errors.Is(err, ErrSyntax) true.
func (e *SyntaxError) Unwrap() error { return ErrSyntax }

// Parse parses schema text such as "{a: INT, b: STRING(8)}". The braces may be omitted; a trailing
// comma is allowed.
func Parse(text string) (*Schema, error) {
	p := parser{s: text}
	p.skipSpace()
	braced := p.eat('{')
	b := NewBuilder()
	for {
		p.skipSpace()
		if p.pos == len(p.s) || (braced && p.peek() == '}') {
			break
		}
		start := p.pos
		name := p.ident()
		if name == "" {
			return nil, &SyntaxError{start, fmt.Sprintf("expected a column name, found %s", p.found())}
		}
		p.skipSpace()
		if !p.eat(':') {
			return nil, &SyntaxError{p.pos, fmt.Sprintf("expected ':' after column %q, found %s", name, p.found())}
		}
		p.skipSpace()
		typeStart := p.pos
		typeName := p.ident()
		if strings.EqualFold(typeName, "STRING") {
			p.skipSpace()
			if p.eat('(') {
				for p.pos < len(p.s) && p.s[p.pos] != ')' {
					p.pos++
				}
				if !p.eat(')') {
					return nil, &SyntaxError{typeStart, "unterminated STRING( size"}
				}
			}
			typeName = p.s[typeStart:p.pos]
		}
		t, size, err := ParseType(typeName)
		if err != nil {
			return nil, &SyntaxError{typeStart, fmt.Sprintf("column %q: %s", name, strings.TrimPrefix(err.Error(), ErrSyntax.Error()+": "))}
		}
		if t == String {
			b.AddString(name, size)
		} else {
			b.Add(name, t)
		}
		p.skipSpace()
		if !p.eat(',') {
			break
		}
	}
	p.skipSpace()
	if braced && !p.eat('}') {
		return nil, &SyntaxError{p.pos, fmt.Sprintf("expected ',' or '}', found %s", p.found())}
	}
	p.skipSpace()
	if p.pos != len(p.s) {
		return nil, &SyntaxError{p.pos, fmt.Sprintf("unexpected %s after the schema", p.found())}
	}
	return b.Build()
}

type parser struct {
	s   string
	pos int
}

func (p *parser) skipSpace() {
	for p.pos < len(p.s) && strings.IndexByte(" \t\r\n", p.s[p.pos]) >= 0 {
		p.pos++
	}
}

func (p *parser) peek() byte {
	if p.pos < len(p.s) {
		return p.s[p.pos]
	}
	return 0
}

func (p *parser) eat(c byte) bool {
	if p.pos < len(p.s) && p.s[p.pos] == c {
		p.pos++
		return true
	}
	return false
}

func (p *parser) ident() string {
	start := p.pos
	for p.pos < len(p.s) {
		c := p.s[p.pos]
		if c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (p.pos > start && c >= '0' && c <= '9') {
			p.pos++
			continue
		}
		break
	}
	return p.s[start:p.pos]
}

func (p *parser) found() string {
	if p.pos >= len(p.s) {
		return "end of text"
	}
	return strconv.Quote(p.s[p.pos : p.pos+1])
}
