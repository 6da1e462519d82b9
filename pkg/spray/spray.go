package spray

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confluo-go/confluo/pkg/packet"
	"github.com/confluo-go/confluo/pkg/ring"
)

// FullPolicy says what the spray does with a record whose ring is full.
type FullPolicy uint8

const (
	// Drop drops the record and counts it (DroppedRingFull). Live captures must use it: a full
	// ring never blocks capture.
	Drop FullPolicy = iota
	// Wait makes the source goroutine wait until the ring has room (file replay).
	Wait
)

func (p FullPolicy) String() string {
	switch p {
	case Drop:
		return "drop"
	case Wait:
		return "wait"
	}
	return fmt.Sprintf("FullPolicy(%d)", uint8(p))
}

// MaxBurst is the largest number of records written to a ring before they are published.
const MaxBurst = 32

// Options configure a Spray.
type Options struct {
	// Rings is the number of rings, one per writer core. Default runtime.GOMAXPROCS(0). A
	// source with more than one queue must have exactly Rings queues.
	Rings int
	// RingCapacity is each ring's capacity in records, rounded up to a power of two. Default
	// 8192.
	RingCapacity int
	// RecordSize is the size of one record in bytes. Default packet.RecordSize; it must be set
	// with a NewDecoder that writes other records.
	RecordSize int
	// NewDecoder returns a decoder for one source queue. Default: a packet.Decoder with
	// packet.DefaultOptions().
	NewDecoder func() Decoder
	// Full is the policy for a full ring. Default Drop.
	Full FullPolicy
	// Burst is the number of records written to a ring before they are published (and at the
	// end of every source burst). Default MaxBurst (32); at most MaxBurst.
	Burst int
	// Logger receives lifecycle messages (never per packet). Default: discard.
	Logger *slog.Logger
}

// DefaultOptions returns the defaults.
func DefaultOptions() Options {
	return Options{Rings: runtime.GOMAXPROCS(0), RingCapacity: 8192, Full: Drop, Burst: MaxBurst,
		RecordSize: packet.RecordSize, NewDecoder: NewPacketDecoder}
}

// NewPacketDecoder returns a packet.Decoder with packet.DefaultOptions, the default decoder.
func NewPacketDecoder() Decoder { return packet.NewDecoder(packet.DefaultOptions()) }

func (o *Options) fill() {
	d := DefaultOptions()
	if o.Rings == 0 {
		o.Rings = d.Rings
	}
	if o.RingCapacity == 0 {
		o.RingCapacity = d.RingCapacity
	}
	if o.Burst == 0 {
		o.Burst = d.Burst
	}
	if o.NewDecoder == nil {
		o.NewDecoder = d.NewDecoder
		if o.RecordSize == 0 {
			o.RecordSize = d.RecordSize
		}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate checks the options after defaults are applied to zero fields.
func (o Options) Validate() error {
	o.fill()
	switch {
	case o.Rings < 1 || o.Rings > 1024:
		return fmt.Errorf("%w: rings %d (want 1..1024)", ErrInvalidOptions, o.Rings)
	case o.RingCapacity < 1 || o.RingCapacity > ring.MaxCapacity:
		return fmt.Errorf("%w: ring capacity %d", ErrInvalidOptions, o.RingCapacity)
	case o.RecordSize <= 0:
		return fmt.Errorf("%w: record size %d", ErrInvalidOptions, o.RecordSize)
	case o.Full != Drop && o.Full != Wait:
		return fmt.Errorf("%w: full policy %v", ErrInvalidOptions, o.Full)
	case o.Burst < 1 || o.Burst > MaxBurst:
		return fmt.Errorf("%w: burst %d (want 1..%d)", ErrInvalidOptions, o.Burst, MaxBurst)
	}
	return nil
}

// Stats are the spray's counters, summed over its queues, with the source's own beside them.
type Stats struct {
	Source SourceStats `json:"source"`
	// Received is the number of frames the spray took from the source.
	Received uint64 `json:"received"`
	// Decoded is the number of records produced (one per received frame).
	Decoded uint64 `json:"decoded"`
	// DecodeErrors and Truncated count records whose frame was malformed or whose headers were
	// cut short by the snap length (packet decoder, or a decoder implementing Classifier); they
	// are still enqueued.
	DecodeErrors uint64 `json:"decode_errors"`
	Truncated    uint64 `json:"truncated"`
	// Enqueued is the number of records placed in a ring.
	Enqueued uint64 `json:"enqueued"`
	// DroppedRingFull is the number of records dropped because their ring was full.
	DroppedRingFull uint64 `json:"dropped_ring_full"`
	// Rings holds per-ring enqueued and dropped counts.
	Rings []RingStats `json:"rings"`
}

// RingStats are one ring's counters.
type RingStats struct {
	Enqueued        uint64 `json:"enqueued"`
	DroppedRingFull uint64 `json:"dropped_ring_full"`
	// Len is the number of records waiting in the ring.
	Len int `json:"len"`
}

// Spray reads a Source, decodes frames into records and spreads them over rings by flow hash.
//
// Run, Stats, Ring and Rings are safe for concurrent use; each ring has exactly one consumer,
// the caller's writer for that ring.
type Spray struct {
	src    Source
	opts   Options
	rings  []*ring.Ring
	queues []*queue

	running atomic.Bool
}

// queueCounters are written by one queue goroutine only and read by Stats. Padded so two
// queues never share a cache line.
type queueCounters struct {
	received     atomic.Uint64
	decoded      atomic.Uint64
	decodeErrors atomic.Uint64
	truncated    atomic.Uint64
	_            [64 - 32]byte
}

// queue is the state of one source queue's goroutine.
type queue struct {
	s          *Spray
	index      int
	fixed      int // ring fed by this queue, or -1 to spray by hash
	dec        Decoder
	classifier Classifier // dec's Classifier, or nil
	packetRecs bool       // dec is a *packet.Decoder: classify from its decode_error column
	scratch    []byte
	rawHeader  bool     // packet records with a raw_header column after the built-in ones
	win        []window // per ring: reserved slots being filled
	c          queueCounters
	// per ring, written by this queue only
	enqueued []atomic.Uint64
	dropped  []atomic.Uint64
	ctx      context.Context
}

// New returns a spray over src. It does not start receiving; call Run.
func New(src Source, opts Options) (*Spray, error) {
	if src == nil {
		return nil, fmt.Errorf("%w: nil source", ErrInvalidOptions)
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts.fill()
	nq := src.Queues()
	if nq < 1 || (nq > 1 && nq != opts.Rings) {
		return nil, fmt.Errorf("%w: source has %d queues for %d rings (want 1 or %d)", ErrInvalidOptions, nq, opts.Rings, opts.Rings)
	}
	s := &Spray{src: src, opts: opts}
	for range opts.Rings {
		r, err := ring.New(opts.RecordSize, opts.RingCapacity)
		if err != nil {
			return nil, fmt.Errorf("spray: ring: %w", err)
		}
		s.rings = append(s.rings, r)
	}
	for i := range nq {
		q := &queue{s: s, index: i, fixed: -1, dec: opts.NewDecoder()}
		if q.dec == nil {
			return nil, fmt.Errorf("%w: NewDecoder returned nil", ErrInvalidOptions)
		}
		if nq > 1 {
			q.fixed = i
		}
		q.classifier, _ = q.dec.(Classifier)
		_, q.packetRecs = q.dec.(*packet.Decoder)
		if q.packetRecs && opts.RecordSize < packet.RecordSize {
			return nil, fmt.Errorf("%w: record size %d is smaller than the packet record (%d)", ErrInvalidOptions, opts.RecordSize, packet.RecordSize)
		}
		q.scratch = make([]byte, opts.RecordSize)
		q.rawHeader = q.packetRecs && opts.RecordSize > packet.RecordSize
		q.win = make([]window, opts.Rings)
		q.enqueued = make([]atomic.Uint64, opts.Rings)
		q.dropped = make([]atomic.Uint64, opts.Rings)
		s.queues = append(s.queues, q)
	}
	return s, nil
}

// Rings returns the number of rings.
func (s *Spray) Rings() int { return len(s.rings) }

// Ring returns ring i; its consumer is the writer for core i.
func (s *Spray) Ring(i int) *ring.Ring { return s.rings[i] }

// Run receives from every source queue, one goroutine each, until ctx is done, the source is
// exhausted or one queue fails; it then stops the others and returns the first error. Staged
// records are flushed before Run returns.
func (s *Spray) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer s.running.Store(false)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.opts.Logger.Info("spray running", "queues", len(s.queues), "rings", len(s.rings), "full", s.opts.Full.String())
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	for _, q := range s.queues {
		wg.Go(func() {
			q.ctx = ctx
			err := s.src.Run(ctx, q.index, q.handle)
			if err != nil {
				errOnce.Do(func() { firstErr = fmt.Errorf("spray: queue %d: %w", q.index, err) })
				cancel()
			}
		})
	}
	wg.Wait()
	s.opts.Logger.Info("spray stopped", "err", firstErr)
	return firstErr
}

// handle is the burst callback of one queue: decode each frame and place its record in the
// ring of its flow. Records go straight into a window of free ring slots (Ring.Reserve) that
// is published (Ring.Commit) when it is full and at the end of the burst, so the consumer sees
// records in bursts. With one ring per queue (kernel spray) the decoder writes the record in
// the ring slot itself; with software spray it decodes into a scratch record first, since the
// ring depends on the flow hash.
func (q *queue) handle(frames []Frame) {
	nrings := uint32(len(q.win))
	var decodeErrors, truncated uint64
	// Received first, so a concurrent Stats never sees more enqueued+dropped than received.
	n := uint64(len(frames))
	q.c.received.Add(n)
	for i := range frames {
		f := &frames[i]
		rec := q.scratch
		r := q.fixed
		if r >= 0 {
			if slot := q.slot(r); slot != nil {
				rec = slot
			}
		}
		h := q.dec.Decode(rec, f.Data, f.WireLen, f.Timestamp)
		if q.rawHeader {
			// raw_header column (packet.SchemaTextWithRaw): the first captured bytes.
			c := copy(rec[packet.RecordSize:], f.Data)
			clear(rec[packet.RecordSize+c:])
		}
		switch {
		case q.packetRecs:
			switch packet.Reason(rec[packet.OffDecodeError]) {
			case packet.ReasonNone, packet.ReasonUnsupported:
			case packet.ReasonTruncated, packet.ReasonShortFrame:
				truncated++
			default:
				decodeErrors++
			}
		case q.classifier != nil:
			de, tr := q.classifier.Classify(rec)
			if de {
				decodeErrors++
			}
			if tr {
				truncated++
			}
		}
		if r < 0 {
			r = int(h % nrings)
			if slot := q.slot(r); slot != nil {
				copy(slot, rec)
				rec = slot
			} // else rec is still the scratch record: dropped below
		}
		if &rec[0] == &q.scratch[0] {
			q.dropped[r].Add(1)
			continue
		}
		q.win[r].filled++
	}
	q.c.decoded.Add(n)
	if decodeErrors > 0 {
		q.c.decodeErrors.Add(decodeErrors)
	}
	if truncated > 0 {
		q.c.truncated.Add(truncated)
	}
	q.commitAll()
}

// window is a queue's run of reserved, not yet published slots in one ring.
type window struct {
	slots  []byte // from Ring.Reserve
	filled int    // records written at the front of slots
}

// slot returns the next free slot of ring r, publishing the full window and reserving a new
// one when needed. On a full ring it returns nil (Drop) or waits for room (Wait; nil if the
// run is cancelled meanwhile).
func (q *queue) slot(r int) []byte {
	rs := q.s.opts.RecordSize
	w := &q.win[r]
	if (w.filled+1)*rs <= len(w.slots) {
		return w.slots[w.filled*rs : (w.filled+1)*rs : (w.filled+1)*rs]
	}
	q.commit(r)
	rg := q.s.rings[r]
	w.slots = rg.Reserve(q.s.opts.Burst)
	if len(w.slots) == 0 && q.s.opts.Full == Wait {
		for spins := 0; len(w.slots) == 0; spins++ {
			if q.ctx != nil && q.ctx.Err() != nil {
				break
			}
			if spins < 1024 {
				runtime.Gosched()
			} else {
				time.Sleep(20 * time.Microsecond)
			}
			w.slots = rg.Reserve(q.s.opts.Burst)
		}
	}
	if len(w.slots) == 0 {
		return nil
	}
	return w.slots[:rs:rs]
}

// commit publishes ring r's filled slots.
func (q *queue) commit(r int) {
	w := &q.win[r]
	if w.slots == nil {
		return
	}
	q.s.rings[r].Commit(w.filled)
	q.enqueued[r].Add(uint64(w.filled))
	w.slots, w.filled = nil, 0
}

func (q *queue) commitAll() {
	for r := range q.win {
		q.commit(r)
	}
}

// Stats returns the counters. It is cheap enough to call at scrape time.
func (s *Spray) Stats() Stats {
	st := Stats{Source: s.src.Stats(), Rings: make([]RingStats, len(s.rings))}
	for _, q := range s.queues {
		st.Received += q.c.received.Load()
		st.Decoded += q.c.decoded.Load()
		st.DecodeErrors += q.c.decodeErrors.Load()
		st.Truncated += q.c.truncated.Load()
		for r := range s.rings {
			e, d := q.enqueued[r].Load(), q.dropped[r].Load()
			st.Rings[r].Enqueued += e
			st.Rings[r].DroppedRingFull += d
			st.Enqueued += e
			st.DroppedRingFull += d
		}
	}
	for r, rg := range s.rings {
		st.Rings[r].Len = rg.Len()
	}
	return st
}
