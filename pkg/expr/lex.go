package expr

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

type tokKind uint8

const (
	tokEOF tokKind = iota
	tokIdent
	tokLiteral // number, string, address, prefix, MAC; the value is in token.lit
	tokLParen
	tokRParen
	tokComma
	tokStar
	tokAmp // & (bit mask)
	tokCmp // comparison operator; the operator is in token.op
	tokAnd // && or and
	tokOr  // || or or
	tokNot // ! or not
	tokIn
	tokTrue
	tokFalse
)

type token struct {
	kind tokKind
	off  int    // byte offset of the first character
	text string // source text of the token
	op   Op     // tokCmp
	lit  Literal
}

// describe returns the token for an error message: "')'", "end of expression", "identifier foo".
func (t token) describe() string {
	switch t.kind {
	case tokEOF:
		return "end of expression"
	case tokIdent:
		return "identifier " + strconv.Quote(t.text)
	case tokLiteral:
		return "literal " + t.text
	}
	return "'" + t.text + "'"
}

var keywords = map[string]tokKind{
	"and": tokAnd, "or": tokOr, "not": tokNot, "in": tokIn, "true": tokTrue, "false": tokFalse,
}

// lexer splits expression text into tokens. It is not safe for concurrent use.
type lexer struct {
	src   string
	off   int
	lines []int // offsets where lines 2, 3, ... start; computed on first use
}

func newLexer(src string) *lexer { return &lexer{src: src} }

// pos converts a byte offset to a Pos.
func (lx *lexer) pos(off int) Pos {
	if lx.lines == nil {
		lx.lines = []int{}
		for i := 0; i < len(lx.src); i++ {
			if lx.src[i] == '\n' {
				lx.lines = append(lx.lines, i+1)
			}
		}
	}
	line := sort.SearchInts(lx.lines, off+1) // lines starting at or before off
	start := 0
	if line > 0 {
		start = lx.lines[line-1]
	}
	return Pos{Offset: off, Line: line + 1, Col: off - start + 1}
}

func (lx *lexer) errorf(off int, format string, args ...any) *ParseError {
	return &ParseError{Pos: lx.pos(off), Msg: fmt.Sprintf(format, args...), Kind: ErrSyntax}
}

func isSpace(c byte) bool    { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
func isDigit(c byte) bool    { return c >= '0' && c <= '9' }
func isLetter(c byte) bool   { return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') }
func isHex(c byte) bool      { return isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') }
func isWordByte(c byte) bool { return isLetter(c) || isDigit(c) || c == '.' || c == ':' }

// next returns the next token.
func (lx *lexer) next() (token, error) {
	for lx.off < len(lx.src) && isSpace(lx.src[lx.off]) {
		lx.off++
	}
	start := lx.off
	if start >= len(lx.src) {
		return token{kind: tokEOF, off: start}, nil
	}
	c := lx.src[start]
	two := ""
	if start+1 < len(lx.src) {
		two = lx.src[start : start+2]
	}
	simple := func(k tokKind, n int) (token, error) {
		lx.off += n
		return token{kind: k, off: start, text: lx.src[start:lx.off]}, nil
	}
	cmp := func(op Op, n int) (token, error) {
		lx.off += n
		return token{kind: tokCmp, off: start, text: lx.src[start:lx.off], op: op}, nil
	}
	switch {
	case two == "<=":
		return cmp(OpLe, 2)
	case two == ">=":
		return cmp(OpGe, 2)
	case two == "==":
		return cmp(OpEq, 2)
	case two == "!=":
		return cmp(OpNe, 2)
	case two == "&&":
		return simple(tokAnd, 2)
	case two == "||":
		return simple(tokOr, 2)
	case c == '<':
		return cmp(OpLt, 1)
	case c == '>':
		return cmp(OpGt, 1)
	case c == '=':
		return cmp(OpEq, 1)
	case c == '!':
		return simple(tokNot, 1)
	case c == '(':
		return simple(tokLParen, 1)
	case c == ')':
		return simple(tokRParen, 1)
	case c == ',':
		return simple(tokComma, 1)
	case c == '*':
		return simple(tokStar, 1)
	case c == '&':
		return simple(tokAmp, 1)
	case c == '|':
		return token{}, lx.errorf(start, "unexpected '|' (use '||' or 'or')")
	case c == '"' || c == '\'':
		return lx.lexString()
	case macDashAt(lx.src, start):
		lx.off += 17
		return lx.lexAddress(start, lx.src[start:lx.off])
	case isLetter(c):
		end := start
		for end < len(lx.src) && (isLetter(lx.src[end]) || isDigit(lx.src[end])) {
			end++
		}
		word := lx.src[start:end]
		if end < len(lx.src) && lx.src[end] == ':' {
			return lx.lexWord(start) // IPv6 address or MAC such as fe80::1, aa:bb:...
		}
		lx.off = end
		if k, ok := keywords[strings.ToLower(word)]; ok {
			return token{kind: k, off: start, text: word}, nil
		}
		return token{kind: tokIdent, off: start, text: word}, nil
	case isDigit(c) || c == ':' || (c == '.' && start+1 < len(lx.src) && isDigit(lx.src[start+1])):
		return lx.lexWord(start)
	case c == '-':
		if start+1 < len(lx.src) && (isDigit(lx.src[start+1]) || lx.src[start+1] == '.') {
			return lx.lexWord(start)
		}
		return token{}, lx.errorf(start, "unexpected '-' (only number literals take a sign)")
	}
	r, _ := utf8.DecodeRuneInString(lx.src[start:])
	return token{}, lx.errorf(start, "unexpected character %q", r)
}

// macDashAt reports whether a MAC address in the dashed form 00-1b-21-aa-bb-cc starts at off.
func macDashAt(s string, off int) bool {
	if len(s)-off < 17 {
		return false
	}
	for i := range 17 {
		c := s[off+i]
		if i%3 == 2 {
			if c != '-' {
				return false
			}
		} else if !isHex(c) {
			return false
		}
	}
	return off+17 == len(s) || !isWordByte(s[off+17])
}

// lexWord scans a number, address, prefix or colon MAC starting at start.
func (lx *lexer) lexWord(start int) (token, error) {
	end := start
	if lx.src[end] == '-' {
		end++
	}
	hexPrefix := end+1 < len(lx.src) && lx.src[end] == '0' && (lx.src[end+1] == 'x' || lx.src[end+1] == 'X')
	for end < len(lx.src) {
		c := lx.src[end]
		if isWordByte(c) {
			end++
			continue
		}
		// Exponent sign: 1e-5, 0x1p+3.
		if (c == '+' || c == '-') && end > start {
			p := lx.src[end-1]
			if (!hexPrefix && (p == 'e' || p == 'E')) || (hexPrefix && (p == 'p' || p == 'P')) {
				end++
				continue
			}
		}
		break
	}
	word := lx.src[start:end]
	// Prefix length of a CIDR: 10.0.0.0/8, 2001:db8::/32.
	if end < len(lx.src) && lx.src[end] == '/' && strings.ContainsAny(word, ".:") {
		end++
		for end < len(lx.src) && isDigit(lx.src[end]) {
			end++
		}
		word = lx.src[start:end]
	}
	lx.off = end
	if strings.ContainsAny(word, ":/") || strings.Count(word, ".") == 3 && !hexPrefix && !strings.ContainsAny(word, "eE") {
		return lx.lexAddress(start, word)
	}
	return lx.lexNumber(start, word)
}

func (lx *lexer) lexNumber(start int, word string) (token, error) {
	tok := token{kind: tokLiteral, off: start, text: word}
	lit := Literal{Pos: lx.pos(start)}
	digits := word
	if strings.HasPrefix(digits, "-") {
		lit.Neg = true
		digits = digits[1:]
	}
	lower := strings.ToLower(digits)
	based := strings.HasPrefix(lower, "0x") || strings.HasPrefix(lower, "0o") || strings.HasPrefix(lower, "0b")
	isFloat := strings.Contains(lower, ".") ||
		(!based && strings.Contains(lower, "e")) ||
		(strings.HasPrefix(lower, "0x") && strings.Contains(lower, "p"))
	if isFloat {
		f, err := strconv.ParseFloat(digits, 64)
		if err != nil && !(errors.Is(err, strconv.ErrRange) && !math.IsInf(f, 0)) {
			if errors.Is(err, strconv.ErrRange) {
				return tok, lx.errorf(start, "float literal %s out of range", word)
			}
			return tok, lx.errorf(start, "malformed number %s", word)
		}
		lit.Kind = LitFloat
		lit.Float = f
		if lit.Neg {
			lit.Float = -f
			lit.Neg = false
		}
		tok.lit = lit
		return tok, nil
	}
	base := 10
	if based {
		base = 0
	}
	u, err := strconv.ParseUint(digits, base, 64)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			return tok, lx.errorf(start, "integer literal %s out of range (more than 64 bits)", word)
		}
		return tok, lx.errorf(start, "malformed number %s", word)
	}
	if lit.Neg && u > 1<<63 {
		return tok, lx.errorf(start, "integer literal %s out of range (below -2^63)", word)
	}
	lit.Kind = LitInt
	lit.Uint = u
	if u == 0 {
		lit.Neg = false
	}
	tok.lit = lit
	return tok, nil
}

func (lx *lexer) lexAddress(start int, word string) (token, error) {
	tok := token{kind: tokLiteral, off: start, text: word}
	lit := Literal{Pos: lx.pos(start)}
	if strings.HasPrefix(word, "-") {
		return tok, lx.errorf(start, "malformed literal %s: addresses take no sign", word)
	}
	if mac, ok := parseMAC(word); ok {
		lit.Kind = LitMAC
		lit.MAC = mac
		tok.lit = lit
		return tok, nil
	}
	if strings.Contains(word, "/") {
		p, err := netip.ParsePrefix(word)
		if err != nil {
			return tok, lx.errorf(start, "malformed CIDR prefix %s", word)
		}
		if p.Masked() != p {
			return tok, lx.errorf(start, "CIDR prefix %s has host bits set (did you mean %s?)", word, p.Masked())
		}
		lit.Kind = LitPrefix
		lit.Prefix = p
		tok.lit = lit
		return tok, nil
	}
	a, err := netip.ParseAddr(word)
	if err != nil {
		what := "IPv6 address"
		if !strings.Contains(word, ":") {
			what = "IPv4 address"
		} else if !strings.Contains(word, "::") && strings.Count(word, ":") < 7 {
			what = "IPv6 or MAC address"
		}
		return tok, lx.errorf(start, "malformed %s %s", what, word)
	}
	lit.Kind = LitIPv4
	if a.Is6() {
		lit.Kind = LitIPv6
	}
	lit.Addr = a
	tok.lit = lit
	return tok, nil
}

// parseMAC parses 00:1b:21:aa:bb:cc or 00-1b-21-aa-bb-cc.
func parseMAC(s string) (mac [6]byte, ok bool) {
	if len(s) != 17 {
		return mac, false
	}
	sep := s[2]
	if sep != ':' && sep != '-' {
		return mac, false
	}
	for i := range 6 {
		if i > 0 && s[3*i-1] != sep {
			return mac, false
		}
		hi, lo := s[3*i], s[3*i+1]
		if !isHex(hi) || !isHex(lo) {
			return mac, false
		}
		mac[i] = unhex(hi)<<4 | unhex(lo)
	}
	return mac, true
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

func (lx *lexer) lexString() (token, error) {
	start := lx.off
	quote := lx.src[start]
	var b []byte
	i := start + 1
	for {
		if i >= len(lx.src) {
			return token{}, lx.errorf(start, "unterminated string literal")
		}
		c := lx.src[i]
		if c == quote {
			i++
			break
		}
		if c != '\\' {
			b = append(b, c)
			i++
			continue
		}
		if i+1 >= len(lx.src) {
			return token{}, lx.errorf(start, "unterminated string literal")
		}
		switch e := lx.src[i+1]; e {
		case '\\', '"', '\'':
			b = append(b, e)
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case '0':
			b = append(b, 0)
		case 'x':
			if i+3 >= len(lx.src) || !isHex(lx.src[i+2]) || !isHex(lx.src[i+3]) {
				return token{}, lx.errorf(i, `malformed escape: \x needs two hex digits`)
			}
			b = append(b, unhex(lx.src[i+2])<<4|unhex(lx.src[i+3]))
			i += 2
		default:
			r, _ := utf8.DecodeRuneInString(lx.src[i+1:])
			return token{}, lx.errorf(i, "unknown escape \\%c in string literal", r)
		}
		i += 2
	}
	lx.off = i
	return token{kind: tokLiteral, off: start, text: lx.src[start:i],
		lit: Literal{Pos: lx.pos(start), Kind: LitString, Str: string(b)}}, nil
}

// quoteString returns s as a double-quoted literal that lexString decodes back to s.
func quoteString(s string) string {
	const hexDigits = "0123456789abcdef"
	b := make([]byte, 0, len(s)+2)
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '\r':
			b = append(b, '\\', 'r')
		case c == '\t':
			b = append(b, '\\', 't')
		case c < 0x20 || c >= 0x7f:
			b = append(b, '\\', 'x', hexDigits[c>>4], hexDigits[c&15])
		default:
			b = append(b, c)
		}
	}
	return string(append(b, '"'))
}
