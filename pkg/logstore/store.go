package logstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"github.com/confluo-go/confluo/pkg/schema"
)

// Store is a directory of shard logs with a manifest. It is safe for concurrent use: each
// ShardLog has one writer at a time, everything else may be called from any goroutine.
type Store struct {
	dir        string
	opts       Options
	schema     *schema.Schema
	schemaText string
	rs         int
	segRecords int
	shards     []*ShardLog
	lockFile   *os.File

	// mu guards man (the manifest as last written).
	mu  sync.Mutex
	man manifest

	// maintainMu serialises Maintain and guards shut.
	maintainMu sync.Mutex
	shut       bool

	memActive atomic.Int64 // bytes of active segments in memory
	memSealed atomic.Int64 // bytes of sealed segments in memory
	diskBytes atomic.Int64 // bytes of segment and archive files
	counters  counters

	cache *segmentCache
	// codecMu guards creating enc and dec.
	codecMu sync.Mutex
	enc     *zstd.Encoder
	dec     *zstd.Decoder

	recovery Recovery

	wake   chan struct{}
	done   chan struct{}
	wg     sync.WaitGroup
	closed atomic.Bool
}

type counters struct {
	archived         atomic.Uint64
	archivedRaw      atomic.Uint64
	archivedBytes    atomic.Uint64
	released         atomic.Uint64
	deletedAge       atomic.Uint64
	deletedDisk      atomic.Uint64
	deletedMemory    atomic.Uint64
	deletedRecords   atomic.Uint64
	deletedBytes     atomic.Uint64
	flushErrors      atomic.Uint64
	maintainErrors   atomic.Uint64
	cacheHits        atomic.Uint64
	cacheMisses      atomic.Uint64
	lastMaintainNano atomic.Int64
}

// Stats are a store's counters.
type Stats struct {
	Mode             Mode
	Records          uint64 // records appended and kept, all shards (tail − first)
	MemoryBytes      int64  // bytes of segments held in memory (active + sealed)
	SealedBytes      int64  // bytes of sealed segments held in memory (what MaxMemoryBytes bounds)
	DiskBytes        int64  // bytes of segment and archive files
	SegmentsArchived uint64 // segments compressed into archive files
	ArchivedRawBytes uint64 // their uncompressed record bytes
	ArchiveBytes     uint64 // their archive file bytes
	SegmentsReleased uint64 // sealed segments released from memory (still on disk)
	DeletedByAge     uint64 // segments deleted by RetentionAge
	DeletedByDisk    uint64 // segments deleted by MaxDiskBytes
	DeletedByMemory  uint64 // segments dropped by MaxMemoryBytes (InMemory, or disk full too)
	RecordsDeleted   uint64 // records in deleted segments
	BytesDeleted     int64  // record bytes in deleted segments
	FlushErrors      uint64 // failed background flushes (DurableRelaxed)
	MaintainErrors   uint64 // failed background Maintain runs
	CacheHits        uint64
	CacheMisses      uint64
	CacheBytes       int64 // bytes of segments held by the read cache (at most CacheSegments)
}

// Open opens (or creates) the store in dir for records of schema s. In InMemory mode dir must
// be empty and nothing touches the disk.
//
// For an existing directory the manifest is authoritative: s may be nil (the schema is taken
// from the manifest), and a non-nil s must equal it (ErrSchema). Every shard's records are
// restored; a torn final batch is discarded (counted in Recovery). If recovery finds damage,
// Open returns the open, usable store together with a *DamageError (errors.Is(err,
// ErrDamaged)) listing every damaged place: the caller decides whether to go on.
func Open(dir string, s *schema.Schema, opts Options) (*Store, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	start := time.Now()
	requestedShards, requestedSeg := opts.Shards, opts.SegmentBytes
	opts.fill()
	if opts.Mode == InMemory {
		if dir != "" {
			return nil, fmt.Errorf("%w: IN_MEMORY keeps nothing on disk; directory %q given", ErrOptions, dir)
		}
		if s == nil {
			return nil, fmt.Errorf("%w: nil schema", ErrOptions)
		}
		st := newStore("", s, opts, max(1, opts.SegmentBytes/s.RecordSize))
		for i := range st.shards {
			segs := []*segment(nil)
			st.shards[i].segs.Store(&segs)
		}
		if err := st.start(); err != nil {
			return nil, err
		}
		return st, nil
	}
	if dir == "" {
		return nil, fmt.Errorf("%w: %v needs a directory", ErrOptions, opts.Mode)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("logstore: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	man, err := readManifest(dir)
	if err == nil {
		man, s, err = reconcile(dir, man, s, requestedShards, requestedSeg, opts)
	}
	if err != nil {
		lock.Close()
		return nil, err
	}
	opts.Shards, opts.SegmentBytes = man.Shards, man.SegmentRecords*man.RecordSize
	st := newStore(dir, s, opts, man.SegmentRecords)
	st.lockFile = lock
	st.man = *man
	rec := &st.recovery
	for i, l := range st.shards {
		if err := l.recover(rec, man.ShardFirst[i]); err != nil {
			st.closeFiles()
			return nil, err
		}
	}
	for _, l := range st.shards {
		for _, seg := range l.segments() {
			if seg.mem.Load() == nil {
				continue
			}
			if seg.sealed.Load() {
				n := int64(len(*seg.mem.Load()))
				st.memActive.Add(-n)
				st.memSealed.Add(n)
			}
		}
	}
	rec.Duration = time.Since(start)
	if len(rec.Damage) > 0 {
		for _, d := range rec.Damage {
			opts.Logger.Error("logstore: damaged data", "shard", d.Shard, "file", d.File, "offset", d.Offset, "first_seq", d.FirstSeq, "records", d.Records, "reason", d.Reason)
		}
	}
	if rec.TornBatches > 0 {
		opts.Logger.Info("logstore: discarded torn final batches", "batches", rec.TornBatches, "bytes", rec.TornBytes)
	}
	if err := st.start(); err != nil {
		st.closeFiles()
		return nil, err
	}
	return st, rec.Err()
}

// reconcile checks the requested schema and options against the manifest, or writes a new
// manifest for a new directory.
func reconcile(dir string, man *manifest, s *schema.Schema, shards, segBytes int, opts Options) (*manifest, *schema.Schema, error) {
	if man == nil {
		if s == nil {
			return nil, nil, fmt.Errorf("%w: %s has no manifest and no schema was given", ErrOptions, dir)
		}
		m := &manifest{
			FormatVersion:  FormatVersion,
			Schema:         s.String(),
			RecordSize:     s.RecordSize,
			Shards:         opts.Shards,
			SegmentRecords: max(1, opts.SegmentBytes/s.RecordSize),
			ShardFirst:     make([]uint64, opts.Shards),
		}
		if err := writeManifest(dir, m); err != nil {
			return nil, nil, err
		}
		return m, s, nil
	}
	path := filepath.Join(dir, manifestName)
	ms, err := schema.Parse(man.Schema)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %s: schema: %v", ErrManifest, path, err)
	}
	if ms.RecordSize != man.RecordSize {
		return nil, nil, fmt.Errorf("%w: %s: schema has %d-byte records, record_size says %d", ErrManifest, path, ms.RecordSize, man.RecordSize)
	}
	if s != nil && !s.Equal(ms) {
		return nil, nil, fmt.Errorf("%w: %s holds %s, asked for %s", ErrSchema, dir, man.Schema, s.String())
	}
	if shards != 0 && shards != man.Shards {
		return nil, nil, fmt.Errorf("%w: %s has %d shards, asked for %d", ErrOptions, dir, man.Shards, shards)
	}
	if segBytes != 0 && max(1, segBytes/ms.RecordSize) != man.SegmentRecords {
		return nil, nil, fmt.Errorf("%w: %s has %d records per segment, asked for %d", ErrOptions, dir, man.SegmentRecords, max(1, segBytes/ms.RecordSize))
	}
	return man, ms, nil
}

func newStore(dir string, s *schema.Schema, opts Options, segRecords int) *Store {
	st := &Store{
		dir:        dir,
		opts:       opts,
		schema:     s,
		schemaText: s.String(),
		rs:         s.RecordSize,
		segRecords: segRecords,
		cache:      newSegmentCache(opts.CacheSegments),
		wake:       make(chan struct{}, 1),
		done:       make(chan struct{}),
	}
	st.cache.st = st
	shards := opts.Shards
	st.shards = make([]*ShardLog, shards)
	for i := range st.shards {
		st.shards[i] = &ShardLog{st: st, id: i, rs: st.rs, segRecords: segRecords}
		if dir != "" {
			st.shards[i].dir = filepath.Join(dir, fmt.Sprintf("shard-%04d", i))
		}
	}
	return st
}

func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("logstore: lock %s: %w", dir, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: %s: %v", ErrLocked, dir, err)
	}
	return f, nil
}

// start registers the metrics and launches the background goroutine (flusher and
// maintainer) if it has work.
func (st *Store) start() error {
	if st.opts.Registerer != nil {
		if err := st.registerMetrics(st.opts.Registerer); err != nil {
			return err
		}
	}
	relaxed := st.opts.Mode == DurableRelaxed
	maintain := st.opts.MaintainInterval > 0
	if !relaxed && !maintain {
		return nil
	}
	st.wg.Add(1)
	go st.background(relaxed, maintain)
	return nil
}

func (st *Store) background(relaxed, maintain bool) {
	defer st.wg.Done()
	var syncC, maintainC <-chan time.Time
	if relaxed {
		t := time.NewTicker(st.opts.SyncInterval)
		defer t.Stop()
		syncC = t.C
	}
	if maintain {
		t := time.NewTicker(st.opts.MaintainInterval)
		defer t.Stop()
		maintainC = t.C
	}
	for {
		select {
		case <-st.done:
			return
		case <-syncC:
			for _, l := range st.shards {
				if err := l.flush(); err != nil {
					st.counters.flushErrors.Add(1)
					st.opts.Logger.Error("logstore: background flush failed", "shard", l.id, "err", err)
				}
			}
		case <-maintainC:
			st.backgroundMaintain()
		case <-st.wake:
			st.backgroundMaintain()
		}
	}
}

func (st *Store) backgroundMaintain() {
	if _, err := st.Maintain(); err != nil {
		st.counters.maintainErrors.Add(1)
		st.opts.Logger.Error("logstore: maintenance failed", "err", err)
	}
}

func (st *Store) wakeMaintainer() {
	select {
	case st.wake <- struct{}{}:
	default:
	}
}

// Schema is the store's schema.
func (st *Store) Schema() *schema.Schema { return st.schema }

// Dir is the store's directory ("" in InMemory mode).
func (st *Store) Dir() string { return st.dir }

// Options returns the options in effect.
func (st *Store) Options() Options { return st.opts }

// SegmentRecords is the number of records per segment.
func (st *Store) SegmentRecords() int { return st.segRecords }

// Shards is the number of shard logs.
func (st *Store) Shards() int { return len(st.shards) }

// Shard returns shard log i; it panics if i is out of range, like a slice index.
func (st *Store) Shard(i int) *ShardLog { return st.shards[i] }

// Recovery reports what Open found (zero for a new or InMemory store).
func (st *Store) Recovery() Recovery {
	r := st.recovery
	r.Damage = append([]Damage(nil), r.Damage...)
	return r
}

// Definitions returns the owner's opaque definitions stored in the manifest (nil if none).
func (st *Store) Definitions() json.RawMessage {
	st.mu.Lock()
	defer st.mu.Unlock()
	return append(json.RawMessage(nil), st.man.Definitions...)
}

// SetDefinitions stores the owner's definitions (indexes, filters, aggregates, triggers: any
// JSON) in the manifest, atomically and durably; Definitions returns them compacted. In
// InMemory mode they are only kept in memory.
func (st *Store) SetDefinitions(defs json.RawMessage) error {
	if len(defs) > 0 && !json.Valid(defs) {
		return fmt.Errorf("%w: definitions are not valid JSON", ErrManifest)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	m := st.man
	m.Definitions = append(json.RawMessage(nil), defs...)
	if st.dir != "" {
		if err := writeManifest(st.dir, &m); err != nil {
			return err
		}
	}
	st.man = m
	return nil
}

// setShardFirstLocked records the new first kept sequence numbers in the manifest.
func (st *Store) writeShardFirst() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	m := st.man
	m.ShardFirst = make([]uint64, len(st.shards))
	for i, l := range st.shards {
		m.ShardFirst[i] = l.firstSeq.Load()
	}
	if st.dir != "" {
		if err := writeManifest(st.dir, &m); err != nil {
			return err
		}
	}
	st.man = m
	return nil
}

// MemoryBytes is the bytes of segments held in memory: sealed (bounded by MaxMemoryBytes) and
// active (one per shard, the fixed overhead).
func (st *Store) MemoryBytes() (sealed, active int64) {
	return st.memSealed.Load(), st.memActive.Load()
}

// DiskBytes is the bytes of segment and archive files.
func (st *Store) DiskBytes() int64 { return st.diskBytes.Load() }

// Stats returns the store's counters.
func (st *Store) Stats() Stats {
	var recs uint64
	for _, l := range st.shards {
		recs += l.tail.Load() - min(l.tail.Load(), l.firstSeq.Load())
	}
	c := &st.counters
	return Stats{
		Mode:             st.opts.Mode,
		Records:          recs,
		MemoryBytes:      st.memSealed.Load() + st.memActive.Load(),
		SealedBytes:      st.memSealed.Load(),
		DiskBytes:        st.diskBytes.Load(),
		SegmentsArchived: c.archived.Load(),
		ArchivedRawBytes: c.archivedRaw.Load(),
		ArchiveBytes:     c.archivedBytes.Load(),
		SegmentsReleased: c.released.Load(),
		DeletedByAge:     c.deletedAge.Load(),
		DeletedByDisk:    c.deletedDisk.Load(),
		DeletedByMemory:  c.deletedMemory.Load(),
		RecordsDeleted:   c.deletedRecords.Load(),
		BytesDeleted:     int64(c.deletedBytes.Load()),
		FlushErrors:      c.flushErrors.Load(),
		MaintainErrors:   c.maintainErrors.Load(),
		CacheHits:        c.cacheHits.Load(),
		CacheMisses:      c.cacheMisses.Load(),
		CacheBytes:       st.cache.bytes(),
	}
}

// Sync writes and syncs everything appended to every shard. Call it from the shards' writers or
// when they are idle.
func (st *Store) Sync() error {
	var errs []error
	for _, l := range st.shards {
		errs = append(errs, l.flush())
	}
	return errors.Join(errs...)
}

// Close stops the background goroutine, syncs everything appended (DurableRelaxed) and closes
// the files. Writers must have stopped. Reads keep working after Close (released and archived
// segments are read from their files); appends fail with ErrClosed.
func (st *Store) Close() error {
	if st.closed.Swap(true) {
		return nil
	}
	close(st.done)
	st.wg.Wait()
	st.maintainMu.Lock()
	defer st.maintainMu.Unlock()
	st.shut = true
	err := st.Sync()
	return errors.Join(err, st.closeFiles())
}

func (st *Store) closeFiles() error {
	var errs []error
	for _, l := range st.shards {
		l.flushMu.Lock()
		for _, seg := range l.segments() {
			if seg.file != nil {
				errs = append(errs, seg.file.Close())
				seg.file = nil
			}
		}
		l.flushMu.Unlock()
	}
	if st.enc != nil {
		errs = append(errs, st.enc.Close())
	}
	// The decoder stays usable (it runs synchronously, no goroutines): released segments can
	// still be read after Close, from their files.
	if st.lockFile != nil {
		errs = append(errs, st.lockFile.Close())
	}
	return errors.Join(errs...)
}
