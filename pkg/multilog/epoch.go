package multilog

import (
	"math"
	"sync/atomic"

	"github.com/confluo-go/confluo/pkg/radix"
)

// Derived-log epochs.
//
// Each shard's part of an index, filter or aggregate is split by sequence number into epochs,
// each with its own radix tree (indexes, filters) or its own partials (aggregates). When
// retention deletes a shard's oldest segments, every epoch wholly below the shard's first kept
// sequence number is dropped from its list, so derived-log memory follows the data that is
// kept. Readers go through the epochs of a list in order; they see an epoch as long as they
// hold the list they loaded.
//
// Filters and aggregates are keyed by time bucket, so their epochs share (almost) no keys:
// they have a fixed span of MultiLog.epochRecords sequence numbers (a whole number of
// segments). An index repeats its keys in every epoch (a leaf and its first posting block,
// 150 to 250 bytes, against 4 bytes per entry), so its epochs adapt: the writer closes one at
// a segment boundary once it holds at least epochRecords records and either its entries
// outweigh its per-key overhead (postings at least twice the rest) or it holds
// maxEpochBytes. Many records per key make long epochs (few trees per lookup, little
// duplication); distinct keys make short ones (bounded memory per epoch).
//
// A MultiLog without a store (New) never deletes records: it has a single epoch per shard, so
// its indexed lookups visit one tree per shard, as before epochs existed.

// minEpochRecords is the smallest epoch of a persisted MultiLog, in records (rounded up to whole
// segments). Bigger epochs cost less per lookup (one tree per epoch is visited) and less for
// the keys repeated in every epoch; smaller ones give memory back sooner after a deletion.
// Tests lower it.
var minEpochRecords uint64 = 1 << 16

// maxEpochBytes closes an index epoch whatever its keys (see above): it bounds the memory of
// a shard's current index epoch, which retention cannot reclaim, to about this plus the
// entries of one segment. Tests lower it.
var maxEpochBytes int64 = 16 << 20

// epochSpan returns the records per epoch for segments of segRecords records: one epoch for
// everything without persistence, else minEpochRecords rounded up to whole segments.
func epochSpan(segRecords int, persisted bool) uint64 {
	if !persisted {
		return maxShardRecords + 1
	}
	seg := uint64(segRecords)
	return max(1, (minEpochRecords+seg-1)/seg) * seg
}

// epochSpan is the MultiLog's records per epoch (fixed when it is created).
func (ml *MultiLog) epochSpan() uint64 {
	if ml.epochRecords == 0 {
		return epochSpan(0, false)
	}
	return ml.epochRecords
}

// spanned is an element of an epochList: it covers the sequence numbers [first, end) and
// holds memory() bytes (final once the writer moved on to a later epoch).
type spanned interface {
	seqs() (first, end uint64)
	memory() int64
}

// epochList is a copy-on-write list of epochs, oldest first. The shard's writer appends
// (push); retention drops a prefix (dropBelow); readers load it once and use what they loaded.
//
// Invariants:
//
//  1. The epochs' ranges are disjoint and increasing.
//  2. The list only changes by a compare-and-swap of the whole slice (which is never written
//     after it is published), so a push and a drop that race both take effect.
//  3. An epoch is dropped only when its end is at or below the shard's first kept sequence
//     number, which never exceeds the writer's next sequence number: the writer never adds to
//     a dropped epoch.
//  4. closed is the memory of the closed epochs: all but the last (the writer's current one),
//     or all of a frozen list (a backfill). Each change of the list adjusts it by what the
//     change closed or removed, right after the compare-and-swap, so reading the memory costs
//     two loads however many epochs there are.
type epochList[T spanned] struct {
	p      atomic.Pointer[[]T]
	closed atomic.Int64
	frozen bool // a backfill: every epoch is closed; set before the list is shared
}

// load returns the epochs; nil if nothing was ever stored.
func (l *epochList[T]) load() []T {
	if p := l.p.Load(); p != nil {
		return *p
	}
	return nil
}

// set reports whether the list was ever stored (a backfill is set even when all its epochs
// were dropped).
func (l *epochList[T]) set() bool { return l.p.Load() != nil }

// store publishes a whole list of closed epochs (a backfill, built before it is shared).
func (l *epochList[T]) store(es []T) {
	l.frozen = true
	var n int64
	for _, e := range es {
		n += e.memory()
	}
	l.closed.Store(n)
	l.p.Store(&es)
}

// memoryUse returns the memory of the list's epochs: in all, and in closed epochs (which
// retention can reclaim).
func (l *epochList[T]) memoryUse() (total, closed int64) {
	es := l.load()
	closed = l.closed.Load()
	total = closed
	if !l.frozen && len(es) > 0 {
		total += es[len(es)-1].memory()
	}
	return total, closed
}

// push appends e (the writer, at an epoch boundary).
func (l *epochList[T]) push(e T) {
	for {
		old := l.p.Load()
		var es []T
		if old != nil {
			es = *old
		}
		n := make([]T, len(es), len(es)+1)
		copy(n, es)
		n = append(n, e)
		if l.p.CompareAndSwap(old, &n) {
			if len(es) > 0 && !l.frozen {
				l.closed.Add(es[len(es)-1].memory()) // closed now, and final
			}
			return
		}
	}
}

// dropBelow removes the epochs that end at or below seq and reports how many it removed.
func (l *epochList[T]) dropBelow(seq uint64) int {
	for {
		old := l.p.Load()
		if old == nil {
			return 0
		}
		es := *old
		k := 0
		for k < len(es) {
			if _, end := es[k].seqs(); end > seq {
				break
			}
			k++
		}
		if k == 0 {
			return 0
		}
		n := append([]T(nil), es[k:]...)
		if l.p.CompareAndSwap(old, &n) {
			var freed int64
			for j, e := range es[:k] {
				if l.frozen || j < len(es)-1 { // the last epoch was not counted as closed
					freed += e.memory()
				}
			}
			l.closed.Add(-freed)
			return k
		}
	}
}

// epochTree is one epoch of an index or filter: a radix tree of the shard's entries with
// sequence numbers in [first, end). An index epoch's end is MaxUint64 while the writer may
// still add to it; the writer stores the end when it closes the epoch, before it starts the
// next one.
type epochTree struct {
	first uint64
	end   atomic.Uint64
	tree  *radix.Tree
}

func newEpochTree(first, end uint64, keyLen int) *epochTree {
	e := &epochTree{first: first, tree: radix.New(keyLen)}
	e.end.Store(end)
	return e
}

func (e *epochTree) seqs() (uint64, uint64) { return e.first, e.end.Load() }
func (e *epochTree) memory() int64          { return e.tree.Bytes() }

// treeList is a shard's epochs of one index or filter (or of its backfill).
type treeList struct{ epochList[*epochTree] }

// treeFor returns the fixed-span epoch tree for sequence number seq, starting a new epoch (and
// pushing it) when seq is past cur. Writer only (filters).
func (l *treeList) treeFor(cur *epochTree, seq, span uint64, keyLen int) *epochTree {
	if cur != nil && seq >= cur.first && seq < cur.end.Load() {
		return cur
	}
	first := seq / span * span
	e := newEpochTree(first, first+span, keyLen)
	l.push(e)
	return e
}

// indexTreeFor returns the index epoch tree for a chunk starting at seq: cur, or a new one if
// there is none yet or cur is closed at seq (see the rule above; only at a segment boundary
// and with epochs, minRecords > 0). Writer only.
func (l *treeList) indexTreeFor(cur *epochTree, seq uint64, segRecords int, minRecords uint64, keyLen int) *epochTree {
	if cur != nil {
		if !closesAt(cur, seq, segRecords, minRecords) {
			return cur
		}
		cur.end.Store(seq)
	}
	e := newEpochTree(seq, math.MaxUint64, keyLen)
	l.push(e)
	return e
}

// closesAt reports whether index epoch cur closes before seq (the rule above).
func closesAt(cur *epochTree, seq uint64, segRecords int, minRecords uint64) bool {
	if minRecords == 0 || seq%uint64(segRecords) != 0 || seq-cur.first < minRecords {
		return false
	}
	bytes := cur.tree.Bytes()
	postings := int64(cur.tree.Entries()) * 4
	return bytes >= maxEpochBytes || 3*postings >= 2*bytes
}

// rangeKeys calls fn for each entry under keys in [lo, hi] of the epochs that overlap
// [from, bound), skipping entries at or above bound (fn filters those below from), epoch by
// epoch, each in key order, until fn returns false; it reports whether fn never did.
func (l *treeList) rangeKeys(lo, hi []byte, from, bound uint64, fn func(uint32) bool) bool {
	for _, e := range l.load() {
		if e.first >= bound {
			break
		}
		end := e.end.Load()
		if end <= from {
			continue
		}
		if !e.tree.Range(lo, hi, uint32(min(bound, end)), fn) {
			return false
		}
	}
	return true
}

// countRange is the number of entries (ignoring any bound) under keys in [lo, hi].
func (l *treeList) countRange(lo, hi []byte, limit uint64) uint64 {
	var n uint64
	for _, e := range l.load() {
		n += e.tree.CountRange(lo, hi, limit)
		if n > limit {
			break
		}
	}
	return n
}

// memoryUse is an estimate of derived-log memory: in all, and in closed epochs (every epoch
// but the last of each shard's list; every backfill epoch), which retention can reclaim.
type memoryUse struct{ total, closed int64 }

func (m *memoryUse) add(total, closed int64) {
	m.total += total
	m.closed += closed
}

// buildTrees is a backfill builder: it inserts entries below limit (the derived log's start)
// in increasing sequence order into epoch trees, which it returns as a list to publish. The
// epochs are those of a filter (fixed span) or, with segRecords set, of an index (every
// record inserted; closed by the same rule as the writer's). The last epoch ends at limit, so
// it is dropped once retention deleted everything below limit.
type buildTrees struct {
	span       uint64 // filters
	segRecords int    // indexes
	minRecords uint64 // indexes: the MultiLog's epochRecords
	keyLen     int
	limit      uint64
	list       []*epochTree
}

func (b *buildTrees) insert(key []byte, seq uint64) {
	k := len(b.list)
	switch {
	case k == 0:
	case b.segRecords > 0:
		if cur := b.list[k-1]; !closesAt(cur, seq, b.segRecords, b.minRecords) {
			_ = cur.tree.Insert(key, uint32(seq))
			return
		}
	case seq < b.list[k-1].end.Load():
		_ = b.list[k-1].tree.Insert(key, uint32(seq))
		return
	}
	e := newEpochTree(seq, b.limit, b.keyLen)
	if b.segRecords == 0 {
		first := seq / b.span * b.span
		e = newEpochTree(first, min(first+b.span, b.limit), b.keyLen)
	}
	if k > 0 {
		b.list[k-1].end.Store(min(b.list[k-1].end.Load(), e.first))
	}
	b.list = append(b.list, e)
	_ = e.tree.Insert(key, uint32(seq))
}
