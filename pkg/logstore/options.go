package logstore

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/prometheus/client_golang/prometheus"
)

// Sentinel errors; returned errors wrap them with details.
var (
	ErrOptions    = errors.New("logstore: bad options")
	ErrRecordSize = errors.New("logstore: record has the wrong size")
	ErrSchema     = errors.New("logstore: schema does not match the directory")
	ErrManifest   = errors.New("logstore: bad manifest")
	ErrDamaged    = errors.New("logstore: damaged data")
	ErrDropped    = errors.New("logstore: data dropped by retention")
	ErrNotFound   = errors.New("logstore: no such record")
	ErrClosed     = errors.New("logstore: closed")
	ErrLocked     = errors.New("logstore: directory in use by another store")
)

// Mode is a store's durability mode.
type Mode uint8

// The durability modes.
const (
	// InMemory keeps everything in memory; nothing touches the disk. A memory bound drops the
	// oldest sealed segments (counted).
	InMemory Mode = iota
	// Durable makes Append return only after the batch is written and fdatasync'ed: after a
	// crash (kill -9 or power loss) every acknowledged record is there.
	Durable
	// DurableRelaxed makes Append return after the batch is in memory; a background flusher
	// writes and fdatasyncs every SyncInterval. A crash loses at most the records appended in
	// the last SyncInterval (plus the time one flush takes), never a torn record. If the
	// flusher falls behind (appends outpace the disk), an Append that finds no flush started
	// within the last two SyncIntervals completed writes and syncs before it returns: what a
	// crash loses is never older than that.
	DurableRelaxed
)

func (m Mode) String() string {
	switch m {
	case InMemory:
		return "IN_MEMORY"
	case Durable:
		return "DURABLE"
	case DurableRelaxed:
		return "DURABLE_RELAXED"
	}
	return fmt.Sprintf("Mode(%d)", uint8(m))
}

// ParseMode parses IN_MEMORY, DURABLE or DURABLE_RELAXED (case-insensitive, '-' for '_').
func ParseMode(s string) (Mode, error) {
	for m := InMemory; m <= DurableRelaxed; m++ {
		if equalFoldDash(s, m.String()) {
			return m, nil
		}
	}
	return 0, fmt.Errorf("%w: unknown mode %q (want IN_MEMORY, DURABLE or DURABLE_RELAXED)", ErrOptions, s)
}

func equalFoldDash(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x == '-' {
			x = '_'
		}
		if 'a' <= x && x <= 'z' {
			x -= 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// Options configure a Store. The zero value of a field means its default.
type Options struct {
	// Mode is the durability mode. Default InMemory. Durable modes need a directory.
	Mode Mode

	// Shards is the number of shard logs (one writer each). Default 1, or the number stored in
	// the directory's manifest; a different non-zero value for an existing directory is an error.
	Shards int

	// SegmentBytes is the size of one segment, rounded down to whole records (at least one).
	// Segments are the unit that is sealed, archived, released from memory and deleted.
	// Default 1 MiB, or the manifest's value for an existing directory. At most 1 GiB.
	SegmentBytes int

	// SyncInterval is how often DurableRelaxed writes and syncs what was appended. Default 50 ms.
	SyncInterval time.Duration

	// MaintainInterval is how often a background goroutine runs Maintain (archival, retention,
	// memory bound). Default 1 s; negative disables it (the owner calls Maintain). Sealing a
	// segment while over MaxMemoryBytes also wakes it.
	MaintainInterval time.Duration

	// ArchiveAge: sealed segments whose newest record is older than this (by the records'
	// timestamps, against Now) are compressed into archive files and released from memory.
	// Default 0: no archival by age (MaxMemoryBytes still archives). Needs a durable mode.
	ArchiveAge time.Duration

	// RetentionAge: sealed segments whose newest record is older than this are deleted. Default
	// 0: keep forever.
	RetentionAge time.Duration

	// MaxDiskBytes bounds the bytes of segment and archive files; the oldest sealed segments are
	// deleted (counted) to stay under it. Default 0: unbounded.
	MaxDiskBytes int64

	// MaxMemoryBytes bounds the bytes of sealed segments held in memory, plus ExtraMemoryBytes.
	// Over it, Maintain archives (durable modes) or drops (InMemory, or when MaxDiskBytes is
	// exhausted too) the oldest sealed segments until under it; if the extra memory alone keeps
	// it over, the oldest segments are deleted. The fixed overhead not counted here is one
	// active segment per shard plus CacheSegments decompressed segments. Default 0: unbounded.
	MaxMemoryBytes int64

	// CacheSegments is how many decompressed (or re-read) segments are cached for reads of
	// released segments. Default 4.
	CacheSegments int

	// Codec compresses archive files. Default CodecZstdTransposed.
	Codec Codec

	// CompressionLevel is the zstd level. Default zstd.SpeedDefault.
	CompressionLevel zstd.EncoderLevel

	// OnRelease, if set, is called after the store let go of a sealed segment's memory (it
	// was archived, or its segment file holds it): an owner that shares the segment buffers
	// (Reserve) drops its reference too and reads the segment with ReadSegment from then on.
	// It runs on the goroutine running Maintain and must not call Maintain. Default nil.
	OnRelease func(shard int, first uint64)

	// OnDelete, if set, is called after retention or a bound deleted a shard's oldest segment
	// (FirstSeq has already moved past it, and reads of it fail with ErrDropped): an owner that
	// shares the segment buffers drops its reference and skips the segment's records from then
	// on. It runs on the goroutine running Maintain and must not call Maintain. Default nil.
	OnDelete func(shard int, first uint64)

	// ExtraMemoryBytes, if set, returns memory outside the store's segments that MaxMemoryBytes
	// bounds too (an owner's structures derived from the records, which shrink when the owner
	// is told of deletions through OnDelete). Maintain counts it with the sealed segments; when
	// releasing every sealed segment is not enough, it deletes the oldest segments (counted in
	// DeletedByMemory) until under the bound or nothing is left to delete. It is called by
	// Maintain and when a segment is sealed, must be cheap, and must not call into the store.
	// Default nil.
	ExtraMemoryBytes func() int64

	// Now is the clock archival and retention ages are measured against. Default time.Now.
	Now func() time.Time

	// Name labels the store's metrics (label "log"); needed when several stores share a
	// Registerer. Default "".
	Name string

	// Registerer, if set, receives the store's metrics (confluo_logstore_*). Default nil: no
	// metrics.
	Registerer prometheus.Registerer

	// Logger receives rare events (recovery, damage, archival and retention errors). Nil
	// discards.
	Logger *slog.Logger
}

// DefaultOptions returns the options with every default filled in.
func DefaultOptions() Options {
	var o Options
	o.fill()
	return o
}

func (o *Options) fill() {
	if o.Shards == 0 {
		o.Shards = 1
	}
	if o.SegmentBytes == 0 {
		o.SegmentBytes = 1 << 20
	}
	if o.SyncInterval == 0 {
		o.SyncInterval = 50 * time.Millisecond
	}
	if o.MaintainInterval == 0 {
		o.MaintainInterval = time.Second
	}
	if o.CacheSegments == 0 {
		o.CacheSegments = 4
	}
	if o.Codec == 0 {
		o.Codec = CodecZstdTransposed
	}
	if o.CompressionLevel == 0 {
		o.CompressionLevel = zstd.SpeedDefault
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// MaxShards is the largest Options.Shards accepted.
const MaxShards = 4096

// maxSegmentBytes is the largest segment (Options.SegmentBytes, and a manifest's
// segment_records times record_size).
const maxSegmentBytes = 1 << 30

// Validate reports the first option out of range, after defaults are applied.
func (o Options) Validate() error {
	o.fill()
	switch {
	case o.Mode > DurableRelaxed:
		return fmt.Errorf("%w: unknown mode %d", ErrOptions, o.Mode)
	case o.Shards < 1 || o.Shards > MaxShards:
		return fmt.Errorf("%w: Shards %d not in 1..%d", ErrOptions, o.Shards, MaxShards)
	case o.SegmentBytes < 1 || o.SegmentBytes > maxSegmentBytes:
		return fmt.Errorf("%w: SegmentBytes %d not in 1..1GiB", ErrOptions, o.SegmentBytes)
	case o.SyncInterval < 0:
		return fmt.Errorf("%w: SyncInterval %v is negative", ErrOptions, o.SyncInterval)
	case o.ArchiveAge < 0 || o.RetentionAge < 0:
		return fmt.Errorf("%w: negative ArchiveAge %v or RetentionAge %v", ErrOptions, o.ArchiveAge, o.RetentionAge)
	case o.MaxDiskBytes < 0 || o.MaxMemoryBytes < 0:
		return fmt.Errorf("%w: negative MaxDiskBytes %d or MaxMemoryBytes %d", ErrOptions, o.MaxDiskBytes, o.MaxMemoryBytes)
	case o.CacheSegments < 1:
		return fmt.Errorf("%w: CacheSegments %d below 1", ErrOptions, o.CacheSegments)
	case o.Codec != CodecZstd && o.Codec != CodecZstdTransposed:
		return fmt.Errorf("%w: unknown codec %d", ErrOptions, o.Codec)
	case o.Mode == InMemory && o.ArchiveAge > 0:
		return fmt.Errorf("%w: ArchiveAge needs a durable mode (IN_MEMORY has no disk)", ErrOptions)
	case o.Mode == InMemory && o.MaxDiskBytes > 0:
		return fmt.Errorf("%w: MaxDiskBytes needs a durable mode (IN_MEMORY has no disk)", ErrOptions)
	}
	return nil
}
