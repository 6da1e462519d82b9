package fleet_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/confluo-go/confluo/pkg/fleet"
	"github.com/confluo-go/confluo/pkg/fleet/fleetsim"
	"github.com/confluo-go/confluo/pkg/natstest"
	"github.com/confluo-go/confluo/pkg/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func startServer(t *testing.T) *server.Server {
	t.Helper()
	return natstest.Start(t, &server.Options{JetStream: true})
}

func connect(t *testing.T, ns *server.Server) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// runAgent starts an agent and returns it with a stop function that waits for Run to return.
func runAgent(t *testing.T, nc *nats.Conn, opts fleet.Options) (*fleet.Agent, func()) {
	t.Helper()
	a, err := fleet.NewAgent(nc, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	// Wait until the agent answers pings: its subscriptions are live.
	subj, _ := wire.AgentSubject(opts.Host, wire.AgentPing)
	for i := 0; ; i++ {
		if _, err := nc.Request(subj, nil, time.Second); err == nil {
			break
		} else if i > 100 {
			t.Fatalf("agent %s never answered ping: %v", opts.Host, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return a, stop
}

func request[T any](t *testing.T, nc *nats.Conn, host string, op wire.AgentOp, body any) (T, *wire.Error) {
	t.Helper()
	var zero T
	subj, err := wire.AgentSubject(host, op)
	if err != nil {
		t.Fatal(err)
	}
	var data []byte
	switch b := body.(type) {
	case []byte:
		data = b
	default:
		data, _ = json.Marshal(body)
	}
	msg, err := nc.Request(subj, data, 5*time.Second)
	if err != nil {
		t.Fatalf("%s: %v", subj, err)
	}
	var resp wire.Response
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		t.Fatalf("%s: bad envelope %q: %v", subj, msg.Data, err)
	}
	if resp.Error != nil {
		return zero, resp.Error
	}
	var out T
	if err := json.Unmarshal(resp.Result, &out); err != nil {
		t.Fatalf("%s: bad result %q: %v", subj, resp.Result, err)
	}
	return out, nil
}

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts fleet.Options
	}{
		{"no host", fleet.Options{}},
		{"dotted host", fleet.Options{Host: "a.b"}},
		{"wildcard host", fleet.Options{Host: "*"}},
		{"negative interval", fleet.Options{Host: "h", HeartbeatInterval: -time.Second}},
		{"lease above max", fleet.Options{Host: "h", DefaultLease: time.Minute, MaxLease: time.Second}},
	} {
		if err := tc.opts.Validate(); !errors.Is(err, fleet.ErrInvalidOptions) {
			t.Errorf("%s: Validate = %v, want ErrInvalidOptions", tc.name, err)
		}
	}
	if err := (fleet.Options{Host: "hv-1"}).Validate(); err != nil {
		t.Errorf("valid options: %v", err)
	}
	if _, err := fleet.NewAgent(nil, fleet.Options{Host: "h"}); !errors.Is(err, fleet.ErrInvalidOptions) {
		t.Errorf("nil conn: %v", err)
	}
}

func TestSnapshotEpochsAndLease(t *testing.T) {
	ns := startServer(t)
	nc := connect(t, ns)
	sim := fleetsim.NewHost("h1", 2)
	sim.Append(0, 1, 1)
	sim.Append(1, 2, 2)
	a, _ := runAgent(t, nc, fleet.Options{Host: "h1", Freezer: sim, DisableConfigWatch: true, MaxLease: time.Minute})

	begin := func(epoch uint64, lease int64) (wire.SnapshotBeginReply, *wire.Error) {
		return request[wire.SnapshotBeginReply](t, nc, "h1", wire.AgentSnapshotBegin, wire.SnapshotBegin{Epoch: epoch, LeaseMillis: lease})
	}
	end := func(epoch uint64) wire.SnapshotEndReply {
		r, werr := request[wire.SnapshotEndReply](t, nc, "h1", wire.AgentSnapshotEnd, wire.SnapshotEnd{Epoch: epoch})
		if werr != nil {
			t.Fatalf("end %d: %v", epoch, werr)
		}
		return r
	}

	r, werr := begin(5, 60_000)
	if werr != nil || r.Status != wire.SnapFrozen || len(r.Tails) != 2 || r.Tails[0] != 1 || r.Tails[1] != 1 {
		t.Fatalf("begin 5 = %+v, %v", r, werr)
	}
	sim.Append(0, 3, 3) // ingest continues while frozen
	if dup, _ := begin(5, 60_000); dup.Status != wire.SnapFrozen || dup.Tails[0] != 1 || dup.FrozenAt != r.FrozenAt {
		t.Errorf("duplicate begin 5 = %+v, want the same frozen tails", dup)
	}
	if st, _ := begin(4, 60_000); st.Status != wire.SnapStale {
		t.Errorf("stale begin 4 = %+v", st)
	}
	if e := end(4); e.Status != wire.SnapStale {
		t.Errorf("stale end 4 = %+v", e)
	}
	if ep, ok := a.FrozenEpoch(); !ok || ep != 5 {
		t.Fatalf("after stale messages frozen epoch = %d, %v; want 5", ep, ok)
	}
	if e := end(5); e.Status != wire.SnapReleased {
		t.Errorf("end 5 = %+v", e)
	}
	if e := end(5); e.Status != wire.SnapStale {
		t.Errorf("duplicate end 5 = %+v", e)
	}
	if late, _ := begin(5, 60_000); late.Status != wire.SnapExpired {
		t.Errorf("late begin 5 after end = %+v, want expired", late)
	}
	if frozen, _, _ := sim.Frozen(); frozen {
		t.Fatal("host still frozen after end")
	}

	// A higher epoch replaces a freeze; the lease releases it without an end.
	if r, _ := begin(6, 60_000); r.Status != wire.SnapFrozen {
		t.Fatalf("begin 6 = %+v", r)
	}
	r7, _ := begin(7, 50)
	if r7.Status != wire.SnapFrozen || r7.Tails[0] != 2 {
		t.Fatalf("begin 7 = %+v", r7)
	}
	for i := 0; ; i++ {
		if _, ok := a.FrozenEpoch(); !ok {
			break
		}
		if i > 500 {
			t.Fatal("lease never released the freeze")
		}
		time.Sleep(10 * time.Millisecond)
	}
	_, _, releases, expired := a.Counters()
	if releases != 3 || expired != 1 {
		t.Errorf("releases %d expired %d, want 3 and 1", releases, expired)
	}
	if frozen, freezes, rel := sim.Frozen(); frozen || freezes != 3 || rel != 3 {
		t.Errorf("sim frozen=%v freezes=%d releases=%d", frozen, freezes, rel)
	}
	if e := end(7); e.Status != wire.SnapStale {
		t.Errorf("end after lease = %+v, want stale", e)
	}
}

func TestBadInput(t *testing.T) {
	ns := startServer(t)
	nc := connect(t, ns)
	runAgent(t, nc, fleet.Options{Host: "h1", DisableConfigWatch: true})
	for _, tc := range []struct {
		op   wire.AgentOp
		body []byte
		code wire.Code
	}{
		{wire.AgentSnapshotBegin, []byte("{"), wire.CodeBadRequest},
		{wire.AgentSnapshotBegin, []byte(`{"epoch":0}`), wire.CodeInvalidArgument},
		{wire.AgentSnapshotBegin, []byte(`{"epoch":1}`), wire.CodeUnavailable}, // no freezer
		{wire.AgentSnapshotEnd, []byte(`[]`), wire.CodeBadRequest},
		{wire.AgentQuery, []byte(`nope`), wire.CodeBadRequest},
		{wire.AgentQuery, []byte(`{}`), wire.CodeInvalidArgument},
		{wire.AgentQuery, []byte(`{"query":{},"alerts":{}}`), wire.CodeInvalidArgument},
		{wire.AgentQuery, []byte(`{"query":{}}`), wire.CodeUnavailable}, // no responder
	} {
		_, werr := request[json.RawMessage](t, nc, "h1", tc.op, tc.body)
		if werr == nil || werr.Code != tc.code {
			t.Errorf("%s %s: error %v, want code %s", tc.op, tc.body, werr, tc.code)
		}
	}
}

func TestQueryAndHeartbeat(t *testing.T) {
	ns := startServer(t)
	nc := connect(t, ns)
	hbs := make(chan *nats.Msg, 16)
	sub, err := nc.ChanSubscribe(wire.HeartbeatWildcard, hbs)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	sim := fleetsim.NewHost("h1", 1)
	for i := range 5 {
		sim.Append(0, uint64(i), float64(i))
	}
	runAgent(t, nc, fleet.Options{Host: "h1", Labels: map[string]string{"rack": "r1"}, Responder: sim, Freezer: sim,
		DisableConfigWatch: true, HeartbeatInterval: 20 * time.Millisecond,
		StatusFunc: func() wire.Heartbeat { return wire.Heartbeat{Records: 5} }})

	m := <-hbs
	var hb wire.AgentHeartbeat
	if err := json.Unmarshal(m.Data, &hb); err != nil {
		t.Fatal(err)
	}
	if m.Subject != "confluo.v1.heartbeat.h1" || hb.Host != "h1" || hb.Labels["rack"] != "r1" || hb.Records != 5 || hb.IntervalMillis != 20 {
		t.Errorf("heartbeat %s %+v", m.Subject, hb)
	}

	q, werr := request[wire.HostQueryReply](t, nc, "h1", wire.AgentQuery, wire.HostQuery{Query: &wire.QueryRequest{Limit: 3}})
	if werr != nil || q.Host != "h1" || q.Query == nil || len(q.Query.Rows) != 3 || !q.Query.Truncated {
		t.Fatalf("query = %+v, %v", q, werr)
	}
	ag, werr := request[wire.HostQueryReply](t, nc, "h1", wire.AgentQuery, wire.HostQuery{Aggregate: &wire.AggregateRequest{Func: "SUM(value)"}})
	if werr != nil || ag.Aggregate == nil || ag.Aggregate.Value != 10 || ag.Aggregate.Count != 5 {
		t.Fatalf("aggregate = %+v, %v", ag, werr)
	}
	// Pinned to a snapshot: only records inside the tails.
	br, _ := request[wire.SnapshotBeginReply](t, nc, "h1", wire.AgentSnapshotBegin, wire.SnapshotBegin{Epoch: 1})
	sim.Append(0, 99, 100)
	request[wire.SnapshotEndReply](t, nc, "h1", wire.AgentSnapshotEnd, wire.SnapshotEnd{Epoch: 1})
	pin := &wire.Pin{Snapshot: 1, Tails: br.Tails, CutTime: br.Watermark}
	ag, werr = request[wire.HostQueryReply](t, nc, "h1", wire.AgentQuery, wire.HostQuery{Aggregate: &wire.AggregateRequest{Func: "COUNT(*)"}, Pin: pin})
	if werr != nil || ag.Aggregate.Value != 5 {
		t.Fatalf("pinned count = %+v, %v; want 5", ag.Aggregate, werr)
	}
	_, werr = request[wire.HostQueryReply](t, nc, "h1", wire.AgentQuery, wire.HostQuery{Query: &wire.QueryRequest{Expr: "len >"}})
	if werr == nil || werr.Code != wire.CodeInvalidExpr {
		t.Errorf("bad expression: %v, want invalid_expression", werr)
	}
}

// TestConfigWatch applies revisions written to the bucket and acks them, and re-acks a repeated
// assignment without applying again.
func TestConfigWatch(t *testing.T) {
	ns := startServer(t)
	nc := connect(t, ns)
	ctx := context.Background()
	js, kv := newBucket(t, nc)
	_ = js
	acks := make(chan *nats.Msg, 16)
	sub, err := nc.ChanSubscribe(wire.AckWildcard, acks)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	sim := fleetsim.NewHost("h1", 1)
	sim.FailRevision(2)
	a, _ := runAgent(t, nc, fleet.Options{Host: "h1", Applier: sim, RetryInterval: 20 * time.Millisecond})

	put := func(key string, v any) {
		b, _ := json.Marshal(v)
		if _, err := kv.Put(ctx, key, b); err != nil {
			t.Fatal(err)
		}
	}
	nextAck := func() wire.ConfigAck {
		select {
		case m := <-acks:
			var ack wire.ConfigAck
			if err := json.Unmarshal(m.Data, &ack); err != nil {
				t.Fatal(err)
			}
			return ack
		case <-time.After(10 * time.Second):
			t.Fatal("no ack")
		}
		return wire.ConfigAck{}
	}
	put("config.1", wire.FleetConfig{Comment: "one"})
	put("config.2", wire.FleetConfig{Comment: "two"})
	put("host.h1", wire.Assignment{Revision: 1, Rollout: "r1"})
	if ack := nextAck(); ack.Revision != 1 || ack.Error != nil || ack.Rollout != "r1" {
		t.Fatalf("ack = %+v", ack)
	}
	put("host.h1", wire.Assignment{Revision: 1, Rollout: "r1"})
	if ack := nextAck(); ack.Revision != 1 || ack.Error != nil {
		t.Fatalf("re-ack = %+v", ack)
	}
	put("host.h1", wire.Assignment{Revision: 2, Rollout: "r2"})
	if ack := nextAck(); ack.Revision != 2 || ack.Error == nil || !errors.Is(ack.Error, wire.ErrInvalidArgument) {
		t.Fatalf("failing revision ack = %+v", ack)
	}
	put("host.h1", wire.Assignment{Revision: 7, Rollout: "r3"}) // no such config
	if ack := nextAck(); ack.Revision != 7 || ack.Error == nil || ack.Error.Code != wire.CodeNotFound {
		t.Fatalf("missing revision ack = %+v", ack)
	}
	if _, err := kv.Put(ctx, "host.h1", []byte("garbage")); err != nil {
		t.Fatal(err)
	}
	put("host.h1", wire.Assignment{Revision: 1, Rollout: "r4"})
	if ack := nextAck(); ack.Revision != 1 || ack.Error != nil {
		t.Fatalf("after garbage, ack = %+v", ack)
	}
	if got := sim.Applied(); len(got) != 1 || got[0] != 1 {
		t.Errorf("applied %v, want [1]", got)
	}
	if rev, _ := a.Revision(); rev != 1 {
		t.Errorf("revision %d", rev)
	}
}

func newBucket(t *testing.T, nc *nats.Conn) (jetstream.JetStream, jetstream.KeyValue) {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.CreateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: wire.FleetBucket, History: 4})
	if err != nil {
		t.Fatal(err)
	}
	return js, kv
}

type failingFreezer struct{ released int }

func (f *failingFreezer) Freeze() (fleet.Frozen, func()) {
	return fleet.Frozen{}, func() { f.released++ }
}

func TestFreezeFailure(t *testing.T) {
	ns := startServer(t)
	nc := connect(t, ns)
	ff := &failingFreezer{}
	a, _ := runAgent(t, nc, fleet.Options{Host: "h1", Freezer: ff, DisableConfigWatch: true})
	_, werr := request[wire.SnapshotBeginReply](t, nc, "h1", wire.AgentSnapshotBegin, wire.SnapshotBegin{Epoch: 1})
	if werr == nil || werr.Code != wire.CodeUnavailable {
		t.Fatalf("begin on a failing freezer: %v", werr)
	}
	if _, frozen := a.FrozenEpoch(); frozen || ff.released != 1 {
		t.Errorf("frozen=%v released=%d", frozen, ff.released)
	}
}
