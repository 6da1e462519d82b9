package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/confluo-go/confluo/pkg/wire"
)

const keyCurrentRollout = "rollout.current"

// saveEvery throttles rollout-state writes while acks stream in.
const saveEvery = 200 * time.Millisecond

// PutConfig stores cfg as a new revision and returns it with its revision number.
func (c *Coordinator) PutConfig(ctx context.Context, cfg wire.FleetConfig) (*wire.FleetConfig, error) {
	if err := validateConfig(&cfg); err != nil {
		return nil, err
	}
	rev, err := c.nextCounter(ctx, "revision")
	if err != nil {
		return nil, wire.Wrap(wire.CodeInternal, err)
	}
	cfg.Revision, cfg.Created = rev, time.Now().UTC()
	if err := c.putJSON(ctx, configKey(rev), cfg); err != nil {
		return nil, wire.Wrap(wire.CodeInternal, fmt.Errorf("coordinator: store config %d: %w", rev, err))
	}
	c.log.Info("config stored", "revision", rev)
	return &cfg, nil
}

// validateConfig checks what the coordinator can check without a host: names and tokens.
func validateConfig(cfg *wire.FleetConfig) error {
	for name, text := range cfg.Schemas {
		if err := wire.ValidateToken("multilog", name); err != nil {
			return wire.Wrap(wire.CodeInvalidArgument, err)
		}
		if text == "" {
			return wire.Errorf(wire.CodeInvalidArgument, "schema of multilog %s is empty", name)
		}
	}
	for i, f := range cfg.Filters {
		if err := wire.ValidateToken(fmt.Sprintf("filters[%d].name", i), f.Name); err != nil {
			return wire.Wrap(wire.CodeInvalidArgument, err)
		}
	}
	for i, a := range cfg.Aggregates {
		if err := wire.ValidateToken(fmt.Sprintf("aggregates[%d].name", i), a.Name); err != nil {
			return wire.Wrap(wire.CodeInvalidArgument, err)
		}
	}
	for i, t := range cfg.Triggers {
		if err := wire.ValidateToken(fmt.Sprintf("triggers[%d].name", i), t.Name); err != nil {
			return wire.Wrap(wire.CodeInvalidArgument, err)
		}
	}
	for i, m := range cfg.Mirrors {
		if !json.Valid(m) {
			return wire.Errorf(wire.CodeInvalidArgument, "mirrors[%d] is not valid JSON", i)
		}
	}
	return nil
}

func configKey(rev uint64) string { return "config." + strconv.FormatUint(rev, 10) }

// GetConfig returns a stored revision; 0 means the latest.
func (c *Coordinator) GetConfig(ctx context.Context, rev uint64) (*wire.FleetConfig, error) {
	if rev == 0 {
		latest, err := c.counter(ctx, "revision")
		if err != nil {
			return nil, wire.Wrap(wire.CodeInternal, err)
		}
		if latest == 0 {
			return nil, wire.Errorf(wire.CodeNotFound, "no config stored yet")
		}
		rev = latest
	}
	var cfg wire.FleetConfig
	if _, err := c.getJSON(ctx, configKey(rev), &cfg); err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, wire.Errorf(wire.CodeNotFound, "config revision %d does not exist", rev)
		}
		return nil, wire.Wrap(wire.CodeInternal, err)
	}
	return &cfg, nil
}

// StartRollout starts rolling a revision out and returns its initial state; the rollout runs in
// the background (watch it with Rollout or Status). Only one rollout runs at a time.
func (c *Coordinator) StartRollout(ctx context.Context, req wire.RolloutRequest) (*wire.RolloutState, error) {
	if c.kv == nil {
		return nil, ErrNotRunning
	}
	if req.Config != nil {
		if req.Revision != 0 {
			return nil, wire.Errorf(wire.CodeInvalidArgument, "give either revision or config, not both")
		}
		cfg, err := c.PutConfig(ctx, *req.Config)
		if err != nil {
			return nil, err
		}
		req.Revision = cfg.Revision
	}
	if req.Revision == 0 {
		return nil, wire.Errorf(wire.CodeInvalidArgument, "rollout needs a revision or a config")
	}
	if _, err := c.GetConfig(ctx, req.Revision); err != nil {
		return nil, err
	}
	waves := req.Waves
	if len(waves) == 0 {
		waves = c.opts.Waves
	}
	if err := validateWaves(waves); err != nil {
		return nil, wire.Errorf(wire.CodeInvalidArgument, "waves: %v", err)
	}
	if req.MaxFailureRatio < 0 || req.MaxFailureRatio > 1 {
		return nil, wire.Errorf(wire.CodeInvalidArgument, "max_failure_ratio %v not in [0, 1]", req.MaxFailureRatio)
	}
	if req.AckTimeoutMillis < 0 {
		return nil, wire.Errorf(wire.CodeInvalidArgument, "ack_timeout_ms %d is negative", req.AckTimeoutMillis)
	}
	hosts := c.reg.selectUp(req.Selector, time.Now())
	if len(hosts) == 0 {
		return nil, wire.Errorf(wire.CodeNotFound, "no host that is up matches selector %v", req.Selector)
	}
	if cur := c.Rollout(); cur != nil && cur.State == wire.RolloutRunning {
		return nil, wire.Errorf(wire.CodeBusy, "rollout %s is still running (roll it back or wait)", cur.ID)
	}
	st := &wire.RolloutState{
		Kind: "rollout", Revision: req.Revision, Selector: req.Selector, MaxFailureRatio: req.MaxFailureRatio,
		AckTimeoutMS: req.AckTimeoutMillis, State: wire.RolloutRunning,
	}
	if st.AckTimeoutMS == 0 {
		st.AckTimeoutMS = c.opts.AckTimeout.Milliseconds()
	}
	prev := 0
	for _, pct := range waves {
		n := (pct*len(hosts) + 99) / 100
		if n <= prev {
			continue
		}
		w := wire.Wave{Percent: pct}
		for _, h := range hosts[prev:n] {
			w.Hosts = append(w.Hosts, wire.HostResult{Host: h, Target: req.Revision, Previous: c.assignedOf(h)})
		}
		st.Waves = append(st.Waves, w)
		prev = n
	}
	return c.launch(ctx, st)
}

// Rollback returns the hosts of a rollout (default: the latest rollout that is not a rollback) to
// the revisions they were assigned before it, in one wave. A running rollout is stopped first.
func (c *Coordinator) Rollback(ctx context.Context, req wire.RollbackRequest) (*wire.RolloutState, error) {
	if c.kv == nil {
		return nil, ErrNotRunning
	}
	c.stopRollout()
	var orig wire.RolloutState
	if req.Rollout == "" {
		hist, err := c.rollouts(ctx, 0)
		if err != nil {
			return nil, err
		}
		for _, r := range hist {
			if r.Kind == "rollout" {
				orig = r
				break
			}
		}
		if orig.ID == "" {
			return nil, wire.Errorf(wire.CodeNotFound, "no rollout to roll back")
		}
	} else if _, err := c.getJSON(ctx, "rollout."+req.Rollout, &orig); err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, wire.Errorf(wire.CodeNotFound, "rollout %s does not exist", req.Rollout)
		}
		return nil, wire.Wrap(wire.CodeInternal, err)
	}
	if orig.State == wire.RolloutRunning {
		orig.State, orig.Reason, orig.Updated = wire.RolloutSuperseded, "rolled back", time.Now().UTC()
		if err := c.putJSON(ctx, "rollout."+orig.ID, orig); err != nil {
			return nil, wire.Wrap(wire.CodeInternal, err)
		}
	}
	st := &wire.RolloutState{
		Kind: "rollback", RollbackOf: orig.ID, Revision: 0, Selector: orig.Selector, State: wire.RolloutRunning,
		MaxFailureRatio: 1, AckTimeoutMS: req.AckTimeoutMillis,
	}
	if st.AckTimeoutMS <= 0 {
		st.AckTimeoutMS = c.opts.AckTimeout.Milliseconds()
	}
	w := wire.Wave{Percent: 100}
	skipped := 0
	for i, wave := range orig.Waves {
		if i > orig.CurrentWave || wave.Started.IsZero() {
			break
		}
		for _, h := range wave.Hosts {
			if h.Previous == 0 {
				skipped++ // nothing to return to
				continue
			}
			w.Hosts = append(w.Hosts, wire.HostResult{Host: h.Host, Target: h.Previous, Previous: h.Target})
		}
	}
	if len(w.Hosts) == 0 {
		return nil, wire.Errorf(wire.CodeNotFound, "rollout %s assigned no host that had a previous revision", orig.ID)
	}
	if skipped > 0 {
		st.Reason = fmt.Sprintf("%d hosts had no previous revision and keep theirs", skipped)
	}
	st.Waves = []wire.Wave{w}
	return c.launch(ctx, st)
}

// launch assigns an id, stores the state as current and starts running it.
func (c *Coordinator) launch(ctx context.Context, st *wire.RolloutState) (*wire.RolloutState, error) {
	n, err := c.nextCounter(ctx, "rollout")
	if err != nil {
		return nil, wire.Wrap(wire.CodeInternal, err)
	}
	st.ID = fmt.Sprintf("r%d", n)
	st.Created = time.Now().UTC()
	st.Updated = st.Created
	if err := c.save(ctx, st); err != nil {
		return nil, wire.Wrap(wire.CodeInternal, err)
	}
	if _, err := c.kv.PutString(ctx, keyCurrentRollout, st.ID); err != nil {
		return nil, wire.Wrap(wire.CodeInternal, err)
	}
	out := cloneState(st)
	c.start(st)
	c.log.Info("rollout started", "id", st.ID, "kind", st.Kind, "revision", st.Revision, "waves", len(st.Waves))
	return out, nil
}

func cloneState(st *wire.RolloutState) *wire.RolloutState {
	b, _ := json.Marshal(st)
	var out wire.RolloutState
	_ = json.Unmarshal(b, &out)
	return &out
}

// save stores st under rollout.<id> and keeps a copy for readers.
func (c *Coordinator) save(ctx context.Context, st *wire.RolloutState) error {
	st.Updated = time.Now().UTC()
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.mu.rollout = b
	c.mu.Unlock()
	if _, err := c.kv.Put(ctx, "rollout."+st.ID, b); err != nil {
		return fmt.Errorf("coordinator: save rollout %s: %w", st.ID, err)
	}
	return nil
}

// Rollout returns the latest rollout this coordinator knows (running or finished), or nil.
func (c *Coordinator) Rollout() *wire.RolloutState {
	c.mu.Lock()
	b := c.mu.rollout
	c.mu.Unlock()
	if b == nil {
		return nil
	}
	var st wire.RolloutState
	if json.Unmarshal(b, &st) != nil {
		return nil
	}
	return &st
}

// start runs st in the background under Run's context.
func (c *Coordinator) start(st *wire.RolloutState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.stopped {
		return // Run is returning: the next coordinator resumes this rollout from the bucket
	}
	parent := c.mu.runCtx
	if parent == nil {
		parent = context.Background()
	}
	ctx, cancel := context.WithCancel(parent)
	done := make(chan struct{})
	acks := make(chan wire.ConfigAck, 16384)
	c.mu.rolloutID, c.mu.cancel, c.mu.done, c.mu.acks = st.ID, cancel, done, acks
	c.wg.Go(func() {
		defer close(done)
		defer cancel()
		c.runRollout(ctx, st, acks)
		c.mu.Lock()
		if c.mu.rolloutID == st.ID {
			c.mu.rolloutID, c.mu.cancel, c.mu.acks = "", nil, nil
		}
		c.mu.Unlock()
	})
}

// stopRollout stops the rollout running in this process (its state stays "running" in the
// bucket, so the next coordinator resumes it) and waits for it.
func (c *Coordinator) stopRollout() {
	c.mu.Lock()
	cancel, done := c.mu.cancel, c.mu.done
	c.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// resume continues the rollout named by rollout.current if it is still running.
func (c *Coordinator) resume(ctx context.Context) error {
	e, err := c.kv.Get(ctx, keyCurrentRollout)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	id := string(e.Value())
	if id == "" {
		// Nothing running: show the latest rollout in status.
		if rs, err := c.rollouts(ctx, 1); err == nil && len(rs) == 1 {
			b, _ := json.Marshal(rs[0])
			c.mu.Lock()
			c.mu.rollout = b
			c.mu.Unlock()
		}
		return nil
	}
	var st wire.RolloutState
	if _, err := c.getJSON(ctx, "rollout."+id, &st); err != nil {
		return err
	}
	b, _ := json.Marshal(st)
	c.mu.Lock()
	c.mu.rollout = b
	c.mu.Unlock()
	if st.State != wire.RolloutRunning {
		return nil
	}
	c.log.Info("resuming rollout", "id", id, "wave", st.CurrentWave)
	c.start(&st)
	return nil
}

// runRollout drives st wave by wave until done, halted, or ctx is cancelled.
func (c *Coordinator) runRollout(ctx context.Context, st *wire.RolloutState, acks <-chan wire.ConfigAck) {
	timeout := time.Duration(st.AckTimeoutMS) * time.Millisecond
	for st.CurrentWave < len(st.Waves) {
		w := &st.Waves[st.CurrentWave]
		if w.Started.IsZero() {
			w.Started = time.Now().UTC()
		}
		pending := map[string]int{} // host -> index in w.Hosts
		for i, h := range w.Hosts {
			if !h.Acked && h.Error == nil {
				pending[h.Host] = i
			}
		}
		if err := c.save(ctx, st); err != nil && ctx.Err() == nil {
			c.log.Error("save rollout", "err", err)
		}
		if err := c.assign(ctx, st.ID, w, pending); err != nil {
			if ctx.Err() != nil {
				return
			}
			c.log.Error("assign wave", "id", st.ID, "err", err)
		}
		deadline := time.NewTimer(timeout)
		downCheck := time.NewTicker(c.opts.HeartbeatInterval)
		lastSave := time.Now()
	gather:
		for len(pending) > 0 {
			select {
			case <-downCheck.C:
				// A host marked down fails now instead of at the ack timeout.
				now := time.Now()
				for h, i := range pending {
					if c.reg.isDown(h, now) {
						delete(pending, h)
						w.Hosts[i].Error = wire.Errorf(wire.CodeUnavailable, "host %s went down (missed %d heartbeats) before acking revision %d",
							h, c.opts.MissedHeartbeats, w.Hosts[i].Target)
						w.Hosts[i].At = now.UTC()
					}
				}
			case <-ctx.Done():
				deadline.Stop()
				downCheck.Stop()
				_ = c.save(context.Background(), st) // keep the acks gathered so far
				return
			case <-deadline.C:
				break gather
			case a := <-acks:
				i, ok := pending[a.Host]
				if !ok || a.Rollout != st.ID || a.Revision != w.Hosts[i].Target {
					continue
				}
				delete(pending, a.Host)
				w.Hosts[i].At = time.Now().UTC()
				if a.Error != nil {
					w.Hosts[i].Error = a.Error
				} else {
					w.Hosts[i].Acked = true
				}
				if time.Since(lastSave) > saveEvery {
					_ = c.save(ctx, st)
					lastSave = time.Now()
				}
			}
		}
		deadline.Stop()
		downCheck.Stop()
		for h, i := range pending {
			w.Hosts[i].Error = wire.Errorf(wire.CodeTimeout, "host %s did not ack revision %d within %v", h, w.Hosts[i].Target, timeout)
			w.Hosts[i].At = time.Now().UTC()
		}
		w.Failed = 0
		for _, h := range w.Hosts {
			if !h.Acked {
				w.Failed++
			}
		}
		w.Finished = time.Now().UTC()
		if ratio := float64(w.Failed) / float64(len(w.Hosts)); w.Failed > 0 && ratio > st.MaxFailureRatio {
			st.State = wire.RolloutHalted
			st.Reason = fmt.Sprintf("wave %d: %d of %d hosts failed (%.0f%% > %.0f%%)", st.CurrentWave+1, w.Failed,
				len(w.Hosts), ratio*100, st.MaxFailureRatio*100)
			c.finish(ctx, st)
			c.log.Warn("rollout halted", "id", st.ID, "reason", st.Reason)
			return
		}
		st.CurrentWave++
	}
	st.State = wire.RolloutDone
	c.finish(ctx, st)
	c.log.Info("rollout done", "id", st.ID)
}

func (c *Coordinator) finish(ctx context.Context, st *wire.RolloutState) {
	if err := c.save(ctx, st); err != nil {
		c.log.Error("save rollout", "err", err)
	}
	if _, err := c.kv.PutString(ctx, keyCurrentRollout, ""); err != nil {
		c.log.Error("clear current rollout", "err", err)
	}
}

// assign writes host.<host> for every pending host of the wave, 32 at a time.
func (c *Coordinator) assign(ctx context.Context, id string, w *wire.Wave, pending map[string]int) error {
	type job struct {
		host string
		rev  uint64
	}
	jobs := make(chan job)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for range min(32, max(len(pending), 1)) {
		wg.Go(func() {
			for j := range jobs {
				as := wire.Assignment{Revision: j.rev, Rollout: id, Assigned: time.Now().UTC()}
				if err := c.putJSON(ctx, "host."+j.host, as); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("host %s: %w", j.host, err))
					mu.Unlock()
					continue
				}
				c.mu.Lock()
				c.mu.assigned[j.host] = j.rev
				c.mu.Unlock()
			}
		})
	}
	hosts := make([]string, 0, len(pending))
	for h := range pending {
		hosts = append(hosts, h)
	}
	slices.Sort(hosts)
	for _, h := range hosts {
		select {
		case jobs <- job{h, w.Hosts[pending[h]].Target}:
		case <-ctx.Done():
		}
	}
	close(jobs)
	wg.Wait()
	return errors.Join(errs...)
}

// rollouts lists stored rollouts, newest first (limit 0: all).
func (c *Coordinator) rollouts(ctx context.Context, limit int) ([]wire.RolloutState, error) {
	n, err := c.counter(ctx, "rollout")
	if err != nil {
		return nil, wire.Wrap(wire.CodeInternal, err)
	}
	var out []wire.RolloutState
	for i := n; i >= 1 && (limit == 0 || len(out) < limit); i-- {
		var st wire.RolloutState
		if _, err := c.getJSON(ctx, fmt.Sprintf("rollout.r%d", i), &st); err != nil {
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				continue
			}
			return nil, wire.Wrap(wire.CodeInternal, err)
		}
		out = append(out, st)
	}
	return out, nil
}

// History lists rollouts and config revisions, newest first.
func (c *Coordinator) History(ctx context.Context, limit int) (*wire.History, error) {
	if limit <= 0 {
		limit = 20
	}
	rs, err := c.rollouts(ctx, limit)
	if err != nil {
		return nil, err
	}
	h := &wire.History{Rollouts: rs, Revisions: []wire.FleetConfig{}}
	if h.Rollouts == nil {
		h.Rollouts = []wire.RolloutState{}
	}
	latest, err := c.counter(ctx, "revision")
	if err != nil {
		return nil, wire.Wrap(wire.CodeInternal, err)
	}
	for r := latest; r >= 1 && len(h.Revisions) < limit; r-- {
		cfg, err := c.GetConfig(ctx, r)
		if err != nil {
			continue
		}
		h.Revisions = append(h.Revisions, *cfg)
	}
	return h, nil
}

// Status returns the registry, the rollout and the latest revision.
func (c *Coordinator) Status(ctx context.Context, selector map[string]string) (*wire.FleetStatus, error) {
	now := time.Now()
	st := &wire.FleetStatus{Hosts: c.reg.status(selector, now, c.assignedOf), Rollout: c.Rollout()}
	for _, h := range st.Hosts {
		if h.Up {
			st.Up++
		} else {
			st.Down++
		}
	}
	if c.kv != nil {
		n, err := c.counter(ctx, "revision")
		if err != nil {
			return nil, wire.Wrap(wire.CodeInternal, err)
		}
		st.LatestRevision = n
	}
	return st, nil
}
