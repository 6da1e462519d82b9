// Package fleet is the host side of Confluo-Go's fleet protocol: the agent that every sidecar embeds
// (and that the coordinator's scale benchmark runs a thousand times in one process).
//
// An Agent, on one NATS connection:
//
//   - publishes an AgentHeartbeat on confluo.v1.heartbeat.<host> every HeartbeatInterval (version,
//     labels, capture stats from StatusFunc, and the config revision it runs);
//   - watches its desired configuration in the JetStream key-value bucket wire.FleetBucket
//     (key host.<host> names a revision, key config.<revision> holds it), applies a new revision
//     through the Applier and publishes a wire.ConfigAck {revision, error} on confluo.v1.ack.<host>;
//   - answers snapshot-begin / snapshot-end on confluo.v1.agent.<host>.* through the Freezer, with
//     epochs and a lease (see below);
//   - answers network-wide queries on confluo.v1.agent.<host>.query through the Responder.
//
// Usage:
//
//	a, err := fleet.NewAgent(nc, fleet.Options{Host: "hv1", Applier: s, Freezer: s, Responder: s})
//	...
//	err = a.Run(ctx) // until ctx is done
//
// # Snapshot epochs and leases
//
// The agent remembers the highest epoch it has seen. A begin with a lower epoch is answered
// "stale" and changes nothing; a duplicate begin of the frozen epoch returns the same tails; a
// begin with a higher epoch releases any older freeze and freezes anew. An end releases the freeze
// only if it names the frozen epoch; any other end is answered "stale" and changes nothing. A
// freeze not ended within its lease (capped by MaxLease) is released by the agent itself, so a
// coordinator that dies mid-snapshot never leaves a host frozen for longer than the lease.
package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/confluo-go/confluo/pkg/wire"
)

// ErrInvalidOptions is wrapped by every error of Options.Validate.
var ErrInvalidOptions = errors.New("fleet: invalid options")

// ErrNotSupported is returned (as a coded wire error, CodeUnavailable) for an operation the host
// has no implementation for (no Freezer, no Responder).
var ErrNotSupported = errors.New("fleet: operation not supported by this host")

// Applier applies a configuration revision to the host (installs mirrors, multilogs, filters,
// aggregates, triggers, indexes). Apply must be idempotent for the same revision. It is called
// from one goroutine at a time.
type Applier interface {
	Apply(ctx context.Context, cfg *wire.FleetConfig) error
}

// Frozen is the state returned by a Freezer.
type Frozen struct {
	// Tails is the published tail of each shard at the freeze.
	Tails []uint64
	// Watermark (ns since epoch): every record with a timestamp at or below it is inside Tails.
	// Zero means "the freeze instant" (right when records are stamped and published at once).
	Watermark int64
}

// Freezer freezes a host's published tail: until release is called, queries see exactly Tails
// while ingest keeps appending. Implemented by the sidecar with the multilog's Freeze/Unfreeze.
// release must be safe to call once from any goroutine. A Freezer that cannot freeze returns nil
// Tails (the begin is then answered with CodeUnavailable and release, if not nil, is called).
type Freezer interface {
	Freeze() (Frozen, func())
}

// Responder answers network-wide queries. pin, when not nil, restricts the answer to the records
// inside pin.Tails whose timestamp is at or below pin.CutTime. Errors should be *wire.Error
// values (others are sent as CodeInternal). Called concurrently.
type Responder interface {
	Query(ctx context.Context, req *wire.QueryRequest, pin *wire.Pin) (*wire.QueryReply, error)
	Aggregate(ctx context.Context, req *wire.AggregateRequest, pin *wire.Pin) (*wire.AggregateReply, error)
	Alerts(ctx context.Context, req *wire.AlertsRequest) (*wire.AlertsReply, error)
}

// Options configure an Agent. Every default is written next to its field.
type Options struct {
	// Host is this host's subject token (required).
	Host string
	// Labels are published in heartbeats and matched by rollout selectors. Default none.
	Labels map[string]string
	// Version is the software version in heartbeats. Default "dev".
	Version string
	// HeartbeatInterval between heartbeats. Default 5s.
	HeartbeatInterval time.Duration
	// StatusFunc fills the capture stats, record and alert counts of a heartbeat. Default none.
	StatusFunc func() wire.Heartbeat
	// Applier applies config revisions. Default none: revisions are acked with CodeUnavailable.
	Applier Applier
	// ApplyTimeout bounds one Apply. Default 30s.
	ApplyTimeout time.Duration
	// Freezer takes snapshot freezes. Default none: snapshot-begin fails with CodeUnavailable.
	Freezer Freezer
	// Responder answers queries. Default none: queries fail with CodeUnavailable.
	Responder Responder
	// QueryTimeout bounds one query. Default 10s.
	QueryTimeout time.Duration
	// MaxConcurrentQueries running at once; more are refused with CodeBusy. Default 4.
	MaxConcurrentQueries int
	// DefaultLease applies when a begin names no lease; MaxLease caps any lease. Defaults 5s, 60s.
	DefaultLease time.Duration
	MaxLease     time.Duration
	// Bucket is the key-value bucket of the desired state. Default wire.FleetBucket.
	Bucket string
	// RetryInterval between attempts to bind or re-watch the bucket. Default 1s.
	RetryInterval time.Duration
	// DisableConfigWatch turns the KV watcher off (snapshots and queries only). Default false.
	DisableConfigWatch bool
	// Logger; nil discards.
	Logger *slog.Logger
}

func (o *Options) fill() {
	if o.Version == "" {
		o.Version = "dev"
	}
	if o.HeartbeatInterval == 0 {
		o.HeartbeatInterval = 5 * time.Second
	}
	if o.ApplyTimeout == 0 {
		o.ApplyTimeout = 30 * time.Second
	}
	if o.QueryTimeout == 0 {
		o.QueryTimeout = 10 * time.Second
	}
	if o.MaxConcurrentQueries == 0 {
		o.MaxConcurrentQueries = 4
	}
	if o.DefaultLease == 0 {
		o.DefaultLease = 5 * time.Second
	}
	if o.MaxLease == 0 {
		o.MaxLease = 60 * time.Second
	}
	if o.Bucket == "" {
		o.Bucket = wire.FleetBucket
	}
	if o.RetryInterval == 0 {
		o.RetryInterval = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
}

// Validate checks the options after defaults are filled in.
func (o Options) Validate() error {
	o.fill()
	if err := wire.ValidateToken("host", o.Host); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	for k := range o.Labels {
		if k == "" {
			return fmt.Errorf("%w: empty label key", ErrInvalidOptions)
		}
	}
	switch {
	case o.HeartbeatInterval < 0:
		return fmt.Errorf("%w: heartbeat interval %v is negative", ErrInvalidOptions, o.HeartbeatInterval)
	case o.ApplyTimeout < 0 || o.QueryTimeout < 0 || o.RetryInterval < 0:
		return fmt.Errorf("%w: negative timeout", ErrInvalidOptions)
	case o.MaxConcurrentQueries < 0:
		return fmt.Errorf("%w: max concurrent queries %d is negative", ErrInvalidOptions, o.MaxConcurrentQueries)
	case o.DefaultLease < 0 || o.MaxLease < o.DefaultLease:
		return fmt.Errorf("%w: lease default %v / max %v", ErrInvalidOptions, o.DefaultLease, o.MaxLease)
	}
	return nil
}

// Agent is the host side of the fleet protocol. Its methods are safe for concurrent use; Run is
// called once.
type Agent struct {
	nc   *nats.Conn
	opts Options
	log  *slog.Logger

	started  time.Time
	ackSubj  string
	hbSubj   string
	querySem chan struct{}

	// snap guards the snapshot state.
	snap struct {
		sync.Mutex
		highest uint64 // highest epoch seen
		frozen  *freeze
	}

	// cfg guards the configuration state.
	cfg struct {
		sync.Mutex
		applied     uint64 // revision running
		lastTried   uint64 // revision of the last Apply attempt
		lastRollout string
		lastErr     *wire.Error
	}

	// qmu guards queries.Add against Run's final queries.Wait.
	qmu     sync.Mutex
	qclosed bool
	queries sync.WaitGroup // running query goroutines; Run waits for them

	heartbeats atomic.Uint64
	applies    atomic.Uint64
	releases   atomic.Uint64 // freezes released (end or lease)
	expired    atomic.Uint64 // freezes released by the lease
}

type freeze struct {
	epoch   uint64
	state   Frozen
	at      int64
	release func()
	timer   *time.Timer
}

// NewAgent validates opts and returns an agent on nc. The connection stays the caller's.
func NewAgent(nc *nats.Conn, opts Options) (*Agent, error) {
	if nc == nil {
		return nil, fmt.Errorf("%w: nil NATS connection", ErrInvalidOptions)
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts.fill()
	a := &Agent{nc: nc, opts: opts, log: opts.Logger.With("host", opts.Host), started: time.Now()}
	a.ackSubj, _ = wire.AckSubject(opts.Host)
	a.hbSubj, _ = wire.HeartbeatSubject(opts.Host)
	a.querySem = make(chan struct{}, opts.MaxConcurrentQueries)
	return a, nil
}

// Host returns the agent's host name.
func (a *Agent) Host() string { return a.opts.Host }

// Revision returns the config revision the host runs and the error of the last failed apply.
func (a *Agent) Revision() (uint64, *wire.Error) {
	a.cfg.Lock()
	defer a.cfg.Unlock()
	return a.cfg.applied, a.cfg.lastErr
}

// FrozenEpoch returns the epoch frozen right now, if any.
func (a *Agent) FrozenEpoch() (uint64, bool) {
	a.snap.Lock()
	defer a.snap.Unlock()
	if a.snap.frozen == nil {
		return 0, false
	}
	return a.snap.frozen.epoch, true
}

// Counters returns heartbeats sent, applies done, freezes released and freezes released by lease.
func (a *Agent) Counters() (heartbeats, applies, releases, expired uint64) {
	return a.heartbeats.Load(), a.applies.Load(), a.releases.Load(), a.expired.Load()
}

// Run serves until ctx is done, then unsubscribes, releases any freeze and returns nil. It
// returns an error only if the subscriptions cannot be made.
func (a *Agent) Run(ctx context.Context) error {
	subs := make([]*nats.Subscription, 0, 4)
	defer func() {
		for _, s := range subs {
			_ = s.Unsubscribe()
		}
		a.qmu.Lock()
		a.qclosed = true
		a.qmu.Unlock()
		a.queries.Wait()
		a.releaseAll()
	}()
	for op, h := range map[wire.AgentOp]nats.MsgHandler{
		wire.AgentSnapshotBegin: a.onBegin,
		wire.AgentSnapshotEnd:   a.onEnd,
		wire.AgentQuery:         func(m *nats.Msg) { a.onQuery(ctx, m) },
		wire.AgentPing:          a.onPing,
	} {
		subj, err := wire.AgentSubject(a.opts.Host, op)
		if err != nil {
			return err
		}
		s, err := a.nc.Subscribe(subj, h)
		if err != nil {
			return fmt.Errorf("fleet: subscribe %s: %w", subj, err)
		}
		subs = append(subs, s)
	}
	if err := a.nc.Flush(); err != nil && !errors.Is(err, nats.ErrConnectionReconnecting) {
		a.log.Warn("flush subscriptions", "err", err)
	}

	var wg sync.WaitGroup
	if !a.opts.DisableConfigWatch {
		wg.Go(func() { a.watchConfig(ctx) })
	}
	a.heartbeat()
	t := time.NewTicker(a.opts.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return nil
		case <-t.C:
			a.heartbeat()
		}
	}
}

func (a *Agent) heartbeatMsg() wire.AgentHeartbeat {
	var hb wire.Heartbeat
	if a.opts.StatusFunc != nil {
		hb = a.opts.StatusFunc()
	}
	hb.Host = a.opts.Host
	hb.Version = a.opts.Version
	hb.Labels = a.opts.Labels
	hb.Time = time.Now().UTC()
	hb.Started = a.started.UTC()
	applied, lastErr := a.Revision()
	return wire.AgentHeartbeat{
		Heartbeat:      hb,
		ConfigRevision: applied,
		ConfigError:    lastErr,
		IntervalMillis: a.opts.HeartbeatInterval.Milliseconds(),
	}
}

func (a *Agent) heartbeat() {
	b, err := json.Marshal(a.heartbeatMsg())
	if err != nil {
		a.log.Error("encode heartbeat", "err", err)
		return
	}
	if err := a.nc.Publish(a.hbSubj, b); err != nil {
		a.log.Warn("publish heartbeat", "err", err)
		return
	}
	a.heartbeats.Add(1)
}

// ---- configuration ----

func (a *Agent) watchConfig(ctx context.Context) {
	js, err := jetstream.New(a.nc)
	if err != nil {
		a.log.Error("jetstream", "err", err)
		return
	}
	key := "host." + a.opts.Host
	for ctx.Err() == nil {
		kv, err := js.KeyValue(ctx, a.opts.Bucket)
		if err != nil {
			a.log.Debug("bind fleet bucket", "bucket", a.opts.Bucket, "err", err)
			sleepCtx(ctx, a.opts.RetryInterval)
			continue
		}
		w, err := kv.Watch(ctx, key, jetstream.IgnoreDeletes())
		if err != nil {
			a.log.Warn("watch desired config", "key", key, "err", err)
			sleepCtx(ctx, a.opts.RetryInterval)
			continue
		}
		a.consume(ctx, kv, w)
		_ = w.Stop()
		sleepCtx(ctx, a.opts.RetryInterval)
	}
}

func (a *Agent) consume(ctx context.Context, kv jetstream.KeyValue, w jetstream.KeyWatcher) {
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e == nil {
				continue // initial values done
			}
			var as wire.Assignment
			if err := json.Unmarshal(e.Value(), &as); err != nil || as.Revision == 0 {
				a.log.Warn("bad assignment in fleet bucket", "key", e.Key(), "err", err)
				continue
			}
			a.applyAssignment(ctx, kv, as)
		}
	}
}

// applyAssignment applies as (unless it is already running) and acks.
func (a *Agent) applyAssignment(ctx context.Context, kv jetstream.KeyValue, as wire.Assignment) {
	a.cfg.Lock()
	applied, lastTried, lastRollout, lastErr := a.cfg.applied, a.cfg.lastTried, a.cfg.lastRollout, a.cfg.lastErr
	a.cfg.Unlock()
	switch {
	case as.Revision == applied:
		a.ack(as, nil) // already running: ack again (a resumed rollout asks twice)
		return
	case as.Revision == lastTried && as.Rollout == lastRollout && lastErr != nil:
		a.ack(as, lastErr) // the same request failed already
		return
	}
	werr := a.apply(ctx, kv, as.Revision)
	if ctx.Err() != nil {
		return // shutting down: the interrupted apply is neither recorded nor acked
	}
	a.cfg.Lock()
	a.cfg.lastTried, a.cfg.lastRollout = as.Revision, as.Rollout
	if werr == nil {
		a.cfg.applied, a.cfg.lastErr = as.Revision, nil
	} else {
		a.cfg.lastErr = werr
	}
	a.cfg.Unlock()
	a.applies.Add(1)
	a.ack(as, werr)
	a.heartbeat()
}

func (a *Agent) apply(ctx context.Context, kv jetstream.KeyValue, rev uint64) *wire.Error {
	if a.opts.Applier == nil {
		return wire.Errorf(wire.CodeUnavailable, "host %s has no config applier", a.opts.Host)
	}
	e, err := kv.Get(ctx, fmt.Sprintf("config.%d", rev))
	if err != nil {
		return wire.Errorf(wire.CodeNotFound, "config revision %d: %v", rev, err)
	}
	var cfg wire.FleetConfig
	if err := json.Unmarshal(e.Value(), &cfg); err != nil {
		return wire.Errorf(wire.CodeBadRequest, "config revision %d is not valid JSON: %v", rev, err)
	}
	cfg.Revision = rev
	actx, cancel := context.WithTimeout(ctx, a.opts.ApplyTimeout)
	defer cancel()
	if err := safeApply(actx, a.opts.Applier, &cfg); err != nil {
		a.log.Warn("apply config", "revision", rev, "err", err)
		return wire.Wrap(wire.CodeInvalidArgument, err)
	}
	a.log.Info("applied config", "revision", rev)
	return nil
}

// safeApply turns a panic in the applier into an error: bad config never crashes the daemon.
func safeApply(ctx context.Context, ap Applier, cfg *wire.FleetConfig) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("fleet: applier panicked: %v", r)
		}
	}()
	return ap.Apply(ctx, cfg)
}

func (a *Agent) ack(as wire.Assignment, werr *wire.Error) {
	b, err := json.Marshal(wire.ConfigAck{
		Host: a.opts.Host, Revision: as.Revision, Rollout: as.Rollout, Error: werr, Applied: time.Now().UTC(),
	})
	if err != nil {
		return
	}
	if err := a.nc.Publish(a.ackSubj, b); err != nil {
		a.log.Warn("publish ack", "err", err)
	}
}

// ---- snapshots ----

func (a *Agent) onBegin(m *nats.Msg) {
	var req wire.SnapshotBegin
	if err := json.Unmarshal(m.Data, &req); err != nil {
		a.replyErr(m, wire.Errorf(wire.CodeBadRequest, "snapshot-begin: %v", err))
		return
	}
	if req.Epoch == 0 {
		a.replyErr(m, wire.Errorf(wire.CodeInvalidArgument, "snapshot-begin: epoch must be positive"))
		return
	}
	rep, werr := a.Begin(req)
	if werr != nil {
		a.replyErr(m, werr)
		return
	}
	a.reply(m, rep)
}

// Begin handles a snapshot-begin (exported for hosts that receive it another way, and tests).
func (a *Agent) Begin(req wire.SnapshotBegin) (wire.SnapshotBeginReply, *wire.Error) {
	rep := wire.SnapshotBeginReply{Host: a.opts.Host, Epoch: req.Epoch}
	if a.opts.Freezer == nil {
		return rep, wire.Errorf(wire.CodeUnavailable, "host %s has no snapshot support", a.opts.Host)
	}
	lease := time.Duration(req.LeaseMillis) * time.Millisecond
	if lease <= 0 {
		lease = a.opts.DefaultLease
	}
	lease = min(lease, a.opts.MaxLease)

	a.snap.Lock()
	defer a.snap.Unlock()
	switch f := a.snap.frozen; {
	case req.Epoch < a.snap.highest:
		rep.Status = wire.SnapStale
		return rep, nil
	case req.Epoch == a.snap.highest && f != nil && f.epoch == req.Epoch:
		rep.Status, rep.Tails, rep.Watermark, rep.FrozenAt = wire.SnapFrozen, f.state.Tails, f.state.Watermark, f.at
		return rep, nil
	case req.Epoch == a.snap.highest:
		rep.Status = wire.SnapExpired // this epoch ended or ran out already
		return rep, nil
	}
	a.snap.highest = req.Epoch
	a.releaseLocked(false)
	state, release := a.opts.Freezer.Freeze()
	if state.Tails == nil {
		// The freezer could not freeze (its store is gone or failed): nothing is frozen.
		if release != nil {
			release()
		}
		return rep, wire.Errorf(wire.CodeUnavailable, "host %s could not freeze its store", a.opts.Host)
	}
	now := time.Now().UnixNano()
	if state.Watermark == 0 {
		state.Watermark = now
	}
	f := &freeze{epoch: req.Epoch, state: state, at: now, release: release}
	epoch := req.Epoch
	f.timer = time.AfterFunc(lease, func() { a.expire(epoch) })
	a.snap.frozen = f
	rep.Status, rep.Tails, rep.Watermark, rep.FrozenAt = wire.SnapFrozen, state.Tails, state.Watermark, now
	return rep, nil
}

func (a *Agent) expire(epoch uint64) {
	a.snap.Lock()
	defer a.snap.Unlock()
	if f := a.snap.frozen; f != nil && f.epoch == epoch {
		a.log.Warn("snapshot lease expired: released", "epoch", epoch)
		a.releaseLocked(true)
	}
}

// releaseLocked releases the current freeze, if any. a.snap is held.
func (a *Agent) releaseLocked(byLease bool) {
	f := a.snap.frozen
	if f == nil {
		return
	}
	a.snap.frozen = nil
	f.timer.Stop()
	if f.release != nil {
		f.release()
	}
	a.releases.Add(1)
	if byLease {
		a.expired.Add(1)
	}
}

func (a *Agent) releaseAll() {
	a.snap.Lock()
	defer a.snap.Unlock()
	a.releaseLocked(false)
}

func (a *Agent) onEnd(m *nats.Msg) {
	var req wire.SnapshotEnd
	if err := json.Unmarshal(m.Data, &req); err != nil {
		a.replyErr(m, wire.Errorf(wire.CodeBadRequest, "snapshot-end: %v", err))
		return
	}
	a.reply(m, a.End(req))
}

// End handles a snapshot-end.
func (a *Agent) End(req wire.SnapshotEnd) wire.SnapshotEndReply {
	rep := wire.SnapshotEndReply{Host: a.opts.Host, Epoch: req.Epoch, Status: wire.SnapStale}
	a.snap.Lock()
	defer a.snap.Unlock()
	if f := a.snap.frozen; f != nil && f.epoch == req.Epoch {
		a.releaseLocked(false)
		rep.Status = wire.SnapReleased
	}
	return rep
}

// ---- queries ----

func (a *Agent) onPing(m *nats.Msg) { a.reply(m, a.heartbeatMsg()) }

func (a *Agent) onQuery(ctx context.Context, m *nats.Msg) {
	var req wire.HostQuery
	if err := json.Unmarshal(m.Data, &req); err != nil {
		a.replyErr(m, wire.Errorf(wire.CodeBadRequest, "query: %v", err))
		return
	}
	n := 0
	for _, set := range []bool{req.Query != nil, req.Aggregate != nil, req.Alerts != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		a.replyErr(m, wire.Errorf(wire.CodeInvalidArgument, "query: exactly one of query, aggregate, alerts must be set (got %d)", n))
		return
	}
	if a.opts.Responder == nil {
		a.replyErr(m, wire.Errorf(wire.CodeUnavailable, "host %s answers no queries", a.opts.Host))
		return
	}
	select {
	case a.querySem <- struct{}{}:
	default:
		a.replyErr(m, wire.Errorf(wire.CodeBusy, "host %s: %d queries running", a.opts.Host, cap(a.querySem)))
		return
	}
	if !a.trackQuery() {
		<-a.querySem
		a.replyErr(m, wire.Errorf(wire.CodeUnavailable, "host %s is shutting down", a.opts.Host))
		return
	}
	go func() {
		defer a.queries.Done()
		defer func() { <-a.querySem }()
		timeout := a.opts.QueryTimeout
		qctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		rep, err := a.answer(qctx, &req)
		if err != nil {
			a.replyErr(m, wire.Wrap(wire.CodeInternal, err))
			return
		}
		a.reply(m, rep)
	}()
}

func (a *Agent) trackQuery() bool {
	a.qmu.Lock()
	defer a.qmu.Unlock()
	if a.qclosed {
		return false
	}
	a.queries.Add(1)
	return true
}

func (a *Agent) answer(ctx context.Context, req *wire.HostQuery) (rep *wire.HostQueryReply, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = wire.Errorf(wire.CodeInternal, "host %s: query panicked: %v", a.opts.Host, r)
		}
	}()
	rep = &wire.HostQueryReply{Host: a.opts.Host}
	switch {
	case req.Query != nil:
		rep.Query, err = a.opts.Responder.Query(ctx, req.Query, req.Pin)
	case req.Aggregate != nil:
		rep.Aggregate, err = a.opts.Responder.Aggregate(ctx, req.Aggregate, req.Pin)
	default:
		if req.Pin != nil {
			return nil, wire.Errorf(wire.CodeInvalidArgument, "alerts cannot be pinned to a snapshot")
		}
		rep.Alerts, err = a.opts.Responder.Alerts(ctx, req.Alerts)
	}
	return rep, err
}

// ---- replies ----

func (a *Agent) reply(m *nats.Msg, v any) {
	if m.Reply == "" {
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		a.replyErr(m, wire.Errorf(wire.CodeInternal, "encode reply: %v", err))
		return
	}
	out, _ := json.Marshal(wire.Response{Result: b})
	if limit := a.nc.MaxPayload(); limit > 0 && int64(len(out)) > limit {
		a.replyErr(m, wire.Errorf(wire.CodeTooLarge, "host %s: reply of %d bytes exceeds the NATS max payload %d; lower the limit",
			a.opts.Host, len(out), limit))
		return
	}
	if err := m.Respond(out); err != nil {
		a.log.Warn("respond", "subject", m.Subject, "err", err)
	}
}

func (a *Agent) replyErr(m *nats.Msg, e *wire.Error) {
	if m.Reply == "" {
		return
	}
	out, _ := json.Marshal(wire.Response{Error: e})
	if err := m.Respond(out); err != nil {
		a.log.Warn("respond", "subject", m.Subject, "err", err)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// InboxPrefix is the inbox prefix a host's NATS connection must use
// (nats.CustomInboxPrefix(fleet.InboxPrefix(host))) when the server enforces per-host permissions:
// a host may subscribe only to its own inboxes.
func InboxPrefix(host string) string { return "_INBOX." + host }
