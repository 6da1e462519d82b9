package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/confluo-go/confluo/coordinator"
	"github.com/confluo-go/confluo/pkg/fleet"
	"github.com/confluo-go/confluo/pkg/wire"
)

// TestSecurity runs the fleet on a server with per-host permissions: the whole protocol works
// (heartbeats, KV-watched rollout, snapshots, queries), and host hvA can neither impersonate hvB
// nor send commands.
func TestSecurity(t *testing.T) {
	ctx := context.Background()
	users := []*server.User{{Username: "coord", Password: "coord", Permissions: coordinator.CoordinatorPermissions()},
		{Username: "op", Password: "op", Permissions: coordinator.OperatorPermissions()}}
	for _, h := range []string{"hvA", "hvB"} {
		p, err := coordinator.HostPermissions(h, wire.FleetBucket)
		if err != nil {
			t.Fatal(err)
		}
		users = append(users, &server.User{Username: h, Password: h, Permissions: p})
	}
	ns := startServer(t, &server.Options{Users: users})
	if _, err := nats.Connect(ns.ClientURL()); err == nil {
		t.Fatal("anonymous connection accepted")
	}
	c := startCoordinator(t, connect(t, ns.ClientURL(), nats.UserInfo("coord", "coord")), nil)

	violations := make(chan string, 64)
	hostConn := func(h string) *nats.Conn {
		return connect(t, ns.ClientURL(), nats.UserInfo(h, h), nats.CustomInboxPrefix(fleet.InboxPrefix(h)),
			nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
				if strings.Contains(err.Error(), "Permissions Violation") {
					violations <- h + ": " + err.Error()
				}
			}))
	}
	ncA, ncB := hostConn("hvA"), hostConn("hvB")
	a := startAgent(t, ncA, "hvA", nil, nil)
	b := startAgent(t, ncB, "hvB", nil, nil)
	waitUp(t, c, 2)

	// The protocol works under the permissions.
	st, err := c.StartRollout(ctx, wire.RolloutRequest{Config: &wire.FleetConfig{Comment: "secure"}, Waves: []int{100}})
	if err != nil {
		t.Fatal(err)
	}
	if done := waitRollout(t, c, st.ID); done.State != wire.RolloutDone {
		t.Fatalf("rollout under permissions: %+v", done)
	}
	snap, err := c.Snapshot(ctx, wire.SnapshotRequest{})
	if err != nil || !snap.Complete {
		t.Fatalf("snapshot under permissions: %+v %v", snap, err)
	}
	a.host.Append(0, 1, 5)
	b.host.Append(0, 2, 7)
	r, err := c.Query(ctx, wire.FleetQueryRequest{Aggregate: &wire.AggregateRequest{Func: "SUM(value)"}})
	if err != nil || r.Partial || r.Aggregate.Value != 12 {
		t.Fatalf("query under permissions: %+v %v", r, err)
	}
	select {
	case v := <-violations:
		t.Fatalf("the normal protocol hit a permission violation: %s", v)
	default:
	}

	// hvA tries to speak for hvB or to command anyone: every attempt is refused by the server.
	hb, _ := json.Marshal(wire.AgentHeartbeat{Heartbeat: wire.Heartbeat{Host: "hvX", Time: time.Now()}})
	ack, _ := json.Marshal(wire.ConfigAck{Host: "hvB", Revision: 99, Rollout: "r1"})
	begin, _ := json.Marshal(wire.SnapshotBegin{Epoch: 1000, LeaseMillis: 60_000})
	for _, attempt := range []struct{ subject, body string }{
		{"confluo.v1.heartbeat.hvX", string(hb)},
		{"confluo.v1.heartbeat.hvB", string(hb)},
		{"confluo.v1.ack.hvB", string(ack)},
		{"confluo.v1.alerts.hvB.syn", "{}"},
		{"confluo.v1.events.flow.hvB", "{}"},
		{"confluo.v1.agent.hvB.snapshot-begin", string(begin)},
		{"confluo.v1.host.hvB.filter-add", "{}"},
		{"confluo.v1.coordinator.rollback", "{}"},
		{"$KV." + wire.FleetBucket + ".host.hvB", `{"revision":1}`},
		{"$JS.API.STREAM.DELETE.KV_" + wire.FleetBucket, ""},
	} {
		if err := ncA.Publish(attempt.subject, []byte(attempt.body)); err != nil {
			t.Fatal(err)
		}
		_ = ncA.Flush()
		select {
		case v := <-violations:
			if !strings.Contains(v, attempt.subject) {
				t.Errorf("publish to %s: violation %q names another subject", attempt.subject, v)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("hvA published to %s without a permission violation", attempt.subject)
		}
	}
	// Subscribing to another host's commands is refused too.
	if _, err := ncA.Subscribe("confluo.v1.agent.hvB.*", func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	_ = ncA.Flush()
	select {
	case v := <-violations:
		if !strings.Contains(v, "confluo.v1.agent.hvB") {
			t.Errorf("subscribe violation %q", v)
		}
	case <-time.After(10 * time.Second):
		t.Error("hvA subscribed to hvB's commands")
	}

	// Nothing of it reached anyone: no hvX, hvB not frozen, the bucket still says revision 1.
	status, err := c.Status(ctx, nil)
	if err != nil || len(status.Hosts) != 2 {
		t.Fatalf("registry after impersonation attempts: %+v %v", status, err)
	}
	if _, frozen := b.agent.FrozenEpoch(); frozen {
		t.Error("hvB frozen by hvA")
	}
	if rev, _ := b.agent.Revision(); rev != st.Revision {
		t.Errorf("hvB runs %d", rev)
	}
	// The operator user reaches the coordinator API.
	op := connect(t, ns.ClientURL(), nats.UserInfo("op", "op"))
	msg, err := op.Request(wire.CoordinatorSubject(wire.CoordStatus), []byte("{}"), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var resp wire.Response
	if err := json.Unmarshal(msg.Data, &resp); err != nil || resp.Error != nil {
		t.Fatalf("operator status: %s %v", msg.Data, err)
	}
	if cfg := coordinator.AuthorizationConfig([]coordinator.User{{Name: "hvA", Password: "x", Permissions: users[2].Permissions}}); !strings.Contains(cfg, `"confluo.v1.heartbeat.hvA"`) {
		t.Errorf("authorization config:\n%s", cfg)
	}
}
