package coordinator

import (
	"cmp"
	"context"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/confluo-go/confluo/pkg/wire"
)

// Query fans a query, aggregate or alert listing out to the selected hosts (or the hosts of the
// snapshot it is pinned to) and merges the answers: rows in time order with the global limit,
// aggregates combined (SUM and COUNT add, MIN/MAX compare, AVG from sum and count), alerts in time
// order. Hosts that do not answer in time are named in Missing and make the answer partial.
func (c *Coordinator) Query(ctx context.Context, req wire.FleetQueryRequest) (*wire.FleetQueryReply, error) {
	if c.nc == nil {
		return nil, ErrNotRunning
	}
	ctx, cancel := c.bind(ctx)
	defer cancel()
	n := 0
	for _, set := range []bool{req.Query != nil, req.Aggregate != nil, req.Alerts != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return nil, wire.Errorf(wire.CodeInvalidArgument, "exactly one of query, aggregate, alerts must be set (got %d)", n)
	}
	if req.TimeoutMillis < 0 {
		return nil, wire.Errorf(wire.CodeInvalidArgument, "timeout_ms %d is negative", req.TimeoutMillis)
	}
	timeout := c.opts.QueryTimeout
	if req.TimeoutMillis > 0 {
		timeout = time.Duration(req.TimeoutMillis) * time.Millisecond
	}
	out := &wire.FleetQueryReply{Consistency: wire.ConsistencyBestEffort}
	pins := map[string]*wire.Pin{}
	var hosts []string
	if req.Snapshot != 0 {
		if req.Alerts != nil {
			return nil, wire.Errorf(wire.CodeInvalidArgument, "alerts cannot be pinned to a snapshot")
		}
		snap, err := c.GetSnapshot(ctx, req.Snapshot)
		if err != nil {
			return nil, err
		}
		if !snap.Complete {
			return nil, wire.Errorf(wire.CodeInvalidArgument, "snapshot %d is incomplete (missing %s): queries cannot be pinned to it",
				snap.ID, strings.Join(snap.Missing, ", "))
		}
		want := map[string]bool{}
		for _, h := range req.Hosts {
			want[h] = true
		}
		for _, hc := range snap.Hosts {
			if len(want) > 0 && !want[hc.Host] {
				continue
			}
			hosts = append(hosts, hc.Host)
			pins[hc.Host] = &wire.Pin{Snapshot: snap.ID, Tails: hc.Tails, CutTime: snap.CutTime}
		}
		if len(hosts) == 0 {
			return nil, wire.Errorf(wire.CodeNotFound, "snapshot %d has none of the hosts %v", snap.ID, req.Hosts)
		}
		out.Consistency, out.Snapshot = wire.ConsistencyAtomic, snap.ID
	} else {
		var err error
		if hosts, err = c.selectHosts(req.Hosts, req.Selector); err != nil {
			return nil, err
		}
		now := wire.Time(time.Now().UnixNano())
		var to wire.Time
		switch {
		case req.Query != nil:
			to = req.Query.To
		case req.Aggregate != nil:
			to = req.Aggregate.To
		default:
			to = req.Alerts.To
		}
		if to != 0 && to <= now {
			out.Consistency = wire.ConsistencyTimeCut
		}
	}
	out.Hosts = hosts
	hq := wire.HostQuery{Query: req.Query, Aggregate: req.Aggregate, Alerts: req.Alerts}
	if req.Query != nil && req.Query.Cursor != "" {
		return nil, wire.Errorf(wire.CodeInvalidArgument, "cursors are per host; fleet queries page by time (set from)")
	}
	replies, missing, err := c.scatter(ctx, hosts, wire.AgentQuery, func(h string) []byte {
		q := hq
		q.Pin = pins[h]
		b, _ := json.Marshal(q)
		return b
	}, timeout)
	if err != nil {
		return nil, wire.Wrap(wire.CodeUnavailable, err)
	}
	out.Missing = missing
	var answers []wire.HostQueryReply
	for _, h := range hosts {
		r, ok := replies[h]
		if !ok || r.absent {
			continue
		}
		if r.err != nil {
			if out.Errors == nil {
				out.Errors = map[string]*wire.Error{}
			}
			out.Errors[h] = r.err
			continue
		}
		var hr wire.HostQueryReply
		if err := decodeNumber(r.result, &hr); err != nil {
			if out.Errors == nil {
				out.Errors = map[string]*wire.Error{}
			}
			out.Errors[h] = wire.Errorf(wire.CodeBadRequest, "host %s: malformed reply: %v", h, err)
			continue
		}
		hr.Host = h
		answers = append(answers, hr)
		out.Answered = append(out.Answered, h)
	}
	switch {
	case req.Query != nil:
		mergeRows(out, answers, req.Query.Limit)
	case req.Aggregate != nil:
		if err := mergeAggregate(out, answers, req.Aggregate.Func); err != nil {
			return nil, err
		}
	default:
		mergeAlerts(out, answers, req.Alerts.Limit)
	}
	out.Partial = len(out.Missing) > 0 || len(out.Errors) > 0
	c.met.queries.Inc()
	if out.Partial {
		c.met.partial.Inc()
	}
	return out, nil
}

type row struct {
	ts   int64
	host string
	idx  int
	vals []any
}

func timestampOf(v any) int64 {
	switch x := v.(type) {
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return n
		}
		if f, err := x.Float64(); err == nil {
			return int64(f)
		}
	case float64:
		return int64(x)
	case int64:
		return x
	case string:
		if t, err := time.Parse(time.RFC3339Nano, x); err == nil {
			return t.UnixNano()
		}
	}
	return math.MinInt64
}

func mergeRows(out *wire.FleetQueryReply, answers []wire.HostQueryReply, limit int) {
	var rows []row
	for _, a := range answers {
		q := a.Query
		if q == nil {
			continue
		}
		if out.Columns == nil {
			out.Columns = q.Columns
		} else if !slices.Equal(out.Columns, q.Columns) {
			if out.Errors == nil {
				out.Errors = map[string]*wire.Error{}
			}
			out.Errors[a.Host] = wire.Errorf(wire.CodeInvalidArgument, "host %s answered with other columns than %s", a.Host, answers[0].Host)
			continue
		}
		if q.Truncated {
			out.Truncated = true
		}
		tcol := slices.IndexFunc(q.Columns, func(ci wire.ColumnInfo) bool { return ci.Name == "timestamp" })
		for i, r := range q.Rows {
			var ts int64
			if tcol >= 0 && tcol < len(r) {
				ts = timestampOf(r[tcol])
			}
			rows = append(rows, row{ts: ts, host: a.Host, idx: i, vals: r})
		}
		addCompleteness(&out.Completeness, q.Completeness)
	}
	slices.SortStableFunc(rows, func(a, b row) int {
		if c := cmp.Compare(a.ts, b.ts); c != 0 {
			return c
		}
		if c := cmp.Compare(a.host, b.host); c != 0 {
			return c
		}
		return cmp.Compare(a.idx, b.idx)
	})
	if limit > 0 && len(rows) > limit {
		rows = rows[:limit]
		out.Truncated = true
	}
	out.Rows = make([][]any, len(rows))
	out.RowHosts = make([]string, len(rows))
	for i, r := range rows {
		out.Rows[i], out.RowHosts[i] = r.vals, r.host
	}
	finishCompleteness(&out.Completeness)
}

func aggregateKind(fn string) string {
	f := strings.ToUpper(strings.TrimSpace(fn))
	if i := strings.IndexByte(f, '('); i > 0 {
		f = strings.TrimSpace(f[:i])
	}
	return f
}

func mergeAggregate(out *wire.FleetQueryReply, answers []wire.HostQueryReply, fn string) error {
	kind := aggregateKind(fn)
	switch kind {
	case "SUM", "COUNT", "MIN", "MAX", "AVG":
	default:
		if fn != "" {
			return wire.Errorf(wire.CodeInvalidExpr, "aggregate %q: cannot merge %s across hosts (SUM, COUNT, MIN, MAX, AVG)", fn, kind)
		}
	}
	agg := &wire.AggregateReply{Func: fn, Consistency: out.Consistency}
	var sum float64
	seen := false
	for _, a := range answers {
		r := a.Aggregate
		if r == nil {
			continue
		}
		if agg.MultiLog == "" {
			agg.MultiLog = r.MultiLog
		}
		if agg.Func == "" {
			agg.Func, kind = r.Func, aggregateKind(r.Func)
		}
		addCompleteness(&out.Completeness, r.Completeness)
		switch kind {
		case "SUM", "COUNT":
			sum += r.Value
		case "AVG":
			sum += r.Value * float64(r.Count)
		case "MIN", "MAX":
			if r.Count == 0 {
				agg.Count += r.Count
				continue
			}
			if !seen || kind == "MIN" && r.Value < agg.Value || kind == "MAX" && r.Value > agg.Value {
				agg.Value = r.Value
			}
			seen = true
		}
		agg.Count += r.Count
	}
	switch kind {
	case "SUM", "COUNT":
		agg.Value = sum
	case "AVG":
		if agg.Count > 0 {
			agg.Value = sum / float64(agg.Count)
		}
	}
	finishCompleteness(&out.Completeness)
	agg.Completeness = out.Completeness
	out.Aggregate = agg
	return nil
}

func mergeAlerts(out *wire.FleetQueryReply, answers []wire.HostQueryReply, limit int) {
	var all []wire.Alert
	for _, a := range answers {
		if a.Alerts == nil {
			continue
		}
		if a.Alerts.Truncated {
			out.Truncated = true
		}
		for _, al := range a.Alerts.Alerts {
			if al.Host == "" {
				al.Host = a.Host
			}
			all = append(all, al)
		}
	}
	slices.SortStableFunc(all, func(a, b wire.Alert) int {
		if c := a.WindowStart.Compare(b.WindowStart); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Host, b.Host); c != 0 {
			return c
		}
		return cmp.Compare(a.Seq, b.Seq)
	})
	if limit > 0 && len(all) > limit {
		all, out.Truncated = all[:limit], true
	}
	out.Alerts = all
	if out.Alerts == nil {
		out.Alerts = []wire.Alert{}
	}
}

func addCompleteness(dst *wire.Completeness, c wire.Completeness) {
	dst.Received += c.Received
	dst.Stored += c.Stored
	dst.Dropped += c.Dropped
	for k, v := range c.ByReason {
		if dst.ByReason == nil {
			dst.ByReason = map[string]uint64{}
		}
		dst.ByReason[k] += v
	}
}

func finishCompleteness(c *wire.Completeness) {
	c.Ratio = 1
	if c.Received > 0 {
		c.Ratio = float64(c.Stored) / float64(c.Received)
	}
}
