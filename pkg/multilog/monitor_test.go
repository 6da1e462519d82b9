package multilog

import (
	"errors"
	"math"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confluo-go/confluo/pkg/schema"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestMonitorGoroutine runs the real monitor goroutine: a replayed capture with old
// timestamps fires through a channel subscription and a callback, once per window.
func TestMonitorGoroutine(t *testing.T) {
	s, err := schema.Parse("{dport: USHORT, len: UINT}")
	if err != nil {
		t.Fatal(err)
	}
	ml, err := New(s, Options{Writers: 2, MonitorInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer ml.Close()
	if err := ml.AddFilter("web", "dport == 80"); err != nil {
		t.Fatal(err)
	}
	if err := ml.AddAggregate("n", "web", "COUNT(*)"); err != nil {
		t.Fatal(err)
	}
	if err := ml.InstallTrigger("busy", "n >= 3", 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	ch := make(chan Alert, 16)
	cancel := ml.SubscribeChan(ch)
	defer cancel()
	calls := make(chan Alert, 16)
	cancel2 := ml.Subscribe(func(a Alert) { calls <- a })
	base := time.Date(2019, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	appendAt := func(w int, ms float64, port uint16) {
		t.Helper()
		rec, err := s.Encode(uint64(base+int64(ms*1e6)), port, uint32(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := ml.Writer(w).Append(rec); err != nil {
			t.Fatal(err)
		}
	}
	// Window [0, 10 ms): 2 records on each writer. Window [10, 20): one record.
	appendAt(0, 1, 80)
	appendAt(1, 2, 80)
	appendAt(0, 3, 80)
	appendAt(1, 9, 22)
	appendAt(1, 15, 80)
	// Data time reaches 10 ms + grace (2 ms) only here.
	appendAt(0, 30, 22)
	var got Alert
	select {
	case got = <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("no alert within 10 s")
	}
	if got.Trigger != "busy" || got.WindowStart != base || got.WindowEnd != base+10e6 || got.Value != 3 || got.Count != 3 {
		t.Fatalf("alert %+v", got)
	}
	if a := <-calls; a.WindowStart != got.WindowStart {
		t.Fatalf("callback got %+v", a)
	}
	cancel2()
	// The same window never fires twice, even with late data for it.
	appendAt(0, 4, 80)
	appendAt(0, 50, 22)
	deadline := time.Now().Add(200 * time.Millisecond)
	for time.Now().Before(deadline) {
		select {
		case a := <-ch:
			t.Fatalf("second alert %+v", a)
		default:
			time.Sleep(5 * time.Millisecond)
		}
	}
	if alerts := ml.GetAlerts(MinTime, MaxTime, "busy"); len(alerts) != 1 {
		t.Fatalf("GetAlerts: %d alerts", len(alerts))
	}
	st := ml.Stats()
	if st.MonitorTicks == 0 || st.Evaluations == 0 || st.LateBuckets == 0 {
		t.Fatalf("stats %+v", st)
	}
	if err := ml.Close(); err != nil {
		t.Fatal(err)
	}
	if err := ml.InstallTrigger("x", "n > 1", 10*time.Millisecond); !errors.Is(err, ErrClosed) {
		t.Fatalf("InstallTrigger after Close: %v", err)
	}
}

func TestAppendErrors(t *testing.T) {
	s, _ := schema.Parse("{a: UINT, name: STRING(4)}")
	ml, _ := New(s, Options{Writers: 1})
	w := ml.Writer(0)
	if err := w.Append(make([]byte, 3)); !errors.Is(err, ErrRecordSize) {
		t.Fatalf("short record: %v", err)
	}
	if err := w.AppendBatch(make([]byte, s.RecordSize+1)); !errors.Is(err, ErrRecordSize) {
		t.Fatalf("ragged batch: %v", err)
	}
	if err := w.AppendStrings([]string{"0", "70000000000", "ab"}); err == nil {
		t.Fatal("out-of-range value accepted")
	}
	if err := w.AppendStrings([]string{"0", "7", "abcdef"}); err == nil {
		t.Fatal("string too long accepted")
	}
	if err := w.AppendStrings([]string{"0", "7", "ab"}); err != nil {
		t.Fatal(err)
	}
	if err := w.AppendValues(uint64(5), uint32(8), "xy"); err != nil {
		t.Fatal(err)
	}
	rows, _ := ml.QueryNanos("", MinTime, MaxTime, 0)
	n := 0
	for rows.Next() {
		if rows.Timestamp() == 0 {
			t.Fatal("zero timestamp not stamped")
		}
		n++
	}
	if n != 2 {
		t.Fatalf("%d rows", n)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("Writer(5) did not panic")
			}
		}()
		ml.Writer(5)
	}()
	if _, err := New(s, Options{Writers: MaxWriters + 1}); !errors.Is(err, ErrOptions) {
		t.Fatalf("too many writers: %v", err)
	}
	if _, err := New(s, Options{FilterBucket: time.Nanosecond}); !errors.Is(err, ErrOptions) {
		t.Fatalf("tiny bucket: %v", err)
	}
	if _, err := New(nil, Options{}); !errors.Is(err, ErrOptions) {
		t.Fatalf("nil schema: %v", err)
	}
	if _, err := New(&schema.Schema{}, Options{}); !errors.Is(err, ErrOptions) {
		t.Fatalf("schema not built by schema.Parse: %v", err)
	}
}

func TestMetrics(t *testing.T) {
	s, _ := schema.Parse("{k: UINT}")
	reg := prometheus.NewRegistry()
	ml, err := New(s, Options{Writers: 1, Registerer: reg, Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := ml.AddIndex("k", 0); err != nil {
		t.Fatal(err)
	}
	rec, _ := s.Encode(uint64(1), uint32(2))
	_ = ml.Writer(0).Append(rec)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	derived := -1.0
	for _, f := range families {
		switch f.GetName() {
		case "confluo_multilog_records_total":
			found = f.GetMetric()[0].GetCounter().GetValue() == 1
		case "confluo_multilog_derived_bytes":
			derived = f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	if !found {
		t.Fatal("confluo_multilog_records_total is not 1")
	}
	if want := ml.Stats().DerivedBytes; derived <= 0 || derived != float64(want) {
		t.Fatalf("confluo_multilog_derived_bytes = %v, Stats().DerivedBytes = %d: want equal and > 0 with an index", derived, want)
	}
	if _, err := New(s, Options{Writers: 1, Registerer: reg, Name: "test"}); !errors.Is(err, ErrOptions) {
		t.Fatalf("duplicate registration: %v", err)
	}
}

// TestWatermarkSources checks the three ways a window becomes complete: the minimum over the
// active shards (an idle shard stops holding it back), an external watermark, and the end of
// input.
func TestWatermarkSources(t *testing.T) {
	s, err := schema.Parse("{dport: USHORT}")
	if err != nil {
		t.Fatal(err)
	}
	setup := func(t *testing.T, o Options) *MultiLog {
		t.Helper()
		o.Writers, o.ManualMonitor = 2, true
		ml, err := New(s, o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ml.Close() })
		if err := ml.AddFilter("all", "true"); err != nil {
			t.Fatal(err)
		}
		if err := ml.AddAggregate("n", "all", "COUNT(*)"); err != nil {
			t.Fatal(err)
		}
		if err := ml.InstallTrigger("any", "n >= 1", 10*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		return ml
	}
	appendAt := func(t *testing.T, ml *MultiLog, w int, ms int64) {
		t.Helper()
		rec, _ := s.Encode(uint64(ms*1e6), uint16(80))
		if err := ml.Writer(w).Append(rec); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("idle", func(t *testing.T) {
		// Writer 1 never appends. With a long IdleAfter it holds every window back.
		ml := setup(t, Options{IdleAfter: time.Hour})
		appendAt(t, ml, 0, 1)
		appendAt(t, ml, 0, 30)
		if got := ml.Tick(); len(got) != 0 {
			t.Fatalf("alerts while writer 1 is active: %v", got)
		}
		// With IdleAfter 1ns writer 1 is idle at once; writer 0 just moved, so it counts.
		ml = setup(t, Options{IdleAfter: time.Nanosecond})
		appendAt(t, ml, 0, 1)
		appendAt(t, ml, 0, 30)
		if got := ml.Tick(); len(got) != 1 || got[0].WindowStart != 0 {
			t.Fatalf("alerts %v, want one for [0, 10 ms)", got)
		}
	})
	t.Run("external", func(t *testing.T) {
		var wm atomic.Int64
		wm.Store(math.MinInt64)
		ml := setup(t, Options{Watermark: wm.Load})
		appendAt(t, ml, 0, 1)
		appendAt(t, ml, 1, 50)
		if got := ml.Tick(); len(got) != 0 {
			t.Fatalf("alerts below the external watermark: %v", got)
		}
		wm.Store(int64(10*time.Millisecond) - 2) // [0, 10 ms) still needs ts 10ms-1
		if got := ml.Tick(); len(got) != 0 {
			t.Fatalf("alerts at watermark 10ms-2: %v", got)
		}
		wm.Store(int64(10*time.Millisecond) - 1)
		if got := ml.Tick(); len(got) != 1 || got[0].WindowStart != 0 {
			t.Fatalf("alerts %v, want one for [0, 10 ms)", got)
		}
		wm.Store(math.MaxInt64)
		if got := ml.Tick(); len(got) != 1 || got[0].WindowStart != int64(50*time.Millisecond) {
			t.Fatalf("alerts %v, want one for [50, 60 ms)", got)
		}
	})
	t.Run("flush", func(t *testing.T) {
		ml := setup(t, Options{IdleAfter: time.Hour})
		appendAt(t, ml, 0, 1)
		appendAt(t, ml, 1, 5)
		if got := ml.Tick(); len(got) != 0 {
			t.Fatalf("alerts before the end of input: %v", got)
		}
		if got := ml.Flush(); len(got) != 1 {
			t.Fatalf("Flush: %v", got)
		}
		if got := ml.Flush(); len(got) != 0 {
			t.Fatalf("second Flush: %v", got)
		}
		// Late data for an evaluated window is ignored; StopMonitor refuses new triggers.
		appendAt(t, ml, 0, 2)
		if got := ml.Tick(); len(got) != 0 || ml.Stats().LateBuckets == 0 {
			t.Fatalf("late data: %v, stats %+v", got, ml.Stats())
		}
		ml.StopMonitor()
		if err := ml.InstallTrigger("x", "n > 1", 10*time.Millisecond); !errors.Is(err, ErrClosed) {
			t.Fatalf("InstallTrigger after StopMonitor: %v", err)
		}
	})
}
