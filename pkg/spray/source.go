// Package spray receives mirrored packet copies from a capture source, decodes each into a
// fixed-size record and spreads the records over per-core rings by flow, so that each writer
// core owns its flows.
//
// Sources sit behind one interface (Source): pcap/pcapng replay (package pcapsrc), AF_PACKET
// with PACKET_FANOUT_HASH (package afpacket) and DPDK vhost-user (package dpdk, build tag dpdk).
// A source has one or more receive queues; a queue hands the spray bursts of frames. With one
// queue the spray hashes each record's symmetric flow hash to one of N rings; with N queues
// (AF_PACKET fanout) the kernel already spread the flows and queue i feeds ring i.
//
//	                     +-- decode --+   hash % N    +--------+
//	source queue 0 ----> | record     | ------------> | ring 0 | --> writer core 0
//	                     +------------+      |        +--------+
//	                                         +------> | ring 1 | --> writer core 1
//	                                                  +--------+
//
// A full ring never blocks a live capture: the record is dropped and counted. File replay may
// ask to wait instead (Options.Full = Wait). Every stage counts what it received, decoded,
// enqueued and dropped, by reason (Stats), so every query can say how complete its data is.
//
// Usage:
//
//	src, _ := pcapsrc.Open("trace.pcap", pcapsrc.Options{})
//	s, _ := spray.New(src, spray.Options{Rings: 2, RecordSize: packet.RecordSize,
//		NewDecoder: func() spray.Decoder { return packet.NewDecoder(packet.Options{}) }})
//	go s.Run(ctx)
//	// writer i drains s.Ring(i)
package spray

import (
	"context"
	"errors"
)

// Errors.
var (
	// ErrNotSupported is returned by sources that this platform or build cannot provide (DPDK
	// without the dpdk build tag, AF_PACKET outside Linux).
	ErrNotSupported = errors.New("spray: not supported on this platform or build")
	// ErrInvalidOptions is wrapped by Validate errors.
	ErrInvalidOptions = errors.New("spray: invalid options")
	// ErrRunning is returned by a second concurrent Run.
	ErrRunning = errors.New("spray: already running")
)

// Frame is one received frame.
type Frame struct {
	// Data holds the captured bytes (the snap length already applied). It may point into
	// source memory (a mapped kernel ring, a DPDK copy buffer) that is valid only during the
	// burst callback: consumers must copy what they keep.
	Data []byte
	// WireLen is the frame's original length on the wire, >= len(Data).
	WireLen int
	// Timestamp is the receive (or recorded) time in nanoseconds since the Unix epoch.
	Timestamp int64
}

// Source is a capture source with one or more receive queues. Frames of one flow always arrive
// on the same queue.
//
// Implementations are safe for concurrent use as follows: Run is called at most once per queue
// at a time, from different goroutines for different queues; Stats may be called at any time
// from any goroutine; Close may be called at any time and makes running Run calls return.
type Source interface {
	// Queues returns the number of receive queues, at least 1.
	Queues() int
	// Run receives from queue q and calls burst with each burst of frames until ctx is done
	// (it returns nil), the source is exhausted (nil), closed (nil) or fails (an error). The
	// frames slice and the memory it points to are valid only during the call.
	Run(ctx context.Context, q int, burst func(frames []Frame)) error
	// Stats returns the source's own counters.
	Stats() SourceStats
	// Close releases the source's resources.
	Close() error
}

// SourceStats are a source's counters. Fields a source cannot know stay zero.
type SourceStats struct {
	// Received is the number of frames the source handed to the spray.
	Received uint64 `json:"received"`
	// Bytes is the number of wire bytes of those frames.
	Bytes uint64 `json:"bytes"`
	// KernelDrops counts frames the kernel dropped because the capture ring was full
	// (AF_PACKET tp_drops).
	KernelDrops uint64 `json:"kernel_drops"`
	// Missed counts frames the NIC or vhost queue dropped for lack of descriptors (DPDK
	// imissed).
	Missed uint64 `json:"missed"`
	// NoMbuf counts receive failures for lack of packet buffers (DPDK rx_nombuf).
	NoMbuf uint64 `json:"no_mbuf"`
	// Errors counts frames received with errors (DPDK ierrors).
	Errors uint64 `json:"errors"`
}

// Decoder turns one frame into one record and returns the record's symmetric flow hash. It is
// the contract of packet.Decoder: Decode writes exactly the spray's RecordSize bytes into rec,
// never allocates and never panics. A Decoder is used by one goroutine.
type Decoder interface {
	Decode(rec, frame []byte, wireLen int, tsNanos int64) uint32
}

// Classifier is implemented by decoders that can tell from a record they wrote whether its
// frame was malformed (decodeError) or cut short by the snap length before the headers ended
// (truncated). The spray uses it, when present, to count; the record is still enqueued, since
// its own columns say what was decoded. The packet decoder is classified without it, from its
// decode_error column.
type Classifier interface {
	Classify(rec []byte) (decodeError, truncated bool)
}
