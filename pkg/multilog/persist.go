package multilog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confluo-go/confluo/pkg/logstore"
	"github.com/confluo-go/confluo/pkg/schema"
)

// Persistence errors; returned errors wrap them with details.
var (
	// ErrDeleted: the record was deleted by retention (RetentionAge, MaxDiskBytes).
	ErrDeleted = errors.New("multilog: record deleted by retention")
	// ErrLost: the record was lost to damage that recovery found (see Open).
	ErrLost = errors.New("multilog: record lost to damage")
	// ErrRead: reading a segment from the store failed (damaged or missing file).
	ErrRead = errors.New("multilog: persistence read failed")
)

// Persistence says where and how a MultiLog keeps its data on disk (see Open and package
// logstore; the format is docs/format.md).
type Persistence struct {
	// Dir is the MultiLog's directory; it is created if missing. Empty: nothing is kept on
	// disk (Mode must then be logstore.InMemory), see Mode.
	Dir string

	// Mode is logstore.Durable (an append returns after its records are fdatasync'ed; the
	// default with a Dir) or logstore.DurableRelaxed (synced every Store.SyncInterval; a crash
	// loses at most that interval plus one flush, and appends wait when the disk falls behind,
	// see logstore.DurableRelaxed). With Dir empty, logstore.InMemory: the MultiLog keeps
	// everything in memory, like New, but under the Store's MaxMemoryBytes and RetentionAge:
	// the oldest segments, and what indexes, filters and aggregates derived from them, are
	// dropped (counted in Store().Stats(): DeletedByMemory, DeletedByAge, RecordsDeleted) so a
	// long-running process never runs out of memory. Nothing survives Close.
	Mode logstore.Mode

	// Store holds the storage options: SyncInterval, ArchiveAge (sealed segments older than it
	// are compressed on disk and leave memory), MaxMemoryBytes (sealed segments held in memory
	// beyond it are archived and leave memory, oldest first), Codec, CompressionLevel,
	// CacheSegments, MaintainInterval, Now, RetentionAge (sealed segments whose newest record
	// is older than it are deleted) and MaxDiskBytes (the oldest sealed segments are deleted to
	// keep the files under it). Segments that left memory are read back through the store
	// transparently: queries, filters and aggregates give the same answers. Deleted segments
	// are gone for every read path: queries, filter queries, index candidates and backfills
	// skip their records, aggregates leave them out, NumRecords does not count them, and Read
	// of one fails with ErrDeleted. Derived logs (indexes, filters, aggregates) stay in memory
	// in epochs of sequence numbers; an epoch whose records are all deleted is dropped. The
	// memory of closed epochs counts against MaxMemoryBytes with the sealed segments: when
	// archiving cannot keep the sum under it, the oldest segments are deleted (DeletedByMemory)
	// (package documentation, "Memory bound", states the fixed overhead). Mode, Shards,
	// SegmentBytes, Name, Registerer, Logger, OnRelease, OnDelete and ExtraMemoryBytes come
	// from Persistence and the MultiLog's Options.
	Store logstore.Options
}

// persistState is a persisted MultiLog's link to its store.
type persistState struct {
	store *logstore.Store
	ml    atomic.Pointer[MultiLog] // set once Open is done; the store's OnRelease uses it

	// readErrors counts reads of released segments that failed (damaged or missing archive).
	// Queries report such failures in Rows.Err; derived-log paths that cannot fail (aggregate
	// recomputation, backfill) read the records as zeros.
	readErrors atomic.Uint64

	// lost lists, per shard, the records recovery found lost to damage (read-only after Open):
	// queries that reach them fail with ErrLost naming the file.
	lost [][]lostRange

	// mu guards defs and writing them to the store. Lock order: MultiLog.mu, monitor.mu,
	// persistState.mu.
	mu   sync.Mutex
	defs definitions
}

// definitions are the MultiLog's configuration as the user gave it, kept in the store's
// manifest so that Open can redefine it.
type definitions struct {
	Indexes    []indexDef     `json:"indexes,omitempty"`
	Filters    []filterDef    `json:"filters,omitempty"`
	Aggregates []aggregateDef `json:"aggregates,omitempty"`
	Triggers   []triggerDef   `json:"triggers,omitempty"`
}

// lostRange is a run of records of one shard lost to damage.
type lostRange struct {
	first, end uint64 // [first, end)
	err        error
}

type indexDef struct {
	Column string  `json:"column"`
	Bucket float64 `json:"bucket"`
}

type filterDef struct {
	Name string `json:"name"`
	Expr string `json:"expr"`
}

type aggregateDef struct {
	Name      string `json:"name"`
	Filter    string `json:"filter"`
	Aggregate string `json:"aggregate"`
}

type triggerDef struct {
	Name      string        `json:"name"`
	Condition string        `json:"condition"`
	Period    time.Duration `json:"period_ns"`
}

// Open opens the MultiLog persisted in p.Dir, or creates it there. With p.Dir empty it creates
// an in-memory MultiLog kept under p.Store's MaxMemoryBytes and RetentionAge (see
// Persistence.Mode); the rest of this comment is about directories.
//
// A new directory needs a schema; for an existing one s may be nil (the schema comes from the
// directory) and a non-nil s must equal it. opts.Writers and opts.SegmentBytes left zero are
// taken from an existing directory; non-zero values must match it.
//
// Open restores the indexes, filters and aggregates (which then cover every restored record),
// then the data (every shard's records are replayed through the normal append path, so every
// derived log is rebuilt), then the triggers (they evaluate windows that receive data from
// now on, so restored data does not fire alerts again). A torn final batch left by a crash is
// discarded. If the directory holds damage, Open returns the MultiLog together with an error
// wrapping *logstore.DamageError (errors.Is(err, logstore.ErrDamaged)): the MultiLog is usable;
// a query that reaches records lost to the damage stops there and its Rows.Err (or Count's
// error) wraps ErrLost, naming the shard, records and file. Segments retention deleted before
// Open are skipped (the shard resumes at logstore.ShardLog.FirstSeq).
//
// From then on every append is also written to the directory before it is published (in
// Durable mode, before the batch is acknowledged). A write error is sticky: the batch stays
// visible in memory but AppendBatch returns the error, now and for every later batch of that
// writer. After Close the MultiLog stays readable but appends fail.
func Open(s *schema.Schema, opts Options, p Persistence) (*MultiLog, error) {
	so := p.Store
	switch {
	case so.OnRelease != nil || so.OnDelete != nil || so.ExtraMemoryBytes != nil:
		return nil, fmt.Errorf("%w: Store.OnRelease, Store.OnDelete and Store.ExtraMemoryBytes are the MultiLog's own", ErrOptions)
	case p.Dir == "" && p.Mode != logstore.InMemory:
		return nil, fmt.Errorf("%w: persistence mode %v needs a directory", ErrOptions, p.Mode)
	case p.Dir == "":
		// In memory under a bound: the store keeps the segments and drops the oldest.
		so.Mode = logstore.InMemory
		if s == nil {
			return nil, fmt.Errorf("%w: nil schema", ErrOptions)
		}
	case p.Mode == logstore.InMemory:
		so.Mode = logstore.Durable
	case p.Mode == logstore.Durable || p.Mode == logstore.DurableRelaxed:
		so.Mode = p.Mode
	default:
		return nil, fmt.Errorf("%w: persistence mode %v", ErrOptions, p.Mode)
	}
	if opts.Writers == 0 && !logstore.Exists(p.Dir) {
		opts.Writers = runtime.NumCPU()
	}
	so.Shards, so.SegmentBytes = opts.Writers, opts.SegmentBytes
	so.Name, so.Registerer, so.Logger = opts.Name, opts.Registerer, opts.Logger
	ps := &persistState{}
	// The store releases a sealed segment's memory (after archiving it) to stay under
	// MaxMemoryBytes; the MultiLog then drops its reference too and reads it through the store.
	so.OnRelease = func(shard int, first uint64) {
		if ml := ps.ml.Load(); ml != nil {
			ml.releaseSegment(shard, first)
		}
	}
	// Retention deleted a shard's oldest segment: the MultiLog drops its memory too, and the
	// derived-log epochs now wholly deleted; readers skip it from now on (the shard log's
	// FirstSeq already moved past it).
	so.OnDelete = func(shard int, first uint64) {
		if ml := ps.ml.Load(); ml != nil {
			ml.releaseSegment(shard, first)
			ml.dropDeleted(shard)
		}
	}
	// MaxMemoryBytes bounds the derived logs too: the store counts the memory of their closed
	// epochs with its sealed segments, and deletes the oldest data when releasing segments is
	// not enough. Each shard's current epoch is the fixed overhead, like its active segment:
	// no deletion can reclaim it.
	so.ExtraMemoryBytes = func() int64 {
		if ml := ps.ml.Load(); ml != nil {
			return ml.derivedMemory().closed
		}
		return 0
	}
	st, openErr := logstore.Open(p.Dir, s, so)
	if st == nil {
		if p.Dir == "" {
			return nil, fmt.Errorf("multilog: open in-memory store: %w", openErr)
		}
		return nil, fmt.Errorf("multilog: open %s: %w", p.Dir, openErr)
	}
	var ml *MultiLog
	fail := func(err error) (*MultiLog, error) {
		if ml != nil {
			ml.Close() // stops a monitor started by a restored trigger; the store is closed below
		}
		return nil, errors.Join(err, st.Close())
	}
	opts.Writers, opts.SegmentBytes = st.Shards(), st.SegmentRecords()*st.Schema().RecordSize
	ml, err := New(st.Schema(), opts)
	if err != nil {
		return fail(err)
	}
	for _, sh := range ml.shards {
		sh.persistent = true
	}
	// Derived logs come in epochs retention can drop (epoch.go); set before any exists.
	ml.epochRecords = epochSpan(st.SegmentRecords(), true)
	ps.store = st
	if raw := st.Definitions(); len(raw) > 0 {
		if err := json.Unmarshal(raw, &ps.defs); err != nil {
			return fail(fmt.Errorf("%w: %s: definitions: %v", ErrOptions, p.Dir, err))
		}
	}
	d := ps.defs
	for _, ix := range d.Indexes {
		if err := ml.AddIndex(ix.Column, ix.Bucket); err != nil {
			return fail(fmt.Errorf("multilog: restore index on %q: %w", ix.Column, err))
		}
	}
	for _, f := range d.Filters {
		if err := ml.AddFilter(f.Name, f.Expr); err != nil {
			return fail(fmt.Errorf("multilog: restore filter %q: %w", f.Name, err))
		}
	}
	for _, a := range d.Aggregates {
		if err := ml.AddAggregate(a.Name, a.Filter, a.Aggregate); err != nil {
			return fail(fmt.Errorf("multilog: restore aggregate %q: %w", a.Name, err))
		}
	}
	if err := ml.replay(st, ps); err != nil {
		return fail(err)
	}
	for _, t := range d.Triggers {
		if err := ml.InstallTrigger(t.Name, t.Condition, t.Period); err != nil {
			return fail(fmt.Errorf("multilog: restore trigger %q: %w", t.Name, err))
		}
	}
	// Attach last: definitions restored above are already in ps.defs.
	ml.persist = ps
	ps.ml.Store(ml)
	// Segments the store released or deleted while Open ran (background maintenance) are
	// released here too.
	for i, sh := range ml.shards {
		l := st.Shard(i)
		for _, seg := range sh.segments().segs {
			if seg.first < l.FirstSeq() {
				seg.mem.Store(nil)
			}
		}
		for _, info := range l.Segments() {
			if info.Sealed && !info.InMemory {
				ml.releaseSegment(i, info.First)
			}
		}
		ml.dropDeleted(i)
	}
	return ml, openErr
}

// replay appends every record of the store through the normal append path (not persisted
// again), then attaches each shard to its shard log: the active segment's memory becomes the
// store's buffer, so later appends are written once, in place.
func (ml *MultiLog) replay(st *logstore.Store, ps *persistState) error {
	rs := ml.schema.RecordSize
	release := st.Options().MaxMemoryBytes > 0
	rec := st.Recovery()
	ps.lost = make([][]lostRange, len(ml.shards))
	for i, sh := range ml.shards {
		l := st.Shard(i)
		w := ml.Writer(i)
		// Records retention deleted before: the shard resumes after them.
		sh.skipDeleted(l.FirstSeq())
		for _, info := range l.Segments() {
			if info.Records == 0 {
				continue
			}
			if info.First > sh.next && sh.next%uint64(sh.segRecords) == 0 {
				// Background retention deleted more since FirstSeq was read.
				sh.skipDeleted(info.First)
			}
			for _, h := range info.Holes {
				ps.lost[i] = append(ps.lost[i], lostRange{first: h.First, end: h.First + h.Count, err: lostError(rec.Damage, i, info.First, h)})
			}
			data, err := l.ReadSegment(info.First)
			if errors.Is(err, logstore.ErrDamaged) && len(info.Holes) > 0 {
				// A lost segment (reported by the store's Open): its records are held as
				// zeros, and queries that reach them report ErrLost.
				data, err = make([]byte, info.Records*rs), nil
			}
			if errors.Is(err, logstore.ErrDropped) && sh.next == info.First {
				// Deleted by background retention while Open runs.
				sh.skipDeleted(info.First + uint64(info.Capacity))
				continue
			}
			if err != nil {
				return fmt.Errorf("multilog: restore shard %d segment %d: %w", i, info.First, err)
			}
			if err := w.AppendBatch(data[:info.Records*rs]); err != nil {
				return fmt.Errorf("multilog: restore shard %d: %w", i, err)
			}
			if info.Sealed && !info.InMemory && release && len(info.Holes) == 0 {
				// Under a memory bound, restored sealed segments are read from the store.
				sh.active.mem.Store(nil)
			}
		}
		if sh.next != l.Tail() {
			return fmt.Errorf("multilog: restore shard %d: %d records replayed, the store has %d", i, sh.next, l.Tail())
		}
		if seg := sh.active; seg != nil && seg.used < sh.segRecords {
			first, mem, next, err := l.Reserve()
			if err != nil {
				return fmt.Errorf("multilog: restore shard %d: %w", i, err)
			}
			if first != seg.first || next != seg.used || len(mem) != len(*seg.mem.Load()) {
				return fmt.Errorf("multilog: restore shard %d: store's active segment %d+%d does not match %d+%d", i, first, next, seg.first, seg.used)
			}
			seg.mem.Store(&mem) // same records; nothing reads the MultiLog yet
		}
		sh.log, sh.ps = l, ps
	}
	return nil
}

// lostError describes a hole of shard's segment first, naming the damaged file when recovery
// reported it.
func lostError(damage []logstore.Damage, shard int, first uint64, h logstore.Hole) error {
	file := "unknown file"
	for _, d := range damage {
		if d.Shard == shard && d.FirstSeq < h.First+h.Count && h.First < d.FirstSeq+max(d.Records, 1) {
			file = fmt.Sprintf("%s at offset %d: %s", d.File, d.Offset, d.Reason)
			break
		}
	}
	return fmt.Errorf("%w: shard %d records %d..%d of segment %d (%s)", ErrLost, shard, h.First, h.First+h.Count-1, first, file)
}

// skipDeleted advances an empty or segment-aligned shard to seq, which is a segment boundary:
// retention deleted the records below it. The directory restarts at seq's segment (segDir
// base), without the segments below it: no placeholder per deleted segment. Used by replay
// only, before the MultiLog is shared.
func (sh *shard) skipDeleted(seq uint64) {
	if seq <= sh.next {
		return
	}
	for _, seg := range sh.segments().segs {
		seg.mem.Store(nil) // all below seq: deleted since replay read them
	}
	sh.dir.Store(&segDir{base: sh.segIndex(seq)})
	sh.active = nil
	sh.next = seq
	sh.tail.Store(seq)
}

// firstKept is the first sequence number of the shard that retention has not deleted (0
// without persistence). Records below it are skipped by every read path.
func (sh *shard) firstKept() uint64 {
	if sh.log == nil {
		return 0
	}
	return sh.log.FirstSeq()
}

// lostIn returns the error of the first lost run of records overlapping [lo, hi), if any.
func (sh *shard) lostIn(lo, hi uint64) error {
	if sh.ps == nil {
		return nil
	}
	for _, r := range sh.ps.lost[sh.id] {
		if r.first < hi && lo < r.end {
			return r.err
		}
	}
	return nil
}

// segmentMemory returns the memory for the shard's new segment starting at first: the shard
// log's buffer when the shard is persisted (records are then written once, in place), else a
// new slab. Writer-private.
func (sh *shard) segmentMemory(first uint64) []byte {
	if sh.log != nil && sh.logErr == nil {
		f, mem, next, err := sh.log.Reserve()
		if err == nil && (f != first || next != 0 || len(mem) != sh.segRecords*sh.recordSize) {
			err = fmt.Errorf("multilog: shard %d: store segment %d+%d for segment %d", sh.id, f, next, first)
		}
		if err == nil {
			return mem
		}
		sh.logErr = err
	}
	return make([]byte, sh.segRecords*sh.recordSize)
}

// commit persists k records just copied into the shard's active segment (Durable: synced when
// it returns). Writer-private; a failure is sticky in sh.logErr.
func (sh *shard) commit(k int) {
	if sh.log == nil || sh.logErr != nil {
		return
	}
	if err := sh.log.Commit(k); err != nil {
		sh.logErr = fmt.Errorf("multilog: shard %d: persist: %w", sh.id, err)
	}
}

// persistErr is the shard's sticky persistence error, if any.
func (sh *shard) persistErr() error { return sh.logErr }

// saveDefinitions applies change to the persisted definitions and writes them. It is a no-op
// for a MultiLog without persistence.
func (ml *MultiLog) saveDefinitions(change func(d *definitions)) error {
	ps := ml.persist
	if ps == nil {
		return nil
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	d := ps.defs
	d.Indexes = slices.Clone(d.Indexes)
	d.Filters = slices.Clone(d.Filters)
	d.Aggregates = slices.Clone(d.Aggregates)
	d.Triggers = slices.Clone(d.Triggers)
	change(&d)
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // keep "a >= 1" readable in the manifest
	err := enc.Encode(d)
	if err == nil {
		err = ps.store.SetDefinitions(bytes.TrimSpace(b.Bytes()))
	}
	if err != nil {
		return fmt.Errorf("multilog: definition applied in memory but not persisted: %w", err)
	}
	ps.defs = d
	return nil
}

// Hooks called by the definition methods after a change succeeded (under MultiLog.mu and/or
// monitor.mu; they take only persistState.mu).

func (ml *MultiLog) persistAddIndex(column string, bucket float64) error {
	return ml.saveDefinitions(func(d *definitions) { d.Indexes = append(d.Indexes, indexDef{column, bucket}) })
}

func (ml *MultiLog) persistRemoveIndex(col *schema.Column) error {
	return ml.saveDefinitions(func(d *definitions) {
		d.Indexes = slices.DeleteFunc(d.Indexes, func(x indexDef) bool {
			c, ok := ml.schema.Column(x.Column)
			return ok && c.Name == col.Name
		})
	})
}

func (ml *MultiLog) persistAddFilter(name, expression string) error {
	return ml.saveDefinitions(func(d *definitions) { d.Filters = append(d.Filters, filterDef{name, expression}) })
}

func (ml *MultiLog) persistRemoveFilter(name string) error {
	return ml.saveDefinitions(func(d *definitions) {
		d.Filters = slices.DeleteFunc(d.Filters, func(x filterDef) bool { return x.Name == name })
	})
}

func (ml *MultiLog) persistAddAggregate(name, filter, aggregate string) error {
	return ml.saveDefinitions(func(d *definitions) { d.Aggregates = append(d.Aggregates, aggregateDef{name, filter, aggregate}) })
}

func (ml *MultiLog) persistRemoveAggregate(name string) error {
	return ml.saveDefinitions(func(d *definitions) {
		d.Aggregates = slices.DeleteFunc(d.Aggregates, func(x aggregateDef) bool { return x.Name == name })
	})
}

func (ml *MultiLog) persistInstallTrigger(name, condition string, period time.Duration) error {
	return ml.saveDefinitions(func(d *definitions) { d.Triggers = append(d.Triggers, triggerDef{name, condition, period}) })
}

func (ml *MultiLog) persistRemoveTrigger(name string) error {
	return ml.saveDefinitions(func(d *definitions) {
		d.Triggers = slices.DeleteFunc(d.Triggers, func(x triggerDef) bool { return x.Name == name })
	})
}

// Store returns the MultiLog's store (nil without persistence): its Stats, Recovery,
// Maintain and Sync.
func (ml *MultiLog) Store() *logstore.Store {
	if ml.persist == nil {
		return nil
	}
	return ml.persist.store
}

// closePersist closes the store (syncing what DurableRelaxed has not yet synced).
func (ml *MultiLog) closePersist() error {
	if ml.persist == nil {
		return nil
	}
	return ml.persist.store.Close()
}

// bytes returns the segment's records: its memory, or, once persistence released it, the
// store's copy (archived segments are decompressed through the store's cache). A segment that
// cannot be read (deleted by retention, damaged) reads as zeros: for the derived-log paths that
// cannot fail. Queries use read.
func (seg *segment) bytes(sh *shard) []byte {
	data, err := seg.read(sh)
	if err != nil {
		return make([]byte, sh.segRecords*sh.recordSize)
	}
	return data
}

// read returns the segment's records (capacity records; those above the tail are zeros), or
// why it cannot: an error wrapping ErrDeleted if retention deleted it, else a read failure
// naming the shard, segment and file (counted and logged once).
func (seg *segment) read(sh *shard) ([]byte, error) {
	if m := seg.mem.Load(); m != nil {
		return *m, nil
	}
	if sh.log == nil {
		return nil, fmt.Errorf("%w: shard %d segment %d", ErrDeleted, sh.id, seg.first)
	}
	data, err := sh.log.ReadSegment(seg.first)
	if err == nil && len(data) == sh.segRecords*sh.recordSize {
		return data, nil
	}
	if errors.Is(err, logstore.ErrDropped) || seg.first < sh.log.FirstSeq() {
		return nil, fmt.Errorf("%w: shard %d segment %d", ErrDeleted, sh.id, seg.first)
	}
	if err == nil {
		err = fmt.Errorf("%w: shard %d segment %d: %d bytes, want %d", logstore.ErrDamaged, sh.id, seg.first, len(data), sh.segRecords*sh.recordSize)
	}
	if ml := sh.ps.ml.Load(); ml != nil {
		if sh.ps.readErrors.Add(1) == 1 {
			ml.opts.Logger.Error("multilog: reading a released segment failed", "shard", sh.id, "first", seg.first, "err", err)
		}
	}
	return nil, fmt.Errorf("%w: shard %d segment %d: %w", ErrRead, sh.id, seg.first, err)
}

// recordAt returns the record at seq (below a tail the caller loaded) from directory d (loaded
// after that tail), or why it cannot be read: ErrDeleted (retention), ErrLost (damage found by
// recovery) or ErrRead.
func (sh *shard) recordAt(d *segDir, seq uint64) ([]byte, error) {
	if seq < sh.firstKept() {
		return nil, fmt.Errorf("%w: shard %d record %d (oldest kept %d)", ErrDeleted, sh.id, seq, sh.firstKept())
	}
	if err := sh.lostIn(seq, seq+1); err != nil {
		return nil, err
	}
	i := sh.segIndex(seq) - d.base // wraps for seq below base
	if i >= uint64(len(d.segs)) {
		if sh.segIndex(seq) < d.base {
			// firstKept rose past seq after the check above (segDir invariant 1).
			return nil, fmt.Errorf("%w: shard %d record %d (directory starts at %d)", ErrDeleted, sh.id, seq, d.base*uint64(sh.segRecords))
		}
		return nil, fmt.Errorf("%w: shard %d record %d beyond directory %d+%d", ErrBadRef, sh.id, seq, d.base, len(d.segs))
	}
	seg := d.segs[i]
	data, err := seg.read(sh)
	if err != nil {
		return nil, err
	}
	off := int(seq-seg.first) * sh.recordSize
	return data[off : off+sh.recordSize : off+sh.recordSize], nil
}

// dropDeleted drops the derived-log epochs (index and filter trees, aggregate partials,
// backfills) of shard that lie wholly below its first kept sequence number. Runs after the
// store deleted segments (OnDelete, on the goroutine running Maintain); writers go on.
func (ml *MultiLog) dropDeleted(shard int) {
	if shard < 0 || shard >= len(ml.shards) {
		return
	}
	fk := ml.shards[shard].firstKept()
	cfg := ml.cfg.Load()
	for _, ix := range cfg.indexes {
		ix.dropBelow(shard, fk)
	}
	for _, f := range cfg.filters {
		f.dropBelow(shard, fk)
	}
	for _, a := range cfg.aggs {
		a.dropBelow(shard, fk)
	}
}

// DerivedBytes estimates the memory held by the derived logs (index and filter trees,
// aggregate partials, backfills included), as tracked while they grow (allocated sizes,
// without the allocator's rounding): it costs a few atomic loads per derived log, shard and
// epoch. With persistence, Store.MaxMemoryBytes bounds it together with the data segments,
// except for each shard's current epoch (the fixed overhead; see Persistence).
func (ml *MultiLog) DerivedBytes() uint64 { return uint64(max(ml.derivedMemory().total, 0)) }

func (ml *MultiLog) derivedMemory() memoryUse {
	var m memoryUse
	cfg := ml.cfg.Load()
	for _, ix := range cfg.indexes {
		ix.memoryBytes(&m)
	}
	for _, f := range cfg.filters {
		f.memoryBytes(&m)
	}
	for _, a := range cfg.aggs {
		a.memoryBytes(&m)
	}
	return m
}

// releaseSegment drops the MultiLog's reference to a sealed segment the store released.
func (ml *MultiLog) releaseSegment(shard int, first uint64) {
	if shard < 0 || shard >= len(ml.shards) {
		return
	}
	sh := ml.shards[shard]
	d := sh.segments()
	// A segment below base is out of the directory already (newSegment released its memory).
	if i := first/uint64(sh.segRecords) - d.base; i < uint64(len(d.segs)) && d.segs[i].first == first {
		d.segs[i].mem.Store(nil)
	}
}

// PersistStats are the persistence counters of a MultiLog (zero without persistence).
type PersistStats struct {
	ReadErrors      uint64 // failed reads of segments released to the store
	DeletedByAge    uint64 // segments deleted by RetentionAge
	DeletedByDisk   uint64 // segments deleted by MaxDiskBytes
	DeletedByMemory uint64 // segments dropped by MaxMemoryBytes (disk full too)
	RecordsDeleted  uint64 // records in deleted segments
	DiskBytes       int64  // bytes of segment and archive files
}

// PersistStats returns the persistence counters (see also Store().Stats()).
func (ml *MultiLog) PersistStats() PersistStats {
	if ml.persist == nil {
		return PersistStats{}
	}
	st := ml.persist.store.Stats()
	return PersistStats{
		ReadErrors:      ml.persist.readErrors.Load(),
		DeletedByAge:    st.DeletedByAge,
		DeletedByDisk:   st.DeletedByDisk,
		DeletedByMemory: st.DeletedByMemory,
		RecordsDeleted:  st.RecordsDeleted,
		DiskBytes:       st.DiskBytes,
	}
}

// PersistReadErrors is the number of failed reads of segments released to the store.
func (ml *MultiLog) PersistReadErrors() uint64 {
	if ml.persist == nil {
		return 0
	}
	return ml.persist.readErrors.Load()
}
