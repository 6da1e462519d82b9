package ovs

import (
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/confluo-go/confluo/pkg/ovstest"
)

// sandbox is a private Open vSwitch (pkg/ovstest: ovs-vswitchd in a network
// namespace of its own, restartable ovsdb-server and ovs-vswitchd), a userspace
// (netdev) bridge and two network namespaces attached through veth pairs.
// Names start with "cfo6" and a random suffix so concurrent runs never
// collide with each other, with the system's OVS or with other tests.
type sandbox struct {
	*ovstest.OVS
	t      *testing.T
	bridge string
	ns     [2]string
	hostIf [2]string // bridge-side veth ends (ports on the bridge)
	ip     [2]string
}

func newSandbox(t *testing.T) *sandbox {
	t.Helper()
	ovstest.RequireOVS(t, "ping", "ethtool")
	id := ovstest.Unique("cfo6")
	sb := &sandbox{
		OVS:    ovstest.Start(t, ovstest.Config{Prefix: "cfo6"}),
		t:      t,
		bridge: id,
		ns:     [2]string{id + "-a", id + "-b"},
		hostIf: [2]string{id + "a", id + "b"},
	}
	sb.ip[0], sb.ip[1] = ovstest.RandomAddrs(100, 100)
	sb.Vsctl(t, "add-br", sb.bridge, "--", "set", "Bridge", sb.bridge, "datapath_type=netdev")
	for i := range 2 {
		sb.Attach(t, sb.bridge, sb.ns[i], sb.hostIf[i], sb.ip[i]+"/24")
	}
	return sb
}

// ping starts a continuous ping of size bytes from namespace 0 to the
// address in namespace 1 until the test ends.
func (sb *sandbox) ping(size int) {
	sb.t.Helper()
	ovstest.Background(sb.t, "ip", "netns", "exec", sb.ns[0], "ping", "-q", "-i", "0.05", "-s", fmt.Sprint(size), sb.ip[1])
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
		err := withNetNS(sb.NSPath(), func() error {
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
			sb.t.Fatalf("capture on %s in %s: %v", ifName, sb.NS, err)
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
