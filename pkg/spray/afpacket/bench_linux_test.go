//go:build linux

package afpacket

import (
	"testing"
	"time"

	"github.com/confluo-go/confluo/pkg/ovstest"
)

// BenchmarkOVSMirrorTap sweeps UDP traffic with 64-byte payloads over 8 flows between two
// namespaces through a private OVS userspace bridge mirroring everything to a tap port captured
// by two fanout sockets, and reports the highest loss-free mirrored rate and, at full offered
// load, OVS's forwarding rate beside the spray's. Run with -benchtime=1x (one sweep).
func BenchmarkOVSMirrorTap(b *testing.B) {
	ovstest.Require(b, "ip", "ovs-vsctl", "ovs-ofctl", "ovsdb-server", "iperf3", "ethtool", "sysctl")
	tp := ovstest.NewTopology(b, false, "sprba", 79)
	tap := ovstest.Name("sprbatap")
	tp.OVS.AddMirrorPort(b, tp.Bridge, tap, "internal", "sprbam")
	if !ovstest.Eventually(10*time.Second, func() bool { _, err := tp.OVS.Exec(b, "ip", "link", "show", tap); return err == nil }) {
		b.Fatalf("OVS did not create %s", tap)
	}
	tp.OVS.Exec(b, "sysctl", "-q", "-w", "net.ipv6.conf."+tap+".disable_ipv6=1")
	tp.OVS.IP(b, "link", "set", tap, "up")
	src, err := Open(Options{Interface: tap, Namespace: tp.OVS.NSPath(), Queues: 2, Snaplen: 128, Blocks: 64})
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	tp.OVS.StartMirror(b, "sprbam", 128)
	s, _, stop := ovstest.RunSpray(b, src, 2, nil)
	defer stop()
	var steps []ovstest.Step
	for b.Loop() {
		steps = tp.Sweep(b, tap, func() uint64 { return s.Stats().Received }, []int{5000, 20000, 50000, 100000, 0}, 8, time.Second)
	}
	ovstest.Report(b, steps)
	st := s.Stats()
	b.Logf("spray stats: %+v", st)
}
