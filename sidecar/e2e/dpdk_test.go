//go:build dpdk && linux && cgo

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

// TestDPDKMirror is TestAFPacketMirror on OVS-DPDK: the sidecar (built with -tags dpdk) owns a
// mirror whose output is a dpdkvhostuserclient spray port and serves its vhost-user socket with
// the DPDK source. Run by `make test-dpdk`.
func TestDPDKMirror(t *testing.T) {
	sb := newSandbox(t, true)
	bridge, nsA, ipA, ipB := sb.bridge, sb.ns[0], sb.ip[0], sb.ip[1]

	const pings, size = 40, 333
	frameLen := size + 8 + 20 + 14
	o := sidecar.DefaultOptions()
	o.Host = "e2e-" + bridge
	o.NATS.EmbeddedPort = -1
	o.HTTP.Listen = "127.0.0.1:0"
	o.HeartbeatInterval = 0
	o.Capture.Source, o.Capture.Rings = "dpdk", 2
	o.Mirror = sidecar.MirrorOptions{Enabled: true, DB: sb.Endpoint(), OVSRunDir: sb.Dir,
		VhostDir: sb.Path("vhost"), Bridge: bridge, Name: "cfsd-e2e", SelectAll: true, RemoveOnExit: true}
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
		_, _ = ovstest.RunErr("ip", "netns", "exec", nsA, "ping", "-c", "1", "-W", "1", ipB)
		if agg := request[wire.AggregateReply](t, nc, o.Host, wire.CmdAggregate, wire.AggregateRequest{Func: "COUNT(*)", Expr: warm}); agg.Count > 0 {
			break
		}
		if i > 60 {
			t.Fatal("no mirrored ICMP reached the sidecar over vhost-user after 60 pings")
		}
		time.Sleep(250 * time.Millisecond)
	}
	out, _ := ovstest.RunErr("ip", "netns", "exec", nsA, "ping", "-c", fmt.Sprint(pings), "-i", "0.02", "-s", fmt.Sprint(size), ipB)
	answered := pingReplies(t, out)
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
