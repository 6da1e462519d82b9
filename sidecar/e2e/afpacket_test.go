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
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/confluo-go/confluo/pkg/wire"
	"github.com/confluo-go/confluo/sidecar"
)

const schemaPath = "/usr/share/openvswitch/vswitch.ovsschema"

// sandbox is a private Open vSwitch: ovsdb-server and ovs-vswitchd with their own database and
// sockets in a temp dir, ovs-vswitchd in a network namespace of its own (its userspace datapath
// creates an "ovs-netdev" tap there), a netdev bridge and two namespaces a and b attached to it
// through veth pairs. Every name starts with "cfsc" and a random suffix.
type sandbox struct {
	t      *testing.T
	dir    string
	bridge string
	swNS   string
	ns     [2]string
	ip     [2]string
	mu     sync.Mutex
	procs  []*exec.Cmd
}

func requirePrereqs(t *testing.T) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (network namespaces, veth, AF_PACKET)")
	}
	for _, bin := range []string{"ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovs-appctl", "ovs-ofctl", "ip", "ping"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, bin)
		}
	}
	if _, err := os.Stat(schemaPath); err != nil {
		missing = append(missing, schemaPath)
	}
	if len(missing) > 0 {
		t.Fatalf("sidecar end-to-end prerequisites missing: %s (Open vSwitch: scripts/setup.d; run as root)", strings.Join(missing, ", "))
	}
}

func newSandbox(t *testing.T) *sandbox {
	t.Helper()
	requirePrereqs(t)
	var b [3]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	dir, err := os.MkdirTemp("", "cfsc-") // unix socket paths must stay short
	if err != nil {
		t.Fatal(err)
	}
	sb := &sandbox{t: t, dir: dir, bridge: "cfsc" + id, swNS: "cfsc" + id + "-sw",
		ns: [2]string{"cfsc" + id + "-a", "cfsc" + id + "-b"},
		ip: [2]string{fmt.Sprintf("10.%d.%d.1", 100+int(b[0])%100, b[1]), fmt.Sprintf("10.%d.%d.2", 100+int(b[0])%100, b[1])}}
	t.Cleanup(sb.cleanup)
	sb.must("ovsdb-tool", "create", sb.path("conf.db"), schemaPath)
	sb.start("ovsdb-server", sb.path("conf.db"), "--remote=punix:"+sb.path("db.sock"),
		"--unixctl="+sb.path("ovsdb-server.ctl"), "--pidfile="+sb.path("ovsdb-server.pid"),
		"--log-file="+sb.path("ovsdb-server.log"), "-vconsole:off")
	sb.waitFile(sb.path("db.sock"))
	sb.vsctl("--no-wait", "init")
	sb.must("ip", "netns", "add", sb.swNS)
	sb.must("ip", "netns", "exec", sb.swNS, "ip", "link", "set", "lo", "up")
	vs := sb.start("ip", "netns", "exec", sb.swNS, "ovs-vswitchd", sb.endpoint(),
		"--pidfile="+sb.path("ovs-vswitchd.pid"), "--log-file="+sb.path("ovs-vswitchd.log"), "-vconsole:off")
	sb.waitFile(sb.path(fmt.Sprintf("ovs-vswitchd.%d.ctl", vs.Process.Pid)))
	sb.vsctl("--timeout=10", "add-br", sb.bridge, "--", "set", "Bridge", sb.bridge, "datapath_type=netdev")
	for i, side := range []string{"a", "b"} {
		hostIf := sb.bridge + side
		peer := hostIf + "p"
		sb.must("ip", "netns", "add", sb.ns[i])
		sb.must("ip", "netns", "exec", sb.swNS, "ip", "link", "add", hostIf, "type", "veth", "peer", "name", peer)
		sb.must("ip", "netns", "exec", sb.swNS, "ip", "link", "set", peer, "netns", sb.ns[i])
		sb.must("ip", "netns", "exec", sb.ns[i], "ip", "addr", "add", sb.ip[i]+"/24", "dev", peer)
		sb.must("ip", "netns", "exec", sb.ns[i], "ip", "link", "set", peer, "up")
		sb.must("ip", "netns", "exec", sb.ns[i], "ip", "link", "set", "lo", "up")
		sb.must("ip", "netns", "exec", sb.swNS, "ip", "link", "set", hostIf, "up")
		sb.vsctl("--timeout=10", "add-port", sb.bridge, hostIf)
	}
	return sb
}

func (sb *sandbox) path(name string) string { return filepath.Join(sb.dir, name) }
func (sb *sandbox) endpoint() string        { return "unix:" + sb.path("db.sock") }

func (sb *sandbox) env() []string {
	return append(os.Environ(), "OVS_RUNDIR="+sb.dir, "OVS_DBDIR="+sb.dir, "OVS_LOGDIR="+sb.dir, "OVS_SYSCONFDIR="+sb.dir)
}

func (sb *sandbox) run(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = sb.env()
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func (sb *sandbox) must(name string, args ...string) string {
	sb.t.Helper()
	out, err := sb.run(name, args...)
	if err != nil {
		sb.t.Fatal(err)
	}
	return out
}

func (sb *sandbox) vsctl(args ...string) string {
	sb.t.Helper()
	return sb.must("ovs-vsctl", append([]string{"--db=" + sb.endpoint()}, args...)...)
}

func (sb *sandbox) start(name string, args ...string) *exec.Cmd {
	sb.t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = sb.env()
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		sb.t.Fatalf("start %s: %v", name, err)
	}
	sb.mu.Lock()
	sb.procs = append(sb.procs, cmd)
	sb.mu.Unlock()
	go func() { _ = cmd.Wait() }()
	return cmd
}

func (sb *sandbox) waitFile(path string) {
	sb.t.Helper()
	for i := 0; ; i++ {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if i > 1000 {
			sb.t.Fatalf("%s did not appear", path)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (sb *sandbox) cleanup() {
	sb.mu.Lock()
	procs := sb.procs
	sb.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		if p := procs[i].Process; p != nil {
			_ = p.Signal(syscall.SIGTERM)
			for j := 0; j < 500 && syscall.Kill(p.Pid, 0) == nil; j++ {
				time.Sleep(10 * time.Millisecond)
			}
			_ = p.Kill()
		}
	}
	for _, ns := range []string{sb.ns[0], sb.ns[1], sb.swNS} {
		_, _ = sb.run("ip", "netns", "del", ns)
	}
	if sb.t.Failed() {
		for _, f := range []string{"ovs-vswitchd.log", "ovsdb-server.log"} {
			b, _ := os.ReadFile(sb.path(f))
			if len(b) > 4000 {
				b = b[len(b)-4000:]
			}
			sb.t.Logf("--- tail of %s:\n%s", f, b)
		}
	}
	_ = os.RemoveAll(sb.dir)
}

func request[T any](t *testing.T, nc *nats.Conn, host string, cmd wire.Command, req any) T {
	t.Helper()
	subject, _ := wire.CommandSubject(host, cmd)
	body, _ := json.Marshal(req)
	m, err := nc.Request(subject, body, 30*time.Second)
	if err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	var r wire.Response
	if err := json.Unmarshal(m.Data, &r); err != nil {
		t.Fatal(err)
	}
	if r.Error != nil {
		t.Fatalf("%s %s: %v", cmd, body, r.Error)
	}
	var out T
	if err := json.Unmarshal(r.Result, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestAFPacketMirror: a sidecar owns a mirror on an OVS userspace bridge, captures its spray port
// with AF_PACKET, real pings cross the bridge between two namespaces, a trigger fires, a NATS
// subscriber receives the alert, and a query over NATS returns exactly the pings sent.
func TestAFPacketMirror(t *testing.T) {
	sb := newSandbox(t)
	const pings, size = 40, 333
	frameLen := size + 8 + 20 + 14 // ICMP + IPv4 + Ethernet
	o := sidecar.DefaultOptions()
	o.Host = "e2e-" + sb.bridge
	o.NATS.EmbeddedPort = -1
	o.HTTP.Listen = "127.0.0.1:0"
	o.HeartbeatInterval = 0
	o.Capture.Source, o.Capture.Rings = "afpacket", 2
	o.Mirror = sidecar.MirrorOptions{Enabled: true, DB: sb.endpoint(), OVSRunDir: sb.dir,
		VSwitchdNetNS: "/run/netns/" + sb.swNS, Bridge: sb.bridge, Name: "cfsc-e2e", SelectAll: true, RemoveOnExit: true}
	match := fmt.Sprintf("ip_proto == icmp && icmp_type == 8 && src_ip == %s && dst_ip == %s && frame_len == %d", sb.ip[0], sb.ip[1], frameLen)
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
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		}
	}
	defer stop()
	for i := 0; !s.Ready(); i++ {
		if i > 10000 {
			t.Fatal("sidecar not ready")
		}
		time.Sleep(time.Millisecond)
	}
	if out := sb.vsctl("--columns=name", "list", "Mirror"); !strings.Contains(out, "cfsc-e2e") {
		t.Fatalf("the sidecar did not create its mirror: %s", out)
	}

	nc, err := nats.Connect(s.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	alerts, err := nc.SubscribeSync(wire.AlertsWildcard(o.Host))
	if err != nil {
		t.Fatal(err)
	}
	_ = nc.Flush()

	// Warm up until mirrored ICMP reaches the store (ARP, the mirror's first flows).
	warm := fmt.Sprintf("ip_proto == icmp && src_ip == %s", sb.ip[0])
	for i := 0; ; i++ {
		sb.must("ip", "netns", "exec", sb.ns[0], "ping", "-c", "1", "-W", "1", sb.ip[1])
		agg := request[wire.AggregateReply](t, nc, o.Host, wire.CmdAggregate, wire.AggregateRequest{Func: "COUNT(*)", Expr: warm})
		if agg.Count > 0 {
			break
		}
		if i > 50 {
			t.Fatal("no mirrored ICMP reached the sidecar after 50 pings")
		}
		time.Sleep(100 * time.Millisecond)
	}

	out, _ := sb.run("ip", "netns", "exec", sb.ns[0], "ping", "-c", fmt.Sprint(pings), "-i", "0.02", "-s", fmt.Sprint(size), sb.ip[1])
	answered := pingReplies(t, out)

	// The trigger fires at least once (40 pings in 0.8 s: one 1 s window holds at least half).
	var total float64
	m, err := alerts.NextMsg(30 * time.Second)
	if err != nil {
		t.Fatalf("no alert: %v", err)
	}
	var a wire.Alert
	if err := json.Unmarshal(m.Data, &a); err != nil {
		t.Fatal(err)
	}
	if a.Trigger != "ping_burst" || a.Value < 5 || a.Value > pings || a.Host != o.Host {
		t.Fatalf("alert %+v", a)
	}
	total += a.Value

	// The query over NATS returns exactly the pings sent, once the mirrored copies have all
	// arrived (AF_PACKET hands blocks over after its block timeout).
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
	q := request[wire.QueryReply](t, nc, o.Host, wire.CmdQuery, wire.QueryRequest{Expr: match, Limit: 1000,
		Columns: []string{"timestamp", "src_ip", "dst_ip", "icmp_type", "frame_len"}})
	if q.Count < answered || q.Count > pings {
		t.Fatalf("query returned %d echo requests; %d were sent and %d answered", q.Count, pings, answered)
	}
	for _, row := range q.Rows {
		if row[1] != sb.ip[0] || row[2] != sb.ip[1] || row[3].(float64) != 8 || row[4].(float64) != float64(frameLen) {
			t.Fatalf("row %v", row)
		}
	}
	st := request[wire.Stats](t, nc, o.Host, wire.CmdStats, nil)
	if st.Capture.Received == 0 || !strings.HasPrefix(st.Capture.Source, "afpacket:") {
		t.Fatalf("capture stats %+v", st.Capture)
	}
	// Any further alert covers the rest of the pings.
	for {
		m, err := alerts.NextMsg(3 * time.Second)
		if err != nil {
			break
		}
		var b wire.Alert
		_ = json.Unmarshal(m.Data, &b)
		total += b.Value
	}
	if total > pings {
		t.Fatalf("alerts count %v pings, only %d were sent", total, pings)
	}

	// Graceful shutdown removes the mirror the sidecar created.
	stop()
	if out := sb.vsctl("--columns=name", "list", "Mirror"); strings.Contains(out, "cfsc-e2e") {
		t.Fatalf("mirror left behind after shutdown: %s", out)
	}
}

// pingReplies returns how many echo replies ping reports; a request that was answered crossed
// the bridge, so at least that many requests were mirrored (and at most the pings sent).
func pingReplies(t *testing.T, out string) int {
	t.Helper()
	var sent, received int
	i := strings.Index(out, "packets transmitted")
	if i < 0 {
		t.Fatalf("ping output: %s", out)
	}
	line := out[strings.LastIndex(out[:i], "\n")+1:]
	if _, err := fmt.Sscanf(line, "%d packets transmitted, %d received", &sent, &received); err != nil || received == 0 {
		t.Fatalf("ping: %v: %s", err, out)
	}
	return received
}
