// Package pcapsrc is the spray's pcap/pcapng file replay source: as fast as possible or at the
// recorded pace, optionally looped, from the file or from a copy preloaded into memory.
//
// Usage:
//
//	src, err := pcapsrc.Open("trace.pcapng", pcapsrc.Options{Loops: 3, Preload: true})
//	s, err := spray.New(src, spray.Options{Full: spray.Wait, ...})
//	err = s.Run(ctx) // returns nil once the last loop is replayed
//
// Files are read with package pcapio: pcap (micro- or nanosecond timestamps, either byte order,
// gzip-compressed too) or pcapng, told apart by the magic number. Frames are handed over as
// Ethernet (pcapio.NextEthernet converts Linux cooked, raw IP and BSD loopback captures); a frame
// that cannot be converted is skipped and counted in SourceStats.Errors.
package pcapsrc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"

	"github.com/confluo-go/confluo/pkg/pcapio"
	"github.com/confluo-go/confluo/pkg/spray"
)

// Errors.
var (
	// ErrFormat is wrapped by errors about files that are not valid pcap or pcapng.
	ErrFormat = errors.New("pcapsrc: bad capture file")
	// ErrLinkType is returned for captures of a link type that cannot be turned into Ethernet.
	ErrLinkType = errors.New("pcapsrc: unsupported link type")
	// ErrTooLarge is returned when a preloaded capture exceeds Options.MaxPreloadBytes.
	ErrTooLarge = errors.New("pcapsrc: capture too large to preload")
	// ErrInvalidOptions is wrapped by Validate errors.
	ErrInvalidOptions = errors.New("pcapsrc: invalid options")
)

// Options configure a replay.
type Options struct {
	// Pace replays at the recorded pace (scaled by Speed) instead of as fast as possible.
	// Default false.
	Pace bool
	// Speed scales the recorded pace when Pace is set: 2 replays twice as fast. Default 1.
	Speed float64
	// Loops is the number of passes over the file: 0 and 1 mean once, -1 forever. Default 1.
	Loops int
	// Preload reads the whole capture into memory at Open and replays from there (the fast
	// path, and the file is read once however many loops). Default false.
	Preload bool
	// MaxPreloadBytes bounds a preloaded capture. Default 1 GiB.
	MaxPreloadBytes int64
	// Burst is the number of frames per burst. Default 32.
	Burst int
	// Retime rewrites timestamps so the first frame carries the replay's start time, keeping
	// the recorded gaps. Default false: recorded timestamps. Either way each loop after the
	// first is shifted by the capture's duration so time never goes backwards.
	Retime bool
}

// Validate checks the options.
func (o Options) Validate() error {
	switch {
	case o.Speed < 0:
		return fmt.Errorf("%w: speed %v", ErrInvalidOptions, o.Speed)
	case o.Loops < -1:
		return fmt.Errorf("%w: loops %d (want -1, 0 or more)", ErrInvalidOptions, o.Loops)
	case o.MaxPreloadBytes < 0:
		return fmt.Errorf("%w: max preload bytes %d", ErrInvalidOptions, o.MaxPreloadBytes)
	case o.Burst < 0 || o.Burst > 4096:
		return fmt.Errorf("%w: burst %d (want 1..4096)", ErrInvalidOptions, o.Burst)
	}
	return nil
}

// Source replays one capture file. It has one queue.
//
// Source is safe for concurrent use as the spray.Source contract requires: Run on its single
// queue from one goroutine, Stats and Close from any.
type Source struct {
	path   string
	open   func() (io.ReadCloser, error)
	opts   Options
	closed atomic.Bool

	// preloaded capture (Options.Preload)
	data   []byte
	frames []frameRef

	received atomic.Uint64
	bytes    atomic.Uint64
	skipped  atomic.Uint64 // frames that could not be turned into Ethernet
	loops    atomic.Uint64
}

type frameRef struct {
	off, capLen uint32 // within data
	wireLen     uint32
	ts          int64
}

var _ spray.Source = (*Source)(nil)

// Open opens a capture file for replay; the header is checked now.
func Open(path string, opts Options) (*Source, error) {
	return New(func() (io.ReadCloser, error) { return os.Open(path) }, path, opts)
}

// New is Open with a function that opens the capture afresh for each loop. name is used in
// errors.
func New(open func() (io.ReadCloser, error), name string, opts Options) (*Source, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if opts.Speed == 0 {
		opts.Speed = 1
	}
	if opts.Loops == 0 {
		opts.Loops = 1
	}
	if opts.MaxPreloadBytes == 0 {
		opts.MaxPreloadBytes = 1 << 30
	}
	if opts.Burst == 0 {
		opts.Burst = 32
	}
	s := &Source{path: name, open: open, opts: opts}
	rc, rd, err := s.reader()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if !opts.Preload {
		return s, nil
	}
	for {
		f, err := rd.NextEthernet()
		if err == io.EOF {
			break
		}
		if skip(err) {
			s.skipped.Add(1)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrFormat, name, err)
		}
		if int64(len(s.data)+len(f.Data)) > opts.MaxPreloadBytes {
			return nil, fmt.Errorf("%w: %s is over %d bytes", ErrTooLarge, name, opts.MaxPreloadBytes)
		}
		s.frames = append(s.frames, frameRef{off: uint32(len(s.data)), capLen: uint32(len(f.Data)),
			wireLen: uint32(f.WireLen), ts: f.Timestamp})
		s.data = append(s.data, f.Data...)
	}
	return s, nil
}

// skip reports whether err is about one frame (not convertible to Ethernet) rather than the
// file: such frames are counted and skipped.
func skip(err error) bool {
	return err != nil && (errors.Is(err, pcapio.ErrFrame) || errors.Is(err, pcapio.ErrLinkType)) && !errors.Is(err, pcapio.ErrFormat)
}

// reader opens the capture and checks its link type.
func (s *Source) reader() (io.Closer, *pcapio.Reader, error) {
	f, err := s.open()
	if err != nil {
		return nil, nil, fmt.Errorf("pcapsrc: %w", err)
	}
	rd, err := pcapio.NewReader(f)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("%w: %s: %w", ErrFormat, s.path, err)
	}
	switch lt := rd.LinkType(); lt {
	case pcapio.LinkEthernet, pcapio.LinkNull, pcapio.LinkRaw, pcapio.LinkLinuxSLL, pcapio.LinkIPv4,
		pcapio.LinkIPv6, pcapio.LinkLinuxSLL2:
	default:
		f.Close()
		return nil, nil, fmt.Errorf("%w: %s has link type %v", ErrLinkType, s.path, lt)
	}
	return f, rd, nil
}

// Queues returns 1.
func (s *Source) Queues() int { return 1 }

// Stats returns the frames and bytes replayed; Errors counts frames skipped because they could
// not be turned into Ethernet.
func (s *Source) Stats() spray.SourceStats {
	return spray.SourceStats{Received: s.received.Load(), Bytes: s.bytes.Load(), Errors: s.skipped.Load()}
}

// Loops returns the number of completed passes over the capture.
func (s *Source) Loops() uint64 { return s.loops.Load() }

// Close stops a running replay at its next burst.
func (s *Source) Close() error {
	s.closed.Store(true)
	return nil
}

// clock maps recorded timestamps to replay timestamps and, when pacing, waits for them.
type clock struct {
	opts      Options
	start     time.Time
	first     int64 // first recorded timestamp of the capture, 0 until seen
	seen      bool
	loopShift int64 // added to recorded timestamps in this loop
	last      int64 // last recorded timestamp (plus shift) handed out
}

func (c *clock) stamp(ts int64) int64 {
	if !c.seen {
		c.seen, c.first = true, ts
	}
	t := ts + c.loopShift
	c.last = max(c.last, t)
	if c.opts.Retime {
		return c.start.UnixNano() + (t - c.first)
	}
	return t
}

// due returns how long to wait before a frame recorded at ts (already passed through stamp's
// shift) may be sent; 0 without pacing.
func (c *clock) due(ts int64) time.Duration {
	if !c.opts.Pace || !c.seen {
		return 0
	}
	offset := time.Duration(float64(ts+c.loopShift-c.first) / c.opts.Speed)
	return time.Until(c.start.Add(offset))
}

// nextLoop shifts the following loop to start 1 µs after the last frame of this one.
func (c *clock) nextLoop() {
	if c.seen {
		c.loopShift = c.last + 1000 - c.first
	}
}

// Run replays the capture on queue 0 until the last loop ends (nil), ctx is done (nil), Close
// is called (nil) or the file turns out bad (ErrFormat).
func (s *Source) Run(ctx context.Context, q int, burst func([]spray.Frame)) error {
	if q != 0 {
		return fmt.Errorf("pcapsrc: queue %d does not exist (one queue)", q)
	}
	c := &clock{opts: s.opts, start: time.Now()}
	frames := make([]spray.Frame, 0, s.opts.Burst)
	for loop := 0; s.opts.Loops < 0 || loop < s.opts.Loops; loop++ {
		var err error
		if s.opts.Preload {
			err = s.replayMemory(ctx, c, frames, burst)
		} else {
			err = s.replayFile(ctx, c, frames, burst)
		}
		if err != nil {
			if errors.Is(err, errStop) {
				return nil
			}
			return err
		}
		s.loops.Add(1)
		c.nextLoop()
		if !c.seen { // empty capture: nothing to loop over
			return nil
		}
	}
	return nil
}

var errStop = errors.New("pcapsrc: stopped")

func (s *Source) stopped(ctx context.Context) bool { return s.closed.Load() || ctx.Err() != nil }

// wait sleeps d unless stopped first.
func (s *Source) wait(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return errStop
	case <-t.C:
	}
	if s.closed.Load() {
		return errStop
	}
	return nil
}

func (s *Source) emit(frames []spray.Frame, burst func([]spray.Frame)) {
	if len(frames) == 0 {
		return
	}
	var b uint64
	for i := range frames {
		b += uint64(frames[i].WireLen)
	}
	burst(frames)
	s.received.Add(uint64(len(frames)))
	s.bytes.Add(b)
}

func (s *Source) replayMemory(ctx context.Context, c *clock, frames []spray.Frame, burst func([]spray.Frame)) error {
	for i := 0; i < len(s.frames); {
		if s.stopped(ctx) {
			return errStop
		}
		if err := s.wait(ctx, c.due(s.frames[i].ts)); err != nil {
			return err
		}
		frames = frames[:0]
		for ; i < len(s.frames) && len(frames) < cap(frames); i++ {
			f := &s.frames[i]
			if len(frames) > 0 && c.due(f.ts) > 0 {
				break
			}
			frames = append(frames, spray.Frame{Data: s.data[f.off : f.off+f.capLen : f.off+f.capLen],
				WireLen: int(f.wireLen), Timestamp: c.stamp(f.ts)})
		}
		s.emit(frames, burst)
	}
	return nil
}

func (s *Source) replayFile(ctx context.Context, c *clock, frames []spray.Frame, burst func([]spray.Frame)) error {
	rc, rd, err := s.reader()
	if err != nil {
		return err
	}
	defer rc.Close()
	// Zero-copy reads are valid until the next read: copy each burst into an arena.
	arena := make([]byte, 0, 64<<10)
	flush := func() {
		// Re-slice Data now that the arena has stopped growing for this burst.
		off := 0
		for i := range frames {
			l := len(frames[i].Data)
			frames[i].Data = arena[off : off+l : off+l]
			off += l
		}
		s.emit(frames, burst)
		frames, arena = frames[:0], arena[:0]
	}
	for {
		if s.stopped(ctx) {
			return errStop
		}
		f, err := rd.NextEthernet()
		if err == io.EOF {
			flush()
			return nil
		}
		if skip(err) {
			s.skipped.Add(1)
			continue
		}
		if err != nil {
			flush()
			return fmt.Errorf("%w: %s: %w", ErrFormat, s.path, err)
		}
		ts, data := f.Timestamp, f.Data
		if d := c.due(ts); d > 0 {
			flush()
			if err := s.wait(ctx, d); err != nil {
				return err
			}
		}
		arena = append(arena, data...)
		// Data is fixed up in flush; record the length here.
		frames = append(frames, spray.Frame{Data: data[:len(data):len(data)], WireLen: f.WireLen, Timestamp: c.stamp(ts)})
		if len(frames) == cap(frames) {
			flush()
		}
	}
}
