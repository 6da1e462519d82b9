// Package multilog is Confluo's Atomic MultiLog rebuilt in Go: an append-only store of
// fixed-size records (see package schema) with radix-tree indexes, time-bucketed filters,
// aggregates with roll-ups, triggers evaluated by a monitor, and alerts — all updated
// atomically with the data, at line rate, by writers that never wait for each other.
//
// # Use
//
//	s, _ := schema.Parse("{src_ip: IPV4, dport: USHORT, len: UINT}")
//	ml, _ := multilog.New(s, multilog.Options{Writers: 2})
//	w := ml.Writer(0)                    // one goroutine per writer
//	_ = w.AppendBatch(records)           // whole records, laid end to end
//	_ = ml.AddIndex("dport", 0)          // Backfill() to index older records too
//	rows, _ := ml.Query("src_ip in 10.0.0.0/8 && dport == 80", from, to, 100)
//	for rows.Next() { rec := rows.Record(); ... }
//
//	_ = ml.AddFilter("web", "dport == 80 || dport == 443")
//	_ = ml.AddAggregate("web_bytes", "web", "SUM(len)")
//	_ = ml.InstallTrigger("web_burst", "web_bytes >= 1e6", 10*time.Millisecond)
//	cancel := ml.SubscribeChan(alerts)            // or ml.Subscribe(func(multilog.Alert))
//
// Time ranges are always [from, to): from inclusive, to exclusive, in data time (each
// record's timestamp column, nanoseconds since the epoch). A zero time.Time is unbounded.
//
// # Design
//
// Every writer owns a shard. A shard has its own data log, its own part of every derived log,
// and its own published tail; a version (Snapshot) is the vector of shard tails. Appending
// never touches another shard's memory, so writers do not contend (Confluo's single global
// read tail makes 2 writers 6x slower than one).
//
//	         writer 0                              writer 1
//	            │ AppendBatch                          │
//	            ▼                                      ▼
//	shard 0 ┌────────────────────────────┐  shard 1 ┌──────────────────────┐
//	 data   │seg 0 (1 MiB)│seg 1│seg 2▒▒▒│   data   │seg 0│seg 1▒▒▒▒▒▒▒▒▒▒▒│
//	        └────────────────────────────┘          └──────────────────────┘
//	 index  radix tree: key → [seq...]               radix tree
//	 filter time bucket → [seq...]                   time bucket → [seq...]
//	 aggr.  time bucket → partial (sum,min,max,n)    ...
//	 tail   ──────────────────────▲ (atomic)         ─────────▲
//	                              │                           │
//	Snapshot() = Version{tails: [t0, t1]}  ◀── Freeze() pins it while writers go on
//
// A batch is copied into the shard's current segment (segments are fixed-size slabs of whole
// records, allocated once; memory is 1.0x the raw record bytes plus one partly filled segment
// per shard), every derived log of the shard is updated, and only then is the tail stored.
// Readers load the tails once and never look at data or derived entries at or above them.
// Each segment keeps the min and max timestamp of its records so time-range queries skip whole
// segments, and a shard records where (if ever) its timestamps stopped being non-decreasing,
// so ordered shards are streamed and merged without sorting.
//
// Invariants (also on the types):
//
//  1. Each shard has exactly one writer; only it appends to the shard's data and derived logs.
//  2. A shard's tail only grows and is stored after the data and every derived log cover the
//     records below it: a record is visible in every log or in none (atomicity).
//  3. A reader loads each tail once (its version) and never reads at or above it: visibility
//     is a prefix per shard, and a query never sees anything newer than its version.
//  4. Records never change below the tail; readers take no locks and results alias the log.
//  5. A derived log covers each shard from a start sequence that the shard's writer claims at
//     a batch boundary; whatever it does not cover is found by scanning (indexes) or, for
//     filters and aggregates, is explicitly outside them unless backfilled.
//  6. Configuration (indexes, filters, aggregates, triggers) is copy-on-write: writers load it
//     once per batch and never block on a change.
//
// # Queries
//
// The planner walks the typed filter tree (package expr): comparisons, IN lists and CIDR
// prefixes on indexed columns become key ranges; AND picks its most selective indexed term, OR
// needs every term indexed and unions them. Candidates from the index are then checked with
// the full predicate, so bucketing never changes a result (Confluo's planner misses x > 0.6
// matching 0.7 in the same bucket); only when the whole predicate is an equality or IN list on
// an unbucketed integer, IP or MAC index, whose keys are the values themselves, does the index
// decide alone and the candidates' timestamps are all that is read. Otherwise a query scans,
// skipping segments by time.
// Results come in timestamp order (ties: lower shard, then sequence) from a k-way merge of
// the shards.
//
// # Persistence
//
// New keeps everything in memory, for ever; Open keeps the data log in a directory through
// package logstore (format: docs/format.md), or, with no directory (Persistence{Mode:
// logstore.InMemory}), in memory under Store.RetentionAge and Store.MaxMemoryBytes, which
// drop the oldest segments as below: what a long-running process with no disk to spare wants. The segment is the unit of storage: a shard's segment
// memory is the store's buffer, so records are written once; in Durable mode each batch is
// fdatasync'ed before the tail is stored (invariant 2 then also means "acknowledged records
// are on disk"), DurableRelaxed syncs every Store.SyncInterval. Reopening replays every shard
// through the append path, so indexes, filters and aggregates are rebuilt, and restores the
// definitions (kept in the manifest) and then the triggers. Sealed segments may be archived
// (zstd) and released from memory (Store.ArchiveAge, Store.MaxMemoryBytes): reads go through
// the store, with the same answers. Retention (Store.RetentionAge, Store.MaxDiskBytes) deletes
// whole oldest segments; each shard then has a first kept sequence number
// (logstore.ShardLog.FirstSeq) and every read path skips what lies below it: query scans and
// cursors, index candidates and backfills, filter logs, aggregates; Read of a deleted record
// fails with ErrDeleted, and NumRecords counts the kept records only (Version.NumRecords
// counts every record appended). A query that cannot read its records (a damaged archive,
// records recovery found lost) stops and reports why in Rows.Err (ErrRead, ErrLost), naming
// the shard, segment and file; it never returns zero-filled records. Stats().Persist counts
// deletions and read failures.
//
// Derived logs follow the data that is kept. A persisted MultiLog splits each shard's part of
// every index, filter and aggregate (and their backfills) into epochs of sequence numbers,
// each with its own radix tree or partials (New has one epoch: nothing is ever deleted).
// Filter and aggregate epochs span 65,536 records rounded up to whole segments. An index
// repeats its keys in every epoch, so its epochs adapt: one closes at a segment boundary once
// it holds 65,536 records or more and either its posting entries are at least twice its
// per-key overhead or it holds 16 MiB (few keys: short epochs; many repeated keys: long
// ones, so lookups visit few trees). When retention deletes segments, every epoch whose
// records are all deleted is dropped, with its memory. Readers skip the deleted entries of the
// epoch that straddles the first kept record; an aggregate computes that epoch's share from
// the filter log over its kept records, so aggregates cover exactly the kept records, even in
// a time bucket that holds deleted and kept ones.
//
// Memory bound: Store.MaxMemoryBytes bounds the sealed data segments in memory plus the
// derived logs' closed epochs (DerivedBytes estimates their memory as they grow: posting
// blocks, tree nodes, partials and their pages). Over it, Maintain archives and releases the
// oldest sealed segments; if that is not enough, it deletes the oldest segments (counted in
// DeletedByMemory), which drops their epochs. The fixed overhead outside the bound is, per
// shard, one active segment and the current epoch of each derived log, and the store's
// CacheSegments decompressed segments. A current filter or aggregate epoch holds the entries
// of one span of records (filters: 4 bytes per match; aggregates: a partial per bucket and
// roll-up level, in 8 KiB pages); a current index epoch at most 16 MiB plus one segment's
// entries, or the entries of 65,536 records plus one segment if that is more (4 bytes per
// entry, plus 150 to 250 bytes per key new in the epoch). What the host sees is checked by
// TestResidentMemoryUnderBound: a process ingesting 8 times a 64 MiB bound (2 shards, an index
// with 50,000 keys, a filter and an aggregate, Go memory limit at the bound plus 64 MiB) keeps
// its resident memory under twice the bound plus fixed overhead, plus 16 MiB (measured: a
// 190-220 MiB peak against a 274 MiB limit). The segment directory keeps a
// small descriptor per kept segment (deleted ones are dropped when the shard starts its next
// segment), in a slice of at most a few times that many pointers.
//
// # Monitoring
//
// Filters log the sequence numbers of their matches per time bucket (Options.FilterBucket,
// default 1 ms): 4 bytes per match in a radix tree keyed by bucket. Aggregates keep, per shard,
// immutable partials (count, sum, min, max) per bucket and roll-ups per 64, 4,096, ... buckets;
// a reader merges the shards' partials at its version, recomputing from the filter log any
// partial that is newer than its version, so GetAggregate is exact at any version and costs
// O(log range) partials instead of one per bucket. Triggers are grouped by (aggregate, period);
// writers report which buckets changed, and the monitor evaluates only the windows that
// received data (with TriggerBackfill also those that held data at installation), once each,
// when the window is complete. Complete means: its end is at or below the watermark, which is
// the minimum over the shards still receiving data (Options.IdleAfter) of their largest
// timestamp minus Options.Grace, or an external watermark (Options.Watermark, for a capture
// pipeline that knows what is still in flight); AdvanceWatermark and Flush declare the input
// complete up to a time (the end of a replay), so the last windows close.
//
// # Status
//
// Issues 2 (store, indexes, queries), 3 (filters, aggregates, triggers, alerts) and 4
// (persistence: modes, recovery, archival, memory bound, retention) are in place.
// Filters (FilterBackfill) and aggregates (AggregateBackfill: per-shard roll-ups over the
// filter's matches below the aggregate's start, built off the append path) can be backfilled.
//
// Lock order: MultiLog.mu (configuration) → monitor.mu → alertLog.mu. The append path takes
// no lock.
package multilog
