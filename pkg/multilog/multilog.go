package multilog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confluo-go/confluo/pkg/logstore"
	"github.com/confluo-go/confluo/pkg/schema"
)

// Sentinel errors; returned errors wrap them with details.
var (
	ErrOptions    = errors.New("multilog: bad options")
	ErrRecordSize = errors.New("multilog: record has the wrong size")
	ErrLogFull    = errors.New("multilog: shard log full")
	ErrBadRef     = errors.New("multilog: bad record reference")
	ErrNotVisible = errors.New("multilog: record not visible at this version")
	ErrVersion    = errors.New("multilog: bad version")
	ErrColumn     = errors.New("multilog: bad column")
	ErrIndex      = errors.New("multilog: bad index")
	ErrExpr       = errors.New("multilog: bad expression")
	ErrExists     = errors.New("multilog: name already defined")
	ErrNotFound   = errors.New("multilog: name not defined")
	ErrClosed     = errors.New("multilog: closed")
)

// maxShardRecords bounds one shard: references inside a shard are 32-bit (index postings) and
// a Ref keeps 48 bits for the sequence number.
const maxShardRecords = math.MaxUint32

// MultiLog is Confluo's Atomic MultiLog: an append-only store of fixed-size records with
// indexes, filters, aggregates and triggers that are updated atomically with the data.
//
// A MultiLog is safe for concurrent use: each Writer is used by one goroutine at a time, and
// any number of goroutines query, take snapshots or change the configuration concurrently.
//
// Invariants (see the package documentation for the picture):
//
//  1. Each shard has exactly one writer; only that writer appends to the shard's data log and
//     to the shard's part of every derived log (index, filter, aggregate).
//  2. A shard's published tail only grows, and it is stored (atomically) only after the data
//     and every derived log have been updated for all records below it. So a record below the
//     tail is visible in every log, and a record at or above it is visible in none: readers
//     ignore derived entries whose sequence number is not below the tail of their version.
//  3. A version is a vector of shard tails, each loaded once; a reader evaluates everything
//     at its version and never reads data at or above its tails.
//  4. Data never changes once written below the tail, so readers read it without locks and
//     records returned to callers alias the log.
//  5. A derived log (index, filter, aggregate) covers, in each shard, the records from its
//     start sequence on; the shard's writer claims the start (CAS from -1) at the beginning of
//     the first batch that sees the derived log, so the start is always a batch boundary.
type MultiLog struct {
	schema *schema.Schema
	opts   Options
	shards []*shard

	// cfg is the current set of derived logs. Writers load it once per batch; changes are
	// copy-on-write under mu.
	cfg atomic.Pointer[config]

	// frozen, when set, is the version Snapshot returns (the distributed-snapshot pin).
	frozen atomic.Pointer[Version]

	// mu serialises configuration changes (AddIndex, AddFilter, ...). Never taken on the
	// append path. Lock order: mu, then monitor.mu, then alerts.mu.
	mu sync.Mutex

	monitor *monitor
	alerts  *alertLog

	writers []Writer
	closed  atomic.Bool

	// persist links a MultiLog opened with Open to its store (persist.go); nil for New.
	persist *persistState

	// epochRecords is the span of filter and aggregate epochs and the least records of an
	// index epoch (epoch.go), set by Open before any derived log exists; 0 (New) means one
	// epoch.
	epochRecords uint64
}

// shard is one writer's part of the MultiLog.
type shard struct {
	// tail is the number of published records (invariant 2). Padded: writers of other shards
	// must not share its cache line.
	tail atomic.Uint64
	_    [56]byte

	// writing is set while the writer is inside a batch; AddIndex with backfill uses it to
	// claim a start sequence for an idle shard (invariant 5).
	writing atomic.Bool
	// unorderedFrom is the first sequence whose timestamp is below its predecessor's, or
	// MaxUint64 while the shard is in timestamp order.
	unorderedFrom atomic.Uint64
	// dir is the segment directory (see segDir): the kept segments from dir.base on, through
	// at least segment ceil(tail/segRecords)-1. Stored only by the writer (newSegment) and by
	// replay before the MultiLog is shared.
	dir atomic.Pointer[segDir]

	id         int
	segRecords int
	recordSize int
	// segMagic is ceil(2^64 / segRecords), so that segIndex divides 32-bit sequence numbers
	// by segRecords with a multiplication: a hardware division on every indexed candidate is
	// a measurable part of a lookup (BenchmarkQueryIndexedEq). 0 when segRecords is 1.
	segMagic uint64

	// watermark is the largest timestamp appended (data time), stored before the tail.
	watermark atomic.Int64

	// touched lists aggregate buckets that changed since the monitor last looked.
	touchedMu sync.Mutex
	touched   []touch

	// log is the shard's persistent log (persist.go), nil without persistence; logErr is its
	// sticky write error. Set before the MultiLog is returned; then writer-private.
	log    *logstore.ShardLog
	logErr error
	ps     *persistState
	// persistent is set by Open before the first append (replay runs before log is set).
	persistent bool

	// Writer-private state.
	wWatermark int64
	next       uint64   // next sequence number (== tail outside a batch)
	active     *segment // the segment appends go to (nil before the first; full: make a new one)
	lastTS     int64
	_          [64]byte
}

// segDir is a published segment directory of a shard: segment base+i is segs[i], and holds
// the records [(base+i)·segRecords, (base+i+1)·segRecords). Immutable once published: the
// writer publishes a new one for every new segment (appending may share the backing array;
// the slots it writes are beyond the len of every published directory, so no reader sees
// them before the new directory is published, which happens before the tail covers them).
//
// Invariants:
//
//  1. base·segRecords ≤ the shard's first kept record (firstKept) as of any moment after the
//     directory is published: the writer raises base only to a segment retention already
//     deleted (persistence; without it base stays 0). So a reader that loads the directory
//     and then firstKept finds every kept record at or above firstKept in the directory.
//  2. A reader may hold an older directory: it keeps its slice (and the dropped segments)
//     alive and reads deleted segments through them as before (ErrDeleted, or zeros on the
//     paths that cannot fail). A reader that loaded firstKept before a newer directory may
//     ask for a record below base: record reads it as zeros, recordAt returns ErrDeleted.
//  3. The descriptors of dropped segments stay reachable only through the unused prefix of a
//     backing array, which append replaces once the kept window outgrows it: the memory of
//     the directory is bounded by a small multiple of the kept segments, not by every
//     segment ever written.
type segDir struct {
	base uint64 // index (first / segRecords) of segs[0]
	segs []*segment
}

// segment is a fixed-size slab of whole records: the unit that persistence writes to a file and
// archival compresses.
//
//	+----------+----------+-----+----------+---------- - - - -+
//	| record 0 | record 1 | ... | record k | unused (zeroed)   |
//	+----------+----------+-----+----------+---------- - - - -+
//	  first = sequence of record 0; capacity = segRecords
type segment struct {
	// mem holds the segment's records (capacity records); persistence may release it (nil)
	// once the store has the segment on disk: read through bytes (persist.go).
	mem   atomic.Pointer[[]byte]
	first uint64
	// fixed is the segment's memory in a MultiLog without persistence (New), where it is
	// never released: set before the segment is published, then read-only. Reading it
	// directly saves the indirection through mem on random record reads (indexed lookups).
	// nil with persistence (Open), where retention and the memory bound release segments.
	fixed []byte

	// minTS and maxTS bound the timestamps of the segment's records (possibly including
	// records above a reader's tail, which only widens the bound). Time-range queries skip a
	// segment whose bounds miss the range.
	minTS atomic.Int64
	maxTS atomic.Int64

	// Writer-private.
	used       int
	wMin, wMax int64
}

// New returns an empty MultiLog for records of schema s.
func New(s *schema.Schema, opts Options) (*MultiLog, error) {
	if s == nil {
		return nil, fmt.Errorf("%w: nil schema", ErrOptions)
	}
	// A Schema assembled by hand (its fields are exported) has no name lookup and may have no
	// layout: every use of it would fail or divide by a zero record size.
	if c, ok := s.Column(schema.TimestampColumn); !ok || c.Index != 0 || len(s.Columns) < 2 || s.RecordSize <= c.Size {
		return nil, fmt.Errorf("%w: schema %v was not built by schema.Parse or schema.NewBuilder", ErrOptions, s)
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts.fill()
	ml := &MultiLog{schema: s, opts: opts}
	segRecords := max(1, opts.SegmentBytes/s.RecordSize)
	ml.shards = make([]*shard, opts.Writers)
	ml.writers = make([]Writer, opts.Writers)
	for i := range ml.shards {
		sh := &shard{id: i, segRecords: segRecords, recordSize: s.RecordSize, lastTS: math.MinInt64, segMagic: divMagic(segRecords)}
		sh.unorderedFrom.Store(math.MaxUint64)
		sh.watermark.Store(math.MinInt64)
		sh.wWatermark = math.MinInt64
		sh.dir.Store(&segDir{})
		ml.shards[i] = sh
		ml.writers[i] = Writer{ml: ml, sh: sh, rs: s.RecordSize}
	}
	ml.cfg.Store(&config{})
	ml.alerts = newAlertLog(opts.MaxAlerts)
	ml.monitor = &monitor{lastTail: make([]uint64, opts.Writers), lastMove: make([]time.Time, opts.Writers)}
	ml.monitor.advanced.Store(math.MinInt64)
	for i := range ml.monitor.lastMove {
		ml.monitor.lastMove[i] = time.Now()
	}
	if opts.Registerer != nil {
		if err := ml.registerMetrics(opts.Registerer); err != nil {
			return nil, err
		}
	}
	return ml, nil
}

// Schema returns the MultiLog's schema.
func (ml *MultiLog) Schema() *schema.Schema { return ml.schema }

// Options returns the options in effect, defaults filled in.
func (ml *MultiLog) Options() Options { return ml.opts }

// Writers returns the number of writer shards.
func (ml *MultiLog) Writers() int { return len(ml.shards) }

// Writer returns writer i (0 ≤ i < Writers()). It panics if i is out of range, like a slice
// index. A Writer must be used by one goroutine at a time.
func (ml *MultiLog) Writer(i int) *Writer {
	if i < 0 || i >= len(ml.writers) {
		panic(fmt.Sprintf("multilog: Writer(%d) out of range [0, %d)", i, len(ml.writers)))
	}
	return &ml.writers[i]
}

// Writer appends records to one shard. It is not safe for concurrent use: give each writing
// goroutine its own Writer. Different Writers never wait for each other.
type Writer struct {
	ml  *MultiLog
	sh  *shard
	rs  int
	cfg *config     // the configuration this writer has claimed starts for
	st  writerState // derived-log scratch
}

// ID is the writer's shard number.
func (w *Writer) ID() int { return w.sh.id }

// Append appends one record of exactly Schema().RecordSize bytes. The record is copied; it is
// visible to new snapshots when Append returns.
func (w *Writer) Append(rec []byte) error {
	if len(rec) != w.rs {
		return fmt.Errorf("%w: %d bytes, want %d", ErrRecordSize, len(rec), w.rs)
	}
	return w.AppendBatch(rec)
}

// AppendBatch appends records laid end to end (len(recs) a multiple of the record size). The
// whole batch becomes visible at once, in every log, when AppendBatch returns.
func (w *Writer) AppendBatch(recs []byte) error {
	if len(recs) == 0 {
		return nil
	}
	rs := w.rs
	if len(recs)%rs != 0 {
		return fmt.Errorf("%w: batch of %d bytes is not a multiple of the record size %d", ErrRecordSize, len(recs), rs)
	}
	sh := w.sh
	if err := sh.persistErr(); err != nil {
		return err
	}
	n := uint64(len(recs) / rs)
	if sh.next+n > maxShardRecords {
		return fmt.Errorf("%w: shard %d holds %d records", ErrLogFull, sh.id, sh.next)
	}
	sh.writing.Store(true)
	cfg := w.ml.cfg.Load()
	if cfg != w.cfg {
		w.claim(cfg)
	}
	seq := sh.next
	if cfg.active {
		w.beginBatch(cfg, seq, n)
	}
	prev := sh.lastTS
	batchMax := int64(math.MinInt64)
	for len(recs) > 0 {
		seg := sh.active
		if seg == nil || seg.used == sh.segRecords {
			seg = sh.newSegment(seq)
		}
		k := min(sh.segRecords-seg.used, len(recs)/rs)
		dst := (*seg.mem.Load())[seg.used*rs : (seg.used+k)*rs] // the active segment is never released
		copy(dst, recs[:k*rs])
		sh.commit(k) // persistence (Durable: synced), before the tail is published
		chunkMin, chunkMax := int64(math.MaxInt64), int64(math.MinInt64)
		chunkSorted := true
		for i := 0; i < len(dst); i += rs {
			ts := int64(binary.LittleEndian.Uint64(dst[i:]))
			if ts < prev {
				chunkSorted = chunkSorted && i == 0 // order within the chunk is what derive needs
				if sh.unorderedFrom.Load() == math.MaxUint64 {
					sh.unorderedFrom.Store(seq + uint64(i/rs))
				}
			}
			prev = ts
			chunkMin = min(chunkMin, ts)
			chunkMax = max(chunkMax, ts)
		}
		mn, mx := min(seg.wMin, chunkMin), max(seg.wMax, chunkMax)
		if mn != seg.wMin {
			seg.wMin = mn
			seg.minTS.Store(mn)
		}
		batchMax = max(batchMax, mx)
		if mx != seg.wMax {
			seg.wMax = mx
			seg.maxTS.Store(mx)
		}
		if cfg.active {
			w.derive(cfg, dst, seq, chunkSpan{minTS: chunkMin, maxTS: chunkMax, sorted: chunkSorted})
		}
		seg.used += k
		seq += uint64(k)
		recs = recs[k*rs:]
	}
	if cfg.active {
		w.endBatch(cfg)
	}
	sh.lastTS = prev
	if batchMax > sh.wWatermark {
		sh.wWatermark = batchMax
		sh.watermark.Store(batchMax)
	}
	sh.next = seq
	if invariants {
		sh.checkBeforePublish(seq)
	}
	sh.tail.Store(seq)
	sh.writing.Store(false)
	return sh.persistErr()
}

// AppendValues encodes one record from Go values (see schema.Schema.Encode) and appends it. A
// zero timestamp is replaced by the current time.
func (w *Writer) AppendValues(values ...any) error {
	rec, err := w.ml.schema.Encode(values...)
	if err != nil {
		return fmt.Errorf("multilog: append: %w", err)
	}
	stampNow(rec)
	return w.Append(rec)
}

// AppendStrings parses one record from string forms of its values (see
// schema.Schema.EncodeStrings) and appends it. A zero timestamp is replaced by the current time.
func (w *Writer) AppendStrings(values []string) error {
	rec, err := w.ml.schema.EncodeStrings(values)
	if err != nil {
		return fmt.Errorf("multilog: append: %w", err)
	}
	stampNow(rec)
	return w.Append(rec)
}

func stampNow(rec []byte) {
	if schema.Timestamp(rec) == 0 {
		schema.SetTimestamp(rec, time.Now().UnixNano())
	}
}

func (sh *shard) newSegment(first uint64) *segment {
	seg := &segment{
		first: first,
		wMin:  math.MaxInt64,
		wMax:  math.MinInt64,
	}
	data := sh.segmentMemory(first)
	seg.mem.Store(&data)
	if !sh.persistent {
		seg.fixed = data
	}
	seg.minTS.Store(math.MaxInt64)
	seg.maxTS.Store(math.MinInt64)
	old := sh.dir.Load()
	base, segs := old.base, old.segs
	// Drop the segments retention deleted (below firstKept, a segment boundary; the active
	// segment is never deleted): without this the directory would keep a descriptor for
	// every segment ever written. Readers holding the old directory keep its slice.
	if keep := sh.firstKept() / uint64(sh.segRecords); keep > base {
		drop := min(keep-base, uint64(len(segs)))
		for _, d := range segs[:drop] {
			// Deleted: the store let go of the memory; so do we, in case this ran before
			// OnDelete's releaseSegment, which then no longer finds the segment.
			d.mem.Store(nil)
		}
		segs = segs[drop:]
		base += drop
	}
	if invariants && base+uint64(len(segs)) != sh.segIndex(first) {
		panic(fmt.Sprintf("multilog: invariant: shard %d: segment %d after directory %d+%d", sh.id, first, base, len(segs)))
	}
	// Writing a slot inside the capacity is invisible to readers until the tail covers it; a
	// new backing array is published before the tail (invariant 2; segDir).
	sh.dir.Store(&segDir{base: base, segs: append(segs, seg)})
	sh.active = seg
	return seg
}

// divMagic returns the multiplier of segIndex for divisor d ≥ 1 (0 for d == 1).
func divMagic(d int) uint64 {
	if d <= 1 {
		return 0
	}
	return math.MaxUint64/uint64(d) + 1
}

// segIndex returns seq / segRecords. For seq and segRecords below 2^32 the high word of
// seq·ceil(2^64/segRecords) is the exact quotient (Lemire, Kaser and Kurz, "Faster remainder
// by direct computation", 2019); checked against division in TestSegIndex.
func (sh *shard) segIndex(seq uint64) uint64 {
	if sh.segMagic == 0 || seq >= 1<<32 {
		return seq / uint64(sh.segRecords)
	}
	hi, _ := bits.Mul64(sh.segMagic, seq)
	return hi
}

// record returns the record at seq, which must be below a tail the caller loaded, from
// directory d (loaded after that tail). A record retention deleted reads as zeros (seg.bytes),
// also when d no longer holds its segment (segDir invariant 2).
func (sh *shard) record(d *segDir, seq uint64) []byte {
	i := sh.segIndex(seq) - d.base // wraps for seq below base
	if i >= uint64(len(d.segs)) {
		return sh.recordOutside(d, seq)
	}
	seg := d.segs[i]
	if seg.fixed != nil {
		off := int(seq-seg.first) * sh.recordSize
		return seg.fixed[off : off+sh.recordSize : off+sh.recordSize]
	}
	off := int(seq-seg.first) * sh.recordSize
	return seg.bytes(sh)[off : off+sh.recordSize : off+sh.recordSize]
}

// recordOutside is record for a seq whose segment d does not hold: zeros below d.base (the
// segment was deleted); above d's last segment the caller broke its contract.
func (sh *shard) recordOutside(d *segDir, seq uint64) []byte {
	if sh.segIndex(seq) < d.base {
		return make([]byte, sh.recordSize)
	}
	panic(fmt.Sprintf("multilog: shard %d: record %d beyond directory %d+%d", sh.id, seq, d.base, len(d.segs)))
}

// segments loads the shard's segment directory.
func (sh *shard) segments() *segDir { return sh.dir.Load() }

// claim makes the writer adopt cfg: it claims the start sequence of every derived log it has
// not seen before (invariant 5).
func (w *Writer) claim(cfg *config) {
	seq := int64(w.sh.next)
	for _, d := range cfg.derived {
		d.startOf(w.sh.id).CompareAndSwap(-1, seq)
	}
	w.cfg = cfg
	w.st.reset(cfg)
}

// claimIdle waits until every shard has a start for d: shards inside a batch claim it
// themselves; idle shards are claimed here at their tail. It never blocks a writer.
func (ml *MultiLog) claimIdle(d derived) {
	for _, sh := range ml.shards {
		start := d.startOf(sh.id)
		for start.Load() < 0 {
			if !sh.writing.Load() {
				start.CompareAndSwap(-1, int64(sh.tail.Load()))
				continue
			}
			runtime.Gosched()
		}
	}
}

// Ref names one record: its shard and its sequence number in the shard. Refs are 8 bytes.
type Ref uint64

// MakeRef returns the reference to record seq of shard.
func MakeRef(shard int, seq uint64) Ref { return Ref(uint64(shard)<<48 | seq&(1<<48-1)) }

// Shard is the writer shard of the record.
func (r Ref) Shard() int { return int(r >> 48) }

// Seq is the record's sequence number within its shard.
func (r Ref) Seq() uint64 { return uint64(r) & (1<<48 - 1) }

func (r Ref) String() string { return fmt.Sprintf("%d/%d", r.Shard(), r.Seq()) }

// Version is a vector of shard tails: the records visible to a reader. A Version is an
// immutable value, safe for concurrent use.
type Version struct {
	tails []uint64
}

// VersionOf returns the version with the given shard tails (as returned by Tails).
func VersionOf(tails []uint64) Version { return Version{tails: append([]uint64(nil), tails...)} }

// Tails returns a copy of the shard tails.
func (v Version) Tails() []uint64 { return append([]uint64(nil), v.tails...) }

// NumRecords is the number of records appended up to v (the sum of its tails), including any
// that retention has deleted since: it only grows, so it orders versions. Snapshot.NumRecords
// counts the records still kept.
func (v Version) NumRecords() uint64 {
	var n uint64
	for _, t := range v.tails {
		n += t
	}
	return n
}

// Covers reports whether every record visible at o is visible at v.
func (v Version) Covers(o Version) bool {
	if len(v.tails) != len(o.tails) {
		return false
	}
	for i := range v.tails {
		if v.tails[i] < o.tails[i] {
			return false
		}
	}
	return true
}

func (v Version) String() string { return fmt.Sprint(v.tails) }

// current loads every shard's tail once.
func (ml *MultiLog) current() Version {
	tails := make([]uint64, len(ml.shards))
	for i, sh := range ml.shards {
		tails[i] = sh.tail.Load()
	}
	return Version{tails: tails}
}

// Snapshot fixes the current version (or the frozen one while Freeze is in effect) for
// queries. Snapshots are cheap: a vector of tails.
func (ml *MultiLog) Snapshot() *Snapshot {
	if f := ml.frozen.Load(); f != nil {
		return &Snapshot{ml: ml, v: *f}
	}
	return &Snapshot{ml: ml, v: ml.current()}
}

// At returns a snapshot at an earlier version v. It fails if v has the wrong number of shards
// or is ahead of what is published.
func (ml *MultiLog) At(v Version) (*Snapshot, error) {
	if len(v.tails) != len(ml.shards) {
		return nil, fmt.Errorf("%w: %d tails for %d shards", ErrVersion, len(v.tails), len(ml.shards))
	}
	if !ml.current().Covers(v) {
		return nil, fmt.Errorf("%w: %v is ahead of the published version", ErrVersion, v)
	}
	return &Snapshot{ml: ml, v: v}, nil
}

// Freeze pins visibility: until Unfreeze, Snapshot (and everything built on it: queries,
// NumRecords, Read) returns the version published at the moment of Freeze, while writers keep
// appending. It returns that version. Freezing again moves the pin to the current version.
// This is the hook for distributed atomic snapshots.
func (ml *MultiLog) Freeze() Version {
	v := ml.current()
	ml.frozen.Store(&v)
	return v
}

// Unfreeze releases a Freeze: Snapshot follows the published tails again.
func (ml *MultiLog) Unfreeze() { ml.frozen.Store(nil) }

// Frozen reports the pinned version, if any.
func (ml *MultiLog) Frozen() (Version, bool) {
	if f := ml.frozen.Load(); f != nil {
		return *f, true
	}
	return Version{}, false
}

// NumRecords is the number of records visible to a new snapshot and not deleted by retention
// (see Snapshot.NumRecords).
func (ml *MultiLog) NumRecords() uint64 { return ml.Snapshot().NumRecords() }

// Read returns the record ref names if a new snapshot sees it. The returned bytes alias the log
// and must not be modified.
func (ml *MultiLog) Read(ref Ref) ([]byte, error) { return ml.Snapshot().Read(ref) }

// Snapshot is a fixed version of a MultiLog: every read through it sees exactly the records
// visible at that version. Safe for concurrent use.
type Snapshot struct {
	ml *MultiLog
	v  Version
}

// Version returns the snapshot's version.
func (s *Snapshot) Version() Version { return s.v }

// NumRecords is the number of records visible in the snapshot that retention has not deleted
// (as of the call; see Persistence.Store): what queries over the snapshot can still return.
// Without persistence nothing is deleted and it equals Version().NumRecords(). Deletions make
// it shrink; Version().NumRecords() counts every record appended and only grows.
func (s *Snapshot) NumRecords() uint64 {
	var n uint64
	for i, t := range s.v.tails {
		n += t - min(t, s.ml.shards[i].firstKept())
	}
	return n
}

// Read returns the record named by ref. The bytes alias the log and must not be modified.
func (s *Snapshot) Read(ref Ref) ([]byte, error) {
	i := ref.Shard()
	if i >= len(s.v.tails) {
		return nil, fmt.Errorf("%w: %v: no shard %d", ErrBadRef, ref, i)
	}
	if ref.Seq() >= s.v.tails[i] {
		return nil, fmt.Errorf("%w: %v (shard tail %d)", ErrNotVisible, ref, s.v.tails[i])
	}
	sh := s.ml.shards[i]
	if sh.log != nil {
		return sh.recordAt(sh.segments(), ref.Seq()) // ErrDeleted, ErrLost, ErrRead (persist.go)
	}
	return sh.record(sh.segments(), ref.Seq()), nil
}

// MemoryBytes returns the bytes held by data-log segments (allocated capacity).
func (ml *MultiLog) MemoryBytes() uint64 {
	var n uint64
	for _, sh := range ml.shards {
		for _, seg := range sh.segments().segs {
			if m := seg.mem.Load(); m != nil {
				n += uint64(len(*m))
			}
		}
	}
	return n
}
