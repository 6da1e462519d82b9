package expr

import (
	"bytes"
	"math"
	"slices"

	"github.com/confluo-go/confluo/pkg/schema"
)

// KeyRange is an inclusive range [Lo, Hi] of a column's order-preserving index keys (the bytes of
// schema's Column.AppendKey and Column.AppendValueKey; both ends have the column's size). An index
// narrows a query to the keys in the ranges; the filter's predicate still decides, since a range
// may hold keys that do not match (a NaN, for example). Ranges returned by this package are not
// shared, and are safe for concurrent reads.
type KeyRange struct {
	Lo, Hi []byte
}

func (r KeyRange) String() string { return "[" + hexKey(r.Lo) + ", " + hexKey(r.Hi) + "]" }

func hexKey(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

// Contains reports whether key is in the range.
func (r KeyRange) Contains(key []byte) bool {
	return bytes.Compare(r.Lo, key) <= 0 && bytes.Compare(key, r.Hi) <= 0
}

func minKey(size int) []byte { return make([]byte, size) }

func maxKey(size int) []byte { return bytes.Repeat([]byte{0xff}, size) }

// incKey returns key+1 as a big-endian number, or ok=false if key is the maximum.
func incKey(key []byte) ([]byte, bool) {
	k := slices.Clone(key)
	for i := len(k) - 1; i >= 0; i-- {
		k[i]++
		if k[i] != 0 {
			return k, true
		}
	}
	return nil, false
}

// decKey returns key-1 as a big-endian number, or ok=false if key is the minimum.
func decKey(key []byte) ([]byte, bool) {
	k := slices.Clone(key)
	for i := len(k) - 1; i >= 0; i-- {
		k[i]--
		if k[i] != 0xff {
			return k, true
		}
	}
	return nil, false
}

// equalKeys returns the key range of the values equal to v: one key, except that a float zero
// equals both -0 and +0, whose keys are adjacent.
func equalKeys(c *schema.Column, v schema.Value) (lo, hi []byte) {
	if c.Type.IsFloat() && v.F == 0 {
		neg, pos := v, v
		neg.F = negZero
		pos.F = 0
		return c.AppendValueKey(nil, neg), c.AppendValueKey(nil, pos)
	}
	k := c.AppendValueKey(nil, v)
	return k, k
}

var negZero = math.Copysign(0, -1)

// KeyRanges returns the sorted, disjoint key ranges that hold every record matching the
// comparison: none (it never matches), one, or two (for !=).
func (e *Compare) KeyRanges() []KeyRange {
	c := e.Column
	eqLo, eqHi := equalKeys(c, e.Value)
	below := func() []KeyRange {
		hi, ok := decKey(eqLo)
		if !ok {
			return nil
		}
		return []KeyRange{{Lo: minKey(c.Size), Hi: hi}}
	}
	above := func() []KeyRange {
		lo, ok := incKey(eqHi)
		if !ok {
			return nil
		}
		return []KeyRange{{Lo: lo, Hi: maxKey(c.Size)}}
	}
	switch e.Op {
	case OpEq:
		return []KeyRange{{Lo: eqLo, Hi: eqHi}}
	case OpNe:
		return append(below(), above()...)
	case OpLt:
		return below()
	case OpLe:
		return []KeyRange{{Lo: minKey(c.Size), Hi: eqHi}}
	case OpGt:
		return above()
	case OpGe:
		return []KeyRange{{Lo: eqLo, Hi: maxKey(c.Size)}}
	}
	return nil
}

// KeyRanges returns the sorted, disjoint key ranges of the set's values.
func (e *In) KeyRanges() []KeyRange {
	rs := make([]KeyRange, 0, len(e.Values))
	for _, v := range e.Values {
		lo, hi := equalKeys(e.Column, v)
		rs = append(rs, KeyRange{Lo: lo, Hi: hi})
	}
	return normalize(rs)
}

// KeyRange returns the keys of the prefix's addresses: the subtree of the prefix in a radix index.
func (e *InPrefix) KeyRange() KeyRange {
	if e.Column.Type == schema.IPv4 {
		lo := e.Prefix.Addr().As4()
		hi := lo
		for i := e.Prefix.Bits(); i < 32; i++ {
			hi[i/8] |= 0x80 >> (i % 8)
		}
		return KeyRange{Lo: lo[:], Hi: hi[:]}
	}
	lo, hi := prefixBounds16(e.Prefix)
	return KeyRange{Lo: lo[:], Hi: hi[:]}
}

// ColumnKeyRanges returns key ranges of column c that hold every record matching e, for a planner
// to narrow a scan with an index on c. ok is false when e does not constrain c (every key may
// match). With ok true, the ranges are sorted and disjoint; none means no record can match.
//
// And intersects, Or unites (and needs every term to constrain c), Not is pushed inward (De
// Morgan; a negated float comparison does not constrain c because of NaN).
func ColumnKeyRanges(e Expr, c *schema.Column) (ranges []KeyRange, ok bool) {
	return columnRanges(e, c, false)
}

func sameColumn(a, b *schema.Column) bool {
	return a == b || (a != nil && b != nil && a.Name == b.Name && a.Offset == b.Offset && a.Type == b.Type && a.Size == b.Size)
}

func columnRanges(e Expr, c *schema.Column, negated bool) ([]KeyRange, bool) {
	switch e := e.(type) {
	case *Not:
		return columnRanges(e.X, c, !negated)
	case *True:
		if negated {
			return nil, true
		}
		return nil, false
	case *And, *Or:
		terms := []Expr(nil)
		isAnd := false
		if a, ok := e.(*And); ok {
			terms, isAnd = a.Terms, true
		} else {
			terms = e.(*Or).Terms
		}
		if negated {
			isAnd = !isAnd // De Morgan
		}
		var acc []KeyRange
		have := false
		for _, t := range terms {
			rs, ok := columnRanges(t, c, negated)
			switch {
			case isAnd && !ok:
				continue
			case isAnd && !have:
				acc, have = rs, true
			case isAnd:
				acc = intersect(acc, rs)
			case !ok:
				return nil, false
			default:
				acc = normalize(append(acc, rs...))
				have = true
			}
		}
		return acc, have
	case *Compare:
		if !sameColumn(e.Column, c) {
			return nil, false
		}
		if !negated {
			return e.KeyRanges(), true
		}
		if c.Type.IsFloat() {
			return nil, false
		}
		return (&Compare{Column: e.Column, Op: e.Op.Negate(), Value: e.Value}).KeyRanges(), true
	case *In:
		if !sameColumn(e.Column, c) {
			return nil, false
		}
		if !negated {
			return e.KeyRanges(), true
		}
		if c.Type.IsFloat() {
			return nil, false
		}
		return complement(e.KeyRanges(), c.Size), true
	case *InPrefix:
		if !sameColumn(e.Column, c) {
			return nil, false
		}
		rs := []KeyRange{e.KeyRange()}
		if negated {
			return complement(rs, c.Size), true
		}
		return rs, true
	}
	return nil, false
}

// normalize sorts ranges and merges overlapping and adjacent ones.
func normalize(rs []KeyRange) []KeyRange {
	slices.SortFunc(rs, func(a, b KeyRange) int { return bytes.Compare(a.Lo, b.Lo) })
	out := rs[:0]
	for _, r := range rs {
		if n := len(out); n > 0 {
			last := &out[n-1]
			next, ok := incKey(last.Hi)
			if !ok || bytes.Compare(r.Lo, next) <= 0 {
				if bytes.Compare(r.Hi, last.Hi) > 0 {
					last.Hi = r.Hi
				}
				continue
			}
		}
		out = append(out, r)
	}
	return out
}

// intersect intersects two sorted, disjoint range lists.
func intersect(a, b []KeyRange) []KeyRange {
	var out []KeyRange
	for i, j := 0, 0; i < len(a) && j < len(b); {
		lo, hi := a[i].Lo, a[i].Hi
		if bytes.Compare(b[j].Lo, lo) > 0 {
			lo = b[j].Lo
		}
		if bytes.Compare(b[j].Hi, hi) < 0 {
			hi = b[j].Hi
		}
		if bytes.Compare(lo, hi) <= 0 {
			out = append(out, KeyRange{Lo: lo, Hi: hi})
		}
		if bytes.Compare(a[i].Hi, b[j].Hi) < 0 {
			i++
		} else {
			j++
		}
	}
	return out
}

// complement returns the keys of the given size not in the sorted, disjoint ranges.
func complement(rs []KeyRange, size int) []KeyRange {
	var out []KeyRange
	next := minKey(size)
	for _, r := range rs {
		if bytes.Compare(next, r.Lo) < 0 {
			hi, _ := decKey(r.Lo)
			out = append(out, KeyRange{Lo: next, Hi: hi})
		}
		n, ok := incKey(r.Hi)
		if !ok {
			return out
		}
		next = n
	}
	return append(out, KeyRange{Lo: next, Hi: maxKey(size)})
}
