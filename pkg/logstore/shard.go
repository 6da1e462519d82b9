package logstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Hole is a run of records lost to damage inside a segment.
type Hole struct {
	First uint64 // sequence number of the first lost record
	Count uint64
}

// SegmentInfo describes one segment of a shard.
type SegmentInfo struct {
	First     uint64 // sequence number of the segment's first record
	Records   int    // records in the segment (holes included)
	Capacity  int    // records the segment holds when sealed
	MinTS     int64  // smallest record timestamp (math.MaxInt64 if empty)
	MaxTS     int64  // largest record timestamp (math.MinInt64 if empty)
	Sealed    bool   // full (or closed by recovery); never changes again
	InMemory  bool   // the records are held in memory
	Durable   bool   // every record is synced to a segment or archive file
	Archived  bool   // stored as a compressed archive file
	DiskBytes int64  // bytes of its segment or archive file
	Holes     []Hole // records lost to damage
}

// segment is one fixed-capacity run of a shard's records.
//
// Invariants:
//  1. count only grows; the records below it never change again. The writer publishes count
//     (atomically) after the bytes are in mem, and in Durable mode only after they are synced.
//  2. mem is nil or holds at least count records; once nil (released) it stays nil. A released
//     segment is always durable (onDisk).
//  3. sealed is set once count == capacity (or by recovery) and never cleared; the active
//     segment of a shard is the only unsealed one.
//  4. onDisk is set once every record is synced into the raw or archive file and the raw file is
//     closed for writing; only then may Maintain archive, release or delete it.
type segment struct {
	first    uint64
	capacity int

	count  atomic.Int64
	minTS  atomic.Int64
	maxTS  atomic.Int64
	mem    atomic.Pointer[[]byte]
	sealed atomic.Bool
	onDisk atomic.Bool

	// Guarded by ShardLog.mu.
	rawPath   string
	rawBytes  int64
	archPath  string
	archBytes int64
	holes     []Hole
	dropped   bool

	// Guarded by ShardLog.flushMu.
	file      *os.File
	fileOff   int64
	persisted int // records written to the raw file
	synced    int // records synced in the raw file
}

func newSegment(first uint64, capacity int) *segment {
	seg := &segment{first: first, capacity: capacity}
	seg.minTS.Store(math.MaxInt64)
	seg.maxTS.Store(math.MinInt64)
	return seg
}

func (seg *segment) inHole(seq uint64) bool {
	for _, h := range seg.holes {
		if seq >= h.First && seq < h.First+h.Count {
			return true
		}
	}
	return false
}

// ShardLog is one shard of a Store: an append-only sequence of segments with a single writer.
// Append and Sync must be called by one goroutine at a time (the shard's writer); the read
// methods (Tail, Segments, ReadSegment, Read, Scan) are safe for concurrent use with it and
// with each other.
type ShardLog struct {
	st         *Store
	id         int
	dir        string
	rs         int
	segRecords int

	// tail is the number of records published (sequence numbers 0..tail-1, minus retention).
	tail atomic.Uint64
	// durableTail is the number of records known to be synced to disk.
	durableTail atomic.Uint64
	// firstSeq is the first sequence number still kept (retention raises it).
	firstSeq atomic.Uint64
	// syncedFrom is when (UnixNano) the last completed flush started: every record published
	// before it is synced. DurableRelaxed appends check it to bound what a crash loses.
	syncedFrom atomic.Int64

	// segs is the copy-on-write list of segments, contiguous in sequence numbers, oldest first.
	segs atomic.Pointer[[]*segment]

	// mu guards changes to segs and the file fields of segments. Lock order: Store.maintainMu,
	// flushMu, mu, Store.mu, cache.mu.
	mu sync.Mutex

	// flushMu serialises writing segment files (the writer in Durable mode, the flusher in
	// DurableRelaxed mode, Sync and Close).
	flushMu     sync.Mutex
	frameHeader [frameHeaderSize]byte
	iovs        [2][]byte

	// Writer-private.
	next   uint64
	active *segment
	filled int   // records copied into active
	failed error // the first Durable write error; sticky
}

// ID is the shard's number.
func (l *ShardLog) ID() int { return l.id }

// Tail is the number of records appended (and, in Durable mode, synced): the next record gets
// sequence number Tail().
func (l *ShardLog) Tail() uint64 { return l.tail.Load() }

// DurableTail is the number of records known to be on disk (0 in InMemory mode). In Durable
// mode it equals Tail.
func (l *ShardLog) DurableTail() uint64 { return l.durableTail.Load() }

// FirstSeq is the sequence number of the oldest record still kept (retention raises it).
func (l *ShardLog) FirstSeq() uint64 { return l.firstSeq.Load() }

func (l *ShardLog) segments() []*segment { return *l.segs.Load() }

// setSegmentsLocked publishes segs (l.mu held). firstSeq is raised before a shorter list is
// published: a reader that loads the list and then firstSeq (find) must see a deletion as
// ErrDropped, never as a missing record.
func (l *ShardLog) setSegmentsLocked(segs []*segment) {
	if len(segs) > 0 {
		l.firstSeq.Store(segs[0].first)
	}
	l.segs.Store(&segs)
}

// Append appends records laid end to end (a multiple of the record size) and returns the
// sequence number of the first. In Durable mode it returns after the records are synced. If
// writing or syncing fails, the batch is still appended in memory but not acknowledged:
// Append returns the error, DurableTail stops, and every later Append and Commit of the shard
// returns the same error (a failed disk is not retried; reopen the store).
func (l *ShardLog) Append(recs []byte) (uint64, error) {
	rs := l.rs
	if len(recs) == 0 || len(recs)%rs != 0 {
		return 0, fmt.Errorf("%w: batch of %d bytes is not a non-zero multiple of %d", ErrRecordSize, len(recs), rs)
	}
	first := l.next
	for len(recs) > 0 {
		_, mem, next, err := l.Reserve()
		if err != nil {
			return first, err
		}
		k := min(len(mem)/rs-next, len(recs)/rs)
		copy(mem[next*rs:], recs[:k*rs])
		if err := l.Commit(k); err != nil {
			return first, err
		}
		recs = recs[k*rs:]
	}
	return first, nil
}

// Reserve gives the shard's writer the memory of the active segment to write records into
// directly (a zero-copy append): the segment's first sequence number, its whole buffer
// (capacity records) and the index of the next free record. If the active segment is full, a
// new one is started. The writer writes records at mem[next·size:] and then calls Commit; it
// must not change anything below next. Reserve is for the shard's writer only.
func (l *ShardLog) Reserve() (first uint64, mem []byte, next int, err error) {
	if l.st.closed.Load() {
		return 0, nil, 0, ErrClosed
	}
	if l.active == nil || l.filled == l.active.capacity {
		l.rotate()
	}
	return l.active.first, *l.active.mem.Load(), l.filled, nil
}

// Commit acknowledges k records the writer put into the active segment's buffer at the index
// Reserve returned, with Append's guarantees (Durable: returns after they are synced; after a
// write error the records are committed in memory only and the error is returned, now and by
// every later Commit). k must fit in the segment.
func (l *ShardLog) Commit(k int) error {
	if l.st.closed.Load() && l.failed == nil {
		l.failed = ErrClosed
	}
	seg := l.active
	if seg == nil || k < 0 || l.filled+k > seg.capacity {
		return fmt.Errorf("%w: commit of %d records does not fit the reserved segment", ErrRecordSize, k)
	}
	if k == 0 {
		return nil
	}
	rs := l.rs
	mem := *seg.mem.Load()
	dst := mem[l.filled*rs : (l.filled+k)*rs]
	mn, mx := seg.minTS.Load(), seg.maxTS.Load()
	for off := 0; off < len(dst); off += rs {
		ts := int64(binary.LittleEndian.Uint64(dst[off:]))
		mn, mx = min(mn, ts), max(mx, ts)
	}
	seg.minTS.Store(mn)
	seg.maxTS.Store(mx)
	l.filled += k
	if l.st.opts.Mode == Durable && l.failed == nil {
		l.flushMu.Lock()
		err := l.flushSegmentLocked(seg, l.filled, true)
		l.flushMu.Unlock()
		if err != nil {
			l.failed = fmt.Errorf("logstore: shard %d: append: %w", l.id, err)
		} else {
			l.durableTail.Store(seg.first + uint64(l.filled))
		}
	}
	seg.count.Store(int64(l.filled))
	if l.filled == seg.capacity {
		l.seal(seg)
	}
	l.next += uint64(k)
	l.tail.Store(l.next)
	if l.st.opts.Mode == DurableRelaxed && l.failed == nil {
		return l.keepUp()
	}
	return l.failed
}

// keepUp bounds what a DurableRelaxed crash loses: if no flush that started within the last
// two SyncIntervals has completed (the flusher fell behind the appends, or the disk is slow),
// the writer writes and syncs everything published before it returns, so the records at risk
// are never older than that. While the flusher keeps up this costs one clock read.
func (l *ShardLog) keepUp() error {
	if time.Now().UnixNano()-l.syncedFrom.Load() <= 2*int64(l.st.opts.SyncInterval) {
		return nil
	}
	if err := l.flush(); err != nil {
		l.st.counters.flushErrors.Add(1)
		return err
	}
	return nil
}

// rotate starts a new active segment at l.next.
func (l *ShardLog) rotate() {
	seg := newSegment(l.next, l.segRecords)
	mem := make([]byte, l.segRecords*l.rs)
	seg.mem.Store(&mem)
	l.st.memActive.Add(int64(len(mem)))
	l.mu.Lock()
	segs := l.segments()
	l.setSegmentsLocked(append(segs[:len(segs):len(segs)], seg))
	l.mu.Unlock()
	l.active = seg
	l.filled = 0
}

// seal marks the (full) active segment sealed and moves its memory to the sealed account.
func (l *ShardLog) seal(seg *segment) {
	seg.sealed.Store(true)
	if m := seg.mem.Load(); m != nil {
		n := int64(len(*m))
		l.st.memActive.Add(-n)
		l.st.memSealed.Add(n)
	}
	if l.st.opts.MaxMemoryBytes > 0 && l.st.memoryOver() {
		l.st.wakeMaintainer()
	}
}

// flushSegmentLocked writes seg's records [persisted, upTo) as one frame to its raw file and
// syncs it (if doSync). A sealed, fully written segment's file is closed and the segment
// becomes onDisk.
func (l *ShardLog) flushSegmentLocked(seg *segment, upTo int, doSync bool) error {
	if seg.onDisk.Load() {
		return nil
	}
	if seg.file == nil {
		if err := l.createRawLocked(seg); err != nil {
			return err
		}
	}
	if upTo > seg.persisted {
		mem := *seg.mem.Load()
		recs := mem[seg.persisted*l.rs : upTo*l.rs]
		need := frameHeaderSize + len(recs)
		putFrameHeader(l.frameHeader[:], seg.persisted, recs)
		// One pwritev of the frame header and the records, straight from memory.
		l.iovs[0], l.iovs[1] = l.frameHeader[:], recs
		if err := pwritevFull(seg.file, l.iovs[:], seg.fileOff); err != nil {
			return fmt.Errorf("write %s: %w", seg.file.Name(), err)
		}
		seg.fileOff += int64(need)
		seg.persisted = upTo
		l.st.diskBytes.Add(int64(need))
		l.mu.Lock()
		seg.rawBytes = seg.fileOff
		l.mu.Unlock()
	}
	if doSync && seg.synced < seg.persisted {
		if err := fdatasync(seg.file); err != nil {
			return fmt.Errorf("sync %s: %w", seg.file.Name(), err)
		}
		seg.synced = seg.persisted
	}
	if seg.synced == seg.capacity {
		err := seg.file.Close()
		seg.file = nil
		seg.onDisk.Store(true)
		if err != nil {
			return fmt.Errorf("close segment of shard %d at %d: %w", l.id, seg.first, err)
		}
	}
	return nil
}

func (l *ShardLog) segmentPath(first uint64, ext string) string {
	return filepath.Join(l.dir, fmt.Sprintf("seg-%020d%s", first, ext))
}

// createRawLocked creates seg's raw file with its header and makes the directory entry durable.
func (l *ShardLog) createRawLocked(seg *segment) error {
	path := l.segmentPath(seg.first, extRaw)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("create segment: %w", err)
	}
	h := segmentHeader{kind: kindRaw, recordSize: l.rs, shard: l.id, first: seg.first, capacity: seg.capacity, schemaText: l.st.schemaText}
	hb := h.encode()
	if _, err := f.WriteAt(hb, 0); err != nil {
		f.Close()
		return fmt.Errorf("write header of %s: %w", path, err)
	}
	if err := syncDir(l.dir); err != nil {
		f.Close()
		return fmt.Errorf("sync directory %s: %w", l.dir, err)
	}
	seg.file = f
	seg.fileOff = int64(len(hb))
	l.st.diskBytes.Add(int64(len(hb)))
	l.mu.Lock()
	seg.rawPath = path
	seg.rawBytes = seg.fileOff
	l.mu.Unlock()
	return nil
}

// flush writes and syncs everything published (DurableRelaxed's flusher, Sync and Close).
func (l *ShardLog) flush() error {
	if l.st.opts.Mode == InMemory {
		return nil
	}
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	// Every record published before now is written and synced below.
	start := time.Now().UnixNano()
	var durable uint64
	for _, seg := range l.segments() {
		if seg.onDisk.Load() {
			durable = seg.first + uint64(seg.count.Load())
			continue
		}
		n := int(seg.count.Load())
		if err := l.flushSegmentLocked(seg, n, true); err != nil {
			return fmt.Errorf("logstore: shard %d: flush: %w", l.id, err)
		}
		durable = seg.first + uint64(n)
		if !seg.onDisk.Load() {
			break // the active segment: nothing after it
		}
	}
	if durable > l.durableTail.Load() {
		l.durableTail.Store(durable)
	}
	if start > l.syncedFrom.Load() {
		l.syncedFrom.Store(start)
	}
	return nil
}

// Sync writes and syncs every appended record (a no-op in InMemory and Durable modes, whose
// appends are already as durable as they get).
func (l *ShardLog) Sync() error { return l.flush() }

// Segments describes the shard's segments, oldest first.
func (l *ShardLog) Segments() []SegmentInfo {
	segs := l.segments()
	out := make([]SegmentInfo, 0, len(segs))
	durable := l.durableTail.Load()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, seg := range segs {
		out = append(out, SegmentInfo{
			First:     seg.first,
			Records:   int(seg.count.Load()),
			Capacity:  seg.capacity,
			MinTS:     seg.minTS.Load(),
			MaxTS:     seg.maxTS.Load(),
			Sealed:    seg.sealed.Load(),
			InMemory:  seg.mem.Load() != nil,
			Durable:   seg.onDisk.Load() || (l.st.opts.Mode != InMemory && durable >= seg.first+uint64(seg.count.Load())),
			Archived:  seg.archPath != "",
			DiskBytes: seg.rawBytes + seg.archBytes,
			Holes:     append([]Hole(nil), seg.holes...),
		})
	}
	return out
}

// find returns the segment holding seq, or an error saying why there is none.
func (l *ShardLog) find(seq uint64) (*segment, error) {
	segs := l.segments()
	if len(segs) == 0 || seq < segs[0].first {
		if seq < l.firstSeq.Load() {
			return nil, fmt.Errorf("%w: shard %d record %d (oldest kept %d)", ErrDropped, l.id, seq, l.firstSeq.Load())
		}
		return nil, fmt.Errorf("%w: shard %d record %d", ErrNotFound, l.id, seq)
	}
	i := (seq - segs[0].first) / uint64(l.segRecords)
	if i >= uint64(len(segs)) {
		return nil, fmt.Errorf("%w: shard %d record %d (tail %d)", ErrNotFound, l.id, seq, l.tail.Load())
	}
	return segs[i], nil
}

// ReadSegment returns the records of the segment whose first sequence number is first, laid end
// to end, whether the segment is in memory, in a segment file or archived (archived and
// released segments go through a small cache). Records in holes are zero. The bytes must not
// be modified.
func (l *ShardLog) ReadSegment(first uint64) ([]byte, error) {
	seg, err := l.find(first)
	if err != nil {
		return nil, err
	}
	if seg.first != first {
		return nil, fmt.Errorf("%w: shard %d: no segment starts at %d", ErrNotFound, l.id, first)
	}
	return l.segmentData(seg)
}

func (l *ShardLog) segmentData(seg *segment) ([]byte, error) {
	n := int(seg.count.Load())
	if m := seg.mem.Load(); m != nil {
		return (*m)[: n*l.rs : n*l.rs], nil
	}
	data, err := l.st.cache.get(cacheKey{l.id, seg.first}, func() ([]byte, error) { return l.loadSegment(seg) })
	if err != nil {
		return nil, err
	}
	if len(data) < n*l.rs {
		return nil, fmt.Errorf("%w: shard %d segment %d: %d bytes on disk, want %d", ErrDamaged, l.id, seg.first, len(data), n*l.rs)
	}
	return data[: n*l.rs : n*l.rs], nil
}

// loadSegment reads a released segment from its archive or raw file.
func (l *ShardLog) loadSegment(seg *segment) ([]byte, error) {
	l.mu.Lock()
	arch, raw, dropped := seg.archPath, seg.rawPath, seg.dropped
	l.mu.Unlock()
	if dropped {
		return nil, fmt.Errorf("%w: shard %d segment %d", ErrDropped, l.id, seg.first)
	}
	var data []byte
	var err error
	switch {
	case arch != "":
		data, _, err = l.st.readArchive(arch, l.id, seg.first)
	case raw != "":
		var r rawScan
		r, err = l.scanRawFile(raw, seg.first, false, true)
		if err == nil {
			data = r.data
		}
	default:
		err = fmt.Errorf("%w: shard %d segment %d has no file", ErrDamaged, l.id, seg.first)
	}
	if err != nil {
		l.mu.Lock()
		dropped = seg.dropped
		l.mu.Unlock()
		if dropped {
			return nil, fmt.Errorf("%w: shard %d segment %d", ErrDropped, l.id, seg.first)
		}
		return nil, err
	}
	return data, nil
}

// Read returns record seq. The bytes must not be modified.
func (l *ShardLog) Read(seq uint64) ([]byte, error) {
	if seq >= l.tail.Load() {
		return nil, fmt.Errorf("%w: shard %d record %d (tail %d)", ErrNotFound, l.id, seq, l.tail.Load())
	}
	seg, err := l.find(seq)
	if err != nil {
		return nil, err
	}
	if int64(seq-seg.first) >= seg.count.Load() {
		return nil, fmt.Errorf("%w: shard %d record %d", ErrNotFound, l.id, seq)
	}
	l.mu.Lock()
	hole := seg.inHole(seq)
	l.mu.Unlock()
	if hole {
		return nil, fmt.Errorf("%w: shard %d record %d was lost (see the recovery report)", ErrDamaged, l.id, seq)
	}
	data, err := l.segmentData(seg)
	if err != nil {
		return nil, err
	}
	off := int(seq-seg.first) * l.rs
	return data[off : off+l.rs : off+l.rs], nil
}

// Scan calls fn for every record below the current tail whose timestamp t satisfies
// from ≤ t ≤ to, in sequence order, until fn returns false. Segments whose timestamp range
// misses [from, to] are skipped without being read; archived segments are read transparently.
// Records lost to damage are skipped, and so are segments that retention or the memory bound
// delete while the scan runs. The record bytes must not be modified or kept after fn returns.
func (l *ShardLog) Scan(from, to int64, fn func(seq uint64, rec []byte) bool) error {
	tail := l.tail.Load()
	for _, seg := range l.segments() {
		if seg.first >= tail {
			break
		}
		n := int(min(uint64(seg.count.Load()), tail-seg.first))
		if n == 0 || seg.maxTS.Load() < from || seg.minTS.Load() > to {
			continue
		}
		data, err := l.segmentData(seg)
		if err != nil {
			if errors.Is(err, ErrDropped) {
				continue
			}
			return err
		}
		l.mu.Lock()
		holes := seg.holes
		l.mu.Unlock()
		for i := 0; i < n; i++ {
			rec := data[i*l.rs : (i+1)*l.rs : (i+1)*l.rs]
			ts := int64(binary.LittleEndian.Uint64(rec))
			if ts < from || ts > to {
				continue
			}
			seq := seg.first + uint64(i)
			if len(holes) > 0 && seg.inHole(seq) {
				continue
			}
			if !fn(seq, rec) {
				return nil
			}
		}
	}
	return nil
}

// pwritevFull writes every byte of iovs at off, resuming after short writes.
func pwritevFull(f *os.File, iovs [][]byte, off int64) error {
	fd := int(f.Fd())
	for len(iovs) > 0 {
		n, err := unix.Pwritev(fd, iovs, off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		off += int64(n)
		for n > 0 && len(iovs) > 0 {
			if n >= len(iovs[0]) {
				n -= len(iovs[0])
				iovs = iovs[1:]
			} else {
				iovs[0] = iovs[0][n:]
				n = 0
			}
		}
		for len(iovs) > 0 && len(iovs[0]) == 0 {
			iovs = iovs[1:]
		}
	}
	return nil
}

func fdatasync(f *os.File) error {
	for {
		err := unix.Fdatasync(int(f.Fd()))
		if err != unix.EINTR {
			return err
		}
	}
}
