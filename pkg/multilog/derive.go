package multilog

import (
	"encoding/binary"
	"math"
	"sort"

	"github.com/confluo-go/confluo/pkg/radix"
)

// writerState is a writer's scratch space for maintaining derived logs.
type writerState struct {
	key []byte

	// Per batch.
	through   uint64 // the tail the batch will publish
	idxActive []bool
	fActive   []bool
	aActive   []bool
	aFilter   []int             // index in cfg.filters of each aggregate's filter
	hits      [][]uint32        // per filter: sequence numbers of the chunk's matching records
	sel       []int32           // Select's scratch: indexes of matching records in the chunk
	dirty     []*radix.Postings // index posting lists to publish

	touched []touch // aggregate buckets changed in this batch
}

func (st *writerState) reset(cfg *config) {
	st.idxActive = make([]bool, len(cfg.indexes))
	st.fActive = make([]bool, len(cfg.filters))
	st.hits = make([][]uint32, len(cfg.filters))
	st.aActive = make([]bool, len(cfg.aggs))
	st.aFilter = make([]int, len(cfg.aggs))
	for i, a := range cfg.aggs {
		st.aFilter[i] = -1
		for j, f := range cfg.filters {
			if a.filter == f {
				st.aFilter[i] = j
			}
		}
	}
}

// touch is a time bucket of an aggregate that changed.
type touch struct {
	agg    *Aggregate
	bucket int64
}

func (st *writerState) touch(a *Aggregate, b int64) {
	for _, t := range st.touched {
		if t.agg == a && t.bucket == b {
			return
		}
	}
	st.touched = append(st.touched, touch{a, b})
}

// beginBatch decides which derived logs cover this batch (their start is at or before it).
func (w *Writer) beginBatch(cfg *config, seq, n uint64) {
	st := &w.st
	id := w.sh.id
	st.through = seq + n
	covers := func(start int64) bool { return start >= 0 && uint64(start) <= seq }
	for i, ix := range cfg.indexes {
		st.idxActive[i] = covers(ix.parts[id].start.Load())
	}
	for i, f := range cfg.filters {
		st.fActive[i] = covers(f.parts[id].start.Load())
	}
	for i, a := range cfg.aggs {
		st.aActive[i] = covers(a.parts[id].start.Load()) && st.aFilter[i] >= 0 && st.fActive[st.aFilter[i]]
	}
}

// chunkSpan describes the timestamps of a chunk of records handed to derive.
type chunkSpan struct {
	minTS, maxTS int64 // every timestamp of the chunk lies in [minTS, maxTS]
	sorted       bool  // timestamps never decrease within the chunk
}

// derive updates every derived log for the records in recs (laid end to end), the first of
// which has sequence seq. It runs on the writer's goroutine before the tail is published.
func (w *Writer) derive(cfg *config, recs []byte, seq uint64, span chunkSpan) {
	rs := w.rs
	id := w.sh.id
	st := &w.st
	if e, n := w.ml.epochSpan(), uint64(len(recs)/rs); n > 0 && seq/e != (seq+n-1)/e {
		// Every entry goes to the epoch of its sequence number (epoch.go). Chunks lie within a
		// segment, so within an epoch, but split one that does not.
		k := int((seq/e+1)*e - seq)
		w.derive(cfg, recs[:k*rs], seq, span)
		w.derive(cfg, recs[k*rs:], seq+uint64(k), span)
		return
	}
	for i, ix := range cfg.indexes {
		if !st.idxActive[i] {
			continue
		}
		// Add to every record's posting list, then publish each touched list once. A new
		// epoch starts only at a chunk's start.
		part := &ix.parts[id]
		part.cur = part.epochs.indexTreeFor(part.cur, seq, w.sh.segRecords, w.ml.epochRecords, ix.keyLen)
		t := part.cur.tree
		dirty := st.dirty[:0]
		for off, s := 0, seq; off < len(recs); off, s = off+rs, s+1 {
			st.key = ix.key(st.key[:0], recs[off:off+rs])
			p := t.Leaf(st.key)
			p.Add(uint32(s))
			if !p.Dirty {
				p.Dirty = true
				dirty = append(dirty, p)
			}
		}
		for _, p := range dirty {
			p.Publish()
			p.Dirty = false
		}
		t.Published()
		clear(dirty)
		st.dirty = dirty[:0]
	}
	if len(cfg.filters) == 0 {
		return
	}
	// Filter by filter, then aggregate by aggregate over its filter's hits: each matcher's code
	// and each log's tail stay hot in the cache for the whole chunk.
	bucketNs := int64(w.ml.opts.FilterBucket)
	tsOf := func(k int32) int64 { return int64(binary.LittleEndian.Uint64(recs[int(k)*rs:])) }
	for i, f := range cfg.filters {
		hits := st.hits[i][:0]
		if st.fActive[i] {
			p := &f.parts[id]
			if p.curEpoch == nil || seq >= p.curEpoch.end.Load() {
				// A new epoch (the chunk lies within one).
				if p.cur != nil {
					p.cur.Publish()
					p.curEpoch.tree.Published()
				}
				p.cur, p.curBucket = nil, math.MinInt64
				p.curEpoch = p.epochs.treeFor(p.curEpoch, seq, w.ml.epochSpan(), 8)
			}
			tree := p.curEpoch.tree
			m := f.f
			base := uint32(seq)
			st.sel = m.Select(recs, st.sel[:0])
			if span.sorted {
				// Timestamps are in order, so the hits of one bucket are a run of sel: find
				// each run's end by binary search instead of testing every hit's timestamp.
				sel := st.sel
				for len(sel) > 0 {
					b := floorDiv(tsOf(sel[0]), bucketNs)
					n := len(sel)
					if _, bEnd := bucketBounds(b, bucketNs); span.maxTS >= bEnd {
						n = sort.Search(len(sel), func(j int) bool { return tsOf(sel[j]) >= bEnd })
					}
					if p.cur == nil || p.curBucket != b {
						if p.cur != nil {
							p.cur.Publish()
						}
						st.key = bucketKey(st.key[:0], b)
						p.cur = tree.Leaf(st.key)
						p.curBucket = b
					}
					from := len(hits)
					for _, k := range sel[:n] {
						hits = append(hits, base+uint32(k))
					}
					p.cur.AddMany(hits[from:])
					sel = sel[n:]
				}
				tree.Published()
				st.hits[i] = hits
				continue
			}
			run := 0                           // hits[run:] go to the bucket being filled
			bStart, bEnd := int64(1), int64(0) // empty: the first hit computes its bucket
			for _, k := range st.sel {
				off := int(k) * rs
				rec := recs[off : off+rs : off+rs]
				if ts := int64(binary.LittleEndian.Uint64(rec)); ts < bStart || ts >= bEnd {
					if run < len(hits) {
						p.cur.AddMany(hits[run:])
						run = len(hits)
					}
					b := floorDiv(ts, bucketNs)
					bStart, bEnd = bucketBounds(b, bucketNs)
					if p.cur == nil || p.curBucket != b {
						if p.cur != nil {
							p.cur.Publish()
						}
						st.key = bucketKey(st.key[:0], b)
						p.cur = tree.Leaf(st.key)
						p.curBucket = b
					}
				}
				hits = append(hits, base+uint32(k))
			}
			if run < len(hits) {
				p.cur.AddMany(hits[run:])
			}
			tree.Published()
		}
		st.hits[i] = hits
	}
	for i, a := range cfg.aggs {
		if !st.aActive[i] {
			continue
		}
		p := &a.parts[id]
		a.beginEpoch(p, seq, w.ml.epochSpan(), st.through, st)
		bucket, bStart, bEnd := int64(0), int64(1), int64(0)
		base := uint32(seq)
		for _, hit := range st.hits[st.aFilter[i]] {
			off := int(hit-base) * rs
			rec := recs[off : off+rs : off+rs]
			if ts := int64(binary.LittleEndian.Uint64(rec)); ts < bStart || ts >= bEnd {
				bucket = floorDiv(ts, bucketNs)
				bStart, bEnd = bucketBounds(bucket, bucketNs)
			}
			if bucket != p.curBucket {
				a.flush(p, st.through, st)
				p.curBucket = bucket
			}
			a.add(&p.delta, rec)
		}
	}
}

// bucketBounds returns the time range [start, end) of bucket b.
func bucketBounds(b, bucketNs int64) (int64, int64) {
	start := b * bucketNs
	end := start + bucketNs
	if end < start { // the last bucket before MaxInt64
		end = math.MaxInt64
	}
	return start, end
}

// endBatch publishes what derive left pending, before the tail is stored.
func (w *Writer) endBatch(cfg *config) {
	id := w.sh.id
	st := &w.st
	for _, f := range cfg.filters {
		if p := &f.parts[id]; p.cur != nil {
			p.cur.Publish()
			p.curEpoch.tree.Published()
		}
	}
	for i, a := range cfg.aggs {
		if st.aActive[i] {
			a.flush(&a.parts[id], st.through, st)
		}
	}
	if len(st.touched) > 0 {
		w.ml.noteTouched(w.sh, st.touched)
		st.touched = st.touched[:0]
	}
}
