//go:build linux

package afpacket

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/confluo-go/confluo/pkg/ovstest"
)

// TestOVSMirrorTapE2E: two namespaces joined through a private OVS userspace bridge
// (datapath_type=netdev), every packet mirrored (snaplen 128) to an internal (tap) port, the
// spray capturing that tap with two PACKET_FANOUT_HASH sockets, real ping and 16-stream iperf3
// traffic. Records seen must equal the packets OVS reports it sent on the mirror port.
func TestOVSMirrorTapE2E(t *testing.T) {
	ovstest.Require(t, "ip", "ovs-vsctl", "ovs-ofctl", "ovs-appctl", "ovsdb-server", "ovsdb-tool", "ovs-vswitchd", "iperf3", "ethtool", "ping", "sysctl")
	tp := ovstest.NewTopology(t, false, "spra", 77) // 10.77.1.1 and 10.77.1.2
	o, br, ns1, ns2 := tp.OVS, tp.Bridge, tp.NS1, tp.NS2

	tap := ovstest.Name("spratap")
	o.AddMirrorPort(t, br, tap, "internal", "sprtapm")
	if !ovstest.Eventually(10*time.Second, func() bool { _, err := o.Exec(t, "ip", "link", "show", tap); return err == nil }) {
		t.Fatalf("OVS did not create the tap device %s (see %s/ovs-vswitchd.log)", tap, o.Dir)
	}
	// The mirror tap only receives: no IPv6 chatter of its own, up.
	o.Exec(t, "sysctl", "-q", "-w", "net.ipv6.conf."+tap+".disable_ipv6=1")
	o.IP(t, "link", "set", tap, "up")
	// Capture first, mirror second: every packet OVS mirrors is one the sockets can see.
	src, err := Open(Options{Interface: tap, Namespace: o.NSPath(), Queues: 2, Snaplen: 256})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	base := o.PortTxPackets(t, br, tap) // 0 unless OVS reuses a stale tap's counters
	o.StartMirror(t, "sprtapm", 128)
	var maxCap atomic.Int64
	s, drained, stop := ovstest.RunSpray(t, src, 2, func(rec []byte) {
		if capLen := int64(rec[12]) | int64(rec[13])<<8; capLen > maxCap.Load() {
			maxCap.Store(capLen)
		}
	})
	defer stop()
	seen, perRing := &drained.Seen, drained.PerRing

	ovstest.Traffic(t, ns1, ns2, "10.77.1.2", 16, 2, "2M")
	// Stop mirroring (ARP and neighbour chatter goes on after the traffic) so OVS's counters
	// of the mirror port stop moving and can be compared exactly.
	o.ClearMirrors(t, br)

	var mirrored uint64
	settled := ovstest.Eventually(20*time.Second, func() bool {
		mirrored = o.PortTxPackets(t, br, tap) - base
		return mirrored > 0 && seen.Load() == mirrored
	})
	st := s.Stats()
	t.Logf("OVS mirrored %d packets to %s; spray received %d, enqueued %d, dropped %d, queues/rings %d/%d; source %+v; max cap_len %d",
		mirrored, tap, st.Received, st.Enqueued, st.DroppedRingFull, perRing[0].Load(), perRing[1].Load(), st.Source, maxCap.Load())
	if !settled {
		t.Fatalf("records seen %d != packets OVS mirrored %d", seen.Load(), mirrored)
	}
	// The Interface table's statistics (refreshed every few seconds) must agree too.
	var ifaceTx uint64
	if !ovstest.Eventually(15*time.Second, func() bool {
		ifaceTx = o.InterfaceTxPackets(t, tap) - base
		return ifaceTx == seen.Load()
	}) {
		t.Fatalf("Interface %s statistics:tx_packets says %d, spray saw %d", tap, ifaceTx, seen.Load())
	}
	if mirrored < 1000 {
		t.Fatalf("only %d packets mirrored; the traffic did not flow", mirrored)
	}
	if st.DroppedRingFull != 0 || st.Source.KernelDrops != 0 {
		t.Fatalf("drops: %+v", st)
	}
	if perRing[0].Load() == 0 || perRing[1].Load() == 0 {
		t.Fatalf("the kernel fanout did not spread 16+ flows: queues got %d and %d", perRing[0].Load(), perRing[1].Load())
	}
	if maxCap.Load() > 128 {
		t.Fatalf("cap_len %d exceeds the mirror snaplen 128", maxCap.Load())
	}
}
