package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/confluo-go/confluo/pkg/wire"
)

// TestBadInput: malformed heartbeats, acks, API requests and host replies give coded errors or
// are counted and dropped; nothing crashes and the registry keeps only real hosts.
func TestBadInput(t *testing.T) {
	ctx := context.Background()
	ns := startServer(t, nil)
	nc := connect(t, ns.ClientURL())
	c := startCoordinator(t, nc, nil)
	startAgents(t, nc, 1, nil)
	waitUp(t, c, 1)

	for subj, body := range map[string]string{
		"confluo.v1.heartbeat.hvX":   "{not json",
		"confluo.v1.heartbeat.hvY":   `{"host":"someone-else"}`,
		"confluo.v1.heartbeat.hv000": `{"host":"hv000","labels":7}`,
		"confluo.v1.ack.hv000":       `[1,2]`,
		"confluo.v1.ack.hvZ":         `{"host":"hv000","revision":1}`,
	} {
		if err := nc.Publish(subj, []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	// A fake host whose agent answers garbage.
	sub, err := nc.Subscribe("confluo.v1.agent.liar.*", func(m *nats.Msg) { _ = m.Respond([]byte("garbage")) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()

	api := func(op wire.CoordinatorOp, body string) *wire.Error {
		t.Helper()
		m, err := nc.Request(wire.CoordinatorSubject(op), []byte(body), 10*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", op, err)
		}
		var resp wire.Response
		if err := json.Unmarshal(m.Data, &resp); err != nil {
			t.Fatalf("%s: reply %q: %v", op, m.Data, err)
		}
		return resp.Error
	}
	for _, tc := range []struct {
		op   wire.CoordinatorOp
		body string
		code wire.Code
	}{
		{"nope", "{}", wire.CodeUnknownCommand},
		{wire.CoordRollout, "{", wire.CodeBadRequest},
		{wire.CoordRollout, `{"revison":1}`, wire.CodeBadRequest},
		{wire.CoordRollout, `{}`, wire.CodeInvalidArgument},
		{wire.CoordRollout, `{"revision":1}`, wire.CodeNotFound},
		{wire.CoordRollout, `{"config":{},"waves":[50]}`, wire.CodeInvalidArgument},
		{wire.CoordRollout, `{"config":{},"max_failure_ratio":2}`, wire.CodeInvalidArgument},
		{wire.CoordRollout, `{"config":{},"selector":{"zone":"mars"}}`, wire.CodeNotFound},
		{wire.CoordConfigPut, `{"filters":[{"name":"a.b"}]}`, wire.CodeInvalidArgument},
		{wire.CoordConfigGet, `{"revision":42}`, wire.CodeNotFound},
		{wire.CoordRollback, `{"rollout":"r999"}`, wire.CodeNotFound},
		{wire.CoordSnapshot, `{"hosts":["a.b"]}`, wire.CodeInvalidArgument},
		{wire.CoordQuery, `{}`, wire.CodeInvalidArgument},
		{wire.CoordQuery, `{"alerts":{},"snapshot":1}`, wire.CodeInvalidArgument},
		{wire.CoordQuery, `{"query":{"cursor":"x"}}`, wire.CodeInvalidArgument},
		{wire.CoordQuery, `{"aggregate":{"func":"MEDIAN(x)"}}`, wire.CodeInvalidExpr},
		{wire.CoordStatus, strings.Repeat(" ", wire.MaxRequestBytes+1), wire.CodeTooLarge},
	} {
		if werr := api(tc.op, tc.body); werr == nil || werr.Code != tc.code {
			t.Errorf("%s %.60s: %v, want %s", tc.op, tc.body, werr, tc.code)
		}
	}
	r, err := c.Query(ctx, wire.FleetQueryRequest{Hosts: []string{"hv000", "liar", "ghost"}, Aggregate: &wire.AggregateRequest{Func: "COUNT(*)"}, TimeoutMillis: 300})
	if err != nil || !r.Partial || r.Errors["liar"] == nil || r.Errors["liar"].Code != wire.CodeBadRequest ||
		len(r.Missing) != 1 || r.Missing[0] != "ghost" || len(r.Answered) != 1 {
		t.Fatalf("query with a lying and a missing host: %+v %v", r, err)
	}
	snap, err := c.Snapshot(ctx, wire.SnapshotRequest{Hosts: []string{"hv000", "liar"}})
	if err != nil || snap.Complete || len(snap.Missing) != 1 || snap.Missing[0] != "liar" {
		t.Fatalf("snapshot with a lying host: %+v %v", snap, err)
	}
	st, err := c.Status(ctx, nil)
	if err != nil || len(st.Hosts) != 1 || st.Hosts[0].Host != "hv000" || !st.Hosts[0].Up {
		t.Fatalf("registry after garbage: %+v %v", st, err)
	}
}
