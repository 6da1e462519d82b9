//go:build dpdk && linux && cgo

package dpdk

/*
#cgo pkg-config: libdpdk
#cgo LDFLAGS: -lrte_bus_vdev
#include <stdlib.h>
#include <string.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_bus_vdev.h>

static int spr_errno(void) { return rte_errno; }

static int spr_eal_init(int argc, char **argv) { return rte_eal_init(argc, argv); }

// spr_port_setup configures one rx and one tx queue on port and starts it.
static int spr_port_setup(uint16_t port, struct rte_mempool *mp, uint16_t nb_rxd) {
	struct rte_eth_conf conf;
	memset(&conf, 0, sizeof(conf));
	int ret = rte_eth_dev_configure(port, 1, 1, &conf);
	if (ret < 0) return ret;
	uint16_t rxd = nb_rxd, txd = 64;
	ret = rte_eth_dev_adjust_nb_rx_tx_desc(port, &rxd, &txd);
	if (ret < 0) return ret;
	int socket = rte_eth_dev_socket_id(port);
	if (socket < 0) socket = 0;
	ret = rte_eth_rx_queue_setup(port, 0, rxd, socket, NULL, mp);
	if (ret < 0) return ret;
	ret = rte_eth_tx_queue_setup(port, 0, txd, socket, NULL);
	if (ret < 0) return ret;
	return rte_eth_dev_start(port);
}

// spr_rx receives up to n (<= 256) packets from queue 0 of port, copies at most snap bytes of
// each to out + i*snap (caplen[i] bytes, wire length wirelen[i]) and frees the mbufs: one cgo
// crossing per burst.
static uint16_t spr_rx(uint16_t port, uint8_t *out, uint32_t snap, uint32_t *caplen, uint32_t *wirelen, uint16_t n) {
	struct rte_mbuf *pkts[256];
	if (n > 256) n = 256;
	uint16_t got = rte_eth_rx_burst(port, 0, pkts, n);
	for (uint16_t i = 0; i < got; i++) {
		struct rte_mbuf *m = pkts[i];
		uint32_t len = rte_pktmbuf_pkt_len(m);
		uint32_t c = len < snap ? len : snap;
		uint8_t *dst = out + (size_t)i * snap;
		const void *p = rte_pktmbuf_read(m, 0, c, dst);
		if (p == NULL) {
			c = 0;
		} else if (p != dst) {
			memcpy(dst, p, c);
		}
		caplen[i] = c;
		wirelen[i] = len;
	}
	if (got > 0) rte_pktmbuf_free_bulk(pkts, got);
	return got;
}

static int spr_link_up(uint16_t port) {
	struct rte_eth_link link;
	memset(&link, 0, sizeof(link));
	if (rte_eth_link_get_nowait(port, &link) < 0) return 0;
	return link.link_status == RTE_ETH_LINK_UP;
}

struct spr_stats { uint64_t ipackets, ibytes, imissed, ierrors, nombuf; };

static int spr_stats(uint16_t port, struct spr_stats *out) {
	struct rte_eth_stats st;
	int ret = rte_eth_stats_get(port, &st);
	if (ret < 0) return ret;
	out->ipackets = st.ipackets; out->ibytes = st.ibytes; out->imissed = st.imissed;
	out->ierrors = st.ierrors; out->nombuf = st.rx_nombuf;
	return 0;
}

static void spr_port_close(uint16_t port) {
	rte_eth_dev_stop(port);
	rte_eth_dev_close(port);
}
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/confluo-go/confluo/pkg/spray"
)

// eal is the process-wide EAL: one goroutine, locked to its OS thread, initializes it and runs
// every control-plane call until Shutdown.
var eal struct {
	mu       sync.Mutex // guards the fields below; held while starting or stopping the EAL
	started  bool
	shutdown bool
	calls    chan func()
	done     chan struct{}
	prefix   string
	ports    atomic.Uint32 // vdev name counter
}

// onEAL runs f on the EAL main thread and waits for it.
func onEAL(f func()) {
	done := make(chan struct{})
	eal.calls <- func() { f(); close(done) }
	<-done
}

// cpuList returns the process's allowed CPUs as an EAL cpuset, for example "0-1" or "0,2,5".
func cpuList() string {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return "0"
	}
	var cpus []string
	for i := range 1024 {
		if set.IsSet(i) {
			cpus = append(cpus, fmt.Sprint(i))
		}
	}
	if len(cpus) == 0 {
		return "0"
	}
	return strings.Join(cpus, ",")
}

// startEAL initializes the EAL once; callers hold eal.mu.
func startEAL(o EALOptions) error {
	if eal.shutdown {
		return ErrShutdown
	}
	if eal.started {
		return nil
	}
	args := []string{"confluo-spray",
		"--lcores", "0@(" + cpuList() + ")",
		"--no-pci", "--no-telemetry", "--in-memory", "--single-file-segments",
		"--file-prefix", o.FilePrefix,
		"-m", fmt.Sprint(o.MemoryMB),
		"--log-level", o.LogLevel,
	}
	if o.HugeDir != "" {
		args = append(args, "--huge-dir", o.HugeDir)
	}
	args = append(args, o.Extra...)
	eal.calls = make(chan func())
	eal.done = make(chan struct{})
	initErr := make(chan error, 1)
	go func() {
		// rte_eal_init pins and keeps this thread; it stays locked for the EAL's lifetime and
		// dies with the goroutine.
		runtime.LockOSThread()
		argv := make([]*C.char, len(args))
		for i, a := range args {
			argv[i] = C.CString(a)
		}
		ret := C.spr_eal_init(C.int(len(argv)), (**C.char)(unsafe.Pointer(&argv[0])))
		// The EAL keeps pointers into argv: never freed.
		if ret < 0 {
			initErr <- fmt.Errorf("%w: rte_eal_init(%s): %w", ErrEAL, strings.Join(args[1:], " "), unix.Errno(C.spr_errno()))
			close(eal.done)
			return
		}
		initErr <- nil
		for f := range eal.calls {
			f()
		}
		C.rte_eal_cleanup()
		close(eal.done)
	}()
	if err := <-initErr; err != nil {
		// A failed rte_eal_init cannot be retried in this process.
		eal.shutdown = true
		return err
	}
	eal.started = true
	eal.prefix = o.FilePrefix
	return nil
}

// Shutdown releases the EAL (rte_eal_cleanup). Close every source first. The EAL cannot be
// initialized again in this process: later Opens fail with ErrShutdown.
func Shutdown() error {
	eal.mu.Lock()
	defer eal.mu.Unlock()
	if eal.shutdown {
		return nil
	}
	eal.shutdown = true
	if !eal.started {
		return nil
	}
	close(eal.calls)
	<-eal.done
	// rte_eal_cleanup leaves the runtime directory behind even with --in-memory.
	if err := os.RemoveAll(filepath.Join("/var/run/dpdk", eal.prefix)); err != nil {
		return fmt.Errorf("dpdk: remove runtime directory: %w", err)
	}
	return nil
}

// Source is a DPDK vhost-user (net_virtio_user, server=1) capture source with one queue.
//
// Source follows the spray.Source concurrency contract: Run on queue 0 from one goroutine at a
// time, Stats, LinkUp and Close from any goroutine. Close waits for a running Run to return.
type Source struct {
	opts   Options
	name   string // vdev name
	port   C.uint16_t
	pool   *C.struct_rte_mempool
	buf    []byte   // C memory: Burst*Snaplen bytes of copied headers
	lens   []uint32 // C memory: caplen[Burst], wirelen[Burst]
	cbuf   unsafe.Pointer
	closed atomic.Bool
	// mu is held shared by Run and exclusively by Close, so the port is never closed under a
	// receiving thread.
	mu sync.RWMutex

	received atomic.Uint64
	bytes    atomic.Uint64
	final    spray.SourceStats // hardware counters at Close
}

var _ spray.Source = (*Source)(nil)

// Open initializes the EAL if needed, creates the vhost-user server vdev on opts.SocketPath and
// starts its port. DPDK's virtio-user server waits for its client before it creates the port, so
// Open blocks until OVS's dpdkvhostuserclient port (options:vhost-server-path=SocketPath)
// connects, at most opts.ConnectTimeout (ErrNotConnected); configure the OVS port first, OVS
// retries the connection every few seconds.
func Open(opts Options) (*Source, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts.fill()
	eal.mu.Lock()
	defer eal.mu.Unlock()
	if err := startEAL(opts.EAL); err != nil {
		return nil, err
	}
	if eal.shutdown {
		return nil, ErrShutdown
	}
	// A stale socket from a killed process makes the vdev come up with zero ports.
	if fi, err := os.Lstat(opts.SocketPath); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%w: %s exists and is not a socket", ErrInvalidOptions, opts.SocketPath)
		}
		if err := os.Remove(opts.SocketPath); err != nil {
			return nil, fmt.Errorf("dpdk: remove stale socket: %w", err)
		}
	}
	id := eal.ports.Add(1) - 1
	s := &Source{opts: opts, name: fmt.Sprintf("net_virtio_user%d", id)}
	// In server mode rte_vdev_init blocks in accept() until the vhost-user client (OVS)
	// connects. Past ConnectTimeout a connection of our own unblocks it; the negotiation then
	// fails and the vdev is torn down.
	var err error
	done := make(chan struct{})
	go func() {
		onEAL(func() { err = s.setupLocked(id) })
		close(done)
	}()
	timer := time.NewTimer(opts.ConnectTimeout)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		for {
			if c, derr := net.Dial("unix", opts.SocketPath); derr == nil {
				c.Close()
			}
			select {
			case <-done:
			case <-time.After(100 * time.Millisecond):
				continue
			}
			break
		}
		if err == nil {
			onEAL(func() { s.teardownLocked() })
		}
		os.Remove(opts.SocketPath)
		return nil, fmt.Errorf("%w: no vhost-user client connected to %s within %v", ErrNotConnected, opts.SocketPath, opts.ConnectTimeout)
	}
	if err != nil {
		os.Remove(opts.SocketPath)
		return nil, err
	}
	size := opts.Burst*opts.Snaplen + 2*4*opts.Burst
	s.cbuf = C.malloc(C.size_t(size))
	raw := unsafe.Slice((*byte)(s.cbuf), size)
	s.buf = raw[:opts.Burst*opts.Snaplen]
	s.lens = unsafe.Slice((*uint32)(unsafe.Pointer(&raw[opts.Burst*opts.Snaplen])), 2*opts.Burst)
	opts.Logger.Info("dpdk source open", "vdev", s.name, "socket", opts.SocketPath, "port", int(s.port))
	return s, nil
}

// setupLocked runs on the EAL thread: mempool, vdev, port.
func (s *Source) setupLocked(id uint32) error {
	o := s.opts
	pname := C.CString(fmt.Sprintf("sprpool%d", id))
	defer C.free(unsafe.Pointer(pname))
	s.pool = C.rte_pktmbuf_pool_create(pname, C.uint(o.Mbufs), 256, 0, C.RTE_MBUF_DEFAULT_BUF_SIZE, C.int(C.rte_socket_id()))
	if s.pool == nil {
		return fmt.Errorf("%w: mbuf pool of %d: %w (hugepages reserved? see scripts/setup.d/30-dpdk.sh)", ErrEAL, o.Mbufs, unix.Errno(C.spr_errno()))
	}
	name := C.CString(s.name)
	defer C.free(unsafe.Pointer(name))
	args := C.CString(fmt.Sprintf("path=%s,server=1,queues=1,queue_size=%d", o.SocketPath, o.RxDescriptors))
	defer C.free(unsafe.Pointer(args))
	if ret := C.rte_vdev_init(name, args); ret < 0 {
		C.rte_mempool_free(s.pool)
		return fmt.Errorf("%w: vdev %s on %s: %w", ErrEAL, s.name, o.SocketPath, unix.Errno(-ret))
	}
	var port C.uint16_t
	if ret := C.rte_eth_dev_get_port_by_name(name, &port); ret < 0 {
		C.rte_vdev_uninit(name)
		C.rte_mempool_free(s.pool)
		return fmt.Errorf("%w: vdev %s created no port (stale socket %s?): %w", ErrEAL, s.name, o.SocketPath, unix.Errno(-ret))
	}
	s.port = port
	if ret := C.spr_port_setup(port, s.pool, C.uint16_t(o.RxDescriptors)); ret < 0 {
		C.spr_port_close(port)
		C.rte_vdev_uninit(name)
		C.rte_mempool_free(s.pool)
		return fmt.Errorf("%w: start port %d: %w", ErrEAL, int(port), unix.Errno(-ret))
	}
	return nil
}

// teardownLocked runs on the EAL thread: stop and close the port, remove the vdev, free the
// pool.
func (s *Source) teardownLocked() {
	name := C.CString(s.name)
	defer C.free(unsafe.Pointer(name))
	C.spr_port_close(s.port)
	C.rte_vdev_uninit(name)
	C.rte_mempool_free(s.pool)
}

// Queues returns 1: virtio-user does not spread flows over queues; the spray does.
func (s *Source) Queues() int { return 1 }

// LinkUp reports whether the vhost-user peer (OVS) is connected.
func (s *Source) LinkUp() bool {
	if !s.mu.TryRLock() {
		return false
	}
	defer s.mu.RUnlock()
	if s.closed.Load() {
		return false
	}
	return C.spr_link_up(s.port) != 0
}

// hwStats reads the port's counters; callers hold mu with the port open.
func (s *Source) hwStats() (spray.SourceStats, bool) {
	var st C.struct_spr_stats
	if C.spr_stats(s.port, &st) < 0 {
		return spray.SourceStats{}, false
	}
	return spray.SourceStats{Missed: uint64(st.imissed), NoMbuf: uint64(st.nombuf), Errors: uint64(st.ierrors)}, true
}

// Stats returns what the source handed to the spray and the port's imissed, rx_nombuf and
// ierrors counters.
func (s *Source) Stats() spray.SourceStats {
	st := s.final
	if s.mu.TryRLock() {
		if !s.closed.Load() {
			if hw, ok := s.hwStats(); ok {
				st = hw
			}
		}
		s.mu.RUnlock()
	}
	st.Received = s.received.Load()
	st.Bytes = s.bytes.Load()
	return st
}

// Run receives on queue 0 until ctx is done or the source is closed. It runs on a locked OS
// thread registered with the EAL; each burst is one cgo call.
func (s *Source) Run(ctx context.Context, q int, burst func([]spray.Frame)) error {
	if q != 0 {
		return fmt.Errorf("dpdk: queue %d does not exist (one queue)", q)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed.Load() {
		return ErrClosed
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if C.rte_thread_register() < 0 {
		return fmt.Errorf("%w: rte_thread_register: %w", ErrEAL, unix.Errno(C.spr_errno()))
	}
	defer C.rte_thread_unregister()

	o := s.opts
	frames := make([]spray.Frame, o.Burst)
	out := (*C.uint8_t)(unsafe.Pointer(&s.buf[0]))
	caplen := (*C.uint32_t)(unsafe.Pointer(&s.lens[0]))
	wirelen := (*C.uint32_t)(unsafe.Pointer(&s.lens[o.Burst]))
	idle := 0
	for {
		if s.closed.Load() || ctx.Err() != nil {
			return nil
		}
		n := int(C.spr_rx(s.port, out, C.uint32_t(o.Snaplen), caplen, wirelen, C.uint16_t(o.Burst)))
		if n == 0 {
			idle++
			if idle >= o.IdlePolls {
				time.Sleep(o.IdleSleep)
			}
			continue
		}
		idle = 0
		ts := time.Now().UnixNano()
		var nbytes uint64
		for i := range n {
			c := int(s.lens[i])
			w := int(s.lens[o.Burst+i])
			off := i * o.Snaplen
			frames[i] = spray.Frame{Data: s.buf[off : off+c : off+c], WireLen: w, Timestamp: ts}
			nbytes += uint64(w)
		}
		burst(frames[:n])
		s.received.Add(uint64(n))
		s.bytes.Add(nbytes)
	}
}

// Close stops Run, stops and closes the port, removes the vdev and its socket file and frees
// the pool. The EAL stays up for further Opens until Shutdown.
func (s *Source) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if hw, ok := s.hwStats(); ok {
		s.final = hw
	}
	eal.mu.Lock()
	defer eal.mu.Unlock()
	if eal.started && !eal.shutdown {
		onEAL(func() { s.teardownLocked() })
	}
	C.free(s.cbuf)
	s.cbuf, s.buf, s.lens = nil, nil, nil
	if err := os.Remove(s.opts.SocketPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("dpdk: remove socket: %w", err)
	}
	return nil
}
