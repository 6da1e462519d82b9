//go:build dpdk && linux && cgo

package dpdk_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confluo-go/confluo/pkg/ovstest"
	"github.com/confluo-go/confluo/pkg/spray/dpdk"
)

var ealPrefix = ovstest.Name("sprd")

func TestMain(m *testing.M) {
	code := m.Run()
	if err := dpdk.Shutdown(); err != nil {
		println("dpdk.Shutdown:", err.Error())
		code = 1
	}
	// A clean teardown leaves no hugepage file and no runtime directory behind.
	left, _ := filepath.Glob("/dev/hugepages/" + ealPrefix + "*")
	if _, err := os.Stat("/var/run/dpdk/" + ealPrefix); err == nil {
		left = append(left, "/var/run/dpdk/"+ealPrefix)
	}
	if len(left) > 0 {
		println("left behind after dpdk.Shutdown:", strings.Join(left, " "))
		code = 1
	}
	if _, err := dpdk.Open(dpdk.Options{SocketPath: "/tmp/sprd-after.sock"}); !errors.Is(err, dpdk.ErrShutdown) {
		println("Open after Shutdown:", fmt.Sprint(err), "want ErrShutdown")
		code = 1
	}
	os.Exit(code)
}

func TestOptionsValidate(t *testing.T) {
	for name, o := range map[string]dpdk.Options{
		"no socket": {},
		"snaplen":   {SocketPath: "/tmp/x.sock", Snaplen: 10},
		"burst":     {SocketPath: "/tmp/x.sock", Burst: dpdk.MaxBurst + 1},
		"rxd":       {SocketPath: "/tmp/x.sock", RxDescriptors: 1000},
		"prefix":    {SocketPath: "/tmp/x.sock", EAL: dpdk.EALOptions{FilePrefix: "a/b"}},
	} {
		if _, err := dpdk.Open(o); !errors.Is(err, dpdk.ErrInvalidOptions) {
			t.Errorf("%s: %v, want ErrInvalidOptions", name, err)
		}
	}
}

// TestOpenWithoutClient: with nobody connecting, Open gives up after ConnectTimeout with
// ErrNotConnected, removes its socket and leaves the EAL usable.
func TestOpenWithoutClient(t *testing.T) {
	ovstest.Require(t)
	ovstest.RequireHugepages(t, 512)
	dir, err := os.MkdirTemp("/tmp", "sprd")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "lonely.sock")
	for range 2 {
		_, err := dpdk.Open(dpdk.Options{SocketPath: sock, ConnectTimeout: 500 * time.Millisecond,
			EAL: dpdk.EALOptions{FilePrefix: ealPrefix}})
		if !errors.Is(err, dpdk.ErrNotConnected) {
			t.Fatalf("Open with no client: %v, want ErrNotConnected", err)
		}
		if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("socket left behind: %v", err)
		}
	}
}

// TestVhostUserMirrorE2E: two namespaces joined through an OVS-DPDK userspace bridge, every
// packet mirrored (snaplen 128) to a dpdkvhostuserclient port whose vhost-user server is the
// spray. Records seen must equal what OVS reports it sent on the mirror port.
func TestVhostUserMirrorE2E(t *testing.T) {
	ovstest.Require(t, "ip", "ovs-vsctl", "ovs-ofctl", "ovs-appctl", "ovsdb-server", "ovsdb-tool", "iperf3", "ethtool", "ping")
	ovstest.RequireHugepages(t, 512)
	tp := ovstest.NewTopology(t, true, "sprdo", 78) // 10.78.1.1 and 10.78.1.2
	o, br, ns1, ns2 := tp.OVS, tp.Bridge, tp.NS1, tp.NS2

	sock := filepath.Join(o.Dir, "spray.sock")
	vhu := ovstest.Name("sprdvhu")
	o.Vsctl(t, "add-port", br, vhu, "--", "set", "interface", vhu, "type=dpdkvhostuserclient",
		"options:vhost-server-path="+sock)
	src, err := dpdk.Open(dpdk.Options{SocketPath: sock, ConnectTimeout: 60 * time.Second,
		EAL: dpdk.EALOptions{FilePrefix: ealPrefix, MemoryMB: 256}})
	if err != nil {
		t.Fatalf("%v (see %s/ovs-vswitchd.log)", err, o.Dir)
	}
	defer func() {
		if err := src.Close(); err != nil {
			t.Error(err)
		}
		if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("socket %s left behind after Close: %v", sock, err)
		}
	}()
	if !ovstest.Eventually(30*time.Second, src.LinkUp) {
		t.Fatalf("vhost-user link to OVS never came up (see %s/ovs-vswitchd.log)", o.Dir)
	}
	o.Mirror(t, br, "sprdm", vhu, 128)

	var maxCap atomic.Int64
	s, drained, stop := ovstest.RunSpray(t, src, 2, func(rec []byte) {
		if capLen := int64(rec[12]) | int64(rec[13])<<8; capLen > maxCap.Load() {
			maxCap.Store(capLen)
		}
	})
	defer stop()
	seen, perRing := &drained.Seen, drained.PerRing

	ovstest.Traffic(t, ns1, ns2, "10.78.1.2", 16, 2, "2M")
	// Stop mirroring (ARP and neighbour chatter goes on after the traffic) so OVS's counters
	// of the mirror port stop moving and can be compared exactly.
	o.ClearMirrors(t, br)

	var mirrored uint64
	settled := ovstest.Eventually(20*time.Second, func() bool {
		mirrored = o.PortTxPackets(t, br, vhu)
		return mirrored > 0 && seen.Load() == mirrored && s.Stats().Received == mirrored
	})
	st := s.Stats()
	t.Logf("OVS mirrored %d packets to %s; spray received %d, enqueued %d, dropped %d, rings %d/%d; source %+v; max cap_len %d",
		mirrored, vhu, st.Received, st.Enqueued, st.DroppedRingFull, perRing[0].Load(), perRing[1].Load(), st.Source, maxCap.Load())
	if !settled {
		t.Fatalf("records seen %d != packets OVS mirrored %d", seen.Load(), mirrored)
	}
	// The Interface table's statistics (refreshed every few seconds) must agree too.
	var ifaceTx uint64
	if !ovstest.Eventually(15*time.Second, func() bool {
		ifaceTx = o.InterfaceTxPackets(t, vhu)
		return ifaceTx == seen.Load()
	}) {
		t.Fatalf("Interface %s statistics:tx_packets says %d, spray saw %d", vhu, ifaceTx, seen.Load())
	}
	if mirrored < 1000 {
		t.Fatalf("only %d packets mirrored; the traffic did not flow", mirrored)
	}
	if st.DroppedRingFull != 0 || st.Source.Missed != 0 || st.Source.NoMbuf != 0 {
		t.Fatalf("drops: %+v", st)
	}
	if perRing[0].Load() == 0 || perRing[1].Load() == 0 {
		t.Fatalf("flows not spread: rings got %d and %d", perRing[0].Load(), perRing[1].Load())
	}
	if maxCap.Load() > 128 {
		t.Fatalf("cap_len %d exceeds the mirror snaplen 128", maxCap.Load())
	}
}

// BenchmarkVhostUserMirror is BenchmarkOVSMirrorTap (package afpacket) with OVS-DPDK and the
// mirror on a dpdkvhostuserclient port served by the spray. Run with -benchtime=1x.
func BenchmarkVhostUserMirror(b *testing.B) {
	ovstest.Require(b, "ip", "ovs-vsctl", "ovs-ofctl", "ovsdb-server", "iperf3", "ethtool")
	tp := ovstest.NewTopology(b, true, "sprbd", 80)
	sock := filepath.Join(tp.OVS.Dir, "bench.sock")
	vhu := ovstest.Name("sprbdvhu")
	tp.OVS.Vsctl(b, "add-port", tp.Bridge, vhu, "--", "set", "interface", vhu, "type=dpdkvhostuserclient",
		"options:vhost-server-path="+sock)
	src, err := dpdk.Open(dpdk.Options{SocketPath: sock, EAL: dpdk.EALOptions{FilePrefix: ealPrefix}})
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	if !ovstest.Eventually(30*time.Second, src.LinkUp) {
		b.Fatal("vhost-user link never came up")
	}
	tp.OVS.Mirror(b, tp.Bridge, "sprbdm", vhu, 128)
	s, _, stop := ovstest.RunSpray(b, src, 2, nil)
	defer stop()
	var steps []ovstest.Step
	for b.Loop() {
		steps = tp.Sweep(b, vhu, func() uint64 { return s.Stats().Received }, []int{5000, 20000, 50000, 100000, 0}, 8, time.Second)
	}
	ovstest.Report(b, steps)
	b.Logf("spray stats: %+v", s.Stats())
}
