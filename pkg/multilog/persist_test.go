package multilog

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/confluo-go/confluo/pkg/logstore"
	"github.com/confluo-go/confluo/pkg/schema"
)

const persistSchema = "{src: IPV4, dport: USHORT, len: UINT}"

// persistBase is the timestamp of record 0 in these tests; record i is i µs later.
const persistBase = int64(1795392000) * 1e9

// persistBatch returns n records of writer w starting at sequence first.
func persistBatch(s *schema.Schema, w int, first uint64, n int) []byte {
	rs := s.RecordSize
	out := make([]byte, n*rs)
	for i := 0; i < n; i++ {
		seq := first + uint64(i)
		rec := out[i*rs : (i+1)*rs]
		binary.LittleEndian.PutUint64(rec, uint64(persistBase+int64(seq)*1000+int64(w)))
		copy(rec[8:], []byte{10, 0, byte(w), byte(seq % 5)})
		ports := []uint16{80, 443, 22, 80, 53}
		binary.LittleEndian.PutUint16(rec[12:], ports[seq%5])
		binary.LittleEndian.PutUint32(rec[14:], uint32(100+seq%900))
	}
	return out
}

// answers is what a set of queries returns, to compare a MultiLog before and after a restart
// or archival.
type answers struct {
	Records   uint64
	Indexes   []string
	Filters   []string
	Aggs      []string
	Triggers  []string
	Counts    []uint64
	Sums      []string
	Rows      []string
	Snapshots []uint64
}

func collect(t *testing.T, ml *MultiLog) answers {
	t.Helper()
	a := answers{Records: ml.NumRecords(), Indexes: ml.Indexes(), Filters: ml.Filters(), Aggs: ml.Aggregates(), Triggers: ml.Triggers()}
	a.Snapshots = ml.Snapshot().Version().Tails()
	ranges := [][2]int64{{0, 0}, {persistBase + 100_000, persistBase + 300_000}, {persistBase + 1_500_000, persistBase + 1_800_000}}
	for _, q := range []string{"", "dport == 80", "dport == 443 && len > 500", "src in 10.0.1.0/24"} {
		for _, r := range ranges {
			from, to := time.Time{}, time.Time{}
			if r[0] != 0 {
				from, to = time.Unix(0, r[0]), time.Unix(0, r[1])
			}
			n, err := ml.Count(q, from, to)
			if err != nil {
				t.Fatal(err)
			}
			a.Counts = append(a.Counts, n)
		}
	}
	for _, r := range ranges {
		to := r[1]
		if to == 0 {
			to = 1 << 62
		}
		v, err := ml.GetAggregate("web_bytes", r[0], to)
		if err != nil {
			t.Fatal(err)
		}
		a.Sums = append(a.Sums, v.String())
	}
	rows, err := ml.Query("dport == 443", time.Unix(0, persistBase+40_000), time.Unix(0, persistBase+90_000), 0)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		a.Rows = append(a.Rows, fmt.Sprintf("%v %x", rows.Ref(), rows.Record()))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return a
}

func sameAnswers(t *testing.T, what string, got, want answers) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s: answers differ:\n got %+v\nwant %+v", what, got, want)
	}
}

// reopen closes ml and opens its directory again (schema and options from the directory,
// manual monitor); the new MultiLog is closed when the test ends.
func reopen(t *testing.T, ml *MultiLog, p Persistence) *MultiLog {
	t.Helper()
	if err := ml.Close(); err != nil {
		t.Fatal(err)
	}
	ml, err := Open(nil, Options{ManualMonitor: true}, p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ml.Close() })
	return ml
}

func appendAll(t *testing.T, ml *MultiLog, s *schema.Schema, from, to uint64) {
	t.Helper()
	for w := 0; w < ml.Writers(); w++ {
		for seq := from; seq < to; seq += 37 {
			n := int(min(37, to-seq))
			if err := ml.Writer(w).AppendBatch(persistBatch(s, w, seq, n)); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestPersistRestoresDefinitionsAndData(t *testing.T) {
	for _, mode := range []logstore.Mode{logstore.Durable, logstore.DurableRelaxed} {
		t.Run(mode.String(), func(t *testing.T) {
			s, err := schema.Parse(persistSchema)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			opts := Options{Writers: 2, SegmentBytes: 64 * s.RecordSize, ManualMonitor: true}
			p := Persistence{Dir: dir, Mode: mode, Store: logstore.Options{MaintainInterval: -1}}
			ml, err := Open(s, opts, p)
			if err != nil {
				t.Fatal(err)
			}
			for _, step := range []error{
				ml.AddIndex("dport", 0),
				ml.AddIndex("len", 100),
				ml.RemoveIndex("LEN"),
				ml.AddFilter("web", "dport == 80"),
				ml.AddFilter("dns", "dport == 53"),
				ml.AddAggregate("web_bytes", "web", "SUM(len)"),
				ml.AddAggregate("dns_max", "dns", "MAX(len)"),
				ml.RemoveAggregate("dns_max"),
				ml.RemoveFilter("dns"),
				ml.InstallTrigger("burst", "web_bytes >= 100000", time.Millisecond),
				ml.InstallTrigger("gone", "web_bytes >= 1", time.Millisecond),
				ml.RemoveTrigger("gone"),
			} {
				if step != nil {
					t.Fatal(step)
				}
			}
			appendAll(t, ml, s, 0, 1000)
			before := collect(t, ml)
			if before.Counts[0] != 2000 || len(before.Rows) == 0 {
				t.Fatalf("unexpected answers %+v", before)
			}
			if err := ml.Close(); err != nil {
				t.Fatal(err)
			}
			if err := ml.Writer(0).AppendBatch(persistBatch(s, 0, 1000, 1)); !errors.Is(err, logstore.ErrClosed) {
				t.Fatalf("append after Close: %v, want logstore.ErrClosed", err)
			}

			// Reopen with nothing but the directory.
			ml, err = Open(nil, Options{ManualMonitor: true}, Persistence{Dir: dir, Mode: mode, Store: logstore.Options{MaintainInterval: -1}})
			if err != nil {
				t.Fatal(err)
			}
			if ml.Writers() != 2 || !ml.Schema().Equal(s) {
				t.Fatalf("reopened with %d writers, schema %s", ml.Writers(), ml.Schema())
			}
			sameAnswers(t, "reopened", collect(t, ml), before)
			// Appends continue where they stopped, and persist too.
			appendAll(t, ml, s, 1000, 1500)
			more := collect(t, ml)
			if more.Counts[0] != 3000 {
				t.Fatalf("after more appends: %d records", more.Counts[0])
			}
			if err := ml.Close(); err != nil {
				t.Fatal(err)
			}
			ml, err = Open(nil, Options{ManualMonitor: true}, Persistence{Dir: dir, Mode: mode, Store: logstore.Options{MaintainInterval: -1}})
			if err != nil {
				t.Fatal(err)
			}
			defer ml.Close()
			sameAnswers(t, "reopened twice", collect(t, ml), more)
		})
	}
}

func TestPersistArchiveEquivalence(t *testing.T) {
	s, _ := schema.Parse(persistSchema)
	dir := t.TempDir()
	now := time.Unix(0, persistBase).Add(time.Hour)
	p := Persistence{Dir: dir, Store: logstore.Options{MaintainInterval: -1, ArchiveAge: time.Minute, Now: func() time.Time { return now }}}
	ml, err := Open(s, Options{Writers: 2, SegmentBytes: 64 * s.RecordSize, ManualMonitor: true}, p)
	if err != nil {
		t.Fatal(err)
	}
	addWebLogs(t, ml)
	appendAll(t, ml, s, 0, 2000)
	before := collect(t, ml)
	res, err := ml.Store().Maintain()
	if err != nil {
		t.Fatal(err)
	}
	if res.Archived != 2*(2000/64) {
		t.Fatalf("archived %d segments, want every sealed one (%d)", res.Archived, 2*(2000/64))
	}
	sameAnswers(t, "after archival", collect(t, ml), before)
	// Reopened, the data comes back from the archives.
	ml = reopen(t, ml, p)
	if r := ml.Store().Recovery(); r.Archives != res.Archived {
		t.Fatalf("recovery found %d archives, want %d", r.Archives, res.Archived)
	}
	sameAnswers(t, "reopened from archives", collect(t, ml), before)
}

func TestPersistMemoryBound(t *testing.T) {
	s, _ := schema.Parse(persistSchema)
	segBytes := 64 * s.RecordSize
	bound := int64(4 * segBytes)
	dir := t.TempDir()
	p := Persistence{Dir: dir, Store: logstore.Options{MaintainInterval: -1, MaxMemoryBytes: bound, CacheSegments: 2}}
	ml, err := Open(s, Options{Writers: 2, SegmentBytes: segBytes, ManualMonitor: true}, p)
	if err != nil {
		t.Fatal(err)
	}
	addWebLogs(t, ml)
	appendAll(t, ml, s, 0, 2000)
	before := collect(t, ml)
	if _, err := ml.Store().Maintain(); err != nil {
		t.Fatal(err)
	}
	// Sealed segments in memory are under the bound; the active segment of each writer is the
	// fixed overhead.
	if got, max := ml.MemoryBytes(), uint64(bound)+2*uint64(segBytes); got > max {
		t.Fatalf("segment memory %d over the bound %d + 2 active segments", got, bound)
	}
	if sealed, _ := ml.Store().MemoryBytes(); sealed > bound {
		t.Fatalf("store says %d bytes of sealed segments in memory, bound %d", sealed, bound)
	}
	if s := ml.Store().Stats(); s.SegmentsArchived == 0 || s.SegmentsReleased == 0 {
		t.Fatalf("store stats %+v", s)
	}
	sameAnswers(t, "under the memory bound", collect(t, ml), before)
	if err := ml.Close(); err != nil {
		t.Fatal(err)
	}
	// Still readable after Close, archived segments included.
	sameAnswers(t, "closed", collect(t, ml), before)
	if n := ml.PersistReadErrors(); n != 0 {
		t.Fatalf("%d read errors", n)
	}
	ml, err = Open(nil, Options{ManualMonitor: true}, p)
	if err != nil {
		t.Fatal(err)
	}
	defer ml.Close()
	if got, max := ml.MemoryBytes(), uint64(bound)+2*uint64(segBytes); got > max {
		t.Fatalf("reopened: segment memory %d over the bound", got)
	}
	sameAnswers(t, "reopened under the memory bound", collect(t, ml), before)
	appendAll(t, ml, s, 2000, 2100)
	if _, err := ml.Store().Maintain(); err != nil {
		t.Fatal(err)
	}
	if n, _ := ml.Count("", time.Time{}, time.Time{}); n != 4200 {
		t.Fatalf("%d records after more appends, want 4200", n)
	}
}

// TestPersistMemoryBoundUnderIngest appends from two writers while the background maintainer
// archives and releases segments and readers query, then compares every answer with an
// in-memory MultiLog fed the same records.
func TestPersistMemoryBoundUnderIngest(t *testing.T) {
	s, _ := schema.Parse(persistSchema)
	segBytes := 64 * s.RecordSize
	bound := int64(3 * segBytes)
	opts := Options{Writers: 2, SegmentBytes: segBytes, ManualMonitor: true}
	p := Persistence{Dir: t.TempDir(), Mode: logstore.DurableRelaxed,
		Store: logstore.Options{MaintainInterval: time.Millisecond, SyncInterval: time.Millisecond, MaxMemoryBytes: bound}}
	ml, err := Open(s, opts, p)
	if err != nil {
		t.Fatal(err)
	}
	defer ml.Close()
	mem, err := New(s, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	for _, m := range []*MultiLog{ml, mem} {
		if err := m.AddIndex("dport", 0); err != nil {
			t.Fatal(err)
		}
		if err := m.AddFilter("web", "dport == 80"); err != nil {
			t.Fatal(err)
		}
		if err := m.AddAggregate("web_bytes", "web", "SUM(len)"); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan struct{})
	readerDone := make(chan error)
	go func() {
		for {
			select {
			case <-done:
				readerDone <- nil
				return
			default:
			}
			if _, err := ml.Count("dport == 443", time.Time{}, time.Time{}); err != nil {
				readerDone <- err
				return
			}
		}
	}()
	errs := make(chan error, 2)
	for w := 0; w < 2; w++ {
		go func() {
			for seq := uint64(0); seq < 3000; seq += 50 {
				if err := ml.Writer(w).AppendBatch(persistBatch(s, w, seq, 50)); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	if err := <-readerDone; err != nil {
		t.Fatal(err)
	}
	appendAll(t, mem, s, 0, 3000)
	if _, err := ml.Store().Maintain(); err != nil {
		t.Fatal(err)
	}
	if got, max := ml.MemoryBytes(), uint64(bound)+2*uint64(segBytes); got > max {
		t.Fatalf("segment memory %d over the bound %d + 2 active segments", got, bound)
	}
	if ml.Store().Stats().SegmentsReleased == 0 {
		t.Fatal("nothing was released")
	}
	sameAnswers(t, "bounded vs in-memory", collect(t, ml), collect(t, mem))
}

func TestPersistOptionsAndDamage(t *testing.T) {
	s, _ := schema.Parse(persistSchema)
	if _, err := Open(s, Options{}, Persistence{Mode: logstore.Durable}); !errors.Is(err, ErrOptions) {
		t.Fatalf("durable without a directory: %v", err)
	}
	if _, err := Open(s, Options{}, Persistence{Dir: t.TempDir(), Store: logstore.Options{OnDelete: func(int, uint64) {}}}); !errors.Is(err, ErrOptions) {
		t.Fatalf("own OnDelete: %v, want ErrOptions", err)
	}
	dir := t.TempDir()
	ml, err := Open(s, Options{Writers: 1, SegmentBytes: 64 * s.RecordSize, ManualMonitor: true}, Persistence{Dir: dir, Store: logstore.Options{MaintainInterval: -1}})
	if err != nil {
		t.Fatal(err)
	}
	appendAll(t, ml, s, 0, 200)
	ml.Close()
	if _, err := Open(s, Options{Writers: 3}, Persistence{Dir: dir}); err == nil {
		t.Fatal("reopened with another writer count")
	}
	other, _ := schema.Parse("{a: INT}")
	if _, err := Open(other, Options{}, Persistence{Dir: dir}); !errors.Is(err, logstore.ErrSchema) {
		t.Fatalf("other schema: %v", err)
	}
	// Damage in a sealed segment: reported, the MultiLog opens, the rest is readable.
	path := dir + "/shard-0000/seg-00000000000000000064.log"
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-3] ^= 0xff
	os.WriteFile(path, b, 0o644)
	ml, err = Open(nil, Options{ManualMonitor: true}, Persistence{Dir: dir, Store: logstore.Options{MaintainInterval: -1}})
	var de *logstore.DamageError
	if !errors.As(err, &de) || ml == nil {
		t.Fatalf("open damaged: %v", err)
	}
	if de.Damage[0].File != path {
		t.Fatalf("damage %v", de)
	}
	if n := ml.NumRecords(); n != 200 {
		t.Fatalf("%d records, want 200 (lost ones included)", n)
	}
	lost := de.Damage[0].FirstSeq
	// Queries that reach the lost records fail, naming the file; nothing reads as zeros.
	if _, err := ml.Count("dport == 80", time.Time{}, time.Time{}); !errors.Is(err, ErrLost) || !strings.Contains(err.Error(), path) {
		t.Fatalf("count over lost records: %v, want ErrLost naming %s", err, path)
	}
	rows, err := ml.Query("", time.Time{}, time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for rows.Next() {
		if schema.Timestamp(rows.Record()) == 0 {
			t.Fatal("a lost record was returned as zeros")
		}
		got++
	}
	if !errors.Is(rows.Err(), ErrLost) || !strings.Contains(rows.Err().Error(), path) || got >= 200 {
		t.Fatalf("query over lost records: %d rows, err %v", got, rows.Err())
	}
	if _, err := ml.Read(MakeRef(0, lost)); !errors.Is(err, ErrLost) {
		t.Fatalf("read of a lost record: %v", err)
	}
	// A query whose time range misses the damaged segment works.
	n, err := ml.Count("dport == 80", time.Unix(0, persistBase+128_000), time.Time{})
	want80 := uint64(0)
	for seq := 128; seq < 200; seq++ {
		if seq%5 == 0 || seq%5 == 3 {
			want80++
		}
	}
	if err != nil || n != want80 {
		t.Fatalf("count after the damaged segment: %d, %v", n, err)
	}
	ml.Close()
	// A whole segment file missing: reported, the rest restored.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	ml, err = Open(nil, Options{ManualMonitor: true}, Persistence{Dir: dir, Store: logstore.Options{MaintainInterval: -1}})
	if !errors.As(err, &de) || ml == nil || de.RecordsLost != 64 {
		t.Fatalf("open with a missing segment: %v", err)
	}
	defer ml.Close()
	if n := ml.NumRecords(); n != 200 {
		t.Fatalf("%d records, want 200", n)
	}
	want := persistBatch(s, 0, 150, 1)
	if rec, err := ml.Read(MakeRef(0, 150)); err != nil || !bytes.Equal(rec, want) {
		t.Fatalf("record after the missing segment: %v", err)
	}
}

const crashChildEnv = "CONFLUO_MULTILOG_CRASH_CHILD"

// TestPersistCrashChild is the child process of TestPersistKill9 (it does nothing unless the
// environment variable is set): it appends in Durable mode and prints each acknowledged tail.
func TestPersistCrashChild(t *testing.T) {
	dir := os.Getenv(crashChildEnv)
	if dir == "" {
		return
	}
	s, _ := schema.Parse(persistSchema)
	ml, err := Open(s, Options{Writers: 2, SegmentBytes: 64 * s.RecordSize, ManualMonitor: true}, Persistence{Dir: dir, Store: logstore.Options{MaintainInterval: -1}})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	out := bufio.NewWriter(os.Stdout)
	fmt.Fprintln(out, "ready")
	out.Flush()
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		w := i % 2
		tail := ml.Snapshot().Version().Tails()[w]
		n := 1 + i%50
		if err := ml.Writer(w).AppendBatch(persistBatch(s, w, tail, n)); err != nil {
			fmt.Fprintln(out, "error", err)
			out.Flush()
			os.Exit(2)
		}
		fmt.Fprintf(out, "ack %d %d\n", w, tail+uint64(n))
		out.Flush()
	}
	os.Exit(0)
}

// TestPersistKill9 kills a MultiLog appending in Durable mode at random moments and checks
// that every acknowledged record is back, intact, after each restart.
func TestPersistKill9(t *testing.T) {
	const kills = 20
	s, _ := schema.Parse(persistSchema)
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, uint64(time.Now().UnixNano())))
	acked := [2]uint64{}
	for i := 0; i < kills; i++ {
		cmd := exec.Command(exe, "-test.run=^TestPersistCrashChild$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		if !sc.Scan() || sc.Text() != "ready" {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("kill %d: child did not start: %q", i, sc.Text())
		}
		timer := time.AfterFunc(time.Duration(rng.IntN(20000))*time.Microsecond, func() { cmd.Process.Signal(syscall.SIGKILL) })
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) != 3 || f[0] != "ack" {
				t.Fatalf("kill %d: child printed %q", i, sc.Text())
			}
			w, _ := strconv.Atoi(f[1])
			tail, _ := strconv.ParseUint(f[2], 10, 64)
			acked[w] = max(acked[w], tail)
		}
		timer.Stop()
		cmd.Wait()

		ml, err := Open(nil, Options{ManualMonitor: true}, Persistence{Dir: dir, Store: logstore.Options{MaintainInterval: -1}})
		if err != nil {
			t.Fatalf("kill %d: reopen: %v", i, err)
		}
		tails := ml.Snapshot().Version().Tails()
		for w := 0; w < 2; w++ {
			if tails[w] < acked[w] {
				t.Fatalf("kill %d: writer %d: %d records, %d acknowledged", i, w, tails[w], acked[w])
			}
			want := persistBatch(s, w, 0, int(tails[w]))
			for seq := uint64(0); seq < tails[w]; seq++ {
				rec, err := ml.Read(MakeRef(w, seq))
				if err != nil || !bytes.Equal(rec, want[int(seq)*s.RecordSize:int(seq+1)*s.RecordSize]) {
					t.Fatalf("kill %d: record %d/%d wrong: %v", i, w, seq, err)
				}
			}
			acked[w] = tails[w]
		}
		if err := ml.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if acked[0]+acked[1] == 0 {
		t.Fatal("nothing was ever acknowledged")
	}
}

// BenchmarkPersistAppend64 appends 64-record batches to one writer: in memory (New) and
// persisted (Durable, DurableRelaxed), for the store benchmarks' 40-byte header records and for
// 276-byte records the size of the built-in packet record. Every 64 MiB of records the
// MultiLog is replaced to keep memory bounded; closing it syncs DurableRelaxed's backlog, which
// records/s counts (only opening the next one is left out).
func BenchmarkPersistAppend64(b *testing.B) {
	wide, err := schema.Parse("{src: IPV4, dst: IPV4, sport: USHORT, dport: USHORT, len: UINT, pad: STRING(250)}")
	if err != nil {
		b.Fatal(err)
	}
	narrow := benchSchema(b)
	for _, shape := range []struct {
		name string
		s    *schema.Schema
		recs []byte
	}{
		{"40B", narrow, benchRecords(narrow, 4096, persistBase, 1)},
		{"276B", wide, persistBatchWide(wide, 4096)},
	} {
		for _, mode := range []logstore.Mode{logstore.InMemory, logstore.Durable, logstore.DurableRelaxed} {
			b.Run(shape.name+"/"+mode.String(), func(b *testing.B) {
				benchPersistAppend64(b, shape.s, shape.recs, mode)
			})
		}
	}
}

func benchPersistAppend64(b *testing.B, s *schema.Schema, recs []byte, mode logstore.Mode) {
	const batch = 64
	open := func() *MultiLog {
		opts := Options{Writers: 1, ManualMonitor: true}
		if mode == logstore.InMemory {
			ml, err := New(s, opts)
			if err != nil {
				b.Fatal(err)
			}
			return ml
		}
		ml, err := Open(s, opts, Persistence{Dir: b.TempDir(), Mode: mode, Store: logstore.Options{MaintainInterval: -1}})
		if err != nil {
			b.Fatal(err)
		}
		return ml
	}
	ml := open()
	rs := s.RecordSize
	perGeneration := (64 << 20) / (batch * rs) // batches
	b.SetBytes(int64(batch * rs))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		off := (i * batch) % (4096 - batch)
		if err := ml.Writer(0).AppendBatch(recs[off*rs : (off+batch)*rs]); err != nil {
			b.Fatal(err)
		}
		i++
		if i%perGeneration == 0 {
			if err := ml.Close(); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			ml = open()
			b.StartTimer()
		}
	}
	closeStart := time.Now()
	if err := ml.Close(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(i*batch)/(b.Elapsed()+time.Since(closeStart)).Seconds(), "records/s")
}

func persistBatchWide(s *schema.Schema, n int) []byte {
	rs := s.RecordSize
	out := make([]byte, n*rs)
	for i := 0; i < n; i++ {
		rec := out[i*rs : (i+1)*rs]
		binary.LittleEndian.PutUint64(rec, uint64(persistBase+int64(i)*1000))
		copy(rec[8:], []byte{10, 0, 0, byte(i % 7), 10, 0, 1, 2})
		binary.LittleEndian.PutUint16(rec[16:], uint16(40000+i%7))
		binary.LittleEndian.PutUint16(rec[18:], 443)
		binary.LittleEndian.PutUint32(rec[20:], uint32(64+i%1400))
	}
	return out
}

func TestPersistBadDefinitionsFailCleanly(t *testing.T) {
	s, _ := schema.Parse(persistSchema)
	dir := t.TempDir()
	p := Persistence{Dir: dir, Store: logstore.Options{MaintainInterval: -1}}
	ml, err := Open(s, Options{Writers: 1}, p)
	if err != nil {
		t.Fatal(err)
	}
	if err := ml.AddFilter("web", "dport == 80"); err != nil {
		t.Fatal(err)
	}
	if err := ml.AddAggregate("web_bytes", "web", "SUM(len)"); err != nil {
		t.Fatal(err)
	}
	if err := ml.InstallTrigger("a", "web_bytes >= 1", time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := ml.InstallTrigger("b", "web_bytes >= 2", time.Millisecond); err != nil {
		t.Fatal(err)
	}
	ml.Close()
	path := dir + "/MANIFEST.json"
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// The second trigger names an aggregate that does not exist: the first one has started the
	// monitor by the time the second fails.
	b = bytes.Replace(b, []byte(`"web_bytes >= 2"`), []byte(`"nope >= 2"`), 1)
	b = bytes.Replace(b, []byte(`"web_bytes \u003e= 2"`), []byte(`"nope >= 2"`), 1)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Open(nil, Options{}, p)
	if err == nil || !strings.Contains(err.Error(), `restore trigger "b"`) {
		t.Fatalf("open with a bad trigger: %v", err)
	}
	// goleak (TestMain) checks that the monitor started for trigger "a" was stopped.
	if err := os.WriteFile(path, []byte(`{"format_version": 1`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(nil, Options{}, p); !errors.Is(err, logstore.ErrManifest) {
		t.Fatalf("open with a cut manifest: %v", err)
	}
}

// TestPersistTriggersFireAfterReopen checks that a restored trigger is live: after a restart
// it does not fire again for the restored windows, and it fires for new data exactly as the
// same trigger over an in-memory MultiLog fed every record.
func TestPersistTriggersFireAfterReopen(t *testing.T) {
	s, _ := schema.Parse(persistSchema)
	opts := Options{Writers: 2, SegmentBytes: 64 * s.RecordSize, ManualMonitor: true}
	p := Persistence{Dir: t.TempDir(), Store: logstore.Options{MaintainInterval: -1}}
	setup := func(ml *MultiLog) {
		addWebLogs(t, ml)
		if err := ml.InstallTrigger("burst", "web_bytes >= 100000", time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	type fired struct {
		Trigger    string
		Start, End int64
		Value      float64
		Count      uint64
	}
	summary := func(alerts []Alert) []fired {
		var out []fired
		for _, a := range alerts {
			out = append(out, fired{a.Trigger, a.WindowStart, a.WindowEnd, a.Value, a.Count})
		}
		return out
	}
	mem, err := New(s, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	setup(mem)
	ml, err := Open(s, opts, p)
	if err != nil {
		t.Fatal(err)
	}
	setup(ml)
	appendAll(t, ml, s, 0, 3000)
	appendAll(t, mem, s, 0, 3000)
	// Three 1 ms windows of data; those complete by the watermark fire now, the others are
	// still pending at Close.
	if a := summary(ml.Tick()); len(a) == 0 || !reflect.DeepEqual(a, summary(mem.Tick())) {
		t.Fatalf("alerts before the restart: %+v", a)
	}
	ml = reopen(t, ml, p)
	if got := ml.Triggers(); !reflect.DeepEqual(got, []string{"burst"}) {
		t.Fatalf("restored triggers %v", got)
	}
	if a := ml.Tick(); len(a) != 0 {
		t.Fatalf("restored data fired again: %+v", a)
	}
	appendAll(t, ml, s, 3000, 5000)
	appendAll(t, mem, s, 3000, 5000)
	// Windows that receive data from now on are evaluated (restored data does not fire: a
	// window pending at the restart is not evaluated twice, nor at all).
	var want []fired
	for _, a := range summary(mem.Flush()) {
		if a.Start >= persistBase+3*int64(time.Millisecond) {
			want = append(want, a)
		}
	}
	if len(want) != 2 {
		t.Fatalf("in-memory alerts for the new data: %+v", want)
	}
	got := summary(ml.Flush())
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("alerts after the restart:\n got %+v\nwant %+v", got, want)
	}
}
