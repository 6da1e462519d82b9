package expr

import (
	"fmt"
)

// Parse parses a filter expression into an untyped syntax tree. It returns a nil Node and a
// *ParseError (wrapping ErrSyntax) if and only if the text is not a well-formed expression.
func Parse(src string) (Node, error) {
	p, err := newParser(src)
	if err != nil {
		return nil, err
	}
	n, err := p.parseOr()
	if err != nil {
		return nil, err
	}
	if p.tok.kind == tokAmp {
		return nil, p.errorf(p.tok.off, "unexpected '&' (use '&&' or 'and'; a bit mask goes right after its column: flags & 2 != 0)")
	}
	if p.tok.kind != tokEOF {
		return nil, p.errorf(p.tok.off, "unexpected %s after the expression", p.tok.describe())
	}
	return n, nil
}

type parser struct {
	lx    *lexer
	tok   token // the current token
	depth int
}

func newParser(src string) (*parser, error) {
	p := &parser{lx: newLexer(src)}
	if len(src) > MaxSourceLen {
		return nil, p.errorf(MaxSourceLen, "expression longer than %d bytes", MaxSourceLen)
	}
	if err := p.advance(); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *parser) errorf(off int, format string, args ...any) *ParseError {
	return &ParseError{Pos: p.lx.pos(off), Msg: fmt.Sprintf(format, args...), Kind: ErrSyntax}
}

func (p *parser) advance() error {
	t, err := p.lx.next()
	if err != nil {
		return err
	}
	p.tok = t
	return nil
}

func (p *parser) enter() error {
	p.depth++
	if p.depth > maxDepth {
		return p.errorf(p.tok.off, "expression nested more than %d deep", maxDepth)
	}
	return nil
}

func (p *parser) parseOr() (Node, error) {
	x, err := p.parseAnd()
	if err != nil {
		return nil, err
	}
	for p.tok.kind == tokOr {
		opPos := p.lx.pos(p.tok.off)
		if err := p.advance(); err != nil {
			return nil, err
		}
		y, err := p.parseAnd()
		if err != nil {
			return nil, err
		}
		x = &BinaryExpr{Op: OpOr, OpPos: opPos, X: x, Y: y}
	}
	return x, nil
}

func (p *parser) parseAnd() (Node, error) {
	x, err := p.parseUnary()
	if err != nil {
		return nil, err
	}
	for p.tok.kind == tokAnd {
		opPos := p.lx.pos(p.tok.off)
		if err := p.advance(); err != nil {
			return nil, err
		}
		y, err := p.parseUnary()
		if err != nil {
			return nil, err
		}
		x = &BinaryExpr{Op: OpAnd, OpPos: opPos, X: x, Y: y}
	}
	return x, nil
}

func (p *parser) parseUnary() (Node, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer func() { p.depth-- }()
	switch p.tok.kind {
	case tokNot:
		notPos := p.lx.pos(p.tok.off)
		if err := p.advance(); err != nil {
			return nil, err
		}
		x, err := p.parseUnary()
		if err != nil {
			return nil, err
		}
		return &NotExpr{NotPos: notPos, X: x}, nil
	case tokLParen:
		open := p.tok.off
		if err := p.advance(); err != nil {
			return nil, err
		}
		x, err := p.parseOr()
		if err != nil {
			return nil, err
		}
		if p.tok.kind != tokRParen {
			return nil, p.errorf(p.tok.off, "expected ')' to close '(' at %s, found %s", p.lx.pos(open), p.tok.describe())
		}
		return x, p.advance()
	case tokIdent:
		col := Ident{Pos: p.lx.pos(p.tok.off), Name: p.tok.text}
		if err := p.advance(); err != nil {
			return nil, err
		}
		return p.parsePredicate(col)
	case tokTrue, tokFalse, tokLiteral:
		lit := p.literalOfToken()
		if err := p.advance(); err != nil {
			return nil, err
		}
		if p.tok.kind != tokCmp {
			if lit.Kind == LitBool {
				return &BoolExpr{ValuePos: lit.Pos, Value: lit.Bool}, nil
			}
			return nil, p.errorf(p.tok.off, "expected comparison operator after literal %s, found %s", lit, p.tok.describe())
		}
		op, opPos, opText := p.tok.op, p.lx.pos(p.tok.off), p.tok.text
		if err := p.advance(); err != nil {
			return nil, err
		}
		if p.tok.kind != tokIdent {
			if p.tok.kind == tokLiteral || p.tok.kind == tokTrue || p.tok.kind == tokFalse {
				return nil, p.errorf(p.tok.off, "comparison of two literals: one side must be a column")
			}
			return nil, p.errorf(p.tok.off, "expected column after '%s', found %s", opText, p.tok.describe())
		}
		col := Ident{Pos: p.lx.pos(p.tok.off), Name: p.tok.text}
		if err := p.advance(); err != nil {
			return nil, err
		}
		return &CompareExpr{Column: col, Op: op.Flip(), OpPos: opPos, Value: lit}, nil
	}
	return nil, p.errorf(p.tok.off, "expected column, literal, '!' or '(', found %s", p.tok.describe())
}

// literalOfToken returns the literal of a tokLiteral, tokTrue, tokFalse or (as a name) tokIdent.
func (p *parser) literalOfToken() Literal {
	switch p.tok.kind {
	case tokTrue, tokFalse:
		return Literal{Pos: p.lx.pos(p.tok.off), Kind: LitBool, Bool: p.tok.kind == tokTrue}
	case tokIdent:
		return Literal{Pos: p.lx.pos(p.tok.off), Kind: LitName, Str: p.tok.text}
	}
	return p.tok.lit
}

// parseLiteral parses the literal after an operator or in an in-list; after names what came before.
func (p *parser) parseLiteral(after string) (Literal, error) {
	switch p.tok.kind {
	case tokLiteral, tokTrue, tokFalse, tokIdent:
		lit := p.literalOfToken()
		return lit, p.advance()
	}
	return Literal{}, p.errorf(p.tok.off, "expected literal after %s, found %s", after, p.tok.describe())
}

func (p *parser) parsePredicate(col Ident) (Node, error) {
	switch p.tok.kind {
	case tokAmp:
		// column & mask op literal
		if err := p.advance(); err != nil {
			return nil, err
		}
		if p.tok.kind != tokLiteral || p.tok.lit.Kind != LitInt || p.tok.lit.Neg {
			return nil, p.errorf(p.tok.off, "expected a non-negative integer mask after '%s &', found %s (use '&&' or 'and' for a conjunction)", col.Name, p.tok.describe())
		}
		mask := p.tok.lit
		if err := p.advance(); err != nil {
			return nil, err
		}
		if p.tok.kind != tokCmp {
			return nil, p.errorf(p.tok.off, "expected comparison operator after '%s & %s', found %s", col.Name, mask, p.tok.describe())
		}
		n, err := p.parseCompare(col)
		if err != nil {
			return nil, err
		}
		n.Mask = &mask
		return n, nil
	case tokCmp:
		return p.parseCompare(col)
	case tokIn:
		return p.parseIn(col)
	case tokNot:
		notPos := p.lx.pos(p.tok.off)
		if err := p.advance(); err != nil {
			return nil, err
		}
		if p.tok.kind != tokIn {
			return nil, p.errorf(p.tok.off, "expected 'in' after '%s not', found %s", col.Name, p.tok.describe())
		}
		in, err := p.parseIn(col)
		if err != nil {
			return nil, err
		}
		return &NotExpr{NotPos: notPos, X: in}, nil
	}
	return nil, p.errorf(p.tok.off, "expected comparison operator or 'in' after column %q, found %s", col.Name, p.tok.describe())
}

// parseCompare parses "op literal" after a column.
func (p *parser) parseCompare(col Ident) (*CompareExpr, error) {
	op, opPos, opText := p.tok.op, p.lx.pos(p.tok.off), p.tok.text
	if err := p.advance(); err != nil {
		return nil, err
	}
	lit, err := p.parseLiteral("'" + opText + "'")
	if err != nil {
		return nil, err
	}
	return &CompareExpr{Column: col, Op: op, OpPos: opPos, Value: lit}, nil
}

func (p *parser) parseIn(col Ident) (Node, error) {
	in := &InExpr{Column: col, InPos: p.lx.pos(p.tok.off)}
	if err := p.advance(); err != nil {
		return nil, err
	}
	if p.tok.kind != tokLParen {
		lit, err := p.parseLiteral("'in'")
		if err != nil {
			return nil, err
		}
		in.Values = []Literal{lit}
		return in, nil
	}
	open := p.tok.off
	if err := p.advance(); err != nil {
		return nil, err
	}
	if p.tok.kind == tokRParen {
		return nil, p.errorf(p.tok.off, "empty list after 'in'")
	}
	for {
		after := "','"
		if len(in.Values) == 0 {
			after = "'in ('"
		}
		lit, err := p.parseLiteral(after)
		if err != nil {
			return nil, err
		}
		in.Values = append(in.Values, lit)
		if p.tok.kind == tokRParen {
			return in, p.advance()
		}
		if p.tok.kind != tokComma {
			return nil, p.errorf(p.tok.off, "expected ',' or ')' in the list opened at %s, found %s", p.lx.pos(open), p.tok.describe())
		}
		if err := p.advance(); err != nil {
			return nil, err
		}
	}
}
