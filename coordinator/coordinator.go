// Package coordinator is confluo-coordinator: the network operator's view of every hypervisor.
//
// It keeps a registry of sidecars from their heartbeats (a host that misses MissedHeartbeats is
// down), stores the desired configuration as immutable revisions in a JetStream key-value bucket,
// rolls revisions out in waves (label selector, cumulative percentages, acks, timeouts, a failure
// threshold that halts, rollback to the previous revision; a restarted coordinator resumes the
// rollout in progress from the bucket), fans network-wide queries out and merges the answers, and
// takes distributed atomic snapshots in two phases over request-reply.
//
// Usage:
//
//	c, err := coordinator.New(opts) // opts.Validate() first
//	err = c.Run(ctx)                // until ctx is done
//
// Everything the coordinator knows that must survive a restart lives in the bucket (see the
// layout in pkg/wire/fleet.go); the registry is rebuilt from heartbeats within one interval.
//
// # Distributed snapshots
//
// Phase one sends snapshot-begin {epoch, lease} to every selected host; each freezes its
// published tail (ingest keeps writing, queries stop seeing new records) and answers with its
// tail vector and a watermark (every record stamped at or below it is inside the tails). When
// every host answered, phase two sends snapshot-end {epoch}. While all hosts are frozen their
// visible states coexist, so the vector is a state that existed at one instant; pinned queries
// additionally read only records at or below the smallest watermark (CutTime), which makes the
// cut consistent: a record inside the cut was stamped before CutTime, so every record stamped
// before it on any host is inside the cut too. Epochs come from a counter in the bucket and only
// grow, so a late or duplicate begin/end from an earlier snapshot or a dead coordinator changes
// nothing; a host whose end never arrives releases itself after the lease.
//
// Lock order: Coordinator.mu, then registry.mu. Neither is held while doing NATS or KV I/O.
package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/confluo-go/confluo/pkg/wire"
)

// Sentinel errors. Errors crossing NATS are *wire.Error values.
var (
	ErrNotRunning = errors.New("coordinator: not running")
	ErrNoHosts    = errors.New("coordinator: no host matches")
)

// Coordinator is the fleet coordinator. Its methods are safe for concurrent use once Run has
// started (Ready is closed); Run is called once.
type Coordinator struct {
	opts     Options
	log      *slog.Logger
	ready    chan struct{}
	stopping chan struct{} // closed when Run's context is done

	nc  *nats.Conn
	js  jetstream.JetStream
	kv  jetstream.KeyValue
	ns  *server.Server // embedded server, if any
	reg *registry
	met *metrics

	// mu guards the rollout in progress.
	mu struct {
		sync.Mutex
		rollout   []byte              // JSON of the current RolloutState (a copy for readers)
		rolloutID string              // id of the rollout running in this process, "" if none
		cancel    context.CancelFunc  // stops the running rollout
		done      chan struct{}       // closed when it stopped
		acks      chan wire.ConfigAck // acks for the running rollout
		assigned  map[string]uint64   // host -> revision in host.<host>
		runCtx    context.Context     // Run's context
		stopped   bool                // Run is returning: start no more goroutines
	}
	wg sync.WaitGroup
}

// New validates opts and returns a coordinator. Nothing is started until Run.
func New(opts Options) (*Coordinator, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	c := &Coordinator{opts: opts, log: logger, ready: make(chan struct{}), stopping: make(chan struct{})}
	c.reg = newRegistry(opts.HeartbeatInterval, opts.MissedHeartbeats)
	c.met = newMetrics(opts.Registerer, c)
	c.mu.assigned = map[string]uint64{}
	return c, nil
}

// Ready is closed once Run has connected, bound the bucket and subscribed.
func (c *Coordinator) Ready() <-chan struct{} { return c.ready }

// ClientURL is the URL of the embedded NATS server, or "" when connected to an external one.
func (c *Coordinator) ClientURL() string {
	if c.ns == nil {
		return ""
	}
	return c.ns.ClientURL()
}

// Run connects, resumes a rollout in progress, and serves until ctx is done.
func (c *Coordinator) Run(ctx context.Context) error {
	if err := c.connect(); err != nil {
		return err
	}
	defer c.closeConn()
	var err error
	c.js, err = jetstream.New(c.nc)
	if err != nil {
		return fmt.Errorf("coordinator: jetstream: %w", err)
	}
	bctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	c.kv, err = c.js.CreateOrUpdateKeyValue(bctx, jetstream.KeyValueConfig{
		Bucket:       c.opts.Bucket,
		Description:  "Confluo-Go fleet desired state",
		History:      8,
		Storage:      jetstream.FileStorage,
		Replicas:     c.opts.Replicas,
		MaxValueSize: 4 << 20,
	})
	cancel()
	if err != nil {
		return fmt.Errorf("coordinator: key-value bucket %s: %w", c.opts.Bucket, err)
	}
	if err := c.loadAssigned(ctx); err != nil {
		return err
	}

	var subs []*nats.Subscription
	defer func() {
		for _, s := range subs {
			_ = s.Unsubscribe()
		}
	}()
	for subj, h := range map[string]nats.MsgHandler{
		wire.HeartbeatWildcard: c.onHeartbeat,
		wire.AckWildcard:       c.onAck,
	} {
		s, err := c.nc.Subscribe(subj, h)
		if err != nil {
			return fmt.Errorf("coordinator: subscribe %s: %w", subj, err)
		}
		s.SetPendingLimits(1<<20, 256<<20)
		subs = append(subs, s)
	}
	api, err := c.nc.QueueSubscribe(wire.CoordinatorWildcard, "confluo-coordinator", func(m *nats.Msg) {
		if !c.goTracked(func() { c.serveAPI(ctx, m) }) {
			out, _ := json.Marshal(wire.Response{Error: wire.Errorf(wire.CodeUnavailable, "coordinator shutting down")})
			_ = m.Respond(out)
		}
	})
	if err != nil {
		return fmt.Errorf("coordinator: subscribe api: %w", err)
	}
	subs = append(subs, api)
	if err := c.nc.Flush(); err != nil {
		return fmt.Errorf("coordinator: flush: %w", err)
	}

	c.mu.Lock()
	c.mu.runCtx = ctx
	c.mu.Unlock()
	if err := c.resume(ctx); err != nil {
		c.log.Error("resume rollout", "err", err)
	}
	close(c.ready)
	c.log.Info("coordinator running", "bucket", c.opts.Bucket)

	t := time.NewTicker(c.opts.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			close(c.stopping)
			c.stopRollout()
			for _, s := range subs {
				_ = s.Unsubscribe()
			}
			subs = nil
			c.mu.Lock()
			c.mu.stopped = true
			c.mu.Unlock()
			c.stopRollout() // one started by a request that raced with the shutdown
			c.wg.Wait()
			return nil
		case <-t.C:
			for _, ch := range c.reg.sweep(time.Now()) {
				c.log.Info("host state changed", "host", ch.host, "up", ch.up)
			}
		}
	}
}

func (c *Coordinator) connect() error {
	if c.opts.Conn != nil {
		c.nc = c.opts.Conn
		return nil
	}
	url := ""
	if len(c.opts.NATS.URLs) == 0 {
		ns, err := startEmbedded(c.opts.NATS)
		if err != nil {
			return err
		}
		c.ns = ns
		url = ns.ClientURL()
	} else {
		for i, u := range c.opts.NATS.URLs {
			if i > 0 {
				url += ","
			}
			url += u
		}
	}
	nc, err := Connect(url, c.opts.NATS, "confluo-coordinator")
	if err != nil {
		if c.ns != nil {
			c.ns.Shutdown()
		}
		return err
	}
	c.nc = nc
	return nil
}

func (c *Coordinator) closeConn() {
	if c.opts.Conn == nil && c.nc != nil {
		c.nc.Close()
	}
	if c.ns != nil {
		c.ns.Shutdown()
		c.ns.WaitForShutdown()
	}
}

// Connect dials NATS with the auth and TLS of o (used by the coordinator and confluoctl).
func Connect(url string, o NATSOptions, name string) (*nats.Conn, error) {
	opts := []nats.Option{nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond)}
	switch {
	case o.CredsFile != "":
		opts = append(opts, nats.UserCredentials(o.CredsFile))
	case o.NKeyFile != "":
		opt, err := nats.NkeyOptionFromSeed(o.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("coordinator: nats nkey file: %w", err)
		}
		opts = append(opts, opt)
	case o.User != "":
		opts = append(opts, nats.UserInfo(o.User, o.Password))
	}
	if o.CAFile != "" {
		opts = append(opts, nats.RootCAs(o.CAFile))
	}
	if o.CertFile != "" {
		opts = append(opts, nats.ClientCert(o.CertFile, o.KeyFile))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("coordinator: connect to nats: %w", err)
	}
	return nc, nil
}

func startEmbedded(o NATSOptions) (*server.Server, error) {
	sopts := &server.Options{}
	if o.ConfigFile != "" {
		var err error
		sopts, err = server.ProcessConfigFile(o.ConfigFile)
		if err != nil {
			return nil, fmt.Errorf("coordinator: nats config %s: %w", o.ConfigFile, err)
		}
	}
	sopts.ServerName = "confluo-coordinator"
	sopts.Host = o.EmbeddedHost
	sopts.Port = o.EmbeddedPort
	sopts.JetStream = true
	sopts.StoreDir = o.StoreDir
	sopts.NoSigs = true
	sopts.NoLog = true
	if sopts.MaxPayload == 0 {
		sopts.MaxPayload = 8 << 20
	}
	ns, err := server.NewServer(sopts)
	if err != nil {
		return nil, fmt.Errorf("coordinator: embedded nats-server: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("coordinator: embedded nats-server on %s:%d did not become ready", o.EmbeddedHost, o.EmbeddedPort)
	}
	return ns, nil
}

// ---- heartbeats and acks ----

func (c *Coordinator) onHeartbeat(m *nats.Msg) {
	host, err := hostOfSubject(m.Subject, wire.Root+".heartbeat.")
	if err != nil {
		c.met.badMessages.Inc()
		return
	}
	var hb wire.AgentHeartbeat
	if err := json.Unmarshal(m.Data, &hb); err != nil {
		c.met.badMessages.Inc()
		c.log.Warn("bad heartbeat", "subject", m.Subject, "err", err)
		return
	}
	if hb.Host != host {
		// A host may only speak for itself: the subject (enforced by NATS permissions) wins.
		c.met.badMessages.Inc()
		c.log.Warn("heartbeat names another host", "subject", m.Subject, "host", hb.Host)
		return
	}
	c.met.heartbeats.Inc()
	if c.reg.observe(hb, time.Now()) {
		c.log.Info("host up", "host", host)
	}
}

func (c *Coordinator) onAck(m *nats.Msg) {
	host, err := hostOfSubject(m.Subject, wire.Root+".ack.")
	if err != nil {
		c.met.badMessages.Inc()
		return
	}
	var ack wire.ConfigAck
	if err := json.Unmarshal(m.Data, &ack); err != nil || ack.Host != host {
		c.met.badMessages.Inc()
		c.log.Warn("bad ack", "subject", m.Subject, "err", err)
		return
	}
	c.met.acks.Inc()
	c.reg.ack(ack)
	c.mu.Lock()
	ch := c.mu.acks
	c.mu.Unlock()
	if ch != nil {
		select {
		case ch <- ack:
		default:
			c.met.droppedAcks.Inc() // the rollout re-asks unacked hosts when it resumes
		}
	}
}

func hostOfSubject(subject, prefix string) (string, error) {
	if len(subject) <= len(prefix) || subject[:len(prefix)] != prefix {
		return "", fmt.Errorf("%w: %q", wire.ErrInvalidSubject, subject)
	}
	host := subject[len(prefix):]
	if err := wire.ValidateToken("host", host); err != nil {
		return "", err
	}
	return host, nil
}

// ---- key-value helpers ----

func (c *Coordinator) getJSON(ctx context.Context, key string, v any) (uint64, error) {
	e, err := c.kv.Get(ctx, key)
	if err != nil {
		return 0, err
	}
	if err := json.Unmarshal(e.Value(), v); err != nil {
		return 0, fmt.Errorf("coordinator: key %s holds bad JSON: %w", key, err)
	}
	return e.Revision(), nil
}

func (c *Coordinator) putJSON(ctx context.Context, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = c.kv.Put(ctx, key, b)
	return err
}

// nextCounter increments meta.<name> with compare-and-set and returns the new value.
func (c *Coordinator) nextCounter(ctx context.Context, name string) (uint64, error) {
	key := "meta." + name
	for range 100 {
		e, err := c.kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			if _, err := c.kv.Create(ctx, key, []byte("1")); err == nil {
				return 1, nil
			} else if !errors.Is(err, jetstream.ErrKeyExists) {
				return 0, fmt.Errorf("coordinator: counter %s: %w", name, err)
			}
			continue
		case err != nil:
			return 0, fmt.Errorf("coordinator: counter %s: %w", name, err)
		}
		var n uint64
		if _, err := fmt.Sscan(string(e.Value()), &n); err != nil {
			return 0, fmt.Errorf("coordinator: counter %s holds %q: %w", name, e.Value(), err)
		}
		n++
		if _, err := c.kv.Update(ctx, key, fmt.Appendf(nil, "%d", n), e.Revision()); err == nil {
			return n, nil
		}
	}
	return 0, fmt.Errorf("coordinator: counter %s: too much contention", name)
}

func (c *Coordinator) counter(ctx context.Context, name string) (uint64, error) {
	e, err := c.kv.Get(ctx, "meta."+name)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var n uint64
	_, err = fmt.Sscan(string(e.Value()), &n)
	return n, err
}

// loadAssigned reads every host.<host> key.
func (c *Coordinator) loadAssigned(ctx context.Context) error {
	lister, err := c.kv.ListKeysFiltered(ctx, "host.*")
	if err != nil {
		return fmt.Errorf("coordinator: list hosts: %w", err)
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	assigned := map[string]uint64{}
	for _, k := range keys {
		var as wire.Assignment
		if _, err := c.getJSON(ctx, k, &as); err != nil {
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				continue
			}
			return err
		}
		assigned[k[len("host."):]] = as.Revision
	}
	c.mu.Lock()
	c.mu.assigned = assigned
	c.mu.Unlock()
	return nil
}

func (c *Coordinator) assignedOf(host string) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.assigned[host]
}

// goTracked runs f in a goroutine Run waits for, unless Run is already returning.
func (c *Coordinator) goTracked(f func()) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.stopped {
		return false
	}
	c.wg.Go(f)
	return true
}

// bind returns a context that is also cancelled when the coordinator stops.
func (c *Coordinator) bind(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-c.stopping:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}
