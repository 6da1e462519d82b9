package multilog

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

// benchFilters are 16 filters over the bench schema with varied selectivity.
var benchFilters = []string{
	"proto == 6",
	"dport == 80 || dport == 443",
	"len > 1000",
	"src_ip in 10.0.1.0/24",
	"proto == 17 && len < 200",
	"dport < 1024",
	"sport >= 32768",
	"src_ip in 10.0.0.0/16 && proto == 6",
	"len >= 64 && len <= 128",
	"dport in (22, 53, 123, 161)",
	"!(proto == 6)",
	"tcp_flags == 2",
	"ttl < 32",
	"vlan == 100",
	"len > 1400 || dport == 8080",
	"src_ip == 10.0.2.7",
}

var benchAggs = []string{"SUM(len)", "COUNT(*)", "MAX(len)", "MIN(len)", "AVG(len)", "SUM(dport)", "MAX(src_ip)", "COUNT(len)"}

type monitorSetup struct {
	filters, aggs, triggers int
}

func setupMonitoring(b *testing.B, ml *MultiLog, cfg monitorSetup) {
	for i := range cfg.filters {
		if err := ml.AddFilter(fmt.Sprintf("f%d", i), benchFilters[i%len(benchFilters)]); err != nil {
			b.Fatal(err)
		}
	}
	for i := range cfg.aggs {
		if err := ml.AddAggregate(fmt.Sprintf("a%d", i), fmt.Sprintf("f%d", i%cfg.filters), benchAggs[i%len(benchAggs)]); err != nil {
			b.Fatal(err)
		}
	}
	for i := range cfg.triggers {
		period := time.Duration(1+i%10) * time.Millisecond
		threshold := 1e12 + float64(i) // rarely fires
		if i%100 == 0 {
			threshold = 10 // fires every window
		}
		if err := ml.InstallTrigger(fmt.Sprintf("t%d", i), fmt.Sprintf("a%d > %g", i%cfg.aggs, threshold), period); err != nil {
			b.Fatal(err)
		}
	}
}

// benchMonitoring appends batches of 1,024 packet-header records from one writer with the
// given filters, aggregates and triggers (the monitor goroutine running), and reports
// records/s, monitor overruns and the memory per record and per filter match.
func benchMonitoring(b *testing.B, cfg monitorSetup) {
	s := benchSchema(b)
	// One log takes 2 M records, 1 µs apart in data time, then a new log starts over.
	const perLog = 2048
	recs := benchRecords(s, perLog*benchBatch, 0, 1)
	newLog := func() *MultiLog {
		ml, err := New(s, Options{Writers: 1})
		if err != nil {
			b.Fatal(err)
		}
		setupMonitoring(b, ml, cfg)
		return ml
	}
	ml := newLog()
	w := ml.Writer(0)
	rs := s.RecordSize
	total, n := 0, 0
	var overruns, ticks uint64
	defer lockThread()()
	cpu0 := threadCPU()
	b.ReportAllocs()
	for b.Loop() {
		off := (n % perLog) * benchBatch * rs
		if err := w.AppendBatch(recs[off : off+benchBatch*rs]); err != nil {
			b.Fatal(err)
		}
		n++
		total += benchBatch
		if n%perLog == 0 {
			st := ml.Stats()
			overruns += st.MonitorOverruns
			ticks += st.MonitorTicks
			ml.Close()
			ml = newLog()
			w = ml.Writer(0)
		}
	}
	b.StopTimer()
	if cpu := threadCPU() - cpu0; cpu > 0 {
		b.ReportMetric(float64(total)/cpu.Seconds(), "records/cpu-s")
	}
	st := ml.Stats()
	overruns += st.MonitorOverruns
	ticks += st.MonitorTicks
	ml.Close()
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(overruns), "overruns")
	b.ReportMetric(float64(ticks), "ticks")
}

func BenchmarkFilter1(b *testing.B)  { benchMonitoring(b, monitorSetup{filters: 1}) }
func BenchmarkFilter16(b *testing.B) { benchMonitoring(b, monitorSetup{filters: 16}) }
func BenchmarkFilter16Aggregate16Trigger1000(b *testing.B) {
	benchMonitoring(b, monitorSetup{filters: 16, aggs: 16, triggers: 1000})
}

// BenchmarkMonitoringMemory reports the bytes held per record (data excluded) and per filter
// match with 16 filters and 16 aggregates over 2 M records.
func BenchmarkMonitoringMemory(b *testing.B) {
	s := benchSchema(b)
	const n = 2 << 20
	recs := benchRecords(s, n, 0, 1)
	for b.Loop() {
		var m0, m1, m2 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		ml, _ := New(s, Options{Writers: 1, ManualMonitor: true})
		_ = ml.Writer(0).AppendBatch(recs[:benchBatch*s.RecordSize])
		runtime.GC()
		runtime.ReadMemStats(&m1)
		setupMonitoring(b, ml, monitorSetup{filters: 16, aggs: 16})
		for off := benchBatch * s.RecordSize; off < len(recs); off += benchBatch * s.RecordSize {
			_ = ml.Writer(0).AppendBatch(recs[off : off+benchBatch*s.RecordSize])
		}
		runtime.GC()
		runtime.ReadMemStats(&m2)
		data := float64(ml.MemoryBytes())
		derived := float64(m2.HeapAlloc-m0.HeapAlloc) - data
		var matches uint64
		for i := range 16 {
			c, _ := ml.Snapshot().CountFilter(fmt.Sprintf("f%d", i), MinTime, MaxTime)
			matches += c
		}
		b.ReportMetric(derived/float64(n), "B/record")
		b.ReportMetric(derived/float64(matches), "B/match")
		b.ReportMetric(float64(matches)/float64(n), "matches/record")
		runtime.KeepAlive(ml)
		_ = m1
	}
}

// BenchmarkAlertLatency appends live traffic (timestamps = now) to a trigger with a 10 ms
// period that fires every window, and reports how long after a window closes its alert is
// delivered, in ms and in periods (target ≤ 2 periods).
func BenchmarkAlertLatency(b *testing.B) {
	s := benchSchema(b)
	const period = 10 * time.Millisecond
	ml, err := New(s, Options{Writers: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer ml.Close()
	if err := ml.AddFilter("all", "true"); err != nil {
		b.Fatal(err)
	}
	if err := ml.AddAggregate("n", "all", "COUNT(*)"); err != nil {
		b.Fatal(err)
	}
	if err := ml.InstallTrigger("any", "n > 0", period); err != nil {
		b.Fatal(err)
	}
	alerts := make(chan Alert, 1024)
	defer ml.SubscribeChan(alerts)()
	rec := benchRecords(s, 1, 0, 1)
	w := ml.Writer(0)
	var total time.Duration
	n := 0
	for b.Loop() {
		// Append one record every 100 µs until the alert for the first window arrives.
		start := time.Now()
		for {
			now := time.Now()
			for j := range 8 {
				rec[j] = byte(now.UnixNano() >> (8 * j))
			}
			_ = w.Append(rec)
			select {
			case a := <-alerts:
				if a.WindowStart >= start.UnixNano()-int64(period) {
					total += time.Since(time.Unix(0, a.WindowEnd))
					n++
					goto next
				}
			default:
			}
			time.Sleep(100 * time.Microsecond)
		}
	next:
	}
	if n > 0 {
		avg := total / time.Duration(n)
		b.ReportMetric(float64(avg.Microseconds())/1000, "ms-after-close")
		b.ReportMetric(float64(avg)/float64(period), "periods")
	}
}

// BenchmarkGetAggregate10kBuckets reads SUM(len) over 10,000 1-ms buckets (2 M records, 5 µs
// apart), starting off bucket boundaries (Confluo walks every bucket: 98-171 ms here).
func BenchmarkGetAggregate10kBuckets(b *testing.B) {
	s := benchSchema(b)
	ml, _ := New(s, Options{Writers: 1, ManualMonitor: true})
	if err := ml.AddFilter("tcp", "proto == 6"); err != nil {
		b.Fatal(err)
	}
	if err := ml.AddAggregate("bytes", "tcp", "SUM(len)"); err != nil {
		b.Fatal(err)
	}
	const n = 2_000_000
	recs := benchRecords(s, n, 0, 3)
	for i := range n { // 5 µs apart: 10,000 ms in all
		ts := int64(i) * 5000
		for j := range 8 {
			recs[i*s.RecordSize+j] = byte(ts >> (8 * j))
		}
	}
	for off := 0; off < len(recs); off += benchBatch * s.RecordSize {
		_ = ml.Writer(0).AppendBatch(recs[off:min(len(recs), off+benchBatch*s.RecordSize)])
	}
	want, _ := ml.Snapshot().CountNanos("proto == 6", 123, 9_999_000_123)
	defer lockThread()()
	cpu0 := threadCPU()
	b.ReportAllocs()
	for b.Loop() {
		v, err := ml.GetAggregate("bytes", 123, 9_999_000_123)
		if err != nil || v.Count != want {
			b.Fatalf("count %d, want %d (%v)", v.Count, want, err)
		}
	}
	b.ReportMetric(float64((threadCPU()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// BenchmarkTick1000Triggers measures one monitor pass with 16 filters, 16 aggregates and 1,000
// triggers (periods 1-10 ms) after each 1 ms of data (1,024 records): the pass must stay well
// under the 1 ms monitor interval (ns/op is the pass alone).
func BenchmarkTick1000Triggers(b *testing.B) {
	s := benchSchema(b)
	const perLog = 2048
	recs := benchRecords(s, perLog*benchBatch, 0, 1)
	newLog := func() *MultiLog {
		ml, _ := New(s, Options{Writers: 1, ManualMonitor: true})
		setupMonitoring(b, ml, monitorSetup{filters: 16, aggs: 16, triggers: 1000})
		return ml
	}
	ml := newLog()
	n := 0
	alerts := 0
	for b.Loop() {
		off := (n % perLog) * benchBatch * s.RecordSize
		b.StopTimer()
		_ = ml.Writer(0).AppendBatch(recs[off : off+benchBatch*s.RecordSize])
		b.StartTimer()
		alerts += len(ml.Tick())
		n++
		if n%perLog == 0 {
			ml = newLog()
		}
	}
	b.ReportMetric(float64(alerts)/float64(b.N), "alerts/tick")
}

// BenchmarkAggregateBackfill measures AddAggregate with AggregateBackfill over 256 Ki stored
// records whose filter matches about half of them: records/s is stored records summarised per
// second (the filter log is read, the matching records are aggregated into roll-ups).
func BenchmarkAggregateBackfill(b *testing.B) {
	s := benchSchema(b)
	const n = 1 << 18
	ml, err := New(s, Options{Writers: 1, ManualMonitor: true})
	if err != nil {
		b.Fatal(err)
	}
	defer ml.Close()
	if err := ml.AddFilter("tcp", "proto == 6"); err != nil {
		b.Fatal(err)
	}
	recs := benchRecords(s, n, 0, 1)
	if err := ml.Writer(0).AppendBatch(recs); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		name := fmt.Sprintf("a%d", i)
		i++
		if err := ml.AddAggregate(name, "tcp", "SUM(len)", AggregateBackfill()); err != nil {
			b.Fatal(err)
		}
		if err := ml.RemoveAggregate(name); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
