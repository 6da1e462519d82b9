package multilog

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confluo-go/confluo/pkg/logstore"
	"github.com/confluo-go/confluo/pkg/schema"
)

// checkDirectory verifies that every shard's published segment directory starts at the
// shard's first kept segment and holds just the segments from there to the tail: nothing for
// the segments retention deleted. Valid after each writer created a segment since the last
// deletion (the writer drops the deleted prefix when it adds a segment).
func checkDirectory(t *testing.T, what string, ml *MultiLog) {
	t.Helper()
	for i, sh := range ml.shards {
		d := sh.segments()
		fk, tail := ml.Store().Shard(i).FirstSeq(), sh.tail.Load()
		segRecords := uint64(sh.segRecords)
		if fk%segRecords != 0 || fk > tail {
			t.Fatalf("%s: shard %d first kept %d, tail %d, segments of %d", what, i, fk, tail, segRecords)
		}
		kept := (tail - fk + segRecords - 1) / segRecords
		if d.base != fk/segRecords || uint64(len(d.segs)) != kept {
			t.Fatalf("%s: shard %d directory %d+%d, want %d+%d (first kept %d, tail %d)", what, i, d.base, len(d.segs), fk/segRecords, kept, fk, tail)
		}
		// The backing array is what the directory costs: a small multiple of the kept window.
		if c := uint64(cap(d.segs)); c > 3*kept+16 {
			t.Fatalf("%s: shard %d directory capacity %d for %d kept segments", what, i, c, kept)
		}
		for k, seg := range d.segs {
			if want := (d.base + uint64(k)) * segRecords; seg.first != want {
				t.Fatalf("%s: shard %d directory slot %d holds segment %d, want %d", what, i, k, seg.first, want)
			}
		}
	}
}

// TestSegmentDirectoryDropsDeleted ingests many segments under age retention: the directory
// keeps only the kept segments (not a descriptor per segment ever written), answers equal a
// model over the kept records, a reader holding an old directory still reads correctly, and a
// reopened MultiLog starts its directory at the first kept segment (no placeholders).
func TestSegmentDirectoryDropsDeleted(t *testing.T) {
	s, _ := schema.Parse(persistSchema)
	const segRecords = 64
	var clock fakeClock
	clock.ns.Store(persistBase)
	p := Persistence{Dir: t.TempDir(), Mode: logstore.DurableRelaxed, Store: logstore.Options{MaintainInterval: -1, RetentionAge: time.Hour, Now: clock.now}}
	ml, err := Open(s, Options{Writers: 2, SegmentBytes: segRecords * s.RecordSize, ManualMonitor: true}, p)
	if err != nil {
		t.Fatal(err)
	}
	addWebLogs(t, ml)

	// An old reader: a snapshot and a directory from before any deletion.
	appendAll(t, ml, s, 0, 5*segRecords)
	oldSnap := ml.Snapshot()
	oldDir := ml.shards[0].segments()

	const (
		perRound = 5 * segRecords  // records appended per writer and round
		keep     = 10 * segRecords // retention keeps about the newest keep records
		rounds   = 20              // 100 segments per shard in all
	)
	next := uint64(5 * segRecords)
	for round := range rounds {
		appendAll(t, ml, s, next, next+perRound)
		next += perRound
		checkDirectory(t, fmt.Sprintf("round %d", round), ml)
		// Records older than the newest keep records are past the age: their segments go.
		clock.ns.Store(persistBase + int64(next-keep)*1000 + int64(time.Hour))
		res, err := ml.Store().Maintain()
		if err != nil {
			t.Fatal(err)
		}
		if round > 0 && res.DeletedByAge == 0 {
			t.Fatalf("round %d: nothing deleted: %+v", round, res)
		}
		if round%5 == 4 {
			sameRetention(t, fmt.Sprintf("round %d", round), ml, s)
		}
	}
	appendAll(t, ml, s, next, next+segRecords)
	next += segRecords
	checkDirectory(t, "after the rounds", ml)
	for i, sh := range ml.shards {
		if n := len(sh.segments().segs); n > keep/segRecords+2 {
			t.Fatalf("shard %d directory holds %d segments after %d written; retention keeps about %d", i, n, next/segRecords, keep/segRecords)
		}
	}
	sameRetention(t, "after the rounds", ml, s)

	// Records below the directory: deleted for every read path, never a crash.
	sh := ml.shards[0]
	d := sh.segments()
	if d.base == 0 {
		t.Fatal("directory still starts at segment 0")
	}
	if _, err := ml.Read(MakeRef(0, 3)); !errors.Is(err, ErrDeleted) {
		t.Fatalf("Read of a deleted record: %v, want ErrDeleted", err)
	}
	if _, err := sh.recordAt(d, 3); !errors.Is(err, ErrDeleted) {
		t.Fatalf("recordAt below the directory: %v, want ErrDeleted", err)
	}
	if rec := sh.record(d, 3); len(rec) != s.RecordSize || schema.Timestamp(rec) != 0 {
		t.Fatalf("record below the directory: %x, want %d zero bytes", rec, s.RecordSize)
	}
	// The old reader still works: its directory reaches the deleted segments (which read as
	// deleted), and its snapshot sees no kept record.
	if oldDir.base != 0 || len(oldDir.segs) != 5 {
		t.Fatalf("old directory changed: %d+%d", oldDir.base, len(oldDir.segs))
	}
	if _, err := sh.recordAt(oldDir, 3); !errors.Is(err, ErrDeleted) {
		t.Fatalf("recordAt through the old directory: %v, want ErrDeleted", err)
	}
	if rec := sh.record(oldDir, 3); schema.Timestamp(rec) != 0 {
		t.Fatalf("record through the old directory: %x, want zeros", rec)
	}
	if n := oldSnap.NumRecords(); n != 0 {
		t.Fatalf("old snapshot counts %d kept records, want 0", n)
	}
	rows, err := oldSnap.QueryNanos("", MinTime, MaxTime, 0)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		t.Fatalf("old snapshot returned deleted record %v", rows.Ref())
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("old snapshot query: %v", err)
	}
	fk := ml.Store().Shard(0).FirstSeq()
	if rec, err := sh.recordAt(d, fk); err != nil || schema.Timestamp(rec) != persistBase+int64(fk)*1000 {
		t.Fatalf("first kept record: %x, %v", rec, err)
	}
	// Reopened: the directory starts at the first kept segment.
	ml = reopen(t, ml, p)
	checkDirectory(t, "reopened", ml)
	sameRetention(t, "reopened", ml, s)
	if _, err := ml.Read(MakeRef(1, fk-1)); !errors.Is(err, ErrDeleted) {
		t.Fatalf("Read of a deleted record after reopen: %v, want ErrDeleted", err)
	}
	for range 3 {
		appendAll(t, ml, s, next, next+perRound)
		next += perRound
		clock.ns.Store(persistBase + int64(next-keep)*1000 + int64(time.Hour))
		if _, err := ml.Store().Maintain(); err != nil {
			t.Fatal(err)
		}
	}
	appendAll(t, ml, s, next, next+segRecords)
	checkDirectory(t, "reopened, more retention", ml)
	sameRetention(t, "reopened, more retention", ml, s)
}

// TestSegmentDirectoryUnderRetention drops directory prefixes while a writer appends and
// readers read: every record read is either the one written or reported deleted, and the
// directory stays bounded.
func TestSegmentDirectoryUnderRetention(t *testing.T) {
	s, _ := schema.Parse(persistSchema)
	const segRecords = 32
	segBytes := segRecords * s.RecordSize
	p := Persistence{Dir: t.TempDir(), Mode: logstore.DurableRelaxed, Store: logstore.Options{MaintainInterval: -1, MaxDiskBytes: int64(12 * (segBytes + 256))}}
	ml, err := Open(s, Options{Writers: 1, SegmentBytes: segBytes, ManualMonitor: true}, p)
	if err != nil {
		t.Fatal(err)
	}
	defer ml.Close()
	if err := ml.AddIndex("dport", 0); err != nil {
		t.Fatal(err)
	}
	const total = 200 * segRecords
	stop := make(chan struct{})
	var passes atomic.Int64 // maintenance passes done
	var bg sync.WaitGroup
	bg.Add(2)
	go func() { // maintainer
		defer bg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := ml.Store().Maintain(); err != nil {
				t.Error(err)
				return
			}
			passes.Add(1)
			time.Sleep(100 * time.Microsecond)
		}
	}()
	go func() { // reader: random refs and indexed queries
		defer bg.Done()
		rng := rand.New(rand.NewPCG(1, 2))
		for {
			select {
			case <-stop:
				return
			default:
			}
			tail := ml.Snapshot().Version().Tails()[0]
			if tail == 0 {
				continue
			}
			seq := rng.Uint64N(tail)
			rec, err := ml.Read(MakeRef(0, seq))
			switch {
			case errors.Is(err, ErrDeleted):
			case err != nil:
				t.Errorf("Read %d: %v", seq, err)
				return
			case schema.Timestamp(rec) != persistBase+int64(seq)*1000:
				t.Errorf("Read %d: timestamp %d", seq, schema.Timestamp(rec))
				return
			}
			rows, err := ml.QueryNanos("dport == 80", MinTime, MaxTime, 0)
			if err != nil {
				t.Error(err)
				return
			}
			for rows.Next() {
				if schema.Timestamp(rows.Record()) != persistBase+int64(rows.Ref().Seq())*1000 {
					t.Errorf("query row %v: timestamp %d", rows.Ref(), schema.Timestamp(rows.Record()))
					return
				}
			}
			if err := rows.Err(); err != nil {
				t.Errorf("query: %v", err)
				return
			}
		}
	}()
	maxLen := 0
	for seq := uint64(0); seq < total; seq += 13 {
		if err := ml.Writer(0).AppendBatch(persistBatch(s, 0, seq, int(min(13, total-seq)))); err != nil {
			t.Fatal(err)
		}
		maxLen = max(maxLen, len(ml.shards[0].segments().segs))
		if seq/(8*segRecords) != (seq+13)/(8*segRecords) {
			// Every 8 segments, let a whole maintenance pass run (the writer would
			// otherwise outrun the maintainer, which is not what this test is about).
			for start := passes.Load(); passes.Load() < start+2 && !t.Failed(); {
				runtime.Gosched()
			}
		}
	}
	close(stop)
	bg.Wait()
	if t.Failed() {
		return
	}
	if ml.Stats().Persist.DeletedByDisk == 0 {
		t.Fatal("nothing deleted")
	}
	// The disk bound keeps about 12-14 segments; the writer adds up to 8 between the passes
	// it waits for; a pass deletes up to 8, which the directory drops at the next new
	// segment. Without dropping, it would hold all 200.
	t.Logf("directory held at most %d segments of %d written", maxLen, total/segRecords)
	if maxLen > 14+8+8+6 {
		t.Fatalf("directory reached %d segments of %d written", maxLen, total/segRecords)
	}
}
