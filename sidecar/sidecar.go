// Package sidecar is the Confluo-Go daemon on one hypervisor: it drains mirrored packets from a
// capture source through per-core rings into an Atomic MultiLog, evaluates triggers, publishes
// alerts on NATS and answers diagnosis queries over NATS request-reply and a local HTTP JSON API.
//
// Usage:
//
//	opts := sidecar.DefaultOptions()
//	opts.Capture.Source, opts.Capture.File = "pcap", "trace.pcap"
//	if err := opts.Validate(); err != nil { ... }
//	s, err := sidecar.New(opts, logger, prometheus.DefaultRegisterer)
//	if err != nil { ... }
//	err = s.Run(ctx) // until ctx is cancelled (SIGTERM), then a graceful shutdown
//
// Lock order (outer first): publisher.sendMu, publisher.mu; Sidecar.reqMu and fleetHost.mu stand
// alone; engine.Store.mu is never held while calling out. No other locks are held across calls.
//
// See docs/sidecar.md for configuration and docs/wire.md for the API.
package sidecar

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/confluo-go/confluo/pkg/fleet"
	"github.com/confluo-go/confluo/pkg/wire"
	"github.com/confluo-go/confluo/sidecar/internal/engine"
)

// SoftwareVersion is reported in heartbeats and stats; set at link time with
// -ldflags "-X github.com/confluo-go/confluo/sidecar.SoftwareVersion=...".
var SoftwareVersion = "dev"

// capturer is a running capture pipeline: source -> rings -> writers -> store.
type capturer interface {
	// Run captures until the source ends or ctx is cancelled, then drains the rings into the
	// store before returning.
	Run(ctx context.Context) error
	Stats() wire.CaptureStats
	RingDepths() []int
}

// Sidecar is the daemon. Create it with New, run it once with Run. Its methods are safe for
// concurrent use.
type Sidecar struct {
	opts    Options
	logger  *slog.Logger
	reg     prometheus.Registerer
	engine  engine.Engine
	capture capturer // nil when Capture.Source is "none"
	mirror  *mirror  // nil unless Mirror.Enabled
	closers []func() error

	ns        *server.Server // embedded server, nil with external NATS
	natsURL   string
	nc        *nats.Conn
	publisher *publisher
	metrics   *metrics
	started   time.Time

	querySlots      chan struct{}
	queriesTotal    atomic.Uint64
	queriesFailed   atomic.Uint64
	queriesRejected atomic.Uint64
	queriesRunning  atomic.Int64
	stopping        atomic.Bool
	ready           atomic.Bool
	captureDone     atomic.Bool

	agent *fleet.Agent // nil without NATS or with fleet.enabled false
	host  *fleetHost

	httpLn  net.Listener
	httpSrv *http.Server
	subs    []*nats.Subscription
	reqWG   sync.WaitGroup
	// reqMu orders reqWG.Add in NATS callbacks against the shutdown's Wait.
	reqMu     sync.Mutex
	reqClosed bool
	inFlight  atomic.Int64
	ran       atomic.Bool
}

// New builds a sidecar from validated options: it opens the store, starts the embedded NATS
// server (when no URL is configured), connects to NATS and binds the HTTP listener, but captures
// and serves nothing until Run. logger nil discards logs; reg nil registers no metrics.
func New(opts Options, logger *slog.Logger, reg prometheus.Registerer) (*Sidecar, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	s := newSidecar(opts, logger, reg)
	if opts.Mirror.Enabled {
		m, iface, err := setupMirror(opts.Mirror, opts.Capture.Source, reg, s.logger)
		if err != nil {
			return nil, err
		}
		s.mirror = m
		if s.opts.Capture.Interface == "" {
			s.opts.Capture.Interface = iface
		}
		if s.opts.Capture.Namespace == "" && opts.Capture.Source == "afpacket" {
			s.opts.Capture.Namespace = opts.Mirror.VSwitchdNetNS
		}
	}
	eng, capture, closers, err := openStore(s.opts, s.raise, s.logger, s.reg)
	if err != nil {
		if s.mirror != nil {
			_ = s.mirror.stop()
		}
		return nil, err
	}
	if s.mirror != nil {
		closers = append([]func() error{s.mirror.stop}, closers...) // stopped last
	}
	return s.init(eng, capture, closers)
}

func newSidecar(opts Options, logger *slog.Logger, reg prometheus.Registerer) *Sidecar {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Sidecar{
		opts:       opts,
		logger:     logger,
		reg:        reg,
		querySlots: make(chan struct{}, opts.Query.MaxConcurrent),
		started:    time.Now().UTC(),
	}
}

// init finishes New with an engine; tests of the API call it with a double.
func (s *Sidecar) init(eng engine.Engine, capture capturer, closers []func() error) (_ *Sidecar, err error) {
	s.engine, s.capture, s.closers = eng, capture, closers
	defer func() {
		if err != nil {
			s.closeAll()
		}
	}()
	o := s.opts
	wake := make(chan struct{}, 1) // the publisher's; NATS state changes poke it
	if !o.NATS.Disabled {
		url := ""
		for i, u := range o.NATS.URLs {
			if i > 0 {
				url += ","
			}
			url += u
		}
		if url == "" {
			ns, err := startEmbedded(o.NATS.EmbeddedHost, o.NATS.EmbeddedPort)
			if err != nil {
				return nil, err
			}
			s.ns = ns
			s.closers = append(s.closers, func() error { ns.Shutdown(); ns.WaitForShutdown(); return nil })
			url = ns.ClientURL()
		}
		s.natsURL = url
		// Replies come to inboxes under the host's own prefix: a server enforcing per-host
		// permissions lets a host subscribe only there (see fleet.InboxPrefix); harmless
		// without permissions.
		nc, err := connectNATS(url, o.NATS, "confluo-sidecar-"+o.Host, s.logger, func() {
			select {
			case wake <- struct{}{}:
			default:
			}
		}, nats.CustomInboxPrefix(fleet.InboxPrefix(o.Host)))
		if err != nil {
			return nil, err
		}
		s.nc = nc
		// Closed before the embedded server goes down (closers run in reverse).
		s.closers = append(s.closers, func() error { nc.Close(); return nil })
	}
	s.publisher = newPublisher(o.Host, s.nc, wake, o.Alerts.Buffer, o.Alerts.History, s.logger)
	if s.nc != nil && o.Fleet.Enabled {
		s.host = &fleetHost{s: s}
		agent, err := fleet.NewAgent(s.nc, fleet.Options{
			Host: o.Host, Labels: o.Labels, Version: SoftwareVersion, HeartbeatInterval: o.HeartbeatInterval,
			StatusFunc: s.heartbeat, Applier: s.host, Freezer: s.host, Responder: s.host,
			QueryTimeout: o.Query.Timeout, MaxConcurrentQueries: o.Query.MaxConcurrent,
			DisableConfigWatch: !o.Fleet.ConfigWatch || s.ns != nil, Logger: s.logger,
		})
		if err != nil {
			return nil, fmt.Errorf("sidecar: fleet agent: %w", err)
		}
		s.agent = agent
	}
	s.metrics = newMetrics(s.reg, s)
	if o.HTTP.Listen != "" {
		ln, err := net.Listen("tcp", o.HTTP.Listen)
		if err != nil {
			return nil, fmt.Errorf("sidecar: http.listen %s: %w", o.HTTP.Listen, err)
		}
		s.httpLn = ln
		s.closers = append(s.closers, func() error {
			err := ln.Close()
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		})
	}
	for _, f := range o.Filters {
		f.MultiLog = s.multilog(f.MultiLog)
		if err := s.engine.AddFilter(f); err != nil {
			return nil, fmt.Errorf("%w: filters %q: %w", ErrInvalidOptions, f.Name, err)
		}
	}
	for _, a := range o.Aggregates {
		a.MultiLog = s.multilog(a.MultiLog)
		if err := s.engine.AddAggregate(a); err != nil {
			return nil, fmt.Errorf("%w: aggregates %q: %w", ErrInvalidOptions, a.Name, err)
		}
	}
	for _, t := range o.Triggers {
		t.MultiLog = s.multilog(t.MultiLog)
		if err := s.engine.AddTrigger(t); err != nil {
			return nil, fmt.Errorf("%w: triggers %q: %w", ErrInvalidOptions, t.Name, err)
		}
	}
	for _, c := range o.Store.Indexes {
		if err := s.engine.AddIndex(wire.IndexSpec{MultiLog: o.Store.MultiLog, Column: c}); err != nil {
			return nil, fmt.Errorf("%w: store.indexes %q: %w", ErrInvalidOptions, c, err)
		}
	}
	return s, nil
}

func (s *Sidecar) closeAll() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		if err := s.closers[i](); err != nil {
			s.logger.Warn("close failed", "err", err)
		}
	}
	s.closers = nil
}

// raise is the engine's AlertFunc.
func (s *Sidecar) raise(a wire.Alert) {
	if a.MultiLog == "" {
		a.MultiLog = s.opts.Store.MultiLog
	}
	a.Completeness = s.completeness()
	s.publisher.Raise(a)
}

// NATSURL is the URL the sidecar connects to (the embedded server's when it runs one).
func (s *Sidecar) NATSURL() string { return s.natsURL }

// HTTPAddr is the address the HTTP API listens on, "" when disabled.
func (s *Sidecar) HTTPAddr() string {
	if s.httpLn == nil {
		return ""
	}
	return s.httpLn.Addr().String()
}

// Ready reports whether the sidecar serves requests and captures.
func (s *Sidecar) Ready() bool { return s.ready.Load() && !s.stopping.Load() }

// CaptureDone reports whether a finite capture source (a file) has been fully stored.
func (s *Sidecar) CaptureDone() bool { return s.captureDone.Load() }

// Run serves until ctx is cancelled, then shuts down gracefully: stop serving new requests, stop
// the capture and drain the rings into the store, deliver buffered alerts (bounded by
// ShutdownTimeout), close NATS and the embedded server. Run may be called once.
func (s *Sidecar) Run(ctx context.Context) error {
	if !s.ran.CompareAndSwap(false, true) {
		return errors.New("sidecar: Run called twice")
	}
	defer s.closeAll()
	var wg sync.WaitGroup
	pubCtx, pubCancel := context.WithCancel(context.Background())
	defer pubCancel()
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.publisher.run(pubCtx, s.opts.NATS.ReconnectWait, s.opts.ShutdownTimeout)
	}()

	if s.nc != nil {
		sub, err := s.nc.Subscribe(wire.CommandWildcard(s.opts.Host), s.onRequest)
		if err != nil {
			pubCancel()
			wg.Wait()
			return fmt.Errorf("sidecar: subscribe to commands: %w", err)
		}
		_ = sub.SetPendingLimits(4096, 64<<20)
		s.subs = append(s.subs, sub)
		if s.nc.IsConnected() {
			// The server has the subscription before the sidecar says it is ready.
			if err := s.nc.FlushTimeout(5 * time.Second); err != nil {
				s.logger.Warn("nats flush of the command subscription", "err", err)
			}
		}
	}
	if s.httpLn != nil {
		s.httpSrv = &http.Server{Handler: s.httpHandler(), ReadHeaderTimeout: 10 * time.Second}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.httpSrv.Serve(s.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.logger.Error("http server stopped", "err", err)
			}
		}()
	}
	captureCtx, captureCancel := context.WithCancel(context.Background())
	defer captureCancel()
	captureErr := make(chan error, 1)
	if s.capture != nil {
		go func() {
			err := s.capture.Run(captureCtx)
			if err == nil {
				s.captureDone.Store(true)
				s.logger.Info("capture source finished", "stats", s.capture.Stats())
			}
			captureErr <- err
		}()
	} else {
		captureErr <- nil
	}
	hbCtx, hbCancel := context.WithCancel(context.Background())
	if s.agent != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.agent.Run(hbCtx); err != nil {
				s.logger.Error("fleet agent stopped", "err", err)
			}
		}()
	} else if s.nc != nil && s.opts.HeartbeatInterval > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.heartbeats(hbCtx)
		}()
	}
	if s.mirror != nil {
		s.mirror.run()
	}
	s.ready.Store(true)
	s.logger.Info("sidecar running", "host", s.opts.Host, "nats", redactURLs(s.natsURL), "http", s.HTTPAddr(),
		"source", s.opts.Capture.Source)

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-captureErr:
		if err != nil {
			runErr = fmt.Errorf("sidecar: capture: %w", err)
			s.logger.Error("capture failed", "err", err)
		} else {
			// A finite source ended; keep serving queries until ctx ends.
			<-ctx.Done()
		}
		captureErr <- nil // for the shutdown path below
	}

	// Graceful shutdown.
	s.logger.Info("sidecar shutting down")
	s.stopping.Store(true)
	for _, sub := range s.subs {
		_ = sub.Unsubscribe()
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownTimeout)
	defer cancel()
	if s.httpSrv != nil {
		_ = s.httpSrv.Shutdown(shutdownCtx)
	}
	captureCancel()
	select {
	case err := <-captureErr:
		if err != nil && runErr == nil && !errors.Is(err, context.Canceled) {
			runErr = fmt.Errorf("sidecar: capture: %w", err)
		}
	case <-shutdownCtx.Done():
		s.logger.Warn("capture did not drain within the shutdown timeout")
	}
	s.reqMu.Lock()
	s.reqClosed = true
	s.reqMu.Unlock()
	s.reqWG.Wait()
	hbCancel()
	pubCancel() // final delivery attempt, bounded by ShutdownTimeout
	wg.Wait()
	s.logger.Info("sidecar stopped", "alerts_published", s.publisher.published.Load(),
		"alerts_unsent", s.publisher.Buffered())
	return runErr
}

// maxInFlight bounds NATS requests being handled at once; beyond it requests get busy at once.
const maxInFlight = 256

func (s *Sidecar) onRequest(m *nats.Msg) {
	_, cmd, err := wire.ParseCommandSubject(m.Subject)
	if err != nil {
		s.respond(m, nil, wire.Errorf(wire.CodeUnknownCommand, "%v", err))
		return
	}
	if s.inFlight.Add(1) > maxInFlight {
		s.inFlight.Add(-1)
		s.respond(m, nil, wire.Errorf(wire.CodeBusy, "%s: %d requests in flight", cmd, maxInFlight))
		return
	}
	s.reqMu.Lock()
	if s.reqClosed {
		s.reqMu.Unlock()
		s.inFlight.Add(-1)
		s.respond(m, nil, wire.Errorf(wire.CodeUnavailable, "%s: the sidecar is shutting down", cmd))
		return
	}
	s.reqWG.Add(1)
	s.reqMu.Unlock()
	go func() {
		defer s.reqWG.Done()
		defer s.inFlight.Add(-1)
		res, err := s.handle(context.Background(), cmd, m.Data)
		s.respond(m, res, err)
	}()
}

func (s *Sidecar) respond(m *nats.Msg, res any, err error) {
	if m.Reply == "" {
		return
	}
	data := encodeResponse(res, err)
	if err := m.Respond(data); err != nil {
		s.logger.Warn("nats reply failed", "subject", m.Subject, "err", err)
	}
}

// encodeResponse builds the wire.Response envelope.
func encodeResponse(res any, err error) []byte {
	var r wire.Response
	if err != nil {
		r.Error = wire.Wrap(wire.CodeInternal, err)
	} else {
		b, merr := json.Marshal(res)
		if merr != nil {
			r.Error = wire.Errorf(wire.CodeInternal, "encode reply: %v", merr)
		} else {
			r.Result = b
		}
	}
	out, _ := json.Marshal(&r)
	return out
}

func (s *Sidecar) heartbeats(ctx context.Context) {
	subject, err := wire.HeartbeatSubject(s.opts.Host)
	if err != nil {
		return
	}
	t := time.NewTicker(s.opts.HeartbeatInterval)
	defer t.Stop()
	for {
		hb := s.heartbeat()
		if data, err := json.Marshal(&hb); err == nil && s.nc.IsConnected() {
			_ = s.nc.Publish(subject, data)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// heartbeat is the sidecar's state for heartbeats (also the fleet agent's StatusFunc).
func (s *Sidecar) heartbeat() wire.Heartbeat {
	st := s.Stats()
	var records uint64
	for _, ml := range st.MultiLogs {
		records += ml.Records
	}
	triggers, _ := s.engine.Triggers(s.opts.Store.MultiLog)
	return wire.Heartbeat{Host: s.opts.Host, Version: SoftwareVersion, Labels: s.opts.Labels,
		Time: time.Now().UTC(), Started: s.started, Capture: st.Capture, Records: records,
		Triggers: len(triggers), Alerts: s.publisher.raised.Load()}
}

func (s *Sidecar) captureStats() wire.CaptureStats {
	if s.capture == nil {
		return wire.CaptureStats{Source: s.opts.Capture.Source}
	}
	return s.capture.Stats()
}

func (s *Sidecar) completeness() wire.Completeness {
	st := s.captureStats()
	c := wire.Completeness{Received: st.Received, Stored: st.Stored, ByReason: st.Dropped, Ratio: 1}
	for _, n := range st.Dropped {
		c.Dropped += n
	}
	if st.Received > 0 && c.Dropped <= st.Received {
		c.Ratio = float64(st.Received-c.Dropped) / float64(st.Received)
	}
	return c
}

// Stats returns the sidecar's state.
func (s *Sidecar) Stats() wire.Stats {
	st := wire.Stats{
		Host:      s.opts.Host,
		Version:   SoftwareVersion,
		Started:   s.started,
		Capture:   s.captureStats(),
		MultiLogs: nonNil(s.engine.MultiLogs()),
		Queries: wire.QueryStats{Total: s.queriesTotal.Load(), Failed: s.queriesFailed.Load(),
			Rejected: s.queriesRejected.Load(), Running: s.queriesRunning.Load()},
		NATS: wire.NATSStats{URL: redactURLs(s.natsURL), Embedded: s.ns != nil,
			AlertsPublished: s.publisher.published.Load(), AlertsBuffered: s.publisher.Buffered(),
			AlertsDropped: s.publisher.dropped.Load()},
	}
	st.Capture.Done = s.captureDone.Load() || st.Capture.Done
	if s.nc != nil {
		st.NATS.Connected = s.nc.IsConnected()
	}
	return st
}

func (s *Sidecar) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !s.Ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	if g, ok := s.reg.(prometheus.Gatherer); ok {
		mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	}
	api := func(w http.ResponseWriter, r *http.Request) {
		cmd := wire.Command(r.PathValue("command"))
		body, err := readBody(r)
		var res any
		if err == nil {
			res, err = s.handle(r.Context(), cmd, body)
		}
		w.Header().Set("Content-Type", "application/json")
		if err != nil {
			w.WriteHeader(wire.Wrap(wire.CodeInternal, err).Code.HTTPStatus())
		}
		_, _ = w.Write(encodeResponse(res, err))
	}
	mux.HandleFunc("POST /v1/{command}", api)
	mux.HandleFunc("GET /v1/{command}", api)
	return mux
}

func readBody(r *http.Request) ([]byte, error) {
	if r.Method == http.MethodGet {
		return nil, nil
	}
	r.Body = http.MaxBytesReader(nil, r.Body, wire.MaxRequestBytes)
	var buf []byte
	buf, err := io.ReadAll(r.Body)
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return nil, wire.Errorf(wire.CodeTooLarge, "body larger than %d bytes", wire.MaxRequestBytes)
		}
		return nil, wire.Errorf(wire.CodeBadRequest, "read body: %v", err)
	}
	return buf, nil
}

func itoa(i int) string { return strconv.Itoa(i) }
