package sidecar

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confluo-go/confluo/pkg/multilog"
	"github.com/confluo-go/confluo/pkg/ring"
	"github.com/confluo-go/confluo/pkg/schema"
	"github.com/confluo-go/confluo/pkg/spray"
	"github.com/confluo-go/confluo/pkg/spray/afpacket"
	"github.com/confluo-go/confluo/pkg/spray/dpdk"
	"github.com/confluo-go/confluo/pkg/spray/pcapsrc"
	"github.com/confluo-go/confluo/pkg/wire"
)

// pipeline is the capture path: source -> spray (decode, hash) -> rings -> one writer goroutine
// per ring -> MultiLog shard. Safe for concurrent use (Stats and RingDepths from any goroutine,
// Run once).
type pipeline struct {
	name   string
	src    spray.Source
	spray  *spray.Spray
	ml     *multilog.MultiLog
	logger *slog.Logger
	// finished is set once the capture has stopped and every ring is drained into the store.
	finished atomic.Bool
	// closeMu orders Stats against the source's Close (a source's Stats may not be safe after
	// or during Close); final holds the spray's last counters once the source is closed.
	closeMu sync.RWMutex
	final   *spray.Stats
	// live sources stamp frames with the wall clock; a file replays recorded time.
	live bool
	dpdk bool // the source is DPDK: shut the EAL down after it
	ran  atomic.Bool
	// queues[q] is the newest timestamp of a burst of source queue q whose records are all in
	// rings (written by that queue's goroutine after the burst).
	queues []paddedInt64
	// counters per writer, padded; written by that writer only.
	writers []writerCounters
}

type paddedInt64 struct {
	v atomic.Int64
	_ [56]byte
}

type writerCounters struct {
	stored    atomic.Uint64
	storeFull atomic.Uint64
	// appendedTS is the timestamp of the last record appended to the store.
	appendedTS atomic.Int64
	_          [40]byte
}

// liveGrace is how long a live source may hold a received frame before handing it over
// (AF_PACKET block timeout, DPDK burst) plus margin.
const liveGrace = 100 * time.Millisecond

// Watermark is the data time up to which every captured record is in the store, or
// math.MaxInt64 once the capture has ended and the rings are drained. Records are assumed to
// arrive in timestamp order per queue (true for a file and, within the grace, for live capture).
//
// It reads the source watermark first and the rings second: a ring found empty has handed every
// record enqueued before that read to the store; a non-empty ring caps the watermark at the last
// record its writer appended.
func (p *pipeline) Watermark() int64 {
	if p.finished.Load() {
		return math.MaxInt64
	}
	var w int64
	if p.live {
		w = time.Now().Add(-liveGrace).UnixNano()
	} else {
		w = math.MaxInt64
		for i := range p.queues {
			w = min(w, p.queues[i].v.Load())
		}
	}
	for i := 0; i < p.spray.Rings(); i++ {
		if p.spray.Ring(i).Len() > 0 { // rings are the spray's, alive after the source closes
			w = min(w, p.writers[i].appendedTS.Load())
		}
	}
	return w
}

// stampedSource records, after each burst has been handed to the spray (and so enqueued or
// dropped), the newest timestamp of the burst.
type stampedSource struct {
	spray.Source
	p *pipeline
}

func (s stampedSource) Run(ctx context.Context, q int, burst func([]spray.Frame)) error {
	return s.Source.Run(ctx, q, func(frames []spray.Frame) {
		burst(frames)
		newest := int64(math.MinInt64)
		for i := range frames {
			newest = max(newest, frames[i].Timestamp)
		}
		if newest > s.p.queues[q].v.Load() {
			s.p.queues[q].v.Store(newest)
		}
	})
}

// newPipeline opens the configured source and the spray over it; ml must have Capture.Rings
// writers.
func newPipeline(o CaptureOptions, ml *multilog.MultiLog, logger *slog.Logger) (*pipeline, error) {
	var (
		src  spray.Source
		name string
		full = spray.Drop
		err  error
	)
	switch o.Source {
	case "pcap":
		src, err = pcapsrc.Open(o.File, pcapsrc.Options{Pace: o.Pace, Retime: o.Retime, Loops: o.Loops})
		name, full = "pcap:"+o.File, spray.Wait // a file never loses records to a full ring
	case "afpacket":
		src, err = afpacket.Open(afpacket.Options{Interface: o.Interface, Namespace: o.Namespace,
			Queues: o.Rings, Snaplen: o.Snaplen})
		name = "afpacket:" + o.Interface
	case "dpdk":
		d := dpdk.DefaultOptions()
		d.SocketPath, d.Snaplen, d.Logger = o.Interface, o.Snaplen, logger
		src, err = dpdk.Open(d)
		name = "dpdk:" + o.Interface
	default:
		return nil, fmt.Errorf("%w: capture.source %q", ErrInvalidOptions, o.Source)
	}
	if err != nil {
		return nil, fmt.Errorf("sidecar: capture.source %s: %w", o.Source, err)
	}
	p := &pipeline{name: name, src: src, ml: ml, logger: logger, live: o.Source != "pcap", dpdk: o.Source == "dpdk",
		queues: make([]paddedInt64, src.Queues()), writers: make([]writerCounters, o.Rings)}
	for i := range p.queues {
		p.queues[i].v.Store(math.MinInt64)
	}
	for i := range p.writers {
		p.writers[i].appendedTS.Store(math.MinInt64)
	}
	sp, err := spray.New(stampedSource{Source: src, p: p}, spray.Options{Rings: o.Rings, RingCapacity: o.RingCapacity, Full: full, Logger: logger})
	if err != nil {
		_ = src.Close()
		return nil, fmt.Errorf("sidecar: spray: %w", err)
	}
	p.spray = sp
	return p, nil
}

// Run captures until the source ends or ctx is done, then drains every ring into the store.
func (p *pipeline) Run(ctx context.Context) error {
	p.ran.Store(true)
	defer func() {
		p.closeMu.Lock()
		st := p.spray.Stats()
		p.final = &st
		if err := p.src.Close(); err != nil {
			p.logger.Warn("closing the capture source", "err", err)
		}
		if p.dpdk {
			// Release the EAL's hugepage files and runtime directory; one DPDK capture per process.
			if err := dpdk.Shutdown(); err != nil {
				p.logger.Warn("DPDK shutdown", "err", err)
			}
		}
		p.closeMu.Unlock()
	}()
	var sprayDone atomic.Bool
	var wg sync.WaitGroup
	for i := 0; i < p.spray.Rings(); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.write(i, p.spray.Ring(i), &sprayDone)
		}()
	}
	err := p.spray.Run(ctx)
	sprayDone.Store(true)
	wg.Wait()
	p.finished.Store(true)
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// write is writer i: it moves ring i's records into MultiLog shard i in batches until the spray
// has stopped and the ring is empty.
func (p *pipeline) write(i int, r *ring.Ring, sprayDone *atomic.Bool) {
	w := p.ml.Writer(i)
	c := &p.writers[i]
	idle := 0
	for {
		batch := r.Peek(256)
		n := len(batch) / r.RecordSize()
		if n == 0 {
			if sprayDone.Load() && r.Len() == 0 {
				return
			}
			// Back off gently when idle; the ring absorbs bursts meanwhile.
			if idle++; idle < 64 {
				runtime.Gosched()
			} else {
				time.Sleep(50 * time.Microsecond)
			}
			continue
		}
		idle = 0
		if err := w.AppendBatch(batch); err != nil {
			if c.storeFull.Add(uint64(n)) == uint64(n) {
				// The packet path counts rather than logs, but a store that refuses appends
				// (a write error is sticky, a shard is full) drops everything from now on:
				// say why, once per writer.
				p.logger.Error("store refuses appends; packets are dropped and counted as store_full", "writer", i, "err", err)
			}
		} else {
			c.stored.Add(uint64(n))
		}
		c.appendedTS.Store(schema.Timestamp(batch[len(batch)-r.RecordSize():]))
		r.Release(n)
	}
}

// Stats implements capturer.
func (p *pipeline) Stats() wire.CaptureStats {
	p.closeMu.RLock()
	var st spray.Stats
	if p.final != nil {
		st = *p.final
	} else {
		st = p.spray.Stats()
	}
	p.closeMu.RUnlock()
	cs := wire.CaptureStats{Source: p.name, Received: st.Received + st.Source.KernelDrops + st.Source.Missed + st.Source.NoMbuf}
	var full uint64
	for i := range p.writers {
		cs.Stored += p.writers[i].stored.Load()
		full += p.writers[i].storeFull.Load()
	}
	drops := map[string]uint64{
		"ring_full":  st.DroppedRingFull,
		"kernel":     st.Source.KernelDrops,
		"missed":     st.Source.Missed,
		"no_mbuf":    st.Source.NoMbuf,
		"store_full": full,
	}
	for k, v := range drops {
		if v == 0 {
			delete(drops, k)
		}
	}
	if len(drops) > 0 {
		cs.Dropped = drops
	}
	return cs
}

// closeUnused closes the source of a pipeline that never ran (New failed after opening it).
func (p *pipeline) closeUnused() error {
	if p.ran.Load() {
		return nil
	}
	return p.src.Close()
}

// RingDepths implements capturer.
func (p *pipeline) RingDepths() []int {
	d := make([]int, p.spray.Rings())
	for i := range d {
		d[i] = p.spray.Ring(i).Len()
	}
	return d
}
