package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/confluo-go/confluo/pkg/ovstest"
	"github.com/confluo-go/confluo/pkg/wire"
	"github.com/confluo-go/confluo/sidecar"
)

// sandbox is a private Open vSwitch (pkg/ovstest: ovs-vswitchd in a network namespace of its
// own, whose userspace datapath creates an "ovs-netdev" tap there), a netdev bridge and two
// namespaces a and b attached to it through veth pairs. Every name starts with "cfsc" and a
// random suffix.
type sandbox struct {
	*ovstest.OVS
	bridge string
	ns     [2]string
	ip     [2]string
}

func newSandbox(t *testing.T, dpdk bool) *sandbox {
	t.Helper()
	prefix := "cfsc"
	if dpdk {
		prefix = "cfsd"
	}
	ovstest.RequireOVS(t, "ping", "ethtool")
	if dpdk {
		ovstest.RequireHugepages(t, 512) // OVS-DPDK and the sidecar
	}
	id := ovstest.Unique(prefix)
	sb := &sandbox{OVS: ovstest.Start(t, ovstest.Config{Prefix: prefix, DPDK: dpdk, PMDMask: map[bool]string{true: "0x2"}[dpdk]}),
		bridge: id, ns: [2]string{id + "-a", id + "-b"}}
	sb.ip[0], sb.ip[1] = ovstest.RandomAddrs(100, 100)
	sb.Vsctl(t, "add-br", sb.bridge, "--", "set", "Bridge", sb.bridge, "datapath_type=netdev")
	for i, side := range []string{"a", "b"} {
		sb.Attach(t, sb.bridge, sb.ns[i], sb.bridge+side, sb.ip[i]+"/24")
	}
	return sb
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
	sb := newSandbox(t, false)
	const pings, size = 40, 333
	frameLen := size + 8 + 20 + 14 // ICMP + IPv4 + Ethernet
	o := sidecar.DefaultOptions()
	o.Host = "e2e-" + sb.bridge
	o.NATS.EmbeddedPort = -1
	o.HTTP.Listen = "127.0.0.1:0"
	o.HeartbeatInterval = 0
	o.Capture.Source, o.Capture.Rings = "afpacket", 2
	o.Mirror = sidecar.MirrorOptions{Enabled: true, DB: sb.Endpoint(), OVSRunDir: sb.Dir,
		VSwitchdNetNS: sb.NSPath(), Bridge: sb.bridge, Name: "cfsc-e2e", SelectAll: true, RemoveOnExit: true}
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
	if out := sb.Vsctl(t, "--columns=name", "list", "Mirror"); !strings.Contains(out, "cfsc-e2e") {
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
		sb.Run(t, "ip", "netns", "exec", sb.ns[0], "ping", "-c", "1", "-W", "1", sb.ip[1])
		agg := request[wire.AggregateReply](t, nc, o.Host, wire.CmdAggregate, wire.AggregateRequest{Func: "COUNT(*)", Expr: warm})
		if agg.Count > 0 {
			break
		}
		if i > 50 {
			t.Fatal("no mirrored ICMP reached the sidecar after 50 pings")
		}
		time.Sleep(100 * time.Millisecond)
	}

	out, _ := sb.RunErr("ip", "netns", "exec", sb.ns[0], "ping", "-c", fmt.Sprint(pings), "-i", "0.02", "-s", fmt.Sprint(size), sb.ip[1])
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
	if out := sb.Vsctl(t, "--columns=name", "list", "Mirror"); strings.Contains(out, "cfsc-e2e") {
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
