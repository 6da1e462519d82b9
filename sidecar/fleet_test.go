package sidecar

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/confluo-go/confluo/pkg/wire"
)

func agentCall[T any](t *testing.T, nc *nats.Conn, op wire.AgentOp, req any) T {
	t.Helper()
	subject, _ := wire.AgentSubject("testhost", op)
	body, _ := json.Marshal(req)
	m, err := nc.Request(subject, body, 30*time.Second)
	for i := 0; errors.Is(err, nats.ErrNoResponders) && i < 1000; i++ {
		time.Sleep(10 * time.Millisecond) // the agent subscribes when Run starts it
		m, err = nc.Request(subject, body, 30*time.Second)
	}
	if err != nil {
		t.Fatalf("%s: %v", op, err)
	}
	var r wire.Response
	if err := json.Unmarshal(m.Data, &r); err != nil {
		t.Fatal(err)
	}
	if r.Error != nil {
		t.Fatalf("%s: %v", op, r.Error)
	}
	var out T
	if err := json.Unmarshal(r.Result, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestFleetAgent: the embedded fleet agent heartbeats, freezes the packet multilog for a
// distributed snapshot, answers pinned queries and applies configuration revisions idempotently.
func TestFleetAgent(t *testing.T) {
	o := testOptions()
	o.HeartbeatInterval = 20 * time.Millisecond
	s := startPcap(t, o)
	if s.agent == nil {
		t.Fatal("no fleet agent with NATS enabled")
	}
	nc, err := nats.Connect(s.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	hbSub, _ := nc.SubscribeSync(wire.HeartbeatWildcard)
	m, err := hbSub.NextMsg(30 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var hb wire.AgentHeartbeat
	if err := json.Unmarshal(m.Data, &hb); err != nil || hb.Host != "testhost" || hb.Records != 4347 || hb.Capture.Stored != 4347 {
		t.Fatalf("heartbeat %s (%v)", m.Data, err)
	}

	begin := agentCall[wire.SnapshotBeginReply](t, nc, wire.AgentSnapshotBegin, wire.SnapshotBegin{Epoch: 1, LeaseMillis: 10000})
	var sum uint64
	for _, tail := range begin.Tails {
		sum += tail
	}
	if begin.Status != wire.SnapFrozen || sum != 4347 {
		t.Fatalf("begin %+v", begin)
	}
	pin := &wire.Pin{Snapshot: 1, Tails: begin.Tails, CutTime: begin.Watermark}
	reply := agentCall[wire.HostQueryReply](t, nc, wire.AgentQuery, wire.HostQuery{
		Aggregate: &wire.AggregateRequest{Func: "COUNT(*)", Expr: "ip_proto == udp && dst_port == 5302"}, Pin: pin})
	if reply.Aggregate == nil || reply.Aggregate.Value != 834 || reply.Aggregate.Consistency != wire.ConsistencyAtomic {
		t.Fatalf("pinned aggregate %+v", reply.Aggregate)
	}
	reply = agentCall[wire.HostQueryReply](t, nc, wire.AgentQuery, wire.HostQuery{
		Query: &wire.QueryRequest{Expr: "ip_proto == 1", Columns: []string{"timestamp"}}, Pin: pin})
	if reply.Query == nil || reply.Query.Count != 6 {
		t.Fatalf("pinned query %+v", reply.Query)
	}
	end := agentCall[wire.SnapshotEndReply](t, nc, wire.AgentSnapshotEnd, wire.SnapshotEnd{Epoch: 1})
	if end.Status != wire.SnapReleased {
		t.Fatalf("end %+v", end)
	}

	// Configuration revisions through the Applier.
	ctx := context.Background()
	rev1 := &wire.FleetConfig{Revision: 1,
		Filters:    []wire.FilterSpec{{Name: "udp", Expr: "ip_proto == udp"}},
		Aggregates: []wire.AggregateSpec{{Name: "udp_pkts", Filter: "udp", Func: "COUNT(*)"}},
		Triggers:   []wire.TriggerSpec{{Name: "udp_any", Condition: "udp_pkts >= 1", PeriodMillis: 100}},
		Indexes:    []wire.IndexSpec{{Column: "dst_port"}},
		Schemas:    map[string]string{"apps": "{app: STRING(16), latency_us: UINT}"},
	}
	for range 2 { // idempotent
		if err := s.host.Apply(ctx, rev1); err != nil {
			t.Fatal(err)
		}
	}
	if l, _ := s.engine.Triggers("packets"); len(l) != 1 || l[0].Name != "udp_any" {
		t.Fatalf("triggers after rev 1: %+v", l)
	}
	if mls := s.engine.MultiLogs(); len(mls) != 2 || mls[0].Name != "apps" {
		t.Fatalf("multilogs %+v", mls)
	}
	rev2 := &wire.FleetConfig{Revision: 2,
		Filters:    []wire.FilterSpec{{Name: "udp", Expr: "ip_proto == udp && dst_port == 5302"}},
		Aggregates: []wire.AggregateSpec{{Name: "udp_pkts", Filter: "udp", Func: "COUNT(*)"}},
	}
	// The filter changes under an aggregate that stays: the aggregate is rebuilt over the new one.
	if err := s.host.Apply(ctx, rev2); err != nil {
		t.Fatalf("rev 2: %v", err)
	}
	if f, _ := s.engine.Filters("packets"); len(f) != 1 || f[0].Expr != rev2.Filters[0].Expr {
		t.Fatalf("filters after rev 2: %+v", f)
	}
	if agg := call[wire.AggregateReply](t, nc, "testhost", wire.CmdAggregate, wire.AggregateRequest{Name: "udp_pkts"}); agg.Value != 834 {
		t.Fatalf("aggregate over the replaced filter = %v, want 834", agg.Value)
	}
	if l, _ := s.engine.Triggers("packets"); len(l) != 0 {
		t.Fatalf("trigger of rev 1 still installed: %+v", l)
	}
	bad := &wire.FleetConfig{Revision: 3, Filters: []wire.FilterSpec{{Name: "bad", Expr: "ip_proto =="}}}
	if err := s.host.Apply(ctx, bad); !errors.Is(err, wire.ErrInvalidExpr) {
		t.Fatalf("bad revision: %v", err)
	}
	// The daemon still answers.
	if st := call[wire.Stats](t, nc, "testhost", wire.CmdStats, nil); st.MultiLogs[1].Records != 4347 {
		t.Fatalf("stats after a bad revision %+v", st.MultiLogs)
	}
}
