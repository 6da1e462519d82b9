package ovs

import (
	"context"
	"errors"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ovn-org/libovsdb/ovsdb"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func sandboxController(t *testing.T, sb *sandbox, reg prometheus.Registerer) *Controller {
	t.Helper()
	o := DefaultOptions()
	o.Endpoint = sb.Endpoint()
	o.OVSRunDir = sb.Dir
	o.VhostDir = sb.Path("vhost")
	o.VSwitchdNetNS = sb.NSPath()
	o.CallTimeout = 5 * time.Second
	o.ResyncInterval = 500 * time.Millisecond
	o.MinBackoff = 50 * time.Millisecond
	o.MaxBackoff = 500 * time.Millisecond
	o.Registerer = reg
	// CONFLUO_OVS_NOPURGE=1 turns the revalidator purge off to show why it is
	// there: TestIntegrationMirrorTraffic then fails, the removed mirror still
	// copying the running ping from cached datapath flows.
	if os.Getenv("CONFLUO_OVS_NOPURGE") != "" {
		o.Purge = false
	}
	o.Logger = testLogger(t)
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

// waitPackets waits until the capture holds at least n packets.
func waitPackets(t *testing.T, c *capture, n int, what string) []int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := c.snapshot()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d packets on the spray port within 10s, want >= %d", what, len(got), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestIntegrationMirrorTraffic: enable a mirror on a real ovs-vswitchd,
// see the traffic on the spray port, change snaplen while the flow is
// cached and see the new length, disable it and see it stop.
func TestIntegrationMirrorTraffic(t *testing.T) {
	sb := newSandbox(t)
	c := sandboxController(t, sb, nil)
	ctx := context.Background()

	status, res, err := c.EnsureSprayPort(ctx, sb.bridge)
	if err != nil {
		t.Fatal(err)
	}
	if res.Change != Created || status.Type != "internal" || status.OFPort <= 0 || status.Name != DefaultSprayPortName(sb.bridge) {
		t.Fatalf("EnsureSprayPort = %+v %+v", status, res)
	}
	spray := sb.capture(status.Name)
	sb.ping(400)

	// Nothing is mirrored yet.
	time.Sleep(500 * time.Millisecond)
	if n := len(spray.snapshot()); n != 0 {
		t.Fatalf("%d ICMP packets on the spray port before any mirror", n)
	}

	spec := MirrorSpec{Bridge: sb.bridge, Name: "m1", SrcPorts: []string{sb.hostIf[0]}, DstPorts: []string{sb.hostIf[0]}, Snaplen: 64}
	if res, err := c.EnsureMirror(ctx, spec); err != nil || res.Change != Created {
		t.Fatalf("EnsureMirror = %+v, %v", res, err)
	}
	out := sb.Vsctl(t, "--no-wait", "--columns=name,snaplen,external_ids", "list", "Mirror")
	if !strings.Contains(out, "m1") || !strings.Contains(out, "confluo-managed-by") {
		t.Fatalf("ovs-vsctl list Mirror:\n%s", out)
	}
	got := waitPackets(t, spray, 10, "mirror enabled")
	// Frames are 14+20+8+400 = 442 bytes; snaplen 64 cuts them.
	if slices.Max(got) > 64 {
		t.Fatalf("frame lengths %v exceed snaplen 64", got)
	}

	// Change snaplen while the ping's datapath flow is cached.
	spec.Snaplen = 200
	if res, err := c.EnsureMirror(ctx, spec); err != nil || res.Change != Updated {
		t.Fatalf("EnsureMirror(snaplen 200) = %+v, %v", res, err)
	}
	spray.reset()
	got = waitPackets(t, spray, 10, "after snaplen change")
	if got[len(got)-1] != 200 || slices.Min(got[len(got)/2:]) != 200 {
		t.Fatalf("after snaplen 200 the frame lengths are %v, want 200", got)
	}

	list, err := c.ListMirrors(ctx)
	if err != nil || len(list) != 1 || !list[0].Managed || list[0].Spray.OFPort <= 0 || list[0].Spec.Snaplen != 200 ||
		list[0].Spray.LinkState != "up" {
		t.Fatalf("ListMirrors = %+v, %v", list, err)
	}
	// ovs-vswitchd writes mirror statistics every 5 s (stats-update-interval).
	eventually(t, "mirror statistics reported", 15*time.Second, func() bool {
		list, err := c.ListMirrors(ctx)
		return err == nil && len(list) == 1 && list[0].TxPackets > 0 && list[0].TxBytes > 0
	})

	if res, err := c.RemoveMirror(ctx, sb.bridge, "m1"); err != nil || res.Change != Removed {
		t.Fatalf("RemoveMirror = %+v, %v", res, err)
	}
	time.Sleep(200 * time.Millisecond) // copies already in flight
	spray.reset()
	time.Sleep(time.Second) // ~20 pings
	if n := len(spray.snapshot()); n != 0 {
		t.Fatalf("%d ICMP packets on the spray port after the mirror was removed", n)
	}
	if out := sb.Vsctl(t, "--no-wait", "list", "Mirror"); strings.TrimSpace(out) != "" {
		t.Fatalf("Mirror table not empty after remove:\n%s", out)
	}

	// OVSDB's per-operation errors come back joined, each naming its operation.
	ops := []ovsdb.Operation{
		{Op: ovsdb.OperationInsert, Table: "Mirror", UUIDName: "bad", Row: ovsdb.Row{"name": "x",
			"snaplen": ovsdb.OvsSet{GoSet: []any{5}}}},
	}
	_, err = c.transact(ctx, c.sess.Load(), ops)
	var opErr ovsdb.OperationError
	if !errors.Is(err, ErrTransaction) || !strings.Contains(err.Error(), "insert Mirror as @bad") || !errors.As(err, &opErr) {
		t.Fatalf("transact with snaplen 5 = %v, want ErrTransaction naming the insert", err)
	}
	t.Logf("joined OVSDB error: %v", err)
}

// TestIntegrationReconcile: a mirror deleted or changed with ovs-vsctl is
// restored; a restarted ovsdb-server is reconnected and the state restored;
// with ovs-vswitchd down nothing hangs.
func TestIntegrationReconcile(t *testing.T) {
	sb := newSandbox(t)
	reg := prometheus.NewRegistry()
	c := sandboxController(t, sb, reg)
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- c.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-runDone; err != nil {
			t.Error(err)
		}
	}()

	spec := MirrorSpec{Bridge: sb.bridge, Name: "keep", SelectAll: true, Snaplen: 128}
	if _, err := c.EnsureMirror(ctx, spec); err != nil {
		t.Fatal(err)
	}
	mirrorUUID := func() string {
		out, err := sb.RunErr("ovs-vsctl", "--db="+sb.Endpoint(), "--no-wait", "--bare", "--columns=_uuid", "find", "Mirror", "name=keep")
		if err != nil {
			return ""
		}
		return strings.TrimSpace(out)
	}
	// clearAndExpectRestore deletes the mirror with ovs-vsctl and expects a new mirror row
	// (a new UUID); the wait is a hang guard (BenchmarkReconcileRestoresMirror measures the
	// latency) and the time it took is logged.
	clearAndExpectRestore := func(what string) {
		t.Helper()
		before := mirrorUUID()
		if before == "" {
			t.Fatalf("%s: mirror not in the database before the delete", what)
		}
		sb.Vsctl(t, "--no-wait", "clear", "Bridge", sb.bridge, "mirrors")
		start := time.Now()
		eventually(t, what, restoreGuard, func() bool {
			u := mirrorUUID()
			return u != "" && u != before
		})
		t.Logf("%s in %v", what, time.Since(start).Round(time.Millisecond))
	}
	eventually(t, "mirror in the database", 5*time.Second, func() bool { return mirrorUUID() != "" })
	clearAndExpectRestore("mirror restored after ovs-vsctl clear")

	// Changed behind the controller's back.
	sb.Vsctl(t, "--no-wait", "set", "Mirror", "keep", "snaplen=1000")
	eventually(t, "snaplen restored", restoreGuard, func() bool {
		out, _ := sb.RunErr("ovs-vsctl", "--db="+sb.Endpoint(), "--no-wait", "get", "Mirror", "keep", "snaplen")
		return strings.TrimSpace(out) == "128"
	})

	// ovsdb-server restarts: the controller reconnects and keeps reconciling.
	sb.StopDB(t)
	eventually(t, "controller notices the lost session", 5*time.Second, func() bool { return !c.Connected() })
	if _, err := c.ListMirrors(ctx); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("ListMirrors while ovsdb-server is down = %v, want ErrNotConnected", err)
	}
	sb.StartDB(t)
	eventually(t, "controller reconnects", 10*time.Second, c.Connected)
	eventually(t, "reconnects metric counts it", 5*time.Second, func() bool { return counterValue(c.metrics.reconnects) >= 1 })
	eventually(t, "mirror in the database after restart", 5*time.Second, func() bool { return mirrorUUID() != "" })
	clearAndExpectRestore("mirror restored after ovsdb-server restart")

	// ovs-vswitchd down: changes still commit; purge fails fast, nothing hangs.
	sb.StopVSwitchd(t)
	callCtx, callCancel := context.WithTimeout(ctx, 30*time.Second)
	defer callCancel()
	spec.Snaplen = 300
	if res, err := c.EnsureMirror(callCtx, spec); err != nil || res.Change != Updated {
		t.Fatalf("EnsureMirror with ovs-vswitchd down = %+v, %v", res, err)
	}
	if callCtx.Err() != nil {
		t.Fatal("EnsureMirror used up its whole deadline")
	}
	if n := counterValue(c.metrics.purgeFailures); n < 1 {
		t.Fatalf("purge failures = %v, want >= 1 with ovs-vswitchd down", n)
	}
	if _, err := c.RemoveMirror(callCtx, sb.bridge, "keep"); err != nil {
		t.Fatalf("RemoveMirror with ovs-vswitchd down: %v", err)
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

// TestIntegrationFlowSelection: a mirror selecting by OpenFlow match copies
// only the matching packets (echo requests toward b, not the replies), with
// snaplen, and its rules are restored when deleted behind its back.
func TestIntegrationFlowSelection(t *testing.T) {
	sb := newSandbox(t)
	c := sandboxController(t, sb, nil)
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- c.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-runDone; err != nil {
			t.Error(err)
		}
	}()

	spec := MirrorSpec{Bridge: sb.bridge, Name: "echo", Flows: []string{"icmp,nw_dst=" + sb.ip[1]}, Snaplen: 100}
	res, err := c.EnsureMirror(ctx, spec)
	if err != nil || res.Change != Created {
		t.Fatalf("EnsureMirror = %+v, %v", res, err)
	}
	flows := sb.Run(t, "ovs-ofctl", "--no-stats", "dump-flows", sb.bridge)
	if !strings.Contains(flows, "priority=40000") || !strings.Contains(flows, "nw_dst="+sb.ip[1]) {
		t.Fatalf("flow rule missing:\n%s", flows)
	}
	spray := sb.capture(DefaultSprayPortName(sb.bridge))
	sb.ping(300)
	got := waitPackets(t, spray, 10, "flow-selected mirror")
	if total, towardB := spray.counts(); total != towardB {
		t.Fatalf("captured %d packets, only %d toward b: replies were mirrored too", total, towardB)
	}
	if slices.Max(got) > 100 {
		t.Fatalf("frame lengths %v exceed snaplen 100", got)
	}

	// Rules deleted behind the controller's back come back (resync 500 ms).
	cookie := flowCookie(spec.Key())
	sb.Run(t, "ovs-ofctl", "del-flows", sb.bridge, "cookie="+strconvHex(cookie)+"/-1")
	eventually(t, "flow rules restored", 5*time.Second, func() bool {
		out, err := sb.RunErr("ovs-ofctl", "--no-stats", "dump-flows", sb.bridge)
		return err == nil && strings.Contains(out, "priority=40000")
	})

	if _, err := c.RemoveMirror(ctx, sb.bridge, "echo"); err != nil {
		t.Fatal(err)
	}
	if out := sb.Run(t, "ovs-ofctl", "--no-stats", "dump-flows", sb.bridge); strings.Contains(out, "priority=40000") {
		t.Fatalf("flow rule left after RemoveMirror:\n%s", out)
	}

	// One-shot controllers (as confluoctl runs them): one installs, another
	// removes; the rules are found through the Mirror row's external_ids.
	once := sandboxController(t, sb, nil)
	if _, err := once.EnsureMirror(ctx, spec); err != nil {
		t.Fatal(err)
	}
	once.Close()
	other := sandboxController(t, sb, nil)
	if _, err := other.RemoveMirror(ctx, sb.bridge, "echo"); err != nil {
		t.Fatal(err)
	}
	other.Close()
	if out := sb.Run(t, "ovs-ofctl", "--no-stats", "dump-flows", sb.bridge); strings.Contains(out, "priority=40000") {
		t.Fatalf("flow rule left after RemoveMirror by another controller:\n%s", out)
	}

	// A bridge with foreign OpenFlow rules is refused, not overridden.
	sb.Run(t, "ovs-ofctl", "add-flow", sb.bridge, "priority=100,arp,actions=NORMAL")
	if _, err := c.EnsureMirror(ctx, spec); !errors.Is(err, ErrFlowSelection) {
		t.Fatalf("EnsureMirror on a bridge with foreign flows = %v, want ErrFlowSelection", err)
	}
	if out := sb.Vsctl(t, "--no-wait", "list", "Mirror"); strings.TrimSpace(out) != "" {
		t.Fatalf("a refused flow mirror left a Mirror row:\n%s", out)
	}
}

func strconvHex(v uint64) string { return "0x" + strconv.FormatUint(v, 16) }

// TestIntegrationDPDKSprayPortRow: on a netdev bridge with DPDK initialized
// the spray port is a dpdkvhostuserclient interface whose socket is under
// VhostDir, and the real ovsdb-server accepts the row. ovs-vswitchd is
// stopped and dpdk_initialized set by hand, since DPDK itself (hugepages, the
// vhost-user server) is the spray stage's business.
func TestIntegrationDPDKSprayPortRow(t *testing.T) {
	sb := newSandbox(t)
	sb.StopVSwitchd(t)
	sb.Vsctl(t, "--no-wait", "set", "Open_vSwitch", ".", "dpdk_initialized=true")
	c := sandboxController(t, sb, nil)
	status, res, err := c.EnsureSprayPort(context.Background(), sb.bridge)
	if err != nil {
		t.Fatal(err)
	}
	name := DefaultSprayPortName(sb.bridge)
	wantPath := sb.Path("vhost") + "/" + name + ".sock"
	if res.Change != Created || status.Type != "dpdkvhostuserclient" || status.VhostServerPath != wantPath {
		t.Fatalf("EnsureSprayPort = %+v %+v, want dpdkvhostuserclient at %s", status, res, wantPath)
	}
	if got := strings.TrimSpace(sb.Vsctl(t, "--no-wait", "get", "Interface", name, "type")); got != "dpdkvhostuserclient" {
		t.Fatalf("Interface type in OVSDB = %s", got)
	}
	if got := strings.Trim(strings.TrimSpace(sb.Vsctl(t, "--no-wait", "get", "Interface", name, "options:vhost-server-path")), `"`); got != wantPath {
		t.Fatalf("vhost-server-path in OVSDB = %s, want %s", got, wantPath)
	}
	if fi, err := os.Stat(sb.Path("vhost")); err != nil || !fi.IsDir() {
		t.Fatalf("vhost socket directory not created: %v", err)
	}
	// A mirror then outputs to it in the same way as to a tap.
	if _, err := c.EnsureMirror(context.Background(), MirrorSpec{Bridge: sb.bridge, Name: "all", SelectAll: true, Snaplen: 128}); err != nil {
		t.Fatal(err)
	}
	list, err := c.ListMirrors(context.Background())
	if err != nil || len(list) != 1 || list[0].Spray.Type != "dpdkvhostuserclient" || list[0].Spray.VhostServerPath != wantPath {
		t.Fatalf("ListMirrors = %+v, %v", list, err)
	}
}
