package expr

import (
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
)

// Node is a node of the untyped syntax tree returned by [Parse]: *BinaryExpr, *NotExpr,
// *BoolExpr, *CompareExpr or *InExpr. String prints canonical text: Parse(n.String()) returns a
// tree equal to n (positions aside, see [Equal]). Nodes are immutable and safe for concurrent use.
type Node interface {
	// Pos is where the node starts in the source.
	Pos() Pos
	// String is the canonical text of the node.
	String() string
	node()
}

// BoolOp is && or ||.
type BoolOp uint8

// The boolean operators.
const (
	OpAnd BoolOp = iota + 1 // && (also: and)
	OpOr                    // || (also: or)
)

func (o BoolOp) String() string {
	if o == OpAnd {
		return "&&"
	}
	return "||"
}

// BinaryExpr is X && Y or X || Y.
type BinaryExpr struct {
	Op    BoolOp
	OpPos Pos
	X, Y  Node
}

// NotExpr is !X (also: not X).
type NotExpr struct {
	NotPos Pos
	X      Node
}

// BoolExpr is a bare true or false, matching every record or none.
type BoolExpr struct {
	ValuePos Pos
	Value    bool
}

// Ident is a column name as written.
type Ident struct {
	Pos  Pos
	Name string
}

// CompareExpr is column op literal, or column & mask op literal. A comparison written literal op
// column is stored with the operator flipped (5 < x is x > 5).
type CompareExpr struct {
	Column Ident
	// Mask, if not nil, is the integer literal of column & mask.
	Mask  *Literal
	Op    Op
	OpPos Pos
	Value Literal
}

// InExpr is column in (v1, v2, ...) or column in prefix. A value may be a CIDR prefix.
type InExpr struct {
	Column Ident
	InPos  Pos
	Values []Literal
}

func (n *BinaryExpr) Pos() Pos { return n.X.Pos() }
func (n *NotExpr) Pos() Pos    { return n.NotPos }
func (n *BoolExpr) Pos() Pos   { return n.ValuePos }
func (n *CompareExpr) Pos() Pos {
	if n.Value.Pos.Offset < n.Column.Pos.Offset {
		return n.Value.Pos
	}
	return n.Column.Pos
}
func (n *InExpr) Pos() Pos { return n.Column.Pos }

func (*BinaryExpr) node()  {}
func (*NotExpr) node()     {}
func (*BoolExpr) node()    {}
func (*CompareExpr) node() {}
func (*InExpr) node()      {}

func (n *BinaryExpr) String() string  { return nodeString(n) }
func (n *NotExpr) String() string     { return nodeString(n) }
func (n *BoolExpr) String() string    { return nodeString(n) }
func (n *CompareExpr) String() string { return nodeString(n) }
func (n *InExpr) String() string      { return nodeString(n) }

func nodeString(n Node) string {
	var b strings.Builder
	writeNode(&b, n)
	return b.String()
}

func writeNode(b *strings.Builder, n Node) {
	switch n := n.(type) {
	case *BinaryExpr:
		// && and || are left-associative and && binds tighter: parenthesise a right operand
		// of the same or lower precedence and a left operand of lower precedence.
		leftParen, rightParen := false, false
		if x, ok := n.X.(*BinaryExpr); ok && n.Op == OpAnd && x.Op == OpOr {
			leftParen = true
		}
		if y, ok := n.Y.(*BinaryExpr); ok && (y.Op == n.Op || n.Op == OpAnd) {
			rightParen = true
		}
		writeParen(b, n.X, leftParen)
		b.WriteString(" " + n.Op.String() + " ")
		writeParen(b, n.Y, rightParen)
	case *NotExpr:
		b.WriteString("!")
		_, isBool := n.X.(*BoolExpr)
		writeParen(b, n.X, !isBool)
	case *BoolExpr:
		b.WriteString(strconv.FormatBool(n.Value))
	case *CompareExpr:
		b.WriteString(n.Column.Name)
		if n.Mask != nil {
			b.WriteString(" & " + n.Mask.String())
		}
		b.WriteString(" " + n.Op.String() + " " + n.Value.String())
	case *InExpr:
		if len(n.Values) == 1 {
			b.WriteString(n.Column.Name + " in " + n.Values[0].String())
			break
		}
		b.WriteString(n.Column.Name + " in (")
		for i, v := range n.Values {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(v.String())
		}
		b.WriteString(")")
	default:
		fmt.Fprintf(b, "<unknown node %T>", n)
	}
}

func writeParen(b *strings.Builder, n Node, paren bool) {
	if paren {
		b.WriteByte('(')
	}
	writeNode(b, n)
	if paren {
		b.WriteByte(')')
	}
}

// LitKind is the kind of a literal, as written (before it is converted to a column's type).
type LitKind uint8

// The literal kinds.
const (
	LitInvalid LitKind = iota
	LitInt             // 42, -7, 0x1f, 0o17, 0b101
	LitFloat           // 1.5, .5, 1e-3
	LitString          // "text" or 'text'
	LitBool            // true, false
	LitIPv4            // 10.0.0.1
	LitIPv6            // fe80::1
	LitPrefix          // 10.0.0.0/8, 2001:db8::/32
	LitMAC             // 00:1b:21:aa:bb:cc
	LitName            // a named constant such as tcp
)

var litKindNames = [...]string{
	LitInvalid: "invalid", LitInt: "int", LitFloat: "float", LitString: "string", LitBool: "bool",
	LitIPv4: "ipv4", LitIPv6: "ipv6", LitPrefix: "prefix", LitMAC: "mac", LitName: "name",
}

func (k LitKind) String() string {
	if int(k) < len(litKindNames) {
		return litKindNames[k]
	}
	return "invalid"
}

// Literal is a literal value as written. Only the fields of its Kind are set. It is a plain value,
// safe for concurrent use once built.
type Literal struct {
	Pos  Pos
	Kind LitKind
	// LitInt: the value is -Uint if Neg, else Uint. Neg is false for zero.
	Neg  bool
	Uint uint64
	// LitFloat: the value (finite).
	Float float64
	// LitString: the decoded bytes. LitName: the name as written.
	Str string
	// LitBool.
	Bool bool
	// LitIPv4, LitIPv6.
	Addr netip.Addr
	// LitPrefix (masked: no host bits set).
	Prefix netip.Prefix
	// LitMAC.
	MAC [6]byte
}

// String returns the canonical text of the literal, which the lexer reads back as an equal literal.
func (l Literal) String() string {
	switch l.Kind {
	case LitInt:
		if l.Neg {
			return "-" + strconv.FormatUint(l.Uint, 10)
		}
		return strconv.FormatUint(l.Uint, 10)
	case LitFloat:
		return formatFloat(l.Float)
	case LitString:
		return quoteString(l.Str)
	case LitBool:
		return strconv.FormatBool(l.Bool)
	case LitIPv4, LitIPv6:
		return l.Addr.String()
	case LitPrefix:
		return l.Prefix.String()
	case LitMAC:
		m := l.MAC
		return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5])
	case LitName:
		return l.Str
	}
	return "<invalid literal>"
}

// formatFloat formats f so that it lexes back as a float literal of the same value.
func formatFloat(f float64) string {
	s := strconv.FormatFloat(f, 'g', -1, 64)
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return s // not produced by the lexer
	}
	if !strings.ContainsAny(s, ".e") {
		s += ".0"
	}
	return s
}

// equal reports whether two literals have the same kind and value.
func (l Literal) equal(o Literal) bool {
	if l.Kind != o.Kind {
		return false
	}
	switch l.Kind {
	case LitInt:
		return l.Neg == o.Neg && l.Uint == o.Uint
	case LitFloat:
		return l.Float == o.Float && math.Signbit(l.Float) == math.Signbit(o.Float)
	case LitString, LitName:
		return l.Str == o.Str
	case LitBool:
		return l.Bool == o.Bool
	case LitIPv4, LitIPv6:
		return l.Addr == o.Addr
	case LitPrefix:
		return l.Prefix == o.Prefix
	case LitMAC:
		return l.MAC == o.MAC
	}
	return true
}

// Equal reports whether two syntax trees are the same, ignoring positions and how operators and
// literals were spelled (= and ==, and and &&, 0x10 and 16).
func Equal(a, b Node) bool {
	switch a := a.(type) {
	case *BinaryExpr:
		b, ok := b.(*BinaryExpr)
		return ok && a.Op == b.Op && Equal(a.X, b.X) && Equal(a.Y, b.Y)
	case *NotExpr:
		b, ok := b.(*NotExpr)
		return ok && Equal(a.X, b.X)
	case *BoolExpr:
		b, ok := b.(*BoolExpr)
		return ok && a.Value == b.Value
	case *CompareExpr:
		b, ok := b.(*CompareExpr)
		return ok && a.Column.Name == b.Column.Name && a.Op == b.Op && a.Value.equal(b.Value) &&
			(a.Mask == nil) == (b.Mask == nil) && (a.Mask == nil || a.Mask.equal(*b.Mask))
	case *InExpr:
		b, ok := b.(*InExpr)
		if !ok || a.Column.Name != b.Column.Name || len(a.Values) != len(b.Values) {
			return false
		}
		for i := range a.Values {
			if !a.Values[i].equal(b.Values[i]) {
				return false
			}
		}
		return true
	case nil:
		return b == nil
	}
	return false
}

// Dump returns the tree as an S-expression with literal kinds, such as
// (&& (== a int:1) (in ip [prefix:10.0.0.0/8])). It shows the structure that String leaves to
// precedence.
func Dump(n Node) string {
	var b strings.Builder
	dump(&b, n)
	return b.String()
}

func dump(b *strings.Builder, n Node) {
	switch n := n.(type) {
	case *BinaryExpr:
		b.WriteString("(" + n.Op.String() + " ")
		dump(b, n.X)
		b.WriteByte(' ')
		dump(b, n.Y)
		b.WriteByte(')')
	case *NotExpr:
		b.WriteString("(! ")
		dump(b, n.X)
		b.WriteByte(')')
	case *BoolExpr:
		b.WriteString(strconv.FormatBool(n.Value))
	case *CompareExpr:
		col := n.Column.Name
		if n.Mask != nil {
			col = "(& " + col + " " + n.Mask.String() + ")"
		}
		b.WriteString("(" + n.Op.String() + " " + col + " " + n.Value.Kind.String() + ":" + n.Value.String() + ")")
	case *InExpr:
		b.WriteString("(in " + n.Column.Name + " [")
		for i, v := range n.Values {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(v.Kind.String() + ":" + v.String())
		}
		b.WriteString("])")
	default:
		fmt.Fprintf(b, "<unknown node %T>", n)
	}
}
