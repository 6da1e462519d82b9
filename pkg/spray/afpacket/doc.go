// Package afpacket is the spray's AF_PACKET capture source: one TPACKET_V3 socket per writer
// core on one interface (the OVS mirror's tap or internal port, or any NIC), joined in a
// PACKET_FANOUT_HASH group so the kernel spreads flows over the sockets, both directions of a
// flow to the same socket. Frames are handed to the decoder straight from the mapped ring,
// without a copy (except frames whose VLAN tag the kernel stripped: the tag is put back into a
// small per-queue copy of the captured bytes).
//
// Usage:
//
//	src, err := afpacket.Open(afpacket.Options{Interface: "sprtap0", Queues: 2, Snaplen: 256})
//	s, err := spray.New(src, spray.Options{Rings: 2}) // queue i feeds ring i
//	err = s.Run(ctx)
//
// Ring layout of one socket (Options.Blocks blocks of Options.BlockSize bytes, mapped shared
// with the kernel):
//
//	+--------------------------------+--------------------------------+----
//	| block 0                        | block 1                        | ...
//	| tpacket_block_desc             |                                |
//	|  block_status USER|KERNEL      |                                |
//	|  num_pkts, offset_to_first_pkt |                                |
//	| tpacket3_hdr | frame | pad ... |                                |
//	|  (next_offset chains frames)   |                                |
//	+--------------------------------+--------------------------------+----
//
// The kernel fills a block and hands it over (TP_STATUS_USER) when it is full or after
// Options.BlockTimeout; the queue goroutine hands every frame of the block to the spray and then
// returns the block (TP_STATUS_KERNEL). A frame's memory is valid only until then.
//
// The snap length is applied in the kernel by a one-instruction BPF program ("ret #snaplen"),
// so only headers are copied into the ring. Frames the kernel could not place because the ring
// was full are counted as SourceStats.KernelDrops (PACKET_STATISTICS).
//
// Linux only; elsewhere Open returns an error matching spray.ErrNotSupported.
//
// Lock order: Source.mu (shared by Run and Stats, exclusive in Close) before Source.statsMu.
package afpacket

import (
	"errors"
	"fmt"
	"time"
)

// Errors.
var (
	// ErrInvalidOptions is wrapped by Validate errors.
	ErrInvalidOptions = errors.New("afpacket: invalid options")
	// ErrClosed is returned by Run on a closed source.
	ErrClosed = errors.New("afpacket: source closed")
)

// Options configure an AF_PACKET source.
type Options struct {
	// Interface is the name of the interface to capture on. Required.
	Interface string
	// Namespace is the path of a network namespace (for example /var/run/netns/x) whose
	// Interface to capture on. Default "": the caller's namespace.
	Namespace string
	// Queues is the number of sockets in the fanout group, one per writer core. Default 1.
	Queues int
	// FanoutGroup is the PACKET_FANOUT group id. Default 0: the kernel picks an unused id
	// (PACKET_FANOUT_FLAG_UNIQUEID, Linux 4.3+); Source.FanoutGroup tells which.
	FanoutGroup uint16
	// Snaplen is the number of bytes kept of each frame, 64..65535. Default 256.
	Snaplen int
	// BlockSize is the size of one ring block, a power of two multiple of the page size, at
	// least Snaplen+64. Default 1 MiB.
	BlockSize int
	// Blocks is the number of blocks per socket. Default 16.
	Blocks int
	// BlockTimeout is how long the kernel waits before handing over a partly filled block.
	// Default 10ms; at least 1ms.
	BlockTimeout time.Duration
	// Burst is the number of frames per burst callback. Default 32.
	Burst int
	// IncludeOutgoing also captures frames the host sends on Interface. Default false (a
	// mirror port only receives).
	IncludeOutgoing bool
}

// DefaultOptions returns the defaults (Interface must still be set).
func DefaultOptions() Options {
	return Options{Queues: 1, Snaplen: 256, BlockSize: 1 << 20, Blocks: 16, BlockTimeout: 10 * time.Millisecond, Burst: 32}
}

func (o *Options) fill() {
	d := DefaultOptions()
	if o.Queues == 0 {
		o.Queues = d.Queues
	}
	if o.Snaplen == 0 {
		o.Snaplen = d.Snaplen
	}
	if o.BlockSize == 0 {
		o.BlockSize = d.BlockSize
	}
	if o.Blocks == 0 {
		o.Blocks = d.Blocks
	}
	if o.BlockTimeout == 0 {
		o.BlockTimeout = d.BlockTimeout
	}
	if o.Burst == 0 {
		o.Burst = d.Burst
	}
}

// Validate checks the options after defaults are applied to zero fields.
func (o Options) Validate() error {
	o.fill()
	switch {
	case o.Interface == "" || len(o.Interface) > 15:
		return fmt.Errorf("%w: interface name %q must be 1..15 bytes", ErrInvalidOptions, o.Interface)
	case o.Queues < 1 || o.Queues > 256:
		return fmt.Errorf("%w: queues must be 1..256", ErrInvalidOptions)
	case o.Snaplen < 64 || o.Snaplen > 65535:
		return fmt.Errorf("%w: snaplen must be 64..65535", ErrInvalidOptions)
	case o.BlockSize < 4096 || o.BlockSize&(o.BlockSize-1) != 0 || o.BlockSize < o.Snaplen+64 || o.BlockSize > 1<<30:
		return fmt.Errorf("%w: block size must be a power of two, >= 4096 and >= snaplen+64", ErrInvalidOptions)
	case o.Blocks < 1 || o.Blocks > 1<<16:
		return fmt.Errorf("%w: blocks must be 1..65536", ErrInvalidOptions)
	case o.BlockTimeout < time.Millisecond || o.BlockTimeout > time.Minute:
		return fmt.Errorf("%w: block timeout must be 1ms..1m", ErrInvalidOptions)
	case o.Burst < 1 || o.Burst > 4096:
		return fmt.Errorf("%w: burst must be 1..4096", ErrInvalidOptions)
	}
	return nil
}
