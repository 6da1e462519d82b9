package multilog

import (
	"fmt"
	"strings"
	"time"

	"github.com/confluo-go/confluo/pkg/expr"
	"github.com/confluo-go/confluo/pkg/schema"
)

// compile compiles a filter expression for the MultiLog's schema; "" (or only spaces) matches
// every record and gives a nil filter.
func (ml *MultiLog) compile(src string) (*expr.Filter, error) {
	if strings.TrimSpace(src) == "" {
		return nil, nil
	}
	f, err := expr.Compile(src, ml.schema)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrExpr, err)
	}
	return f, nil
}

func requestFor(f *expr.Filter, from, to int64, limit int) request {
	q := request{from: from, to: to, limit: limit}
	if f != nil {
		q.m = f
		q.c = condFromExpr(f.Root)
	}
	return q
}

// condFromExpr turns a typed filter tree into the planner's view.
func condFromExpr(e expr.Expr) cond {
	switch e := e.(type) {
	case *expr.And:
		c := condAnd{}
		for _, t := range e.Terms {
			c.kids = append(c.kids, condFromExpr(t))
		}
		return c
	case *expr.Or:
		c := condOr{}
		for _, t := range e.Terms {
			c.kids = append(c.kids, condFromExpr(t))
		}
		return c
	case *expr.Not:
		if _, ok := e.X.(*expr.True); ok {
			return condNone{}
		}
		return condOpaque{}
	case *expr.Compare:
		var op cmpOp
		switch e.Op {
		case expr.OpEq:
			op = cmpEq
		case expr.OpLt:
			op = cmpLt
		case expr.OpLe:
			op = cmpLe
		case expr.OpGt:
			op = cmpGt
		case expr.OpGe:
			op = cmpGe
		default:
			return condOpaque{}
		}
		return condCmp{col: e.Column, op: op, v: e.Value}
	case *expr.In:
		return condIn{col: e.Column, vals: e.Values}
	case *expr.InPrefix:
		p := e.Prefix.Masked()
		var lo []byte
		switch e.Column.Type {
		case schema.IPv4:
			if !p.Addr().Is4() {
				return condOpaque{}
			}
			a := p.Addr().As4()
			lo = a[:]
		case schema.IPv6:
			a := p.Addr().As16()
			lo = a[:]
		default:
			return condOpaque{}
		}
		hi := append([]byte(nil), lo...)
		for bit := p.Bits(); bit < 8*len(hi); bit++ {
			hi[bit/8] |= 0x80 >> (bit % 8)
		}
		return condPrefix{col: e.Column, lo: lo, hi: hi}
	}
	return condOpaque{}
}

// Query returns the records matching filter (an expression, "" for all) with timestamps in
// [from, to) at a new snapshot, in timestamp order, at most limit of them (≤ 0: no limit). A
// zero from or to is unbounded.
func (ml *MultiLog) Query(filter string, from, to time.Time, limit int) (*Rows, error) {
	return ml.Snapshot().Query(filter, from, to, limit)
}

// QueryNanos is Query with bounds in nanoseconds since the epoch (MinTime, MaxTime for
// unbounded).
func (ml *MultiLog) QueryNanos(filter string, from, to int64, limit int) (*Rows, error) {
	return ml.Snapshot().QueryNanos(filter, from, to, limit)
}

// Count returns the number of records matching filter with timestamps in [from, to) at a new
// snapshot.
func (ml *MultiLog) Count(filter string, from, to time.Time) (uint64, error) {
	return ml.Snapshot().Count(filter, from, to)
}

// Query is MultiLog.Query at the snapshot's version.
func (s *Snapshot) Query(filter string, from, to time.Time, limit int) (*Rows, error) {
	return s.QueryNanos(filter, Nanos(from, MinTime), Nanos(to, MaxTime), limit)
}

// QueryNanos is MultiLog.QueryNanos at the snapshot's version.
func (s *Snapshot) QueryNanos(filter string, from, to int64, limit int) (*Rows, error) {
	f, err := s.ml.compile(filter)
	if err != nil {
		return nil, err
	}
	return s.Select(f, from, to, limit), nil
}

// Select runs a compiled filter (nil for all records) at the snapshot's version over
// [from, to) in nanoseconds. A filter bound to a schema other than the MultiLog's (its columns
// would be read at the wrong offsets) returns no rows, and Rows.Err wraps ErrExpr.
func (s *Snapshot) Select(f *expr.Filter, from, to int64, limit int) *Rows {
	if f != nil && f.Schema != s.ml.schema && (f.Schema == nil || !f.Schema.Equal(s.ml.schema)) {
		return &Rows{done: true, run: -1, err: fmt.Errorf("%w: filter %q is bound to schema %v, not the MultiLog's %v", ErrExpr, f.String(), f.Schema, s.ml.schema)}
	}
	return s.ml.rows(s.v, requestFor(f, from, to, limit))
}

// Count is MultiLog.Count at the snapshot's version.
func (s *Snapshot) Count(filter string, from, to time.Time) (uint64, error) {
	return s.CountNanos(filter, Nanos(from, MinTime), Nanos(to, MaxTime))
}

// CountNanos is Count with bounds in nanoseconds.
func (s *Snapshot) CountNanos(filter string, from, to int64) (uint64, error) {
	f, err := s.ml.compile(filter)
	if err != nil {
		return 0, err
	}
	return s.ml.count(s.v, requestFor(f, from, to, 0))
}

// Explain describes how a query would run at the snapshot: "scan" or the index ranges used.
func (s *Snapshot) Explain(filter string) (string, error) {
	f, err := s.ml.compile(filter)
	if err != nil {
		return "", err
	}
	if f == nil {
		return "scan", nil
	}
	p := s.ml.planFor(condFromExpr(f.Root), s.v.NumRecords())
	if p == nil {
		return "scan", nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "index (~%d candidates):", p.est)
	for _, r := range p.ranges {
		fmt.Fprintf(&b, " %s[%x..%x]", r.ix.col.Name, r.lo, r.hi)
	}
	return b.String(), nil
}
