package multilog

import (
	"encoding/binary"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/confluo-go/confluo/pkg/expr"
	"github.com/confluo-go/confluo/pkg/schema"
)

// benchSchemaText is a 40-byte record shaped like a packet header.
const benchSchemaText = `{src_ip: IPV4, dst_ip: IPV4, sport: USHORT, dport: USHORT, proto: UCHAR, tcp_flags: UCHAR,
 ttl: UCHAR, dscp: UCHAR, len: UINT, flow_hash: UINT, in_port: USHORT, vlan: USHORT, tcp_seq: UINT}`

func benchSchema(tb testing.TB) *schema.Schema {
	s, err := schema.Parse(benchSchemaText)
	if err != nil {
		tb.Fatal(err)
	}
	if s.RecordSize != 40 {
		tb.Fatalf("record size %d", s.RecordSize)
	}
	return s
}

// benchRecords builds n records with timestamps from ts0, 1 µs apart; dport takes 50,000
// distinct values so an equality on it selects ~n/50,000 rows.
func benchRecords(s *schema.Schema, n int, ts0 int64, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	rs := s.RecordSize
	buf := make([]byte, n*rs)
	src, _ := s.Column("src_ip")
	dport, _ := s.Column("dport")
	sport, _ := s.Column("sport")
	length, _ := s.Column("len")
	proto, _ := s.Column("proto")
	for i := range n {
		rec := buf[i*rs : (i+1)*rs]
		binary.LittleEndian.PutUint64(rec, uint64(ts0+int64(i)*1000))
		rec[src.Offset], rec[src.Offset+1], rec[src.Offset+2], rec[src.Offset+3] = 10, 0, byte(rng.IntN(4)), byte(rng.IntN(256))
		binary.LittleEndian.PutUint16(rec[dport.Offset:], uint16(rng.IntN(50000)))
		binary.LittleEndian.PutUint16(rec[sport.Offset:], uint16(rng.IntN(65536)))
		binary.LittleEndian.PutUint32(rec[length.Offset:], uint32(64+rng.IntN(1400)))
		rec[proto.Offset] = []byte{6, 17}[rng.IntN(2)]
	}
	return buf
}

const benchBatch = 1024

// BenchmarkAppend1Writer appends batches of 1,024 records from one writer. A fresh MultiLog is
// started every 4 M records so memory stays bounded; segment allocation is included.
func BenchmarkAppend1Writer(b *testing.B) {
	s := benchSchema(b)
	recs := benchRecords(s, 64*benchBatch, 1, 1)
	ml, _ := New(s, Options{Writers: 1})
	w := ml.Writer(0)
	n, total := 0, 0
	defer lockThread()()
	cpu0 := threadCPU()
	b.ReportAllocs()
	b.SetBytes(int64(benchBatch * s.RecordSize))
	for b.Loop() {
		off := (n % 64) * benchBatch * s.RecordSize
		if err := w.AppendBatch(recs[off : off+benchBatch*s.RecordSize]); err != nil {
			b.Fatal(err)
		}
		n++
		total += benchBatch
		if n%4096 == 0 {
			ml, _ = New(s, Options{Writers: 1})
			w = ml.Writer(0)
		}
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "records/s")
	if cpu := threadCPU() - cpu0; cpu > 0 {
		b.ReportMetric(float64(total)/cpu.Seconds(), "records/cpu-s")
	}
}

// BenchmarkAppend1WriterSingle appends one record at a time.
func BenchmarkAppend1WriterSingle(b *testing.B) {
	s := benchSchema(b)
	recs := benchRecords(s, 64*benchBatch, 1, 1)
	ml, _ := New(s, Options{Writers: 1})
	w := ml.Writer(0)
	n := 0
	rs := s.RecordSize
	b.ReportAllocs()
	for b.Loop() {
		off := (n % (64 * benchBatch)) * rs
		if err := w.Append(recs[off : off+rs]); err != nil {
			b.Fatal(err)
		}
		n++
		if n%(4<<20) == 0 {
			ml, _ = New(s, Options{Writers: 1})
			w = ml.Writer(0)
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkAppend2Writers appends batches from two goroutines, each with its own writer; one
// iteration is one batch from each.
func BenchmarkAppend2Writers(b *testing.B) {
	benchAppendWriters(b, 2)
}

func benchAppendWriters(b *testing.B, writers int) {
	s := benchSchema(b)
	recs := benchRecords(s, 64*benchBatch, 1, 1)
	// Memory stays bounded by moving to a fresh MultiLog (a generation) every 4 M records. Each
	// writer moves on by itself when it has written its share of a generation, so writers never
	// wait for each other (no barrier, as in the sidecar, whose drainers run independently); a
	// generation is dropped when every writer has left it.
	const perGen = (4 << 20) / benchBatch // batches per generation, over all writers
	var mu sync.Mutex
	gens := map[int]*MultiLog{}
	left := map[int]int{}
	enter := func(g int) *MultiLog {
		mu.Lock()
		defer mu.Unlock()
		ml := gens[g]
		if ml == nil {
			ml, _ = New(s, Options{Writers: writers})
			gens[g], left[g] = ml, writers
		}
		return ml
	}
	leave := func(g int) {
		mu.Lock()
		defer mu.Unlock()
		if left[g]--; left[g] == 0 {
			delete(gens, g)
			delete(left, g)
		}
	}
	var cpuMu sync.Mutex
	var cpu time.Duration // writer threads' CPU time
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer lockThread()()
			c0 := threadCPU()
			g, w := -1, (*Writer)(nil)
			for n := range b.N {
				if n%(perGen/writers) == 0 {
					if g >= 0 {
						leave(g)
					}
					g++
					w = enter(g).Writer(i)
				}
				off := (n % 64) * benchBatch * s.RecordSize
				if err := w.AppendBatch(recs[off : off+benchBatch*s.RecordSize]); err != nil {
					panic(err)
				}
			}
			leave(g)
			cpuMu.Lock()
			cpu += threadCPU() - c0
			cpuMu.Unlock()
		}()
	}
	wg.Wait()
	b.StopTimer()
	total := writers * b.N * benchBatch
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "records/s")
	// Per-record CPU time of the writer threads: equal for 1 and 2 writers when writers do not
	// contend; times the number of free cores, that is the scaling the machine allows.
	if cpu > 0 {
		b.ReportMetric(float64(total)/cpu.Seconds(), "records/cpu-s")
	}
}

// BenchmarkAppend1WriterBaseline is the 1-writer baseline measured the same way as
// BenchmarkAppend2Writers, for the scaling ratio.
func BenchmarkAppend1WriterBaseline(b *testing.B) { benchAppendWriters(b, 1) }

// BenchmarkMemoryRatio reports allocated segment bytes over raw record bytes for 10 M records
// without an index.
func BenchmarkMemoryRatio(b *testing.B) {
	s := benchSchema(b)
	recs := benchRecords(s, 64*benchBatch, 1, 1)
	const n = 10_000_000
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		ml, _ := New(s, Options{Writers: 1})
		w := ml.Writer(0)
		for i := 0; i < n; i += benchBatch {
			k := min(benchBatch, n-i)
			off := ((i / benchBatch) % 64) * benchBatch * s.RecordSize
			_ = w.AppendBatch(recs[off : off+k*s.RecordSize])
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		raw := float64(n * s.RecordSize)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/raw, "heap/raw")
		b.ReportMetric(float64(ml.MemoryBytes())/raw, "segments/raw")
		runtime.KeepAlive(ml)
	}
}

var bigFixture struct {
	once sync.Once
	ml   *MultiLog
	n    int
}

// bigLog returns a shared MultiLog of 10 M bench records (1 µs apart) from 2 writers, with an
// index on dport.
func bigLog(b *testing.B) *MultiLog {
	bigFixture.once.Do(func() {
		s := benchSchema(b)
		const n = 10_000_000
		ml, _ := New(s, Options{Writers: 2})
		if err := ml.AddIndex("dport", 0); err != nil {
			b.Fatal(err)
		}
		chunk := 1 << 20
		for i := 0; i < n; i += chunk {
			k := min(chunk, n-i)
			recs := benchRecords(s, k, int64(i)*1000, uint64(i))
			// Alternate chunks between the writers: both shards stay in timestamp order.
			_ = ml.Writer((i / chunk) % 2).AppendBatch(recs)
		}
		bigFixture.ml, bigFixture.n = ml, n
	})
	return bigFixture.ml
}

// BenchmarkQueryFullRange iterates every row of a 10 M-record log in timestamp order (k-way
// merge of 2 shards) with a filter matching about half of them.
func BenchmarkQueryFullRange(b *testing.B) {
	ml := bigLog(b)
	rows := 0
	defer lockThread()()
	cpu0 := threadCPU()
	b.ReportAllocs()
	for b.Loop() {
		r, err := ml.QueryNanos("proto == 6", MinTime, MaxTime, 0)
		if err != nil {
			b.Fatal(err)
		}
		for r.Next() {
			_ = r.Record()
			rows++
		}
	}
	b.ReportMetric(b.Elapsed().Seconds()*1e9/float64(rows), "ns/row")
	b.ReportMetric(float64((threadCPU()-cpu0).Nanoseconds())/float64(rows), "cpu-ns/row")
	b.ReportMetric(float64(rows)/float64(b.N), "rows/op")
	b.ReportMetric(float64((threadCPU()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// BenchmarkQueryFullRangeAll iterates every row with no filter.
func BenchmarkQueryFullRangeAll(b *testing.B) {
	ml := bigLog(b)
	rows := 0
	defer lockThread()()
	cpu0 := threadCPU()
	b.ReportAllocs()
	for b.Loop() {
		r, _ := ml.QueryNanos("", MinTime, MaxTime, 0)
		for r.Next() {
			rows++
		}
	}
	b.ReportMetric(b.Elapsed().Seconds()*1e9/float64(rows), "ns/row")
	b.ReportMetric(float64((threadCPU()-cpu0).Nanoseconds())/float64(rows), "cpu-ns/row")
	b.ReportMetric(float64((threadCPU()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// BenchmarkQueryIndexedEq looks up one dport value (~200 of 10 M rows) through the index.
func BenchmarkQueryIndexedEq(b *testing.B) {
	ml := bigLog(b)
	rows, i := 0, 0
	if plan, _ := ml.Snapshot().Explain("dport == 4242"); plan == "scan" {
		b.Fatal("not planned through the index")
	}
	defer lockThread()()
	cpu0 := threadCPU()
	b.ReportAllocs()
	for b.Loop() {
		r, _ := ml.QueryNanos("dport == "+strconv.Itoa(i%50000), MinTime, MaxTime, 0)
		for r.Next() {
			rows++
		}
		i += 7919
	}
	b.ReportMetric(float64(rows)/float64(b.N), "rows/op")
	b.ReportMetric(float64((threadCPU()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// BenchmarkCountTimeRange counts 1 ms of data (1,000 rows) in the middle of 10 M rows:
// segment time skipping and binary search.
func BenchmarkCountTimeRange(b *testing.B) {
	ml := bigLog(b)
	defer lockThread()()
	cpu0 := threadCPU()
	b.ReportAllocs()
	for b.Loop() {
		r, _ := ml.QueryNanos("", 5_000_000_000, 5_001_000_000, 0)
		n := 0
		for r.Next() {
			n++
		}
		if n != 1000 {
			b.Fatalf("%d rows", n)
		}
	}
	b.ReportMetric(float64((threadCPU()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// BenchmarkQueryIndexedEqPrepared is BenchmarkQueryIndexedEq with the filter compiled once.
func BenchmarkQueryIndexedEqPrepared(b *testing.B) {
	ml := bigLog(b)
	filters := make([]*expr.Filter, 64)
	for i := range filters {
		f, err := expr.Compile("dport == "+strconv.Itoa(i*7919%50000), ml.Schema())
		if err != nil {
			b.Fatal(err)
		}
		filters[i] = f
	}
	rows, i := 0, 0
	defer lockThread()()
	cpu0 := threadCPU()
	b.ReportAllocs()
	for b.Loop() {
		r := ml.Snapshot().Select(filters[i%len(filters)], MinTime, MaxTime, 0)
		for r.Next() {
			rows++
		}
		i++
	}
	b.ReportMetric(float64(rows)/float64(b.N), "rows/op")
	b.ReportMetric(float64((threadCPU()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// BenchmarkAppendIndexed appends batches of 1,024 records from one writer with an index on
// dport (50,000 distinct values).
func BenchmarkAppendIndexed(b *testing.B) {
	s := benchSchema(b)
	recs := benchRecords(s, 64*benchBatch, 1, 1)
	newLog := func() *Writer {
		ml, _ := New(s, Options{Writers: 1})
		if err := ml.AddIndex("dport", 0); err != nil {
			b.Fatal(err)
		}
		return ml.Writer(0)
	}
	w := newLog()
	n, total := 0, 0
	defer lockThread()()
	cpu0 := threadCPU()
	b.ReportAllocs()
	for b.Loop() {
		off := (n % 64) * benchBatch * s.RecordSize
		if err := w.AppendBatch(recs[off : off+benchBatch*s.RecordSize]); err != nil {
			b.Fatal(err)
		}
		n++
		total += benchBatch
		if n%4096 == 0 {
			w = newLog()
		}
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "records/s")
	if cpu := threadCPU() - cpu0; cpu > 0 {
		b.ReportMetric(float64(total)/cpu.Seconds(), "records/cpu-s")
	}
}
