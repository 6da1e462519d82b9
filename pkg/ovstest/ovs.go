package ovstest

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Config says what kind of private OVS Start runs.
type Config struct {
	// Prefix starts every name the instance uses: its run directory (/tmp/<Prefix>NNN), the
	// namespace of ovs-vswitchd and the DPDK file prefix. Required; keep it to a few letters.
	Prefix string
	// DPDK runs the DPDK build of ovs-vswitchd with dpdk-init=true (needs hugepages).
	DPDK bool
	// PMDMask is the DPDK PMD threads' CPU mask (e.g. "0x2"); empty: OVS's default.
	PMDMask string
}

// VSwitchdDPDK is the DPDK build of ovs-vswitchd (Debian's openvswitch-switch-dpdk).
const VSwitchdDPDK = "/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk"

// OVS is a private Open vSwitch instance started by scripts/ovs-dpdk.sh: ovsdb-server and
// ovs-vswitchd with their database, sockets, pid and log files in Dir. ovs-vswitchd runs in
// network namespace NS, so its userspace datapath device ("ovs-netdev"), bridges and internal
// ports cannot collide with another instance's. ovs-vswitchd's control socket is the default
// Dir/ovs-vswitchd.<pid>.ctl, so `OVS_RUNDIR=Dir ovs-appctl -t ovs-vswitchd` reaches it.
//
// An OVS is safe for concurrent use by the goroutines of one test, except that StopDB,
// StartDB, StopVSwitchd and StartVSwitchd must not race each other.
type OVS struct {
	Dir    string // run directory: conf.db, db.sock, *.pid, *.log, <bridge>.mgmt
	NS     string // ovs-vswitchd's network namespace
	script string
}

var ovsCount atomic.Int32

// Start starts a private OVS as described by c; t.Cleanup stops it, deletes its namespace,
// taps and hugepage files, logs the tail of its logs if the test failed and removes Dir.
func Start(t testing.TB, c Config) *OVS {
	t.Helper()
	if c.Prefix == "" {
		t.Fatal("ovstest: Config.Prefix is required")
	}
	RequireOVS(t)
	if c.DPDK {
		if _, err := os.Stat(VSwitchdDPDK); err != nil {
			t.Fatalf("OVS-DPDK missing: %v (run scripts/setup.d/30-dpdk.sh as root: apt-get install openvswitch-switch-dpdk)", err)
		}
	}
	// Unix socket paths are limited to 107 bytes: a short directory, not t.TempDir().
	dir, err := os.MkdirTemp("/tmp", c.Prefix)
	if err != nil {
		t.Fatal(err)
	}
	o := &OVS{Dir: dir, NS: fmt.Sprintf("%so%d-%d", c.Prefix, os.Getpid(), ovsCount.Add(1)),
		script: filepath.Join(RepoRoot(t), "scripts", "ovs-dpdk.sh")}
	_, _ = RunErr("ip", "netns", "del", o.NS) // stale from a killed run
	args := []string{o.script, "start", dir, "--netns", o.NS, "--prefix", filepath.Base(dir)}
	if c.DPDK {
		args = append(args, "--dpdk")
		if c.PMDMask != "" {
			args = append(args, "--pmd-mask", c.PMDMask)
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, f := range []string{"ovs-vswitchd.log", "ovsdb-server.log"} {
				b, _ := os.ReadFile(o.Path(f))
				if len(b) > 4000 {
					b = b[len(b)-4000:]
				}
				t.Logf("--- tail of %s:\n%s", o.Path(f), b)
			}
		}
		if out, err := RunErr("bash", o.script, "stop", dir); err != nil {
			t.Errorf("stop OVS in %s: %v\n%s", dir, err, out)
		}
		_ = os.RemoveAll(dir)
	})
	if out, err := RunErr("bash", args...); err != nil {
		t.Fatalf("start OVS (%s): %v\n%s", strings.Join(args, " "), err, out)
	}
	return o
}

// Path returns the path of name in the run directory.
func (o *OVS) Path(name string) string { return filepath.Join(o.Dir, name) }

// Endpoint returns the OVSDB endpoint, unix:<Dir>/db.sock.
func (o *OVS) Endpoint() string { return "unix:" + o.Path("db.sock") }

// NSPath returns the path of ovs-vswitchd's namespace, for options naming a namespace file.
func (o *OVS) NSPath() string { return "/var/run/netns/" + o.NS }

// Env returns the environment variables OVS tools need to find this instance.
func (o *OVS) Env() []string {
	return []string{"OVS_RUNDIR=" + o.Dir, "OVS_DBDIR=" + o.Dir, "OVS_LOGDIR=" + o.Dir, "OVS_SYSCONFDIR=" + o.Dir}
}

// RunErr runs a command with the instance's environment (so ovs-ofctl BRIDGE and ovs-appctl -t
// ovs-vswitchd find it) and a 60 s limit; the error names the command and carries its output.
func (o *OVS) RunErr(name string, args ...string) (string, error) {
	return runEnv(o.Env(), name, args...)
}

// Run is RunErr failing the test on error.
func (o *OVS) Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := o.RunErr(name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Vsctl runs ovs-vsctl against the instance with a 30 s timeout (pass --no-wait when
// ovs-vswitchd may be down) and returns its trimmed output.
func (o *OVS) Vsctl(t testing.TB, args ...string) string {
	t.Helper()
	return strings.TrimSpace(o.Run(t, "ovs-vsctl", append([]string{"--db=" + o.Endpoint(), "--timeout=30"}, args...)...))
}

// IP runs the ip command inside ovs-vswitchd's namespace.
func (o *OVS) IP(t testing.TB, args ...string) string {
	t.Helper()
	return Run(t, "ip", append([]string{"-n", o.NS}, args...)...)
}

// Exec runs a command inside ovs-vswitchd's namespace.
func (o *OVS) Exec(t testing.TB, args ...string) (string, error) {
	return RunErr("ip", append([]string{"netns", "exec", o.NS}, args...)...)
}

// Attach creates namespace ns (lo up) and a veth pair: host in ovs-vswitchd's namespace, up
// and added to br, and "eth0" in ns with address cidr and checksum offload off (TCP and UDP
// through a userspace bridge need it). t.Cleanup deletes the namespace.
func (o *OVS) Attach(t testing.TB, br, ns, host, cidr string) {
	t.Helper()
	Namespace(t, ns)
	Veth(t, o, br, host, ns, "eth0", cidr)
}

// Link joins bridges br1 and br2 with a veth pair port1-port2 in ovs-vswitchd's namespace.
func (o *OVS) Link(t testing.TB, br1, port1, br2, port2 string) {
	t.Helper()
	o.IP(t, "link", "add", port1, "type", "veth", "peer", "name", port2)
	for _, p := range [][2]string{{br1, port1}, {br2, port2}} {
		o.IP(t, "link", "set", p[1], "up")
		o.Vsctl(t, "add-port", p[0], p[1])
	}
}

// StopDB stops ovsdb-server and waits until it has exited.
func (o *OVS) StopDB(t testing.TB) {
	t.Helper()
	o.stopPidfile(t, "ovsdb-server.pid")
}

// StartDB starts ovsdb-server again on the same database and socket (after StopDB); it
// returns once the server listens.
func (o *OVS) StartDB(t testing.TB) {
	t.Helper()
	_ = os.Remove(o.Path("db.sock"))
	o.Run(t, "ovsdb-server", o.Path("conf.db"), "--remote=punix:"+o.Path("db.sock"),
		"--pidfile="+o.Path("ovsdb-server.pid"), "--unixctl="+o.Path("ovsdb-server.ctl"),
		"--log-file="+o.Path("ovsdb-server.log"), "-vconsole:emer", "--detach", "--no-chdir")
}

// StopVSwitchd stops ovs-vswitchd (without --cleanup: bridges and ports stay in the
// database) and waits until it has exited.
func (o *OVS) StopVSwitchd(t testing.TB) {
	t.Helper()
	o.stopPidfile(t, "ovs-vswitchd.pid")
}

// StartVSwitchd starts ovs-vswitchd again (after StopVSwitchd) in its namespace, the same
// build the instance started with; it returns once the daemon is up.
func (o *OVS) StartVSwitchd(t testing.TB) {
	t.Helper()
	bin, err := os.ReadFile(o.Path("vswitchd-bin"))
	if err != nil {
		t.Fatalf("ovstest: which ovs-vswitchd to restart: %v", err)
	}
	o.Run(t, "ip", "netns", "exec", o.NS, strings.TrimSpace(string(bin)), o.Endpoint(),
		"--pidfile="+o.Path("ovs-vswitchd.pid"), "--log-file="+o.Path("ovs-vswitchd.log"),
		"-vconsole:emer", "--detach", "--no-chdir")
}

// stopPidfile sends SIGTERM to the daemon in the pid file and waits up to 5 s for it to exit,
// then kills it.
func (o *OVS) stopPidfile(t testing.TB, name string) {
	t.Helper()
	b, err := os.ReadFile(o.Path(name))
	if err != nil {
		t.Fatalf("ovstest: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		t.Fatalf("ovstest: bad pid file %s: %q", o.Path(name), b)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return // already gone
	}
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			deadline = time.Now().Add(5 * time.Second)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// alive reports whether pid exists and is not a zombie (a detached daemon is not our child,
// so we cannot reap it).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
