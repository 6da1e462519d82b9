//go:build linux

package afpacket

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/confluo-go/confluo/pkg/spray"
)

// Kernel ABI bits not (all) in x/sys/unix.
const (
	tpStatusVLANValid     = 0x10 // TP_STATUS_VLAN_VALID
	tpStatusVLANTPIDValid = 0x40 // TP_STATUS_VLAN_TPID_VALID
	blockHeaderOffset     = 8    // offsetof(struct tpacket_block_desc, hdr)
)

// Source is an AF_PACKET TPACKET_V3 capture source with one socket per queue.
//
// Source follows the spray.Source concurrency contract: Run once per queue at a time, each queue
// from its own goroutine; Stats and Close from any goroutine. Close waits for running Run calls
// to return (at most one poll interval) before it unmaps the rings.
type Source struct {
	opts    Options
	ifindex int
	socks   []*socket
	group   int // fanout group id in use, -1 until the first socket has one (ids start at 0)

	// mu is held shared by every running Run and exclusively by Close, so the rings are never
	// unmapped under a reader.
	mu     sync.RWMutex
	closed atomic.Bool

	// statsMu guards the cumulative kernel counters (PACKET_STATISTICS resets on read).
	statsMu sync.Mutex
	kernel  spray.SourceStats
}

// socket is one fanout member and its mapped ring.
type socket struct {
	fd     int
	ring   []byte
	blocks int
	bsize  int
	next   int // next block to read; used by its queue's goroutine only
	// counters written by the queue goroutine only
	received atomic.Uint64
	bytes    atomic.Uint64
	_        [48]byte
}

var _ spray.Source = (*Source)(nil)

// Open creates the sockets, maps their rings, binds them to the interface and joins them to the
// fanout group. Capture starts now (frames queue in the rings until Run).
func Open(opts Options) (*Source, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts.fill()
	s := &Source{opts: opts, group: -1}
	if opts.FanoutGroup != 0 {
		s.group = int(opts.FanoutGroup)
	}
	err := inNamespace(opts.Namespace, func() error {
		ifi, err := net.InterfaceByName(opts.Interface)
		if err != nil {
			return fmt.Errorf("afpacket: interface %q: %w", opts.Interface, err)
		}
		s.ifindex = ifi.Index
		for q := range opts.Queues {
			sk, err := s.openSocket()
			if err != nil {
				return fmt.Errorf("afpacket: %s queue %d: %w", opts.Interface, q, err)
			}
			s.socks = append(s.socks, sk)
		}
		return nil
	})
	if err != nil {
		s.release()
		return nil, err
	}
	return s, nil
}

// inNamespace runs f on a thread switched into the network namespace at path ("" = current).
// Sockets keep the namespace they were created in.
func inNamespace(path string, f func() error) error {
	if path == "" {
		return f()
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return fmt.Errorf("afpacket: current namespace: %w", err)
	}
	defer orig.Close()
	ns, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("afpacket: namespace: %w", err)
	}
	defer ns.Close()
	if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("afpacket: enter namespace %s: %w", path, err)
	}
	ferr := f()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread is in the wrong namespace: keep it locked so it dies with this goroutine.
		runtime.LockOSThread()
		return errors.Join(ferr, fmt.Errorf("afpacket: leave namespace %s: %w", path, err))
	}
	return ferr
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (s *Source) openSocket() (*socket, error) {
	o := s.opts
	// Protocol 0: no frames arrive before the ring and filter are in place and bind says so.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	sk := &socket{fd: fd, blocks: o.Blocks, bsize: o.BlockSize}
	fail := func(what string, err error) (*socket, error) {
		sk.close()
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V3); err != nil {
		return fail("PACKET_VERSION TPACKET_V3", err)
	}
	if !o.IncludeOutgoing {
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1); err != nil {
			return fail("PACKET_IGNORE_OUTGOING", err)
		}
	}
	if o.Snaplen < 65535 {
		// One BPF instruction, "ret #snaplen": accept every frame, keep Snaplen bytes.
		prog := []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: uint32(o.Snaplen)}}
		fprog := unix.SockFprog{Len: 1, Filter: &prog[0]}
		if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fprog); err != nil {
			return fail("SO_ATTACH_FILTER", err)
		}
	}
	frameSize := uint32(unix.TPACKET_ALIGNMENT * ((o.Snaplen + 128 + unix.TPACKET_ALIGNMENT - 1) / unix.TPACKET_ALIGNMENT))
	req := unix.TpacketReq3{
		Block_size:     uint32(o.BlockSize),
		Block_nr:       uint32(o.Blocks),
		Frame_size:     frameSize,
		Frame_nr:       uint32(o.BlockSize) / frameSize * uint32(o.Blocks),
		Retire_blk_tov: uint32(o.BlockTimeout / time.Millisecond),
	}
	if err := unix.SetsockoptTpacketReq3(fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
		return fail("PACKET_RX_RING", err)
	}
	ring, err := unix.Mmap(fd, 0, o.BlockSize*o.Blocks, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_LOCKED|unix.MAP_POPULATE)
	if err != nil {
		// MAP_LOCKED fails under a small RLIMIT_MEMLOCK; the ring works unlocked too.
		ring, err = unix.Mmap(fd, 0, o.BlockSize*o.Blocks, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		if err != nil {
			return fail("mmap ring", err)
		}
	}
	sk.ring = ring
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: s.ifindex}
	if err := unix.Bind(fd, sa); err != nil {
		return fail("bind", err)
	}
	// Without a configured group the first socket asks the kernel for an unused id
	// (PACKET_FANOUT_FLAG_UNIQUEID; the kernel's ids start at 0) and the others join it.
	fanout := unix.PACKET_FANOUT_HASH << 16
	if s.group >= 0 {
		fanout |= s.group
	} else {
		fanout |= unix.PACKET_FANOUT_FLAG_UNIQUEID << 16
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_FANOUT, fanout); err != nil {
		return fail(fmt.Sprintf("PACKET_FANOUT group %d", s.group), err)
	}
	if s.group < 0 {
		v, err := unix.GetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_FANOUT)
		if err != nil {
			return fail("read PACKET_FANOUT group", err)
		}
		s.group = v & 0xffff
	}
	return sk, nil
}

func (sk *socket) close() {
	if sk.ring != nil {
		_ = unix.Munmap(sk.ring)
		sk.ring = nil
	}
	if sk.fd >= 0 {
		_ = unix.Close(sk.fd)
		sk.fd = -1
	}
}

// release closes every socket; callers hold mu exclusively or own s alone.
func (s *Source) release() {
	for _, sk := range s.socks {
		sk.close()
	}
}

// Queues returns the number of sockets in the fanout group.
func (s *Source) Queues() int { return len(s.socks) }

// FanoutGroup returns the PACKET_FANOUT group id in use.
func (s *Source) FanoutGroup() uint16 { return uint16(s.group) }

// Close stops running Run calls, waits for them and releases the sockets and rings.
func (s *Source) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.collectKernelStats()
	s.release()
	return nil
}

// Stats returns frames and bytes handed to the spray and the kernel's drop count.
func (s *Source) Stats() spray.SourceStats {
	var st spray.SourceStats
	for _, sk := range s.socks {
		st.Received += sk.received.Load()
		st.Bytes += sk.bytes.Load()
	}
	if s.mu.TryRLock() {
		if !s.closed.Load() {
			s.collectKernelStats()
		}
		s.mu.RUnlock()
	}
	s.statsMu.Lock()
	st.KernelDrops = s.kernel.KernelDrops
	s.statsMu.Unlock()
	return st
}

// collectKernelStats adds the kernel's counters (reset on every read) to the running sums.
// Callers hold mu (shared or exclusive) with the sockets open.
func (s *Source) collectKernelStats() {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	for _, sk := range s.socks {
		if sk.fd < 0 {
			continue
		}
		st, err := unix.GetsockoptTpacketStatsV3(sk.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
		if err == nil {
			s.kernel.KernelDrops += uint64(st.Drops)
		}
	}
}

// Run reads queue q's ring and hands bursts of frames, zero-copy, to burst until ctx is done or
// the source is closed (nil) or the socket fails (an error).
func (s *Source) Run(ctx context.Context, q int, burst func([]spray.Frame)) error {
	if q < 0 || q >= len(s.socks) {
		return fmt.Errorf("afpacket: queue %d does not exist (%d queues)", q, len(s.socks))
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed.Load() {
		return ErrClosed
	}
	sk := s.socks[q]
	frames := make([]spray.Frame, 0, s.opts.Burst)
	// Copies of frames whose VLAN tag must be put back; sized so a burst never outgrows it.
	vlanArena := make([]byte, s.opts.Burst*(s.opts.Snaplen+4))
	pollMs := 100
	pfd := []unix.PollFd{{Fd: int32(sk.fd), Events: unix.POLLIN | unix.POLLERR}}
	for {
		if ctx.Err() != nil || s.closed.Load() {
			return nil
		}
		base := sk.next * sk.bsize
		block := sk.ring[base : base+sk.bsize : base+sk.bsize]
		hdr := (*unix.TpacketHdrV1)(unsafe.Pointer(&block[blockHeaderOffset]))
		status := (*atomic.Uint32)(unsafe.Pointer(&hdr.Block_status))
		if status.Load()&unix.TP_STATUS_USER == 0 {
			_, err := unix.Poll(pfd, pollMs)
			if err != nil && !errors.Is(err, unix.EINTR) {
				return fmt.Errorf("afpacket: poll %s: %w", s.opts.Interface, err)
			}
			if pfd[0].Revents&unix.POLLERR != 0 {
				// The kernel reports ring errors (for example the interface went away).
				var so int
				so, err = unix.GetsockoptInt(sk.fd, unix.SOL_SOCKET, unix.SO_ERROR)
				if err == nil && so != 0 {
					return fmt.Errorf("afpacket: %s: %w", s.opts.Interface, unix.Errno(so))
				}
			}
			continue
		}
		n := int(hdr.Num_pkts)
		off := int(hdr.Offset_to_first_pkt)
		frames = frames[:0]
		used := 0
		var nbytes uint64
		for i := 0; i < n; i++ {
			if off <= 0 || off+unix.SizeofTpacket3Hdr > len(block) {
				break // a corrupt chain: drop the rest of the block rather than read outside it
			}
			ph := (*unix.Tpacket3Hdr)(unsafe.Pointer(&block[off]))
			start := off + int(ph.Mac)
			end := start + int(ph.Snaplen)
			if end > len(block) || start < off {
				break
			}
			data := block[start:end:end]
			wire := int(ph.Len)
			if ph.Status&tpStatusVLANValid != 0 && len(data) >= 12 {
				tpid := uint16(0x8100)
				if ph.Status&tpStatusVLANTPIDValid != 0 && ph.Hv1.Vlan_tpid != 0 {
					tpid = ph.Hv1.Vlan_tpid
				}
				keep := min(len(data), s.opts.Snaplen-4)
				dst := vlanArena[used : used+keep+4 : used+keep+4]
				copy(dst, data[:12])
				binary.BigEndian.PutUint16(dst[12:], tpid)
				binary.BigEndian.PutUint16(dst[14:], uint16(ph.Hv1.Vlan_tci))
				copy(dst[16:], data[12:keep])
				used += len(dst)
				data = dst
				wire += 4
			}
			frames = append(frames, spray.Frame{Data: data, WireLen: wire,
				Timestamp: int64(ph.Sec)*int64(time.Second) + int64(ph.Nsec)})
			nbytes += uint64(wire)
			if len(frames) == cap(frames) {
				burst(frames)
				sk.received.Add(uint64(len(frames)))
				frames, used = frames[:0], 0
			}
			off += int(ph.Next_offset)
			if ph.Next_offset == 0 {
				break
			}
		}
		if len(frames) > 0 {
			burst(frames)
			sk.received.Add(uint64(len(frames)))
		}
		sk.bytes.Add(nbytes)
		status.Store(unix.TP_STATUS_KERNEL)
		sk.next = (sk.next + 1) % sk.blocks
	}
}
