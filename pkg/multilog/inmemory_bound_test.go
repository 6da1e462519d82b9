package multilog

import (
	"errors"
	"testing"
	"time"

	"github.com/confluo-go/confluo/pkg/logstore"
	"github.com/confluo-go/confluo/pkg/schema"
)

// A MultiLog opened without a directory keeps everything in memory under the store's
// RetentionAge and MaxMemoryBytes: what it drops, and what it derived from it, is gone for
// every read path, counted, and the answers over what is kept equal a model's.

func TestInMemoryRetentionByAge(t *testing.T) {
	s, _ := schema.Parse(persistSchema)
	var clock fakeClock
	clock.ns.Store(persistBase)
	p := Persistence{Mode: logstore.InMemory, Store: logstore.Options{MaintainInterval: -1, RetentionAge: time.Hour, Now: clock.now}}
	ml, err := Open(s, Options{Writers: 2, SegmentBytes: 64 * s.RecordSize, ManualMonitor: true}, p)
	if err != nil {
		t.Fatal(err)
	}
	defer ml.Close()
	if mode := ml.Store().Options().Mode; mode != logstore.InMemory {
		t.Fatalf("store mode %v, want IN_MEMORY", mode)
	}
	addWebLogs(t, ml)
	appendAll(t, ml, s, 0, 1000)
	// Records up to seq 499 are older than an hour: segments 0..6 (seq < 448) are dropped
	// whole; segment 7 (448..511) holds newer records and stays.
	clock.ns.Store(persistBase + 500_000 + int64(time.Hour))
	res, err := ml.Store().Maintain()
	if err != nil {
		t.Fatal(err)
	}
	if res.DeletedByAge != 14 || res.RecordsDeleted != 14*64 {
		t.Fatalf("maintain: %+v, want 14 segments of 64 records deleted", res)
	}
	if st := ml.Stats().Persist; st.DeletedByAge != 14 || st.RecordsDeleted != 14*64 || st.DiskBytes != 0 {
		t.Fatalf("stats: %+v", st)
	}
	sameRetention(t, "after retention", ml, s)
	if _, err := ml.Read(MakeRef(1, 10)); !errors.Is(err, ErrDeleted) {
		t.Fatalf("read of a dropped record: %v, want ErrDeleted", err)
	}
	if rec, err := ml.Read(MakeRef(1, 448)); err != nil || schema.Timestamp(rec) != persistBase+448_000+1 {
		t.Fatalf("read of the first kept record: %v", err)
	}
	if n := ml.NumRecords(); n != 2*(1000-448) {
		t.Fatalf("NumRecords %d after retention, want %d kept", n, 2*(1000-448))
	}
	// Backfills after the drop cover the kept records only.
	if err := ml.AddIndex("len", 100, Backfill()); err != nil {
		t.Fatal(err)
	}
	sameRetention(t, "with backfilled index", ml, s)
	appendAll(t, ml, s, 1000, 1300)
	clock.ns.Store(persistBase + 1_100_000 + int64(time.Hour))
	if _, err := ml.Store().Maintain(); err != nil {
		t.Fatal(err)
	}
	sameRetention(t, "after more appends and retention", ml, s)
}

func TestInMemoryMemoryBound(t *testing.T) {
	const (
		segRecs = 256
		shards  = 2
		bound   = 64 << 10
		batch   = 128
		total   = 40_960 // per shard, whole batches: ~100 times the bound in records alone
	)
	smallEpochs(t, 1024, 32<<10)
	s, _ := schema.Parse(persistSchema)
	segBytes := segRecs * s.RecordSize
	p := Persistence{Store: logstore.Options{MaintainInterval: -1, MaxMemoryBytes: bound}}
	ml, err := Open(s, Options{Writers: shards, SegmentBytes: segBytes, ManualMonitor: true}, p)
	if err != nil {
		t.Fatal(err)
	}
	defer ml.Close()
	addWebLogs(t, ml)
	for seq := uint64(0); seq < total; seq += batch {
		for w := range shards {
			if err := ml.Writer(w).AppendBatch(persistBatch(s, w, seq, batch)); err != nil {
				t.Fatal(err)
			}
		}
		if (seq/batch)%8 != 7 {
			continue
		}
		if _, err := ml.Store().Maintain(); err != nil {
			t.Fatal(err)
		}
		sealed, _ := ml.Store().MemoryBytes()
		if m := ml.derivedMemory(); sealed+m.closed > bound {
			t.Fatalf("at %d records per shard: sealed %d + closed derived %d > bound %d", seq, sealed, m.closed, bound)
		}
	}
	st := ml.Stats().Persist
	if st.DeletedByMemory == 0 || st.RecordsDeleted == 0 || st.DiskBytes != 0 {
		t.Fatalf("stats %+v: the bound dropped nothing, or something reached a disk", st)
	}
	if kept := ml.NumRecords(); kept+st.RecordsDeleted != shards*total {
		t.Fatalf("kept %d + dropped %d records, want %d appended", kept, st.RecordsDeleted, shards*total)
	}
	sameRetention(t, "under the memory bound", ml, s)
}

func TestInMemoryPersistenceOptions(t *testing.T) {
	s, _ := schema.Parse(persistSchema)
	for name, p := range map[string]Persistence{
		"durable without a directory":         {Mode: logstore.Durable},
		"durable_relaxed without a directory": {Mode: logstore.DurableRelaxed},
		"archive age in memory":               {Store: logstore.Options{ArchiveAge: time.Hour}},
		"disk bound in memory":                {Store: logstore.Options{MaxDiskBytes: 1 << 20}},
	} {
		if ml, err := Open(s, Options{Writers: 1}, p); !errors.Is(err, ErrOptions) && !errors.Is(err, logstore.ErrOptions) {
			if ml != nil {
				ml.Close()
			}
			t.Errorf("%s: %v, want an options error", name, err)
		}
	}
	if _, err := Open(nil, Options{Writers: 1}, Persistence{}); !errors.Is(err, ErrOptions) {
		t.Errorf("in memory without a schema: %v, want ErrOptions", err)
	}
}
