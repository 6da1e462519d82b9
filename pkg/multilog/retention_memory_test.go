package multilog

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/confluo-go/confluo/pkg/logstore"
	"github.com/confluo-go/confluo/pkg/schema"
)

// smallEpochs makes MultiLogs opened during the test use epochs of n records, and close
// index epochs at maxBytes (1: as soon as they have n records).
func smallEpochs(t *testing.T, n uint64, maxBytes int64) {
	oldRecords, oldBytes := minEpochRecords, maxEpochBytes
	minEpochRecords, maxEpochBytes = n, maxBytes
	t.Cleanup(func() { minEpochRecords, maxEpochBytes = oldRecords, oldBytes })
}

// derivedEpochs lists, per derived log of shard, the sequence ranges of its epochs.
func derivedEpochs(ml *MultiLog, shard int) map[string][][2]uint64 {
	out := map[string][][2]uint64{}
	trees := func(name string, l *treeList) {
		if !l.set() {
			return
		}
		out[name] = [][2]uint64{}
		for _, e := range l.load() {
			out[name] = append(out[name], [2]uint64{e.first, e.end.Load()})
		}
	}
	aggs := func(name string, es []*aggEpoch) {
		out[name] = [][2]uint64{}
		for _, e := range es {
			out[name] = append(out[name], [2]uint64{e.first, e.end})
		}
	}
	cfg := ml.cfg.Load()
	for _, ix := range cfg.indexes {
		trees("index "+ix.col.Name, &ix.parts[shard].epochs)
		trees("index "+ix.col.Name+" backfill", &ix.parts[shard].backfill)
	}
	for _, f := range cfg.filters {
		trees("filter "+f.name, &f.parts[shard].epochs)
		trees("filter "+f.name+" backfill", &f.parts[shard].backfill)
	}
	for _, a := range cfg.aggs {
		aggs("aggregate "+a.name, a.parts[shard].epochs.load())
		if bf := a.parts[shard].backfill.Load(); bf != nil {
			aggs("aggregate "+a.name+" backfill", bf.epochs.load())
		}
	}
	return out
}

// walkMemory sums the memory of every epoch, as derivedMemory tracks it incrementally.
func walkMemory(ml *MultiLog) memoryUse {
	var m memoryUse
	list := func(es []spanned, frozen bool) {
		for k, e := range es {
			if frozen || k < len(es)-1 {
				m.add(e.memory(), e.memory())
			} else {
				m.add(e.memory(), 0)
			}
		}
	}
	trees := func(l *treeList) {
		var es []spanned
		for _, e := range l.load() {
			es = append(es, e)
		}
		list(es, l.frozen)
	}
	aggs := func(l *epochList[*aggEpoch]) {
		var es []spanned
		for _, e := range l.load() {
			es = append(es, e)
		}
		list(es, l.frozen)
	}
	cfg := ml.cfg.Load()
	for w := range ml.shards {
		for _, ix := range cfg.indexes {
			trees(&ix.parts[w].epochs)
			trees(&ix.parts[w].backfill)
		}
		for _, f := range cfg.filters {
			trees(&f.parts[w].epochs)
			trees(&f.parts[w].backfill)
		}
		for _, a := range cfg.aggs {
			aggs(&a.parts[w].epochs)
			if bf := a.parts[w].backfill.Load(); bf != nil {
				aggs(&bf.epochs)
			}
		}
	}
	return m
}

// TestRetentionReclaimsDerivedLogs deletes the older half of the data by age: the epochs of
// every index, filter, aggregate and backfill that held only deleted records are gone, the
// derived memory drops accordingly, and every answer (queries, filters, aggregates over
// ranges that cut the deleted and kept records, NumRecords) equals a model holding the kept
// records only, before and after more appends and a reopen.
func TestRetentionReclaimsDerivedLogs(t *testing.T) {
	smallEpochs(t, 256, 1) // 4 segments of 64 records
	s, _ := schema.Parse(persistSchema)
	dir := t.TempDir()
	var clock fakeClock
	clock.ns.Store(persistBase)
	// 10 µs buckets: 10 records of a shard per bucket, so roll-ups span epochs.
	opts := Options{Writers: 2, SegmentBytes: 64 * s.RecordSize, ManualMonitor: true, FilterBucket: 10 * time.Microsecond}
	p := Persistence{Dir: dir, Mode: logstore.Durable, Store: logstore.Options{MaintainInterval: -1, RetentionAge: time.Hour, Now: clock.now}}
	ml, err := Open(s, opts, p)
	if err != nil {
		t.Fatal(err)
	}
	if ml.epochSpan() != 256 {
		t.Fatalf("epoch span %d, want 256", ml.epochSpan())
	}
	for _, err := range []error{ml.AddIndex("dport", 0), ml.AddFilter("web", "dport == 80"), ml.AddAggregate("web_bytes", "web", "SUM(len)")} {
		if err != nil {
			t.Fatal(err)
		}
	}
	appendAll(t, ml, s, 0, 600)
	// Backfilled derived logs: their backfills hold records 0..599 in epochs too.
	for _, err := range []error{ml.AddIndex("len", 100, Backfill()), ml.AddFilter("low", "len < 300", FilterBackfill()),
		ml.AddAggregate("low_count", "low", "COUNT(*)", AggregateBackfill())} {
		if err != nil {
			t.Fatal(err)
		}
	}
	appendAll(t, ml, s, 600, 2000)
	sameRetention(t, "before retention", ml, s)
	before := ml.DerivedBytes()
	if before == 0 {
		t.Fatal("no derived memory accounted")
	}
	if got, want := ml.derivedMemory(), walkMemory(ml); got != want {
		t.Fatalf("tracked derived memory %+v, epochs hold %+v", got, want)
	}
	for w := range 2 {
		if got := derivedEpochs(ml, w)["index dport"]; len(got) != 8 || got[0] != [2]uint64{0, 256} {
			t.Fatalf("shard %d: index epochs %v, want 8 from [0 256)", w, got)
		}
	}

	// Records below seq 1088 (segments 0..16) are older than an hour and deleted: epochs
	// [0,256) .. [768,1024) hold only deleted records; [1024,1280) straddles the cut (the
	// index on len, added at 600, has epochs [600,896), [896,1152), ...).
	clock.ns.Store(persistBase + 1_100_000 + int64(time.Hour))
	if _, err := ml.Store().Maintain(); err != nil {
		t.Fatal(err)
	}
	for w := range 2 {
		if f := ml.Store().Shard(w).FirstSeq(); f != 1088 {
			t.Fatalf("shard %d: first kept %d, want 1088", w, f)
		}
		for name, es := range derivedEpochs(ml, w) {
			for _, e := range es {
				if e[1] <= 1088 {
					t.Fatalf("shard %d: %s keeps the deleted epoch %v (all: %v)", w, name, e, es)
				}
			}
			backfill := len(name) > 9 && name[len(name)-9:] == " backfill"
			switch {
			case backfill && len(es) != 0:
				t.Fatalf("shard %d: %s: epochs %v, want none (every backfilled record is deleted)", w, name, es)
			case !backfill && (len(es) == 0 || es[0][0] > 1088):
				t.Fatalf("shard %d: %s: epochs %v, want the first to hold 1088", w, name, es)
			}
		}
	}
	after := ml.DerivedBytes()
	if got, want := ml.derivedMemory(), walkMemory(ml); got != want {
		t.Fatalf("after retention: tracked derived memory %+v, epochs hold %+v", got, want)
	}
	// About half of the entries lay in dropped epochs (the backfills' too).
	if after >= before*7/10 {
		t.Fatalf("derived memory %d after retention, %d before: not reclaimed", after, before)
	}
	t.Logf("derived memory %d → %d bytes", before, after)
	sameRetention(t, "after retention", ml, s)
	checkBackfilled := func(what string) {
		t.Helper()
		want, err := ml.Snapshot().CountNanos("len < 300", MinTime, MaxTime)
		if err != nil {
			t.Fatal(err)
		}
		n, err := ml.Snapshot().CountFilter("low", MinTime, MaxTime)
		if err != nil || n != want {
			t.Fatalf("%s: backfilled filter counts %d (%v), want %d", what, n, err, want)
		}
		v, err := ml.GetAggregate("low_count", MinTime, MaxTime)
		if err != nil || v.Count != want {
			t.Fatalf("%s: backfilled aggregate counts %d (%v), want %d", what, v.Count, err, want)
		}
		if plan, _ := ml.Snapshot().Explain("len >= 100 && len < 200"); plan == "scan" {
			t.Fatalf("%s: not planned through the index on len", what)
		}
		rows, err := ml.QueryNanos("len >= 100 && len < 200", MinTime, MaxTime, 0)
		if err != nil {
			t.Fatal(err)
		}
		k := 0
		for rows.Next() {
			k++
		}
		all, err := ml.QueryNanos("", MinTime, MaxTime, 0)
		if err != nil {
			t.Fatal(err)
		}
		lenCol, _ := s.Column("len")
		want = 0
		for all.Next() {
			if l := leUint(all.Record()[lenCol.Offset:][:4]); l >= 100 && l < 200 {
				want++
			}
		}
		if rows.Err() != nil || all.Err() != nil || uint64(k) != want {
			t.Fatalf("%s: query through the backfilled index: %d rows (%v, %v), want %d", what, k, rows.Err(), all.Err(), want)
		}
	}
	checkBackfilled("after retention")

	appendAll(t, ml, s, 2000, 2600)
	sameRetention(t, "after more appends", ml, s)
	checkBackfilled("after more appends")
	if err := ml.Close(); err != nil {
		t.Fatal(err)
	}
	ml, err = Open(nil, Options{ManualMonitor: true, FilterBucket: opts.FilterBucket}, p)
	if err != nil {
		t.Fatal(err)
	}
	defer ml.Close()
	sameRetention(t, "reopened", ml, s)
	for w := range 2 {
		if got := derivedEpochs(ml, w)["index dport"]; len(got) == 0 || got[0][0] != 1088 {
			t.Fatalf("reopened: shard %d: index epochs %v, want the first at 1088", w, got)
		}
	}
}

// TestRetentionSmallEpochs runs the retention tests with epochs of two segments, so deletions
// drop epochs while writers append and readers query.
func TestRetentionSmallEpochs(t *testing.T) {
	for name, test := range map[string]func(*testing.T){
		"ByAge": TestPersistRetentionByAge, "ByDisk": TestPersistRetentionByDisk, "UnderIngest": TestPersistRetentionUnderIngest,
	} {
		t.Run(name, func(t *testing.T) {
			smallEpochs(t, 128, 1)
			test(t)
		})
	}
}

// TestMemoryBoundCoversDerivedLogs ingests many times MaxMemoryBytes into a MultiLog with two
// indexes, a filter and an aggregate. The derived logs alone outgrow the bound, so Maintain
// deletes the oldest data (counted in DeletedByMemory) and their epochs go with it. After
// every Maintain, sealed segments in memory plus the closed epochs' derived memory are under
// the bound, and the live heap is under the bound plus the stated fixed overhead: per shard
// one active segment and the derived memory of one epoch, plus the store's cache.
func TestMemoryBoundCoversDerivedLogs(t *testing.T) {
	const (
		epoch    = 4096
		segRecs  = 1024
		shards   = 2
		bound    = 1 << 20
		batch    = 512
		perShard = 400_000
		cache    = 2
		slack    = 4 << 20 // the test's own buffers, the runtime, allocator rounding
	)
	smallEpochs(t, epoch, 256<<10)
	s, _ := schema.Parse(persistSchema)
	segBytes := segRecs * s.RecordSize
	p := Persistence{Dir: t.TempDir(), Mode: logstore.DurableRelaxed, Store: logstore.Options{
		MaintainInterval: -1, MaxMemoryBytes: bound, CacheSegments: cache, SyncInterval: time.Hour}}
	ml, err := Open(s, Options{Writers: shards, SegmentBytes: segBytes, ManualMonitor: true}, p)
	if err != nil {
		t.Fatal(err)
	}
	defer ml.Close()
	for _, err := range []error{ml.AddIndex("len", 0), ml.AddIndex("src", 0), ml.AddFilter("web", "dport == 80"),
		ml.AddAggregate("web_bytes", "web", "SUM(len)")} {
		if err != nil {
			t.Fatal(err)
		}
	}
	batches := make([][]byte, shards)
	var base runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&base)
	var maxEpoch, maxLive, maxAccounted int64
	var produced uint64 // derived bytes ever built: what memory would hold without deletions
	lastDerived := uint64(0)
	for seq := uint64(0); seq < perShard; seq += batch {
		for w := range shards {
			batches[w] = persistBatch(s, w, seq, batch)
			// Vary src so that the index on it has many keys per epoch.
			for i := range batch {
				rec := batches[w][i*s.RecordSize:]
				rec[10], rec[11] = byte((seq+uint64(i))>>8), byte(seq+uint64(i))
			}
			if err := ml.Writer(w).AppendBatch(batches[w]); err != nil {
				t.Fatal(err)
			}
		}
		if d := ml.DerivedBytes(); d > lastDerived {
			produced += d - lastDerived
			lastDerived = d
		} else {
			lastDerived = d
		}
		if (seq/batch)%32 != 31 {
			continue
		}
		if _, err := ml.Store().Maintain(); err != nil {
			t.Fatal(err)
		}
		sealed, _ := ml.Store().MemoryBytes()
		m := ml.derivedMemory()
		if want := walkMemory(ml); m != want {
			t.Fatalf("at %d records per shard: tracked derived memory %+v, epochs hold %+v", seq, m, want)
		}
		if sealed+m.closed > bound {
			t.Fatalf("at %d records per shard: sealed %d + closed derived %d > bound %d", seq, sealed, m.closed, bound)
		}
		maxAccounted = max(maxAccounted, sealed+m.total)
		for w := range shards {
			for _, ix := range ml.cfg.Load().indexes {
				for _, e := range ix.parts[w].epochs.load() {
					maxEpoch = max(maxEpoch, e.tree.Bytes())
				}
			}
		}
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		live := int64(ms.HeapAlloc) - int64(base.HeapAlloc)
		maxLive = max(maxLive, live)
		// Fixed overhead: per shard an active segment and one epoch of every derived log (the
		// current one, bounded by the epoch's records), plus the cache.
		currentEpochs := m.total - m.closed
		limit := int64(bound) + int64(shards*segBytes+cache*segBytes) + currentEpochs + slack
		if live > limit {
			t.Fatalf("at %d records per shard: live heap grew by %d bytes, over bound %d + overhead %d", seq, live, bound, limit-bound)
		}
	}
	st := ml.Stats().Persist
	if st.DeletedByMemory == 0 {
		t.Fatalf("stats %+v: nothing deleted by the memory bound", st)
	}
	if produced < 5*bound {
		t.Fatalf("only %d derived bytes built; the test should ingest several times the bound", produced)
	}
	// The current epoch of a shard is what the bound cannot reclaim; its size follows from the
	// epoch's records: 4 bytes per entry, plus 150 to 250 bytes (leaf, posting list, nodes)
	// per key new in the epoch — here every record has a new src.
	if maxEpoch > epoch*300 {
		t.Fatalf("an index epoch holds %d bytes for %d records", maxEpoch, epoch)
	}
	// Answers stay right for what is kept.
	first, tail := firstKept(ml)
	n, err := ml.Snapshot().CountNanos("dport == 80", MinTime, MaxTime)
	var want uint64
	for w := range shards {
		for seq := first[w]; seq < tail[w]; seq++ {
			if seq%5 == 0 || seq%5 == 3 {
				want++
			}
		}
	}
	if err != nil || n != want {
		t.Fatalf("count over kept records %v..%v: %d (%v), want %d", first, tail, n, err, want)
	}
	if v, err := ml.GetAggregate("web_bytes", MinTime, MaxTime); err != nil || v.Count != want {
		t.Fatalf("aggregate over kept records: %d (%v), want %d", v.Count, err, want)
	}
	t.Logf("%s ingested (%d records), %s of derived logs built; bound %s: accounted at most %s, live heap grew at most %s; largest index epoch %s; deleted by memory %d segments",
		mib(int64(shards*perShard*s.RecordSize)), shards*perShard, mib(int64(produced)), mib(bound), mib(maxAccounted), mib(maxLive), mib(maxEpoch), st.DeletedByMemory)
}

func mib(n int64) string { return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20)) }

// TestEpochsDoNotChangeAnswers: however the derived logs are split into epochs — even at
// boundaries that cut batches and segments — queries, filters and aggregates answer the same.
func TestEpochsDoNotChangeAnswers(t *testing.T) {
	smallEpochs(t, minEpochRecords, 1) // index epochs close as soon as they have span records
	s, _ := schema.Parse(persistSchema)
	build := func(span uint64) *MultiLog {
		ml, err := New(s, Options{Writers: 2, SegmentBytes: 64 * s.RecordSize, ManualMonitor: true, FilterBucket: 10 * time.Microsecond})
		if err != nil {
			t.Fatal(err)
		}
		ml.epochRecords = span
		for _, err := range []error{ml.AddIndex("dport", 0), ml.AddFilter("web", "dport == 80"), ml.AddAggregate("web_bytes", "web", "SUM(len)")} {
			if err != nil {
				t.Fatal(err)
			}
		}
		appendAll(t, ml, s, 0, 1500)
		return ml
	}
	want := retentionAnswers(t, build(0))
	for _, span := range []uint64{1, 100, 64, 1000} {
		ml := build(span)
		if got := retentionAnswers(t, ml); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("epochs of %d records: answers differ", span)
		}
		for name, es := range derivedEpochs(ml, 1) {
			want := (1500 + span - 1) / span
			if name == "index dport" { // closed at segment boundaries
				l := (span + 63) / 64 * 64
				want = (1500 + l - 1) / l
			}
			if n := uint64(len(es)); n != want {
				t.Fatalf("epochs of %d records: %s has %d epochs, want %d", span, name, n, want)
			}
		}
	}
}
