// Package logstore is the storage layer under the Atomic MultiLog: per-shard, append-only logs
// of fixed-size records in fixed-capacity segments, with three durability modes, crash
// recovery, archival to zstd-compressed segment files, retention and a memory bound.
//
// Usage:
//
//	st, err := logstore.Open(dir, s, logstore.Options{Mode: logstore.Durable, Shards: 4})
//	var damage *logstore.DamageError
//	if errors.As(err, &damage) { /* st is open; damage lists the lost records */ } else if err != nil { ... }
//	defer st.Close()
//	seq, err := st.Shard(i).Append(batch) // one writer per shard
//	err = st.Shard(i).Scan(fromNanos, toNanos, func(seq uint64, rec []byte) bool { ...; return true })
//	data, err := st.Shard(i).ReadSegment(first) // in memory, segment file or archive alike
//	err = st.SetDefinitions(json) // the owner's indexes, filters, aggregates, triggers
//
// An owner that keeps records in its own segments (pkg/multilog) writes them in place instead
// of copying: Reserve returns the active segment's buffer, the owner fills it, Commit persists
// (Durable: syncs) the new records; Options.OnRelease tells it when the store let go of a
// sealed segment's memory, after which it reads the segment with ReadSegment.
//
// # Modes
//
//   - InMemory: nothing on disk. A memory bound drops the oldest sealed segments (counted).
//   - Durable: Append returns after write + fdatasync of the batch; a segment file's directory
//     entry is synced when the file is created. Every acknowledged record survives kill -9 and
//     power loss.
//   - DurableRelaxed: Append returns once the batch is in memory; a background flusher writes
//     and fdatasyncs every SyncInterval. A crash loses at most what was appended since the last
//     completed flush, never a torn record: every batch frame carries a CRC-32C and recovery
//     discards a torn final frame. When appends outpace the flusher, an Append that finds no
//     flush started within two SyncIntervals completed syncs before it returns, so the loss
//     stays bounded by time rather than growing with the backlog.
//
// # Layout on disk (format version 1; docs/format.md has every field)
//
//	dir/
//	  MANIFEST.json          schema, record size, shards, segment size, first kept sequence per
//	                         shard, owner definitions; replaced atomically (tmp, fsync, rename,
//	                         fsync dir)
//	  LOCK                   flock'ed while a Store has the directory open
//	  shard-0000/
//	    seg-00000000000000000000.log   segment file: header, then CRC-framed batches
//	    seg-00000000000000004096.zst   archive file: header, zstd payload, footer
//
//	segment file                               archive file
//	+--------------------------+               +--------------------------+
//	| header (magic, version,  |               | header (kind = archive,  |
//	| record size, shard, first|               | codec)                   |
//	| seq, capacity, schema)   |               +--------------------------+
//	+--------------------------+               | zstd payload (records,   |
//	| frame: len|index|crc32c  |               | byte-transposed)         |
//	|        records...        |               +--------------------------+
//	+--------------------------+               | footer: first, min/max   |
//	| frame ...                |               | ts, records, lengths, crc|
//	+--------------------------+               +--------------------------+
//
// Segment k of a shard holds sequence numbers [k·capacity, (k+1)·capacity); its files are named
// by their first sequence number. A sealed segment's file is synced and closed before the next
// segment's file is created, so only a shard's last segment can end in a torn frame.
//
// # Recovery
//
// Open restores the manifest and every shard. A torn final frame of a shard's last segment (a
// crash during a write) is cut off and counted in Recovery; the tail resumes after the last
// whole record. Anything else that does not check out — a bad frame with valid frames after it,
// a truncated sealed segment, a bad header, a missing segment file, a bad archive — is damage:
// Open returns a usable Store and a *DamageError naming file, offset and lost sequence numbers;
// the lost records are holes (Read reports them, Scan skips them), the rest stays readable.
//
// # Archival, retention, memory bound
//
// Maintain (run in the background every MaintainInterval) archives sealed segments older than
// ArchiveAge, deletes whole oldest segments older than RetentionAge or beyond MaxDiskBytes, and
// keeps the sealed segments held in memory under MaxMemoryBytes by archiving (durable modes)
// or dropping (InMemory, or disk budget exhausted) the oldest, all counted in Stats. An owner
// may put its own memory under the same bound (Options.ExtraMemoryBytes, e.g. the MultiLog's
// derived logs): when releasing every sealed segment is not enough, the oldest segments are
// deleted (DeletedByMemory) and the owner frees what it derived from them (OnDelete). Reads of
// released segments go through a cache of CacheSegments decompressed segments. The store's
// memory not bounded by MaxMemoryBytes is fixed: one active segment per shard plus the cache.
//
// A Store is safe for concurrent use; each ShardLog has a single writer (see ShardLog).
// Lock order: Store.maintainMu, ShardLog.flushMu, ShardLog.mu, Store.mu, segmentCache.mu.
package logstore
