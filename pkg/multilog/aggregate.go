package multilog

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/confluo-go/confluo/pkg/expr"
	"github.com/confluo-go/confluo/pkg/schema"
)

// Roll-up geometry: level L holds one partial per 64^L time buckets, so a range of n buckets
// reads at most 2·63 partials per level instead of n (Confluo walks every bucket).
const (
	rollBits   = 6
	rollLevels = 5
	pageBits   = 10
	pageSize   = 1 << pageBits
)

// partial is an aggregate's summary of one block of time buckets in one shard. It is immutable
// once published.
type partial struct {
	// through: the partial covers every record of its block in the shard with sequence number
	// below through (and at or above the aggregate's start).
	through uint64
	count   uint64
	sumI    int64
	sumF    float64
	mmCount uint64 // values in min/max (NaN is left out)
	min     uint64 // order keys (see orderKey)
	max     uint64
}

func (p *partial) merge(o *partial) {
	p.count += o.count
	p.sumI += o.sumI
	p.sumF += o.sumF
	if o.mmCount > 0 {
		if p.mmCount == 0 || o.min < p.min {
			p.min = o.min
		}
		if p.mmCount == 0 || o.max > p.max {
			p.max = o.max
		}
		p.mmCount += o.mmCount
	}
}

// page is 1,024 consecutive blocks of one roll-up level.
type page [pageSize]atomic.Pointer[partial]

// pageTable maps block numbers of one level to published partials. Readers look pages up in a
// sync.Map (a new page is stored once per 1,024 blocks); the writer caches its last page.
type pageTable struct {
	pages  sync.Map // int64 page number → *page
	lastID int64    // writer only
	last   *page    // writer only
}

func (t *pageTable) load(block int64) *partial {
	v, ok := t.pages.Load(block >> pageBits)
	if !ok {
		return nil
	}
	return v.(*page)[block&(pageSize-1)].Load()
}

// slot returns the block's slot, creating its page (writer only); newPage reports that it did.
func (t *pageTable) slot(block int64) (slot *atomic.Pointer[partial], newPage bool) {
	id := block >> pageBits
	if t.last == nil || t.lastID != id {
		v, ok := t.pages.Load(id)
		if !ok {
			var loaded bool
			v, loaded = t.pages.LoadOrStore(id, new(page))
			newPage = !loaded
		}
		t.last, t.lastID = v.(*page), id
	}
	return &t.last[block&(pageSize-1)], newPage
}

// Sizes for the memory estimate of aggregates.
const (
	pageBytes    = int64(unsafe.Sizeof(page{}))
	partialBytes = int64(unsafe.Sizeof(partial{}))
)

// aggEpoch is an aggregate's partials for the records of one shard with sequence numbers in
// [first, end) (see epoch.go): roll-up levels of time-bucketed partials. Epochs of appended
// records are written by the shard's writer; backfill epochs are built before they are shared.
type aggEpoch struct {
	first, end uint64
	levels     [rollLevels]pageTable
	minBucket  atomic.Int64 // range of buckets with data; min > max while empty
	maxBucket  atomic.Int64
	bytes      atomic.Int64 // memory estimate: pages and partials

	// Writer-private.
	wMin, wMax int64
	wbytes     int64
}

func (e *aggEpoch) seqs() (uint64, uint64) { return e.first, e.end }
func (e *aggEpoch) memory() int64          { return e.bytes.Load() }

func newAggEpoch(first, end uint64) *aggEpoch {
	e := &aggEpoch{first: first, end: end, wMin: math.MaxInt64, wMax: math.MinInt64}
	e.minBucket.Store(math.MaxInt64)
	e.maxBucket.Store(math.MinInt64)
	return e
}

// put merges q into bucket b at every roll-up level, stamping the new partials with through,
// and publishes them (writer only).
func (e *aggEpoch) put(b int64, q *partial, through uint64) {
	for l := range rollLevels {
		slot, newPage := e.levels[l].slot(b >> (rollBits * l))
		if newPage {
			e.wbytes += pageBytes
		}
		n := new(partial)
		if old := slot.Load(); old != nil {
			*n = *old
		} else {
			e.wbytes += partialBytes
		}
		n.merge(q)
		n.through = through
		slot.Store(n)
	}
	if b < e.wMin {
		e.wMin = b
		e.minBucket.Store(b)
	}
	if b > e.wMax {
		e.wMax = b
		e.maxBucket.Store(b)
	}
	e.bytes.Store(e.wbytes)
}

// valueKind says how an aggregate reads its column.
type valueKind uint8

const (
	kindNone valueKind = iota // COUNT
	kindSigned
	kindUnsigned
	kindFloat32
	kindFloat64
	kindBytes // ≤ 8 bytes, MIN/MAX only
)

// Aggregate is a named aggregate (SUM, MIN, MAX, COUNT, AVG) over the records of a filter,
// kept per shard as time-bucketed partials with roll-ups, one set per epoch of sequence
// numbers (epoch.go). Safe for concurrent use.
//
// Retention: an epoch whose records were all deleted is dropped with its partials. The epoch
// straddling the shard's first kept sequence number keeps its partials in memory, but readers
// do not use them: they aggregate that epoch's kept records (at or above the first kept
// sequence number) from the filter log. So an aggregate's value always covers exactly the
// records not deleted, whatever their timestamps; a time bucket holding both deleted and kept
// records counts the kept ones only.
//
// Invariants:
//
//  1. Each shard's partials are written only by its writer, into the epoch of the records'
//     sequence numbers, and published (pointer swap of an immutable partial) before the tail
//     that covers their records.
//  2. A published partial with through ≤ a reader's tail is exact for that reader; one with
//     through > tail is too new, and the reader recomputes that block from the lower level (at
//     level 0, from the filter log), so a read is always consistent with its version.
//  3. parts[i].backfill, once set, summarises exactly the filter log's matches of shard i
//     below parts[i].start (AggregateBackfill) in epochs whose partials never change (only
//     whole epochs are dropped, by retention); a reader whose tail is at least that start uses
//     its roll-ups, an older reader scans the filter log below its tail.
//  4. An aggregate is found by name (GetAggregate, InstallTrigger, Aggregates) only once
//     ready: at once without backfill, after every shard's backfill is stored with it. So a
//     named aggregate's value at any version covers the filter's matches from the filter's
//     start (backfill) or from the aggregate's start on.
type Aggregate struct {
	name   string
	filter *Filter
	agg    *expr.Aggregate
	kind   valueKind
	parts  []aggPart
	ready  atomic.Bool
}

// aggBackfill is an aggregate's summary of one shard's filter matches below the aggregate's
// start: epochs of roll-up levels as for appended records, every partial exact (through 0).
type aggBackfill struct {
	through uint64 // the aggregate's start in the shard
	epochs  epochList[*aggEpoch]
}

type aggPart struct {
	start    atomic.Int64
	backfill atomic.Pointer[aggBackfill]
	epochs   epochList[*aggEpoch]

	// Writer-private: the epoch being appended to, and changes to its bucket curBucket not
	// yet published.
	cur       *aggEpoch
	delta     partial
	curBucket int64
	_         [40]byte
}

// memoryBytes estimates the memory of the aggregate's partials (every shard, backfill
// included).
func (a *Aggregate) memoryBytes(m *memoryUse) {
	for i := range a.parts {
		p := &a.parts[i]
		m.add(p.epochs.memoryUse())
		if bf := p.backfill.Load(); bf != nil {
			m.add(bf.epochs.memoryUse())
		}
	}
}

// dropBelow drops shard's epochs (and backfill epochs) wholly below seq, the first kept
// sequence number.
func (a *Aggregate) dropBelow(shard int, seq uint64) {
	p := &a.parts[shard]
	p.epochs.dropBelow(seq)
	if bf := p.backfill.Load(); bf != nil {
		bf.epochs.dropBelow(seq)
	}
}

// beginEpoch makes the writer's current epoch the one of seq (writer only; derive hands it
// chunks within one epoch): the pending delta goes to the old epoch first.
func (a *Aggregate) beginEpoch(p *aggPart, seq, span, through uint64, st *writerState) {
	if p.cur != nil && seq < p.cur.end {
		return
	}
	a.flush(p, through, st)
	first := seq / span * span
	p.cur = newAggEpoch(first, first+span)
	p.epochs.push(p.cur)
}

func (a *Aggregate) startOf(shard int) *atomic.Int64 { return &a.parts[shard].start }

// Name returns the aggregate's name.
func (a *Aggregate) Name() string { return a.name }

// AggregateOption changes how AddAggregate builds an aggregate.
type AggregateOption func(*aggregateOptions)

type aggregateOptions struct{ backfill bool }

// AggregateBackfill makes AddAggregate also cover the records its filter logged before the
// call (all of the filter's matches, including a filter's own backfill). The backfill runs in
// the caller's goroutine and never blocks writers; the aggregate is visible by name only once
// it is complete.
func AggregateBackfill() AggregateOption { return func(o *aggregateOptions) { o.backfill = true } }

// AddAggregate defines an aggregate over the records of filter: "SUM(col)", "MIN(col)",
// "MAX(col)", "COUNT(*)" or "COUNT(col)", "AVG(col)". SUM and AVG need a numeric column; MIN
// and MAX a numeric column or one of at most 8 bytes (IPV4, MAC, STRING(≤8)). An unknown
// function or column, a filter that does not exist or a duplicate name is an error at
// definition time; nothing that can be defined can break ingest. The aggregate covers records
// appended after the call, and with AggregateBackfill those the filter logged before it.
func (ml *MultiLog) AddAggregate(name, filter, aggregate string, options ...AggregateOption) error {
	var o aggregateOptions
	for _, opt := range options {
		opt(&o)
	}
	if err := checkName(name); err != nil {
		return err
	}
	ea, err := expr.CompileAggregate(aggregate, ml.schema)
	if err != nil {
		return fmt.Errorf("%w: aggregate %q: %w", ErrExpr, name, err)
	}
	a := &Aggregate{name: name, agg: ea, parts: make([]aggPart, len(ml.shards))}
	if c := ea.Column; c != nil && ea.Func != expr.Count {
		switch t := c.Type; {
		case t.IsSigned():
			a.kind = kindSigned
		case t.IsUnsigned():
			a.kind = kindUnsigned
		case t == schema.Float:
			a.kind = kindFloat32
		case t == schema.Double:
			a.kind = kindFloat64
		case c.Size <= 8 && (ea.Func == expr.Min || ea.Func == expr.Max):
			a.kind = kindBytes
		default:
			return fmt.Errorf("%w: aggregate %q: %s of column %q (%s) is not supported", ErrExpr, name, ea.Func, c.Name, c.TypeString())
		}
	}
	for i := range a.parts {
		p := &a.parts[i]
		p.start.Store(-1)
		p.curBucket = math.MinInt64
	}
	a.ready.Store(!o.backfill)
	ml.mu.Lock()
	a.filter = ml.filterByName(filter)
	if a.filter == nil {
		ml.mu.Unlock()
		return fmt.Errorf("%w: aggregate %q: filter %q", ErrNotFound, name, filter)
	}
	cfg := ml.cfg.Load()
	if slices.ContainsFunc(cfg.aggs, func(o *Aggregate) bool { return o.name == name }) {
		ml.mu.Unlock()
		return fmt.Errorf("%w: aggregate %q", ErrExists, name)
	}
	n := cfg.clone()
	n.aggs = append(n.aggs, a)
	ml.cfg.Store(n.finish())
	err = ml.persistAddAggregate(name, filter, aggregate)
	ml.mu.Unlock()
	if o.backfill {
		ml.claimIdle(a)
		for i := range a.parts {
			a.parts[i].backfill.Store(ml.buildBackfill(a, i))
		}
		a.ready.Store(true)
	}
	return err
}

// buildBackfill summarises shard i's filter matches below the aggregate's start, in epochs.
func (ml *MultiLog) buildBackfill(a *Aggregate, i int) *aggBackfill {
	sh := ml.shards[i]
	through := uint64(a.parts[i].start.Load())
	bf := &aggBackfill{through: through}
	seqs := ml.filterSeqs(a.filter, sh, through, request{from: MinTime, to: MaxTime}) // in sequence order
	segs := sh.segments()
	span := ml.epochSpan()
	var list []*aggEpoch
	buckets := map[int64]*partial{}
	publish := func() {
		e := list[len(list)-1]
		for b, q := range buckets {
			e.put(b, q, 0)
		}
		clear(buckets)
	}
	for _, seq := range seqs {
		if len(list) == 0 || uint64(seq) >= list[len(list)-1].end {
			if len(list) > 0 {
				publish()
			}
			first := uint64(seq) / span * span
			list = append(list, newAggEpoch(first, min(first+span, through)))
		}
		rec := sh.record(segs, uint64(seq))
		b := ml.bucketOf(schema.Timestamp(rec))
		p := buckets[b]
		if p == nil {
			p = new(partial)
			buckets[b] = p
		}
		a.add(p, rec)
	}
	if len(list) > 0 {
		publish()
	}
	bf.epochs.store(list)
	bf.epochs.dropBelow(sh.firstKept()) // deleted while the backfill ran
	return bf
}

// bucketSpan returns the smallest and largest time bucket holding data of the aggregate in any
// shard (lo > hi when there is none).
func (a *Aggregate) bucketSpan() (lo, hi int64) {
	lo, hi = math.MaxInt64, math.MinInt64
	span := func(es []*aggEpoch) {
		for _, e := range es {
			lo = min(lo, e.minBucket.Load())
			hi = max(hi, e.maxBucket.Load())
		}
	}
	for i := range a.parts {
		p := &a.parts[i]
		span(p.epochs.load())
		if bf := p.backfill.Load(); bf != nil {
			span(bf.epochs.load())
		}
	}
	return lo, hi
}

// RemoveAggregate drops an aggregate. One that a trigger uses cannot be removed.
func (ml *MultiLog) RemoveAggregate(name string) error {
	ml.mu.Lock()
	defer ml.mu.Unlock()
	cfg := ml.cfg.Load()
	i := slices.IndexFunc(cfg.aggs, func(a *Aggregate) bool { return a.name == name })
	if i < 0 {
		return fmt.Errorf("%w: aggregate %q", ErrNotFound, name)
	}
	if t := ml.monitorRef().triggerUsing(cfg.aggs[i]); t != "" {
		return fmt.Errorf("%w: aggregate %q is used by trigger %q", ErrExists, name, t)
	}
	n := cfg.clone()
	n.aggs = slices.Delete(n.aggs, i, i+1)
	ml.cfg.Store(n.finish())
	return ml.persistRemoveAggregate(name)
}

// Aggregates returns the names of the aggregates that are ready (see AggregateBackfill).
func (ml *MultiLog) Aggregates() []string {
	var names []string
	for _, a := range ml.cfg.Load().aggs {
		if a.ready.Load() {
			names = append(names, a.name)
		}
	}
	return names
}

func (ml *MultiLog) aggregate(name string) *Aggregate {
	for _, a := range ml.cfg.Load().aggs {
		if a.name == name && a.ready.Load() {
			return a
		}
	}
	return nil
}

// add accumulates rec into d: the count, the sums, and the column's value as an
// order-preserving uint64 key for MIN/MAX (NaN left out).
func (a *Aggregate) add(d *partial, rec []byte) {
	d.count++
	if a.kind == kindNone {
		return
	}
	c := a.agg.Column
	f := rec[c.Offset : c.Offset+c.Size]
	var key uint64
	switch a.kind {
	case kindSigned:
		v := signExtend(leUint(f), c.Size)
		d.sumI += v
		key = uint64(v) ^ 1<<63
	case kindUnsigned:
		u := leUint(f)
		d.sumI += int64(u)
		key = u
	case kindFloat32, kindFloat64:
		var v float64
		if a.kind == kindFloat32 {
			v = float64(math.Float32frombits(binary.LittleEndian.Uint32(f)))
		} else {
			v = math.Float64frombits(binary.LittleEndian.Uint64(f))
		}
		d.sumF += v
		if v != v {
			return // NaN: summed, not ordered
		}
		if v == 0 {
			v = 0
		}
		b := math.Float64bits(v)
		if b&(1<<63) != 0 {
			key = ^b
		} else {
			key = b | 1<<63
		}
	case kindBytes:
		for i, x := range f {
			key |= uint64(x) << (56 - 8*i)
		}
	}
	if d.mmCount == 0 || key < d.min {
		d.min = key
	}
	if d.mmCount == 0 || key > d.max {
		d.max = key
	}
	d.mmCount++
}

// flush publishes the pending delta into every roll-up level of the current epoch (writer
// only).
func (a *Aggregate) flush(p *aggPart, through uint64, st *writerState) {
	if p.delta.count == 0 {
		return
	}
	p.cur.put(p.curBucket, &p.delta, through)
	st.touch(a, p.curBucket)
	p.delta = partial{}
}

// AggregateValue is the value of an aggregate over a time range at a version.
type AggregateValue struct {
	// Func is the aggregate function.
	Func expr.AggFunc
	// Count is the number of records aggregated.
	Count uint64
	// Empty is true when no record was aggregated; Value is then the zero Value.
	Empty bool
	// Value is the result: COUNT is a ULONG; SUM a LONG for integer columns (two's-complement
	// wrap-around on overflow) or a DOUBLE for FLOAT/DOUBLE columns; AVG a DOUBLE; MIN and MAX
	// have the column's type (NaN values are left out of them). Empty if Empty.
	Value schema.Value
}

// Float returns the value as a float64 (0 when empty): what triggers compare.
func (v AggregateValue) Float() float64 {
	switch x := v.Value; {
	case v.Empty:
		return 0
	case x.Type.IsSigned():
		return float64(x.I)
	case x.Type.IsUnsigned():
		return float64(x.U)
	case x.Type.IsFloat():
		return x.F
	}
	return 0
}

func (v AggregateValue) String() string {
	if v.Empty {
		return "empty"
	}
	return v.Value.String()
}

func (a *Aggregate) result(p *partial) AggregateValue {
	r := AggregateValue{Func: a.agg.Func, Count: p.count, Empty: p.count == 0}
	if r.Empty {
		return r
	}
	switch a.agg.Func {
	case expr.Count:
		r.Value = schema.UintValue(schema.ULong, p.count)
	case expr.Sum:
		if a.kind == kindFloat32 || a.kind == kindFloat64 {
			r.Value = schema.FloatValue(schema.Double, p.sumF)
		} else {
			r.Value = schema.IntValue(schema.Long, p.sumI)
		}
	case expr.Avg:
		s := p.sumF
		if a.kind != kindFloat32 && a.kind != kindFloat64 {
			s = float64(p.sumI)
		}
		r.Value = schema.FloatValue(schema.Double, s/float64(p.count))
	case expr.Min, expr.Max:
		if p.mmCount == 0 {
			r.Value = schema.FloatValue(a.agg.Column.Type, math.NaN())
			return r
		}
		k := p.min
		if a.agg.Func == expr.Max {
			k = p.max
		}
		r.Value = a.fromKey(k)
	}
	return r
}

func (a *Aggregate) fromKey(k uint64) schema.Value {
	c := a.agg.Column
	switch a.kind {
	case kindSigned:
		return schema.IntValue(c.Type, int64(k^1<<63))
	case kindUnsigned:
		return schema.UintValue(c.Type, k)
	case kindFloat32, kindFloat64:
		if k&(1<<63) != 0 {
			k &^= 1 << 63
		} else {
			k = ^k
		}
		return schema.FloatValue(c.Type, math.Float64frombits(k))
	default:
		b := make([]byte, c.Size)
		for i := range b {
			b[i] = byte(k >> (56 - 8*i))
		}
		if c.Type == schema.String {
			for len(b) > 0 && b[len(b)-1] == 0 {
				b = b[:len(b)-1]
			}
		}
		return schema.BytesValue(c.Type, b)
	}
}

// GetAggregate returns the aggregate over records with timestamps in [from, to) at a new
// snapshot.
func (ml *MultiLog) GetAggregate(name string, from, to int64) (AggregateValue, error) {
	return ml.Snapshot().GetAggregate(name, from, to)
}

// GetAggregate is MultiLog.GetAggregate at the snapshot's version: it merges every shard's
// partials, using roll-ups for whole blocks and the filter log for partly covered buckets.
func (s *Snapshot) GetAggregate(name string, from, to int64) (AggregateValue, error) {
	a := s.ml.aggregate(name)
	if a == nil {
		return AggregateValue{}, fmt.Errorf("%w: aggregate %q", ErrNotFound, name)
	}
	var total partial
	for i := range s.ml.shards {
		p := s.ml.aggRange(a, i, s.v.tails[i], from, to)
		total.merge(&p)
	}
	return a.result(&total), nil
}

// aggScope is what a reader aggregates of one epoch: the records with sequence numbers in
// [lo, hi), at its tail (a partial stamped with a higher through is too new for it).
type aggScope struct {
	lo, hi uint64
	tail   uint64
}

// aggRange computes shard i's partial over [from, to) at tail: the backfill (records below
// the aggregate's start) plus the records from the start on, leaving out records retention
// deleted.
func (ml *MultiLog) aggRange(a *Aggregate, i int, tail uint64, from, to int64) partial {
	var out partial
	if from >= to {
		return out
	}
	p := &a.parts[i]
	firstKept := ml.shards[i].firstKept()
	if bf := p.backfill.Load(); bf != nil {
		if tail < bf.through {
			ml.scanFilterLog(a, i, 0, tail, from, to, math.MinInt64, math.MaxInt64, &out)
		} else {
			for _, e := range bf.epochs.load() {
				ml.epochRange(a, i, e, aggScope{lo: e.first, hi: min(e.end, bf.through), tail: tail}, firstKept, from, to, &out)
			}
		}
	}
	start := p.start.Load()
	if start < 0 || uint64(start) >= tail {
		return out
	}
	for _, e := range p.epochs.load() {
		if e.first >= tail {
			break
		}
		ml.epochRange(a, i, e, aggScope{lo: max(e.first, uint64(start)), hi: min(e.end, tail), tail: tail}, firstKept, from, to, &out)
	}
	return out
}

// epochRange merges into out the aggregate over [from, to) of epoch e's records in sc. An
// epoch that straddles firstKept (retention deleted some of its records) is aggregated from
// the filter log over its kept records; others use their roll-ups.
func (ml *MultiLog) epochRange(a *Aggregate, i int, e *aggEpoch, sc aggScope, firstKept uint64, from, to int64, out *partial) {
	if sc.hi <= max(sc.lo, firstKept) {
		return
	}
	minB, maxB := e.minBucket.Load(), e.maxBucket.Load()
	if ml.bucketOf(from) > maxB || ml.bucketOf(to-1) < minB {
		return
	}
	if sc.lo < firstKept {
		ml.scanFilterLog(a, i, firstKept, sc.hi, from, to, minB, maxB, out)
		return
	}
	ml.rangeOver(a, i, sc, from, to, &e.levels, minB, maxB, out)
}

// rangeOver merges into out the partials of levels over [from, to): roll-ups for whole buckets
// in [minBucket, maxBucket], and the records (from the filter log, within sc) for partly
// covered edge buckets.
func (ml *MultiLog) rangeOver(a *Aggregate, i int, sc aggScope, from, to int64, levels *[rollLevels]pageTable,
	minBucket, maxBucket int64, out *partial) {
	B := int64(ml.opts.FilterBucket)
	edge := func(b int64) {
		q := ml.scanBucket(a, i, sc, b, from, to)
		out.merge(&q)
	}
	lo, hi := ml.bucketOf(from), ml.bucketOf(to-1)
	// Whole buckets are [wlo, whi]; partly covered edges are computed exactly.
	wlo, whi := lo, hi
	if from != MinTime && from > lo*B {
		wlo = lo + 1
	}
	if to != MaxTime && to-1 < hi*B+B-1 {
		whi = hi - 1
	}
	if lo == hi && (wlo > lo || whi < hi) {
		edge(lo)
		return
	}
	if wlo > lo {
		edge(lo)
	}
	if whi < hi {
		edge(hi)
	}
	wlo = max(wlo, minBucket)
	whi = min(whi, maxBucket)
	if wlo <= whi {
		ml.rollup(a, i, sc, wlo, whi+1, 0, levels, out)
	}
}

// scanFilterLog aggregates shard i's filter matches with sequence numbers in [lo, hi) (and
// not deleted) with timestamps in [from, to) and buckets in [minB, maxB], reading the records
// (readers older than the backfill, epochs straddling the first kept record).
func (ml *MultiLog) scanFilterLog(a *Aggregate, i int, lo, hi uint64, from, to int64, minB, maxB int64, out *partial) {
	if from >= to {
		return
	}
	sh := ml.shards[i]
	segs := sh.segments()
	a.filter.eachMatch(sh, lo, hi, max(ml.bucketOf(from), minB), min(ml.bucketOf(to-1), maxB), func(seq uint32) bool {
		rec := sh.record(segs, uint64(seq))
		if ts := schema.Timestamp(rec); ts >= from && ts < to {
			a.add(out, rec)
		}
		return true
	})
}

// rollup merges the blocks [lo, hi) of level l (and above) into out.
func (ml *MultiLog) rollup(a *Aggregate, i int, sc aggScope, lo, hi int64, l int, levels *[rollLevels]pageTable, out *partial) {
	const fan = 1 << rollBits
	for lo < hi {
		if l == rollLevels-1 {
			for ; lo < hi; lo++ {
				q := ml.block(a, i, sc, l, lo, levels)
				out.merge(&q)
			}
			return
		}
		for lo < hi && lo&(fan-1) != 0 {
			q := ml.block(a, i, sc, l, lo, levels)
			out.merge(&q)
			lo++
		}
		for hi > lo && hi&(fan-1) != 0 {
			hi--
			q := ml.block(a, i, sc, l, hi, levels)
			out.merge(&q)
		}
		lo >>= rollBits
		hi >>= rollBits
		l++
	}
}

// block returns the partial of block b of level l in shard i, exact at the scope's tail.
func (ml *MultiLog) block(a *Aggregate, i int, sc aggScope, l int, b int64, levels *[rollLevels]pageTable) partial {
	p := levels[l].load(b)
	if p == nil {
		return partial{}
	}
	if p.through <= sc.tail {
		return *p
	}
	// Too new for this reader: recompute from below.
	if l == 0 {
		return ml.scanBucket(a, i, sc, b, MinTime, MaxTime)
	}
	var out partial
	for c := range int64(1 << rollBits) {
		q := ml.block(a, i, sc, l-1, b<<rollBits+c, levels)
		out.merge(&q)
	}
	return out
}

// scanBucket aggregates shard i's filter matches in bucket b with timestamps in [from, to)
// and sequence numbers in the scope, reading the records. Records retention deleted are
// skipped.
func (ml *MultiLog) scanBucket(a *Aggregate, i int, sc aggScope, b int64, from, to int64) partial {
	var out partial
	sh := ml.shards[i]
	segs := sh.segments()
	a.filter.eachMatch(sh, sc.lo, sc.hi, b, b, func(seq uint32) bool {
		rec := sh.record(segs, uint64(seq))
		if ts := schema.Timestamp(rec); ts >= from && ts < to {
			a.add(&out, rec)
		}
		return true
	})
	return out
}
