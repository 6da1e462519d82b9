package multilog

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confluo-go/confluo/pkg/logstore"
	"github.com/confluo-go/confluo/pkg/schema"
)

// retentionAnswers is what a set of queries returns, without record references (a model that
// never held the deleted records numbers its records differently).
func retentionAnswers(t *testing.T, ml *MultiLog) []string {
	t.Helper()
	var out []string
	ranges := [][2]int64{{MinTime, MaxTime}, {persistBase + 100_000, persistBase + 700_000}, {persistBase + 900_000, persistBase + 1_500_000}}
	for _, q := range []string{"", "dport == 80", "dport == 443 && len > 500", "src in 10.0.1.0/24", "len < 300"} {
		for _, r := range ranges {
			n, err := ml.Snapshot().CountNanos(q, r[0], r[1])
			if err != nil {
				t.Fatalf("count %q: %v", q, err)
			}
			out = append(out, fmt.Sprintf("count %q %v: %d", q, r, n))
			rows, err := ml.QueryNanos(q, r[0], r[1], 0)
			if err != nil {
				t.Fatal(err)
			}
			k := 0
			for rows.Next() {
				if k < 50 || k%97 == 0 {
					out = append(out, fmt.Sprintf("row %q %d: %x", q, k, rows.Record()))
				}
				k++
			}
			if err := rows.Err(); err != nil {
				t.Fatalf("query %q: %v", q, err)
			}
			out = append(out, fmt.Sprintf("rows %q %v: %d", q, r, k))
		}
	}
	for _, r := range ranges {
		rows, err := ml.QueryFilter("web", r[0], r[1], "len > 400", 0)
		if err != nil {
			t.Fatal(err)
		}
		k := 0
		for rows.Next() {
			if k < 20 {
				out = append(out, fmt.Sprintf("filter row %d: %x", k, rows.Record()))
			}
			k++
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("filter rows %v: %d", r, k))
	}
	if slices.Contains(ml.Aggregates(), "web_bytes") {
		// Whole ranges, ranges cutting buckets, and ranges around the oldest kept records.
		aggRanges := append(ranges, [2]int64{persistBase + 440_000, persistBase + 460_000}, [2]int64{persistBase + 447_500, persistBase + 448_500},
			[2]int64{persistBase + 1_000_000, persistBase + 1_100_001}, [2]int64{MinTime, persistBase + 600_000})
		for _, r := range aggRanges {
			v, err := ml.GetAggregate("web_bytes", r[0], r[1])
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, fmt.Sprintf("aggregate %v: %v (%d records)", r, v, v.Count))
		}
	}
	out = append(out, fmt.Sprintf("records: %d", ml.NumRecords()))
	return out
}

// retentionModel is an in-memory MultiLog holding only the records of writer w with sequence
// numbers in [first[w], tail[w]), with ml's filter bucket and, if ml has it, the aggregate.
func retentionModel(t *testing.T, ml *MultiLog, s *schema.Schema, first, tail []uint64) *MultiLog {
	t.Helper()
	m, err := New(s, Options{Writers: len(first), SegmentBytes: 64 * s.RecordSize, ManualMonitor: true, FilterBucket: ml.Options().FilterBucket})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.AddIndex("dport", 0); err != nil {
		t.Fatal(err)
	}
	if err := m.AddFilter("web", "dport == 80"); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(ml.Aggregates(), "web_bytes") {
		if err := m.AddAggregate("web_bytes", "web", "SUM(len)"); err != nil {
			t.Fatal(err)
		}
	}
	for w := range first {
		if first[w] < tail[w] {
			if err := m.Writer(w).AppendBatch(persistBatch(s, w, first[w], int(tail[w]-first[w]))); err != nil {
				t.Fatal(err)
			}
		}
	}
	return m
}

func firstKept(ml *MultiLog) (first, tail []uint64) {
	for i := range ml.Writers() {
		first = append(first, ml.Store().Shard(i).FirstSeq())
	}
	return first, ml.Snapshot().Version().Tails()
}

func sameRetention(t *testing.T, what string, ml *MultiLog, s *schema.Schema) {
	t.Helper()
	first, tail := firstKept(ml)
	got, want := retentionAnswers(t, ml), retentionAnswers(t, retentionModel(t, ml, s, first, tail))
	if !reflect.DeepEqual(got, want) {
		for i := range min(len(got), len(want)) {
			if got[i] != want[i] {
				t.Fatalf("%s (first kept %v, tails %v): answer %d differs:\n got %s\nwant %s", what, first, tail, i, got[i], want[i])
			}
		}
		t.Fatalf("%s: %d answers, want %d", what, len(got), len(want))
	}
}

// fakeClock is a settable clock for the store's ages.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() time.Time { return time.Unix(0, c.ns.Load()) }

func TestPersistRetentionByAge(t *testing.T) {
	s, _ := schema.Parse(persistSchema)
	dir := t.TempDir()
	var clock fakeClock
	clock.ns.Store(persistBase)
	opts := Options{Writers: 2, SegmentBytes: 64 * s.RecordSize, ManualMonitor: true}
	p := Persistence{Dir: dir, Mode: logstore.Durable, Store: logstore.Options{MaintainInterval: -1, RetentionAge: time.Hour, Now: clock.now}}
	ml, err := Open(s, opts, p)
	if err != nil {
		t.Fatal(err)
	}
	addWebLogs(t, ml)
	appendAll(t, ml, s, 0, 1000)
	sumBefore, err := ml.GetAggregate("web_bytes", MinTime, MaxTime)
	if err != nil {
		t.Fatal(err)
	}
	// Records up to seq 499 are older than an hour: segments 0..6 (seq < 448) are deleted
	// whole; segment 7 (448..511) holds newer records and stays.
	clock.ns.Store(persistBase + 500_000 + int64(time.Hour))
	res, err := ml.Store().Maintain()
	if err != nil {
		t.Fatal(err)
	}
	if res.DeletedByAge != 14 || res.RecordsDeleted != 14*64 {
		t.Fatalf("maintain: %+v, want 14 segments of 64 records deleted", res)
	}
	if st := ml.Stats().Persist; st.DeletedByAge != 14 || st.RecordsDeleted != 14*64 {
		t.Fatalf("stats: %+v", st)
	}
	for w := range 2 {
		if f := ml.Store().Shard(w).FirstSeq(); f != 448 {
			t.Fatalf("shard %d first kept %d, want 448", w, f)
		}
	}
	sameRetention(t, "after retention", ml, s)
	if _, err := ml.Read(MakeRef(1, 10)); !errors.Is(err, ErrDeleted) {
		t.Fatalf("read of a deleted record: %v, want ErrDeleted", err)
	}
	if rec, err := ml.Read(MakeRef(1, 448)); err != nil || schema.Timestamp(rec) != persistBase+448_000+1 {
		t.Fatalf("read of the first kept record: %v", err)
	}
	// Aggregates cover the kept records only (sameRetention compared them with the model).
	if sum, err := ml.GetAggregate("web_bytes", MinTime, MaxTime); err != nil || sum.Count >= sumBefore.Count {
		t.Fatalf("aggregate after retention: %v over %d records (%v), before %v over %d", sum, sum.Count, err, sumBefore, sumBefore.Count)
	}
	if n := ml.NumRecords(); n != 2*(1000-448) {
		t.Fatalf("NumRecords %d after retention, want %d kept", n, 2*(1000-448))
	}
	if n := ml.Snapshot().Version().NumRecords(); n != 2000 {
		t.Fatalf("Version().NumRecords() %d, want 2000 appended", n)
	}
	// An index added with backfill after the deletion covers the kept records only.
	if err := ml.AddIndex("len", 100, Backfill()); err != nil {
		t.Fatal(err)
	}
	if err := ml.AddFilter("low", "len < 300", FilterBackfill()); err != nil {
		t.Fatal(err)
	}
	sameRetention(t, "with backfilled index", ml, s)
	n, err := ml.Snapshot().CountFilter("low", MinTime, MaxTime)
	if want, _ := ml.Snapshot().CountNanos("len < 300", MinTime, MaxTime); err != nil || n != want {
		t.Fatalf("backfilled filter: %d (%v), want %d", n, err, want)
	}
	appendAll(t, ml, s, 1000, 1300)
	sameRetention(t, "after more appends", ml, s)
	// Reopened: the shards resume after the deleted records; same answers; appends go on.
	ml = reopen(t, ml, p)
	if _, err := ml.Read(MakeRef(0, 447)); !errors.Is(err, ErrDeleted) {
		t.Fatalf("read of a deleted record after reopen: %v", err)
	}
	sameRetention(t, "reopened", ml, s)
	appendAll(t, ml, s, 1300, 1400)
	clock.ns.Store(persistBase + 1_200_000 + int64(time.Hour))
	if _, err := ml.Store().Maintain(); err != nil {
		t.Fatal(err)
	}
	sameRetention(t, "reopened, more retention", ml, s)
}

func TestPersistRetentionByDisk(t *testing.T) {
	s, _ := schema.Parse(persistSchema)
	dir := t.TempDir()
	segBytes := 64 * s.RecordSize
	// Room for about 6 segment files (each a header plus frames) over both shards.
	limit := int64(6 * (segBytes + 256))
	p := Persistence{Dir: dir, Mode: logstore.DurableRelaxed, Store: logstore.Options{MaintainInterval: -1, MaxDiskBytes: limit}}
	ml, err := Open(s, Options{Writers: 2, SegmentBytes: segBytes, ManualMonitor: true}, p)
	if err != nil {
		t.Fatal(err)
	}
	defer ml.Close()
	if err := ml.AddIndex("dport", 0); err != nil {
		t.Fatal(err)
	}
	if err := ml.AddFilter("web", "dport == 80"); err != nil {
		t.Fatal(err)
	}
	appendAll(t, ml, s, 0, 1000)
	if _, err := ml.Store().Maintain(); err != nil {
		t.Fatal(err)
	}
	st := ml.Stats().Persist
	if st.DeletedByDisk == 0 || st.DiskBytes > limit {
		t.Fatalf("stats %+v: want deletions and disk bytes ≤ %d", st, limit)
	}
	first, _ := firstKept(ml)
	if first[0] == 0 || first[1] == 0 {
		t.Fatalf("first kept %v: both shards should have lost data", first)
	}
	sameRetention(t, "after disk retention", ml, s)
}

// TestPersistRetentionUnderIngest runs retention (age and disk) while writers append and
// readers query; at the end the answers equal a model holding the kept records.
func TestPersistRetentionUnderIngest(t *testing.T) {
	s, _ := schema.Parse(persistSchema)
	dir := t.TempDir()
	var clock fakeClock
	clock.ns.Store(persistBase)
	segBytes := 64 * s.RecordSize
	p := Persistence{Dir: dir, Mode: logstore.Durable, Store: logstore.Options{
		MaintainInterval: -1, RetentionAge: time.Hour, MaxDiskBytes: int64(40 * (segBytes + 256)), MaxMemoryBytes: int64(8 * segBytes), Now: clock.now,
	}}
	ml, err := Open(s, Options{Writers: 2, SegmentBytes: segBytes, ManualMonitor: true}, p)
	if err != nil {
		t.Fatal(err)
	}
	defer ml.Close()
	if err := ml.AddIndex("dport", 0); err != nil {
		t.Fatal(err)
	}
	if err := ml.AddFilter("web", "dport == 80"); err != nil {
		t.Fatal(err)
	}
	const total = 6000
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := uint64(0); seq < total; seq += 37 {
				n := int(min(37, total-seq))
				if err := ml.Writer(w).AppendBatch(persistBatch(s, w, seq, n)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	stop := make(chan struct{})
	var bg sync.WaitGroup
	bg.Add(2)
	go func() { // maintainer: the clock moves with the data
		defer bg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			tails := ml.Snapshot().Version().Tails()
			clock.ns.Store(persistBase + int64(min(tails[0], tails[1]))*1000/2 + int64(time.Hour))
			if _, err := ml.Store().Maintain(); err != nil {
				t.Error(err)
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	go func() { // reader: queries never fail and never return deleted or zero records
		defer bg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			for _, q := range []string{"", "dport == 80"} {
				rows, err := ml.QueryNanos(q, MinTime, MaxTime, 0)
				if err != nil {
					t.Error(err)
					return
				}
				for rows.Next() {
					if schema.Timestamp(rows.Record()) < persistBase {
						t.Errorf("query %q returned a zero record at %v", q, rows.Ref())
						return
					}
				}
				if err := rows.Err(); err != nil {
					t.Errorf("query %q: %v", q, err)
					return
				}
			}
			if _, err := ml.Snapshot().CountNanos("dport == 443", MinTime, MaxTime); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	wg.Wait()
	close(stop)
	bg.Wait()
	if t.Failed() {
		return
	}
	if _, err := ml.Store().Maintain(); err != nil {
		t.Fatal(err)
	}
	st := ml.Stats().Persist
	if st.DeletedByAge+st.DeletedByDisk == 0 {
		t.Fatalf("nothing deleted: %+v", st)
	}
	sameRetention(t, "after concurrent retention", ml, s)
}

// TestPersistReadFailure damages archive files under a running MultiLog: queries that reach
// them stop with ErrRead naming the file instead of returning zero records.
func TestPersistReadFailure(t *testing.T) {
	s, _ := schema.Parse(persistSchema)
	dir := t.TempDir()
	segBytes := 64 * s.RecordSize
	p := Persistence{Dir: dir, Mode: logstore.Durable, Store: logstore.Options{MaintainInterval: -1, MaxMemoryBytes: int64(2 * segBytes), CacheSegments: 1}}
	ml, err := Open(s, Options{Writers: 1, SegmentBytes: segBytes, ManualMonitor: true}, p)
	if err != nil {
		t.Fatal(err)
	}
	defer ml.Close()
	if err := ml.AddIndex("dport", 0); err != nil {
		t.Fatal(err)
	}
	appendAll(t, ml, s, 0, 1000)
	if _, err := ml.Store().Maintain(); err != nil {
		t.Fatal(err)
	}
	archives, _ := filepath.Glob(filepath.Join(dir, "shard-0000", "*.zst"))
	if len(archives) < 4 {
		t.Fatalf("%d archive files, want the memory bound to archive most segments", len(archives))
	}
	for _, a := range archives {
		b, err := os.ReadFile(a)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 0xff
		if err := os.WriteFile(a, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, q := range []string{"", "dport == 22"} {
		rows, err := ml.QueryNanos(q, MinTime, MaxTime, 0)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			if schema.Timestamp(rows.Record()) < persistBase {
				t.Fatalf("%q: a zero record was returned", q)
			}
		}
		if err := rows.Err(); !errors.Is(err, ErrRead) || !strings.Contains(err.Error(), ".zst") {
			t.Fatalf("%q: rows.Err() = %v, want ErrRead naming the archive file", q, err)
		}
		if _, err := ml.Snapshot().CountNanos(q, MinTime, MaxTime); !errors.Is(err, ErrRead) {
			t.Fatalf("%q: count: %v, want ErrRead", q, err)
		}
	}
	if _, err := ml.Read(MakeRef(0, 5)); !errors.Is(err, ErrRead) {
		t.Fatalf("read: %v, want ErrRead", err)
	}
	if ml.Stats().Persist.ReadErrors == 0 {
		t.Fatal("read errors not counted")
	}
	// The newest records, still in memory, stay readable.
	if n, err := ml.Snapshot().CountNanos("", persistBase+990_000, MaxTime); err != nil || n != 10 {
		t.Fatalf("count of the newest records: %d, %v", n, err)
	}
}

// addWebLogs adds the derived logs the persistence tests check: an index on dport, the filter
// "web" (dport == 80) and the aggregate "web_bytes" (SUM(len) over it).
func addWebLogs(t *testing.T, ml *MultiLog) {
	t.Helper()
	if err := ml.AddIndex("dport", 0); err != nil {
		t.Fatal(err)
	}
	if err := ml.AddFilter("web", "dport == 80"); err != nil {
		t.Fatal(err)
	}
	if err := ml.AddAggregate("web_bytes", "web", "SUM(len)"); err != nil {
		t.Fatal(err)
	}
}
