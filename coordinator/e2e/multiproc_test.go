package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/confluo-go/confluo/pkg/fleet"
	"github.com/confluo-go/confluo/pkg/fleet/fleetsim"
	"github.com/confluo-go/confluo/pkg/wire"
)

// The test binary re-executes itself as a fleet agent when childEnv names a host.
const (
	childEnv        = "CONFLUO_E2E_AGENT_HOST"
	childURLEnv     = "CONFLUO_E2E_NATS_URL"
	childRecordsEnv = "CONFLUO_E2E_RECORDS"
	childUserEnv    = "CONFLUO_E2E_NATS_USER"
)

// childMain runs one agent over a simulated host holding N records (value = index) until stdin
// closes. It prints "ready" once the agent is serving.
func childMain(host string) int {
	opts := []nats.Option{nats.Name("agent-" + host), nats.CustomInboxPrefix(fleet.InboxPrefix(host))}
	if u := os.Getenv(childUserEnv); u != "" {
		opts = append(opts, nats.UserInfo(u, u))
	}
	nc, err := nats.Connect(os.Getenv(childURLEnv), opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "connect:", err)
		return 2
	}
	defer nc.Close()
	n, _ := strconv.Atoi(os.Getenv(childRecordsEnv))
	h := fleetsim.NewHost(host, 2)
	for i := range n {
		h.Append(i, uint64(i), float64(i))
	}
	a, err := fleet.NewAgent(nc, fleet.Options{Host: host, Labels: map[string]string{"proc": "child"}, Applier: h, Freezer: h,
		Responder: h, HeartbeatInterval: fastHeartbeat, RetryInterval: 50 * time.Millisecond})
	if err != nil {
		fmt.Fprintln(os.Stderr, "agent:", err)
		return 2
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	fmt.Println("ready")
	if err := <-done; err != nil {
		fmt.Fprintln(os.Stderr, "run:", err)
		return 1
	}
	return 0
}

type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
}

func startChild(t *testing.T, url, host string, records int, user string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+host, childURLEnv+"="+url, childRecordsEnv+"="+strconv.Itoa(records), childUserEnv+"="+user)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ch := &child{cmd: cmd, stdin: stdin}
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("child %s: %q %v", host, line, err)
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	return ch
}

// TestMultiProcess runs three agents as separate processes: registry, rollout, snapshot and a
// merged query; then one process is killed (SIGKILL) and the next query names it missing.
func TestMultiProcess(t *testing.T) {
	ctx := context.Background()
	ns := startServer(t, nil)
	nc := connect(t, ns.ClientURL())
	c := startCoordinator(t, nc, nil)
	var children []*child
	for i := range 3 {
		children = append(children, startChild(t, ns.ClientURL(), fmt.Sprintf("proc%d", i), 10*(i+1), ""))
	}
	waitUp(t, c, 3)
	st, err := c.StartRollout(ctx, wire.RolloutRequest{Config: &wire.FleetConfig{Comment: "multi"}, Waves: []int{34, 100}})
	if err != nil {
		t.Fatal(err)
	}
	if done := waitRollout(t, c, st.ID); done.State != wire.RolloutDone {
		t.Fatalf("rollout %+v", done)
	}
	eventually(t, "status shows revision", func() bool {
		s, _ := c.Status(ctx, map[string]string{"proc": "child"})
		for _, h := range s.Hosts {
			if h.ConfigRevision != st.Revision {
				return false
			}
		}
		return len(s.Hosts) == 3
	})
	snap, err := c.Snapshot(ctx, wire.SnapshotRequest{})
	if err != nil || !snap.Complete {
		t.Fatalf("snapshot %+v %v", snap, err)
	}
	r, err := c.Query(ctx, wire.FleetQueryRequest{Snapshot: snap.ID, Aggregate: &wire.AggregateRequest{Func: "COUNT(*)"}})
	if err != nil || r.Aggregate.Value != 60 || r.Consistency != wire.ConsistencyAtomic {
		t.Fatalf("count %+v %v", r, err)
	}
	if err := children[1].cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	r, err = c.Query(ctx, wire.FleetQueryRequest{Hosts: []string{"proc0", "proc1", "proc2"}, Aggregate: &wire.AggregateRequest{Func: "SUM(value)"},
		TimeoutMillis: 500})
	if err != nil || !r.Partial || len(r.Missing) != 1 || r.Missing[0] != "proc1" || r.Aggregate.Value != 45+435 {
		t.Fatalf("after kill %+v %v", r, err)
	}
	eventually(t, "proc1 down", func() bool {
		s, _ := c.Status(ctx, nil)
		return s.Down == 1 && !s.Hosts[1].Up
	})
}
