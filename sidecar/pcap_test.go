package sidecar

import (
	"context"
	"encoding/json"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/confluo-go/confluo/pkg/wire"
)

const samplePcap = "testdata/dev_sample.pcap"

// tshark runs tshark on the sample capture; it fails the test loudly when tshark is missing
// (scripts/setup.d/40-sidecar.sh installs it).
func tshark(t *testing.T, args ...string) string {
	t.Helper()
	path, err := exec.LookPath("tshark")
	if err != nil {
		t.Fatalf("tshark is required for the cross-check (apt-get install tshark; scripts/setup.d/40-sidecar.sh): %v", err)
	}
	out, err := exec.Command(path, append([]string{"-r", samplePcap}, args...)...).Output()
	if err != nil {
		t.Fatalf("tshark %v: %v", args, err)
	}
	return string(out)
}

func tsharkCount(t *testing.T, filter string) int {
	out := strings.TrimSpace(tshark(t, "-Y", filter, "-T", "fields", "-e", "frame.number"))
	if out == "" {
		return 0
	}
	return len(strings.Split(out, "\n"))
}

// startPcap runs a real sidecar (real store) replaying the sample capture and waits until it is
// stored.
func startPcap(t *testing.T, o Options) *Sidecar {
	t.Helper()
	o.Capture.Source, o.Capture.File = "pcap", samplePcap
	s, err := New(o, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	waitFor(t, "the capture to be stored", s.CaptureDone)
	return s
}

func call[T any](t *testing.T, nc *nats.Conn, host string, cmd wire.Command, req any) T {
	t.Helper()
	subject, err := wire.CommandSubject(host, cmd)
	if err != nil {
		t.Fatal(err)
	}
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

// TestPcapMatchesTshark loads the sample capture and checks that query counts equal tshark's
// display-filter counts on the same file.
func TestPcapMatchesTshark(t *testing.T) {
	s := startPcap(t, testOptions())
	nc, err := nats.Connect(s.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	total := tsharkCount(t, "frame")
	st := call[wire.Stats](t, nc, "testhost", wire.CmdStats, nil)
	if st.Capture.Received != uint64(total) || st.Capture.Stored != uint64(total) || !st.Capture.Done {
		t.Fatalf("capture stats %+v, tshark counts %d frames", st.Capture, total)
	}
	cases := []struct{ tshark, expr string }{
		{"ip.src==10.88.0.1 && tcp.dstport==5301", "src_ip == 10.88.0.1 && ip_proto == tcp && dst_port == 5301"},
		{"udp && frame.len < 300", "ip_proto == udp && frame_len < 300"},
		{"udp.dstport == 5302", "ip_proto == udp && dst_port == 5302"},
		{"icmp", "ip_proto == 1"},
		{"icmpv6", "ip_proto == 58"},
		{"ipv6", "ip_version == 6"},
		{"tcp.flags == 0x002", "ip_proto == tcp && tcp_flags == 2"},
		{"ip.dst == 10.88.0.0/24 && tcp", "dst_ip in 10.88.0.0/24 && ip_proto == 6"},
	}
	for _, c := range cases {
		want := tsharkCount(t, c.tshark)
		agg := call[wire.AggregateReply](t, nc, "testhost", wire.CmdAggregate,
			wire.AggregateRequest{Func: "COUNT(*)", Expr: c.expr})
		if agg.Count != uint64(want) || agg.Value != float64(want) {
			t.Errorf("%q: aggregate COUNT %v (%d records), tshark %q counts %d", c.expr, agg.Value, agg.Count, c.tshark, want)
		}
		q := call[wire.QueryReply](t, nc, "testhost", wire.CmdQuery,
			wire.QueryRequest{Expr: c.expr, Limit: 100000, Columns: []string{"timestamp"}})
		if q.Count != want || q.Truncated {
			t.Errorf("%q: query returned %d rows (truncated %v), tshark %d", c.expr, q.Count, q.Truncated, want)
		}
	}

	// Paging walks the same rows as one big page, in timestamp order, at one version.
	expr := "ip_proto == udp && dst_port == 5302"
	all := call[wire.QueryReply](t, nc, "testhost", wire.CmdQuery, wire.QueryRequest{Expr: expr, Limit: 100000, Columns: []string{"timestamp", "ip_id"}})
	var paged [][]any
	req := wire.QueryRequest{Expr: expr, Limit: 100, Columns: []string{"timestamp", "ip_id"}}
	for pages := 0; ; pages++ {
		if pages > 100 {
			t.Fatal("paging does not end")
		}
		q := call[wire.QueryReply](t, nc, "testhost", wire.CmdQuery, req)
		paged = append(paged, q.Rows...)
		if q.NextCursor == "" {
			break
		}
		req.Cursor = q.NextCursor
	}
	if len(paged) != len(all.Rows) {
		t.Fatalf("paged %d rows, one page %d", len(paged), len(all.Rows))
	}
	for i := range paged {
		if paged[i][0] != all.Rows[i][0] || paged[i][1] != all.Rows[i][1] {
			t.Fatalf("row %d: paged %v, one page %v", i, paged[i], all.Rows[i])
		}
	}

	// Bad expressions are refused with their position; the data is intact afterwards.
	r := request(t, nc, "query", `{"expr": "src_ip == 10.88.0.300"}`)
	if r.Error == nil || r.Error.Code != wire.CodeInvalidExpr || !strings.Contains(r.Error.Description, "1:") {
		t.Fatalf("bad literal: %+v", r.Error)
	}
	r = request(t, nc, "query", `{"expr": "nosuchcolumn > 1"}`)
	if r.Error == nil || r.Error.Code != wire.CodeInvalidExpr {
		t.Fatalf("bad column: %+v", r.Error)
	}
	if st := call[wire.Stats](t, nc, "testhost", wire.CmdStats, nil); st.MultiLogs[0].Records != uint64(total) {
		t.Fatalf("records after bad input: %d", st.MultiLogs[0].Records)
	}
}

// TestPcapTriggerAlerts installs a filter, aggregate and trigger, replays the capture and checks
// that a NATS subscriber receives exactly the alerts tshark's timestamps predict.
func TestPcapTriggerAlerts(t *testing.T) {
	const period = 100 * time.Millisecond
	const threshold = 20
	// Expected: windows of 100 ms (aligned to the epoch) with at least 20 UDP datagrams to 5302.
	perWindow := map[int64]int{}
	for _, line := range strings.Fields(tshark(t, "-Y", "udp.dstport == 5302", "-T", "fields", "-e", "frame.time_epoch")) {
		sec, frac, _ := strings.Cut(line, ".")
		frac = (frac + "000000000")[:9]
		s, err1 := strconv.ParseInt(sec, 10, 64)
		ns, err2 := strconv.ParseInt(frac, 10, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("tshark time %q", line)
		}
		ts := s*1e9 + ns
		perWindow[ts-ts%int64(period)]++
	}
	want := map[int64]int{}
	for w, n := range perWindow {
		if n >= threshold {
			want[w] = n
		}
	}
	if len(want) == 0 {
		t.Fatal("the sample has no window over the threshold; the test needs one")
	}

	o := testOptions()
	o.Filters = []wire.FilterSpec{{Name: "udp5302", Expr: "ip_proto == udp && dst_port == 5302"}}
	o.Aggregates = []wire.AggregateSpec{{Name: "udp_pkts", Filter: "udp5302", Func: "COUNT(*)"}}
	o.Triggers = []wire.TriggerSpec{{Name: "udp_burst", Condition: "udp_pkts >= 20", PeriodMillis: int(period / time.Millisecond)}}
	// Subscribe before any alert can exist: start the NATS server ourselves.
	ns := runServer(t, -1)
	defer ns.Shutdown()
	o.NATS.URLs = []string{ns.ClientURL()}
	sub, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	ch, err := sub.SubscribeSync(wire.AlertsWildcard("testhost"))
	if err != nil {
		t.Fatal(err)
	}
	_ = sub.Flush()

	s := startPcap(t, o)
	got := receive(t, ch, len(want))
	for _, a := range got {
		n, ok := want[a.WindowStart.UnixNano()]
		if !ok || a.Value != float64(n) || a.Trigger != "udp_burst" || a.Threshold != threshold || a.Op != ">=" ||
			a.WindowEnd.Sub(a.WindowStart) != period || a.Completeness.Ratio != 1 {
			t.Errorf("unexpected alert %+v (tshark: %d in that window)", a, n)
		}
		delete(want, a.WindowStart.UnixNano())
	}
	if m, err := ch.NextMsg(100 * time.Millisecond); err == nil {
		t.Fatalf("extra alert %s", m.Data)
	}
	// The alerts command lists the same alerts.
	nc, _ := nats.Connect(s.NATSURL())
	defer nc.Close()
	list := call[wire.AlertsReply](t, nc, "testhost", wire.CmdAlerts, wire.AlertsRequest{Trigger: "udp_burst"})
	if len(list.Alerts) != len(got) {
		t.Fatalf("alerts command lists %d, NATS delivered %d", len(list.Alerts), len(got))
	}
	agg := call[wire.AggregateReply](t, nc, "testhost", wire.CmdAggregate, wire.AggregateRequest{Name: "udp_pkts"})
	if agg.Value != float64(tsharkCount(t, "udp.dstport == 5302")) {
		t.Fatalf("installed aggregate = %v", agg.Value)
	}
}
