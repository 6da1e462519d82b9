package e2e

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/confluo-go/confluo/coordinator"
	"github.com/confluo-go/confluo/pkg/natstest"
	"github.com/confluo-go/confluo/pkg/wire"
)

// TestTLS: the coordinator connects to a TLS-only server with its CA file and user credentials
// from Options; a client without the CA is refused.
func TestTLS(t *testing.T) {
	caFile, cert := natstest.TLS(t, t.TempDir())
	opts := natstest.TLSOptions(cert)
	opts.Username, opts.Password = "coord", "secret"
	ns := startServer(t, opts)
	url := ns.ClientURL()
	if nc, err := nats.Connect(url, nats.UserInfo("coord", "secret")); err == nil {
		nc.Close()
		t.Fatal("connected without trusting the server's CA")
	}
	copts := coordinator.DefaultOptions()
	copts.NATS.URLs = []string{url}
	copts.NATS.CAFile, copts.NATS.User, copts.NATS.Password = caFile, "coord", "secret"
	if err := copts.Validate(); err != nil {
		t.Fatal(err)
	}
	c, err := coordinator.New(copts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	select {
	case <-c.Ready():
	case err := <-done:
		t.Fatalf("coordinator over TLS: %v", err)
	}
	if _, err := c.PutConfig(ctx, coordinatorConfig()); err != nil {
		t.Errorf("put config over TLS: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Error(err)
	}
}

func coordinatorConfig() wire.FleetConfig { return wire.FleetConfig{Comment: "over tls"} }
