package logstore

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/confluo-go/confluo/pkg/schema"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		os.Exit(crashChild(dir))
	}
	goleak.VerifyTestMain(m)
}

const testSchemaText = "{src: IPV4, dst: IPV4, sport: USHORT, dport: USHORT, proto: UCHAR, len: UINT, flags: UCHAR}"

// baseTS is the timestamp of record 0 (2026-11-22T00:00:00Z); record seq is seq µs later.
const baseTS = int64(1795392000) * 1e9

func testSchema(t testing.TB) *schema.Schema {
	t.Helper()
	s, err := schema.Parse(testSchemaText)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// makeRecord fills rec (one record) deterministically from shard and seq, with the shape of a
// packet header: a few flows, increasing timestamps.
func makeRecord(rec []byte, shard int, seq uint64) {
	binary.LittleEndian.PutUint64(rec[0:], uint64(baseTS+int64(seq)*1000))
	flow := uint32(seq%7) + uint32(shard)*16
	copy(rec[8:], []byte{10, 0, byte(shard), byte(flow)})
	copy(rec[12:], []byte{10, 0, 1, 2})
	binary.LittleEndian.PutUint16(rec[16:], uint16(40000+flow))
	binary.LittleEndian.PutUint16(rec[18:], 5301)
	rec[20] = 6
	binary.LittleEndian.PutUint32(rec[21:], uint32(64+seq%1400))
	rec[25] = byte(seq % 3)
	for i := 26; i < len(rec); i++ {
		rec[i] = byte(seq >> (8 * (i % 8)))
	}
}

func makeBatch(rs, shard int, first uint64, n int) []byte {
	b := make([]byte, n*rs)
	for i := 0; i < n; i++ {
		makeRecord(b[i*rs:(i+1)*rs], shard, first+uint64(i))
	}
	return b
}

func tsOf(seq uint64) int64 { return baseTS + int64(seq)*1000 }

// checkRecords checks that shard holds exactly records [from, to) as makeRecord made them.
func checkRecords(t *testing.T, l *ShardLog, from, to uint64) {
	t.Helper()
	want := make([]byte, l.rs)
	for seq := from; seq < to; seq++ {
		got, err := l.Read(seq)
		if err != nil {
			t.Fatalf("shard %d: read %d: %v", l.id, seq, err)
		}
		makeRecord(want, l.id, seq)
		if !bytes.Equal(got, want) {
			t.Fatalf("shard %d: record %d differs:\n got %x\nwant %x", l.id, seq, got, want)
		}
	}
	if tail := l.Tail(); tail != to {
		t.Fatalf("shard %d: tail %d, want %d", l.id, tail, to)
	}
}

func openT(t *testing.T, dir string, opts Options) *Store {
	t.Helper()
	st, err := Open(dir, testSchema(t), opts)
	if err != nil {
		t.Fatalf("open %s: %v", dir, err)
	}
	return st
}

func closeT(t *testing.T, st *Store) {
	t.Helper()
	if err := st.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
}

// smallSegments gives 50-record segments for the 26-byte test records.
const smallSegments = 50 * 26

func TestModesAppendReadReopen(t *testing.T) {
	for _, mode := range []Mode{InMemory, Durable, DurableRelaxed} {
		t.Run(mode.String(), func(t *testing.T) {
			dir := ""
			if mode != InMemory {
				dir = t.TempDir()
			}
			opts := Options{Mode: mode, Shards: 3, SegmentBytes: smallSegments, MaintainInterval: -1, SyncInterval: time.Millisecond}
			st := openT(t, dir, opts)
			rs := st.Schema().RecordSize
			if rs != 26 {
				t.Fatalf("record size %d, want 26", rs)
			}
			const n = 437
			for shard := 0; shard < 3; shard++ {
				l := st.Shard(shard)
				for seq := uint64(0); seq < n; {
					k := min(n-int(seq), 1+int(seq)%64)
					first, err := l.Append(makeBatch(rs, shard, seq, k))
					if err != nil {
						t.Fatal(err)
					}
					if first != seq {
						t.Fatalf("append returned %d, want %d", first, seq)
					}
					seq += uint64(k)
				}
				checkRecords(t, l, 0, n)
				if mode == Durable && l.DurableTail() != n {
					t.Fatalf("durable tail %d, want %d", l.DurableTail(), n)
				}
				segs := l.Segments()
				if len(segs) != (n+49)/50 {
					t.Fatalf("%d segments, want %d", len(segs), (n+49)/50)
				}
				for i, sg := range segs[:len(segs)-1] {
					if !sg.Sealed || sg.Records != 50 || sg.First != uint64(i*50) {
						t.Fatalf("segment %d: %+v", i, sg)
					}
					if sg.MinTS != tsOf(sg.First) || sg.MaxTS != tsOf(sg.First+49) {
						t.Fatalf("segment %d: timestamps %d..%d", i, sg.MinTS, sg.MaxTS)
					}
				}
			}
			if _, err := st.Shard(0).Append(make([]byte, rs+1)); !errors.Is(err, ErrRecordSize) {
				t.Fatalf("odd-sized batch: %v, want ErrRecordSize", err)
			}
			closeT(t, st)
			if _, err := st.Shard(0).Append(make([]byte, rs)); !errors.Is(err, ErrClosed) {
				t.Fatalf("append after close: %v", err)
			}
			if mode == InMemory {
				return
			}
			st = openT(t, dir, Options{Mode: mode, MaintainInterval: -1})
			defer closeT(t, st)
			if st.Shards() != 3 || st.SegmentRecords() != 50 {
				t.Fatalf("reopened with %d shards, %d records per segment", st.Shards(), st.SegmentRecords())
			}
			rec := st.Recovery()
			if rec.Records != 3*n || rec.TornBatches != 0 || len(rec.Damage) != 0 {
				t.Fatalf("recovery: %+v", rec)
			}
			for shard := 0; shard < 3; shard++ {
				l := st.Shard(shard)
				checkRecords(t, l, 0, n)
				// Appends continue after recovery, into the recovered active segment.
				if _, err := l.Append(makeBatch(rs, shard, n, 20)); err != nil {
					t.Fatal(err)
				}
				checkRecords(t, l, 0, n+20)
			}
		})
	}
}

func TestInMemoryHasNoDirectory(t *testing.T) {
	if _, err := Open(t.TempDir(), testSchema(t), Options{Mode: InMemory}); !errors.Is(err, ErrOptions) {
		t.Fatalf("IN_MEMORY with a directory: %v, want ErrOptions", err)
	}
	if _, err := Open("", testSchema(t), Options{Mode: Durable}); !errors.Is(err, ErrOptions) {
		t.Fatalf("DURABLE without a directory: %v, want ErrOptions", err)
	}
}

func TestParseMode(t *testing.T) {
	for in, want := range map[string]Mode{"in_memory": InMemory, "DURABLE": Durable, "durable-relaxed": DurableRelaxed} {
		if got, err := ParseMode(in); err != nil || got != want {
			t.Errorf("ParseMode(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseMode("fast"); !errors.Is(err, ErrOptions) || !strings.Contains(err.Error(), "fast") {
		t.Errorf("ParseMode(fast): %v", err)
	}
}

// copyDir copies a store directory as it is on disk right now, the way a crash would leave it
// (the page cache survives a process crash).
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestDurableRelaxedFlushesWithinInterval(t *testing.T) {
	dir := t.TempDir()
	st := openT(t, dir, Options{Mode: DurableRelaxed, SegmentBytes: smallSegments, SyncInterval: 2 * time.Millisecond, MaintainInterval: -1})
	rs := st.Schema().RecordSize
	l := st.Shard(0)
	if _, err := l.Append(makeBatch(rs, 0, 0, 173)); err != nil {
		t.Fatal(err)
	}
	// The background flusher, not Append, makes the records durable.
	deadline := time.Now().Add(30 * time.Second)
	for l.DurableTail() < 173 {
		if time.Now().After(deadline) {
			t.Fatalf("background flusher never synced: durable tail %d of 173", l.DurableTail())
		}
		time.Sleep(time.Millisecond)
	}
	// A crash now (files as they are) keeps everything the flusher synced.
	crash := t.TempDir()
	copyDir(t, dir, crash)
	closeT(t, st)
	os.Remove(filepath.Join(crash, "LOCK"))
	st2 := openT(t, crash, Options{Mode: DurableRelaxed, MaintainInterval: -1})
	defer closeT(t, st2)
	checkRecords(t, st2.Shard(0), 0, 173)
}

func TestDirectoryLocked(t *testing.T) {
	dir := t.TempDir()
	st := openT(t, dir, Options{Mode: Durable, MaintainInterval: -1})
	defer closeT(t, st)
	if _, err := Open(dir, testSchema(t), Options{Mode: Durable, MaintainInterval: -1}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
}

func TestManifestDefinitionsAndMismatch(t *testing.T) {
	dir := t.TempDir()
	st := openT(t, dir, Options{Mode: Durable, Shards: 2, MaintainInterval: -1})
	defs := json.RawMessage(`{"indexes":["src"],"filters":{"tcp":"proto == 6"},"triggers":{"big":"SUM(len) > 10"}}`)
	if err := st.SetDefinitions(defs); err != nil {
		t.Fatal(err)
	}
	if err := st.SetDefinitions(json.RawMessage(`{bad`)); !errors.Is(err, ErrManifest) {
		t.Fatalf("bad JSON definitions: %v", err)
	}
	closeT(t, st)

	// The schema comes back from the manifest.
	st, err := Open(dir, nil, Options{Mode: Durable, MaintainInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Definitions(); !bytes.Equal(got, defs) {
		t.Fatalf("definitions %s, want %s", got, defs)
	}
	if !st.Schema().Equal(testSchema(t)) || st.Shards() != 2 {
		t.Fatalf("restored schema %s, %d shards", st.Schema(), st.Shards())
	}
	closeT(t, st)

	other, _ := schema.Parse("{a: INT}")
	if _, err := Open(dir, other, Options{Mode: Durable}); !errors.Is(err, ErrSchema) {
		t.Fatalf("other schema: %v, want ErrSchema", err)
	}
	if _, err := Open(dir, nil, Options{Mode: Durable, Shards: 3}); !errors.Is(err, ErrOptions) {
		t.Fatalf("other shard count: %v, want ErrOptions", err)
	}
	if err := os.WriteFile(filepath.Join(dir, manifestName), []byte(`{"format_version": 1, "schema": `), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, nil, Options{Mode: Durable}); !errors.Is(err, ErrManifest) || !strings.Contains(err.Error(), manifestName) {
		t.Fatalf("truncated manifest: %v, want ErrManifest naming the file", err)
	}
	if err := os.WriteFile(filepath.Join(dir, manifestName), []byte(`{"format_version": 9}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, nil, Options{Mode: Durable}); !errors.Is(err, ErrManifest) || !strings.Contains(err.Error(), "version 9") {
		t.Fatalf("future manifest: %v, want ErrManifest naming the version", err)
	}
}

func TestOptionsValidate(t *testing.T) {
	bad := []Options{
		{Mode: 7},
		{Shards: -1},
		{SegmentBytes: 2 << 30},
		{SyncInterval: -1},
		{RetentionAge: -time.Second},
		{MaxMemoryBytes: -1},
		{CacheSegments: -2},
		{Codec: 9},
		{Mode: InMemory, ArchiveAge: time.Hour},
		{Mode: InMemory, MaxDiskBytes: 1 << 20},
	}
	for _, o := range bad {
		if err := o.Validate(); !errors.Is(err, ErrOptions) {
			t.Errorf("%+v: %v, want ErrOptions", o, err)
		}
	}
	if err := DefaultOptions().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestConcurrentReadersWhileAppending(t *testing.T) {
	for _, mode := range []Mode{InMemory, DurableRelaxed, Durable} {
		t.Run(mode.String(), func(t *testing.T) {
			dir, disk := "", int64(0)
			if mode != InMemory {
				dir, disk = t.TempDir(), 1<<30
			}
			st := openT(t, dir, Options{Mode: mode, Shards: 2, SegmentBytes: smallSegments, SyncInterval: time.Millisecond,
				MaintainInterval: time.Millisecond, MaxMemoryBytes: 4 * smallSegments, MaxDiskBytes: disk})
			defer closeT(t, st)
			rs := st.Schema().RecordSize
			const n = 1500
			var wg sync.WaitGroup
			for shard := 0; shard < 2; shard++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					l := st.Shard(shard)
					for seq := uint64(0); seq < n; seq += 30 {
						if _, err := l.Append(makeBatch(rs, shard, seq, 30)); err != nil {
							t.Error(err)
							return
						}
					}
				}()
			}
			errc := make(chan error, 2)
			for r := 0; r < 2; r++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					want := make([]byte, rs)
					for st.Shard(r).Tail() < n {
						l := st.Shard(r)
						var last uint64
						seen := false
						err := l.Scan(0, 1<<62, func(seq uint64, rec []byte) bool {
							makeRecord(want, r, seq)
							if !bytes.Equal(rec, want) {
								errc <- fmt.Errorf("shard %d: record %d wrong", r, seq)
								return false
							}
							// A gap is allowed only where the memory bound dropped data
							// during the scan (whole oldest segments).
							if seen && seq != last+1 && l.FirstSeq() <= last+1 {
								errc <- fmt.Errorf("shard %d: record %d follows %d, nothing dropped in between", r, seq, last)
								return false
							}
							last, seen = seq, true
							return true
						})
						if err != nil && !errors.Is(err, ErrDropped) {
							errc <- err
							return
						}
					}
				}()
			}
			wg.Wait()
			if _, err := st.Maintain(); err != nil { // settle the memory bound
				t.Fatal(err)
			}
			close(errc)
			for err := range errc {
				t.Fatal(err)
			}
			for shard := 0; shard < 2; shard++ {
				l := st.Shard(shard)
				from := uint64(0)
				if mode == InMemory {
					from = l.FirstSeq()
				}
				checkRecords(t, l, from, n)
			}
		})
	}
}

func TestReserveCommitZeroCopy(t *testing.T) {
	dir := t.TempDir()
	st := openT(t, dir, Options{Mode: Durable, SegmentBytes: smallSegments, MaintainInterval: -1})
	rs := st.Schema().RecordSize
	l := st.Shard(0)
	for seq := uint64(0); seq < 120; {
		first, mem, next, err := l.Reserve()
		if err != nil {
			t.Fatal(err)
		}
		if first+uint64(next) != seq || len(mem) != 50*rs {
			t.Fatalf("reserve: first %d next %d len %d at seq %d", first, next, len(mem), seq)
		}
		k := min(7, 50-next, 120-int(seq))
		for i := 0; i < k; i++ {
			makeRecord(mem[(next+i)*rs:(next+i+1)*rs], 0, seq+uint64(i))
		}
		if err := l.Commit(k); err != nil {
			t.Fatal(err)
		}
		seq += uint64(k)
	}
	if err := l.Commit(51); !errors.Is(err, ErrRecordSize) {
		t.Fatalf("oversized commit: %v", err)
	}
	checkRecords(t, l, 0, 120)
	closeT(t, st)
	st = openT(t, dir, Options{Mode: Durable, MaintainInterval: -1})
	defer closeT(t, st)
	checkRecords(t, st.Shard(0), 0, 120)
}

func TestMetricsRegistered(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	st := openT(t, "", Options{Mode: InMemory, SegmentBytes: smallSegments, MaintainInterval: -1, MaxMemoryBytes: smallSegments, Registerer: reg, Name: "test"})
	defer closeT(t, st)
	if _, err := st.Shard(0).Append(makeBatch(st.Schema().RecordSize, 0, 0, 200)); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Maintain(); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]float64{}
	for _, mf := range mfs {
		m := mf.GetMetric()[0]
		if len(m.GetLabel()) != 1 || m.GetLabel()[0].GetValue() != "test" {
			t.Fatalf("%s: labels %v", mf.GetName(), m.GetLabel())
		}
		values[mf.GetName()] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
	}
	if v, ok := values["confluo_logstore_segments_deleted_memory_total"]; !ok || v != 3 {
		t.Fatalf("segments dropped by memory: %v (%v), want 3", v, ok)
	}
	if v := values["confluo_logstore_sealed_memory_bytes"]; v != smallSegments {
		t.Fatalf("sealed memory gauge %v, want %d", v, smallSegments)
	}
	if _, err := Open("", testSchema(t), Options{Mode: InMemory, Registerer: reg, Name: "test"}); !errors.Is(err, ErrOptions) {
		t.Fatalf("duplicate registration: %v, want ErrOptions", err)
	}
}

// TestDurableRelaxedLossStaysBounded appends to tiny segments (each costs a file creation and
// two syncs) faster than a background flusher can sync them, and checks after every Append
// that every record acknowledged more than twice SyncInterval ago is synced (DurableTail):
// when the flusher falls behind, appends wait for the disk rather than let the records a
// crash would lose grow without bound.
func TestDurableRelaxedLossStaysBounded(t *testing.T) {
	const interval = 5 * time.Millisecond
	const slack = 200 * time.Millisecond // scheduling on a loaded machine
	st := openT(t, t.TempDir(), Options{Mode: DurableRelaxed, SegmentBytes: 16 * 26, SyncInterval: interval, MaintainInterval: -1})
	defer closeT(t, st)
	l := st.Shard(0)
	type ack struct {
		at   time.Time
		tail uint64
	}
	var acks []ack
	var worst time.Duration
	start := time.Now()
	for time.Since(start) < 400*time.Millisecond {
		tail := l.Tail()
		if _, err := l.Append(makeBatch(26, 0, tail, 8)); err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		acks = append(acks, ack{now, tail + 8})
		// The oldest acknowledgement not yet synced bounds what a crash now would lose.
		durable := l.DurableTail()
		for _, a := range acks {
			if a.tail > durable {
				worst = max(worst, now.Sub(a.at))
				break
			}
		}
		for len(acks) > 0 && acks[0].tail <= durable {
			acks = acks[1:]
		}
		if worst > 2*interval+slack {
			t.Fatalf("after %d records, records acknowledged %v ago are not synced yet (durable tail %d)", l.Tail(), worst, durable)
		}
	}
	t.Logf("%d records; oldest unsynced acknowledgement at most %v old", l.Tail(), worst)
}
