package sidecar

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

func startAuthServer(t *testing.T, edit func(*server.Options)) *server.Server {
	t.Helper()
	opts := &server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true}
	edit(opts)
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(ns.Shutdown)
	return ns
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
	caFile, serverCert := makeTLS(t, dir)
	ns := startAuthServer(t, func(o *server.Options) {
		o.TLS = true
		o.TLSTimeout = 5
		o.TLSConfig = &tls.Config{Certificates: []tls.Certificate{serverCert}, MinVersion: tls.VersionTLS12}
	})
	o := testOptions()
	o.NATS.URLs = []string{"tls://" + ns.Addr().String()}
	o.NATS.TLS.CAFile = caFile
	o.NATS.TLS.ServerName = "nats.test"
	connectedSidecar(t, o)
}

// makeTLS writes a CA certificate to dir and returns its path and a server certificate for
// "nats.test" and 127.0.0.1 signed by it.
func makeTLS(t *testing.T, dir string) (string, tls.Certificate) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "confluo test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "nats.test"},
		DNSNames: []string{"nats.test"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return caFile, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
