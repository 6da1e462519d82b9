package ovs

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// sandbox is a private Open vSwitch: ovsdb-server and ovs-vswitchd with their
// own database, run directory and sockets in a temp dir, a userspace
// (netdev) bridge and two network namespaces attached through veth pairs.
// ovs-vswitchd runs in a network namespace of its own (swNS): the userspace
// datapath creates a tap called "ovs-netdev" in its namespace, so two of them
// (say this one and the spray tests' OVS-DPDK) cannot share one.
// Names start with "cfo6" and a random suffix so concurrent runs never
// collide with each other, with the system's OVS or with other tests.
type sandbox struct {
	t      *testing.T
	dir    string
	id     string // random suffix
	bridge string
	swNS   string // ovs-vswitchd's namespace, holds the bridge ports and the spray port
	ns     [2]string
	hostIf [2]string // bridge-side veth ends (ports on the bridge)
	ip     [2]string

	mu        sync.Mutex
	dbServer  *exec.Cmd
	vswitchd  *exec.Cmd
	processes []*exec.Cmd
}

// requireRoot fails the test, naming what is missing, unless it can run a
// private OVS with network namespaces.
func requireOVSPrereqs(t *testing.T) {
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
		t.Fatalf("OVS integration test prerequisites missing: %s (install with scripts/setup.d/10-ovs.sh, run as root)",
			strings.Join(missing, ", "))
	}
}

const schemaPath = "/usr/share/openvswitch/vswitch.ovsschema"

func newSandbox(t *testing.T) *sandbox {
	t.Helper()
	requireOVSPrereqs(t)
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	id := hex.EncodeToString(b[:])
	// unix socket paths must stay short: not t.TempDir().
	dir, err := os.MkdirTemp("", "cfo6-")
	if err != nil {
		t.Fatal(err)
	}
	sb := &sandbox{
		t:      t,
		dir:    dir,
		id:     id,
		bridge: "cfo6" + id,
		swNS:   "cfo6" + id + "-sw",
		ns:     [2]string{"cfo6" + id + "-a", "cfo6" + id + "-b"},
		hostIf: [2]string{"cfo6" + id + "a", "cfo6" + id + "b"},
		ip:     [2]string{fmt.Sprintf("10.%d.%d.1", 100+int(b[0])%100, b[1]), fmt.Sprintf("10.%d.%d.2", 100+int(b[0])%100, b[1])},
	}
	t.Cleanup(sb.cleanup)
	sb.must("ovsdb-tool", "create", sb.path("conf.db"), schemaPath)
	sb.startDBServer()
	sb.vsctl("--no-wait", "init")
	sb.must("ip", "netns", "add", sb.swNS)
	sb.must("ip", "netns", "exec", sb.swNS, "ip", "link", "set", "lo", "up")
	sb.startVSwitchd()
	sb.vsctl("--timeout=10", "add-br", sb.bridge, "--", "set", "Bridge", sb.bridge, "datapath_type=netdev")
	for i := range 2 {
		sb.must("ip", "netns", "add", sb.ns[i])
		peer := sb.hostIf[i] + "p"
		sb.must("ip", "netns", "exec", sb.swNS, "ip", "link", "add", sb.hostIf[i], "type", "veth", "peer", "name", peer)
		sb.must("ip", "netns", "exec", sb.swNS, "ip", "link", "set", peer, "netns", sb.ns[i])
		sb.must("ip", "netns", "exec", sb.ns[i], "ip", "addr", "add", sb.ip[i]+"/24", "dev", peer)
		sb.must("ip", "netns", "exec", sb.ns[i], "ip", "link", "set", peer, "up")
		sb.must("ip", "netns", "exec", sb.ns[i], "ip", "link", "set", "lo", "up")
		sb.must("ip", "netns", "exec", sb.swNS, "ip", "link", "set", sb.hostIf[i], "up")
		sb.vsctl("--timeout=10", "add-port", sb.bridge, sb.hostIf[i])
	}
	return sb
}

func (sb *sandbox) path(name string) string { return filepath.Join(sb.dir, name) }

// swNSPath is the path of ovs-vswitchd's network namespace.
func (sb *sandbox) swNSPath() string { return "/run/netns/" + sb.swNS }

func (sb *sandbox) endpoint() string { return "unix:" + sb.path("db.sock") }

// env is the environment OVS tools need to find this sandbox.
func (sb *sandbox) env() []string {
	return append(os.Environ(), "OVS_RUNDIR="+sb.dir, "OVS_DBDIR="+sb.dir, "OVS_LOGDIR="+sb.dir, "OVS_SYSCONFDIR="+sb.dir)
}

// run runs a command with a 20 s deadline and returns its combined output.
func (sb *sandbox) run(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
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

// vsctl runs ovs-vsctl against the sandbox database. Callers pass --no-wait
// or --timeout so it can never block on a missing ovs-vswitchd.
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
	sb.processes = append(sb.processes, cmd)
	sb.mu.Unlock()
	go func() { _ = cmd.Wait() }()
	return cmd
}

func (sb *sandbox) waitFile(path string) {
	sb.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(sb.path("ovs-vswitchd.log"))
			sb.t.Fatalf("%s did not appear within 10s; vswitchd log:\n%s", path, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (sb *sandbox) startDBServer() {
	sb.t.Helper()
	_ = os.Remove(sb.path("db.sock"))
	cmd := sb.start("ovsdb-server", sb.path("conf.db"),
		"--remote=punix:"+sb.path("db.sock"),
		"--unixctl="+sb.path("ovsdb-server.ctl"),
		"--pidfile="+sb.path("ovsdb-server.pid"),
		"--log-file="+sb.path("ovsdb-server.log"), "-vconsole:off")
	sb.mu.Lock()
	sb.dbServer = cmd
	sb.mu.Unlock()
	sb.waitFile(sb.path("db.sock"))
}

// stopDBServer kills ovsdb-server and waits for it to exit.
func (sb *sandbox) stopDBServer() {
	sb.t.Helper()
	sb.mu.Lock()
	cmd := sb.dbServer
	sb.mu.Unlock()
	sb.kill(cmd)
}

func (sb *sandbox) startVSwitchd() {
	sb.t.Helper()
	cmd := sb.start("ip", "netns", "exec", sb.swNS, "ovs-vswitchd", sb.endpoint(),
		"--pidfile="+sb.path("ovs-vswitchd.pid"),
		"--log-file="+sb.path("ovs-vswitchd.log"), "-vconsole:off")
	sb.mu.Lock()
	sb.vswitchd = cmd
	sb.mu.Unlock()
	sb.waitFile(sb.path(fmt.Sprintf("ovs-vswitchd.%d.ctl", cmd.Process.Pid)))
}

func (sb *sandbox) stopVSwitchd() {
	sb.t.Helper()
	sb.mu.Lock()
	cmd := sb.vswitchd
	sb.mu.Unlock()
	sb.kill(cmd)
}

func (sb *sandbox) kill(cmd *exec.Cmd) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(cmd.Process.Pid, 0) == nil {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (sb *sandbox) cleanup() {
	sb.mu.Lock()
	procs := sb.processes
	sb.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		sb.kill(procs[i])
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

// ping starts a continuous ping of size bytes from namespace 0 to the
// address in namespace 1 until the test ends.
func (sb *sandbox) ping(size int) {
	sb.t.Helper()
	cmd := sb.start("ip", "netns", "exec", sb.ns[0], "ping", "-q", "-i", "0.05", "-s", fmt.Sprint(size), sb.ip[1])
	sb.t.Cleanup(func() { sb.kill(cmd) })
}

// capture counts the ICMP packets between the sandbox addresses that arrive
// on an interface, with their frame lengths, through an AF_PACKET socket.
type capture struct {
	mu      sync.Mutex
	lengths []int
	toB     int // packets addressed to namespace b
	fd      int
	done    chan struct{}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (sb *sandbox) capture(ifName string) *capture {
	sb.t.Helper()
	// The socket is opened and bound inside ovs-vswitchd's namespace.
	fd := -1
	deadline := time.Now().Add(10 * time.Second)
	for fd < 0 {
		err := withNetNS(sb.swNSPath(), func() error {
			iface, err := net.InterfaceByName(ifName)
			if err != nil {
				return err
			}
			s, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
			if err != nil {
				return fmt.Errorf("AF_PACKET socket: %w", err)
			}
			if err := unix.Bind(s, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: iface.Index}); err != nil {
				unix.Close(s)
				return fmt.Errorf("bind AF_PACKET to %s: %w", ifName, err)
			}
			fd = s
			return nil
		})
		if err != nil && time.Now().After(deadline) {
			sb.t.Fatalf("capture on %s in %s: %v", ifName, sb.swNS, err)
		}
		if fd < 0 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 100000})
	c := &capture{fd: fd, done: make(chan struct{})}
	src, dst := ipBytes(sb.ip[0]), ipBytes(sb.ip[1])
	go func() {
		defer close(c.done)
		buf := make([]byte, 65536)
		for {
			n, _, err := unix.Recvfrom(fd, buf, unix.MSG_TRUNC)
			if err != nil {
				if err == unix.EAGAIN || err == unix.EINTR {
					continue
				}
				return
			}
			frame := buf[:min(n, len(buf))]
			if len(frame) < 34 || binary.BigEndian.Uint16(frame[12:14]) != 0x0800 || frame[23] != 1 {
				continue // not IPv4 ICMP
			}
			s, d := string(frame[26:30]), string(frame[30:34])
			if (s == src && d == dst) || (s == dst && d == src) {
				c.mu.Lock()
				c.lengths = append(c.lengths, n)
				if d == dst {
					c.toB++
				}
				c.mu.Unlock()
			}
		}
	}()
	sb.t.Cleanup(c.close)
	return c
}

func ipBytes(s string) string {
	var a, b, c, d byte
	fmt.Sscanf(s, "%d.%d.%d.%d", &a, &b, &c, &d)
	return string([]byte{a, b, c, d})
}

func (c *capture) close() {
	select {
	case <-c.done:
		return
	default:
	}
	unix.Shutdown(c.fd, unix.SHUT_RDWR)
	unix.Close(c.fd)
	<-c.done
}

// reset forgets what was captured so far.
func (c *capture) reset() {
	c.mu.Lock()
	c.lengths = nil
	c.toB = 0
	c.mu.Unlock()
}

func (c *capture) snapshot() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int(nil), c.lengths...)
}

// counts returns how many packets were captured and how many of them were
// addressed to namespace b.
func (c *capture) counts() (total, towardB int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.lengths), c.toB
}
