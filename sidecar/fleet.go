package sidecar

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/confluo-go/confluo/ovs"
	"github.com/confluo-go/confluo/pkg/expr"
	"github.com/confluo-go/confluo/pkg/fleet"
	"github.com/confluo-go/confluo/pkg/wire"
	"github.com/confluo-go/confluo/sidecar/internal/engine"
)

// fleetHost adapts the sidecar to the fleet agent's Applier, Freezer and Responder. Safe for
// concurrent use (the agent calls Apply from one goroutine at a time).
type fleetHost struct {
	s *Sidecar

	mu      sync.Mutex
	applied *wire.FleetConfig // the last configuration applied through the fleet
}

var (
	_ fleet.Applier   = (*fleetHost)(nil)
	_ fleet.Freezer   = (*fleetHost)(nil)
	_ fleet.Responder = (*fleetHost)(nil)
)

// Freeze implements fleet.Freezer on the packet multilog. The watermark is read before the
// freeze, so every record at or below it is inside the frozen tails.
func (h *fleetHost) Freeze() (fleet.Frozen, func()) {
	var watermark int64
	if p, ok := h.s.capture.(*pipeline); ok && p != nil {
		watermark = p.Watermark()
	}
	tails, release, err := h.s.engine.Freeze(h.s.opts.Store.MultiLog)
	if err != nil {
		h.s.logger.Error("snapshot freeze failed", "err", err)
		return fleet.Frozen{}, func() {}
	}
	return fleet.Frozen{Tails: tails, Watermark: watermark}, release
}

func pinned(ctx context.Context, p *wire.Pin) context.Context {
	if p == nil {
		return ctx
	}
	return engine.WithPin(ctx, p.Tails, p.CutTime)
}

// Query implements fleet.Responder with the same limits as the API.
func (h *fleetHost) Query(ctx context.Context, req *wire.QueryRequest, p *wire.Pin) (*wire.QueryReply, error) {
	res, err := h.s.query(pinned(ctx, p), *req)
	if err != nil {
		return nil, err
	}
	r := res.(*wire.QueryReply)
	if p != nil {
		r.Consistency = wire.ConsistencyAtomic
	}
	return r, nil
}

// Aggregate implements fleet.Responder.
func (h *fleetHost) Aggregate(ctx context.Context, req *wire.AggregateRequest, p *wire.Pin) (*wire.AggregateReply, error) {
	res, err := h.s.aggregate(pinned(ctx, p), *req)
	if err != nil {
		return nil, err
	}
	r := res.(*wire.AggregateReply)
	if p != nil {
		r.Consistency = wire.ConsistencyAtomic
	}
	return r, nil
}

// Alerts implements fleet.Responder.
func (h *fleetHost) Alerts(_ context.Context, req *wire.AlertsRequest) (*wire.AlertsReply, error) {
	res, err := h.s.alerts(*req)
	if err != nil {
		return nil, err
	}
	r := res.(wire.AlertsReply)
	return &r, nil
}

// Apply implements fleet.Applier: it makes the host run cfg. Objects a previous fleet revision
// installed and cfg no longer has are removed (triggers, then aggregates, then filters);
// objects of cfg are installed, replacing same-named ones with a different definition. Objects
// from the local configuration file that cfg does not name are left alone. Applying the same
// revision twice changes nothing.
func (h *fleetHost) Apply(ctx context.Context, cfg *wire.FleetConfig) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	s, e := h.s, h.s.engine
	var errs []error
	for name, text := range cfg.Schemas {
		if err := e.AddMultiLog(name, text); err != nil {
			errs = append(errs, fmt.Errorf("schemas[%s]: %w", name, err))
		}
	}
	if len(cfg.Mirrors) > 0 {
		if s.mirror == nil {
			errs = append(errs, wire.Errorf(wire.CodeInvalidArgument, "mirrors: this host does not manage OVS mirrors (mirror.enabled is false)"))
		} else {
			for i, raw := range cfg.Mirrors {
				var spec ovs.MirrorSpec
				if err := json.Unmarshal(raw, &spec); err != nil {
					errs = append(errs, fmt.Errorf("mirrors[%d]: %w", i, err))
					continue
				}
				if _, err := s.mirror.ctrl.EnsureMirror(ctx, spec); err != nil {
					errs = append(errs, fmt.Errorf("mirrors[%d] %s/%s: %w", i, spec.Bridge, spec.Name, err))
				}
			}
		}
	}
	norm := func(ml string) string { return s.multilog(ml) }
	prev := h.applied
	if prev == nil {
		prev = &wire.FleetConfig{}
	}
	// Removals of what cfg no longer names, dependents first (same names: replaced below).
	for _, t := range prev.Triggers {
		if !slices.ContainsFunc(cfg.Triggers, func(x wire.TriggerSpec) bool { return norm(x.MultiLog) == norm(t.MultiLog) && x.Name == t.Name }) {
			errs = append(errs, ignoreNotFound(e.RemoveTrigger(norm(t.MultiLog), t.Name)))
		}
	}
	for _, a := range prev.Aggregates {
		if !slices.ContainsFunc(cfg.Aggregates, func(x wire.AggregateSpec) bool { return norm(x.MultiLog) == norm(a.MultiLog) && x.Name == a.Name }) {
			errs = append(errs, ignoreNotFound(e.RemoveAggregate(norm(a.MultiLog), a.Name)))
		}
	}
	for _, f := range prev.Filters {
		if !slices.ContainsFunc(cfg.Filters, func(x wire.FilterSpec) bool { return norm(x.MultiLog) == norm(f.MultiLog) && x.Name == f.Name }) {
			errs = append(errs, ignoreNotFound(e.RemoveFilter(norm(f.MultiLog), f.Name)))
		}
	}
	// Replacements: a changed filter takes the aggregates over it (and their triggers) with it,
	// a changed aggregate its triggers; the installs below put back what cfg has.
	for _, ml := range touchedMultiLogs(norm, cfg) {
		filters, _ := e.Filters(ml)
		aggregates, _ := e.Aggregates(ml)
		triggers, _ := e.Triggers(ml)
		dropTrigger := map[string]bool{}
		dropAggregate := map[string]bool{}
		dropFilter := map[string]bool{}
		for _, f := range filters {
			if i := slices.IndexFunc(cfg.Filters, func(x wire.FilterSpec) bool { return norm(x.MultiLog) == ml && x.Name == f.Name }); i >= 0 && !sameFilter(norm, cfg.Filters[i], f) {
				dropFilter[f.Name] = true
			}
		}
		for _, a := range aggregates {
			i := slices.IndexFunc(cfg.Aggregates, func(x wire.AggregateSpec) bool { return norm(x.MultiLog) == ml && x.Name == a.Name })
			if dropFilter[a.Filter] || i >= 0 && !sameAggregate(norm, cfg.Aggregates[i], a) {
				dropAggregate[a.Name] = true
			}
		}
		for _, t := range triggers {
			i := slices.IndexFunc(cfg.Triggers, func(x wire.TriggerSpec) bool { return norm(x.MultiLog) == ml && x.Name == t.Name })
			if dropAggregate[triggerAggregate(t.Condition)] || i >= 0 && !sameTrigger(norm, cfg.Triggers[i], t) {
				dropTrigger[t.Name] = true
			}
		}
		for name := range dropTrigger {
			errs = append(errs, ignoreNotFound(e.RemoveTrigger(ml, name)))
		}
		for name := range dropAggregate {
			errs = append(errs, ignoreNotFound(e.RemoveAggregate(ml, name)))
		}
		for name := range dropFilter {
			errs = append(errs, ignoreNotFound(e.RemoveFilter(ml, name)))
		}
	}
	// Installs; an identical object already there is fine.
	for _, f := range cfg.Filters {
		f.MultiLog = norm(f.MultiLog)
		errs = append(errs, exists(e.AddFilter(f), "filter "+f.Name))
	}
	for _, a := range cfg.Aggregates {
		a.MultiLog = norm(a.MultiLog)
		errs = append(errs, exists(e.AddAggregate(a), "aggregate "+a.Name))
	}
	for _, t := range cfg.Triggers {
		t.MultiLog = norm(t.MultiLog)
		if err := wire.ValidateToken("trigger", t.Name); err != nil {
			errs = append(errs, wire.Errorf(wire.CodeInvalidArgument, "trigger %q: %v", t.Name, err))
			continue
		}
		errs = append(errs, exists(e.AddTrigger(t), "trigger "+t.Name))
	}
	for _, ix := range cfg.Indexes {
		ix.MultiLog = norm(ix.MultiLog)
		if err := e.AddIndex(ix); err != nil && !errors.Is(err, wire.ErrAlreadyExists) {
			errs = append(errs, fmt.Errorf("index %s: %w", ix.Column, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	c := *cfg
	h.applied = &c
	s.logger.Info("fleet config applied", "revision", cfg.Revision)
	return nil
}

// exists accepts an Add's already_exists error: the replacement pass removed every object whose
// definition differs, so one still there is identical.
func exists(err error, what string) error {
	if err == nil || errors.Is(err, wire.ErrAlreadyExists) {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}

// touchedMultiLogs lists the multilogs cfg installs objects in.
func touchedMultiLogs(norm func(string) string, cfg *wire.FleetConfig) []string {
	var out []string
	add := func(ml string) {
		if ml = norm(ml); !slices.Contains(out, ml) {
			out = append(out, ml)
		}
	}
	for _, f := range cfg.Filters {
		add(f.MultiLog)
	}
	for _, a := range cfg.Aggregates {
		add(a.MultiLog)
	}
	for _, t := range cfg.Triggers {
		add(t.MultiLog)
	}
	return out
}

// triggerAggregate is the aggregate a trigger condition names ("" if it does not parse).
func triggerAggregate(condition string) string {
	t, err := expr.ParseTrigger(condition)
	if err != nil {
		return ""
	}
	return t.Aggregate
}

func ignoreNotFound(err error) error {
	if errors.Is(err, wire.ErrNotFound) {
		return nil
	}
	return err
}

func sameFilter(norm func(string) string, a, b wire.FilterSpec) bool {
	return norm(a.MultiLog) == norm(b.MultiLog) && a.Name == b.Name && a.Expr == b.Expr
}

func sameAggregate(norm func(string) string, a, b wire.AggregateSpec) bool {
	return norm(a.MultiLog) == norm(b.MultiLog) && a.Name == b.Name && a.Filter == b.Filter && a.Func == b.Func
}

func sameTrigger(norm func(string) string, a, b wire.TriggerSpec) bool {
	pa, pb := a.PeriodMillis, b.PeriodMillis
	if pa == 0 {
		pa = int(engine.DefaultPeriod.Milliseconds())
	}
	if pb == 0 {
		pb = int(engine.DefaultPeriod.Milliseconds())
	}
	return norm(a.MultiLog) == norm(b.MultiLog) && a.Name == b.Name && a.Condition == b.Condition && pa == pb
}
