//go:build linux

package afpacket

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/confluo-go/confluo/pkg/ovstest"
	"github.com/confluo-go/confluo/pkg/packet"
	"github.com/confluo-go/confluo/pkg/spray"
	"github.com/confluo-go/confluo/pkg/spray/internal/testframes"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestOptionsValidate(t *testing.T) {
	for name, o := range map[string]Options{
		"no interface": {},
		"long name":    {Interface: "abcdefghijklmnop"},
		"snaplen":      {Interface: "lo", Snaplen: 10},
		"block size":   {Interface: "lo", BlockSize: 5000},
		"blocks":       {Interface: "lo", Blocks: -1},
		"timeout":      {Interface: "lo", BlockTimeout: time.Microsecond},
		"queues":       {Interface: "lo", Queues: 1000},
	} {
		if err := o.Validate(); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("%s: %v, want ErrInvalidOptions", name, err)
		}
	}
	if _, err := Open(Options{Interface: "sprnosuchif0"}); err == nil {
		t.Error("Open on a missing interface succeeded")
	}
}

// sendFrames writes frames on ifname inside the namespace at ns through a raw AF_PACKET socket.
func sendFrames(t *testing.T, ns, ifname string, frames [][]byte) {
	t.Helper()
	err := inNamespace(ns, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		sa := &unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6}
		for i, f := range frames {
			for {
				err := unix.Sendto(fd, f, 0, sa)
				if errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.EAGAIN) {
					time.Sleep(time.Millisecond)
					continue
				}
				if err != nil {
					t.Errorf("send frame %d: %v", i, err)
				}
				break
			}
			if i%256 == 255 {
				time.Sleep(time.Millisecond) // let the receiver keep up; loss is not what we test
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestFanoutVeth sends frames of many flows, both directions, VLAN-tagged and not, into one end
// of a veth pair in a private namespace and captures the other end with two fanout sockets
// through the spray: every frame arrives once, each flow (both directions) on one queue, the
// snaplen is applied and the stripped VLAN tag is back in the record.
func TestFanoutVeth(t *testing.T) {
	ovstest.Require(t, "ip", "sysctl")
	nsName := ovstest.Name("sprafn")
	ns := ovstest.Namespace(t, nsName)
	// No IPv6 autoconfiguration chatter: every frame on the wire is one the test sent.
	ovstest.Run(t, "ip", "netns", "exec", nsName, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	ovstest.Run(t, "ip", "-n", nsName, "link", "add", "sprv0", "type", "veth", "peer", "name", "sprv1")
	ovstest.Run(t, "ip", "-n", nsName, "link", "set", "sprv0", "up")
	ovstest.Run(t, "ip", "-n", nsName, "link", "set", "sprv1", "up")

	src, err := Open(Options{Interface: "sprv1", Namespace: ns, Queues: 2, Snaplen: 96, BlockSize: 1 << 16, Blocks: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	// A second source on the same interface gets a group of its own.
	other, err := Open(Options{Interface: "sprv1", Namespace: ns, Queues: 2, BlockSize: 1 << 16, Blocks: 2})
	if err != nil {
		t.Fatal(err)
	}
	if other.FanoutGroup() == src.FanoutGroup() {
		t.Fatalf("two sources share fanout group %d", src.FanoutGroup())
	}
	other.Close()
	s, err := spray.New(src, spray.Options{Rings: 2, RingCapacity: 1 << 14})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var runErr error
	wg.Go(func() { runErr = s.Run(ctx) })

	flows := testframes.Flows(64)
	var frames [][]byte
	const perDir = 20
	for i := range perDir {
		for _, f := range flows {
			frames = append(frames, testframes.Frame(f, 300, uint64(i)), testframes.Frame(f.Reverse(), 300, uint64(i)))
		}
	}
	// VLAN 42 frames: the veth strips the tag into the skb; the source must put it back.
	const vlanFrames = 50
	for i := range vlanFrames {
		f := testframes.Frame(flows[i%4], 100, uint64(i))
		tagged := append(append(append([]byte{}, f[:12]...), 0x81, 0x00, 0x00, 42), f[12:]...)
		frames = append(frames, tagged)
	}
	sendFrames(t, ns, "sprv0", frames)

	if !ovstest.Eventually(10*time.Second, func() bool { return s.Stats().Received >= uint64(len(frames)) }) {
		t.Errorf("received %d of %d frames sent", s.Stats().Received, len(frames))
	}
	cancel()
	wg.Wait()
	if runErr != nil {
		t.Fatal(runErr)
	}
	st := s.Stats()
	if st.Received != uint64(len(frames)) || st.Enqueued != st.Received || st.Source.KernelDrops != 0 {
		t.Fatalf("stats %+v, want %d frames received and enqueued, no kernel drops", st, len(frames))
	}
	flowQueue := map[[2]uint32]int{}
	vlans := 0
	for r := range 2 {
		rg := s.Ring(r)
		if rg.Len() == 0 {
			t.Errorf("queue %d got nothing: the kernel did not spread 64 flows", r)
		}
		for {
			p := rg.Peek(64)
			if len(p) == 0 {
				break
			}
			for i := 0; i < len(p); i += packet.RecordSize {
				rec := p[i : i+packet.RecordSize]
				if c := binary.LittleEndian.Uint16(rec[packet.OffCapLen:]); c > 96 {
					t.Fatalf("cap_len %d over snaplen 96", c)
				}
				if binary.LittleEndian.Uint16(rec[packet.OffVLAN:]) == 42 {
					vlans++
				}
				a := binary.BigEndian.Uint32(rec[packet.OffSrcIP:])
				b := binary.BigEndian.Uint32(rec[packet.OffDstIP:])
				k := [2]uint32{min(a, b), max(a, b)}
				if q, ok := flowQueue[k]; ok && q != r {
					t.Fatalf("flow %x on queues %d and %d", k, q, r)
				}
				flowQueue[k] = r
			}
			rg.Release(len(p) / packet.RecordSize)
		}
	}
	if vlans != vlanFrames {
		t.Errorf("%d records carry VLAN 42, want %d (tag not reinserted?)", vlans, vlanFrames)
	}
	if len(flowQueue) != len(flows) {
		t.Errorf("%d flows seen, want %d", len(flowQueue), len(flows))
	}
}

// TestCloseStopsRun checks that Close makes a blocked Run return and that Run after Close fails.
func TestCloseStopsRun(t *testing.T) {
	ovstest.Require(t, "ip")
	nsName := ovstest.Name("sprafc")
	ns := ovstest.Namespace(t, nsName)
	src, err := Open(Options{Interface: "lo", Namespace: ns, Queues: 1, BlockSize: 1 << 16, Blocks: 2})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var ran atomic.Bool
	wg.Go(func() {
		ran.Store(true)
		if err := src.Run(context.Background(), 0, func([]spray.Frame) {}); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	for !ran.Load() {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err := src.Run(context.Background(), 0, func([]spray.Frame) {}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Run after Close: %v, want ErrClosed", err)
	}
	if err := src.Run(context.Background(), 5, nil); err == nil {
		t.Fatal("Run on a missing queue succeeded")
	}
}
