package ovstest

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confluo-go/confluo/pkg/spray"
)

// AddBridge adds a userspace (datapath_type=netdev) bridge with the NORMAL action.
func (o *OVS) AddBridge(t testing.TB, br string) {
	t.Helper()
	o.Vsctl(t, "add-br", br, "--", "set", "bridge", br, "datapath_type=netdev")
}

// Mirror creates a mirror of every packet on br, output to port out, truncated to snaplen (0:
// whole frames).
func (o *OVS) Mirror(t testing.TB, br, name, out string, snaplen int) {
	t.Helper()
	args := []string{"--", "--id=@p", "get", "port", out, "--", "--id=@m", "create", "mirror", "name=" + name,
		"select_all=true", "output_port=@p"}
	if snaplen > 0 {
		args = append(args, "snaplen="+strconv.Itoa(snaplen))
	}
	args = append(args, "--", "add", "bridge", br, "mirrors", "@m")
	o.Vsctl(t, args...)
}

var txPackets = regexp.MustCompile(`tx pkts=(\d+), bytes=[0-9?]+, drop=([0-9?]+)`)

// PortTxPackets returns the packets OVS has sent on a port, read live over OpenFlow
// (ovs-ofctl dump-ports), not from the periodically refreshed database statistics.
func (o *OVS) PortTxPackets(t testing.TB, br, port string) uint64 {
	t.Helper()
	n, _ := o.PortTx(t, br, port)
	return n
}

// PortTx returns the packets OVS sent on a port and those it dropped trying (for a
// vhost-user port: the guest's queue was full).
func (o *OVS) PortTx(t testing.TB, br, port string) (sent, dropped uint64) {
	t.Helper()
	out := Run(t, "ovs-ofctl", "dump-ports", "unix:"+filepath.Join(o.Dir, br+".mgmt"), port)
	m := txPackets.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no tx pkts in ovs-ofctl dump-ports output:\n%s", out)
	}
	sent, _ = strconv.ParseUint(m[1], 10, 64)
	dropped, _ = strconv.ParseUint(m[2], 10, 64) // "?" (unknown) parses as 0
	return sent, dropped
}

// Namespace creates a network namespace; t.Cleanup deletes it.
func Namespace(t testing.TB, name string) string {
	t.Helper()
	_, _ = RunErr("ip", "netns", "del", name) // stale from a killed run
	Run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { _, _ = RunErr("ip", "netns", "del", name) })
	Run(t, "ip", "-n", name, "link", "set", "lo", "up")
	return "/var/run/netns/" + name
}

// Veth creates a veth pair: host in o's namespace, added to br, and peer in ns with address
// cidr and checksum offload off (TCP through a userspace bridge needs it).
func Veth(t testing.TB, o *OVS, br, host, ns, peer, cidr string) {
	t.Helper()
	o.IP(t, "link", "add", host, "type", "veth", "peer", "name", peer, "netns", ns)
	o.IP(t, "link", "set", host, "up")
	Run(t, "ip", "-n", ns, "addr", "add", cidr, "dev", peer)
	Run(t, "ip", "-n", ns, "link", "set", peer, "up")
	Run(t, "ip", "netns", "exec", ns, "ethtool", "-K", peer, "tx", "off")
	o.Vsctl(t, "add-port", br, host)
}

// Traffic runs ping and a multi-stream iperf3 UDP test from ns1 to ns2's address dst, so the
// mirror sees many flows in both directions.
func Traffic(t testing.TB, ns1, ns2, dst string, streams int, seconds int, rate string) {
	t.Helper()
	srv := exec.Command("ip", "netns", "exec", ns2, "iperf3", "-s", "-1", "-p", "5299")
	var srvOut bytes.Buffer
	srv.Stdout, srv.Stderr = &srvOut, &srvOut
	if err := srv.Start(); err != nil {
		t.Fatalf("start iperf3 server: %v", err)
	}
	defer func() {
		srv.Process.Kill()
		srv.Wait()
	}()
	Run(t, "ip", "netns", "exec", ns1, "ping", "-c", "20", "-i", "0.01", "-W", "1", dst)
	var err error
	var out string
	for range 20 { // the server needs a moment to listen
		out, err = RunErr("ip", "netns", "exec", ns1, "iperf3", "-c", dst, "-p", "5299", "-u", "-b", rate,
			"-l", "200", "-P", strconv.Itoa(streams), "-t", strconv.Itoa(seconds))
		if err == nil || !strings.Contains(out, "connect") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("iperf3 client: %v\n%s\nserver:\n%s", err, out, srvOut.String())
	}
}

// RunSpray builds a spray over src (rings rings of 1<<16 records), runs it and drains its
// rings with Collect (each as there), standing in for the writers. stop cancels Run, stops the
// drain, waits for both and fails the test if Run returned an error; defer it, and close src
// after it.
func RunSpray(t testing.TB, src spray.Source, rings int, each func(rec []byte)) (s *spray.Spray, c *Collected, stop func()) {
	t.Helper()
	s, err := spray.New(src, spray.Options{Rings: rings, RingCapacity: 1 << 16})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- s.Run(ctx) }()
	stopDrain := make(chan struct{})
	c = Collect(s, stopDrain, each)
	return s, c, func() {
		cancel()
		close(stopDrain)
		c.Wait()
		if err := <-runErr; err != nil {
			t.Errorf("spray Run: %v", err)
		}
	}
}

// Collected counts what Collect took off a spray's rings. Its counters are safe to read
// while the drain runs.
type Collected struct {
	Seen    atomic.Uint64   // records taken off all rings
	PerRing []atomic.Uint64 // records taken off each ring
	wait    func()
}

// Wait returns when every drain goroutine has finished (after stop was closed).
func (c *Collected) Wait() { c.wait() }

// Collect consumes every ring of s in place until stop is closed, counting the
// records per ring and calling each (if not nil) for every record; each runs on the ring's
// drain goroutine, so concurrently for different rings.
func Collect(s *spray.Spray, stop <-chan struct{}, each func(rec []byte)) *Collected {
	c := &Collected{PerRing: make([]atomic.Uint64, s.Rings())}
	c.wait = drainRings(s, stop, 200*time.Microsecond, func(r int, recs []byte, size int) {
		if each != nil {
			for i := 0; i+size <= len(recs); i += size {
				each(recs[i : i+size])
			}
		}
		k := uint64(len(recs) / size)
		c.Seen.Add(k)
		c.PerRing[r].Add(k)
	})
	return c
}

// drainRings runs one goroutine per ring of s that hands batches of up to 256 records to fn
// and releases them, sleeping idle when the ring is empty, until stop is closed.
func drainRings(s *spray.Spray, stop <-chan struct{}, idle time.Duration, fn func(ring int, recs []byte, recordSize int)) (wait func()) {
	var wg sync.WaitGroup
	for r := range s.Rings() {
		wg.Go(func() {
			rg := s.Ring(r)
			for {
				p := rg.Peek(256)
				if len(p) == 0 {
					select {
					case <-stop:
						return
					case <-time.After(idle):
					}
					continue
				}
				fn(r, p, rg.RecordSize())
				rg.Release(len(p) / rg.RecordSize())
			}
		})
	}
	return wg.Wait
}

// Topology is a private OVS with a userspace bridge joining two namespaces (10.X.1.1 and
// 10.X.1.2 on their eth0), each through a veth whose host end is a bridge port.
type Topology struct {
	OVS          *OVS
	Bridge       string
	NS1, NS2     string
	Host1, Host2 string
	Addr1, Addr2 string
}

// NewTopology builds a Topology; names start with prefix (spr...), addresses use 10.<net>.1.0/24.
func NewTopology(t testing.TB, dpdk bool, prefix string, net int) *Topology {
	t.Helper()
	o := Start(t, Config{Prefix: prefix, DPDK: dpdk, PMDMask: map[bool]string{true: "0x2"}[dpdk]})
	tp := &Topology{OVS: o, Bridge: Name(prefix + "br"), NS1: Name(prefix + "1n"), NS2: Name(prefix + "2n"),
		Host1: Name(prefix + "1h"), Host2: Name(prefix + "2h"),
		Addr1: fmt.Sprintf("10.%d.1.1", net), Addr2: fmt.Sprintf("10.%d.1.2", net)}
	o.AddBridge(t, tp.Bridge)
	o.Attach(t, tp.Bridge, tp.NS1, tp.Host1, tp.Addr1+"/24")
	o.Attach(t, tp.Bridge, tp.NS2, tp.Host2, tp.Addr2+"/24")
	return tp
}

// Step is one offered rate of a Sweep.
type Step struct {
	OfferedPPS   float64 // what iperf3 was asked to send
	ForwardedPPS float64 // what OVS delivered to the receiver's port
	MirroredPPS  float64 // what OVS sent to the mirror port
	SeenPPS      float64 // what the spray received
	MirrorDrops  uint64  // packets OVS failed to send to the mirror port (spray's queue full)
	Loss         float64 // 1 - seen/(mirrored + mirror drops)
}

// Sweep offers UDP traffic (64-byte payloads, streams flows) from NS1 to NS2 at each rate in
// packets/s (0: as fast as iperf3 goes) for dur, and measures OVS's forwarding rate, the mirror's
// rate and what seen (the spray's received counter) reports.
func (tp *Topology) Sweep(t testing.TB, mirrorPort string, seen func() uint64, rates []int, streams int, dur time.Duration) []Step {
	t.Helper()
	srv := exec.Command("ip", "netns", "exec", tp.NS2, "iperf3", "-s", "-p", "5298")
	if err := srv.Start(); err != nil {
		t.Fatalf("start iperf3 server: %v", err)
	}
	defer func() {
		srv.Process.Kill()
		srv.Wait()
	}()
	time.Sleep(300 * time.Millisecond)
	var steps []Step
	for _, pps := range rates {
		fwd0 := tp.OVS.PortTxPackets(t, tp.Bridge, tp.Host2)
		mir0, drop0 := tp.OVS.PortTx(t, tp.Bridge, mirrorPort)
		seen0 := seen()
		rate := "0"
		if pps > 0 {
			rate = strconv.Itoa(max(pps/streams, 1) * 64 * 8) // iperf3 -b is per stream
		}
		start := time.Now()
		out, err := RunErr("ip", "netns", "exec", tp.NS1, "iperf3", "-c", tp.Addr2, "-p", "5298", "-u", "-l", "64",
			"-b", rate, "-P", strconv.Itoa(streams), "-t", strconv.FormatFloat(dur.Seconds(), 'f', 1, 64))
		if err != nil {
			t.Fatalf("iperf3: %v\n%s", err, out)
		}
		elapsed := time.Since(start).Seconds()
		var mir uint64
		Eventually(3*time.Second, func() bool {
			mir = tp.OVS.PortTxPackets(t, tp.Bridge, mirrorPort) - mir0
			return seen()-seen0 >= mir
		})
		fwd := tp.OVS.PortTxPackets(t, tp.Bridge, tp.Host2) - fwd0
		_, drop := tp.OVS.PortTx(t, tp.Bridge, mirrorPort)
		drop -= drop0
		got := seen() - seen0
		st := Step{OfferedPPS: float64(pps), ForwardedPPS: float64(fwd) / elapsed, MirroredPPS: float64(mir) / elapsed,
			SeenPPS: float64(got) / elapsed, MirrorDrops: drop}
		if mir+drop > 0 {
			st.Loss = 1 - float64(got)/float64(mir+drop)
		}
		steps = append(steps, st)
		t.Logf("offered %d pps: OVS forwarded %.0f pps, mirrored %.0f pps (%d mirror tx drops), spray saw %.0f pps, loss %.4f",
			pps, st.ForwardedPPS, st.MirroredPPS, drop, st.SeenPPS, st.Loss)
	}
	return steps
}

// Report turns sweep steps into benchmark metrics: the highest loss-free mirrored rate and, at
// the highest offered load, OVS's forwarding rate, the mirror's rate and the spray's.
func Report(b *testing.B, steps []Step) {
	var lossFree, last Step
	for _, s := range steps {
		if s.Loss <= 0 && s.MirroredPPS > lossFree.MirroredPPS {
			lossFree = s
		}
		last = s
	}
	b.ReportMetric(lossFree.MirroredPPS, "lossfree-pps")
	b.ReportMetric(last.ForwardedPPS, "ovs-fwd-pps")
	b.ReportMetric(last.MirroredPPS, "mirrored-pps")
	b.ReportMetric(last.SeenPPS, "records/s")
	b.ReportMetric(last.Loss, "loss")
}

// InterfaceTxPackets returns the tx_packets of the Interface table's statistics column, which
// ovs-vswitchd refreshes every few seconds (stats-update-interval).
func (o *OVS) InterfaceTxPackets(t testing.TB, iface string) uint64 {
	t.Helper()
	out, err := RunErr("ovs-vsctl", "--db=unix:"+o.Dir+"/db.sock", "--timeout=30", "get", "interface", iface, "statistics:tx_packets")
	if err != nil {
		return 0 // not published yet
	}
	n, _ := strconv.ParseUint(strings.Trim(strings.TrimSpace(out), `"`), 10, 64)
	return n
}

// ClearMirrors removes br's mirrors, so the mirror port's counters stop moving.
func (o *OVS) ClearMirrors(t testing.TB, br string) {
	t.Helper()
	o.Vsctl(t, "clear", "bridge", br, "mirrors")
}

// AddMirrorPort adds port (one interface of type ifaceType) to br and, in the same
// transaction, a mirror named mirror that outputs to it and selects nothing yet: from its first
// instant the port is reserved for mirroring (OVS never floods to a mirror output port), so
// nothing reaches it before StartMirror.
func (o *OVS) AddMirrorPort(t testing.TB, br, port, ifaceType, mirror string) {
	t.Helper()
	o.Vsctl(t, "--", "--id=@i", "create", "interface", "name="+port, "type="+ifaceType,
		"--", "--id=@p", "create", "port", "name="+port, "interfaces=@i",
		"--", "add", "bridge", br, "ports", "@p",
		"--", "--id=@m", "create", "mirror", "name="+mirror, "output_port=@p",
		"--", "add", "bridge", br, "mirrors", "@m")
}

// StartMirror makes mirror select every packet, truncated to snaplen (0: whole frames).
func (o *OVS) StartMirror(t testing.TB, mirror string, snaplen int) {
	t.Helper()
	args := []string{"set", "mirror", mirror, "select_all=true"}
	if snaplen > 0 {
		args = append(args, "snaplen="+strconv.Itoa(snaplen))
	}
	o.Vsctl(t, args...)
}
