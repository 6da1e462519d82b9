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
	"time"

	"github.com/confluo-go/confluo/pkg/expr"
	"github.com/confluo-go/confluo/pkg/multilog"
	"github.com/confluo-go/confluo/pkg/schema"
	"github.com/confluo-go/confluo/pkg/wire"
)

// DefaultPeriod is a trigger's window when its spec sets none.
const DefaultPeriod = time.Second

// Store serves the API from real pkg/multilog MultiLogs. Named filters, aggregates and
// triggers are the MultiLog's own: filter logs and aggregates are backfilled over the records
// already stored, triggers are evaluated by the MultiLog's monitor (including windows that
// already hold data) and their alerts reach the Store's AlertFunc through a subscription. Ad-hoc
// aggregates (an expression and a function, no name) scan the records like a query.
//
// Safe for concurrent use. Lock order: Store.mu, then the MultiLog's locks (taken inside its
// calls). Alert delivery runs on a MultiLog's monitor goroutine and takes no lock of the Store.
type Store struct {
	logger  *slog.Logger
	onAlert AlertFunc

	mu     sync.RWMutex
	logs   map[string]*logEntry
	closed bool
}

type logEntry struct {
	name       string
	ml         *multilog.MultiLog
	owned      bool   // created by AddMultiLog: Close closes it
	cancel     func() // ends the alert subscription
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
	spec wire.TriggerSpec
	cond *expr.Trigger
}

// StoreOptions configure a Store.
type StoreOptions struct {
	// Logger receives rare events. Nil discards.
	Logger *slog.Logger
}

// NewStore returns an empty Store; Close stops the monitors of its multilogs.
func NewStore(opts StoreOptions, onAlert AlertFunc) *Store {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if onAlert == nil {
		onAlert = func(wire.Alert) {}
	}
	return &Store{logger: opts.Logger, onAlert: onAlert, logs: map[string]*logEntry{}}
}

// Add registers a MultiLog under a name and subscribes to its alerts. When a trigger window is
// complete is the MultiLog's business: give it multilog.Options.Watermark when a capture
// pipeline knows better than the shards' own timestamps. Close stops its monitor (but does not
// close it: its owner does).
func (s *Store) Add(name string, ml *multilog.MultiLog) error {
	return s.add(name, ml, false)
}

func (s *Store) add(name string, ml *multilog.MultiLog, owned bool) error {
	if err := wire.ValidateToken("multilog", name); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return wire.Errorf(wire.CodeUnavailable, "the store is closed")
	}
	if _, ok := s.logs[name]; ok {
		return wire.Errorf(wire.CodeAlreadyExists, "multilog %q already exists", name)
	}
	e := &logEntry{name: name, ml: ml, owned: owned, filters: map[string]*namedFilter{},
		aggregates: map[string]*namedAggregate{}, triggers: map[string]*trigger{}}
	e.cancel = ml.Subscribe(func(a multilog.Alert) { s.onAlert(wireAlert(name, a)) })
	s.logs[name] = e
	return nil
}

// wireAlert converts a MultiLog alert; the sidecar fills Host, Seq, Completeness and Published.
func wireAlert(multiLog string, a multilog.Alert) wire.Alert {
	w := wire.Alert{MultiLog: multiLog, Trigger: a.Trigger, Condition: a.Condition, Aggregate: a.Aggregate,
		WindowStart: time.Unix(0, a.WindowStart).UTC(), WindowEnd: time.Unix(0, a.WindowEnd).UTC(),
		Value: a.Value}
	if c, err := expr.ParseTrigger(a.Condition); err == nil { // canonical text: always parses
		w.Op, w.Threshold = c.Op.String(), c.Threshold
	}
	for _, t := range a.Version {
		w.Version += t
	}
	return w
}

// Close runs a last monitor pass on every multilog (windows complete by now fire), stops their
// monitors and closes the multilogs the Store created (AddMultiLog). Idempotent.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	logs := make([]*logEntry, 0, len(s.logs))
	for _, e := range s.logs {
		logs = append(logs, e)
	}
	s.mu.Unlock()
	sort.Slice(logs, func(i, j int) bool { return logs[i].name < logs[j].name })
	var errs []error
	for _, e := range logs {
		e.ml.StopMonitor()
		e.ml.Tick()
		e.cancel()
		if e.owned {
			errs = append(errs, e.ml.Close())
		}
	}
	return errors.Join(errs...)
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
			Bytes: e.ml.MemoryBytes(), RecordsDeleted: e.ml.PersistStats().RecordsDeleted})
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

// Evaluations returns how many trigger windows holding data the multilogs' monitors have
// evaluated.
func (s *Store) Evaluations() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var n uint64
	for _, e := range s.logs {
		n += e.ml.Stats().Evaluations
	}
	return n
}

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
	if err := s.add(name, ml, true); err != nil {
		_ = ml.Close()
		return err
	}
	return nil
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
		Version: snap.Version().NumRecords(), Consistency: "snapshot"}
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

// Aggregate implements Engine. A named aggregate is read from the MultiLog's aggregate
// (per-shard partials and roll-ups, consistent at the snapshot); an ad-hoc one (Func over Expr or
// Filter) scans the matching records like a query.
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
	from, to := bounds(req.From, req.To)
	if named != nil {
		if req.Expr != "" || req.Filter != "" {
			return nil, wire.Errorf(wire.CodeInvalidArgument, "an installed aggregate has its own filter; do not set expr or filter")
		}
		snap, to, err := snapshotFor(ctx, e, to)
		if err != nil {
			return nil, err
		}
		v, err := snap.GetAggregate(req.Name, from, to)
		if err != nil {
			return nil, wire.Errorf(wire.CodeNotFound, "aggregate %q: %v", req.Name, err)
		}
		return &wire.AggregateReply{MultiLog: e.name, Func: named.agg.String(), Value: v.Float(), Count: v.Count,
			Version: snap.Version().NumRecords(), Consistency: "snapshot"}, nil
	}
	agg, err := compileAggregate(req.Func, e.ml.Schema())
	if err != nil {
		return nil, err
	}
	sel, err := s.compile(e, req.Expr, req.Filter)
	if err != nil {
		return nil, err
	}
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
		Version: snap.Version().NumRecords(), Consistency: "snapshot"}, nil
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

// storeError maps a MultiLog error to a coded one.
func storeError(err error, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	switch {
	case errors.Is(err, multilog.ErrExists):
		return wire.Errorf(wire.CodeAlreadyExists, "%s: %v", msg, err)
	case errors.Is(err, multilog.ErrNotFound):
		return wire.Errorf(wire.CodeNotFound, "%s: %v", msg, err)
	case errors.Is(err, multilog.ErrExpr):
		return wire.Errorf(wire.CodeInvalidExpr, "%s: %v", msg, err)
	case errors.Is(err, multilog.ErrClosed):
		return wire.Errorf(wire.CodeUnavailable, "%s: %v", msg, err)
	}
	return wire.Errorf(wire.CodeInternal, "%s: %v", msg, err)
}

// AddAggregate implements Engine: the aggregate becomes the MultiLog's, backfilled over what
// its filter already logged (in this goroutine, never blocking writers).
func (s *Store) AddAggregate(spec wire.AggregateSpec) error {
	s.mu.RLock()
	e, err := s.entry(spec.MultiLog)
	if err == nil {
		if _, ok := e.aggregates[spec.Name]; ok {
			err = wire.Errorf(wire.CodeAlreadyExists, "aggregate %q already exists", spec.Name)
		} else if _, ok := e.filters[spec.Filter]; !ok {
			err = wire.Errorf(wire.CodeNotFound, "aggregate %q: filter %q does not exist", spec.Name, spec.Filter)
		}
	}
	s.mu.RUnlock()
	if err != nil {
		return err
	}
	agg, err := compileAggregate(spec.Func, e.ml.Schema())
	if err != nil {
		return err
	}
	if err := e.ml.AddAggregate(spec.Name, spec.Filter, spec.Func, multilog.AggregateBackfill()); err != nil {
		return storeError(err, "aggregate %q", spec.Name)
	}
	s.mu.Lock()
	e.aggregates[spec.Name] = &namedAggregate{spec: spec, agg: agg}
	s.mu.Unlock()
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
	if err := e.ml.RemoveAggregate(name); err != nil && !errors.Is(err, multilog.ErrNotFound) {
		return storeError(err, "aggregate %q", name)
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

// AddTrigger implements Engine: the MultiLog's monitor evaluates the trigger over tumbling
// windows of its period in data time, including the windows that already hold data (so a
// replayed capture fires even when the trigger comes after it); each window fires at most once,
// when it is complete (multilog.Options.Watermark, the shards' timestamps, the end of input).
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
	if spec.PeriodMillis < 0 {
		return wire.Errorf(wire.CodeInvalidArgument, "trigger %q: period %d ms is negative", spec.Name, spec.PeriodMillis)
	}
	period := time.Duration(spec.PeriodMillis) * time.Millisecond
	if period == 0 {
		period = DefaultPeriod
		spec.PeriodMillis = int(DefaultPeriod / time.Millisecond)
	}
	if err := e.ml.InstallTrigger(spec.Name, spec.Condition, period, multilog.TriggerBackfill()); err != nil {
		if errors.Is(err, multilog.ErrExpr) { // the condition parsed: the period is what is wrong
			return wire.Errorf(wire.CodeInvalidArgument, "trigger %q: %v", spec.Name, err)
		}
		return storeError(err, "trigger %q", spec.Name)
	}
	e.triggers[spec.Name] = &trigger{spec: spec, cond: cond}
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
	if err := e.ml.RemoveTrigger(name); err != nil && !errors.Is(err, multilog.ErrNotFound) {
		return storeError(err, "trigger %q", name)
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

var _ Engine = (*Store)(nil)

// String describes the store for logs.
func (s *Store) String() string { return fmt.Sprintf("engine.Store(%d multilogs)", len(s.MultiLogs())) }
