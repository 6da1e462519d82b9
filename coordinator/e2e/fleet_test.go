package e2e

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confluo-go/confluo/coordinator"
	"github.com/confluo-go/confluo/pkg/fleet"
	"github.com/confluo-go/confluo/pkg/wire"
)

func TestOptionsValidate(t *testing.T) {
	o := coordinator.DefaultOptions()
	if err := o.Validate(); !errors.Is(err, coordinator.ErrInvalidOptions) {
		t.Errorf("embedded without store dir: %v", err)
	}
	o.NATS.StoreDir = t.TempDir()
	if err := o.Validate(); err != nil {
		t.Errorf("defaults + store dir: %v", err)
	}
	for name, f := range map[string]func(*coordinator.Options){
		"waves not ending at 100": func(o *coordinator.Options) { o.Waves = []int{10, 50} },
		"waves descending":        func(o *coordinator.Options) { o.Waves = []int{50, 10, 100} },
		"missed 0":                func(o *coordinator.Options) { o.MissedHeartbeats = 0 },
		"timeout above lease":     func(o *coordinator.Options) { o.SnapshotTimeout = 10 * time.Second },
		"bad bucket":              func(o *coordinator.Options) { o.Bucket = "a.b" },
		"cert without key":        func(o *coordinator.Options) { o.NATS.CertFile = "x.pem" },
	} {
		o := coordinator.DefaultOptions()
		o.NATS.StoreDir = t.TempDir()
		f(&o)
		if err := o.Validate(); !errors.Is(err, coordinator.ErrInvalidOptions) {
			t.Errorf("%s: Validate = %v", name, err)
		}
	}
}

func TestRegistryMarksHostsDown(t *testing.T) {
	ns := startServer(t, nil)
	nc := connect(t, ns.ClientURL())
	c := startCoordinator(t, nc, nil)
	agents := startAgents(t, nc, 3, func(i int) map[string]string { return map[string]string{"rack": fmt.Sprint("r", i%2)} })
	waitUp(t, c, 3)
	st, err := c.Status(context.Background(), map[string]string{"rack": "r0"})
	if err != nil || len(st.Hosts) != 2 || st.Hosts[0].Host != "hv000" || st.Hosts[1].Host != "hv002" {
		t.Fatalf("selector rack=r0: %+v, %v", st, err)
	}
	agents[1].stop(t)
	eventually(t, "hv001 down", func() bool {
		st, _ := c.Status(context.Background(), nil)
		return st.Up == 2 && st.Down == 1 && !st.Hosts[1].Up && st.Hosts[1].Missed >= 10
	})
}

func TestRolloutWavesFailureRollback(t *testing.T) {
	ctx := context.Background()
	ns := startServer(t, nil)
	nc := connect(t, ns.ClientURL())
	c := startCoordinator(t, nc, nil)
	agents := startAgents(t, nc, 10, func(i int) map[string]string {
		return map[string]string{"zone": map[bool]string{true: "a", false: "b"}[i < 8]}
	})
	waitUp(t, c, 10)

	// Revision 1 to zone a (8 hosts) in waves 25/50/100.
	st, err := c.StartRollout(ctx, wire.RolloutRequest{
		Config:   &wire.FleetConfig{Comment: "v1", Filters: []wire.FilterSpec{{Name: "tcp", Expr: "proto == tcp"}}},
		Selector: map[string]string{"zone": "a"}, Waves: []int{25, 50, 100},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Waves) != 3 || len(st.Waves[0].Hosts) != 2 || len(st.Waves[1].Hosts) != 2 || len(st.Waves[2].Hosts) != 4 {
		t.Fatalf("waves %+v", st.Waves)
	}
	if _, err := c.StartRollout(ctx, wire.RolloutRequest{Revision: st.Revision}); !errors.Is(err, wire.ErrBusy) && st.State == wire.RolloutRunning {
		// A second rollout while one runs is refused (unless the first finished already).
		if c.Rollout().State == wire.RolloutRunning {
			t.Errorf("second rollout while running: %v", err)
		}
	}
	done := waitRollout(t, c, st.ID)
	if done.State != wire.RolloutDone {
		t.Fatalf("rollout 1: %+v", done)
	}
	for i, a := range agents {
		want := []uint64{1}
		if i >= 8 {
			want = nil
		}
		if got := a.host.Applied(); !slices.Equal(got, want) {
			t.Errorf("%s applied %v, want %v", a.agent.Host(), got, want)
		}
	}

	// Revision 2 fails on hv005: the wave containing it halts the rollout (threshold 0).
	agents[5].host.FailRevision(2)
	st2, err := c.StartRollout(ctx, wire.RolloutRequest{
		Config: &wire.FleetConfig{Comment: "v2"}, Selector: map[string]string{"zone": "a"}, Waves: []int{25, 50, 100},
	})
	if err != nil {
		t.Fatal(err)
	}
	done = waitRollout(t, c, st2.ID)
	if done.State != wire.RolloutHalted || done.CurrentWave != 2 || done.Waves[2].Failed != 1 {
		t.Fatalf("rollout 2 should halt in wave 3: %+v", done)
	}
	var failed *wire.HostResult
	for i := range done.Waves[2].Hosts {
		if h := &done.Waves[2].Hosts[i]; h.Error != nil {
			failed = h
		}
	}
	if failed == nil || failed.Host != "hv005" || failed.Error.Code != wire.CodeInvalidArgument {
		t.Fatalf("failed host %+v", failed)
	}
	status, _ := c.Status(ctx, nil)
	if status.Hosts[5].ConfigError == nil || status.Hosts[5].ConfigRevision != 1 {
		t.Errorf("status of hv005: %+v", status.Hosts[5])
	}

	// Rollback returns every host of rollout 2 to revision 1.
	rb, err := c.Rollback(ctx, wire.RollbackRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if rb.RollbackOf != st2.ID || rb.Kind != "rollback" {
		t.Fatalf("rollback %+v", rb)
	}
	if done := waitRollout(t, c, rb.ID); done.State != wire.RolloutDone {
		t.Fatalf("rollback: %+v", done)
	}
	for i, a := range agents[:8] {
		rev, _ := a.agent.Revision()
		if rev != 1 {
			t.Errorf("hv%03d runs %d after rollback, want 1", i, rev)
		}
	}
	if got := agents[0].host.Applied(); !slices.Equal(got, []uint64{1, 2, 1}) {
		t.Errorf("hv000 applied %v, want [1 2 1]", got)
	}
	if got := agents[5].host.Applied(); !slices.Equal(got, []uint64{1}) {
		t.Errorf("hv005 applied %v, want [1] (it never ran 2)", got)
	}
	hist, err := c.History(ctx, 10)
	if err != nil || len(hist.Rollouts) != 3 || len(hist.Revisions) != 2 || hist.Rollouts[0].Kind != "rollback" {
		t.Fatalf("history %+v, %v", hist, err)
	}
}

func TestRolloutHostDies(t *testing.T) {
	ctx := context.Background()
	ns := startServer(t, nil)
	nc := connect(t, ns.ClientURL())
	c := startCoordinator(t, nc, func(o *coordinator.Options) { o.AckTimeout = 3 * time.Second })
	agents := startAgents(t, nc, 5, nil)
	waitUp(t, c, 5)
	// In the second wave hv003 dies before applying, and hv004 hangs in its apply (alive).
	agents[3].host.SetApplyDelay(time.Hour)
	agents[4].host.SetApplyDelay(time.Hour)
	st, err := c.StartRollout(ctx, wire.RolloutRequest{Config: &wire.FleetConfig{Comment: "x"}, Waves: []int{60, 100}, MaxFailureRatio: 0.1})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "first wave done", func() bool { return c.Rollout().CurrentWave >= 1 })
	agents[3].stop(t)
	done := waitRollout(t, c, st.ID)
	if done.State != wire.RolloutHalted || done.Waves[0].Failed != 0 || done.Waves[1].Failed != 2 {
		t.Fatalf("state %+v", done)
	}
	results := map[string]wire.HostResult{}
	for _, h := range done.Waves[1].Hosts {
		results[h.Host] = h
	}
	if r := results["hv003"]; r.Acked || r.Error == nil || r.Error.Code != wire.CodeUnavailable || !strings.Contains(r.Error.Description, "went down") {
		t.Errorf("dead hv003: %+v", r)
	}
	if r := results["hv004"]; r.Acked || r.Error == nil || r.Error.Code != wire.CodeTimeout {
		t.Errorf("hanging hv004: %+v", r)
	}
}

// TestCoordinatorRestartResumesRollout stops the coordinator in the middle of a rollout; a new one
// over the same bucket resumes it and finishes, and keeps configs, history and snapshots.
func TestCoordinatorRestartResumesRollout(t *testing.T) {
	ctx := context.Background()
	ns := startServer(t, nil)
	nc := connect(t, ns.ClientURL())
	c1 := startCoordinator(t, nc, nil)
	agents := startAgents(t, nc, 6, nil)
	waitUp(t, c1, 6)
	for _, a := range agents[3:] {
		a.host.SetApplyDelay(300 * time.Millisecond) // the last wave is slow
	}
	snap, err := c1.Snapshot(ctx, wire.SnapshotRequest{})
	if err != nil || !snap.Complete {
		t.Fatalf("snapshot %+v %v", snap, err)
	}
	st, err := c1.StartRollout(ctx, wire.RolloutRequest{Config: &wire.FleetConfig{Comment: "resume me"}, Waves: []int{50, 100}})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "second wave started", func() bool { return c1.Rollout().CurrentWave == 1 })
	c1.stop(t)
	if st := c1.Rollout(); st.State != wire.RolloutRunning {
		t.Fatalf("stopped coordinator's rollout state %s, want running", st.State)
	}

	nc2 := connect(t, ns.ClientURL())
	c2 := startCoordinator(t, nc2, nil)
	done := waitRollout(t, c2, st.ID)
	if done.State != wire.RolloutDone {
		t.Fatalf("resumed rollout: %+v", done)
	}
	for _, a := range agents {
		if rev, _ := a.agent.Revision(); rev != st.Revision {
			t.Errorf("%s runs %d", a.agent.Host(), rev)
		}
		if got := a.host.Applied(); len(got) != 1 {
			t.Errorf("%s applied %v: a resumed rollout must not apply twice", a.agent.Host(), got)
		}
	}
	c3 := startCoordinator(t, connect(t, ns.ClientURL()), nil) // a third one, with nothing running
	if r := c3.Rollout(); r == nil || r.ID != st.ID || r.State != wire.RolloutDone {
		t.Errorf("latest rollout after a restart: %+v", r)
	}
	cfg, err := c2.GetConfig(ctx, 0)
	if err != nil || cfg.Comment != "resume me" {
		t.Errorf("config after restart %+v %v", cfg, err)
	}
	got, err := c2.GetSnapshot(ctx, snap.ID)
	if err != nil || !slices.EqualFunc(got.Hosts, snap.Hosts, func(a, b wire.HostCut) bool { return slices.Equal(a.Tails, b.Tails) }) {
		t.Errorf("snapshot after restart %+v %v", got, err)
	}
	snap2, err := c2.Snapshot(ctx, wire.SnapshotRequest{})
	if err != nil || snap2.ID <= snap.ID {
		t.Errorf("epochs must keep growing across restarts: %d then %+v %v", snap.ID, snap2, err)
	}
}

func TestSnapshotsAndPinnedQueries(t *testing.T) {
	ctx := context.Background()
	ns := startServer(t, nil)
	nc := connect(t, ns.ClientURL())
	c := startCoordinator(t, nc, nil)
	agents := startAgents(t, nc, 3, nil)
	waitUp(t, c, 3)
	for i, a := range agents {
		for j := range 10 {
			a.host.Append(j, uint64(i*100+j), float64(j))
		}
	}
	snap, err := c.Snapshot(ctx, wire.SnapshotRequest{})
	if err != nil || !snap.Complete || len(snap.Hosts) != 3 || snap.CutTime == 0 {
		t.Fatalf("snapshot %+v %v", snap, err)
	}
	for _, hc := range snap.Hosts {
		if hc.Tails[0]+hc.Tails[1] != 10 {
			t.Errorf("%s tails %v", hc.Host, hc.Tails)
		}
	}
	for _, a := range agents {
		if frozen, _, releases := a.host.Frozen(); frozen || releases != 1 {
			t.Errorf("%s frozen=%v releases=%d after snapshot", a.agent.Host(), frozen, releases)
		}
		a.host.Append(0, 999, 1000) // after the snapshot
	}
	count := func(snapID uint64) *wire.FleetQueryReply {
		t.Helper()
		r, err := c.Query(ctx, wire.FleetQueryRequest{Aggregate: &wire.AggregateRequest{Func: "COUNT(*)"}, Snapshot: snapID})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := count(snap.ID); r.Aggregate.Value != 30 || r.Consistency != wire.ConsistencyAtomic || r.Snapshot != snap.ID || r.Partial {
		t.Errorf("pinned count %+v %+v", r, r.Aggregate)
	}
	if r := count(0); r.Aggregate.Value != 33 || r.Consistency != wire.ConsistencyBestEffort {
		t.Errorf("unpinned count %+v %+v", r, r.Aggregate)
	}
	r, err := c.Query(ctx, wire.FleetQueryRequest{Aggregate: &wire.AggregateRequest{Func: "COUNT(*)", To: wire.Time(snap.CutTime)}})
	if err != nil || r.Consistency != wire.ConsistencyTimeCut || r.Aggregate.Value != 30 {
		t.Errorf("time cut %+v %v", r, err)
	}
	list, err := c.Snapshots(ctx, 0)
	if err != nil || len(list.Snapshots) != 1 || list.Snapshots[0].ID != snap.ID {
		t.Errorf("snapshot history %+v %v", list, err)
	}
	if _, err := c.Query(ctx, wire.FleetQueryRequest{Aggregate: &wire.AggregateRequest{Func: "COUNT(*)"}, Snapshot: 42}); !errors.Is(err, wire.ErrNotFound) {
		t.Errorf("unknown snapshot: %v", err)
	}
}

// TestSnapshotHostDies: a host that does not answer begin makes the snapshot incomplete, names it,
// and every host that froze is released; queries cannot be pinned to it.
func TestSnapshotHostDies(t *testing.T) {
	ctx := context.Background()
	ns := startServer(t, nil)
	nc := connect(t, ns.ClientURL())
	c := startCoordinator(t, nc, func(o *coordinator.Options) { o.SnapshotTimeout = 300 * time.Millisecond })
	agents := startAgents(t, nc, 3, nil)
	waitUp(t, c, 3)
	agents[1].stop(t)
	snap, err := c.Snapshot(ctx, wire.SnapshotRequest{Hosts: []string{"hv000", "hv001", "hv002"}})
	if err != nil {
		t.Fatal(err)
	}
	if snap.Complete || !slices.Equal(snap.Missing, []string{"hv001"}) || len(snap.Hosts) != 2 {
		t.Fatalf("snapshot %+v", snap)
	}
	for _, a := range []*simAgent{agents[0], agents[2]} {
		eventually(t, a.agent.Host()+" released", func() bool { frozen, _, rel := a.host.Frozen(); return !frozen && rel == 1 })
	}
	_, err = c.Query(ctx, wire.FleetQueryRequest{Aggregate: &wire.AggregateRequest{Func: "COUNT(*)"}, Snapshot: snap.ID})
	if !errors.Is(err, wire.ErrInvalidArgument) {
		t.Errorf("query pinned to an incomplete snapshot: %v", err)
	}
}

// TestCoordinatorDiesMidSnapshot: the coordinator stops between begin and end; every host is
// released by its lease, and a new coordinator's snapshots use newer epochs.
func TestCoordinatorDiesMidSnapshot(t *testing.T) {
	ns := startServer(t, nil)
	nc := connect(t, ns.ClientURL())
	const lease = 400 * time.Millisecond
	c := startCoordinator(t, nc, func(o *coordinator.Options) {
		o.SnapshotLease, o.SnapshotTimeout, o.SnapshotEndDelay = lease, 300*time.Millisecond, time.Hour
	})
	agents := startAgents(t, nc, 3, nil)
	waitUp(t, c, 3)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Snapshot(context.Background(), wire.SnapshotRequest{})
		errc <- err
	}()
	eventually(t, "all hosts frozen", func() bool {
		for _, a := range agents {
			if _, ok := a.agent.FrozenEpoch(); !ok {
				return false
			}
		}
		return true
	})
	c.stop(t) // dies before phase two
	if err := <-errc; err == nil {
		t.Error("snapshot of a stopped coordinator succeeded")
	}
	for _, a := range agents {
		eventually(t, a.agent.Host()+" released by lease", func() bool {
			_, _, _, expired := a.agent.Counters()
			frozen, _, _ := a.host.Frozen()
			return expired == 1 && !frozen
		})
	}
	c2 := startCoordinator(t, connect(t, ns.ClientURL()), nil)
	waitUp(t, c2, 3)
	snap, err := c2.Snapshot(context.Background(), wire.SnapshotRequest{})
	if err != nil || !snap.Complete || snap.ID != 2 {
		t.Errorf("snapshot after restart %+v %v (want epoch 2)", snap, err)
	}
}

func TestFleetQueryMerge(t *testing.T) {
	ctx := context.Background()
	ns := startServer(t, nil)
	nc := connect(t, ns.ClientURL())
	c := startCoordinator(t, nc, func(o *coordinator.Options) { o.QueryTimeout = 500 * time.Millisecond })
	agents := startAgents(t, nc, 3, nil)
	waitUp(t, c, 3)
	// Interleaved timestamps across hosts: host i holds ts = base + 3*k + i with value = 10*i + k.
	base := time.Now().Add(-time.Hour).UnixNano()
	for i, a := range agents {
		for k := range 4 {
			a.host.AppendAt(k, base+int64(3*k+i), uint64(3*k+i), float64(10*i+k))
		}
		a.host.AddAlert(wire.Alert{Host: a.agent.Host(), Trigger: "syn", WindowStart: time.Unix(0, base+int64(i)), Seq: 1})
	}
	r, err := c.Query(ctx, wire.FleetQueryRequest{Query: &wire.QueryRequest{Limit: 5}})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Rows) != 5 || !r.Truncated || r.Partial {
		t.Fatalf("rows %+v", r)
	}
	for j, row := range r.Rows {
		id := fmt.Sprint(row[2])
		if id != fmt.Sprint(j) || r.RowHosts[j] != fmt.Sprintf("hv%03d", j%3) {
			t.Errorf("row %d = %v from %s, want id %d from hv%03d", j, row, r.RowHosts[j], j, j%3)
		}
	}
	// Values: host0 {0,1,2,3}, host1 {10..13}, host2 {20..23}.
	for fn, want := range map[string]float64{"SUM(value)": 6 + 46 + 86, "COUNT(*)": 12, "MIN(value)": 0, "MAX(value)": 23, "AVG(value)": 138.0 / 12} {
		r, err := c.Query(ctx, wire.FleetQueryRequest{Aggregate: &wire.AggregateRequest{Func: fn}})
		if err != nil || r.Aggregate.Value != want || r.Aggregate.Count != 12 {
			t.Errorf("%s = %+v %v, want %v", fn, r.Aggregate, err, want)
		}
	}
	// AVG must weight by count: host0 has 1 matching record, the others none.
	r, err = c.Query(ctx, wire.FleetQueryRequest{Aggregate: &wire.AggregateRequest{Func: "AVG(value)", Expr: "id == 3"}})
	if err != nil || r.Aggregate.Value != 1 || r.Aggregate.Count != 1 {
		t.Errorf("AVG over one host = %+v %v", r.Aggregate, err)
	}
	r, err = c.Query(ctx, wire.FleetQueryRequest{Aggregate: &wire.AggregateRequest{Func: "MIN(value)", Expr: "id == 4"}})
	if err != nil || r.Aggregate.Value != 11 || r.Aggregate.Count != 1 {
		t.Errorf("MIN ignoring empty hosts = %+v %v", r.Aggregate, err)
	}
	r, err = c.Query(ctx, wire.FleetQueryRequest{Alerts: &wire.AlertsRequest{}})
	if err != nil || len(r.Alerts) != 3 || r.Alerts[0].Host != "hv000" || r.Alerts[2].Host != "hv002" {
		t.Errorf("alerts %+v %v", r, err)
	}
	// A bad expression is a per-host error, named.
	r, err = c.Query(ctx, wire.FleetQueryRequest{Query: &wire.QueryRequest{Expr: "bogus"}})
	if err != nil || !r.Partial || len(r.Errors) != 3 || r.Errors["hv001"].Code != wire.CodeInvalidExpr {
		t.Errorf("bad expr %+v %v", r, err)
	}
	// A dead host makes the answer partial and is named.
	agents[2].stop(t)
	r, err = c.Query(ctx, wire.FleetQueryRequest{Hosts: []string{"hv000", "hv001", "hv002"}, Aggregate: &wire.AggregateRequest{Func: "COUNT(*)"}})
	if err != nil || !r.Partial || !slices.Equal(r.Missing, []string{"hv002"}) || r.Aggregate.Value != 8 {
		t.Errorf("partial %+v %v", r, err)
	}
	if _, err := c.Query(ctx, wire.FleetQueryRequest{}); !errors.Is(err, wire.ErrInvalidArgument) {
		t.Errorf("empty request: %v", err)
	}
}

// TestAtomicCut: a sender appends a packet's send record on host A before the receive record on
// host B, continuously; for every snapshot, every packet whose receive record is inside the cut
// has its send record inside the cut.
func TestAtomicCut(t *testing.T) {
	ctx := context.Background()
	ns := startServer(t, nil)
	nc := connect(t, ns.ClientURL())
	c := startCoordinator(t, nc, func(o *coordinator.Options) { o.QueryTimeout = 30 * time.Second })
	// Fault injection that makes the race certain: right after the sender froze, one packet is
	// sent (appended on the sender, then on the receiver), and only then may the receiver freeze.
	// Without the cut time that packet would be received inside the cut and sent outside it.
	var nextID atomic.Uint64
	var a, b *simAgent
	token := make(chan struct{}, 1)
	injected := 0
	a = startAgent(t, nc, "a-sender", nil, func(o *fleet.Options) {
		inner := o.Freezer
		o.Freezer = freezerFunc(func() (fleet.Frozen, func()) {
			f, release := inner.Freeze()
			id := nextID.Add(1)
			a.host.Append(int(id), id, 0)
			b.host.Append(int(id), id, 1)
			injected++
			select {
			case token <- struct{}{}:
			default:
			}
			return f, release
		})
	})
	b = startAgent(t, nc, "b-receiver", nil, func(o *fleet.Options) {
		inner := o.Freezer
		o.Freezer = freezerFunc(func() (fleet.Frozen, func()) {
			select {
			case <-token:
			case <-time.After(2 * time.Second):
				t.Error("the sender never froze before the receiver")
			}
			return inner.Freeze()
		})
	})
	waitUp(t, c, 2)
	hosts := []string{"a-sender", "b-receiver"}
	checked, total := 0, 0
	for range 10 {
		// A burst of traffic runs while the snapshot is taken.
		burst := make(chan struct{})
		go func() {
			defer close(burst)
			for i := range 500 {
				id := nextID.Add(1)
				a.host.Append(int(id), id, 0) // send record
				b.host.Append(int(id), id, 1) // receive record, after the send
				if i%50 == 0 {
					time.Sleep(100 * time.Microsecond)
				}
			}
		}()
		snap, err := c.Snapshot(ctx, wire.SnapshotRequest{Hosts: hosts})
		<-burst
		total += 500
		if err != nil || !snap.Complete {
			t.Fatalf("snapshot %+v %v", snap, err)
		}
		ids := func(host string) map[uint64]bool {
			r, err := c.Query(ctx, wire.FleetQueryRequest{Hosts: []string{host}, Snapshot: snap.ID, Query: &wire.QueryRequest{}})
			if err != nil || r.Partial || r.Consistency != wire.ConsistencyAtomic {
				t.Fatalf("pinned query %+v %v", r, err)
			}
			out := map[uint64]bool{}
			for _, row := range r.Rows {
				var id uint64
				fmt.Sscan(fmt.Sprint(row[2]), &id)
				out[id] = true
			}
			return out
		}
		sends, recvs := ids("a-sender"), ids("b-receiver")
		for id := range recvs {
			if !sends[id] {
				t.Fatalf("snapshot %d: packet %d received inside the cut but sent outside it", snap.ID, id)
			}
		}
		checked += len(recvs)
	}
	if checked == 0 {
		t.Fatalf("no traffic inside the cuts (sent %d)", total)
	}
	if injected != 10 {
		t.Errorf("%d packets injected between the freezes, want 10", injected)
	}
	t.Logf("checked %d received packets across 10 cuts; %d sent", checked, total)
}

type freezerFunc func() (fleet.Frozen, func())

func (f freezerFunc) Freeze() (fleet.Frozen, func()) { return f() }
