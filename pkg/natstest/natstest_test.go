package natstest_test

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/confluo-go/confluo/pkg/natstest"
)

func TestStartJetStream(t *testing.T) {
	ns := natstest.Start(t, nil)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if ns.JetStreamEnabled() {
		t.Error("JetStream on without asking")
	}
	js := natstest.Start(t, &server.Options{JetStream: true})
	if !js.JetStreamEnabled() {
		t.Error("JetStream asked for but off")
	}
	if js.ClientURL() == ns.ClientURL() {
		t.Error("two servers on one port")
	}
}

// A TLS-only server accepts a client that trusts the test CA and refuses one that does not.
func TestTLS(t *testing.T) {
	caFile, cert := natstest.TLS(t, t.TempDir())
	ns := natstest.Start(t, natstest.TLSOptions(cert))
	if nc, err := nats.Connect(ns.ClientURL()); err == nil {
		nc.Close()
		t.Fatal("connected without trusting the test CA")
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("ca.pem holds no certificate")
	}
	nc, err := nats.Connect(ns.ClientURL(), nats.Secure(&tls.Config{RootCAs: pool, ServerName: natstest.ServerName}))
	if err != nil {
		t.Fatalf("TLS connect with the CA: %v", err)
	}
	nc.Close()
}
