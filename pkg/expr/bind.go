package expr

import (
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/confluo-go/confluo/pkg/schema"
)

// Constants maps a lower-case column name to that column's named constants (lower-case name to
// value). A name literal compared with the column takes the value, converted to the column's type
// like an integer literal. Binding only reads it; do not modify a map while filters are bound
// with it.
type Constants map[string]map[string]uint64

// IPProtocols are the IP protocol numbers known by name.
var IPProtocols = map[string]uint64{
	"icmp": 1, "igmp": 2, "ipip": 4, "ipv4": 4, "tcp": 6, "egp": 8, "udp": 17, "ipv6": 41,
	"rsvp": 46, "gre": 47, "esp": 50, "ah": 51, "icmpv6": 58, "ipv6-icmp": 58, "ospf": 89,
	"pim": 103, "vrrp": 112, "l2tp": 115, "sctp": 132, "udplite": 136, "mpls": 137,
}

// EtherTypes are the Ethernet types known by name.
var EtherTypes = map[string]uint64{
	"ipv4": 0x0800, "ip": 0x0800, "arp": 0x0806, "vlan": 0x8100, "qinq": 0x88a8, "ipv6": 0x86dd,
	"mpls": 0x8847, "lldp": 0x88cc,
}

// DefaultConstants returns the constants used when Options.Constants is nil: IPProtocols for the
// columns proto, ip_proto and protocol; EtherTypes for eth_type, ethertype and ether_type.
func DefaultConstants() Constants {
	return Constants{
		"proto": IPProtocols, "ip_proto": IPProtocols, "protocol": IPProtocols,
		"eth_type": EtherTypes, "ethertype": EtherTypes, "ether_type": EtherTypes,
	}
}

// Options configures binding. The zero value is the default. Options are plain values; binding
// only reads them.
type Options struct {
	// Constants are the named constants per column. Default (nil): DefaultConstants(). An empty,
	// non-nil map has none.
	Constants Constants
}

// DefaultOptions returns the default options.
func DefaultOptions() Options { return Options{Constants: DefaultConstants()} }

// Validate checks the options: constant and column names must be lower-case.
func (o Options) Validate() error {
	for col, names := range o.Constants {
		if col != strings.ToLower(col) {
			return fmt.Errorf("%w: constants column %q is not lower-case", ErrOptions, col)
		}
		for name := range names {
			if name != strings.ToLower(name) {
				return fmt.Errorf("%w: constant %q of column %q is not lower-case", ErrOptions, name, col)
			}
		}
	}
	return nil
}

// Expr is a node of the typed tree of a bound filter: *And, *Or, *Not, *True, *Compare,
// *MaskCompare, *In or *InPrefix. Typed trees are immutable and safe for concurrent use. A planner
// that meets a node type it does not know must treat it as opaque (any record may match).
type Expr interface {
	// String is canonical filter text; compiling it against the same schema gives an equal tree.
	String() string
	expr()
}

// And holds when every term holds. It has at least two terms, none of which is an *And.
type And struct{ Terms []Expr }

// Or holds when some term holds. It has at least two terms, none of which is an *Or.
type Or struct{ Terms []Expr }

// Not holds when X does not.
type Not struct{ X Expr }

// True always holds (a bare true; false is Not{True}).
type True struct{}

// Compare is Column Op Value, compared in the column's type. Value has the column's type (a FLOAT
// value is already rounded to float32). FLOAT and DOUBLE follow IEEE 754: a NaN in the record
// satisfies only !=.
type Compare struct {
	Column *schema.Column
	Op     Op
	Value  schema.Value
}

// MaskCompare is (Column & Mask) Op Value on an unsigned integer column (UCHAR, USHORT, UINT,
// ULONG), as in tcp_flags & 0x12 == 0x02. Mask and Value fit the column.
type MaskCompare struct {
	Column *schema.Column
	Mask   uint64
	Op     Op
	Value  schema.Value
}

// In holds when the column equals one of Values (each of the column's type).
type In struct {
	Column *schema.Column
	Values []schema.Value
}

// InPrefix holds when the IPV4 or IPV6 column is in Prefix. For an IPV6 column, an IPv4 prefix
// a.b.c.d/n is stored as the IPv4-mapped ::ffff:a.b.c.d/(96+n).
type InPrefix struct {
	Column *schema.Column
	Prefix netip.Prefix
}

func (*And) expr()         {}
func (*Or) expr()          {}
func (*Not) expr()         {}
func (*True) expr()        {}
func (*Compare) expr()     {}
func (*MaskCompare) expr() {}
func (*In) expr()          {}
func (*InPrefix) expr()    {}

func (e *And) String() string         { return exprString(e) }
func (e *Or) String() string          { return exprString(e) }
func (e *Not) String() string         { return exprString(e) }
func (e *True) String() string        { return "true" }
func (e *Compare) String() string     { return exprString(e) }
func (e *MaskCompare) String() string { return exprString(e) }
func (e *In) String() string          { return exprString(e) }
func (e *InPrefix) String() string    { return exprString(e) }

func exprString(e Expr) string {
	var b strings.Builder
	writeExpr(&b, e)
	return b.String()
}

func writeExpr(b *strings.Builder, e Expr) {
	switch e := e.(type) {
	case *And:
		for i, t := range e.Terms {
			if i > 0 {
				b.WriteString(" && ")
			}
			_, paren := t.(*Or)
			writeExprParen(b, t, paren)
		}
	case *Or:
		for i, t := range e.Terms {
			if i > 0 {
				b.WriteString(" || ")
			}
			writeExprParen(b, t, false)
		}
	case *Not:
		b.WriteString("!")
		_, isTrue := e.X.(*True)
		writeExprParen(b, e.X, !isTrue)
	case *True:
		b.WriteString("true")
	case *Compare:
		b.WriteString(e.Column.Name + " " + e.Op.String() + " " + valueLiteral(e.Value))
	case *MaskCompare:
		b.WriteString(e.Column.Name + " & " + strconv.FormatUint(e.Mask, 10) + " " + e.Op.String() + " " + valueLiteral(e.Value))
	case *In:
		b.WriteString(e.Column.Name + " in (")
		for i, v := range e.Values {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(valueLiteral(v))
		}
		b.WriteString(")")
	case *InPrefix:
		b.WriteString(e.Column.Name + " in " + e.Prefix.String())
	default:
		fmt.Fprintf(b, "<unknown expr %T>", e)
	}
}

func writeExprParen(b *strings.Builder, e Expr, paren bool) {
	if paren {
		b.WriteByte('(')
	}
	writeExpr(b, e)
	if paren {
		b.WriteByte(')')
	}
}

// valueLiteral formats a value as a literal that binds back to the same value.
func valueLiteral(v schema.Value) string {
	switch {
	case v.Type == schema.Bool:
		return strconv.FormatBool(v.U != 0)
	case v.Type.IsSigned():
		return strconv.FormatInt(v.I, 10)
	case v.Type.IsUnsigned():
		return strconv.FormatUint(v.U, 10)
	case v.Type == schema.Float:
		s := strconv.FormatFloat(v.F, 'g', -1, 32)
		if !strings.ContainsAny(s, ".e") {
			s += ".0"
		}
		return s
	case v.Type == schema.Double:
		return formatFloat(v.F)
	case v.Type == schema.String:
		return quoteString(string(v.B))
	}
	return v.String() // IPV4, IPV6, MAC
}

// Filter is a filter expression bound to a schema, made by Compile, Bind or NewFilter (the zero
// value is not usable). It is immutable and safe for concurrent use; Match never allocates.
type Filter struct {
	// Source is the text the filter was compiled from ("" if bound from a tree).
	Source string
	// Root is the typed tree.
	Root Expr
	// Schema is the schema the filter was bound to.
	Schema *schema.Schema

	m          matcher
	s          selector
	recordSize int
}

// String returns the canonical text of the typed tree.
func (f *Filter) String() string { return f.Root.String() }

// Match reports whether a record of the filter's schema satisfies the filter. A record shorter
// than the schema's RecordSize never matches. Match does not allocate.
func (f *Filter) Match(rec []byte) bool {
	if len(rec) < f.recordSize {
		return false
	}
	return f.m.match(rec)
}

// Columns returns the distinct columns the filter reads, in schema order.
func (f *Filter) Columns() []*schema.Column { return Columns(f.Root) }

// Columns returns the distinct columns a typed tree reads, in schema order.
func Columns(e Expr) []*schema.Column {
	seen := map[int]*schema.Column{}
	Walk(e, func(e Expr) bool {
		switch e := e.(type) {
		case *Compare:
			seen[e.Column.Index] = e.Column
		case *MaskCompare:
			seen[e.Column.Index] = e.Column
		case *In:
			seen[e.Column.Index] = e.Column
		case *InPrefix:
			seen[e.Column.Index] = e.Column
		}
		return true
	})
	out := make([]*schema.Column, 0, len(seen))
	for _, c := range seen {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b *schema.Column) int { return a.Index - b.Index })
	return out
}

// Walk calls fn for e and, while fn returns true, for every node below it, depth first.
func Walk(e Expr, fn func(Expr) bool) {
	if !fn(e) {
		return
	}
	switch e := e.(type) {
	case *And:
		for _, t := range e.Terms {
			Walk(t, fn)
		}
	case *Or:
		for _, t := range e.Terms {
			Walk(t, fn)
		}
	case *Not:
		Walk(e.X, fn)
	}
}

// Compile parses src and binds it to s with the default options.
func Compile(src string, s *schema.Schema) (*Filter, error) {
	return CompileWith(src, s, Options{})
}

// CompileWith parses src and binds it to s.
func CompileWith(src string, s *schema.Schema, opts Options) (*Filter, error) {
	n, err := Parse(src)
	if err != nil {
		return nil, err
	}
	f, err := BindWith(n, s, opts)
	if err != nil {
		return nil, err
	}
	f.Source = src
	return f, nil
}

// Bind types a syntax tree against s with the default options.
func Bind(n Node, s *schema.Schema) (*Filter, error) { return BindWith(n, s, Options{}) }

// BindWith types a syntax tree against s: every column must exist (names are case-insensitive)
// and every literal must fit its column's type. Errors are *ParseError values wrapping ErrColumn
// or ErrType, with the position of the offending column or literal.
func BindWith(n Node, s *schema.Schema, opts Options) (*Filter, error) {
	if s == nil {
		return nil, fmt.Errorf("%w: nil schema", ErrColumn)
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if opts.Constants == nil {
		opts.Constants = DefaultConstants()
	}
	b := binder{s: s, opts: opts}
	root, err := b.bind(n)
	if err != nil {
		return nil, err
	}
	return newFilter(root, s), nil
}

// NewFilter returns a filter for a typed tree built by hand, bound to s. Columns in the tree must
// be columns of s.
func NewFilter(root Expr, s *schema.Schema) (*Filter, error) {
	if err := checkTree(root, s); err != nil {
		return nil, err
	}
	return newFilter(root, s), nil
}

func newFilter(root Expr, s *schema.Schema) *Filter {
	m := compileMatcher(root)
	return &Filter{Root: root, Schema: s, m: m, s: compileSelector(m), recordSize: s.RecordSize}
}

func checkTree(e Expr, s *schema.Schema) error {
	col := func(c *schema.Column) error {
		if c == nil || c.Index < 0 || c.Index >= len(s.Columns) || s.Columns[c.Index] != *c {
			return fmt.Errorf("%w: column %v is not a column of schema %s", ErrColumn, c, s)
		}
		return nil
	}
	val := func(c *schema.Column, v schema.Value) error {
		bits := 8 * c.Size
		fits := v.Type == c.Type
		switch {
		case !fits:
		case c.Type == schema.Bool:
			fits = v.U <= 1
		case c.Type.IsUnsigned():
			fits = bits == 64 || v.U < 1<<bits
		case c.Type.IsSigned():
			fits = bits == 64 || (v.I >= -(1<<(bits-1)) && v.I < 1<<(bits-1))
		case c.Type == schema.String:
			fits = len(v.B) <= c.Size
		case c.Type.IsBytes():
			fits = len(v.B) == c.Size
		}
		if !fits {
			return fmt.Errorf("%w: value %v (%v) does not fit column %q (%s)", ErrType, v, v.Type, c.Name, c.TypeString())
		}
		return nil
	}
	switch e := e.(type) {
	case *And:
		for _, t := range e.Terms {
			if err := checkTree(t, s); err != nil {
				return err
			}
		}
	case *Or:
		for _, t := range e.Terms {
			if err := checkTree(t, s); err != nil {
				return err
			}
		}
	case *Not:
		return checkTree(e.X, s)
	case *True:
	case *Compare:
		if err := col(e.Column); err != nil {
			return err
		}
		if e.Op < OpEq || e.Op > OpGe {
			return fmt.Errorf("%w: invalid operator %d", ErrType, e.Op)
		}
		return val(e.Column, e.Value)
	case *MaskCompare:
		if err := col(e.Column); err != nil {
			return err
		}
		if e.Op < OpEq || e.Op > OpGe {
			return fmt.Errorf("%w: invalid operator %d", ErrType, e.Op)
		}
		if !maskable(e.Column) || (e.Column.Size < 8 && e.Mask >= 1<<(8*e.Column.Size)) {
			return fmt.Errorf("%w: mask %d does not fit column %q (%s)", ErrType, e.Mask, e.Column.Name, e.Column.TypeString())
		}
		return val(e.Column, e.Value)
	case *In:
		if err := col(e.Column); err != nil {
			return err
		}
		for _, v := range e.Values {
			if err := val(e.Column, v); err != nil {
				return err
			}
		}
	case *InPrefix:
		if err := col(e.Column); err != nil {
			return err
		}
		if !e.Column.Type.IsIP() || (e.Column.Type == schema.IPv4) != e.Prefix.Addr().Is4() || e.Prefix.Masked() != e.Prefix {
			return fmt.Errorf("%w: prefix %v does not fit column %q (%s)", ErrType, e.Prefix, e.Column.Name, e.Column.TypeString())
		}
	default:
		return fmt.Errorf("%w: unknown expression %T", ErrType, e)
	}
	return nil
}

type binder struct {
	s    *schema.Schema
	opts Options
}

func (b *binder) bind(n Node) (Expr, error) {
	switch n := n.(type) {
	case *BinaryExpr:
		// Bind a whole chain a && b && c at once: flattening pairwise would copy the terms
		// once per level, quadratic in the chain's length.
		var terms []Expr
		for _, operand := range operands(n, n.Op, nil) {
			e, err := b.bind(operand)
			if err != nil {
				return nil, err
			}
			terms = flatten(terms, n.Op == OpAnd, e)
		}
		if n.Op == OpAnd {
			return &And{Terms: terms}, nil
		}
		return &Or{Terms: terms}, nil
	case *NotExpr:
		x, err := b.bind(n.X)
		if err != nil {
			return nil, err
		}
		return &Not{X: x}, nil
	case *BoolExpr:
		if n.Value {
			return &True{}, nil
		}
		return &Not{X: &True{}}, nil
	case *CompareExpr:
		col, err := b.column(n.Column)
		if err != nil && n.Value.Kind == LitName {
			// tcp == proto: the parser took the name for the column; swap if that fits.
			if c, ok := b.s.Column(n.Value.Str); ok {
				if _, isName := b.opts.Constants[c.Name][strings.ToLower(n.Column.Name)]; isName {
					return b.bind(&CompareExpr{
						Column: Ident{Pos: n.Value.Pos, Name: n.Value.Str},
						Op:     n.Op.Flip(),
						OpPos:  n.OpPos,
						Value:  Literal{Pos: n.Column.Pos, Kind: LitName, Str: n.Column.Name},
					})
				}
			}
		}
		if err != nil {
			return nil, err
		}
		if n.Value.Kind == LitPrefix {
			return nil, b.typeErr(n.Value.Pos, "a CIDR prefix needs 'in', not '%s': write %s in %s", n.Op, n.Column.Name, n.Value)
		}
		v, err := b.value(col, n.Value)
		if err != nil {
			return nil, err
		}
		if n.Mask != nil {
			if !maskable(col) {
				return nil, b.typeErr(n.Mask.Pos, "bit mask on column %q (%s): masks need an unsigned integer column (UCHAR, USHORT, UINT, ULONG)", col.Name, col.TypeString())
			}
			m, err := b.value(col, *n.Mask)
			if err != nil {
				return nil, err
			}
			return &MaskCompare{Column: col, Mask: m.U, Op: n.Op, Value: v}, nil
		}
		return &Compare{Column: col, Op: n.Op, Value: v}, nil
	case *InExpr:
		col, err := b.column(n.Column)
		if err != nil {
			return nil, err
		}
		var terms []Expr
		var in *In
		for _, lit := range n.Values {
			if lit.Kind == LitPrefix {
				p, err := b.prefix(col, lit)
				if err != nil {
					return nil, err
				}
				terms = append(terms, &InPrefix{Column: col, Prefix: p})
				continue
			}
			v, err := b.value(col, lit)
			if err != nil {
				return nil, err
			}
			if in == nil {
				in = &In{Column: col}
				terms = append(terms, in)
			}
			in.Values = append(in.Values, v)
		}
		if len(terms) == 1 {
			return terms[0], nil
		}
		return &Or{Terms: terms}, nil
	}
	return nil, fmt.Errorf("%w: unknown node %T", ErrSyntax, n)
}

// maskable reports whether a column takes a bit mask.
func maskable(c *schema.Column) bool { return c.Type.IsUnsigned() && c.Type != schema.Bool }

// operands appends the operands of a chain of op (a && b && c), in order.
func operands(n Node, op BoolOp, out []Node) []Node {
	if bin, ok := n.(*BinaryExpr); ok && bin.Op == op {
		return operands(bin.Y, op, operands(bin.X, op, out))
	}
	return append(out, n)
}

// flatten appends e to terms, splicing in its terms if it is itself an *And (for and) or an
// *Or (for or).
func flatten(terms []Expr, and bool, e Expr) []Expr {
	switch e := e.(type) {
	case *And:
		if and {
			return append(terms, e.Terms...)
		}
	case *Or:
		if !and {
			return append(terms, e.Terms...)
		}
	}
	return append(terms, e)
}

func (b *binder) typeErr(pos Pos, format string, args ...any) error {
	return &ParseError{Pos: pos, Msg: fmt.Sprintf(format, args...), Kind: ErrType}
}

func (b *binder) column(id Ident) (*schema.Column, error) {
	c, ok := b.s.Column(id.Name)
	if !ok {
		return nil, &ParseError{Pos: id.Pos, Kind: ErrColumn, Msg: fmt.Sprintf("unknown column %q", id.Name)}
	}
	return c, nil
}

// value converts a literal to a value of the column's type.
func (b *binder) value(c *schema.Column, lit Literal) (schema.Value, error) {
	t := c.Type
	bad := func(format string, args ...any) (schema.Value, error) {
		return schema.Value{}, b.typeErr(lit.Pos, "%s literal %s does not fit column %q (%s): %s",
			lit.Kind, lit, c.Name, c.TypeString(), fmt.Sprintf(format, args...))
	}
	switch lit.Kind {
	case LitName:
		names := b.opts.Constants[c.Name]
		if u, ok := names[strings.ToLower(lit.Str)]; ok {
			return b.value(c, Literal{Pos: lit.Pos, Kind: LitInt, Uint: u})
		}
		if _, isColumn := b.s.Column(lit.Str); isColumn {
			return schema.Value{}, b.typeErr(lit.Pos, "cannot compare column %q with column %q: the right side must be a literal", c.Name, lit.Str)
		}
		if len(names) == 0 {
			return schema.Value{}, b.typeErr(lit.Pos, "unknown name %q: column %q (%s) has no named constants (quote a string, or write a number)", lit.Str, c.Name, c.TypeString())
		}
		known := make([]string, 0, len(names))
		for k := range names {
			known = append(known, k)
		}
		slices.Sort(known)
		return schema.Value{}, b.typeErr(lit.Pos, "unknown name %q for column %q (known: %s)", lit.Str, c.Name, strings.Join(known, ", "))
	case LitInt:
		switch {
		case t == schema.Bool:
			if lit.Neg || lit.Uint > 1 {
				return bad("BOOL takes true, false, 0 or 1")
			}
			return schema.UintValue(t, lit.Uint), nil
		case t.IsUnsigned():
			bits := 8 * c.Size
			if lit.Neg || (bits < 64 && lit.Uint >= 1<<bits) {
				return bad("out of range 0..%d", uint64(math.MaxUint64)>>(64-bits))
			}
			return schema.UintValue(t, lit.Uint), nil
		case t.IsSigned():
			bits := 8 * c.Size
			limit := uint64(1) << (bits - 1) // magnitude of the minimum
			if (lit.Neg && lit.Uint > limit) || (!lit.Neg && lit.Uint >= limit) {
				return bad("out of range %d..%d", -int64(limit-1)-1, int64(limit-1))
			}
			v := int64(lit.Uint)
			if lit.Neg {
				v = -v // wraps correctly for -2^63
			}
			return schema.IntValue(t, v), nil
		case t.IsFloat():
			f := float64(lit.Uint)
			if lit.Neg {
				f = -f
			}
			return schema.FloatValue(t, f), nil
		}
		return bad("numbers compare only with numeric and BOOL columns")
	case LitFloat:
		switch {
		case t == schema.Float:
			if math.Abs(lit.Float) > math.MaxFloat32 {
				return bad("out of range for a 32-bit float")
			}
			return schema.FloatValue(t, lit.Float), nil
		case t == schema.Double:
			return schema.FloatValue(t, lit.Float), nil
		case t.IsSigned() || t.IsUnsigned():
			return bad("an integer column takes integer literals")
		}
		return bad("numbers compare only with numeric columns")
	case LitString:
		switch {
		case t == schema.String:
			if len(lit.Str) > c.Size {
				return bad("string of %d bytes is longer than %d", len(lit.Str), c.Size)
			}
			if strings.IndexByte(lit.Str, 0) >= 0 {
				return bad("string contains a NUL byte, which pads STRING columns")
			}
			return schema.BytesValue(t, []byte(lit.Str)), nil
		case t == schema.Char:
			if len(lit.Str) != 1 {
				return bad("a CHAR column takes a one-byte string")
			}
			return schema.IntValue(t, int64(int8(lit.Str[0]))), nil
		}
		return bad("strings compare only with STRING and CHAR columns")
	case LitBool:
		if t != schema.Bool {
			return bad("true and false compare only with BOOL columns")
		}
		if lit.Bool {
			return schema.UintValue(t, 1), nil
		}
		return schema.UintValue(t, 0), nil
	case LitIPv4:
		switch t {
		case schema.IPv4:
			a := lit.Addr.As4()
			return schema.BytesValue(t, a[:]), nil
		case schema.IPv6:
			a := lit.Addr.As16() // IPv4-mapped, as schema stores IPv4 addresses in IPV6 columns
			return schema.BytesValue(t, a[:]), nil
		}
		return bad("addresses compare only with IPV4 and IPV6 columns")
	case LitIPv6:
		switch t {
		case schema.IPv6:
			a := lit.Addr.As16()
			return schema.BytesValue(t, a[:]), nil
		case schema.IPv4:
			if lit.Addr.Is4In6() {
				a := lit.Addr.Unmap().As4()
				return schema.BytesValue(t, a[:]), nil
			}
			return bad("an IPv6 address does not fit an IPV4 column")
		}
		return bad("addresses compare only with IPV4 and IPV6 columns")
	case LitMAC:
		if t != schema.MAC {
			return bad("MAC addresses compare only with MAC columns")
		}
		return schema.BytesValue(t, slices.Clone(lit.MAC[:])), nil
	}
	return bad("unsupported literal")
}

// prefix converts a CIDR literal to a prefix in the column's address family.
func (b *binder) prefix(c *schema.Column, lit Literal) (netip.Prefix, error) {
	p := lit.Prefix
	switch c.Type {
	case schema.IPv4:
		if p.Addr().Is4() {
			return p, nil
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96), nil
		}
		return netip.Prefix{}, b.typeErr(lit.Pos, "IPv6 prefix %s does not fit IPV4 column %q", p, c.Name)
	case schema.IPv6:
		if p.Addr().Is4() {
			return netip.PrefixFrom(netip.AddrFrom16(p.Addr().As16()), p.Bits()+96), nil
		}
		return p, nil
	}
	return netip.Prefix{}, b.typeErr(lit.Pos, "CIDR prefix %s on column %q (%s): prefixes need an IPV4 or IPV6 column", p, c.Name, c.TypeString())
}
