package multilog

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confluo-go/confluo/pkg/expr"
)

// Alert is one firing of a trigger: its window's aggregate value satisfied the condition.
type Alert struct {
	Trigger   string `json:"trigger"`
	Aggregate string `json:"aggregate"`
	Condition string `json:"condition"` // canonical "aggregate op threshold"
	// WindowStart and WindowEnd bound the window in data time, [start, end) ns.
	WindowStart int64   `json:"window_start"`
	WindowEnd   int64   `json:"window_end"`
	Value       float64 `json:"value"`
	Count       uint64  `json:"count"` // records aggregated in the window
	// Version is the MultiLog version (shard tails) the window was evaluated at.
	Version []uint64 `json:"version"`
	// Fired is the wall-clock time of the evaluation.
	Fired time.Time `json:"fired"`
}

// trigger is an installed trigger.
type trigger struct {
	name  string
	cond  *expr.Trigger
	group *triggerGroup
}

// triggerGroup is the triggers on one aggregate with one period: they share their windows, so
// each window is evaluated once for all of them. Its fields are guarded by monitor.mu.
type triggerGroup struct {
	agg      *Aggregate
	period   int64
	triggers []*trigger

	pending   map[int64]struct{} // windows that received data and wait for their grace
	evaluated map[int64]struct{} // windows already evaluated (each fires at most once)
	doneBelow int64              // windows below this count as evaluated
}

// monitor evaluates triggers over tumbling windows in data time.
type monitor struct {
	mu       sync.Mutex // guards everything below; lock order: MultiLog.mu → monitor.mu → alertLog.mu
	triggers []*trigger
	groups   []*triggerGroup
	running  bool
	stop     chan struct{}
	done     chan struct{}

	active atomic.Bool // some trigger is installed: writers report touched buckets

	ticks, overruns, evaluations, late atomic.Uint64
}

func (ml *MultiLog) monitorRef() *monitor { return ml.monitor }

func (m *monitor) triggerUsing(a *Aggregate) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, t := range m.triggers {
		if t.group.agg == a {
			return t.name
		}
	}
	return ""
}

// noteTouched records, for the monitor, the buckets a batch changed (writer, once per batch;
// the shard's own mutex is shared only with the monitor, never with other writers).
func (ml *MultiLog) noteTouched(sh *shard, buckets []touch) {
	if !ml.monitor.active.Load() {
		return
	}
	sh.touchedMu.Lock()
	sh.touched = append(sh.touched, buckets...)
	sh.touchedMu.Unlock()
}

// InstallTrigger installs a trigger "aggregate op threshold" evaluated over tumbling windows of
// period (a multiple of Options.FilterBucket) aligned to the epoch in data time. A window is
// evaluated once, when the largest timestamp appended is at least its end plus Options.Grace,
// at the version current then; it fires (an Alert) if it holds data and its value satisfies the
// condition. Windows that receive data after the trigger is installed are evaluated, so a
// replayed capture with old timestamps fires as live traffic would.
func (ml *MultiLog) InstallTrigger(name, condition string, period time.Duration) error {
	if err := checkName(name); err != nil {
		return err
	}
	et, err := expr.ParseTrigger(condition)
	if err != nil {
		return fmt.Errorf("%w: trigger %q: %w", ErrExpr, name, err)
	}
	B := ml.opts.FilterBucket
	if period <= 0 || period%B != 0 {
		return fmt.Errorf("%w: trigger %q: period %v must be a positive multiple of the filter bucket %v", ErrExpr, name, period, B)
	}
	ml.mu.Lock()
	defer ml.mu.Unlock()
	a := ml.aggregate(et.Aggregate)
	if a == nil {
		return fmt.Errorf("%w: trigger %q: aggregate %q", ErrNotFound, name, et.Aggregate)
	}
	m := ml.monitor
	m.mu.Lock()
	defer m.mu.Unlock()
	if slices.ContainsFunc(m.triggers, func(t *trigger) bool { return t.name == name }) {
		return fmt.Errorf("%w: trigger %q", ErrExists, name)
	}
	if ml.closed.Load() {
		return ErrClosed
	}
	var g *triggerGroup
	for _, x := range m.groups {
		if x.agg == a && x.period == int64(period) {
			g = x
		}
	}
	if g == nil {
		g = &triggerGroup{agg: a, period: int64(period),
			pending: map[int64]struct{}{}, evaluated: map[int64]struct{}{}, doneBelow: math.MinInt64}
		m.groups = append(m.groups, g)
	}
	t := &trigger{name: name, cond: et, group: g}
	g.triggers = append(g.triggers, t)
	m.triggers = append(m.triggers, t)
	m.active.Store(true)
	if !m.running && !ml.opts.ManualMonitor {
		m.running = true
		m.stop, m.done = make(chan struct{}), make(chan struct{})
		go ml.runMonitor(m.stop, m.done)
	}
	return ml.persistInstallTrigger(name, condition, period)
}

// RemoveTrigger removes a trigger; its alerts stay queryable.
func (ml *MultiLog) RemoveTrigger(name string) error {
	m := ml.monitor
	m.mu.Lock()
	defer m.mu.Unlock()
	i := slices.IndexFunc(m.triggers, func(t *trigger) bool { return t.name == name })
	if i < 0 {
		return fmt.Errorf("%w: trigger %q", ErrNotFound, name)
	}
	t := m.triggers[i]
	m.triggers = slices.Delete(m.triggers, i, i+1)
	g := t.group
	g.triggers = slices.DeleteFunc(g.triggers, func(x *trigger) bool { return x == t })
	if len(g.triggers) == 0 {
		m.groups = slices.DeleteFunc(m.groups, func(x *triggerGroup) bool { return x == g })
	}
	m.active.Store(len(m.triggers) > 0)
	return ml.persistRemoveTrigger(name)
}

// Triggers returns the installed triggers' names.
func (ml *MultiLog) Triggers() []string {
	m := ml.monitor
	m.mu.Lock()
	defer m.mu.Unlock()
	var names []string
	for _, t := range m.triggers {
		names = append(names, t.name)
	}
	return names
}

func (ml *MultiLog) runMonitor(stop, done chan struct{}) {
	defer close(done)
	interval := ml.opts.MonitorInterval
	tk := time.NewTicker(interval)
	defer tk.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tk.C:
			t0 := time.Now()
			ml.Tick()
			if time.Since(t0) > interval {
				ml.monitor.overruns.Add(1)
			}
		}
	}
}

// Tick runs one monitor pass now: it takes the buckets changed since the last pass, and
// evaluates every pending window whose end plus the grace period has passed in data time. It
// returns the alerts fired (also logged and delivered to subscribers). The monitor goroutine
// calls it every Options.MonitorInterval; tests may call it directly.
func (ml *MultiLog) Tick() []Alert {
	m := ml.monitor
	m.mu.Lock()
	m.ticks.Add(1)
	// The watermark is loaded before the version, so the version holds every record at or
	// below it (watermarks are stored before tails).
	watermark := int64(math.MinInt64)
	for _, sh := range ml.shards {
		watermark = max(watermark, sh.watermark.Load())
	}
	v := ml.current()
	var touched []touch
	for _, sh := range ml.shards {
		sh.touchedMu.Lock()
		touched = append(touched, sh.touched...)
		sh.touched = sh.touched[:0]
		sh.touchedMu.Unlock()
	}
	slices.SortFunc(touched, func(a, b touch) int { return cmp.Compare(a.bucket, b.bucket) })
	B := int64(ml.opts.FilterBucket)
	grace := int64(ml.opts.Grace)
	var alerts []Alert
	now := time.Now()
	for _, g := range m.groups {
		last := int64(math.MinInt64)
		for _, tb := range touched {
			if tb.agg != g.agg {
				continue
			}
			w := floorDiv(tb.bucket*B, g.period)
			if w == last {
				continue
			}
			last = w
			if _, done := g.evaluated[w]; done || w < g.doneBelow {
				m.late.Add(1)
				continue
			}
			g.pending[w] = struct{}{}
		}
		for w := range g.pending {
			start := w * g.period
			end := start + g.period
			if end > watermark-grace || end < start {
				continue
			}
			delete(g.pending, w)
			g.markEvaluated(w)
			var total partial
			for i := range ml.shards {
				p := ml.aggRange(g.agg, i, v.tails[i], start, end)
				total.merge(&p)
			}
			val := g.agg.result(&total)
			m.evaluations.Add(1)
			if val.Empty {
				continue
			}
			for _, t := range g.triggers {
				if !t.cond.Eval(val.Float()) {
					continue
				}
				alerts = append(alerts, Alert{
					Trigger: t.name, Aggregate: g.agg.name, Condition: t.cond.String(),
					WindowStart: start, WindowEnd: end, Value: val.Float(), Count: val.Count,
					Version: v.Tails(), Fired: now,
				})
			}
		}
	}
	m.mu.Unlock()
	slices.SortFunc(alerts, func(a, b Alert) int {
		if a.WindowStart != b.WindowStart {
			return cmp.Compare(a.WindowStart, b.WindowStart)
		}
		return cmp.Compare(a.Trigger, b.Trigger)
	})
	for _, a := range alerts {
		ml.alerts.add(a)
	}
	return alerts
}

func (t *triggerGroup) markEvaluated(w int64) {
	t.evaluated[w] = struct{}{}
	if len(t.evaluated) <= 4096 {
		return
	}
	top := int64(math.MinInt64)
	for x := range t.evaluated {
		top = max(top, x)
	}
	t.doneBelow = top - 2048
	for x := range t.evaluated {
		if x < t.doneBelow {
			delete(t.evaluated, x)
		}
	}
}

// alertLog keeps the latest alerts (a ring of Options.MaxAlerts) and delivers new ones to
// subscribers.
type alertLog struct {
	mu      sync.Mutex // guards the fields below
	ring    []Alert    // capacity max; oldest at head once full
	head    int
	subs    map[int]func(Alert)
	nextSub int
	dropped atomic.Uint64
	fired   atomic.Uint64
}

func newAlertLog(max int) *alertLog {
	return &alertLog{ring: make([]Alert, 0, max), subs: map[int]func(Alert){}}
}

// each calls fn for every kept alert, oldest first; mu must be held.
func (l *alertLog) eachLocked(fn func(*Alert)) {
	for i := range l.ring {
		fn(&l.ring[(l.head+i)%len(l.ring)])
	}
}

func (l *alertLog) add(a Alert) {
	l.fired.Add(1)
	l.mu.Lock()
	if len(l.ring) < cap(l.ring) {
		l.ring = append(l.ring, a)
	} else {
		l.ring[l.head] = a
		l.head = (l.head + 1) % len(l.ring)
		l.dropped.Add(1)
	}
	var subs []func(Alert)
	if len(l.subs) > 0 {
		for _, id := range sortedKeys(l.subs) {
			subs = append(subs, l.subs[id])
		}
	}
	l.mu.Unlock()
	for _, fn := range subs {
		fn(a)
	}
}

func sortedKeys(m map[int]func(Alert)) []int {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// GetAlerts returns the kept alerts whose window starts in [from, to), of one trigger or of all
// ("" ), oldest first.
func (ml *MultiLog) GetAlerts(from, to int64, triggerName string) []Alert {
	l := ml.alerts
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Alert
	l.eachLocked(func(a *Alert) {
		if a.WindowStart >= from && a.WindowStart < to && (triggerName == "" || a.Trigger == triggerName) {
			out = append(out, *a)
		}
	})
	return out
}

// Subscribe calls fn for every new alert, on the monitor's goroutine, in order; fn must not
// block for long (the monitor waits for it). It returns a function that cancels the
// subscription.
func (ml *MultiLog) Subscribe(fn func(Alert)) (cancel func()) {
	l := ml.alerts
	l.mu.Lock()
	id := l.nextSub
	l.nextSub++
	l.subs[id] = fn
	l.mu.Unlock()
	return func() {
		l.mu.Lock()
		delete(l.subs, id)
		l.mu.Unlock()
	}
}

// SubscribeChan sends every new alert to ch without blocking: when ch is full the alert is
// dropped and counted in Stats().AlertsDropped. It returns a function that cancels the
// subscription.
func (ml *MultiLog) SubscribeChan(ch chan<- Alert) (cancel func()) {
	return ml.Subscribe(func(a Alert) {
		select {
		case ch <- a:
		default:
			ml.alerts.dropped.Add(1)
		}
	})
}

// Stats are counters of a MultiLog.
type Stats struct {
	Records         uint64 // visible records
	MonitorTicks    uint64
	MonitorOverruns uint64 // ticks that took longer than MonitorInterval
	Evaluations     uint64 // window evaluations
	LateBuckets     uint64 // data for windows already evaluated (ignored)
	AlertsDropped   uint64 // alerts dropped from the log or from full subscriber channels
}

// Stats returns the MultiLog's counters.
func (ml *MultiLog) Stats() Stats {
	m := ml.monitor
	return Stats{
		Records:         ml.current().NumRecords(),
		MonitorTicks:    m.ticks.Load(),
		MonitorOverruns: m.overruns.Load(),
		Evaluations:     m.evaluations.Load(),
		LateBuckets:     m.late.Load(),
		AlertsDropped:   ml.alerts.dropped.Load(),
	}
}

// Close stops the monitor goroutine. The MultiLog stays readable and writable; triggers can no
// longer be installed. Close is idempotent.
func (ml *MultiLog) Close() error {
	ml.closed.Store(true)
	m := ml.monitor
	m.mu.Lock()
	running, stop, done := m.running, m.stop, m.done
	m.running = false
	m.mu.Unlock()
	if running {
		close(stop)
		<-done
	}
	return ml.closePersist()
}
