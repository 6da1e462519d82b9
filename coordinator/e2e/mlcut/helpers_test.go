// Package mlcut tests the distributed atomic cut over real multilogs. It is apart from the other
// end-to-end tests so that they do not depend on pkg/multilog building.
package mlcut

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/confluo-go/confluo/coordinator"
	"github.com/confluo-go/confluo/pkg/fleet"
	"github.com/confluo-go/confluo/pkg/natstest"
)

const fastHeartbeat = 50 * time.Millisecond

type freezerFunc func() (fleet.Frozen, func())

func (f freezerFunc) Freeze() (fleet.Frozen, func()) { return f() }

func startServer(t *testing.T, _ *server.Options) *server.Server {
	t.Helper()
	return natstest.Start(t, &server.Options{JetStream: true})
}

func connect(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func startCoordinator(t *testing.T, nc *nats.Conn, _ func(*coordinator.Options)) *coordinator.Coordinator {
	t.Helper()
	opts := coordinator.DefaultOptions()
	opts.Conn, opts.HeartbeatInterval, opts.MissedHeartbeats = nc, fastHeartbeat, 10
	c, err := coordinator.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("coordinator: %v", err)
		}
	})
	select {
	case <-c.Ready():
	case err := <-done:
		t.Fatalf("coordinator stopped: %v", err)
	}
	return c
}

func waitUp(t *testing.T, c *coordinator.Coordinator, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		st, err := c.Status(context.Background(), nil)
		if err == nil && st.Up == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d hosts never came up", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
