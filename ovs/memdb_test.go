package ovs

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ovn-org/libovsdb/ovsdb"

	"github.com/confluo-go/confluo/ovs/internal/memovsdb"
	"github.com/confluo-go/confluo/ovs/internal/mirrorspec"
	"github.com/confluo-go/confluo/ovs/internal/vswitch"
)

// testLogger returns a logger whose records go to t.Log (shown on failure
// or with -v) until the test ends.
func testLogger(t testing.TB) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, nil))
}

type testWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func testOptions(t testing.TB, endpoint string) Options {
	o := DefaultOptions()
	o.Endpoint = endpoint
	o.OVSRunDir = "/nonexistent-confluo-ovs-rundir"
	o.VhostDir = filepath.Join(t.TempDir(), "vhost")
	o.CallTimeout = 2 * time.Second
	o.ResyncInterval = 200 * time.Millisecond
	o.MinBackoff = 20 * time.Millisecond
	o.MaxBackoff = 200 * time.Millisecond
	o.Purge = false
	o.Logger = testLogger(t)
	return o
}

func newMemController(t *testing.T, ms *memovsdb.Server) *Controller {
	t.Helper()
	return connectController(t, testOptions(t, ms.Endpoint))
}

// runController runs c.Run until the test ends, then stops it and reports its error.
func runController(tb testing.TB, ctx context.Context, c *Controller) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Error(err)
		}
	})
}

// connectController returns a connected controller with options o, closed when the test ends.
func connectController(tb testing.TB, o Options) *Controller {
	tb.Helper()
	c, err := New(o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		tb.Fatal(err)
	}
	return c
}

func eventually(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true within %v", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestMemEnsureMirrorLifecycle(t *testing.T) {
	ms := memovsdb.Start(t)
	ms.AddBridge(t, "br0", "system", false, "vm1", "vm2")
	c := newMemController(t, ms)
	ctx := context.Background()

	spec := MirrorSpec{Bridge: "br0", Name: "m1", SrcPorts: []string{"vm1"}, Snaplen: 128}
	res, err := c.EnsureMirror(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if res.Change != Created {
		t.Fatalf("first EnsureMirror: %+v, want created", res)
	}
	res, err = c.EnsureMirror(ctx, spec)
	if err != nil || res.Change != Unchanged {
		t.Fatalf("second EnsureMirror: %+v %v, want unchanged", res, err)
	}
	eventually(t, "admin sees mirror", 2*time.Second, func() bool { return len(ms.Mirrors(t)) == 1 })
	m := ms.Mirrors(t)[0]
	if m.Name != "m1" || m.Snaplen == nil || *m.Snaplen != 128 || !mirrorspec.IsManaged(m.ExternalIDs) || m.OutputPort == nil {
		t.Fatalf("mirror row %+v", m)
	}
	br := ms.Bridge(t, "br0")
	if len(br.Mirrors) != 1 || len(br.Ports) != 3 {
		t.Fatalf("bridge row %+v, want 1 mirror and 3 ports (vm1, vm2, spray)", br)
	}

	spec.Snaplen = 256
	spec.SrcPorts = []string{"vm1", "vm2"}
	res, err = c.EnsureMirror(ctx, spec)
	if err != nil || res.Change != Updated {
		t.Fatalf("update: %+v %v", res, err)
	}
	list, err := c.ListMirrors(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Spec.Snaplen != 256 || len(list[0].Spec.SrcPorts) != 2 || !list[0].Managed ||
		!list[0].Desired || list[0].Spray.Name != "cf-br0" || list[0].Spray.Type != "internal" || !list[0].Spray.Managed {
		t.Fatalf("ListMirrors = %+v", list)
	}

	res, err = c.RemoveMirror(ctx, "br0", "m1")
	if err != nil || res.Change != Removed {
		t.Fatalf("remove: %+v %v", res, err)
	}
	eventually(t, "mirror gone", 2*time.Second, func() bool { return len(ms.Bridge(t, "br0").Mirrors) == 0 })
	if _, err := c.RemoveMirror(ctx, "br0", "m1"); !errors.Is(err, ErrMirrorNotFound) {
		t.Fatalf("second remove: %v, want ErrMirrorNotFound", err)
	}
}

func TestMemErrors(t *testing.T) {
	ms := memovsdb.Start(t)
	ms.AddBridge(t, "br0", "system", false, "vm1")
	// An unmanaged mirror "theirs" made by someone else.
	br := ms.Bridge(t, "br0")
	ms.Transact(t,
		ovsdb.Operation{Op: ovsdb.OperationInsert, Table: "Mirror", UUIDName: "m", Row: ovsdb.Row{"name": "theirs", "select_all": true}},
		ovsdb.Operation{Op: ovsdb.OperationMutate, Table: "Bridge",
			Where:     []ovsdb.Condition{ovsdb.NewCondition("_uuid", ovsdb.ConditionEqual, ovsdb.UUID{GoUUID: br.UUID})},
			Mutations: []ovsdb.Mutation{{Column: "mirrors", Mutator: ovsdb.MutateOperationInsert, Value: ovsdb.OvsSet{GoSet: []any{ovsdb.UUID{GoUUID: "m"}}}}}})
	c := newMemController(t, ms)
	ctx := context.Background()
	cases := []struct {
		spec MirrorSpec
		want error
	}{
		{MirrorSpec{Bridge: "nobr", Name: "m", SelectAll: true}, ErrBridgeNotFound},
		{MirrorSpec{Bridge: "br0", Name: "m", SrcPorts: []string{"nope"}}, ErrPortNotFound},
		{MirrorSpec{Bridge: "br0", Name: "m", SelectAll: true, Snaplen: 5}, ErrSnaplen},
		{MirrorSpec{Bridge: "br0", Name: "theirs", SelectAll: true}, ErrUnmanaged},
	}
	for _, tc := range cases {
		if _, err := c.EnsureMirror(ctx, tc.spec); !errors.Is(err, tc.want) {
			t.Errorf("EnsureMirror(%+v) = %v, want %v", tc.spec, err, tc.want)
		}
	}
	if _, err := c.RemoveMirror(ctx, "br0", "theirs"); !errors.Is(err, ErrUnmanaged) {
		t.Errorf("RemoveMirror(theirs) = %v, want ErrUnmanaged", err)
	}
	c.mu.Lock()
	n := len(c.mu.desired)
	c.mu.Unlock()
	if n != 0 {
		t.Errorf("failed specs were remembered: %d", n)
	}
	list, err := c.ListMirrors(ctx)
	if err != nil || len(list) != 1 || list[0].Managed || list[0].Spec.Name != "theirs" {
		t.Errorf("ListMirrors = %+v, %v; want the unmanaged mirror only", list, err)
	}
	if _, err := c.MirrorStatus(ctx, "nobr", "x"); !errors.Is(err, ErrBridgeNotFound) {
		t.Errorf("MirrorStatus(nobr) = %v", err)
	}
	if _, err := c.MirrorStatus(ctx, "br0", "x"); !errors.Is(err, ErrMirrorNotFound) {
		t.Errorf("MirrorStatus(br0, x) = %v", err)
	}
}

func TestMemReconcileRestoresMirror(t *testing.T) {
	ms := memovsdb.Start(t)
	ms.AddBridge(t, "br0", "system", false, "vm1")
	c := newMemController(t, ms)
	ctx := context.Background()
	runController(t, ctx, c)
	spec := MirrorSpec{Bridge: "br0", Name: "m1", SelectAll: true, Snaplen: 100}
	if _, err := c.EnsureMirror(ctx, spec); err != nil {
		t.Fatal(err)
	}
	eventually(t, "admin sees mirror", 2*time.Second, func() bool { return len(ms.Bridge(t, "br0").Mirrors) == 1 })
	// Someone else deletes it.
	br := ms.Bridge(t, "br0")
	deleteFirstMirror(t, ms, br)
	// Restoration may beat the admin's cache, so look for a new mirror row. The issue's
	// "within 1 s" is measured by BenchmarkReconcileRestoresMirror; here the wait is a hang
	// guard, so a loaded CI machine does not fail the test.
	eventually(t, "mirror restored", restoreGuard, func() bool {
		b := ms.Bridge(t, "br0")
		return len(b.Mirrors) == 1 && b.Mirrors[0] != br.Mirrors[0]
	})
	// Someone else changes its snaplen.
	ms.Transact(t, ovsdb.Operation{Op: ovsdb.OperationUpdate, Table: "Mirror",
		Where: []ovsdb.Condition{ovsdb.NewCondition("name", ovsdb.ConditionEqual, "m1")},
		Row:   ovsdb.Row{"snaplen": ovsdb.OvsSet{GoSet: []any{2000}}}})
	defer func() {
		if t.Failed() {
			l, err := c.ListMirrors(context.Background())
			t.Logf("admin mirrors %+v; controller list %+v %v; reconciles %v", ms.Mirrors(t), l, err, counterValue(c.metrics.reconciles))
		}
	}()
	eventually(t, "snaplen restored", restoreGuard, func() bool {
		return counterValue(c.metrics.changes.WithLabelValues("updated")) >= 1
	})
	eventually(t, "admin sees snaplen 100", restoreGuard, func() bool {
		ms := ms.Mirrors(t)
		return len(ms) == 1 && ms[0].Snaplen != nil && *ms[0].Snaplen == 100
	})
}

// TestMemEnsureMirrorOvertaken deletes the mirror an EnsureMirror has just created, behind its
// back, and lets the controller's cache apply the insert and the delete before EnsureMirror looks
// at the cache after its commit: the cache then looks as it did before the commit. EnsureMirror
// must see that its commit was applied and overtaken, and return at once, not wait out
// CallTimeout for a mirror that will not appear; Run then restores the mirror.
func TestMemEnsureMirrorOvertaken(t *testing.T) {
	ms := memovsdb.Start(t)
	ms.AddBridge(t, "br0", "system", false, "vm1")
	c := newMemController(t, ms)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The spray port first: creating it waits up to 2 s for an ofport no ovs-vswitchd assigns here.
	if _, _, err := c.EnsureSprayPort(ctx, "br0"); err != nil {
		t.Fatal(err)
	}
	mirrorsInCache := func() int {
		var rows []vswitch.Mirror
		if err := c.sess.Load().client.List(ctx, &rows); err != nil {
			t.Fatal(err)
		}
		return len(rows)
	}
	var deleted string
	c.afterCommit = func() {
		if deleted != "" {
			return
		}
		eventually(t, "controller's cache shows the new mirror", restoreGuard, func() bool { return mirrorsInCache() == 1 })
		eventually(t, "admin sees the new mirror", restoreGuard, func() bool { return len(ms.Bridge(t, "br0").Mirrors) == 1 })
		br := ms.Bridge(t, "br0")
		deleted = br.Mirrors[0]
		deleteFirstMirror(t, ms, br)
		eventually(t, "controller's cache shows the delete", restoreGuard, func() bool { return mirrorsInCache() == 0 })
	}
	spec := MirrorSpec{Bridge: "br0", Name: "m1", SelectAll: true, Snaplen: 100}
	start := time.Now()
	res, err := c.EnsureMirror(ctx, spec)
	took := time.Since(start)
	if err != nil || res.Change != Created {
		t.Fatalf("EnsureMirror = %+v, %v after %v; want created", res, err, took)
	}
	if took >= c.opts.CallTimeout/2 {
		t.Fatalf("EnsureMirror took %v: it waited for the overtaken commit (CallTimeout %v)", took, c.opts.CallTimeout)
	}
	runController(t, ctx, c)
	eventually(t, "mirror restored", restoreGuard, func() bool {
		b := ms.Bridge(t, "br0")
		return len(b.Mirrors) == 1 && b.Mirrors[0] != deleted
	})
}

// restoreGuard bounds the tests' waits for the controller to restore what someone else
// changed: a hang guard, not the latency target (BenchmarkReconcileRestoresMirror measures it).
const restoreGuard = 10 * time.Second

// deleteFirstMirror deletes the bridge's first mirror behind the controller's back, as an
// admin's ovs-vsctl would: one transaction that unlinks and deletes the row.
func deleteFirstMirror(tb testing.TB, ms *memovsdb.Server, br vswitch.Bridge) {
	tb.Helper()
	ms.Transact(tb, ovsdb.Operation{Op: ovsdb.OperationMutate, Table: "Bridge",
		Where:     []ovsdb.Condition{ovsdb.NewCondition("_uuid", ovsdb.ConditionEqual, ovsdb.UUID{GoUUID: br.UUID})},
		Mutations: []ovsdb.Mutation{{Column: "mirrors", Mutator: ovsdb.MutateOperationDelete, Value: ovsdb.OvsSet{GoSet: []any{ovsdb.UUID{GoUUID: br.Mirrors[0]}}}}}},
		ovsdb.Operation{Op: ovsdb.OperationDelete, Table: "Mirror",
			Where: []ovsdb.Condition{ovsdb.NewCondition("_uuid", ovsdb.ConditionEqual, ovsdb.UUID{GoUUID: br.Mirrors[0]})}})
}

func TestMemSprayPortDPDK(t *testing.T) {
	ms := memovsdb.Start(t)
	ms.AddBridge(t, "brd", "netdev", true, "vm1")
	c := newMemController(t, ms)
	status, res, err := c.EnsureSprayPort(context.Background(), "brd")
	if err != nil {
		t.Fatal(err)
	}
	if res.Change != Created || status.Type != "dpdkvhostuserclient" || status.Name != "cf-brd" ||
		status.VhostServerPath != filepath.Join(c.opts.VhostDir, "cf-brd.sock") || !status.Managed {
		t.Fatalf("EnsureSprayPort = %+v %+v", status, res)
	}
	if _, res, err = c.EnsureSprayPort(context.Background(), "brd"); err != nil || res.Change != Unchanged {
		t.Fatalf("second EnsureSprayPort = %+v %v", res, err)
	}
	if fi, err := os.Stat(c.opts.VhostDir); err != nil || !fi.IsDir() {
		t.Fatalf("vhost dir not created: %v", err)
	}
}

func TestMemNetdevWithoutDPDK(t *testing.T) {
	ms := memovsdb.Start(t)
	ms.AddBridge(t, "brn", "netdev", false, "vm1")
	c := newMemController(t, ms)
	status, _, err := c.EnsureSprayPort(context.Background(), "brn")
	if err != nil {
		t.Fatal(err)
	}
	if status.Type != "internal" || status.VhostServerPath != "" {
		t.Fatalf("EnsureSprayPort = %+v", status)
	}
}

func TestConnectErrors(t *testing.T) {
	o := testOptions(t, "unix:"+filepath.Join(t.TempDir(), "missing.sock"))
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Connect(context.Background()); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Connect = %v, want ErrNotRunning", err)
	}
	if _, err := c.EnsureMirror(context.Background(), MirrorSpec{Bridge: "b", Name: "m", SelectAll: true}); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("EnsureMirror unconnected = %v", err)
	}
	tcp, err := New(testOptions(t, "tcp:127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	if err := tcp.Connect(context.Background()); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Connect(tcp:127.0.0.1:1) = %v, want ErrNotRunning", err)
	}
	if _, err := New(testOptions(t, "ssl:127.0.0.1:6640")); !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("New(ssl without TLS) = %v, want ErrInvalidOptions", err)
	}
	if _, err := New(Options{}); !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("New(zero) = %v", err)
	}
	bad := testOptions(t, "http://x")
	if _, err := New(bad); !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("New(bad endpoint) = %v", err)
	}
}

// BenchmarkEnsureMirrorUnchanged measures a reconciliation step that finds
// nothing to do: build the state from the cache and plan.
func BenchmarkEnsureMirrorUnchanged(b *testing.B) {
	ms := memovsdb.Start(b)
	ms.AddBridge(b, "br0", "system", false, "vm1", "vm2")
	o := testOptions(b, ms.Endpoint)
	o.Logger = nil
	c := connectController(b, o)
	ctx := context.Background()
	spec := MirrorSpec{Bridge: "br0", Name: "m1", SrcPorts: []string{"vm1"}, Snaplen: 128}
	if _, err := c.EnsureMirror(ctx, spec); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if res, err := c.EnsureMirror(ctx, spec); err != nil || res.Change != Unchanged {
			b.Fatal(res, err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ensures/s")
}

// BenchmarkReconcileRestoresMirror measures how long a running controller takes to put back a
// mirror someone else deleted (issue target: within 1 s), from the delete's commit until a new
// mirror row is on the bridge: ns/op is the mean, max-ms the worst restore.
func BenchmarkReconcileRestoresMirror(b *testing.B) {
	ms := memovsdb.Start(b)
	ms.AddBridge(b, "br0", "system", false, "vm1")
	o := testOptions(b, ms.Endpoint)
	o.Logger = nil
	c := connectController(b, o)
	ctx := context.Background()
	runController(b, ctx, c)
	if _, err := c.EnsureMirror(ctx, MirrorSpec{Bridge: "br0", Name: "m1", SelectAll: true, Snaplen: 100}); err != nil {
		b.Fatal(err)
	}
	waitRestored := func(old string) time.Duration {
		start := time.Now()
		for {
			br := ms.Bridge(b, "br0")
			if len(br.Mirrors) == 1 && br.Mirrors[0] != old {
				return time.Since(start)
			}
			if time.Since(start) > restoreGuard {
				b.Fatalf("mirror not restored within %v", restoreGuard)
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitRestored("")
	var worst time.Duration
	for b.Loop() {
		br := ms.Bridge(b, "br0")
		deleteFirstMirror(b, ms, br)
		worst = max(worst, waitRestored(br.Mirrors[0]))
	}
	b.ReportMetric(float64(worst)/float64(time.Millisecond), "max-ms")
}
