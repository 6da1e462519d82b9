//go:build dpdk && linux && cgo

package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/confluo-go/confluo/pkg/wire"
	"github.com/confluo-go/confluo/sidecar"
)

const vswitchdDPDK = "/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk"

// TestDPDKMirror is TestAFPacketMirror on OVS-DPDK: the sidecar (built with -tags dpdk) owns a
// mirror whose output is a dpdkvhostuserclient spray port and serves its vhost-user socket with
// the DPDK source. Run by `make test-dpdk`.
func TestDPDKMirror(t *testing.T) {
	requirePrereqs(t)
	if _, err := os.Stat(vswitchdDPDK); err != nil {
		t.Fatalf("OVS-DPDK missing: %v (apt-get install openvswitch-switch-dpdk; scripts/setup.d/30-dpdk.sh)", err)
	}
	b, err := os.ReadFile("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages")
	free, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || free < 512 {
		t.Fatalf("need >= 512 free 2 MB hugepages for OVS-DPDK and the sidecar, have %d (%v); run scripts/setup.d/30-dpdk.sh", free, err)
	}
	var rnd [3]byte
	_, _ = rand.Read(rnd[:])
	id := hex.EncodeToString(rnd[:])
	dir, err := os.MkdirTemp("", "cfsd-")
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join("..", "..", "scripts", "ovs-dpdk.sh")
	run := func(name string, args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	bridge, nsA, nsB := "cfsd"+id, "cfsd"+id+"-a", "cfsd"+id+"-b"
	ipA, ipB := fmt.Sprintf("10.%d.%d.1", 100+int(rnd[0])%100, rnd[1]), fmt.Sprintf("10.%d.%d.2", 100+int(rnd[0])%100, rnd[1])
	t.Cleanup(func() {
		_, _ = exec.Command("ip", "netns", "del", nsA).CombinedOutput()
		_, _ = exec.Command("ip", "netns", "del", nsB).CombinedOutput()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "ovs-vswitchd.log"))
			if len(b) > 4000 {
				b = b[len(b)-4000:]
			}
			t.Logf("--- tail of ovs-vswitchd.log:\n%s", b)
		}
		_, _ = exec.Command("bash", script, "stop", dir).CombinedOutput()
		_ = os.RemoveAll(dir)
	})
	run("bash", script, "start", dir, "--dpdk", "--pmd-mask", "0x2", "--prefix", "cfsd"+id)
	vsctl := func(args ...string) string {
		return run("ovs-vsctl", append([]string{"--db=unix:" + filepath.Join(dir, "db.sock"), "--timeout=30"}, args...)...)
	}
	vsctl("add-br", bridge, "--", "set", "Bridge", bridge, "datapath_type=netdev")
	for i, ns := range []string{nsA, nsB} {
		host, peer := fmt.Sprintf("cfsd%s%c", id, 'a'+i), fmt.Sprintf("cfsd%s%cp", id, 'a'+i)
		ip := []string{ipA, ipB}[i]
		run("ip", "netns", "add", ns)
		run("ip", "link", "add", host, "type", "veth", "peer", "name", peer)
		run("ip", "link", "set", peer, "netns", ns)
		run("ip", "netns", "exec", ns, "ip", "addr", "add", ip+"/24", "dev", peer)
		run("ip", "netns", "exec", ns, "ip", "link", "set", peer, "up")
		run("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
		run("ip", "link", "set", host, "up")
		vsctl("add-port", bridge, host)
	}

	const pings, size = 40, 333
	frameLen := size + 8 + 20 + 14
	o := sidecar.DefaultOptions()
	o.Host = "e2e-" + bridge
	o.NATS.EmbeddedPort = -1
	o.HTTP.Listen = "127.0.0.1:0"
	o.HeartbeatInterval = 0
	o.Capture.Source, o.Capture.Rings = "dpdk", 2
	o.Mirror = sidecar.MirrorOptions{Enabled: true, DB: "unix:" + filepath.Join(dir, "db.sock"), OVSRunDir: dir,
		VhostDir: filepath.Join(dir, "vhost"), Bridge: bridge, Name: "cfsd-e2e", SelectAll: true, RemoveOnExit: true}
	match := fmt.Sprintf("ip_proto == icmp && icmp_type == 8 && src_ip == %s && dst_ip == %s && frame_len == %d", ipA, ipB, frameLen)
	o.Filters = []wire.FilterSpec{{Name: "pings", Expr: match}}
	o.Aggregates = []wire.AggregateSpec{{Name: "ping_count", Filter: "pings", Func: "COUNT(*)"}}
	o.Triggers = []wire.TriggerSpec{{Name: "ping_burst", Condition: "ping_count >= 5", PeriodMillis: 1000}}
	s, err := sidecar.New(o, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	nc, err := nats.Connect(s.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	alerts, _ := nc.SubscribeSync(wire.AlertsWildcard(o.Host))
	_ = nc.Flush()

	warm := fmt.Sprintf("ip_proto == icmp && src_ip == %s", ipA)
	for i := 0; ; i++ {
		_, _ = exec.Command("ip", "netns", "exec", nsA, "ping", "-c", "1", "-W", "1", ipB).CombinedOutput()
		if agg := request[wire.AggregateReply](t, nc, o.Host, wire.CmdAggregate, wire.AggregateRequest{Func: "COUNT(*)", Expr: warm}); agg.Count > 0 {
			break
		}
		if i > 60 {
			t.Fatal("no mirrored ICMP reached the sidecar over vhost-user after 60 pings")
		}
		time.Sleep(250 * time.Millisecond)
	}
	out, _ := exec.Command("ip", "netns", "exec", nsA, "ping", "-c", fmt.Sprint(pings), "-i", "0.02", "-s", fmt.Sprint(size), ipB).CombinedOutput()
	answered := pingReplies(t, string(out))
	m, err := alerts.NextMsg(30 * time.Second)
	if err != nil {
		t.Fatalf("no alert: %v", err)
	}
	var a wire.Alert
	if err := json.Unmarshal(m.Data, &a); err != nil || a.Trigger != "ping_burst" || a.Value < 5 || a.Value > pings {
		t.Fatalf("alert %s (%v)", m.Data, err)
	}
	for i := 0; ; i++ {
		agg := request[wire.AggregateReply](t, nc, o.Host, wire.CmdAggregate, wire.AggregateRequest{Func: "COUNT(*)", Expr: match})
		if agg.Count >= uint64(answered) {
			break
		}
		if i > 100 {
			t.Fatalf("only %d of %d echo requests reached the store", agg.Count, pings)
		}
		time.Sleep(100 * time.Millisecond)
	}
	q := request[wire.QueryReply](t, nc, o.Host, wire.CmdQuery, wire.QueryRequest{Expr: match, Limit: 1000, Columns: []string{"src_ip", "dst_ip"}})
	if q.Count < answered || q.Count > pings {
		t.Fatalf("query returned %d echo requests; %d were sent and %d answered", q.Count, pings, answered)
	}
	if st := request[wire.Stats](t, nc, o.Host, wire.CmdStats, nil); !strings.HasPrefix(st.Capture.Source, "dpdk:") || st.Capture.Received == 0 {
		t.Fatalf("capture %+v", st.Capture)
	}
}
