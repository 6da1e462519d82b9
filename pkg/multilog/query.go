package multilog

import (
	"encoding/binary"
	"errors"
	"iter"
	"math"
	"math/bits"
	"slices"
	"sort"
	"time"

	"github.com/confluo-go/confluo/pkg/schema"
)

// matcher decides whether a record matches a query's predicate. *expr.Filter is one.
type matcher interface {
	Match(rec []byte) bool
}

// cond is the planner's view of a predicate: the parts an index can narrow.
type cond interface{ isCond() }

type (
	condAnd  struct{ kids []cond }
	condOr   struct{ kids []cond }
	condNone struct{} // matches nothing
	// condCmp is column op value; op is one of "==", "<", "<=", ">", ">=" (others are opaque).
	condCmp struct {
		col *schema.Column
		op  cmpOp
		v   schema.Value
	}
	condIn struct {
		col  *schema.Column
		vals []schema.Value
	}
	// condPrefix is an IP prefix: the column's bytes lie in [lo, hi].
	condPrefix struct {
		col    *schema.Column
		lo, hi []byte
	}
	condOpaque struct{} // cannot be narrowed by an index
)

type cmpOp uint8

const (
	cmpEq cmpOp = iota + 1
	cmpLt
	cmpLe
	cmpGt
	cmpGe
)

func (condAnd) isCond()    {}
func (condOr) isCond()     {}
func (condNone) isCond()   {}
func (condCmp) isCond()    {}
func (condIn) isCond()     {}
func (condPrefix) isCond() {}
func (condOpaque) isCond() {}

// keyRange is one range of one index's keys, both ends inclusive.
type keyRange struct {
	ix     *Index
	lo, hi []byte
}

// plan is a union of index key ranges whose records are a superset of the matches; nil means
// scan.
type plan struct {
	ranges []keyRange
	est    uint64
	// exact: the records under the ranges are exactly those matching the whole predicate
	// (see exactCond), so candidates need no predicate test, only the time range.
	exact bool
}

// planFor returns an index plan for c, or nil if scanning is as good. total is the number of
// visible records, used to give up on plans that would touch most of them.
func (ml *MultiLog) planFor(c cond, total uint64) *plan {
	p := ml.planCond(c)
	if p == nil || p.est > total/3+64 {
		return nil
	}
	p.exact = exactCond(c, p)
	return p
}

// exactCond reports whether c, the whole predicate, is an equality or in-list on a column
// whose index keys are its values: unbucketed, and of a type whose key bytes are equal exactly
// when values are (integers, IP and MAC; not floats, whose +0 and -0 are equal values with
// different bytes, nor strings). It asks the indexes p reads, not the current configuration:
// an index replaced meanwhile by a bucketed one must not make a bucketed plan exact.
func exactCond(c cond, p *plan) bool {
	var col *schema.Column
	switch c := c.(type) {
	case condCmp:
		if c.op != cmpEq {
			return false
		}
		col = c.col
	case condIn:
		col = c.col
	default:
		return false
	}
	t := col.Type
	if !(t.IsSigned() || t.IsUnsigned() || t == schema.IPv4 || t == schema.IPv6 || t == schema.MAC) {
		return false
	}
	for _, r := range p.ranges {
		if r.ix.col.Index != col.Index || r.ix.bucket != 0 {
			return false
		}
	}
	return true
}

func (ml *MultiLog) planCond(c cond) *plan {
	switch c := c.(type) {
	case condNone:
		return &plan{}
	case condCmp:
		ix := ml.indexOn(c.col)
		if ix == nil {
			return nil
		}
		k, ok := ix.valueKey(nil, c.v)
		if !ok {
			return nil
		}
		lo, hi := k, k
		switch c.op {
		case cmpLt, cmpLe:
			lo = minKey(ix.keyLen)
		case cmpGt, cmpGe:
			hi = maxKey(ix.keyLen)
		case cmpEq:
		default:
			return nil
		}
		return ix.plan(lo, hi)
	case condIn:
		ix := ml.indexOn(c.col)
		if ix == nil {
			return nil
		}
		p := &plan{}
		for _, v := range c.vals {
			k, ok := ix.valueKey(nil, v)
			if !ok {
				return nil
			}
			q := ix.plan(k, k)
			p.ranges = append(p.ranges, q.ranges...)
			p.est += q.est
		}
		return p
	case condPrefix:
		ix := ml.indexOn(c.col)
		if ix == nil || ix.bucket > 1 || ix.col.Type.IsNumeric() {
			return nil
		}
		return ix.plan(c.lo, c.hi)
	case condAnd:
		var best *plan
		for _, k := range c.kids {
			if p := ml.planCond(k); p != nil && (best == nil || p.est < best.est) {
				best = p
			}
		}
		return best
	case condOr:
		p := &plan{}
		for _, k := range c.kids {
			q := ml.planCond(k)
			if q == nil {
				return nil
			}
			p.ranges = append(p.ranges, q.ranges...)
			p.est += q.est
		}
		return p
	}
	return nil
}

// plan returns the one-range plan [lo, hi] with its estimated size.
func (ix *Index) plan(lo, hi []byte) *plan {
	var est uint64
	for i := range ix.parts {
		est += ix.countShard(i, lo, hi)
	}
	return &plan{ranges: []keyRange{{ix: ix, lo: lo, hi: hi}}, est: est}
}

func minKey(n int) []byte { return make([]byte, n) }

func maxKey(n int) []byte {
	k := make([]byte, n)
	for i := range k {
		k[i] = 0xff
	}
	return k
}

// Time bounds. A query's range is [from, to): from inclusive, to exclusive, in nanoseconds
// since the epoch.
const (
	MinTime int64 = math.MinInt64
	MaxTime int64 = math.MaxInt64
)

// Nanos converts a time bound: the zero time.Time means "unbounded" and gives def.
func Nanos(t time.Time, def int64) int64 {
	if t.IsZero() {
		return def
	}
	return t.UnixNano()
}

// request is one query: a predicate (nil matches all), its planner view, the time range
// [from, to) and a limit (≤ 0 for none).
type request struct {
	m        matcher
	c        cond
	from, to int64
	limit    int
}

// Rows iterates over query results in timestamp order (ties by shard, then sequence). Rows is
// not safe for concurrent use. The records it returns alias the log: valid for the life of the
// MultiLog, never to be modified.
type Rows struct {
	err   error // the first read failure: ends the rows
	curs  []cursor
	heads []head
	limit int
	count int
	rec   []byte
	ref   Ref
	ts    int64
	done  bool

	// run is the cursor being drained while its head stays below bound (the next-best head,
	// at index boundIdx); -1 before the first row.
	run      int
	bound    int64
	boundIdx int
}

type head struct {
	ok  bool
	ts  int64
	seq uint64
	rec []byte
	// The cursor's shard, and the cursor itself if it is a scan (the common case), so that
	// taking a row makes no interface call.
	shard int
	scan  *scanCursor
}

// cursor yields one shard's matches in timestamp order. A cursor that fails to read its
// records (persistence) stops (ok false) and reports why in err.
type cursor interface {
	next() (ts int64, seq uint64, rec []byte, ok bool)
	shard() int
	err() error
}

func (ml *MultiLog) rows(v Version, q request) *Rows {
	r := &Rows{limit: q.limit, run: -1}
	var p *plan
	if q.c != nil {
		p = ml.planFor(q.c, v.NumRecords())
	}
	for i, sh := range ml.shards {
		tail := v.tails[i]
		if tail == 0 {
			continue
		}
		r.curs = append(r.curs, ml.shardCursor(sh, tail, q, p))
	}
	r.start()
	return r
}

// start loads every cursor's first row.
func (r *Rows) start() {
	r.heads = make([]head, len(r.curs))
	for i, c := range r.curs {
		h := &r.heads[i]
		h.shard = c.shard()
		h.scan, _ = c.(*scanCursor)
		h.ts, h.seq, h.rec, h.ok = c.next()
	}
}

// Next advances to the next row; it returns false when there are no more (or the limit is
// reached).
func (r *Rows) Next() bool {
	if r.done || (r.limit > 0 && r.count >= r.limit) {
		r.done = true
		return false
	}
	if r.run < 0 && r.err == nil {
		for _, c := range r.curs {
			if err := c.err(); err != nil {
				r.err = err
				break
			}
		}
	}
	if r.err != nil {
		r.done = true
		return false
	}
	// Keep taking rows from the cursor of the current run while it stays ahead of every other
	// head (ties go to the lower shard): a k-way merge that compares heads only when the
	// leading shard changes.
	if i := r.run; i >= 0 {
		h := &r.heads[i]
		if h.ok && (h.ts < r.bound || (h.ts == r.bound && i < r.boundIdx)) {
			r.take(i)
			return true
		}
	}
	best, second := -1, -1
	for i := range r.heads {
		h := &r.heads[i]
		if !h.ok {
			continue
		}
		switch {
		case best < 0 || h.ts < r.heads[best].ts:
			best, second = i, best
		case second < 0 || h.ts < r.heads[second].ts:
			second = i
		}
	}
	if best < 0 {
		r.done = true
		return false
	}
	r.run, r.bound, r.boundIdx = best, MaxTime, len(r.heads)
	if second >= 0 {
		r.bound, r.boundIdx = r.heads[second].ts, second
	}
	r.take(best)
	return true
}

func (r *Rows) take(i int) {
	prevTS, prev := r.ts, r.ref
	h := &r.heads[i]
	r.rec, r.ts, r.ref = h.rec, h.ts, MakeRef(h.shard, h.seq)
	if h.scan != nil {
		h.ts, h.seq, h.rec, h.ok = h.scan.next()
	} else {
		h.ts, h.seq, h.rec, h.ok = r.curs[i].next()
	}
	if !h.ok && r.err == nil {
		r.err = r.curs[i].err()
	}
	r.count++
	if invariants {
		r.checkRow(prevTS, prev)
	}
}

// Record returns the current row's record (aliasing the log).
func (r *Rows) Record() []byte { return r.rec }

// Ref returns the current row's reference.
func (r *Rows) Ref() Ref { return r.ref }

// Timestamp returns the current row's timestamp.
func (r *Rows) Timestamp() int64 { return r.ts }

// Err returns why the rows ended early, or nil. Queries over memory never fail; with
// persistence (Open) a query that reaches records it cannot read stops there (Next returns
// false) and Err wraps ErrRead (a segment or archive file failed to read) or ErrLost (records
// recovery found lost), naming the shard, the segment and the file. Records deleted by
// retention are not an error: they are skipped. Check Err after Next returns false.
func (r *Rows) Err() error { return r.err }

// All returns the remaining rows as an iterator.
func (r *Rows) All() iter.Seq2[Ref, []byte] {
	return func(yield func(Ref, []byte) bool) {
		for r.Next() {
			if !yield(r.ref, r.rec) {
				return
			}
		}
	}
}

// count returns the number of matches at v without ordering them, or the first read failure.
func (ml *MultiLog) count(v Version, q request) (uint64, error) {
	var p *plan
	if q.c != nil {
		p = ml.planFor(q.c, v.NumRecords())
	}
	var n uint64
	for i, sh := range ml.shards {
		tail := v.tails[i]
		if tail == 0 {
			continue
		}
		if p != nil {
			seqs, err := ml.planSeqs(sh, tail, q, p, nil)
			if err != nil {
				return n, err
			}
			n += uint64(len(seqs))
			continue
		}
		if err := ml.scan(sh, tail, 0, tail, q, func(uint64, []byte) bool { n++; return true }); err != nil {
			return n, err
		}
	}
	return n, nil
}

// shardCursor picks how to produce one shard's matches in timestamp order.
func (ml *MultiLog) shardCursor(sh *shard, tail uint64, q request, p *plan) cursor {
	ordered := sh.unorderedFrom.Load() >= tail
	if p == nil && ordered {
		return newScanCursor(sh, tail, q)
	}
	var seqs []uint32
	var tss []int64
	var err error
	if p != nil {
		seqs, err = ml.planSeqs(sh, tail, q, p, &tss)
	} else {
		err = ml.scan(sh, tail, 0, tail, q, func(seq uint64, _ []byte) bool {
			seqs = append(seqs, uint32(seq))
			return true
		})
	}
	if err != nil {
		return &listCursor{sh: sh, e: err}
	}
	segs := sh.segments()
	if !ordered {
		sort.SliceStable(seqs, func(a, b int) bool {
			return schema.Timestamp(sh.record(segs, uint64(seqs[a]))) < schema.Timestamp(sh.record(segs, uint64(seqs[b])))
		})
		tss = nil
	}
	return &listCursor{sh: sh, segs: segs, seqs: seqs, tss: tss}
}

// planSeqs returns the shard's matches found through the plan, in sequence order, or the first
// read failure. Candidates deleted by retention are skipped.
//
// For a shard held in memory, if tsOut is not nil and the result is a plain list of index
// candidates, *tsOut is set to their timestamps (parallel to the result), so that a cursor
// need not load them again.
func (ml *MultiLog) planSeqs(sh *shard, tail uint64, q request, p *plan, tsOut *[]int64) ([]uint32, error) {
	cand := make([]uint32, 0, min(p.est, 1<<16))
	add := func(ref uint32) bool { cand = append(cand, ref); return true }
	var scanBelow uint64 // records below this are not covered by the plan's indexes
	for _, kr := range p.ranges {
		scanBelow = max(scanBelow, kr.ix.rangeShard(sh.id, kr.lo, kr.hi, tail, add))
	}
	slices.Sort(cand)
	cand = slices.Compact(cand)
	segs := sh.segments()
	if sh.log != nil {
		// Persisted: candidates may be deleted by retention (skipped), released (read
		// through the store) or lost (an error).
		fk := sh.firstKept()
		out := cand[:0]
		for _, seq := range cand {
			if uint64(seq) < scanBelow || uint64(seq) < fk {
				continue
			}
			rec, err := sh.recordAt(segs, uint64(seq))
			if errors.Is(err, ErrDeleted) {
				continue
			}
			if err != nil {
				return nil, err
			}
			if ts := schema.Timestamp(rec); ts >= q.from && ts < q.to && (q.m == nil || q.m.Match(rec)) {
				out = append(out, seq)
			}
		}
		return ml.planScanBelow(sh, tail, q, scanBelow, out)
	}
	// First load every candidate's timestamp in a tight loop of independent loads, so the
	// cache and TLB misses of this random access overlap; then test them.
	tss := make([]int64, len(cand))
	sh.loadTimestamps(segs, cand, tss)
	out := cand[:0]
	outTS := tss[:0]
	for i, seq := range cand {
		if uint64(seq) < scanBelow {
			continue // found again by the scan below
		}
		if ts := tss[i]; ts >= q.from && ts < q.to && (p.exact || q.m == nil || q.m.Match(sh.record(segs, uint64(seq)))) {
			out = append(out, seq)
			outTS = append(outTS, ts)
		}
	}
	if scanBelow == 0 && tsOut != nil {
		*tsOut = outTS
	}
	return ml.planScanBelow(sh, tail, q, scanBelow, out)
}

// loadTimestamps sets tss[i] to the timestamp of record cand[i] of a shard without
// persistence (every segment's fixed memory set, nothing deleted) from its directory d. It is
// the hot loop of an indexed lookup: a run of independent loads, each a likely cache and TLB
// miss, kept free of calls so the processor can overlap many of them.
func (sh *shard) loadTimestamps(d *segDir, cand []uint32, tss []int64) {
	magic, rs := sh.segMagic, sh.recordSize
	segs, base := d.segs, d.base // base is 0 without persistence; subtracted for safety
	tss = tss[:len(cand)]
	for i, seq := range cand {
		si := uint64(seq) // segRecords == 1
		if magic != 0 {
			si, _ = bits.Mul64(magic, uint64(seq)) // seq / segRecords (see segIndex)
		}
		seg := segs[si-base]
		off := int(uint64(seq)-seg.first) * rs
		tss[i] = int64(binary.LittleEndian.Uint64(seg.fixed[off:]))
	}
}

// planScanBelow prepends to out the matches below scanBelow, which the plan's indexes do not
// cover, found by scanning.
func (ml *MultiLog) planScanBelow(sh *shard, tail uint64, q request, scanBelow uint64, out []uint32) ([]uint32, error) {
	if scanBelow == 0 {
		return out, nil
	}
	var low []uint32
	err := ml.scan(sh, tail, 0, scanBelow, q, func(seq uint64, _ []byte) bool {
		low = append(low, uint32(seq))
		return true
	})
	if err != nil {
		return nil, err
	}
	return append(low, out...), nil
}

// batchSelector is a predicate that can test many records at once (*expr.Filter is one).
type batchSelector interface {
	Select(recs []byte, dst []int32) []int32
}

// selectChunk is how many records a scan hands to Select at a time.
const selectChunk = 256

// scan calls fn for every match with sequence in [lo, hi) (hi ≤ tail), in sequence order,
// skipping segments whose time bounds miss the range and records deleted by retention. It
// stops at the first segment it cannot read and returns why.
func (ml *MultiLog) scan(sh *shard, tail, lo, hi uint64, q request, fn func(seq uint64, rec []byte) bool) error {
	lo = max(lo, sh.firstKept())
	d := sh.segments()
	segs := d.segs
	// Start at lo's segment: the ones below are deleted or out of range. (lo may lie below
	// the directory if retention deleted more since firstKept was loaded.)
	if i := sh.segIndex(lo); i > d.base {
		segs = segs[min(i-d.base, uint64(len(segs))):]
	}
	rs := sh.recordSize
	bs, _ := q.m.(batchSelector)
	var sel []int32
	for _, seg := range segs {
		end := seg.first + uint64(sh.segRecords)
		if end <= lo || seg.first >= hi || seg.first >= tail {
			continue
		}
		if seg.maxTS.Load() < q.from || seg.minTS.Load() >= q.to {
			continue
		}
		a := max(lo, seg.first)
		b := min(hi, end, tail)
		if err := sh.lostIn(a, b); err != nil {
			return err
		}
		all, err := seg.read(sh)
		if errors.Is(err, ErrDeleted) {
			continue // deleted while the scan runs
		}
		if err != nil {
			return err
		}
		data := all[int(a-seg.first)*rs : int(b-seg.first)*rs]
		if bs != nil {
			for off, seq := 0, a; off < len(data); {
				n := min(selectChunk*rs, len(data)-off)
				sel = bs.Select(data[off:off+n], sel[:0])
				for _, k := range sel {
					o := off + int(k)*rs
					rec := data[o : o+rs : o+rs]
					if ts := int64(binary.LittleEndian.Uint64(rec)); ts >= q.from && ts < q.to {
						if !fn(seq+uint64(k), rec) {
							return nil
						}
					}
				}
				off += n
				seq += uint64(n / rs)
			}
			continue
		}
		seq := a
		for off := 0; off < len(data); off += rs {
			rec := data[off : off+rs : off+rs]
			ts := int64(binary.LittleEndian.Uint64(rec))
			if ts >= q.from && ts < q.to && (q.m == nil || q.m.Match(rec)) {
				if !fn(seq, rec) {
					return nil
				}
			}
			seq++
		}
	}
	return nil
}

// scanCursor streams a shard whose records are in timestamp order.
type scanCursor struct {
	sh       *shard
	segs     []*segment
	q        request
	tail     uint64
	si       int // current segment index
	data     []byte
	off      int    // byte offset of the next record (or chunk) in data
	seq      uint64 // sequence number of the record at off
	from, to int64
	e        error // the read failure that ended the cursor

	// Batch selection: sel holds the matching indexes of the chunk at chunkOff.
	bs       batchSelector
	sel      []int32
	selPos   int
	chunkOff int
	chunkSeq uint64
}

func newScanCursor(sh *shard, tail uint64, q request) *scanCursor {
	d := sh.segments()
	c := &scanCursor{sh: sh, q: q, tail: tail, from: q.from, to: q.to}
	c.bs, _ = q.m.(batchSelector)
	// c.segs are the directory's segments below the tail (none if retention deleted them all);
	// c.si indexes c.segs, so segment c.si is number d.base+c.si of the shard.
	nseg := (tail + uint64(sh.segRecords) - 1) / uint64(sh.segRecords)
	c.segs = d.segs[:min(nseg-min(nseg, d.base), uint64(len(d.segs)))]
	// Find the first segment that may hold from: the segments are in timestamp order. Deleted
	// segments (below the first kept record, a segment boundary) are skipped.
	c.si = sort.Search(len(c.segs), func(i int) bool { return c.segs[i].maxTS.Load() >= q.from })
	if keep := sh.firstKept() / uint64(sh.segRecords); keep > d.base {
		c.si = max(c.si, int(min(keep-d.base, uint64(len(c.segs)))))
	}
	c.load()
	if c.data != nil && q.from != MinTime {
		rs := sh.recordSize
		n := len(c.data) / rs
		i := sort.Search(n, func(i int) bool {
			return int64(binary.LittleEndian.Uint64(c.data[i*rs:])) >= q.from
		})
		c.off = i * rs
		c.seq += uint64(i)
	}
	return c
}

// load makes segment si (or the next readable one) current; data is nil at the end or on a
// read failure (then e says why).
func (c *scanCursor) load() {
	c.data, c.off = nil, 0
	c.sel, c.selPos = c.sel[:0], 0
	for ; c.si < len(c.segs); c.si++ {
		seg := c.segs[c.si]
		n := min(uint64(c.sh.segRecords), c.tail-seg.first)
		if c.sh.log == nil {
			c.data = seg.bytes(c.sh)[:int(n)*c.sh.recordSize]
			c.seq = seg.first
			return
		}
		if err := c.sh.lostIn(seg.first, seg.first+n); err != nil {
			c.e = err
			return
		}
		all, err := seg.read(c.sh)
		if errors.Is(err, ErrDeleted) {
			continue // deleted while the query runs
		}
		if err != nil {
			c.e = err
			return
		}
		c.data = all[:int(n)*c.sh.recordSize]
		c.seq = seg.first
		return
	}
}

func (c *scanCursor) shard() int { return c.sh.id }

func (c *scanCursor) err() error { return c.e }

func (c *scanCursor) next() (int64, uint64, []byte, bool) {
	if c.bs != nil {
		return c.nextSelected()
	}
	rs := c.sh.recordSize
	for c.data != nil {
		for c.off < len(c.data) {
			rec := c.data[c.off : c.off+rs : c.off+rs]
			ts := int64(binary.LittleEndian.Uint64(rec))
			seq := c.seq
			c.off += rs
			c.seq++
			if ts >= c.to {
				c.data = nil
				return 0, 0, nil, false
			}
			if c.q.m == nil || c.q.m.Match(rec) {
				return ts, seq, rec, true
			}
		}
		c.si++
		c.load()
	}
	return 0, 0, nil, false
}

// nextSelected is next with the predicate applied a chunk at a time.
func (c *scanCursor) nextSelected() (int64, uint64, []byte, bool) {
	rs := c.sh.recordSize
	for c.data != nil {
		if c.selPos < len(c.sel) {
			k := c.sel[c.selPos]
			c.selPos++
			off := c.chunkOff + int(k)*rs
			rec := c.data[off : off+rs : off+rs]
			ts := int64(binary.LittleEndian.Uint64(rec))
			if ts >= c.to {
				c.data = nil
				return 0, 0, nil, false
			}
			return ts, c.chunkSeq + uint64(k), rec, true
		}
		if c.off >= len(c.data) {
			c.si++
			c.load()
			continue
		}
		if int64(binary.LittleEndian.Uint64(c.data[c.off:])) >= c.to {
			c.data = nil
			return 0, 0, nil, false
		}
		n := min(selectChunk*rs, len(c.data)-c.off)
		c.chunkOff, c.chunkSeq = c.off, c.seq
		c.sel, c.selPos = c.bs.Select(c.data[c.off:c.off+n], c.sel[:0]), 0
		c.off += n
		c.seq += uint64(n / rs)
	}
	return 0, 0, nil, false
}

// listCursor yields precomputed sequence numbers (or, with e set, nothing).
type listCursor struct {
	sh   *shard
	segs *segDir
	seqs []uint32
	tss  []int64 // nil, or the timestamps of seqs (in-memory shards only)
	i    int
	e    error
}

func (c *listCursor) shard() int { return c.sh.id }

func (c *listCursor) err() error { return c.e }

func (c *listCursor) next() (int64, uint64, []byte, bool) {
	for c.e == nil && c.i < len(c.seqs) {
		seq := uint64(c.seqs[c.i])
		c.i++
		if c.sh.log == nil {
			rec := c.sh.record(c.segs, seq)
			if c.tss != nil {
				return c.tss[c.i-1], seq, rec, true
			}
			return schema.Timestamp(rec), seq, rec, true
		}
		rec, err := c.sh.recordAt(c.segs, seq)
		if errors.Is(err, ErrDeleted) {
			continue // deleted by retention
		}
		if err != nil {
			c.e = err
			break
		}
		return schema.Timestamp(rec), seq, rec, true
	}
	return 0, 0, nil, false
}
