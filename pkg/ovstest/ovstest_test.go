package ovstest_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/confluo-go/confluo/pkg/ovstest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestOVSLifecycle: a private OVS with two bridges joined by a veth pair and a namespace on
// each forwards pings; ovsdb-server and ovs-vswitchd restart in place; ovs-appctl reaches
// ovs-vswitchd through OVS_RUNDIR; t.Cleanup removes the namespaces, the run directory and the
// daemons.
func TestOVSLifecycle(t *testing.T) {
	ovstest.RequireOVS(t, "ping", "ethtool")
	var o *ovstest.OVS
	var nsA, nsB string
	t.Run("run", func(t *testing.T) {
		o = ovstest.Start(t, ovstest.Config{Prefix: "cfot"})
		id := ovstest.Unique("cfot")
		x, y := id+"x", id+"y"
		nsA, nsB = id+"-a", id+"-b"
		ipA, ipB := ovstest.RandomAddrs(150, 50)
		o.AddBridge(t, x)
		o.AddBridge(t, y)
		o.Link(t, x, x+"l", y, y+"l")
		o.Attach(t, x, nsA, x+"a", ipA+"/24")
		o.Attach(t, y, nsB, y+"b", ipB+"/24")
		ping := func(what string) {
			t.Helper()
			if !ovstest.Eventually(20*time.Second, func() bool {
				_, err := ovstest.RunErr("ip", "netns", "exec", nsA, "ping", "-c", "1", "-W", "1", ipB)
				return err == nil
			}) {
				t.Fatalf("%s: no ping from %s to %s across the two bridges", what, ipA, ipB)
			}
		}
		ping("first start")

		o.StopDB(t)
		if _, err := o.RunErr("ovs-vsctl", "--db="+o.Endpoint(), "--timeout=2", "--no-wait", "list-br"); err == nil {
			t.Fatal("ovs-vsctl succeeded with ovsdb-server stopped")
		}
		o.StartDB(t)
		if got := o.Vsctl(t, "--no-wait", "list-br"); got != x+"\n"+y {
			t.Fatalf("bridges after the ovsdb-server restart = %q, want %s and %s", got, x, y)
		}

		o.StopVSwitchd(t)
		if _, err := o.RunErr("ovs-appctl", "--timeout=2", "-t", "ovs-vswitchd", "version"); err == nil {
			t.Fatal("ovs-appctl reached ovs-vswitchd after it stopped")
		}
		o.StartVSwitchd(t)
		if out := o.Run(t, "ovs-appctl", "--timeout=10", "-t", "ovs-vswitchd", "version"); !strings.Contains(out, "Open vSwitch") {
			t.Fatalf("ovs-appctl version after the restart: %q", out)
		}
		ping("after the ovs-vswitchd restart")
	})
	if o == nil {
		return // the subtest failed before starting OVS
	}
	for _, ns := range []string{nsA, nsB, o.NS} {
		if _, err := os.Stat("/var/run/netns/" + ns); err == nil {
			t.Errorf("namespace %s left behind", ns)
		}
	}
	if _, err := os.Stat(o.Dir); err == nil {
		t.Errorf("run directory %s left behind", o.Dir)
	}
}
