package engine

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confluo-go/confluo/pkg/expr"
	"github.com/confluo-go/confluo/pkg/multilog"
	"github.com/confluo-go/confluo/pkg/schema"
	"github.com/confluo-go/confluo/pkg/wire"
)

// DefaultPeriod is a trigger's window when its spec sets none.
const DefaultPeriod = time.Second

// Store serves the API from real pkg/multilog MultiLogs. Named filters are compiled expressions
// evaluated against the log; aggregates and triggers are computed by the Store's monitor, which
// scans each trigger's new complete windows (data time) once.
//
// Safe for concurrent use. Lock order: Store.mu only (the MultiLog's own locks are taken inside
// its calls, never while Store.mu is held across a scan).
type Store struct {
	logger    *slog.Logger
	onAlert   AlertFunc
	interval  time.Duration
	watermark func() int64

	mu   sync.RWMutex
	logs map[string]*logEntry

	stop chan struct{}
	done chan struct{}

	evaluations atomic.Uint64
}

type logEntry struct {
	name       string
	ml         *multilog.MultiLog
	filters    map[string]*namedFilter
	aggregates map[string]*namedAggregate
	triggers   map[string]*trigger
}

type namedFilter struct {
	spec wire.FilterSpec
	f    *expr.Filter
}

type namedAggregate struct {
	spec wire.AggregateSpec
	agg  *expr.Aggregate
}

type trigger struct {
	spec   wire.TriggerSpec
	cond   *expr.Trigger
	period int64
	next   int64 // start of the first window not yet evaluated; MinInt64 until data arrives
}

// StoreOptions configure a Store.
type StoreOptions struct {
	// MonitorInterval is how often triggers are evaluated. Default 50ms.
	MonitorInterval time.Duration
	// Watermark returns the data time (ns) up to which every record has been stored: a trigger
	// window [start, end) is evaluated once end <= Watermark()+1, exactly once. math.MaxInt64
	// means no more records will come. Default: the wall clock minus 100ms.
	Watermark func() int64
	Logger    *slog.Logger
}

// NewStore returns a Store and starts its monitor; Close stops it.
func NewStore(opts StoreOptions, onAlert AlertFunc) *Store {
	if opts.MonitorInterval <= 0 {
		opts.MonitorInterval = 50 * time.Millisecond
	}
	if opts.Watermark == nil {
		opts.Watermark = func() int64 { return time.Now().Add(-100 * time.Millisecond).UnixNano() }
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if onAlert == nil {
		onAlert = func(wire.Alert) {}
	}
	s := &Store{logger: opts.Logger, onAlert: onAlert, interval: opts.MonitorInterval,
		watermark: opts.Watermark, logs: map[string]*logEntry{}, stop: make(chan struct{}), done: make(chan struct{})}
	go s.monitor()
	return s
}

// Add registers a MultiLog under a name.
func (s *Store) Add(name string, ml *multilog.MultiLog) error {
	if err := wire.ValidateToken("multilog", name); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.logs[name]; ok {
		return wire.Errorf(wire.CodeAlreadyExists, "multilog %q already exists", name)
	}
	s.logs[name] = &logEntry{name: name, ml: ml, filters: map[string]*namedFilter{},
		aggregates: map[string]*namedAggregate{}, triggers: map[string]*trigger{}}
	return nil
}

// Close stops the monitor after a last evaluation.
func (s *Store) Close() error {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
	return nil
}

func (s *Store) entry(name string) (*logEntry, error) {
	e, ok := s.logs[name]
	if !ok {
		return nil, wire.Errorf(wire.CodeNotFound, "multilog %q does not exist", name)
	}
	return e, nil
}

// MultiLogs implements Engine.
func (s *Store) MultiLogs() []wire.MultiLogInfo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]wire.MultiLogInfo, 0, len(s.logs))
	for _, e := range s.logs {
		out = append(out, wire.MultiLogInfo{Name: e.name, Schema: e.ml.Schema().String(), Records: e.ml.NumRecords(),
			Bytes: e.ml.MemoryBytes()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func exprError(err error) error {
	return wire.Errorf(wire.CodeInvalidExpr, "%v", err)
}

// selection is what a query reads: the records of a named filter's log (the MultiLog's derived
// filter log, indexed by time bucket), or the records matching an expression (nil: all).
type selection struct {
	filterName string
	f          *expr.Filter
}

// rows runs the selection over [from, to) at a snapshot.
func (sel selection) rows(snap *multilog.Snapshot, from, to int64) (*multilog.Rows, error) {
	if sel.filterName != "" {
		rows, err := snap.QueryFilter(sel.filterName, from, to, "", 0)
		if err != nil {
			return nil, wire.Errorf(wire.CodeNotFound, "filter %q: %v", sel.filterName, err)
		}
		return rows, nil
	}
	return snap.Select(sel.f, from, to, 0), nil
}

// compile resolves Expr or a named Filter.
func (s *Store) compile(e *logEntry, src, filterName string) (selection, error) {
	if filterName != "" {
		s.mu.RLock()
		_, ok := e.filters[filterName]
		s.mu.RUnlock()
		if !ok {
			return selection{}, wire.Errorf(wire.CodeNotFound, "filter %q does not exist in multilog %q", filterName, e.name)
		}
		return selection{filterName: filterName}, nil
	}
	if strings.TrimSpace(src) == "" {
		return selection{}, nil
	}
	f, err := expr.Compile(src, e.ml.Schema())
	if err != nil {
		return selection{}, exprError(err)
	}
	return selection{f: f}, nil
}

// cursor pins a query's version and position for the next page.
type cursor struct {
	Tails []uint64 `json:"v"`
	From  int64    `json:"t"` // timestamp of the last row returned
	Skip  int      `json:"s"` // rows with that timestamp already returned
}

func decodeCursor(text string) (*cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(text)
	if err != nil {
		return nil, wire.Errorf(wire.CodeInvalidArgument, "cursor is not one this sidecar returned: %v", err)
	}
	var c cursor
	if err := json.Unmarshal(b, &c); err != nil || c.Skip < 0 {
		return nil, wire.Errorf(wire.CodeInvalidArgument, "cursor is not one this sidecar returned")
	}
	return &c, nil
}

func (c *cursor) encode() string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

func bounds(from, to wire.Time) (int64, int64) {
	lo, hi := int64(multilog.MinTime), int64(multilog.MaxTime)
	if from != 0 {
		lo = int64(from)
	}
	if to != 0 {
		hi = int64(to)
	}
	return lo, hi
}

// snapshotFor is the snapshot a query reads: the current one, or the pinned version of the
// context (with the range end cut at the pin's cut time).
func snapshotFor(ctx context.Context, e *logEntry, to int64) (*multilog.Snapshot, int64, error) {
	p := pinFrom(ctx)
	if p == nil {
		return e.ml.Snapshot(), to, nil
	}
	snap, err := e.ml.At(multilog.VersionOf(p.tails))
	if err != nil {
		return nil, 0, wire.Errorf(wire.CodeInvalidArgument, "pinned version %v of multilog %q: %v", p.tails, e.name, err)
	}
	if p.cut != 0 && p.cut < math.MaxInt64 {
		to = min(to, p.cut+1)
	}
	return snap, to, nil
}

// Evaluations returns how many trigger windows the monitor has evaluated.
func (s *Store) Evaluations() uint64 { return s.evaluations.Load() }

// AddMultiLog implements Engine: a multilog with one writer shard.
func (s *Store) AddMultiLog(name, schemaText string) error {
	sch, err := schema.Parse(schemaText)
	if err != nil {
		return wire.Errorf(wire.CodeInvalidArgument, "multilog %q: %v", name, err)
	}
	s.mu.RLock()
	e, exists := s.logs[name]
	s.mu.RUnlock()
	if exists {
		if e.ml.Schema().Equal(sch) {
			return nil
		}
		return wire.Errorf(wire.CodeAlreadyExists, "multilog %q exists with schema %s", name, e.ml.Schema())
	}
	ml, err := multilog.New(sch, multilog.Options{Writers: 1})
	if err != nil {
		return wire.Errorf(wire.CodeInvalidArgument, "multilog %q: %v", name, err)
	}
	return s.Add(name, ml)
}

// Freeze implements Engine.
func (s *Store) Freeze(name string) ([]uint64, func(), error) {
	s.mu.RLock()
	e, err := s.entry(name)
	s.mu.RUnlock()
	if err != nil {
		return nil, nil, err
	}
	v := e.ml.Freeze()
	var once sync.Once
	return v.Tails(), func() { once.Do(e.ml.Unfreeze) }, nil
}

// ctxCheckEvery is how many rows a scan reads between deadline checks.
const ctxCheckEvery = 1024

// Query implements Engine.
func (s *Store) Query(ctx context.Context, req wire.QueryRequest, limit int) (*wire.QueryReply, error) {
	s.mu.RLock()
	e, err := s.entry(req.MultiLog)
	s.mu.RUnlock()
	if err != nil {
		return nil, err
	}
	sch := e.ml.Schema()
	cols, err := selectColumns(sch, req.Columns)
	if err != nil {
		return nil, err
	}
	sel, err := s.compile(e, req.Expr, req.Filter)
	if err != nil {
		return nil, err
	}
	from, to := bounds(req.From, req.To)
	snap, to, err := snapshotFor(ctx, e, to)
	if err != nil {
		return nil, err
	}
	skip := 0
	if req.Cursor != "" {
		c, err := decodeCursor(req.Cursor)
		if err != nil {
			return nil, err
		}
		if snap, err = e.ml.At(multilog.VersionOf(c.Tails)); err != nil {
			return nil, wire.Errorf(wire.CodeInvalidArgument, "cursor: %v", err)
		}
		from, skip = max(from, c.From), c.Skip
	}
	reply := &wire.QueryReply{MultiLog: e.name, Schema: sch.String(), Rows: [][]any{},
		Version: snap.NumRecords(), Consistency: "snapshot"}
	for _, c := range cols {
		reply.Columns = append(reply.Columns, wire.ColumnInfo{Name: c.Name, Type: c.TypeString()})
	}
	rows, err := sel.rows(snap, from, to)
	if err != nil {
		return nil, err
	}
	lastTS, sameTS := int64(math.MinInt64), 0
	n := 0
	for rows.Next() {
		if n++; n%ctxCheckEvery == 0 && ctx.Err() != nil {
			reply.Truncated, reply.Reason = true, "time"
			if len(reply.Rows) > 0 || req.Cursor != "" {
				reply.NextCursor = (&cursor{Tails: snap.Version().Tails(), From: lastTS, Skip: sameTS}).encode()
			}
			break
		}
		ts := rows.Timestamp()
		if skip > 0 && ts == from {
			skip--
			sameTS++
			lastTS = ts
			continue
		}
		skip = 0
		if len(reply.Rows) == limit {
			reply.Truncated, reply.Reason = true, "limit"
			reply.NextCursor = (&cursor{Tails: snap.Version().Tails(), From: lastTS, Skip: sameTS}).encode()
			break
		}
		rec := rows.Record()
		row := make([]any, len(cols))
		for i, c := range cols {
			row[i] = jsonValue(c.Get(rec))
		}
		reply.Rows = append(reply.Rows, row)
		if req.Raw {
			reply.Raw = append(reply.Raw, append([]byte(nil), rec...))
		}
		if ts == lastTS {
			sameTS++
		} else {
			lastTS, sameTS = ts, 1
		}
	}
	reply.Count = len(reply.Rows)
	return reply, nil
}

func selectColumns(sch *schema.Schema, names []string) ([]*schema.Column, error) {
	var cols []*schema.Column
	if len(names) == 0 {
		for i := range sch.Columns {
			cols = append(cols, &sch.Columns[i])
		}
		return cols, nil
	}
	for _, n := range names {
		c, ok := sch.Column(n)
		if !ok {
			return nil, wire.Errorf(wire.CodeInvalidArgument, "column %q is not in the schema", n)
		}
		cols = append(cols, c)
	}
	return cols, nil
}

func jsonValue(v schema.Value) any {
	if v.Type == schema.String {
		return strings.TrimRight(string(v.B), "\x00")
	}
	if v.Type.IsFloat() && (math.IsNaN(v.F) || math.IsInf(v.F, 0)) {
		return v.String()
	}
	return v.Any()
}

func numeric(c *schema.Column, rec []byte) float64 {
	v := c.Get(rec)
	switch {
	case v.Type.IsSigned():
		return float64(v.I)
	case v.Type.IsFloat():
		return v.F
	default:
		return float64(v.U)
	}
}

// accumulator computes one aggregate function.
type accumulator struct {
	fn    expr.AggFunc
	col   *schema.Column
	count uint64
	sum   float64
	min   float64
	max   float64
}

func newAccumulator(a *expr.Aggregate) *accumulator {
	return &accumulator{fn: a.Func, col: a.Column, min: math.Inf(1), max: math.Inf(-1)}
}

func (a *accumulator) add(rec []byte) {
	a.count++
	if a.col == nil || a.fn == expr.Count {
		return
	}
	v := numeric(a.col, rec)
	a.sum += v
	a.min = math.Min(a.min, v)
	a.max = math.Max(a.max, v)
}

func (a *accumulator) value() float64 {
	switch a.fn {
	case expr.Count:
		return float64(a.count)
	case expr.Sum:
		return a.sum
	case expr.Min:
		if a.count == 0 {
			return 0
		}
		return a.min
	case expr.Max:
		if a.count == 0 {
			return 0
		}
		return a.max
	case expr.Avg:
		if a.count == 0 {
			return 0
		}
		return a.sum / float64(a.count)
	}
	return math.NaN()
}

func compileAggregate(src string, sch *schema.Schema) (*expr.Aggregate, error) {
	a, err := expr.CompileAggregate(src, sch)
	if err != nil {
		return nil, exprError(err)
	}
	if a.Column != nil && !a.Column.Type.IsNumeric() && a.Column.Type != schema.Bool && a.Func != expr.Count {
		return nil, wire.Errorf(wire.CodeInvalidExpr, "%s: column %s is %s, not a number", src, a.Column.Name, a.Column.TypeString())
	}
	return a, nil
}

// Aggregate implements Engine.
func (s *Store) Aggregate(ctx context.Context, req wire.AggregateRequest) (*wire.AggregateReply, error) {
	s.mu.RLock()
	e, err := s.entry(req.MultiLog)
	var named *namedAggregate
	if err == nil && req.Name != "" {
		var ok bool
		if named, ok = e.aggregates[req.Name]; !ok {
			err = wire.Errorf(wire.CodeNotFound, "aggregate %q does not exist in multilog %q", req.Name, req.MultiLog)
		}
	}
	s.mu.RUnlock()
	if err != nil {
		return nil, err
	}
	var agg *expr.Aggregate
	src, filterName := req.Expr, req.Filter
	if named != nil {
		if src != "" || filterName != "" {
			return nil, wire.Errorf(wire.CodeInvalidArgument, "an installed aggregate has its own filter; do not set expr or filter")
		}
		agg, filterName = named.agg, named.spec.Filter
	} else if agg, err = compileAggregate(req.Func, e.ml.Schema()); err != nil {
		return nil, err
	}
	sel, err := s.compile(e, src, filterName)
	if err != nil {
		return nil, err
	}
	from, to := bounds(req.From, req.To)
	snap, to, err := snapshotFor(ctx, e, to)
	if err != nil {
		return nil, err
	}
	acc := newAccumulator(agg)
	rows, err := sel.rows(snap, from, to)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		if acc.count%ctxCheckEvery == ctxCheckEvery-1 && ctx.Err() != nil {
			return nil, wire.Errorf(wire.CodeTimeout, "aggregate %s: time limit reached after %d records", agg, acc.count)
		}
		acc.add(rows.Record())
	}
	return &wire.AggregateReply{MultiLog: e.name, Func: agg.String(), Value: acc.value(), Count: acc.count,
		Version: snap.NumRecords(), Consistency: "snapshot"}, nil
}

// AddFilter implements Engine: the filter becomes a derived filter log of the MultiLog,
// backfilled over the records already stored (the backfill runs here, never blocking writers).
func (s *Store) AddFilter(spec wire.FilterSpec) error {
	s.mu.RLock()
	e, err := s.entry(spec.MultiLog)
	if err == nil {
		if _, ok := e.filters[spec.Name]; ok {
			err = wire.Errorf(wire.CodeAlreadyExists, "filter %q already exists", spec.Name)
		}
	}
	s.mu.RUnlock()
	if err != nil {
		return err
	}
	f, err := expr.Compile(spec.Expr, e.ml.Schema())
	if err != nil {
		return exprError(err)
	}
	if err := e.ml.AddFilter(spec.Name, spec.Expr, multilog.FilterBackfill()); err != nil {
		if errors.Is(err, multilog.ErrExists) {
			return wire.Errorf(wire.CodeAlreadyExists, "filter %q already exists", spec.Name)
		}
		return wire.Errorf(wire.CodeInvalidArgument, "filter %q: %v", spec.Name, err)
	}
	s.mu.Lock()
	e.filters[spec.Name] = &namedFilter{spec: spec, f: f}
	s.mu.Unlock()
	return nil
}

// RemoveFilter implements Engine. A filter used by an aggregate cannot be removed.
func (s *Store) RemoveFilter(ml, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := s.entry(ml)
	if err != nil {
		return err
	}
	if _, ok := e.filters[name]; !ok {
		return wire.Errorf(wire.CodeNotFound, "filter %q does not exist", name)
	}
	for _, a := range e.aggregates {
		if a.spec.Filter == name {
			return wire.Errorf(wire.CodeInvalidArgument, "filter %q is used by aggregate %q; remove that first", name, a.spec.Name)
		}
	}
	if err := e.ml.RemoveFilter(name); err != nil && !errors.Is(err, multilog.ErrNotFound) {
		return wire.Errorf(wire.CodeInternal, "filter %q: %v", name, err)
	}
	delete(e.filters, name)
	return nil
}

// Filters implements Engine.
func (s *Store) Filters(ml string) ([]wire.FilterSpec, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, err := s.entry(ml)
	if err != nil {
		return nil, err
	}
	out := []wire.FilterSpec{}
	for _, f := range e.filters {
		out = append(out, f.spec)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// AddAggregate implements Engine.
func (s *Store) AddAggregate(spec wire.AggregateSpec) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := s.entry(spec.MultiLog)
	if err != nil {
		return err
	}
	if _, ok := e.aggregates[spec.Name]; ok {
		return wire.Errorf(wire.CodeAlreadyExists, "aggregate %q already exists", spec.Name)
	}
	if _, ok := e.filters[spec.Filter]; !ok {
		return wire.Errorf(wire.CodeNotFound, "aggregate %q: filter %q does not exist", spec.Name, spec.Filter)
	}
	agg, err := compileAggregate(spec.Func, e.ml.Schema())
	if err != nil {
		return err
	}
	e.aggregates[spec.Name] = &namedAggregate{spec: spec, agg: agg}
	return nil
}

// RemoveAggregate implements Engine. An aggregate used by a trigger cannot be removed.
func (s *Store) RemoveAggregate(ml, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := s.entry(ml)
	if err != nil {
		return err
	}
	if _, ok := e.aggregates[name]; !ok {
		return wire.Errorf(wire.CodeNotFound, "aggregate %q does not exist", name)
	}
	for _, t := range e.triggers {
		if t.cond.Aggregate == name {
			return wire.Errorf(wire.CodeInvalidArgument, "aggregate %q is used by trigger %q; remove that first", name, t.spec.Name)
		}
	}
	delete(e.aggregates, name)
	return nil
}

// Aggregates implements Engine.
func (s *Store) Aggregates(ml string) ([]wire.AggregateSpec, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, err := s.entry(ml)
	if err != nil {
		return nil, err
	}
	out := []wire.AggregateSpec{}
	for _, a := range e.aggregates {
		out = append(out, a.spec)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// AddTrigger implements Engine.
func (s *Store) AddTrigger(spec wire.TriggerSpec) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := s.entry(spec.MultiLog)
	if err != nil {
		return err
	}
	if _, ok := e.triggers[spec.Name]; ok {
		return wire.Errorf(wire.CodeAlreadyExists, "trigger %q already exists", spec.Name)
	}
	cond, err := expr.ParseTrigger(spec.Condition)
	if err != nil {
		return exprError(err)
	}
	if _, ok := e.aggregates[cond.Aggregate]; !ok {
		return wire.Errorf(wire.CodeNotFound, "trigger %q: aggregate %q does not exist", spec.Name, cond.Aggregate)
	}
	period := time.Duration(spec.PeriodMillis) * time.Millisecond
	if period == 0 {
		period = DefaultPeriod
		spec.PeriodMillis = int(DefaultPeriod / time.Millisecond)
	}
	e.triggers[spec.Name] = &trigger{spec: spec, cond: cond, period: int64(period), next: math.MinInt64}
	return nil
}

// RemoveTrigger implements Engine.
func (s *Store) RemoveTrigger(ml, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := s.entry(ml)
	if err != nil {
		return err
	}
	if _, ok := e.triggers[name]; !ok {
		return wire.Errorf(wire.CodeNotFound, "trigger %q does not exist", name)
	}
	delete(e.triggers, name)
	return nil
}

// Triggers implements Engine.
func (s *Store) Triggers(ml string) ([]wire.TriggerSpec, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, err := s.entry(ml)
	if err != nil {
		return nil, err
	}
	out := []wire.TriggerSpec{}
	for _, t := range e.triggers {
		out = append(out, t.spec)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func indexError(err error) error {
	switch {
	case errors.Is(err, multilog.ErrExists):
		return wire.Errorf(wire.CodeAlreadyExists, "%v", err)
	case errors.Is(err, multilog.ErrNotFound):
		return wire.Errorf(wire.CodeNotFound, "%v", err)
	case errors.Is(err, multilog.ErrColumn), errors.Is(err, multilog.ErrIndex):
		return wire.Errorf(wire.CodeInvalidArgument, "%v", err)
	}
	return err
}

// AddIndex implements Engine; the index covers existing records too (backfill).
func (s *Store) AddIndex(spec wire.IndexSpec) error {
	s.mu.RLock()
	e, err := s.entry(spec.MultiLog)
	s.mu.RUnlock()
	if err != nil {
		return err
	}
	return indexError(e.ml.AddIndex(spec.Column, 1, multilog.Backfill()))
}

// RemoveIndex implements Engine.
func (s *Store) RemoveIndex(ml, column string) error {
	s.mu.RLock()
	e, err := s.entry(ml)
	s.mu.RUnlock()
	if err != nil {
		return err
	}
	return indexError(e.ml.RemoveIndex(column))
}

// Indexes implements Engine.
func (s *Store) Indexes(ml string) ([]string, error) {
	s.mu.RLock()
	e, err := s.entry(ml)
	s.mu.RUnlock()
	if err != nil {
		return nil, err
	}
	return append([]string{}, e.ml.Indexes()...), nil
}

// monitor evaluates triggers every interval until Close, then once more.
func (s *Store) monitor() {
	defer close(s.done)
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			s.evaluate()
			return
		case <-t.C:
			s.evaluate()
		}
	}
}

// work is one trigger's evaluation plan, taken under the lock and run without it.
type work struct {
	e   *logEntry
	t   *trigger
	agg *namedAggregate
	sel selection
}

func (s *Store) evaluate() {
	var jobs []work
	s.mu.RLock()
	for _, e := range s.logs {
		for _, t := range e.triggers {
			a := e.aggregates[t.cond.Aggregate]
			if a == nil {
				continue
			}
			if e.filters[a.spec.Filter] == nil {
				continue
			}
			jobs = append(jobs, work{e: e, t: t, agg: a, sel: selection{filterName: a.spec.Filter}})
		}
	}
	s.mu.RUnlock()
	watermark := s.watermark()
	for _, j := range jobs {
		s.evaluateTrigger(j, watermark)
	}
}

// evaluateTrigger scans the records since the trigger's next window, computes the aggregate per
// complete window (windows aligned to the period in data time, complete when their end is at or
// below the watermark) and raises an alert for each window whose value satisfies the condition.
// Windows without matching records are not evaluated. Each window is evaluated once.
func (s *Store) evaluateTrigger(j work, watermark int64) {
	t := j.t
	if watermark < math.MinInt64/2 {
		return // nothing stored yet (and keep the window arithmetic far from overflow)
	}
	snap := j.e.ml.Snapshot()
	from := t.next
	if from == math.MinInt64 {
		from = int64(multilog.MinTime)
	}
	var (
		window int64 = math.MinInt64
		acc    *accumulator
		next   = t.next
	)
	flush := func() {
		if acc == nil || acc.count == 0 {
			return
		}
		v := acc.value()
		s.evaluations.Add(1)
		if t.cond.Eval(v) {
			s.onAlert(wire.Alert{MultiLog: j.e.name, Trigger: t.spec.Name, Condition: t.cond.String(),
				Aggregate: t.cond.Aggregate, WindowStart: time.Unix(0, window).UTC(),
				WindowEnd: time.Unix(0, window+t.period).UTC(), Value: v, Op: t.cond.Op.String(),
				Threshold: t.cond.Threshold, Version: snap.NumRecords()})
		}
	}
	rows, err := j.sel.rows(snap, from, int64(multilog.MaxTime))
	if err != nil {
		return // the filter was removed meanwhile
	}
	for rows.Next() {
		ts := rows.Timestamp()
		w := ts - mod(ts, t.period)
		if w > watermark-t.period+1 { // window end w+period > watermark+1: not complete yet
			break
		}
		if w != window {
			flush()
			window, acc = w, newAccumulator(j.agg.agg)
		}
		acc.add(rows.Record())
		next = w + t.period
	}
	flush()
	if watermark == math.MaxInt64 {
		if window != math.MinInt64 {
			next = max(next, window+t.period)
		}
	} else if c := (watermark + 1) - mod(watermark+1, t.period); c > next {
		next = c // windows ending at or before c are complete even without matches
	}
	s.mu.Lock()
	if t.next < next {
		t.next = next
	}
	s.mu.Unlock()
}

func mod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}

var _ Engine = (*Store)(nil)

// String describes the store for logs.
func (s *Store) String() string { return fmt.Sprintf("engine.Store(%d multilogs)", len(s.MultiLogs())) }
