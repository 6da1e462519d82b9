// Package dpdk is the spray's DPDK capture source: the project's own thin cgo binding to Debian's
// DPDK 22.11, receiving the copies an OVS-DPDK mirror sends to a dpdkvhostuserclient port. The
// spray process is the vhost-user server, through DPDK's net_virtio_user vdev with server=1 on
// the port's socket path.
//
// It is the only package of the module that imports "C", and only under the build tag dpdk
// (go build -tags dpdk, with cgo and pkg-config libdpdk). Without the tag Open returns an error
// matching spray.ErrNotSupported, so the default build stays CGO_ENABLED=0-clean.
//
// Usage:
//
//	// ovs-vsctl add-port br0 m0 -- set interface m0 type=dpdkvhostuserclient \
//	//     options:vhost-server-path=/run/confluo/mirror0.sock
//	src, err := dpdk.Open(dpdk.Options{SocketPath: "/run/confluo/mirror0.sock"}) // waits for OVS
//	s, err := spray.New(src, spray.Options{Rings: 2}) // one queue: spray by flow hash
//	err = s.Run(ctx)
//	src.Close()
//	dpdk.Shutdown() // at process exit; the EAL cannot be initialized twice
//
// What the binding does, from what was learned bringing this path up on this machine type:
//   - The EAL is initialized once per process, on a goroutine locked to its OS thread that
//     stays alive (and runs every control-plane call) until Shutdown, with a unique
//     --file-prefix, --no-telemetry, --no-pci, --in-memory --single-file-segments (no hugepage
//     file is left behind) and --lcores mapping lcore 0 to the process's CPU set, so no Go
//     thread is pinned to one CPU.
//   - A receive goroutine runs locked to its thread and registered with rte_thread_register
//     (per-lcore mempool caches).
//   - One cgo call per burst: receive up to Burst mbufs, copy at most Snaplen bytes of each into
//     a C buffer, free the mbufs. A cgo call costs 30-80 ns here; per packet it would dominate.
//   - A stale socket file (left by a kill -9) makes the vdev come up with zero ports while the
//     EAL reports success: Open removes it first and checks that the port exists.
//   - virtio-user queues=N does not spread traffic (all of it arrived on queue 0), so the source
//     has one queue and the spray spreads flows in software.
//
// Lock order: Source.mu before the package's EAL mutex (Close holds both; Open holds only the
// EAL mutex, also while it waits up to ConnectTimeout for OVS to connect).
package dpdk

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"
)

// Errors.
var (
	// ErrInvalidOptions is wrapped by Validate errors.
	ErrInvalidOptions = errors.New("dpdk: invalid options")
	// ErrEAL is wrapped by errors from EAL initialization and port setup.
	ErrEAL = errors.New("dpdk: EAL")
	// ErrShutdown is returned by Open after Shutdown.
	ErrShutdown = errors.New("dpdk: EAL shut down")
	// ErrNotConnected is returned by Open when no vhost-user client connected in time.
	ErrNotConnected = errors.New("dpdk: vhost-user client did not connect")
	// ErrClosed is returned by Run on a closed source.
	ErrClosed = errors.New("dpdk: source closed")
)

// MaxBurst is the largest receive burst.
const MaxBurst = 256

// EALOptions configure the process-wide EAL; only the first Open's are used.
type EALOptions struct {
	// FilePrefix is the EAL --file-prefix, unique per process. Default "spr" + the process id.
	FilePrefix string
	// MemoryMB is the hugepage memory the EAL reserves (-m). Default 256.
	MemoryMB int
	// HugeDir is the hugetlbfs mount (--huge-dir). Default "" (the EAL finds it).
	HugeDir string
	// LogLevel is the EAL --log-level. Default "*:warning".
	LogLevel string
	// Extra are further EAL arguments.
	Extra []string
}

// Options configure a DPDK vhost-user source.
type Options struct {
	// SocketPath is the vhost-user socket the spray serves and OVS's dpdkvhostuserclient port
	// connects to (its options:vhost-server-path). A stale file there is removed. Required.
	SocketPath string
	// Snaplen is the number of bytes copied out of each packet, 64..9216. Default 256.
	Snaplen int
	// Burst is the receive burst size, 1..MaxBurst. Default 32.
	Burst int
	// RxDescriptors is the receive ring (virtqueue) size. Default 4096: with 1024, OVS dropped
	// ~0.5% of a 110 kpps mirror on the vhost port whenever the receive thread lost its core
	// for a moment on this 2-core machine; with 4096 none.
	RxDescriptors int
	// Mbufs is the number of packet buffers in the pool. Default 8191.
	Mbufs int
	// EAL configures the EAL if this Open initializes it.
	EAL EALOptions
	// Logger receives lifecycle messages. Default: discard.
	Logger *slog.Logger
	// ConnectTimeout bounds how long Open waits for the vhost-user client (OVS) to connect.
	// Default 60s.
	ConnectTimeout time.Duration
	// IdleSleep is how long the receive loop sleeps after IdlePolls empty polls in a row, so an
	// idle mirror does not keep a core busy. Default 50µs.
	IdleSleep time.Duration
	// IdlePolls is the number of empty polls before sleeping. Default 256.
	IdlePolls int
}

// DefaultOptions returns the defaults (SocketPath must still be set).
func DefaultOptions() Options {
	return Options{Snaplen: 256, Burst: 32, RxDescriptors: 4096, Mbufs: 8191,
		EAL:            EALOptions{FilePrefix: fmt.Sprintf("spr%d", os.Getpid()), MemoryMB: 256, LogLevel: "*:warning"},
		ConnectTimeout: 60 * time.Second, IdleSleep: 50 * time.Microsecond, IdlePolls: 256}
}

func (o *Options) fill() {
	d := DefaultOptions()
	if o.Snaplen == 0 {
		o.Snaplen = d.Snaplen
	}
	if o.Burst == 0 {
		o.Burst = d.Burst
	}
	if o.RxDescriptors == 0 {
		o.RxDescriptors = d.RxDescriptors
	}
	if o.Mbufs == 0 {
		o.Mbufs = d.Mbufs
	}
	if o.EAL.FilePrefix == "" {
		o.EAL.FilePrefix = d.EAL.FilePrefix
	}
	if o.EAL.MemoryMB == 0 {
		o.EAL.MemoryMB = d.EAL.MemoryMB
	}
	if o.EAL.LogLevel == "" {
		o.EAL.LogLevel = d.EAL.LogLevel
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = d.ConnectTimeout
	}
	if o.IdleSleep == 0 {
		o.IdleSleep = d.IdleSleep
	}
	if o.IdlePolls == 0 {
		o.IdlePolls = d.IdlePolls
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate checks the options after defaults are applied to zero fields.
func (o Options) Validate() error {
	o.fill()
	switch {
	case o.SocketPath == "" || len(o.SocketPath) > 107:
		return fmt.Errorf("%w: socket path %q must be 1..107 bytes", ErrInvalidOptions, o.SocketPath)
	case o.Snaplen < 64 || o.Snaplen > 9216:
		return fmt.Errorf("%w: snaplen %d (want 64..9216)", ErrInvalidOptions, o.Snaplen)
	case o.Burst < 1 || o.Burst > MaxBurst:
		return fmt.Errorf("%w: burst %d (want 1..%d)", ErrInvalidOptions, o.Burst, MaxBurst)
	case o.RxDescriptors < 64 || o.RxDescriptors > 32768 || o.RxDescriptors&(o.RxDescriptors-1) != 0:
		return fmt.Errorf("%w: rx descriptors %d (want a power of two, 64..32768)", ErrInvalidOptions, o.RxDescriptors)
	case o.Mbufs < o.RxDescriptors+o.Burst || o.Mbufs > 1<<20:
		return fmt.Errorf("%w: mbufs %d (want rx descriptors + burst .. 1Mi)", ErrInvalidOptions, o.Mbufs)
	case o.EAL.MemoryMB < 64:
		return fmt.Errorf("%w: EAL memory %d MB (want >= 64)", ErrInvalidOptions, o.EAL.MemoryMB)
	case o.IdleSleep < 0 || o.IdlePolls < 0 || o.ConnectTimeout < 0:
		return fmt.Errorf("%w: negative idle settings", ErrInvalidOptions)
	}
	for _, c := range o.EAL.FilePrefix {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("%w: file prefix %q (letters, digits, - and _ only)", ErrInvalidOptions, o.EAL.FilePrefix)
		}
	}
	return nil
}
