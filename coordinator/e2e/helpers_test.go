// Package e2e tests the coordinator end to end: an embedded nats-server with JetStream (Port -1,
// store in a temp dir), a real Coordinator, and fleet agents over simulated hosts, in process and
// as separate processes.
package e2e

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/confluo-go/confluo/coordinator"
	"github.com/confluo-go/confluo/pkg/fleet"
	"github.com/confluo-go/confluo/pkg/fleet/fleetsim"
	"github.com/confluo-go/confluo/pkg/natstest"
	"github.com/confluo-go/confluo/pkg/wire"
)

// tb is what helpers need from *testing.T and *testing.B.
type tb interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Errorf(format string, args ...any)
	TempDir() string
	Cleanup(func())
}

const fastHeartbeat = 50 * time.Millisecond

func startServer(t tb, opts *server.Options) *server.Server {
	t.Helper()
	if opts == nil {
		opts = &server.Options{}
	}
	opts.JetStream = true
	if opts.MaxPayload == 0 {
		opts.MaxPayload = 8 << 20
	}
	return natstest.Start(t, opts)
}

func connect(t tb, url string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// runningCoordinator is a coordinator started in a goroutine.
type runningCoordinator struct {
	*coordinator.Coordinator
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

func (rc *runningCoordinator) stop(t tb) {
	rc.once.Do(func() {
		rc.cancel()
		if err := <-rc.done; err != nil {
			t.Errorf("coordinator Run: %v", err)
		}
	})
}

func startCoordinator(t tb, nc *nats.Conn, tweak func(*coordinator.Options)) *runningCoordinator {
	t.Helper()
	opts := coordinator.DefaultOptions()
	opts.Conn = nc
	opts.HeartbeatInterval = fastHeartbeat
	opts.MissedHeartbeats = 10 // 2 shared cores under -race: heartbeats can be late
	opts.AckTimeout = 5 * time.Second
	opts.SnapshotLease = 3 * time.Second
	if tweak != nil {
		tweak(&opts)
	}
	c, err := coordinator.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rc := &runningCoordinator{Coordinator: c, cancel: cancel, done: make(chan error, 1)}
	go func() { rc.done <- c.Run(ctx) }()
	select {
	case <-c.Ready():
	case err := <-rc.done:
		t.Fatalf("coordinator stopped: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("coordinator not ready")
	}
	t.Cleanup(func() { rc.stop(t) })
	return rc
}

// simAgent is a fleet agent over a simulated host.
type simAgent struct {
	host   *fleetsim.Host
	agent  *fleet.Agent
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

func (s *simAgent) stop(t tb) {
	s.once.Do(func() {
		s.cancel()
		if err := <-s.done; err != nil {
			t.Errorf("agent Run: %v", err)
		}
	})
}

func startAgent(t tb, nc *nats.Conn, name string, labels map[string]string, tweak func(*fleet.Options)) *simAgent {
	t.Helper()
	h := fleetsim.NewHost(name, 2)
	opts := fleet.Options{
		Host: name, Labels: labels, Applier: h, Freezer: h, Responder: h,
		HeartbeatInterval: fastHeartbeat, RetryInterval: 50 * time.Millisecond,
	}
	if tweak != nil {
		tweak(&opts)
	}
	a, err := fleet.NewAgent(nc, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &simAgent{host: h, agent: a, cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- a.Run(ctx) }()
	t.Cleanup(func() { s.stop(t) })
	return s
}

func startAgents(t tb, nc *nats.Conn, n int, labels func(i int) map[string]string) []*simAgent {
	out := make([]*simAgent, n)
	for i := range out {
		var l map[string]string
		if labels != nil {
			l = labels(i)
		}
		out[i] = startAgent(t, nc, fmt.Sprintf("hv%03d", i), l, nil)
	}
	return out
}

// eventually polls cond every 10ms for up to a minute (not a timing assertion: a liveness bound).
func eventually(t tb, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never happened: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitUp(t tb, c *runningCoordinator, n int) {
	t.Helper()
	eventually(t, fmt.Sprintf("%d hosts up", n), func() bool {
		st, err := c.Status(context.Background(), nil)
		return err == nil && st.Up == n
	})
}

func waitRollout(t tb, c *runningCoordinator, id string) *wire.RolloutState {
	t.Helper()
	var st *wire.RolloutState
	eventually(t, "rollout "+id+" finished", func() bool {
		st = c.Rollout()
		return st != nil && st.ID == id && st.State != wire.RolloutRunning
	})
	return st
}

func TestMain(m *testing.M) {
	if host := os.Getenv(childEnv); host != "" {
		os.Exit(childMain(host))
	}
	goleak.VerifyTestMain(m)
}
