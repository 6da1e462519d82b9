package sidecar

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/confluo-go/confluo/pkg/wire"
)

// publisher delivers alerts to NATS at least once. Alerts wait in a bounded queue until a publish
// and a flush (PING/PONG round trip, so the server has them) both succeed; during an outage the
// queue holds the newest Options.Alerts.Buffer alerts and counts what it drops. The nats.Conn is
// created with ReconnectBufSize -1 so the client library never silently buffers on our behalf.
//
// Invariants:
//  1. Every alert gets a unique, increasing Seq before it is queued.
//  2. An alert leaves the queue only after a successful flush that followed its publish, or when
//     it is the oldest one and the queue is full (counted in dropped).
//
// Safe for concurrent use.
type publisher struct {
	host   string
	nc     *nats.Conn // nil when NATS is disabled
	logger *slog.Logger
	limit  int

	mu struct {
		sync.Mutex
		queue   []wire.Alert // oldest first, len <= limit
		history []wire.Alert // ring of the last cap(history) alerts
		histPos int
		histLen int
	}
	// sendMu is held while a batch is sent; tests take it to hold delivery at a known point.
	sendMu sync.Mutex

	wake      chan struct{}
	seq       atomic.Uint64
	raised    atomic.Uint64
	published atomic.Uint64
	dropped   atomic.Uint64
}

func newPublisher(host string, nc *nats.Conn, wake chan struct{}, buffer, history int, logger *slog.Logger) *publisher {
	p := &publisher{host: host, nc: nc, logger: logger, limit: buffer, wake: wake}
	p.mu.history = make([]wire.Alert, history)
	return p
}

// Raise queues an alert; it never blocks.
func (p *publisher) Raise(a wire.Alert) {
	a.Host = p.host
	a.Seq = p.seq.Add(1)
	if a.Published.IsZero() {
		a.Published = time.Now().UTC()
	}
	p.raised.Add(1)
	p.mu.Lock()
	if n := len(p.mu.history); n > 0 {
		p.mu.history[p.mu.histPos] = a
		p.mu.histPos = (p.mu.histPos + 1) % n
		if p.mu.histLen < n {
			p.mu.histLen++
		}
	}
	if p.nc != nil {
		if len(p.mu.queue) >= p.limit {
			drop := len(p.mu.queue) - p.limit + 1
			p.mu.queue = append(p.mu.queue[:0], p.mu.queue[drop:]...)
			p.dropped.Add(uint64(drop))
		}
		p.mu.queue = append(p.mu.queue, a)
	}
	p.mu.Unlock()
	p.kick()
}

func (p *publisher) kick() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Buffered is the number of alerts waiting for delivery.
func (p *publisher) Buffered() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.mu.queue)
}

// History returns the remembered alerts, oldest first, that match keep.
func (p *publisher) History(keep func(*wire.Alert) bool, limit int) (out []wire.Alert, truncated bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.mu.history)
	for i := 0; i < p.mu.histLen; i++ {
		a := &p.mu.history[(p.mu.histPos-p.mu.histLen+i+n)%n]
		if !keep(a) {
			continue
		}
		if len(out) == limit {
			return out, true
		}
		out = append(out, *a)
	}
	return out, false
}

// run delivers until ctx ends, then makes one last attempt bounded by final.
func (p *publisher) run(ctx context.Context, retry time.Duration, final time.Duration) {
	if p.nc == nil {
		return
	}
	t := time.NewTicker(retry)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			deadline := time.Now().Add(final)
			for p.Buffered() > 0 && time.Now().Before(deadline) && !p.nc.IsClosed() {
				if !p.deliver(time.Until(deadline)) {
					time.Sleep(retry)
				}
			}
			return
		case <-p.wake:
		case <-t.C:
		}
		p.deliver(2 * time.Second)
	}
}

// deliver sends the queued alerts and removes them once flushed; it reports success.
func (p *publisher) deliver(flushTimeout time.Duration) bool {
	p.sendMu.Lock()
	defer p.sendMu.Unlock()
	if !p.nc.IsConnected() {
		return false
	}
	p.mu.Lock()
	batch := append([]wire.Alert(nil), p.mu.queue...)
	p.mu.Unlock()
	if len(batch) == 0 {
		return true
	}
	for i := range batch {
		subject, err := wire.AlertSubject(batch[i].Host, batch[i].Trigger)
		if err != nil {
			// Trigger names are validated when installed; never retry a subject that cannot exist.
			p.logger.Error("dropping alert with invalid subject", "trigger", batch[i].Trigger, "err", err)
			continue
		}
		data, err := json.Marshal(&batch[i])
		if err != nil {
			p.logger.Error("dropping unencodable alert", "trigger", batch[i].Trigger, "err", err)
			continue
		}
		if err := p.nc.Publish(subject, data); err != nil {
			p.logger.Debug("alert publish failed; keeping alerts buffered", "err", err)
			return false
		}
	}
	if err := p.nc.FlushTimeout(flushTimeout); err != nil {
		p.logger.Debug("alert flush failed; keeping alerts buffered", "err", err)
		return false
	}
	last := batch[len(batch)-1].Seq
	p.mu.Lock()
	i := 0
	for i < len(p.mu.queue) && p.mu.queue[i].Seq <= last {
		i++
	}
	p.mu.queue = append(p.mu.queue[:0], p.mu.queue[i:]...)
	p.mu.Unlock()
	p.published.Add(uint64(len(batch)))
	return true
}
