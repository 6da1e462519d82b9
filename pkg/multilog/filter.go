package multilog

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"sync/atomic"

	"github.com/confluo-go/confluo/pkg/expr"
	"github.com/confluo-go/confluo/pkg/radix"
	"github.com/confluo-go/confluo/pkg/schema"
)

// Filter is a named filter expression whose matches are logged as they are appended: per shard,
// a radix tree from time bucket (Options.FilterBucket) to the matching records' sequence numbers
// (4 bytes per match). Safe for concurrent use.
//
// Each shard's log is a list of epoch trees (epoch.go), one per run of sequence numbers, so
// that retention drops the matches of deleted records with the epochs that held them.
//
// Invariants:
//
//  1. parts[i].epochs holds, for each time bucket, exactly the sequence numbers of shard i's
//     matching records from parts[i].start on, in increasing order per bucket and epoch, in
//     the epoch of their sequence number; entries below the tail are published before the
//     tail (MultiLog invariant 2). Epochs wholly below the shard's first kept sequence number
//     are dropped; readers skip the deleted entries of the epoch straddling it.
//  2. parts[i].backfill, once set, holds the matches below start (Backfill option), in epochs
//     the same way.
type Filter struct {
	name  string
	f     *expr.Filter
	parts []filterPart
}

type filterPart struct {
	start    atomic.Int64
	epochs   treeList
	backfill treeList // set once the backfill is built (FilterBackfill option)

	// Writer-private: the epoch and the posting list of the bucket being appended to.
	curEpoch  *epochTree
	cur       *radix.Postings
	curBucket int64
	_         [24]byte
}

// memoryBytes estimates the memory of the filter's trees (every shard, backfill included).
func (f *Filter) memoryBytes(m *memoryUse) {
	for i := range f.parts {
		m.add(f.parts[i].epochs.memoryUse())
		m.add(f.parts[i].backfill.memoryUse())
	}
}

// dropBelow drops shard's epochs (and backfill epochs) wholly below seq, the first kept
// sequence number.
func (f *Filter) dropBelow(shard int, seq uint64) {
	f.parts[shard].epochs.dropBelow(seq)
	f.parts[shard].backfill.dropBelow(seq)
}

// eachMatch calls fn with the sequence numbers in [lo, hi) of shard sh's logged matches of f
// in the time buckets [a, b], leaving out records retention deleted: backfill first, then
// epoch by epoch, each in bucket order. It stops when fn returns false.
func (f *Filter) eachMatch(sh *shard, lo, hi uint64, a, b int64, fn func(seq uint32) bool) {
	lo = max(lo, sh.firstKept())
	if lo >= hi || a > b {
		return
	}
	part := &f.parts[sh.id]
	var aKey, bKey [8]byte
	bucketKey(aKey[:0], a)
	bucketKey(bKey[:0], b)
	add := func(seq uint32) bool {
		if uint64(seq) < lo {
			return true
		}
		return fn(seq)
	}
	start := part.start.Load()
	if part.backfill.set() {
		if !part.backfill.rangeKeys(aKey[:], bKey[:], lo, min(uint64(max(start, 0)), hi), add) {
			return
		}
	}
	if start >= 0 {
		part.epochs.rangeKeys(aKey[:], bKey[:], lo, hi, add)
	}
}

func (f *Filter) startOf(shard int) *atomic.Int64 { return &f.parts[shard].start }

// Name returns the filter's name.
func (f *Filter) Name() string { return f.name }

// Expr returns the filter's canonical expression text.
func (f *Filter) Expr() string { return f.f.String() }

// FilterOption changes how AddFilter builds a filter.
type FilterOption func(*filterOptions)

type filterOptions struct{ backfill bool }

// FilterBackfill makes AddFilter also log the matches among records appended before it. The
// backfill runs in the caller's goroutine; writers are not blocked.
func FilterBackfill() FilterOption { return func(o *filterOptions) { o.backfill = true } }

// bucketKey is the radix key of a time bucket: the bucket number, sign-flipped big-endian.
func bucketKey(dst []byte, bucket int64) []byte {
	return appendBE(dst, uint64(bucket)^1<<63, 8)
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// bucketOf returns the time bucket of timestamp ts.
func (ml *MultiLog) bucketOf(ts int64) int64 { return floorDiv(ts, int64(ml.opts.FilterBucket)) }

// AddFilter defines a filter: every record appended after the call that matches expression is
// logged under name. Names are case-sensitive; column names in the expression are not. A bad
// expression or a duplicate name is an error; nothing a filter does can break ingest.
func (ml *MultiLog) AddFilter(name, expression string, options ...FilterOption) error {
	var o filterOptions
	for _, opt := range options {
		opt(&o)
	}
	if err := checkName(name); err != nil {
		return err
	}
	ef, err := expr.Compile(expression, ml.schema)
	if err != nil {
		return fmt.Errorf("%w: filter %q: %w", ErrExpr, name, err)
	}
	f := &Filter{name: name, f: ef, parts: make([]filterPart, len(ml.shards))}
	for i := range f.parts {
		f.parts[i].start.Store(-1)
		f.parts[i].curBucket = math.MinInt64
	}
	ml.mu.Lock()
	cfg := ml.cfg.Load()
	if ml.filterByName(name) != nil {
		ml.mu.Unlock()
		return fmt.Errorf("%w: filter %q", ErrExists, name)
	}
	n := cfg.clone()
	n.filters = append(n.filters, f)
	ml.cfg.Store(n.finish())
	err = ml.persistAddFilter(name, expression)
	ml.mu.Unlock()
	if o.backfill {
		ml.claimIdle(f)
		var key []byte
		for i, sh := range ml.shards {
			start := uint64(f.parts[i].start.Load())
			b := buildTrees{span: ml.epochSpan(), keyLen: 8, limit: start}
			segs := sh.segments()
			for seq := min(sh.firstKept(), start); seq < start; seq++ { // deleted records skipped
				rec := sh.record(segs, seq)
				if ef.Match(rec) {
					key = bucketKey(key[:0], ml.bucketOf(schema.Timestamp(rec)))
					b.insert(key, seq)
				}
			}
			f.parts[i].backfill.store(b.list)
			f.parts[i].backfill.dropBelow(sh.firstKept()) // deleted while the backfill ran
		}
	}
	return err
}

func checkName(name string) error {
	if name == "" || len(name) > 256 {
		return fmt.Errorf("%w: name %q must be 1..256 bytes", ErrExpr, name)
	}
	return nil
}

func (ml *MultiLog) filterByName(name string) *Filter {
	for _, f := range ml.cfg.Load().filters {
		if f.name == name {
			return f
		}
	}
	return nil
}

// RemoveFilter drops a filter. A filter that an aggregate uses cannot be removed.
func (ml *MultiLog) RemoveFilter(name string) error {
	ml.mu.Lock()
	defer ml.mu.Unlock()
	cfg := ml.cfg.Load()
	i := slices.IndexFunc(cfg.filters, func(f *Filter) bool { return f.name == name })
	if i < 0 {
		return fmt.Errorf("%w: filter %q", ErrNotFound, name)
	}
	for _, a := range cfg.aggs {
		if a.filter == cfg.filters[i] {
			return fmt.Errorf("%w: filter %q is used by aggregate %q", ErrExists, name, a.name)
		}
	}
	n := cfg.clone()
	n.filters = slices.Delete(n.filters, i, i+1)
	ml.cfg.Store(n.finish())
	return ml.persistRemoveFilter(name)
}

// Filters returns the filters' names.
func (ml *MultiLog) Filters() []string {
	var names []string
	for _, f := range ml.cfg.Load().filters {
		names = append(names, f.name)
	}
	return names
}

// QueryFilter returns the records a filter logged with timestamps in [from, to) at a new
// snapshot, in timestamp order, optionally narrowed by an extra expression ("" for none).
func (ml *MultiLog) QueryFilter(name string, from, to int64, extra string, limit int) (*Rows, error) {
	return ml.Snapshot().QueryFilter(name, from, to, extra, limit)
}

// QueryFilter is MultiLog.QueryFilter at the snapshot's version.
func (s *Snapshot) QueryFilter(name string, from, to int64, extra string, limit int) (*Rows, error) {
	f := s.ml.filterByName(name)
	if f == nil {
		return nil, fmt.Errorf("%w: filter %q", ErrNotFound, name)
	}
	ef, err := s.ml.compile(extra)
	if err != nil {
		return nil, err
	}
	q := request{from: from, to: to, limit: limit}
	if ef != nil {
		q.m = ef
	}
	r := &Rows{limit: limit, run: -1}
	for i, sh := range s.ml.shards {
		tail := s.v.tails[i]
		if tail == 0 {
			continue
		}
		seqs := s.ml.filterSeqs(f, sh, tail, q)
		r.curs = append(r.curs, s.ml.sortedList(sh, tail, seqs))
	}
	r.start()
	return r, nil
}

// CountFilter returns the number of records a filter logged in [from, to) at the snapshot.
func (s *Snapshot) CountFilter(name string, from, to int64) (uint64, error) {
	f := s.ml.filterByName(name)
	if f == nil {
		return 0, fmt.Errorf("%w: filter %q", ErrNotFound, name)
	}
	var n uint64
	for i, sh := range s.ml.shards {
		n += uint64(len(s.ml.filterSeqs(f, sh, s.v.tails[i], request{from: from, to: to})))
	}
	return n, nil
}

// sortedList orders a shard's matches (in sequence order) by timestamp.
func (ml *MultiLog) sortedList(sh *shard, tail uint64, seqs []uint32) cursor {
	segs := sh.segments()
	if sh.unorderedFrom.Load() < tail {
		slices.SortStableFunc(seqs, func(a, b uint32) int {
			return cmp.Compare(schema.Timestamp(sh.record(segs, uint64(a))), schema.Timestamp(sh.record(segs, uint64(b))))
		})
	}
	return &listCursor{sh: sh, segs: segs, seqs: seqs}
}

// filterSeqs returns the shard's logged matches of f below tail with timestamps in
// [q.from, q.to) that also pass q.m, in sequence order. Records retention deleted are left out.
func (ml *MultiLog) filterSeqs(f *Filter, sh *shard, tail uint64, q request) []uint32 {
	if tail == 0 || q.from >= q.to {
		return nil
	}
	lo, hi := ml.bucketOf(q.from), ml.bucketOf(q.to-1)
	segs := sh.segments()
	var out []uint32
	// collect adds the logged matches of buckets [a, b]; edge buckets (partly in the range)
	// and an extra predicate need the records, whole buckets do not.
	collect := func(a, b int64, check bool) {
		f.eachMatch(sh, 0, tail, a, b, func(seq uint32) bool {
			if check {
				rec := sh.record(segs, uint64(seq))
				ts := schema.Timestamp(rec)
				if ts < q.from || ts >= q.to || (q.m != nil && !q.m.Match(rec)) {
					return true
				}
			}
			out = append(out, seq)
			return true
		})
	}
	collect(lo, lo, true)
	if hi > lo {
		collect(hi, hi, true)
	}
	if hi-lo >= 2 {
		collect(lo+1, hi-1, q.m != nil)
	}
	slices.Sort(out) // buckets come out in key order; records in sequence order
	return out
}
