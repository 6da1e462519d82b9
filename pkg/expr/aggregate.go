package expr

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/confluo-go/confluo/pkg/schema"
)

// AggFunc is an aggregate function.
type AggFunc uint8

// The aggregate functions.
const (
	AggInvalid AggFunc = iota
	Sum                // SUM(column): numeric columns only
	Min                // MIN(column): any column, ordered as the column's index keys
	Max                // MAX(column): any column, ordered as the column's index keys
	Count              // COUNT(*) or COUNT(column): the number of records
	Avg                // AVG(column): numeric columns only
)

var aggNames = [...]string{AggInvalid: "INVALID", Sum: "SUM", Min: "MIN", Max: "MAX", Count: "COUNT", Avg: "AVG"}

func (f AggFunc) String() string {
	if int(f) < len(aggNames) {
		return aggNames[f]
	}
	return "INVALID"
}

// Aggregate is a parsed aggregate such as SUM(len) or COUNT(*). It is immutable once returned and
// safe for concurrent use.
type Aggregate struct {
	Func AggFunc
	// ColumnName is the column as written; empty for COUNT(*).
	ColumnName string
	// Column is set by CompileAggregate and BindAggregate: the schema's column, or nil for COUNT(*).
	Column *schema.Column
	// FuncPos and ColumnPos are where the function and the column (or *) are in the source.
	FuncPos, ColumnPos Pos
}

// String returns the canonical text, which ParseAggregate reads back as an equal aggregate.
func (a *Aggregate) String() string {
	name := a.ColumnName
	if name == "" {
		name = "*"
	}
	return a.Func.String() + "(" + name + ")"
}

// ParseAggregate parses "FUNC(column)", FUNC being SUM, MIN, MAX, COUNT or AVG (case-insensitive);
// COUNT also takes *. The column is not checked; use CompileAggregate or BindAggregate for that.
func ParseAggregate(src string) (*Aggregate, error) {
	p, err := newParser(src)
	if err != nil {
		return nil, err
	}
	if p.tok.kind != tokIdent {
		return nil, p.errorf(p.tok.off, "expected aggregate function (SUM, MIN, MAX, COUNT or AVG), found %s", p.tok.describe())
	}
	a := &Aggregate{FuncPos: p.lx.pos(p.tok.off)}
	for f := Sum; f <= Avg; f++ {
		if strings.EqualFold(p.tok.text, f.String()) {
			a.Func = f
		}
	}
	if a.Func == AggInvalid {
		return nil, p.errorf(p.tok.off, "unknown aggregate function %q (want SUM, MIN, MAX, COUNT or AVG)", p.tok.text)
	}
	if err := p.advance(); err != nil {
		return nil, err
	}
	if p.tok.kind != tokLParen {
		return nil, p.errorf(p.tok.off, "expected '(' after %s, found %s", a.Func, p.tok.describe())
	}
	if err := p.advance(); err != nil {
		return nil, err
	}
	a.ColumnPos = p.lx.pos(p.tok.off)
	switch {
	case p.tok.kind == tokStar && a.Func == Count:
	case p.tok.kind == tokStar:
		return nil, p.errorf(p.tok.off, "%s(*) is not allowed: only COUNT takes *", a.Func)
	case p.tok.kind == tokIdent:
		a.ColumnName = p.tok.text
	default:
		return nil, p.errorf(p.tok.off, "expected column name in %s(...), found %s", a.Func, p.tok.describe())
	}
	if err := p.advance(); err != nil {
		return nil, err
	}
	if p.tok.kind != tokRParen {
		return nil, p.errorf(p.tok.off, "expected ')' after %s(%s, found %s", a.Func, a.ColumnName, p.tok.describe())
	}
	if err := p.advance(); err != nil {
		return nil, err
	}
	if p.tok.kind != tokEOF {
		return nil, p.errorf(p.tok.off, "unexpected %s after the aggregate", p.tok.describe())
	}
	return a, nil
}

// CompileAggregate parses an aggregate and binds it to a schema.
func CompileAggregate(src string, s *schema.Schema) (*Aggregate, error) {
	a, err := ParseAggregate(src)
	if err != nil {
		return nil, err
	}
	return BindAggregate(a, s)
}

// BindAggregate checks a parsed aggregate against a schema and returns a copy with Column set.
// An unknown column is an ErrColumn error; SUM or AVG of a STRING, IPV4, IPV6 or MAC column is an
// ErrType error.
func BindAggregate(a *Aggregate, s *schema.Schema) (*Aggregate, error) {
	b := *a
	if a.ColumnName == "" {
		if a.Func != Count {
			return nil, &ParseError{Pos: a.ColumnPos, Kind: ErrSyntax, Msg: fmt.Sprintf("%s needs a column", a.Func)}
		}
		return &b, nil
	}
	c, ok := s.Column(a.ColumnName)
	if !ok {
		return nil, &ParseError{Pos: a.ColumnPos, Kind: ErrColumn, Msg: fmt.Sprintf("unknown column %q in %s", a.ColumnName, a)}
	}
	if (a.Func == Sum || a.Func == Avg) && !c.Type.IsNumeric() {
		return nil, &ParseError{Pos: a.FuncPos, Kind: ErrType,
			Msg: fmt.Sprintf("%s of column %q is not allowed: %s is not a numeric type", a.Func, c.Name, c.TypeString())}
	}
	b.Column = c
	return &b, nil
}

// Trigger is a parsed trigger condition "aggregate op threshold", such as "bytes >= 1e6". It is
// immutable once returned and safe for concurrent use.
type Trigger struct {
	// Aggregate is the aggregate's name as written.
	Aggregate string
	Op        Op
	Threshold float64
	// AggregatePos, OpPos and ThresholdPos are positions in the source.
	AggregatePos, OpPos, ThresholdPos Pos
}

// Eval reports whether an aggregate value fires the trigger: value op threshold.
func (t *Trigger) Eval(value float64) bool { return t.Op.EvalFloat(value, t.Threshold) }

// String returns the canonical text, which ParseTrigger reads back as an equal trigger.
func (t *Trigger) String() string {
	name := t.Aggregate
	if !isPlainName(name) {
		name = quoteString(name)
	}
	return name + " " + t.Op.String() + " " + strconv.FormatFloat(t.Threshold, 'g', -1, 64)
}

// isPlainName reports whether s lexes as one identifier (not a keyword).
func isPlainName(s string) bool {
	if s == "" || !isLetter(s[0]) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isLetter(s[i]) && !isDigit(s[i]) {
			return false
		}
	}
	_, keyword := keywords[strings.ToLower(s)]
	return !keyword && !macDashAt(s, 0)
}

// ParseTrigger parses "aggregate op threshold": an aggregate name (an identifier, or any name as a
// quoted string: "bytes-per-s" >= 1e6), one of < <= > >= == = !=, and a number (integer or float,
// optionally negative).
func ParseTrigger(src string) (*Trigger, error) {
	p, err := newParser(src)
	if err != nil {
		return nil, err
	}
	t := &Trigger{AggregatePos: p.lx.pos(p.tok.off)}
	switch {
	case p.tok.kind == tokIdent:
		t.Aggregate = p.tok.text
	case p.tok.kind == tokLiteral && p.tok.lit.Kind == LitString && p.tok.lit.Str != "":
		t.Aggregate = p.tok.lit.Str
	default:
		return nil, p.errorf(p.tok.off, "expected aggregate name (an identifier or a quoted string), found %s", p.tok.describe())
	}
	if err := p.advance(); err != nil {
		return nil, err
	}
	if p.tok.kind != tokCmp {
		return nil, p.errorf(p.tok.off, "expected comparison operator after %q, found %s", t.Aggregate, p.tok.describe())
	}
	t.Op, t.OpPos = p.tok.op, p.lx.pos(p.tok.off)
	opText := p.tok.text
	if err := p.advance(); err != nil {
		return nil, err
	}
	t.ThresholdPos = p.lx.pos(p.tok.off)
	lit := p.tok.lit
	switch {
	case p.tok.kind == tokLiteral && lit.Kind == LitInt && lit.Neg:
		t.Threshold = -float64(lit.Uint)
	case p.tok.kind == tokLiteral && lit.Kind == LitInt:
		t.Threshold = float64(lit.Uint)
	case p.tok.kind == tokLiteral && lit.Kind == LitFloat:
		t.Threshold = lit.Float
	default:
		return nil, p.errorf(p.tok.off, "expected number after '%s', found %s", opText, p.tok.describe())
	}
	if err := p.advance(); err != nil {
		return nil, err
	}
	if p.tok.kind != tokEOF {
		return nil, p.errorf(p.tok.off, "unexpected %s after the trigger", p.tok.describe())
	}
	return t, nil
}
