package multilog

import (
	"errors"
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
}

func TestMetrics(t *testing.T) {
	s, _ := schema.Parse("{k: UINT}")
	reg := prometheus.NewRegistry()
	ml, err := New(s, Options{Writers: 1, Registerer: reg, Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := s.Encode(uint64(1), uint32(2))
	_ = ml.Writer(0).Append(rec)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, f := range families {
		if f.GetName() == "confluo_multilog_records_total" {
			found = f.GetMetric()[0].GetCounter().GetValue() == 1
		}
	}
	if !found {
		t.Fatal("confluo_multilog_records_total is not 1")
	}
	if _, err := New(s, Options{Writers: 1, Registerer: reg, Name: "test"}); !errors.Is(err, ErrOptions) {
		t.Fatalf("duplicate registration: %v", err)
	}
}
