// Package expr is Confluo-Go's filter expression language: a lexer and recursive-descent parser for
// filter, aggregate and trigger expressions, a binder that types a filter against a schema, and a
// fast, allocation-free matcher for records of that schema.
//
// Filter grammar (keywords are case-insensitive; && binds tighter than ||; ! binds tightest):
//
//	expr      = and { ("||" | "or") and }
//	and       = unary { ("&&" | "and") unary }
//	unary     = ("!" | "not") unary | "(" expr ")" | "true" | "false" | predicate
//	predicate = column op literal | literal op column
//	          | column "&" integer op literal        (bit mask, unsigned integer columns)
//	          | column ["not"] "in" ( "(" literal { "," literal } ")" | literal )
//	op        = "<" | "<=" | ">" | ">=" | "==" | "=" | "!="
//	literal   = integer (decimal, 0x hex, 0o octal, 0b binary, optional "-"; 010 is ten)
//	          | float (1.5, .5, 1e-3, -2.0) | "string" | 'string' | true | false
//	          | IPv4 (10.0.0.1) | IPv6 (fe80::1) | CIDR prefix (10.0.0.0/8, 2001:db8::/32)
//	          | MAC (00:1b:21:aa:bb:cc or 00-1b-21-aa-bb-cc) | name (tcp, udp, ...)
//
// Strings take the escapes \\ \" \' \n \r \t \0 and \xHH. A name literal is a named constant of the
// column it is compared with: by default the columns proto, ip_proto and protocol know the IP
// protocol names (tcp=6, udp=17, icmp=1, icmpv6=58, gre=47, ...) and eth_type/ethertype know
// ipv4, ipv6, arp and vlan; callers can register their own with Options.Constants. A name may
// also come first: tcp == proto.
//
// Use:
//
//	f, err := expr.Compile("src_ip in 10.0.0.0/8 && (dport = 80 or dport = 443)", s)
//	if err != nil { ... } // *ParseError with the position and the reason
//	for rec := range records { if f.Match(rec) { ... } }
//
// [Parse] gives the untyped syntax tree ([Node]), whose String method prints canonical text that
// parses back to an equal tree. [Bind] (or [Compile]) checks every column and literal against the
// schema and returns a [Filter] whose typed tree ([Expr]: [And], [Or], [Not], [Compare],
// [MaskCompare], [In], [InPrefix], [True]) a query planner can walk; [ColumnKeyRanges],
// [Compare.KeyRanges], [In.KeyRanges] and [InPrefix.KeyRange] give the ranges in the column's
// order-preserving index key bytes. Literals are converted to the column's type and compared in
// that type: on a FLOAT column, f > 0.1 compares against float32(0.1).
//
// Column names are case-insensitive. FLOAT and DOUBLE comparisons follow IEEE 754: -0 equals 0
// and a NaN in a record satisfies only != (so !(f < 1) holds for NaN while f >= 1 does not).
// STRING columns compare byte-wise on the NUL-padded field ("ab" < "abc" < "b"); IPV4, IPV6 and
// MAC compare in network byte order; an IPv4 literal or prefix on an IPV6 column means the
// IPv4-mapped address (::ffff:a.b.c.d), as the schema package stores it.
//
// Aggregates and triggers (function names and keywords case-insensitive):
//
//	aggregate = ("SUM" | "MIN" | "MAX" | "COUNT" | "AVG") "(" column ")" | "COUNT" "(" "*" ")"
//	trigger   = aggregate-name op number
//
// [ParseAggregate] and [CompileAggregate] parse (and check) the first, [ParseTrigger] the second.
//
// Nodes, typed trees, filters, aggregates and triggers are immutable once built and safe for
// concurrent use. Filter.Match never allocates; Filter.Select evaluates a batch of records at once
// (indexes of the matches, the same answer as Match) and does not allocate either.
package expr

import (
	"errors"
	"fmt"
)

// Sentinel errors. Errors in expression text are *ParseError values that wrap ErrSyntax, ErrColumn
// or ErrType; the other errors wrap one of these sentinels with %w.
var (
	// ErrSyntax is a malformed expression.
	ErrSyntax = errors.New("expr: syntax error")
	// ErrColumn is an unknown column.
	ErrColumn = errors.New("expr: unknown column")
	// ErrType is a literal that does not fit its column, or an operation the column's type lacks.
	ErrType = errors.New("expr: type mismatch")
	// ErrOptions is an invalid Options value.
	ErrOptions = errors.New("expr: invalid options")
)

// MaxSourceLen is the longest expression accepted, in bytes.
const MaxSourceLen = 1 << 16

// maxDepth bounds the nesting of parentheses and prefix operators, so that hostile input cannot
// exhaust the stack.
const maxDepth = 256

// Pos is a position in the expression text. It is a plain value.
type Pos struct {
	Offset int // byte offset, from 0
	Line   int // line, from 1
	Col    int // byte column in the line, from 1
}

func (p Pos) String() string { return fmt.Sprintf("%d:%d", p.Line, p.Col) }

// ParseError is an error in an expression, with the position it was found at. It is returned both
// for syntax errors and for binding errors (unknown column, literal that does not fit). It is
// immutable once returned and safe for concurrent use.
type ParseError struct {
	Pos Pos
	Msg string
	// Kind is ErrSyntax, ErrColumn or ErrType; errors.Is(err, Kind) holds.
	Kind error
}

func (e *ParseError) Error() string { return fmt.Sprintf("expr: %s: %s", e.Pos, e.Msg) }

// Unwrap returns the error's Kind.
func (e *ParseError) Unwrap() error { return e.Kind }

// Op is a comparison operator.
type Op uint8

// The comparison operators.
const (
	OpInvalid Op = iota
	OpEq         // ==  (also written =)
	OpNe         // !=
	OpLt         // <
	OpLe         // <=
	OpGt         // >
	OpGe         // >=
)

var opText = [...]string{OpInvalid: "?", OpEq: "==", OpNe: "!=", OpLt: "<", OpLe: "<=", OpGt: ">", OpGe: ">="}

func (o Op) String() string {
	if int(o) < len(opText) {
		return opText[o]
	}
	return "?"
}

// Flip returns the operator with its operands swapped: a < b is b > a.
func (o Op) Flip() Op {
	switch o {
	case OpLt:
		return OpGt
	case OpLe:
		return OpGe
	case OpGt:
		return OpLt
	case OpGe:
		return OpLe
	}
	return o
}

// Negate returns the operator that holds exactly when o does not (for totally ordered values).
func (o Op) Negate() Op {
	switch o {
	case OpEq:
		return OpNe
	case OpNe:
		return OpEq
	case OpLt:
		return OpGe
	case OpLe:
		return OpGt
	case OpGt:
		return OpLe
	case OpGe:
		return OpLt
	}
	return o
}

// EvalFloat applies o to two float64 values.
func (o Op) EvalFloat(a, b float64) bool {
	switch o {
	case OpEq:
		return a == b
	case OpNe:
		return a != b
	case OpLt:
		return a < b
	case OpLe:
		return a <= b
	case OpGt:
		return a > b
	case OpGe:
		return a >= b
	}
	return false
}
