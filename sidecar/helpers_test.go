package sidecar

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/confluo-go/confluo/pkg/wire"
)

// stubEngine is a test double for the API's error paths: it keeps specs in maps and answers
// queries with one row per call. The product path uses the real store (store.go).
type stubEngine struct {
	mu         sync.Mutex
	filters    map[string]wire.FilterSpec
	aggregates map[string]wire.AggregateSpec
	triggers   map[string]wire.TriggerSpec
	indexes    map[string]bool
	block      chan struct{} // when non-nil, Query waits on it (or ctx)
	started    chan struct{}
}

func newStubEngine() *stubEngine {
	return &stubEngine{filters: map[string]wire.FilterSpec{}, aggregates: map[string]wire.AggregateSpec{},
		triggers: map[string]wire.TriggerSpec{}, indexes: map[string]bool{}}
}

func (e *stubEngine) MultiLogs() []wire.MultiLogInfo {
	return []wire.MultiLogInfo{{Name: "packets", Schema: "{timestamp: ULONG}", Records: 1}}
}

func (e *stubEngine) checkML(ml string) error {
	if ml != "packets" {
		return wire.Errorf(wire.CodeNotFound, "multilog %q", ml)
	}
	return nil
}

func (e *stubEngine) Query(ctx context.Context, req wire.QueryRequest, limit int) (*wire.QueryReply, error) {
	if err := e.checkML(req.MultiLog); err != nil {
		return nil, err
	}
	if req.Expr == "bad expr" {
		return nil, wire.Errorf(wire.CodeInvalidExpr, "expr: 1:5: unexpected identifier")
	}
	if e.block != nil {
		if e.started != nil {
			e.started <- struct{}{}
		}
		select {
		case <-e.block:
		case <-ctx.Done():
			return &wire.QueryReply{MultiLog: req.MultiLog, Truncated: true, Reason: "time", Rows: [][]any{}}, nil
		}
	}
	return &wire.QueryReply{MultiLog: req.MultiLog, Columns: []wire.ColumnInfo{{Name: "timestamp", Type: "ULONG"}},
		Rows: [][]any{{uint64(limit)}}, Count: 1}, nil
}

func (e *stubEngine) Aggregate(ctx context.Context, req wire.AggregateRequest) (*wire.AggregateReply, error) {
	if err := e.checkML(req.MultiLog); err != nil {
		return nil, err
	}
	return &wire.AggregateReply{MultiLog: req.MultiLog, Func: req.Func, Value: 42, Count: 1}, nil
}

func add[T any](e *stubEngine, m map[string]T, ml, name string, v T) error {
	if err := e.checkML(ml); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := m[name]; ok {
		return wire.Errorf(wire.CodeAlreadyExists, "%q exists", name)
	}
	m[name] = v
	return nil
}

func remove[T any](e *stubEngine, m map[string]T, ml, name string) error {
	if err := e.checkML(ml); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := m[name]; !ok {
		return wire.Errorf(wire.CodeNotFound, "%q", name)
	}
	delete(m, name)
	return nil
}

func list[T any](e *stubEngine, m map[string]T, ml string) ([]T, error) {
	if err := e.checkML(ml); err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []T
	for _, v := range m {
		out = append(out, v)
	}
	return out, nil
}

func (e *stubEngine) AddFilter(s wire.FilterSpec) error {
	return add(e, e.filters, s.MultiLog, s.Name, s)
}
func (e *stubEngine) RemoveFilter(ml, n string) error { return remove(e, e.filters, ml, n) }
func (e *stubEngine) Filters(ml string) ([]wire.FilterSpec, error) {
	return list(e, e.filters, ml)
}
func (e *stubEngine) AddAggregate(s wire.AggregateSpec) error {
	return add(e, e.aggregates, s.MultiLog, s.Name, s)
}
func (e *stubEngine) RemoveAggregate(ml, n string) error { return remove(e, e.aggregates, ml, n) }
func (e *stubEngine) Aggregates(ml string) ([]wire.AggregateSpec, error) {
	return list(e, e.aggregates, ml)
}
func (e *stubEngine) AddTrigger(s wire.TriggerSpec) error {
	return add(e, e.triggers, s.MultiLog, s.Name, s)
}
func (e *stubEngine) RemoveTrigger(ml, n string) error { return remove(e, e.triggers, ml, n) }
func (e *stubEngine) Triggers(ml string) ([]wire.TriggerSpec, error) {
	return list(e, e.triggers, ml)
}
func (e *stubEngine) AddIndex(s wire.IndexSpec) error {
	return add(e, e.indexes, s.MultiLog, s.Column, true)
}
func (e *stubEngine) RemoveIndex(ml, c string) error { return remove(e, e.indexes, ml, c) }
func (e *stubEngine) Indexes(ml string) ([]string, error) {
	if err := e.checkML(ml); err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for c := range e.indexes {
		out = append(out, c)
	}
	return out, nil
}

// testOptions are defaults with random ports and short timers.
func testOptions() Options {
	o := DefaultOptions()
	o.Host = "testhost"
	o.NATS.EmbeddedPort = -1
	o.NATS.ReconnectWait = 20 * time.Millisecond
	o.HTTP.Listen = "127.0.0.1:0"
	o.HeartbeatInterval = 0
	o.ShutdownTimeout = 5 * time.Second
	return o
}

// startStub starts a sidecar over a stubEngine and stops it when the test ends.
func startStub(t *testing.T, o Options, eng *stubEngine) (*Sidecar, *prometheus.Registry) {
	t.Helper()
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	s, err := newSidecar(o, nil, reg).init(eng, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	for !s.Ready() {
		time.Sleep(time.Millisecond)
	}
	return s, reg
}

func (e *stubEngine) AddMultiLog(name, schemaText string) error {
	if name == "packets" {
		return wire.Errorf(wire.CodeAlreadyExists, "multilog %q", name)
	}
	return nil
}

func (e *stubEngine) Freeze(ml string) ([]uint64, func(), error) {
	if err := e.checkML(ml); err != nil {
		return nil, nil, err
	}
	return []uint64{1}, func() {}, nil
}
