package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/confluo-go/confluo/coordinator"
	"github.com/confluo-go/confluo/coordinator/cli"
	"github.com/confluo-go/confluo/pkg/fleet"
	"github.com/confluo-go/confluo/pkg/fleet/fleetsim"
	"github.com/confluo-go/confluo/pkg/natstest"
	"github.com/confluo-go/confluo/pkg/wire"
)

func run(t *testing.T, url string, args ...string) (string, error) {
	t.Helper()
	cmd := cli.NewFleetCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(append(args, "--nats-url", url, "--timeout", "20s"))
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func TestFleetCommands(t *testing.T) {
	ns := natstest.Start(t, &server.Options{JetStream: true})
	url := ns.ClientURL()

	if _, err := run(t, url, "status"); err == nil || !strings.Contains(err.Error(), "no coordinator") {
		t.Errorf("status without a coordinator: %v", err)
	}

	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	opts := coordinator.DefaultOptions()
	opts.Conn, opts.HeartbeatInterval = nc, 50*time.Millisecond
	c, err := coordinator.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	<-c.Ready()
	hosts := map[string]*fleetsim.Host{}
	for _, name := range []string{"hv1", "hv2"} {
		h := fleetsim.NewHost(name, 1)
		h.Append(0, 1, 2)
		hosts[name] = h
		a, err := fleet.NewAgent(nc, fleet.Options{Host: name, Labels: map[string]string{"zone": "z1"}, Applier: h, Freezer: h,
			Responder: h, HeartbeatInterval: 50 * time.Millisecond, RetryInterval: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		actx, acancel := context.WithCancel(context.Background())
		adone := make(chan error, 1)
		go func() { adone <- a.Run(actx) }()
		defer func() { acancel(); <-adone }()
	}
	for i := 0; ; i++ {
		st, err := c.Status(context.Background(), nil)
		if err == nil && st.Up == 2 {
			break
		}
		if i > 1000 {
			t.Fatal("hosts never came up")
		}
		time.Sleep(10 * time.Millisecond)
	}

	out, err := run(t, url, "status")
	if err != nil || !strings.Contains(out, "hv1") || !strings.Contains(out, "2 up, 0 down") {
		t.Fatalf("status: %v\n%s", err, out)
	}
	cfg := filepath.Join(t.TempDir(), "fleet.yaml")
	if err := os.WriteFile(cfg, []byte("comment: from yaml\nfilters:\n  - name: tcp\n    expr: proto == tcp\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = run(t, url, "rollout", "-f", cfg, "--selector", "zone=z1", "--waves", "50,100", "--wait")
	if err != nil || !strings.Contains(out, "state done") {
		t.Fatalf("rollout: %v\n%s", err, out)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	_ = os.WriteFile(bad, []byte("filtres: []\n"), 0o644)
	if _, err := run(t, url, "rollout", "-f", bad); err == nil || !strings.Contains(err.Error(), "filtres") {
		t.Errorf("unknown key: %v", err)
	}
	if _, err := run(t, url, "rollout"); !errors.Is(err, cli.ErrUsage) {
		t.Errorf("rollout without config: %v", err)
	}
	if _, err := run(t, url, "rollout", "--revision", "99"); !errors.Is(err, wire.ErrNotFound) {
		t.Errorf("rollout of a missing revision: %v", err)
	}
	out, err = run(t, url, "history", "-o", "json")
	var h wire.History
	if err != nil || json.Unmarshal([]byte(out), &h) != nil || len(h.Rollouts) != 1 || h.Revisions[0].Comment != "from yaml" ||
		h.Revisions[0].Filters[0].Expr != "proto == tcp" {
		t.Fatalf("history: %v\n%s", err, out)
	}
	out, err = run(t, url, "snapshot", "-o", "json")
	var snap wire.SnapshotRecord
	if err != nil || json.Unmarshal([]byte(out), &snap) != nil || !snap.Complete {
		t.Fatalf("snapshot: %v\n%s", err, out)
	}
	out, err = run(t, url, "query", "--aggregate", "SUM(value)", "--snapshot", "1")
	if err != nil || !strings.Contains(out, "SUM(value) = 4 over 2 records") || !strings.Contains(out, "atomic_snapshot") {
		t.Fatalf("query: %v\n%s", err, out)
	}
	out, err = run(t, url, "query", "--limit", "1")
	if err != nil || !strings.Contains(out, "best_effort; 2 of 2 hosts answered") {
		t.Fatalf("records query: %v\n%s", err, out)
	}
	if out, err = run(t, url, "snapshots"); err != nil || !strings.Contains(out, "true") {
		t.Fatalf("snapshots: %v\n%s", err, out)
	}
	out, err = run(t, url, "rollback", "--wait")
	if err == nil {
		t.Errorf("rollback of a first rollout (no previous revision) succeeded:\n%s", out)
	}
	if _, err := run(t, url, "status", "--selector", "zone"); !errors.Is(err, cli.ErrUsage) {
		t.Errorf("bad selector: %v", err)
	}
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
