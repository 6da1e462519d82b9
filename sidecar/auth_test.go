package sidecar

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/confluo-go/confluo/pkg/natstest"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

func startAuthServer(t *testing.T, edit func(*server.Options)) *server.Server {
	t.Helper()
	opts := &server.Options{}
	edit(opts)
	return natstest.Start(t, opts)
}

// connectedSidecar starts a stub sidecar with o and waits until its NATS connection is up.
func connectedSidecar(t *testing.T, o Options) *Sidecar {
	t.Helper()
	s, _ := startStub(t, o, newStubEngine())
	waitFor(t, "the NATS connection", func() bool { return s.nc.IsConnected() })
	return s
}

func TestExternalNATSUserPassword(t *testing.T) {
	ns := startAuthServer(t, func(o *server.Options) { o.Username, o.Password = "hv", "s3cret" })
	o := testOptions()
	o.NATS.URLs, o.NATS.User, o.NATS.Password = []string{ns.ClientURL()}, "hv", "s3cret"
	s := connectedSidecar(t, o)
	if st := s.Stats(); !st.NATS.Connected || st.NATS.Embedded {
		t.Fatalf("stats %+v", st.NATS)
	}
}

func TestExternalNATSNKey(t *testing.T) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	seedFile := filepath.Join(t.TempDir(), "hv.nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	ns := startAuthServer(t, func(o *server.Options) { o.Nkeys = []*server.NkeyUser{{Nkey: pub}} })
	o := testOptions()
	o.NATS.URLs, o.NATS.NKeyFile = []string{ns.ClientURL()}, seedFile
	connectedSidecar(t, o)
}

func TestExternalNATSTLS(t *testing.T) {
	dir := t.TempDir()
	caFile, serverCert := natstest.TLS(t, dir)
	ns := natstest.Start(t, natstest.TLSOptions(serverCert))
	o := testOptions()
	o.NATS.URLs = []string{"tls://" + ns.Addr().String()}
	o.NATS.TLS.CAFile = caFile
	o.NATS.TLS.ServerName = natstest.ServerName
	connectedSidecar(t, o)
}
