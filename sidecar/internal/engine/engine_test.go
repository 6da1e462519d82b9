package engine

import (
	"context"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confluo-go/confluo/pkg/multilog"
	"github.com/confluo-go/confluo/pkg/schema"
	"github.com/confluo-go/confluo/pkg/wire"
)

type alertSink struct {
	mu     sync.Mutex
	alerts []wire.Alert
}

func (a *alertSink) add(x wire.Alert) { a.mu.Lock(); a.alerts = append(a.alerts, x); a.mu.Unlock() }
func (a *alertSink) get() []wire.Alert {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]wire.Alert(nil), a.alerts...)
}

func newTestStore(t *testing.T, watermark *atomic.Int64, sink *alertSink) (*Store, *multilog.MultiLog) {
	t.Helper()
	sch, err := schema.Parse("{v: UINT}")
	if err != nil {
		t.Fatal(err)
	}
	ml, err := multilog.New(sch, multilog.Options{Writers: 1, Watermark: watermark.Load})
	if err != nil {
		t.Fatal(err)
	}
	s := NewStore(StoreOptions{}, sink.add)
	t.Cleanup(func() { _ = s.Close() })
	if err := s.Add("m", ml); err != nil {
		t.Fatal(err)
	}
	return s, ml
}

const ms = int64(time.Millisecond)

func appendAt(t *testing.T, ml *multilog.MultiLog, ts int64, v uint64) {
	t.Helper()
	rec, err := ml.Schema().Encode(uint64(ts), v)
	if err != nil {
		t.Fatal(err)
	}
	if err := ml.Writer(0).Append(rec); err != nil {
		t.Fatal(err)
	}
}

func waitAlerts(t *testing.T, sink *alertSink, n int) []wire.Alert {
	t.Helper()
	for i := 0; len(sink.get()) < n; i++ {
		if i > 20000 {
			t.Fatalf("got %d alerts, want %d", len(sink.get()), n)
		}
		time.Sleep(time.Millisecond)
	}
	return sink.get()
}

// TestTriggerWindows: windows are evaluated once each, only when the watermark passes their end,
// including after a time with no data at all (watermark at its minimum).
func TestTriggerWindows(t *testing.T) {
	var wm atomic.Int64
	wm.Store(math.MinInt64)
	sink := &alertSink{}
	s, ml := newTestStore(t, &wm, sink)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.AddFilter(wire.FilterSpec{MultiLog: "m", Name: "big", Expr: "v >= 10"}))
	must(s.AddAggregate(wire.AggregateSpec{MultiLog: "m", Name: "total", Filter: "big", Func: "SUM(v)"}))
	must(s.AddTrigger(wire.TriggerSpec{MultiLog: "m", Name: "hot", Condition: "total > 25", PeriodMillis: 10}))
	time.Sleep(20 * time.Millisecond) // monitor ticks with nothing stored

	// Window [0,10ms): 10+20 = 30 fires; [10,20ms): 12 does not; [20,30ms): 40 fires later.
	appendAt(t, ml, 1*ms, 10)
	appendAt(t, ml, 5*ms, 20)
	appendAt(t, ml, 7*ms, 3) // filtered out
	appendAt(t, ml, 12*ms, 12)
	appendAt(t, ml, 25*ms, 40)
	wm.Store(19 * ms) // [0,10) and [10,20) complete, [20,30) not
	got := waitAlerts(t, sink, 1)
	if a := got[0]; a.Trigger != "hot" || a.Value != 30 || a.WindowStart.UnixNano() != 0 || a.WindowEnd.UnixNano() != 10*ms ||
		a.Op != ">" || a.Threshold != 25 || a.MultiLog != "m" {
		t.Fatalf("alert %+v", a)
	}
	time.Sleep(20 * time.Millisecond)
	if n := len(sink.get()); n != 1 {
		t.Fatalf("%d alerts before the third window is complete", n)
	}
	wm.Store(math.MaxInt64) // source finished
	got = waitAlerts(t, sink, 2)
	if a := got[1]; a.Value != 40 || a.WindowStart.UnixNano() != 20*ms {
		t.Fatalf("alert %+v", a)
	}
	time.Sleep(20 * time.Millisecond)
	if n := len(sink.get()); n != 2 {
		t.Fatalf("windows evaluated twice: %d alerts", n)
	}
}

// TestTriggerAfterReplay: a capture replayed before the filter, aggregate and trigger exist
// still fires (backfill), the last window closes at the end of input, and a named aggregate is
// read from the MultiLog's roll-ups at the snapshot.
func TestTriggerAfterReplay(t *testing.T) {
	var wm atomic.Int64
	wm.Store(math.MinInt64)
	sink := &alertSink{}
	s, ml := newTestStore(t, &wm, sink)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	appendAt(t, ml, 1*ms, 10)
	appendAt(t, ml, 5*ms, 20)
	appendAt(t, ml, 7*ms, 3)
	appendAt(t, ml, 12*ms, 12)
	appendAt(t, ml, 25*ms, 40)
	wm.Store(25 * ms) // the replay is in; [20, 30 ms) is not complete yet
	must(s.AddFilter(wire.FilterSpec{MultiLog: "m", Name: "big", Expr: "v >= 10"}))
	must(s.AddAggregate(wire.AggregateSpec{MultiLog: "m", Name: "total", Filter: "big", Func: "SUM(v)"}))
	must(s.AddTrigger(wire.TriggerSpec{MultiLog: "m", Name: "hot", Condition: "total > 25", PeriodMillis: 10}))
	got := waitAlerts(t, sink, 1)
	if a := got[0]; a.Trigger != "hot" || a.Value != 30 || a.WindowStart.UnixNano() != 0 || a.Version != 5 ||
		a.Op != ">" || a.Threshold != 25 || a.Condition != "total > 25" || a.Aggregate != "total" {
		t.Fatalf("alert %+v", a)
	}
	agg, err := s.Aggregate(context.Background(), wire.AggregateRequest{MultiLog: "m", Name: "total", From: wire.Time(2 * ms), To: wire.Time(30 * ms)})
	if err != nil || agg.Value != 72 || agg.Count != 3 || agg.Func != "SUM(v)" {
		t.Fatalf("named aggregate %+v %v", agg, err)
	}
	adhoc, err := s.Aggregate(context.Background(), wire.AggregateRequest{MultiLog: "m", Func: "SUM(v)", Expr: "v >= 10", From: wire.Time(2 * ms), To: wire.Time(30 * ms)})
	if err != nil || adhoc.Value != agg.Value || adhoc.Count != agg.Count {
		t.Fatalf("ad-hoc aggregate %+v %v", adhoc, err)
	}
	if _, err := s.Aggregate(context.Background(), wire.AggregateRequest{MultiLog: "m", Name: "total", Expr: "v > 1"}); !errors.Is(err, wire.ErrInvalidArgument) {
		t.Fatalf("named aggregate with an expression: %v", err)
	}
	wm.Store(math.MaxInt64) // end of input: [20, 30 ms) closes
	got = waitAlerts(t, sink, 2)
	if a := got[1]; a.Value != 40 || a.WindowStart.UnixNano() != 20*ms {
		t.Fatalf("alert %+v", a)
	}
	// Close runs a last pass; nothing fires twice.
	must(s.Close())
	if n := len(sink.get()); n != 2 || s.Evaluations() < 2 {
		t.Fatalf("%d alerts, %d evaluations", n, s.Evaluations())
	}
	must(s.RemoveTrigger("m", "hot"))
	must(s.RemoveAggregate("m", "total"))
	if l := ml.Triggers(); len(l) != 0 {
		t.Fatalf("MultiLog triggers after RemoveTrigger: %v", l)
	}
	if l := ml.Aggregates(); len(l) != 0 {
		t.Fatalf("MultiLog aggregates after RemoveAggregate: %v", l)
	}
}

func TestStoreErrors(t *testing.T) {
	var wm atomic.Int64
	s, _ := newTestStore(t, &wm, &alertSink{})
	codes := []struct {
		err  error
		code wire.Code
	}{
		{s.AddFilter(wire.FilterSpec{MultiLog: "m", Name: "f", Expr: "v >"}), wire.CodeInvalidExpr},
		{s.AddFilter(wire.FilterSpec{MultiLog: "nope", Name: "f", Expr: "v > 1"}), wire.CodeNotFound},
		{s.AddAggregate(wire.AggregateSpec{MultiLog: "m", Name: "a", Filter: "missing", Func: "SUM(v)"}), wire.CodeNotFound},
		{s.AddTrigger(wire.TriggerSpec{MultiLog: "m", Name: "t", Condition: "a >"}), wire.CodeInvalidExpr},
		{s.AddTrigger(wire.TriggerSpec{MultiLog: "m", Name: "t", Condition: "a > 1"}), wire.CodeNotFound},
		{s.RemoveFilter("m", "nope"), wire.CodeNotFound},
		{s.AddIndex(wire.IndexSpec{MultiLog: "m", Column: "nope"}), wire.CodeInvalidArgument},
		{s.AddMultiLog("x", "{bad"), wire.CodeInvalidArgument},
	}
	for i, c := range codes {
		var we *wire.Error
		if !errors.As(c.err, &we) || we.Code != c.code {
			t.Errorf("case %d: %v, want code %s", i, c.err, c.code)
		}
	}
	if err := s.AddFilter(wire.FilterSpec{MultiLog: "m", Name: "f", Expr: "v > 1"}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddAggregate(wire.AggregateSpec{MultiLog: "m", Name: "a", Filter: "f", Func: "AVG(v)"}); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveFilter("m", "f"); !errors.Is(err, wire.ErrInvalidArgument) {
		t.Fatalf("removing a filter in use: %v", err)
	}
	if _, err := s.Query(context.Background(), wire.QueryRequest{MultiLog: "m", Cursor: "%%%"}, 10); !errors.Is(err, wire.ErrInvalidArgument) {
		t.Fatalf("bad cursor: %v", err)
	}
	if _, err := s.Query(context.Background(), wire.QueryRequest{MultiLog: "m", Columns: []string{"zz"}}, 10); !errors.Is(err, wire.ErrInvalidArgument) {
		t.Fatalf("bad column: %v", err)
	}
}

// TestPinnedQuery: a frozen version hides later appends; a pin reads an older version.
func TestPinnedQuery(t *testing.T) {
	var wm atomic.Int64
	s, ml := newTestStore(t, &wm, &alertSink{})
	appendAt(t, ml, 1*ms, 1)
	appendAt(t, ml, 2*ms, 2)
	tails, release, err := s.Freeze("m")
	if err != nil {
		t.Fatal(err)
	}
	appendAt(t, ml, 3*ms, 3)
	q, err := s.Query(context.Background(), wire.QueryRequest{MultiLog: "m"}, 100)
	if err != nil || q.Count != 2 {
		t.Fatalf("frozen query: %d rows, %v", q.Count, err)
	}
	release()
	q, _ = s.Query(context.Background(), wire.QueryRequest{MultiLog: "m"}, 100)
	if q.Count != 3 {
		t.Fatalf("after release: %d rows", q.Count)
	}
	q, _ = s.Query(WithPin(context.Background(), tails, 1*ms), wire.QueryRequest{MultiLog: "m"}, 100)
	if q.Count != 1 {
		t.Fatalf("pinned with cut: %d rows", q.Count)
	}
	agg, err := s.Aggregate(WithPin(context.Background(), tails, 0), wire.AggregateRequest{MultiLog: "m", Func: "SUM(v)"})
	if err != nil || agg.Value != 3 {
		t.Fatalf("pinned aggregate %v %v", agg, err)
	}
}
