// Package ovstest is test support, for tests only: it starts the real components that
// end-to-end tests of the OVS controller, the spray sources, the sidecar and the coordinator
// need — a private Open vSwitch (ovsdb-server and ovs-vswitchd, optionally the DPDK build) in a
// short temporary run directory, with ovs-vswitchd in a network namespace of its own, plus
// network namespaces, veth pairs and traffic.
//
// Usage:
//
//	ovstest.RequireOVS(t, "iperf3")                     // root + OVS tools, or t.Fatal naming what is missing
//	o := ovstest.Start(t, ovstest.Config{Prefix: "cfsc"}) // scripts/ovs-dpdk.sh start ... --netns
//	br := ovstest.Unique("cfsc")
//	o.AddBridge(t, br)
//	o.Attach(t, br, br+"-a", br+"a", "10.101.7.1/24")   // namespace + veth, host end a bridge port
//	o.StopDB(t); o.StartDB(t)                           // restart ovsdb-server (or ovs-vswitchd)
//
// Rules every helper keeps:
//   - Missing prerequisites (root, a tool, the OVS schema, hugepages) fail the test loudly,
//     naming what is missing and the scripts/setup.d script that installs it; nothing skips.
//   - Every name (run directory, namespace, bridge, interface, DPDK file prefix) carries the
//     caller's prefix (Name, Unique), so concurrent suites and engineers never collide.
//   - Everything is removed in t.Cleanup: processes, namespaces, taps, hugepage files and the
//     run directory (after logging the tail of the OVS logs when the test failed).
//
// ovs-vswitchd runs in a namespace of its own because the userspace datapath creates a tap
// called "ovs-netdev" in its namespace, so two userspace instances cannot share one.
//
// Helpers take a testing.TB and are safe for concurrent use by parallel tests as long as each
// test uses its own names; an *OVS may be shared by the goroutines of one test.
package ovstest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ovsTools are the binaries a private Open vSwitch needs.
var ovsTools = []string{"ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovs-appctl", "ovs-ofctl", "ip", "bash"}

// SchemaPath is the Open_vSwitch database schema a private instance is created from.
const SchemaPath = "/usr/share/openvswitch/vswitch.ovsschema"

// Require fails the test unless it runs as root with the named tools on PATH.
func Require(t testing.TB, tools ...string) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (network namespaces, veth, AF_PACKET, hugepages)")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("end-to-end test prerequisites missing: %s (run scripts/setup.d/*.sh as root, as CI does)", strings.Join(missing, ", "))
	}
}

// RequireOVS is Require with the Open vSwitch tools and schema a private instance needs, plus
// the extra tools named.
func RequireOVS(t testing.TB, tools ...string) {
	t.Helper()
	Require(t, append(append([]string(nil), ovsTools...), tools...)...)
	if _, err := os.Stat(SchemaPath); err != nil {
		t.Fatalf("end-to-end test prerequisite missing: %s (run scripts/setup.d/10-ovs.sh as root)", SchemaPath)
	}
}

// RequireHugepages fails the test unless at least n 2 MB hugepages are free.
func RequireHugepages(t testing.TB, n int) {
	t.Helper()
	b, err := os.ReadFile("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages")
	if err != nil {
		t.Fatalf("no 2 MB hugepage support: %v (run scripts/setup.d/30-dpdk.sh)", err)
	}
	free, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if free < n {
		t.Fatalf("only %d free 2 MB hugepages; the test needs >= %d (run scripts/setup.d/30-dpdk.sh)", free, n)
	}
}

// Run runs a command and returns its combined output, failing the test on error.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := RunErr(name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// RunErr runs a command with a 60 s limit and returns its combined output and error.
func RunErr(name string, args ...string) (string, error) {
	return runEnv(nil, name, args...)
}

// runEnv runs a command with extra environment variables and a 60 s limit. The error names
// the command and carries its output.
func runEnv(env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var buf bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdout, cmd.Stderr = &buf, &buf
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		return buf.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(buf.Bytes()))
	}
	return buf.String(), nil
}

// Background starts a long-running command (a ping, a server) that dies with the test
// process; t.Cleanup stops it.
func Background(t testing.TB, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	return cmd
}

// RepoRoot returns the module root (the directory holding go.mod).
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("ovstest: go.mod not found above the test directory")
		}
		dir = parent
	}
}

// Name returns prefix plus a per-process suffix, cut to the 15-byte interface name limit.
func Name(prefix string) string {
	n := fmt.Sprintf("%s%d", prefix, os.Getpid()%100000)
	if len(n) > 15 {
		n = n[:15]
	}
	return n
}

// Unique returns prefix plus six random hex digits, for names that must differ between the
// tests of one process. Keep prefix short: with a few characters appended it must still fit
// the 15-byte interface name limit.
func Unique(prefix string) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// RandomAddrs returns two addresses 10.X.Y.1 and 10.X.Y.2 of a random /24, X in
// [first, first+span), so concurrent tests rarely share a subnet (they are in separate
// namespaces anyway).
func RandomAddrs(first, span int) (a, b string) {
	var r [2]byte
	_, _ = rand.Read(r[:])
	x := first + int(r[0])%span
	return fmt.Sprintf("10.%d.%d.1", x, r[1]), fmt.Sprintf("10.%d.%d.2", x, r[1])
}

// Eventually polls cond every 50 ms until it holds or limit passes; it returns whether it held.
// It waits for asynchronous counters to settle; it asserts nothing about speed.
func Eventually(limit time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(limit)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}
