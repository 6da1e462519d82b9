package multilog

import (
	"cmp"
	"fmt"
	"math"
	"runtime"
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
//
// Invariants:
//
//  1. A window is evaluated at most once: it is in evaluated or below doneBelow afterwards,
//     and both the pending and the backfill paths check that before evaluating.
//  2. While scanning (TriggerBackfill), the windows scanNext..scanLast are evaluated in
//     increasing order as they complete; every window holding data when the trigger was
//     installed lies in that span, and later data reaches pending (the writers report touched
//     buckets from before the span was computed on).
type triggerGroup struct {
	agg      *Aggregate
	period   int64
	triggers []*trigger

	pending   map[int64]struct{} // windows that received data and wait for their grace
	evaluated map[int64]struct{} // windows already evaluated (each fires at most once)
	doneBelow int64              // windows below this count as evaluated

	scanning           bool  // backfill windows remain (TriggerBackfill)
	scanNext, scanLast int64 // window numbers still to scan, inclusive
}

// maxScanPerTick bounds the backfill windows one monitor pass evaluates, so a trigger installed
// over a long history does not stall the monitor.
const maxScanPerTick = 1 << 14

// monitor evaluates triggers over tumbling windows in data time.
type monitor struct {
	mu       sync.Mutex // guards everything below; lock order: MultiLog.mu → monitor.mu → alertLog.mu
	triggers []*trigger
	groups   []*triggerGroup
	running  bool
	stop     chan struct{}
	done     chan struct{}

	active atomic.Bool // some trigger is installed: writers report touched buckets

	// advanced is the floor AdvanceWatermark set: windows ending at or below it are complete.
	advanced atomic.Int64
	// lastTail and lastMove track, per shard, when the monitor last saw its tail move (idle
	// shards leave the watermark; Options.IdleAfter).
	lastTail []uint64
	lastMove []time.Time

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

// TriggerOption changes how InstallTrigger installs a trigger.
type TriggerOption func(*triggerOptions)

type triggerOptions struct{ backfill bool }

// TriggerBackfill makes InstallTrigger also evaluate the windows that already hold data of the
// aggregate (including an aggregate's backfill), each once it is complete, in window order; a
// replay that ended before the trigger was installed then fires as if it had been installed
// first. Without it only windows that receive data after the installation are evaluated.
func TriggerBackfill() TriggerOption { return func(o *triggerOptions) { o.backfill = true } }

// InstallTrigger installs a trigger "aggregate op threshold" evaluated over tumbling windows of
// period (a multiple of Options.FilterBucket) aligned to the epoch in data time. A window is
// evaluated once, when it is complete (see Options.IdleAfter, Options.Watermark and
// AdvanceWatermark), at the version current then; it fires (an Alert) if it holds data and its
// value satisfies the condition. Windows that receive data after the trigger is installed are
// evaluated, so a replayed capture with old timestamps fires as live traffic would; with
// TriggerBackfill, windows that already hold data are evaluated too.
func (ml *MultiLog) InstallTrigger(name, condition string, period time.Duration, options ...TriggerOption) error {
	var o triggerOptions
	for _, opt := range options {
		opt(&o)
	}
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
	if !o.backfill { // a backfilling trigger has its own windows to evaluate
		for _, x := range m.groups {
			if x.agg == a && x.period == int64(period) && !x.scanning {
				g = x
			}
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
	if o.backfill {
		ml.settleBatches()
		lo, hi := a.bucketSpan()
		if lo <= hi {
			bn := int64(B)
			g.scanning = true
			g.scanNext, g.scanLast = floorDiv(lo*bn, g.period), floorDiv(hi*bn, g.period)
		}
	}
	if !m.running && !ml.opts.ManualMonitor {
		m.running = true
		m.stop, m.done = make(chan struct{}), make(chan struct{})
		go ml.runMonitor(m.stop, m.done)
	}
	return ml.persistInstallTrigger(name, condition, period)
}

// settleBatches waits until every batch that was being appended when it was called has been
// published (so its aggregate buckets are visible). It never blocks a writer.
func (ml *MultiLog) settleBatches() {
	for _, sh := range ml.shards {
		t0 := sh.tail.Load()
		for sh.writing.Load() && sh.tail.Load() == t0 {
			runtime.Gosched()
		}
	}
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

// AdvanceWatermark declares that every record with a timestamp at or below ts has been
// appended: windows ending at or before ts+1 are complete (records that still come for them
// are late and ignored). It only ever raises the watermark. A finite source (a capture replay)
// calls it with math.MaxInt64 at its end, or calls Flush, so its last windows are evaluated.
// Safe for concurrent use.
func (ml *MultiLog) AdvanceWatermark(ts int64) {
	c := ts
	if c < math.MaxInt64 {
		c++
	}
	m := ml.monitor
	for {
		old := m.advanced.Load()
		if c <= old || m.advanced.CompareAndSwap(old, c) {
			return
		}
	}
}

// Flush declares the input complete (AdvanceWatermark(math.MaxInt64)) and runs a monitor pass
// now, returning its alerts: every window with data is evaluated.
func (ml *MultiLog) Flush() []Alert {
	ml.AdvanceWatermark(math.MaxInt64)
	return ml.Tick()
}

// completeBelowLocked returns the data time c such that every window ending at or before c is
// complete: the shard-derived watermark (minimum over non-idle shards of their largest
// timestamp, minus Grace) or Options.Watermark()+1, raised to AdvanceWatermark's floor. It
// loads the shard watermarks before the caller loads the version (watermarks are stored before
// tails), so the version holds every record at or below them. m.mu must be held.
func (ml *MultiLog) completeBelowLocked(now time.Time) int64 {
	m := ml.monitor
	var c int64
	if f := ml.opts.Watermark; f != nil {
		c = f()
		if c < math.MaxInt64 {
			c++
		}
	} else {
		lo, hi, active := int64(math.MaxInt64), int64(math.MinInt64), false
		for i, sh := range ml.shards {
			w := sh.watermark.Load()
			if t := sh.tail.Load(); t != m.lastTail[i] {
				m.lastTail[i], m.lastMove[i] = t, now
			}
			hi = max(hi, w)
			if now.Sub(m.lastMove[i]) < ml.opts.IdleAfter {
				active = true
				lo = min(lo, w)
			}
		}
		c = hi
		if active {
			c = lo
		}
		if c != math.MinInt64 {
			c = max(c-int64(ml.opts.Grace), math.MinInt64+1)
		}
	}
	return max(c, m.advanced.Load())
}

// Tick runs one monitor pass now: it takes the buckets changed since the last pass, and
// evaluates every pending window that is complete (see completeBelowLocked), then up to
// maxScanPerTick complete backfill windows (TriggerBackfill). It returns the alerts fired (also
// logged and delivered to subscribers). The monitor goroutine calls it every
// Options.MonitorInterval; tests and replays driven step by step may call it directly.
func (ml *MultiLog) Tick() []Alert {
	m := ml.monitor
	m.mu.Lock()
	m.ticks.Add(1)
	now := time.Now()
	complete := ml.completeBelowLocked(now)
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
	var alerts []Alert
	evaluate := func(g *triggerGroup, w int64) {
		g.markEvaluated(w)
		start := w * g.period
		end := start + g.period
		var total partial
		for i := range ml.shards {
			p := ml.aggRange(g.agg, i, v.tails[i], start, end)
			total.merge(&p)
		}
		val := g.agg.result(&total)
		if val.Empty {
			return
		}
		m.evaluations.Add(1)
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
	isComplete := func(g *triggerGroup, w int64) bool {
		start := w * g.period
		end := start + g.period
		return end >= start && end <= complete
	}
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
			if g.done(w) {
				m.late.Add(1)
				continue
			}
			g.pending[w] = struct{}{}
		}
		ready := make([]int64, 0, len(g.pending))
		for w := range g.pending {
			if isComplete(g, w) {
				ready = append(ready, w)
			}
		}
		slices.Sort(ready)
		for _, w := range ready {
			delete(g.pending, w)
			if !g.done(w) {
				evaluate(g, w)
			}
		}
		for n := 0; g.scanning && n < maxScanPerTick; n++ {
			w := g.scanNext
			if !isComplete(g, w) {
				break
			}
			if !g.done(w) {
				evaluate(g, w)
			}
			if w >= g.scanLast {
				g.scanning = false
			}
			g.scanNext = w + 1
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

// done reports whether window w has been evaluated.
func (t *triggerGroup) done(w int64) bool {
	if w < t.doneBelow {
		return true
	}
	_, ok := t.evaluated[w]
	return ok
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
	ring    []Alert    // grows to max; oldest at head once full
	max     int
	head    int
	subs    map[int]func(Alert)
	nextSub int
	dropped atomic.Uint64
	fired   atomic.Uint64
}

func newAlertLog(max int) *alertLog {
	// The ring grows on demand: a MultiLog that never alerts does not hold max alerts' memory.
	return &alertLog{ring: make([]Alert, 0, min(max, 64)), max: max, subs: map[int]func(Alert){}}
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
	if len(l.ring) < l.max {
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
	Records         uint64 // records appended and published (Version.NumRecords: deleted ones included)
	DerivedBytes    uint64 // memory of derived logs (DerivedBytes)
	MonitorTicks    uint64
	MonitorOverruns uint64       // ticks that took longer than MonitorInterval
	Evaluations     uint64       // window evaluations (of windows holding data)
	LateBuckets     uint64       // data for windows already evaluated (ignored)
	AlertsDropped   uint64       // alerts dropped from the log or from full subscriber channels
	Persist         PersistStats // retention deletions and read failures (persist.go; zero for New)
}

// Stats returns the MultiLog's counters.
func (ml *MultiLog) Stats() Stats {
	m := ml.monitor
	return Stats{
		Records:         ml.current().NumRecords(),
		DerivedBytes:    ml.DerivedBytes(),
		MonitorTicks:    m.ticks.Load(),
		MonitorOverruns: m.overruns.Load(),
		Evaluations:     m.evaluations.Load(),
		LateBuckets:     m.late.Load(),
		AlertsDropped:   ml.alerts.dropped.Load(),
		Persist:         ml.PersistStats(),
	}
}

// Close stops the monitor goroutine (StopMonitor) and closes the persistent store, if any. The
// MultiLog stays readable; triggers can no longer be installed.
func (ml *MultiLog) Close() error {
	ml.StopMonitor()
	return ml.closePersist()
}

// StopMonitor stops the monitor goroutine and refuses new triggers (ErrClosed); Tick and Flush
// still work. For an owner that closes the store separately. Idempotent.
func (ml *MultiLog) StopMonitor() {
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
}
