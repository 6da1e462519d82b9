package ovs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/ovn-org/libovsdb/cache"
	"github.com/ovn-org/libovsdb/client"
	"github.com/ovn-org/libovsdb/model"
	"github.com/ovn-org/libovsdb/ovsdb"

	"github.com/confluo-go/confluo/ovs/internal/mirrorspec"
	"github.com/confluo-go/confluo/ovs/internal/vswitch"
)

// MirrorSpec declares one mirror: bridge, name, selection (all, source
// ports, destination ports, VLANs, OpenFlow matches), snaplen and output
// (the spray port). See the field comments; Validate checks it.
type MirrorSpec = mirrorspec.Spec

// Change says what an Ensure or Remove call did.
type Change = mirrorspec.Change

// Kinds of change.
const (
	Unchanged = mirrorspec.Unchanged
	Created   = mirrorspec.Created
	Updated   = mirrorspec.Updated
	Removed   = mirrorspec.Removed
)

// DefaultSprayPortName is the spray port EnsureSprayPort creates on a bridge.
func DefaultSprayPortName(bridge string) string { return mirrorspec.DefaultSprayPortName(bridge) }

// Result reports what an Ensure or Remove call changed and why. A plain
// value, safe to share once returned.
type Result struct {
	Change  Change   `json:"change"`
	Reasons []string `json:"reasons,omitempty"`
}

// MirrorStatus is one mirror as the database shows it. A plain value (a
// snapshot), safe to share once returned.
type MirrorStatus struct {
	Spec MirrorSpec `json:"spec"`
	UUID string     `json:"uuid"`
	// Managed is true for mirrors created by Confluo-Go.
	Managed bool `json:"managed"`
	// Desired is true if this controller keeps the mirror reconciled.
	Desired bool `json:"desired"`
	// TxPackets and TxBytes are the mirror's statistics (updated by
	// ovs-vswitchd every few seconds; -1 when not reported yet).
	TxPackets int64           `json:"tx_packets"`
	TxBytes   int64           `json:"tx_bytes"`
	Spray     SprayPortStatus `json:"spray_port"`
}

// SprayPortStatus is the spray port (mirror output) as the database shows it.
// A plain value, safe to share once returned.
type SprayPortStatus struct {
	Name    string `json:"name"`
	Bridge  string `json:"bridge"`
	Type    string `json:"type"`
	Managed bool   `json:"managed"`
	// OFPort is the OpenFlow port number, -1 if ovs-vswitchd failed to
	// create the interface, 0 if it has not done so yet.
	OFPort     int    `json:"ofport"`
	AdminState string `json:"admin_state,omitempty"`
	LinkState  string `json:"link_state,omitempty"`
	Error      string `json:"error,omitempty"`
	// VhostServerPath is the vhost-user socket of a dpdkvhostuserclient port.
	VhostServerPath string `json:"vhost_server_path,omitempty"`
}

// Controller programs mirrors and spray ports into Open vSwitch through OVSDB
// and keeps them as declared. Safe for concurrent use.
//
// Use it in one of two ways:
//   - one-shot (CLI): New, Connect, EnsureMirror/RemoveMirror/ListMirrors, Close;
//   - daemon: New, then Run in a goroutine; Run connects, reconnects with
//     backoff and restores every mirror and spray port passed to EnsureMirror
//     and EnsureSprayPort whenever the database drifts from them.
//
// Lock order: applyMu, then mu; a session's rowWatches.mu, then a
// rowWatch's mu (both leaves, taken under applyMu or by libovsdb's event
// goroutine). None is held while waiting on the network except applyMu,
// which serialises plan-transact-verify cycles.
type Controller struct {
	opts    Options
	log     *slog.Logger
	metrics *metrics

	// applyMu serialises plan, transaction and cache verification, so that a
	// plan is always made from a cache that shows the previous transaction.
	applyMu sync.Mutex

	mu struct {
		sync.Mutex
		// desired mirrors by "bridge/name".
		desired map[string]MirrorSpec
		// sprayPorts: bridges whose default spray port is kept.
		sprayPorts map[string]bool
		// flows: fingerprint of the OpenFlow rules installed per mirror key.
		flows  map[string]string
		closed bool
	}

	sess    atomic.Pointer[session]
	kick    chan struct{}
	purgeCh chan struct{} // requests for purgeLoop, coalesced
	closeCh chan struct{}
	running atomic.Bool

	// afterCommit, if set (by tests only), runs in ensureMirror between a
	// commit and the wait for the cache to show it.
	afterCommit func()
}

// session is one OVSDB connection with its monitor and cache. ctx is
// canceled when the session is closed, which aborts every call still using
// it (libovsdb's cache reads can otherwise wait forever on a dead client).
type session struct {
	client client.Client
	// rows records, for transactions waiting to see their commit, the rows
	// the cache adds.
	rows   *rowWatches
	ctx    context.Context
	cancel context.CancelFunc
}

func newSession(cl client.Client, rows *rowWatches) *session {
	ctx, cancel := context.WithCancel(context.Background())
	return &session{client: cl, rows: rows, ctx: ctx, cancel: cancel}
}

// alive reports whether the connection is up: libovsdb drops its RPC client
// (and so its current endpoint) when the server goes away.
func (s *session) alive() bool {
	return s.ctx.Err() == nil && s.client.CurrentEndpoint() != ""
}

func (s *session) close() {
	s.cancel()
	s.client.Close()
}

// opCtx bounds one operation on s by CallTimeout and by the session's life.
func (c *Controller) opCtx(ctx context.Context, s *session) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.CallTimeout)
	stop := context.AfterFunc(s.ctx, cancel)
	return ctx, func() {
		stop()
		cancel()
	}
}

// New returns a controller; it does not connect. opts is validated.
func New(opts Options) (*Controller, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	c := &Controller{
		opts:    opts,
		log:     opts.Logger,
		kick:    make(chan struct{}, 1),
		purgeCh: make(chan struct{}, 1),
		closeCh: make(chan struct{}),
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.mu.desired = map[string]MirrorSpec{}
	c.mu.sprayPorts = map[string]bool{}
	c.mu.flows = map[string]string{}
	m, err := newMetrics(opts.Registerer, c)
	if err != nil {
		return nil, err
	}
	c.metrics = m
	return c, nil
}

// Connected reports whether the controller has a live OVSDB session.
func (c *Controller) Connected() bool {
	s := c.sess.Load()
	return s != nil && s.alive()
}

// Connect opens an OVSDB session if there is none. It fails with
// ErrNotRunning or ErrPermission when the endpoint cannot be used. Run calls
// it itself; the CLI calls it once.
func (c *Controller) Connect(ctx context.Context) error {
	if c.isClosed() {
		return ErrClosed
	}
	if c.Connected() {
		return nil
	}
	s, err := c.dial(ctx)
	if err != nil {
		return err
	}
	if old := c.sess.Swap(s); old != nil {
		old.close()
	}
	if c.isClosed() { // lost a race with Close
		if s := c.sess.Swap(nil); s != nil {
			s.close()
		}
		return ErrClosed
	}
	return nil
}

// Close ends Run (if running) and the OVSDB session. Desired state is kept
// only in memory and is lost. Close is idempotent.
func (c *Controller) Close() error {
	c.mu.Lock()
	if !c.mu.closed {
		c.mu.closed = true
		close(c.closeCh)
	}
	c.mu.Unlock()
	if s := c.sess.Swap(nil); s != nil {
		s.close()
	}
	return nil
}

func (c *Controller) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.closed
}

// callCtx bounds ctx by CallTimeout.
func (c *Controller) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.opts.CallTimeout)
}

// dial connects, checks the schema, starts the monitor and hooks the cache.
func (c *Controller) dial(ctx context.Context) (*session, error) {
	ctx, cancel := c.callCtx(ctx)
	defer cancel()
	if err := probe(ctx, c.opts.Endpoint); err != nil {
		return nil, err
	}
	dbModel, err := model.NewClientDBModel("Open_vSwitch", map[string]model.Model{
		vswitch.OpenvSwitchTable: &vswitch.OpenvSwitch{},
		vswitch.BridgeTable:      &vswitch.Bridge{},
		vswitch.PortTable:        &vswitch.Port{},
		vswitch.InterfaceTable:   &vswitch.Interface{},
		vswitch.MirrorTable:      &vswitch.Mirror{},
	})
	if err != nil {
		return nil, fmt.Errorf("ovs: client model: %w", err)
	}
	logger := logr.FromSlogHandler(c.log.Handler())
	copts := []client.Option{client.WithEndpoint(c.opts.Endpoint), client.WithLogger(&logger)}
	if c.opts.TLS != nil {
		copts = append(copts, client.WithTLSConfig(c.opts.TLS))
	}
	cl, err := client.NewOVSDBClient(dbModel, copts...)
	if err != nil {
		return nil, fmt.Errorf("ovs: client: %w", err)
	}
	if err := cl.Connect(ctx); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrNotRunning, c.opts.Endpoint, err)
	}
	rows := &rowWatches{}
	cl.Cache().AddEventHandler(&cache.EventHandlerFuncs{
		AddFunc: func(_ string, m model.Model) {
			rows.added(m)
			c.Kick()
		},
		DeleteFunc: func(string, model.Model) {
			rows.changed()
			c.Kick()
		},
		UpdateFunc: func(table string, old, new model.Model) {
			if table == vswitch.MirrorTable && onlyStatsChanged(old, new) {
				return
			}
			rows.changed()
			c.Kick()
		},
	})
	var (
		ovsRow vswitch.OpenvSwitch
		br     vswitch.Bridge
		port   vswitch.Port
		iface  vswitch.Interface
		mirror vswitch.Mirror
	)
	mon := cl.NewMonitor(
		client.WithTable(&ovsRow, &ovsRow.DpdkInitialized, &ovsRow.Bridges),
		client.WithTable(&br, &br.Name, &br.DatapathType, &br.Ports, &br.Mirrors),
		client.WithTable(&port, &port.Name, &port.Interfaces, &port.ExternalIDs),
		client.WithTable(&iface, &iface.Name, &iface.Type, &iface.Options, &iface.ExternalIDs,
			&iface.Ofport, &iface.AdminState, &iface.LinkState, &iface.Error),
		client.WithTable(&mirror),
	)
	if _, err := cl.Monitor(ctx, mon); err != nil {
		cl.Close()
		return nil, fmt.Errorf("%w: monitor %s: %v", ErrNotRunning, c.opts.Endpoint, err)
	}
	c.log.Info("connected to OVSDB", "endpoint", c.opts.Endpoint)
	return newSession(cl, rows), nil
}

// statelessMirror returns a copy of m without its statistics, or nil.
func statelessMirror(m *vswitch.Mirror) *vswitch.Mirror {
	if m == nil {
		return nil
	}
	c := *m
	c.Statistics = nil
	return &c
}

func onlyStatsChanged(old, new model.Model) bool {
	o, ok1 := old.(*vswitch.Mirror)
	n, ok2 := new.(*vswitch.Mirror)
	if !ok1 || !ok2 {
		return false
	}
	oc, nc := *o, *n
	oc.Statistics, nc.Statistics = nil, nil
	return reflect.DeepEqual(oc, nc)
}

// probe dials the endpoint once to turn the common failures into errors a
// person can act on.
func probe(ctx context.Context, endpoint string) error {
	network, address, err := splitEndpoint(endpoint)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidOptions, err)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, address)
	if err == nil {
		return conn.Close()
	}
	switch {
	case errors.Is(err, os.ErrPermission), errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return fmt.Errorf("%w: %s (run as root or join the openvswitch group)", ErrPermission, endpoint)
	case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%w: nothing listens on %s", ErrNotRunning, endpoint)
	}
	return fmt.Errorf("%w: %s: %v", ErrNotRunning, endpoint, err)
}

// Kick asks Run to reconcile soon. It never blocks.
func (c *Controller) Kick() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// Run keeps the controller connected and the database as declared until ctx
// ends or Close is called; it returns nil then. While OVSDB is unreachable it
// retries with exponential backoff between MinBackoff and MaxBackoff; after a
// reconnection everything desired is restored. Only one Run at a time.
func (c *Controller) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("ovs: Run already running")
	}
	defer c.running.Store(false)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-c.closeCh:
			cancel()
		case <-ctx.Done():
		}
	}()

	var wg sync.WaitGroup
	wg.Go(func() { c.reconcileLoop(ctx) })
	wg.Go(func() { c.purgeLoop(ctx) })
	defer wg.Wait()

	backoff := c.opts.MinBackoff
	hadSession := c.Connected()
	for ctx.Err() == nil {
		if !c.Connected() {
			if err := c.Connect(ctx); err != nil {
				if ctx.Err() != nil {
					break
				}
				c.log.Warn("OVSDB connection failed, retrying", "endpoint", c.opts.Endpoint, "backoff", backoff, "err", err)
				select {
				case <-ctx.Done():
				case <-time.After(backoff):
				}
				backoff = min(backoff*2, c.opts.MaxBackoff)
				continue
			}
			if hadSession {
				c.metrics.reconnects.Inc()
				c.log.Info("reconnected to OVSDB, restoring state", "endpoint", c.opts.Endpoint)
			}
			hadSession = true
			backoff = c.opts.MinBackoff
			c.Kick()
		}
		if s := c.waitDisconnect(ctx); s != nil && ctx.Err() == nil && c.sess.CompareAndSwap(s, nil) {
			c.log.Warn("lost OVSDB connection", "endpoint", c.opts.Endpoint)
			s.close()
		}
	}
	if s := c.sess.Swap(nil); s != nil {
		s.close()
	}
	return nil
}

// waitDisconnect returns when ctx ends or the session drops. Besides
// libovsdb's notification (which is dropped if nobody listens at that
// instant) it checks the connection every 100 ms and echoes the server every
// ResyncInterval, so a hung server is noticed too.
// It returns the session it watched.
func (c *Controller) waitDisconnect(ctx context.Context) *session {
	s := c.sess.Load()
	if s == nil {
		return nil
	}
	notify := s.client.DisconnectNotify()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	echo := time.NewTicker(c.opts.ResyncInterval)
	defer echo.Stop()
	for {
		select {
		case <-ctx.Done():
			return s
		case <-notify:
			return s
		case <-tick.C:
			if !s.alive() || c.sess.Load() != s {
				return s
			}
		case <-echo.C:
			ectx, cancel := c.opCtx(ctx, s)
			err := s.client.Echo(ectx)
			cancel()
			if err != nil && ctx.Err() == nil {
				c.log.Warn("OVSDB echo failed", "endpoint", c.opts.Endpoint, "err", err)
				return s
			}
		}
	}
}

func (c *Controller) reconcileLoop(ctx context.Context) {
	resync := time.NewTicker(c.opts.ResyncInterval)
	defer resync.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.kick:
		case <-resync.C:
		}
		if c.Connected() {
			c.reconcile(ctx)
		}
	}
}

// reconcile applies every desired spray port and mirror once.
func (c *Controller) reconcile(ctx context.Context) {
	c.metrics.reconciles.Inc()
	c.mu.Lock()
	specs := make([]MirrorSpec, 0, len(c.mu.desired))
	for _, k := range sortedKeys(c.mu.desired) {
		specs = append(specs, c.mu.desired[k])
	}
	bridges := sortedKeys(c.mu.sprayPorts)
	c.mu.Unlock()
	for _, br := range bridges {
		if _, _, err := c.ensureSprayPort(ctx, br, "reconcile"); err != nil && ctx.Err() == nil {
			c.metrics.errors.Inc()
			c.log.Warn("reconcile spray port failed", "bridge", br, "err", err)
		}
	}
	for _, spec := range specs {
		_, needPurge, err := c.ensureMirror(ctx, spec, "reconcile")
		if needPurge {
			c.requestPurge()
		}
		if err != nil && ctx.Err() == nil {
			c.metrics.errors.Inc()
			c.log.Warn("reconcile mirror failed", "bridge", spec.Bridge, "mirror", spec.Name, "err", err)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// EnsureMirror makes the mirror exist as spec says, creating the spray port
// it outputs to if missing, in one OVSDB transaction. It is idempotent. It
// never edits a mirror it did not create (ErrUnmanaged). After a change it
// purges the datapath flow caches (Options.Purge) so that traffic already
// flowing sees the new selection and snaplen at once.
//
// The spec is remembered and kept reconciled by Run unless the call fails
// for a lasting reason (a bad spec, a missing bridge or port, an unmanaged
// mirror of that name, a bridge with foreign OpenFlow rules); transient
// failures (no connection, ovs-vswitchd not reachable or not done creating
// the spray port) leave it to Run to finish.
func (c *Controller) EnsureMirror(ctx context.Context, spec MirrorSpec) (Result, error) {
	spec = spec.Normalize()
	if err := spec.Validate(); err != nil {
		return Result{}, err
	}
	if c.isClosed() {
		return Result{}, ErrClosed
	}
	res, needPurge, err := c.ensureMirror(ctx, spec, "requested")
	if needPurge {
		c.purge(ctx)
	}
	if err == nil || errors.Is(err, ErrNotConnected) || errors.Is(err, ErrNotApplied) || errors.Is(err, ErrVSwitchd) ||
		errors.Is(err, ErrSprayPortNotReady) {
		c.mu.Lock()
		c.mu.desired[spec.Key()] = spec
		c.mu.Unlock()
	}
	return res, err
}

// ensureMirror applies spec once. It reports whether the datapath flows must
// be purged; callers purge after releasing applyMu, so a slow ovs-vswitchd
// never holds up reconciliation.
func (c *Controller) ensureMirror(ctx context.Context, spec MirrorSpec, why string) (Result, bool, error) {
	c.applyMu.Lock()
	defer c.applyMu.Unlock()
	if why == "reconcile" {
		// RemoveMirror may have run since the spec list was taken; it
		// deletes the spec before it takes applyMu, so this check suffices.
		c.mu.Lock()
		_, still := c.mu.desired[spec.Key()]
		c.mu.Unlock()
		if !still {
			return Result{}, false, nil
		}
	}
	s := c.sess.Load()
	if s == nil {
		return Result{}, false, ErrNotConnected
	}
	ctx, cancel := c.opCtx(ctx, s)
	defer cancel()
	st, err := c.stateLocked(ctx, s, spec.Bridge)
	if err != nil {
		return Result{}, false, err
	}
	plan, err := mirrorspec.PlanMirror(st, spec)
	if err != nil {
		return Result{}, false, err
	}
	res := Result{Change: plan.Change, Reasons: plan.Reasons}
	existing := st.FindMirror(spec.Name)
	flowsInDB := existing != nil && existing.ExternalIDs[mirrorspec.ExternalIDFlows] != ""
	if !plan.Empty() {
		if len(spec.Flows) > 0 {
			// Refuse before writing anything if the rules cannot be installed.
			if _, err := c.checkFlowsLocked(ctx, spec.Bridge, flowCookie(spec.Key())); err != nil {
				return Result{}, false, fmt.Errorf("ensure mirror %s: %w", spec.Key(), err)
			}
		}
		c.prepareVhostDir(st, spec.OutputPort())
		w := s.rows.watch()
		defer w.close()
		inserted, err := c.transact(ctx, s, plan.Ops)
		if err != nil {
			return res, true, fmt.Errorf("ensure mirror %s: %w", spec.Key(), err)
		}
		c.metrics.changes.WithLabelValues(plan.Change.String()).Inc()
		c.log.Info("mirror changed", "bridge", spec.Bridge, "mirror", spec.Name, "change", plan.Change.String(),
			"why", why, "reasons", plan.Reasons)
		if c.afterCommit != nil {
			c.afterCommit()
		}
		// Wait until the cache shows the commit, so that nobody plans
		// against a cache without it (a created mirror would be created
		// twice): the rows it inserted were added to the cache, and the plan
		// is done or the row we planned against was replaced or changed by
		// someone else. Or until the cache shows that someone else overtook
		// the commit by deleting the mirror or its output port: then the
		// mirror must be restored, not waited for.
		pre := statelessMirror(existing)
		out := spec.OutputPort()
		overtaken := false
		err = c.waitFor(ctx, s, w, spec.Bridge, func(st *mirrorspec.State) bool {
			if !w.sawAdded(inserted) {
				return false
			}
			m := st.FindMirror(spec.Name)
			if _, ok := st.PortsByName[out]; !ok || m == nil {
				overtaken = true
				return true
			}
			if p, err := mirrorspec.PlanMirror(st, spec); err == nil && p.Empty() {
				return true
			}
			return pre == nil || !reflect.DeepEqual(pre, statelessMirror(m))
		})
		if err != nil {
			return res, true, fmt.Errorf("ensure mirror %s: %w", spec.Key(), err)
		}
		if overtaken {
			c.log.Info("mirror changed by someone else after commit, reconciling again", "bridge", spec.Bridge, "mirror", spec.Name)
			c.Kick()
		}
		if st, err = c.stateLocked(ctx, s, spec.Bridge); err != nil {
			return res, true, err
		}
	}
	if slices.ContainsFunc(plan.Reasons, func(r string) bool { return strings.HasPrefix(r, "spray port") }) {
		st = c.awaitOFPortLocked(ctx, s, spec.Bridge, spec.OutputPort(), st)
	}
	c.linkUpSpray(st, spec.OutputPort())
	flowsChanged, err := c.ensureFlowsLocked(ctx, st, spec, flowsInDB)
	if err != nil {
		return res, !plan.Empty(), fmt.Errorf("ensure mirror %s: %w", spec.Key(), err)
	}
	if flowsChanged && res.Change == Unchanged {
		res.Change = Updated
		res.Reasons = append(res.Reasons, "openflow selection reinstalled")
	}
	return res, !plan.Empty() || flowsChanged, nil
}

// RemoveMirror deletes the managed mirror name from bridge and stops
// reconciling it. The spray port stays. It returns ErrMirrorNotFound or
// ErrUnmanaged when there is nothing it may remove.
func (c *Controller) RemoveMirror(ctx context.Context, bridge, name string) (Result, error) {
	if c.isClosed() {
		return Result{}, ErrClosed
	}
	key := MirrorSpec{Bridge: bridge, Name: name}.Key()
	c.mu.Lock()
	delete(c.mu.desired, key)
	c.mu.Unlock()
	res, err := c.removeMirror(ctx, bridge, name)
	if err == nil {
		c.purge(ctx)
	}
	return res, err
}

func (c *Controller) removeMirror(ctx context.Context, bridge, name string) (Result, error) {
	key := MirrorSpec{Bridge: bridge, Name: name}.Key()
	c.applyMu.Lock()
	defer c.applyMu.Unlock()
	s := c.sess.Load()
	if s == nil {
		return Result{}, ErrNotConnected
	}
	ctx, cancel := c.opCtx(ctx, s)
	defer cancel()
	st, err := c.stateLocked(ctx, s, bridge)
	if err != nil {
		return Result{}, err
	}
	plan, err := mirrorspec.PlanRemoveMirror(st, name)
	if err != nil {
		return Result{}, err
	}
	removed := st.FindMirror(name)
	flowsInDB := removed.ExternalIDs[mirrorspec.ExternalIDFlows] != ""
	if err := c.removeFlowsLocked(ctx, bridge, key, flowsInDB); err != nil {
		c.log.Warn("removing openflow selection failed", "bridge", bridge, "mirror", name, "err", err)
	}
	if _, err := c.transact(ctx, s, plan.Ops); err != nil {
		return Result{}, fmt.Errorf("remove mirror %s: %w", key, err)
	}
	c.metrics.changes.WithLabelValues(plan.Change.String()).Inc()
	c.log.Info("mirror changed", "bridge", bridge, "mirror", name, "change", plan.Change.String(), "why", "requested")
	// Wait for the row we deleted to go, not for the name: someone may
	// already have created another mirror of that name.
	if err := c.waitFor(ctx, s, nil, bridge, func(st *mirrorspec.State) bool { _, ok := st.Mirrors[removed.UUID]; return !ok }); err != nil {
		return Result{}, fmt.Errorf("remove mirror %s: %w", key, err)
	}
	return Result{Change: plan.Change, Reasons: plan.Reasons}, nil
}

// EnsureSprayPort makes the bridge's default spray port (DefaultSprayPortName)
// exist and keeps it: on a netdev bridge with DPDK initialized a
// dpdkvhostuserclient interface whose vhost-server-path is
// <VhostDir>/<port>.sock (the spray process is the vhost-user server),
// otherwise an internal port (a tap device on netdev bridges) that the
// controller brings up. An existing port of that name that Confluo-Go did not
// create is used as it is.
func (c *Controller) EnsureSprayPort(ctx context.Context, bridge string) (SprayPortStatus, Result, error) {
	if c.isClosed() {
		return SprayPortStatus{}, Result{}, ErrClosed
	}
	status, res, err := c.ensureSprayPort(ctx, bridge, "requested")
	if err == nil || errors.Is(err, ErrNotConnected) || errors.Is(err, ErrNotApplied) {
		c.mu.Lock()
		c.mu.sprayPorts[bridge] = true
		c.mu.Unlock()
	}
	return status, res, err
}

// RemoveSprayPort deletes the bridge's managed default spray port and stops
// keeping it. Mirrors that output to it stop mirroring.
func (c *Controller) RemoveSprayPort(ctx context.Context, bridge string) error {
	c.mu.Lock()
	delete(c.mu.sprayPorts, bridge)
	c.mu.Unlock()
	c.applyMu.Lock()
	defer c.applyMu.Unlock()
	s := c.sess.Load()
	if s == nil {
		return ErrNotConnected
	}
	ctx, cancel := c.opCtx(ctx, s)
	defer cancel()
	st, err := c.stateLocked(ctx, s, bridge)
	if err != nil {
		return err
	}
	name := DefaultSprayPortName(bridge)
	port, ok := st.PortsByName[name]
	if !ok {
		return fmt.Errorf("%w: spray port %q on bridge %q", ErrPortNotFound, name, bridge)
	}
	if !mirrorspec.IsManaged(port.ExternalIDs) {
		return fmt.Errorf("%w: port %q on bridge %q", ErrUnmanaged, name, bridge)
	}
	ops := []ovsdb.Operation{{
		Op:        ovsdb.OperationMutate,
		Table:     vswitch.BridgeTable,
		Where:     []ovsdb.Condition{ovsdb.NewCondition("_uuid", ovsdb.ConditionEqual, ovsdb.UUID{GoUUID: st.Bridge.UUID})},
		Mutations: []ovsdb.Mutation{{Column: "ports", Mutator: ovsdb.MutateOperationDelete, Value: ovsdb.OvsSet{GoSet: []any{ovsdb.UUID{GoUUID: port.UUID}}}}},
	}}
	if _, err := c.transact(ctx, s, ops); err != nil {
		return fmt.Errorf("remove spray port %s/%s: %w", bridge, name, err)
	}
	c.log.Info("spray port changed", "bridge", bridge, "port", name, "change", "removed", "why", "requested")
	// Wait for the row we removed to go, not for the name (see removeMirror).
	return c.waitFor(ctx, s, nil, bridge, func(st *mirrorspec.State) bool {
		p, ok := st.PortsByName[name]
		return !ok || p.UUID != port.UUID
	})
}

func (c *Controller) ensureSprayPort(ctx context.Context, bridge, why string) (SprayPortStatus, Result, error) {
	c.applyMu.Lock()
	defer c.applyMu.Unlock()
	s := c.sess.Load()
	if s == nil {
		return SprayPortStatus{}, Result{}, ErrNotConnected
	}
	ctx, cancel := c.opCtx(ctx, s)
	defer cancel()
	st, err := c.stateLocked(ctx, s, bridge)
	if err != nil {
		return SprayPortStatus{}, Result{}, err
	}
	name := DefaultSprayPortName(bridge)
	plan, _, err := mirrorspec.PlanSprayPort(st, name)
	if err != nil {
		return SprayPortStatus{}, Result{}, err
	}
	res := Result{Change: plan.Change, Reasons: plan.Reasons}
	if !plan.Empty() {
		c.prepareVhostDir(st, name)
		w := s.rows.watch()
		defer w.close()
		inserted, err := c.transact(ctx, s, plan.Ops)
		if err != nil {
			return SprayPortStatus{}, res, fmt.Errorf("ensure spray port %s/%s: %w", bridge, name, err)
		}
		c.metrics.changes.WithLabelValues(plan.Change.String()).Inc()
		c.log.Info("spray port changed", "bridge", bridge, "port", name, "change", plan.Change.String(),
			"why", why, "reasons", plan.Reasons)
		// As in ensureMirror: the inserted rows reached the cache and the
		// plan is done, or someone else deleted the port since.
		prev := st.PortsByName[name]
		overtaken := false
		err = c.waitFor(ctx, s, w, bridge, func(st *mirrorspec.State) bool {
			if !w.sawAdded(inserted) {
				return false
			}
			p, ok := st.PortsByName[name]
			switch {
			case !ok:
				overtaken = true
				return true
			case len(inserted) > 0: // a new port: its rows are in the cache
				return true
			case prev != nil && p.UUID != prev.UUID: // replaced by someone else
				return true
			}
			plan, _, err := mirrorspec.PlanSprayPort(st, name)
			return err == nil && plan.Empty()
		})
		if err != nil {
			return SprayPortStatus{}, res, fmt.Errorf("ensure spray port %s/%s: %w", bridge, name, err)
		}
		if overtaken {
			c.log.Info("spray port changed by someone else after commit, reconciling again", "bridge", bridge, "port", name)
			c.Kick()
		}
		if st, err = c.stateLocked(ctx, s, bridge); err != nil {
			return SprayPortStatus{}, res, err
		}
	}
	if !plan.Empty() {
		st = c.awaitOFPortLocked(ctx, s, bridge, name, st)
	}
	c.linkUpSpray(st, name)
	return sprayStatus(st, name), res, nil
}

// transact sends ops as one transaction and joins per-operation errors,
// each naming its operation. It returns the UUIDs of the rows the
// transaction inserted.
func (c *Controller) transact(ctx context.Context, s *session, ops []ovsdb.Operation) ([]string, error) {
	ctx, cancel := c.callCtx(ctx)
	defer cancel()
	if !s.alive() {
		return nil, ErrNotConnected
	}
	results, err := s.client.Transact(ctx, ops...)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTransaction, err)
	}
	opErrs, err := ovsdb.CheckOperationResults(results, ops)
	if err == nil {
		var inserted []string
		for i, op := range ops {
			if op.Op == ovsdb.OperationInsert && i < len(results) {
				inserted = append(inserted, results[i].UUID.GoUUID)
			}
		}
		return inserted, nil
	}
	errs := make([]error, 0, len(opErrs))
	for _, oe := range opErrs {
		errs = append(errs, fmt.Errorf("%s: %w", mirrorspec.FormatOp(*oe.Operation()), oe))
	}
	if len(errs) == 0 {
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("%w: %w", ErrTransaction, errors.Join(errs...))
}

// waitFor looks at the cache until cond holds for the bridge's state: every
// 5 ms, and at once when w (if not nil) reports a cache event.
//
// A cond that waits for a commit to become visible must also hold once the
// commit has been overtaken (the cache shows a later change, such as someone
// deleting the row the commit created), or it waits out CallTimeout while the
// desired state stays broken; w tells an overtaken insert from one the cache
// has not applied yet.
func (c *Controller) waitFor(ctx context.Context, s *session, w *rowWatch, bridge string, cond func(*mirrorspec.State) bool) error {
	ctx, cancel := c.callCtx(ctx)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	var wake <-chan struct{}
	if w != nil {
		wake = w.wake
	}
	for {
		st, err := c.stateLocked(ctx, s, bridge)
		if err == nil && cond(st) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %v", ErrNotApplied, ctx.Err())
		case <-tick.C:
		case <-wake:
		}
	}
}

// stateLocked builds the planner's view of one bridge from the cache.
func (c *Controller) stateLocked(ctx context.Context, s *session, bridge string) (*mirrorspec.State, error) {
	cl := s.client
	st := &mirrorspec.State{
		PortsByName: map[string]*vswitch.Port{},
		Interfaces:  map[string]*vswitch.Interface{},
		Mirrors:     map[string]*vswitch.Mirror{},
		VhostDir:    c.opts.VhostDir,
	}
	var roots []vswitch.OpenvSwitch
	if err := cl.List(ctx, &roots); err != nil {
		return nil, fmt.Errorf("ovs: list Open_vSwitch: %w", err)
	}
	for _, r := range roots {
		st.DPDKInitialized = st.DPDKInitialized || r.DpdkInitialized
	}
	var bridges []vswitch.Bridge
	err := cl.WhereCache(func(b *vswitch.Bridge) bool { return b.Name == bridge }).List(ctx, &bridges)
	if err != nil {
		return nil, fmt.Errorf("ovs: list bridges: %w", err)
	}
	if len(bridges) == 0 {
		return nil, fmt.Errorf("%w: %q", ErrBridgeNotFound, bridge)
	}
	st.Bridge = &bridges[0]
	for _, uuid := range st.Bridge.Ports {
		p := &vswitch.Port{UUID: uuid}
		if err := cl.Get(ctx, p); err != nil {
			continue // not in the cache yet
		}
		st.PortsByName[p.Name] = p
		for _, ifUUID := range p.Interfaces {
			iface := &vswitch.Interface{UUID: ifUUID}
			if err := cl.Get(ctx, iface); err == nil {
				st.Interfaces[ifUUID] = iface
			}
		}
	}
	for _, uuid := range st.Bridge.Mirrors {
		m := &vswitch.Mirror{UUID: uuid}
		if err := cl.Get(ctx, m); err == nil {
			st.Mirrors[uuid] = m
		}
	}
	return st, nil
}

// ListMirrors returns every mirror on every bridge, managed or not, with its
// statistics and its output port's status, sorted by bridge and name.
func (c *Controller) ListMirrors(ctx context.Context) ([]MirrorStatus, error) {
	s := c.sess.Load()
	if s == nil {
		return nil, ErrNotConnected
	}
	ctx, cancel := c.opCtx(ctx, s)
	defer cancel()
	var bridges []vswitch.Bridge
	if err := s.client.List(ctx, &bridges); err != nil {
		return nil, fmt.Errorf("ovs: list bridges: %w", err)
	}
	slices.SortFunc(bridges, func(a, b vswitch.Bridge) int { return compareStrings(a.Name, b.Name) })
	c.mu.Lock()
	desired := make(map[string]bool, len(c.mu.desired))
	for k := range c.mu.desired {
		desired[k] = true
	}
	c.mu.Unlock()
	var out []MirrorStatus
	for _, br := range bridges {
		st, err := c.stateLocked(ctx, s, br.Name)
		if err != nil {
			return nil, err
		}
		for _, uuid := range sortedKeys(st.Mirrors) {
			m := st.Mirrors[uuid]
			spec := mirrorspec.SpecFromMirror(st, m)
			ms := MirrorStatus{
				Spec:      spec,
				UUID:      m.UUID,
				Managed:   mirrorspec.IsManaged(m.ExternalIDs),
				Desired:   desired[spec.Key()],
				TxPackets: -1,
				TxBytes:   -1,
			}
			if v, ok := m.Statistics["tx_packets"]; ok {
				ms.TxPackets = int64(v)
			}
			if v, ok := m.Statistics["tx_bytes"]; ok {
				ms.TxBytes = int64(v)
			}
			if spec.Output != "" {
				ms.Spray = sprayStatus(st, spec.Output)
			}
			out = append(out, ms)
		}
	}
	slices.SortStableFunc(out, func(a, b MirrorStatus) int {
		if c := compareStrings(a.Spec.Bridge, b.Spec.Bridge); c != 0 {
			return c
		}
		return compareStrings(a.Spec.Name, b.Spec.Name)
	})
	return out, nil
}

// MirrorStatus returns one mirror's status, or ErrMirrorNotFound.
func (c *Controller) MirrorStatus(ctx context.Context, bridge, name string) (MirrorStatus, error) {
	all, err := c.ListMirrors(ctx)
	if err != nil {
		return MirrorStatus{}, err
	}
	found := false
	for _, m := range all {
		if m.Spec.Bridge == bridge {
			found = true
			if m.Spec.Name == name {
				return m, nil
			}
		}
	}
	if !found {
		// Distinguish a missing bridge from a missing mirror.
		s := c.sess.Load()
		if s == nil {
			return MirrorStatus{}, ErrNotConnected
		}
		ctx, cancel := c.opCtx(ctx, s)
		defer cancel()
		if _, err := c.stateLocked(ctx, s, bridge); err != nil {
			return MirrorStatus{}, err
		}
	}
	return MirrorStatus{}, fmt.Errorf("%w: %q on bridge %q", ErrMirrorNotFound, name, bridge)
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func sprayStatus(st *mirrorspec.State, name string) SprayPortStatus {
	out := SprayPortStatus{Name: name}
	if st.Bridge != nil {
		out.Bridge = st.Bridge.Name
	}
	port, ok := st.PortsByName[name]
	if !ok {
		out.Error = "port not on bridge"
		return out
	}
	out.Managed = mirrorspec.IsManaged(port.ExternalIDs)
	for _, ifUUID := range port.Interfaces {
		iface, ok := st.Interfaces[ifUUID]
		if !ok {
			continue
		}
		out.Type = iface.Type
		if out.Type == "" {
			out.Type = "system"
		}
		if iface.Ofport != nil {
			out.OFPort = *iface.Ofport
		}
		if iface.AdminState != nil {
			out.AdminState = *iface.AdminState
		}
		if iface.LinkState != nil {
			out.LinkState = *iface.LinkState
		}
		if iface.Error != nil {
			out.Error = *iface.Error
		}
		out.VhostServerPath = iface.Options[mirrorspec.OptionVhostSrv]
		break
	}
	return out
}

// linkUpSpray brings a managed internal spray port's kernel device up, since
// ovs-vswitchd creates it down. Errors are logged: the device may not exist
// yet, and the next reconciliation (triggered by the Interface row update)
// retries.
func (c *Controller) linkUpSpray(st *mirrorspec.State, name string) {
	status := sprayStatus(st, name)
	if !status.Managed || status.Type != mirrorspec.TypeInternal || status.OFPort <= 0 {
		return
	}
	changed, err := setLinkUp(c.opts.VSwitchdNetNS, name)
	if err != nil {
		c.log.Debug("spray port not up yet", "port", name, "err", err)
		return
	}
	if changed {
		c.log.Info("spray port changed", "bridge", status.Bridge, "port", name, "change", "link up", "why", "internal ports start down")
	}
}

// awaitOFPortLocked gives ovs-vswitchd up to 2 s (bounded by CallTimeout) to
// create a new spray port, so that it can be brought up and used for flows
// in the same call. It returns the latest state; a timeout is not an error
// (ovs-vswitchd may be down, and Run retries when the row changes).
func (c *Controller) awaitOFPortLocked(ctx context.Context, s *session, bridge, port string, st *mirrorspec.State) *mirrorspec.State {
	ctx, cancel := context.WithTimeout(ctx, min(2*time.Second, c.opts.CallTimeout))
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if sprayStatus(st, port).OFPort != 0 {
			return st
		}
		select {
		case <-ctx.Done():
			return st
		case <-tick.C:
		}
		if next, err := c.stateLocked(ctx, s, bridge); err == nil {
			st = next
		}
	}
}

// prepareVhostDir creates VhostDir when the spray port will be a vhost-user
// client, so the spray process can create its server socket there.
func (c *Controller) prepareVhostDir(st *mirrorspec.State, port string) {
	if typ, _ := st.SprayInterface(port); typ != mirrorspec.TypeVhostUser {
		return
	}
	if _, ok := st.PortsByName[port]; ok {
		return
	}
	if err := os.MkdirAll(c.opts.VhostDir, 0o755); err != nil {
		c.log.Warn("cannot create vhost socket directory", "dir", c.opts.VhostDir, "err", err)
	}
}

// requestPurge asks purgeLoop (running under Run) for a purge. It never blocks.
func (c *Controller) requestPurge() {
	select {
	case c.purgeCh <- struct{}{}:
	default:
	}
}

// purgeLoop runs the purges reconciliation asks for, one at a time, so a slow
// or absent ovs-vswitchd never delays restoring OVSDB state.
func (c *Controller) purgeLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.purgeCh:
			c.purge(ctx)
		}
	}
}
