package multilog

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"sync/atomic"

	"github.com/confluo-go/confluo/pkg/schema"
)

// config is the set of derived logs writers maintain. It is immutable once published; changes
// publish a new config (copy-on-write, under MultiLog.mu).
type config struct {
	active  bool // some derived log needs per-record work on the append path
	derived []derived
	indexes []*Index
	filters []*Filter
	aggs    []*Aggregate
}

func (c *config) clone() *config {
	n := &config{
		derived: slices.Clone(c.derived),
		indexes: slices.Clone(c.indexes),
		filters: slices.Clone(c.filters),
		aggs:    slices.Clone(c.aggs),
	}
	return n
}

func (c *config) finish() *config {
	c.derived = c.derived[:0:0]
	for _, ix := range c.indexes {
		c.derived = append(c.derived, ix)
	}
	for _, f := range c.filters {
		c.derived = append(c.derived, f)
	}
	for _, a := range c.aggs {
		c.derived = append(c.derived, a)
	}
	c.active = len(c.derived) > 0
	return c
}

// derived is a log derived from the data log, covering each shard from a start sequence.
type derived interface {
	startOf(shard int) *atomic.Int64
}

// Index is a radix-tree index on one column, one tree per shard. Safe for concurrent use.
//
// Keys are the column's order-preserving bytes, with numeric values first divided into buckets
// of the index's bucket size. The index only narrows the candidates: a query always applies its
// full predicate to every candidate record, so bucketing never changes a result.
//
// Each shard's part is a list of epoch trees (epoch.go), one per run of sequence numbers, so
// that retention can drop the entries of deleted records with the epochs that held them.
//
// Invariants:
//
//  1. parts[i].epochs holds exactly the records of shard i from parts[i].start on (once start
//     ≥ 0) that retention has not deleted, except for those in the epoch straddling the first
//     kept sequence number; each is inserted by shard i's writer, into the epoch of its
//     sequence number, before the writer publishes the tail that covers it.
//  2. parts[i].backfill, once set, holds the records of shard i below start, in epochs the same
//     way (entries below the first kept sequence number may remain in the straddling epoch:
//     readers skip them).
type Index struct {
	col    *schema.Column
	bucket float64
	keyLen int
	parts  []indexPart
}

type indexPart struct {
	start    atomic.Int64
	epochs   treeList
	backfill treeList // set once the backfill is built (Backfill option)

	// Writer-private: the epoch being appended to.
	cur *epochTree
	_   [32]byte
}

func (ix *Index) startOf(shard int) *atomic.Int64 { return &ix.parts[shard].start }

// rangeShard calls fn with the sequence numbers of shard's records (below tail) whose keys lie
// in [lo, hi], as found in the index: epoch by epoch, each in key order, so the caller sorts.
// It returns the sequence number below which the index does not cover the shard (its start,
// unless a backfill covers the older records: then 0); the caller finds those by scanning.
// Entries of records retention deleted may still be passed: the caller skips sequence
// numbers below the shard's first kept one. For query.go's planner.
func (ix *Index) rangeShard(shard int, lo, hi []byte, tail uint64, fn func(seq uint32) bool) (uncovered uint64) {
	part := &ix.parts[shard]
	start := part.start.Load()
	if start < 0 || uint64(start) > tail {
		start = int64(tail)
	}
	part.epochs.rangeKeys(lo, hi, 0, tail, fn)
	if part.backfill.set() {
		part.backfill.rangeKeys(lo, hi, 0, uint64(start), fn)
		return 0
	}
	return uint64(start)
}

// countShard estimates the number of shard's records with keys in [lo, hi] (ignoring any
// tail; retention-deleted records of the straddling epochs included): the planner's
// selectivity estimate.
func (ix *Index) countShard(shard int, lo, hi []byte) uint64 {
	part := &ix.parts[shard]
	return part.epochs.countRange(lo, hi, math.MaxUint64) + part.backfill.countRange(lo, hi, math.MaxUint64)
}

// memoryBytes estimates the memory of the index's trees (every shard, backfill included).
func (ix *Index) memoryBytes(m *memoryUse) {
	for i := range ix.parts {
		m.add(ix.parts[i].epochs.memoryUse())
		m.add(ix.parts[i].backfill.memoryUse())
	}
}

// dropBelow drops shard's epochs (and backfill epochs) wholly below seq, the first kept
// sequence number.
func (ix *Index) dropBelow(shard int, seq uint64) {
	ix.parts[shard].epochs.dropBelow(seq)
	ix.parts[shard].backfill.dropBelow(seq)
}

// Column returns the indexed column's name.
func (ix *Index) Column() string { return ix.col.Name }

// Bucket returns the index's bucket size (0 for unbucketed).
func (ix *Index) Bucket() float64 { return ix.bucket }

// IndexOption changes how AddIndex builds an index.
type IndexOption func(*indexOptions)

type indexOptions struct{ backfill bool }

// Backfill makes AddIndex also index the records appended before it, so queries use the index
// over all of the data. Without it the older records are still found (by scanning) but not
// through the index. The backfill runs in the caller's goroutine; writers are not blocked.
func Backfill() IndexOption { return func(o *indexOptions) { o.backfill = true } }

// AddIndex adds a radix-tree index on column. bucket groups numeric values: an integer column
// takes a whole bucket ≥ 1 (0 means 1), a FLOAT/DOUBLE column any bucket ≥ 0 (0 means exact
// values); STRING, IP and MAC columns take 0 or 1. Writers are never blocked; records appended
// before the call are indexed only with the Backfill option. Adding an index on a column that
// already has one fails with ErrExists.
func (ml *MultiLog) AddIndex(column string, bucket float64, options ...IndexOption) error {
	var o indexOptions
	for _, opt := range options {
		opt(&o)
	}
	col, ok := ml.schema.Column(column)
	if !ok {
		return fmt.Errorf("%w: %q: no such column", ErrColumn, column)
	}
	keyLen, err := indexKeyLen(col, bucket)
	if err != nil {
		return err
	}
	if bucket == 1 && !col.Type.IsFloat() {
		bucket = 0
	}
	ix := &Index{col: col, bucket: bucket, keyLen: keyLen, parts: make([]indexPart, len(ml.shards))}
	for i := range ix.parts {
		ix.parts[i].start.Store(-1)
	}
	ml.mu.Lock()
	cfg := ml.cfg.Load()
	for _, old := range cfg.indexes {
		if old.col == col {
			ml.mu.Unlock()
			return fmt.Errorf("%w: index on %q", ErrExists, col.Name)
		}
	}
	n := cfg.clone()
	n.indexes = append(n.indexes, ix)
	ml.cfg.Store(n.finish())
	err = ml.persistAddIndex(column, bucket)
	ml.mu.Unlock()
	if o.backfill {
		ml.claimIdle(ix)
		var key []byte
		for i, sh := range ml.shards {
			start := uint64(ix.parts[i].start.Load())
			b := buildTrees{segRecords: sh.segRecords, minRecords: ml.epochRecords, keyLen: keyLen, limit: start}
			segs := sh.segments()
			for seq := min(sh.firstKept(), start); seq < start; seq++ { // deleted records skipped
				key = ix.key(key[:0], sh.record(segs, seq))
				b.insert(key, seq)
			}
			ix.parts[i].backfill.store(b.list)
			ix.parts[i].backfill.dropBelow(sh.firstKept()) // deleted while the backfill ran
		}
	}
	return err
}

// RemoveIndex drops the index on column. Queries already running keep using it.
func (ml *MultiLog) RemoveIndex(column string) error {
	col, ok := ml.schema.Column(column)
	if !ok {
		return fmt.Errorf("%w: %q: no such column", ErrColumn, column)
	}
	ml.mu.Lock()
	defer ml.mu.Unlock()
	cfg := ml.cfg.Load()
	for i, ix := range cfg.indexes {
		if ix.col == col {
			n := cfg.clone()
			n.indexes = slices.Delete(n.indexes, i, i+1)
			ml.cfg.Store(n.finish())
			return ml.persistRemoveIndex(col)
		}
	}
	return fmt.Errorf("%w: index on %q", ErrNotFound, col.Name)
}

// Indexes returns the indexed column names.
func (ml *MultiLog) Indexes() []string {
	var names []string
	for _, ix := range ml.cfg.Load().indexes {
		names = append(names, ix.col.Name)
	}
	return names
}

func (ml *MultiLog) indexOn(col *schema.Column) *Index {
	for _, ix := range ml.cfg.Load().indexes {
		if ix.col.Index == col.Index {
			return ix
		}
	}
	return nil
}

func indexKeyLen(col *schema.Column, bucket float64) (int, error) {
	if math.IsNaN(bucket) || math.IsInf(bucket, 0) || bucket < 0 {
		return 0, fmt.Errorf("%w: column %q: bucket %v", ErrIndex, col.Name, bucket)
	}
	switch {
	case col.Type.IsFloat():
		if bucket > 0 {
			return 8, nil
		}
		return col.Size, nil
	case col.Type.IsSigned() || col.Type.IsUnsigned():
		if bucket != math.Trunc(bucket) {
			return 0, fmt.Errorf("%w: column %q (%s): bucket %v must be a whole number", ErrIndex, col.Name, col.TypeString(), bucket)
		}
		if bucket > math.MaxInt64/2 {
			return 0, fmt.Errorf("%w: column %q (%s): bucket %v is larger than %d", ErrIndex, col.Name, col.TypeString(), bucket, int64(math.MaxInt64/2))
		}
		return col.Size, nil
	default:
		if bucket > 1 {
			return 0, fmt.Errorf("%w: column %q (%s): bucket %v: only numeric columns are bucketed", ErrIndex, col.Name, col.TypeString(), bucket)
		}
		return col.Size, nil
	}
}

// key appends the index key of the record's column value.
func (ix *Index) key(dst, rec []byte) []byte {
	f := rec[ix.col.Offset : ix.col.Offset+ix.col.Size]
	switch t := ix.col.Type; {
	case t.IsUnsigned():
		return ix.uintKey(dst, leUint(f))
	case t.IsSigned():
		return ix.intKey(dst, signExtend(leUint(f), ix.col.Size))
	case t == schema.Float:
		return ix.floatKey(dst, float64(math.Float32frombits(binary.LittleEndian.Uint32(f))))
	case t == schema.Double:
		return ix.floatKey(dst, math.Float64frombits(binary.LittleEndian.Uint64(f)))
	default:
		return append(dst, f...)
	}
}

// valueKey appends the index key of v, which must have the column's type; ok is false if not.
func (ix *Index) valueKey(dst []byte, v schema.Value) ([]byte, bool) {
	t := ix.col.Type
	if v.Type != t {
		return dst, false
	}
	switch {
	case t.IsUnsigned():
		return ix.uintKey(dst, v.U), true
	case t.IsSigned():
		return ix.intKey(dst, v.I), true
	case t.IsFloat():
		return ix.floatKey(dst, v.F), true
	default:
		if len(v.B) > ix.col.Size {
			return dst, false
		}
		n := len(dst)
		dst = append(dst, v.B...)
		for len(dst)-n < ix.col.Size {
			dst = append(dst, 0)
		}
		return dst, true
	}
}

func (ix *Index) uintKey(dst []byte, u uint64) []byte {
	if ix.bucket > 1 {
		u /= uint64(ix.bucket)
	}
	return appendBE(dst, u, ix.keyLen)
}

func (ix *Index) intKey(dst []byte, i int64) []byte {
	if ix.bucket > 1 {
		b := int64(ix.bucket)
		q := i / b
		if i%b != 0 && i < 0 {
			q--
		}
		i = q
	}
	return appendBE(dst, uint64(i)^(1<<(8*ix.keyLen-1)), ix.keyLen)
}

// floatKey orders NaN first (its records are found by ranges that start at the lowest key and
// rejected by the predicate) and treats -0 as +0, which compares equal to it.
func (ix *Index) floatKey(dst []byte, f float64) []byte {
	if math.IsNaN(f) {
		return appendBE(dst, 0, ix.keyLen)
	}
	if f == 0 {
		f = 0
	}
	if ix.bucket > 0 {
		q := math.Floor(f / ix.bucket)
		var i int64
		switch {
		case q >= math.MaxInt64:
			i = math.MaxInt64
		case q <= math.MinInt64:
			i = math.MinInt64
		default:
			i = int64(q)
		}
		// Shift up by one so that no number shares NaN's all-zero key.
		k := uint64(i) ^ 1<<63
		if k == 0 {
			k = 1
		}
		return appendBE(dst, k, 8)
	}
	if ix.keyLen == 4 {
		b := math.Float32bits(float32(f))
		if b&(1<<31) != 0 {
			b = ^b
		} else {
			b |= 1 << 31
		}
		return appendBE(dst, uint64(b), 4)
	}
	b := math.Float64bits(f)
	if b&(1<<63) != 0 {
		b = ^b
	} else {
		b |= 1 << 63
	}
	return appendBE(dst, b, 8)
}

func leUint(f []byte) uint64 {
	var u uint64
	for i := range f {
		u |= uint64(f[i]) << (8 * i)
	}
	return u
}

func signExtend(u uint64, size int) int64 {
	shift := 64 - 8*size
	return int64(u<<shift) >> shift
}

func appendBE(dst []byte, u uint64, size int) []byte {
	for i := size - 1; i >= 0; i-- {
		dst = append(dst, byte(u>>(8*i)))
	}
	return dst
}
