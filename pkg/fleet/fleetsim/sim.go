// Package fleetsim is a lightweight simulated host for fleet tests and benchmarks: an in-memory
// record store that implements fleet.Applier, fleet.Freezer and fleet.Responder, so a thousand
// fleet agents can run in one process without a real sidecar.
//
// Records have the schema {timestamp: ULONG, shard: UINT, id: ULONG, value: DOUBLE}; Append stamps
// the timestamp under the store lock, so the freeze watermark is exact: every record stamped
// before a freeze is inside the frozen tails.
//
// Queries understand an empty expression or "id == N"; aggregates SUM(value), MIN(value),
// MAX(value), AVG(value) and COUNT(*).
package fleetsim

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/confluo-go/confluo/pkg/fleet"
	"github.com/confluo-go/confluo/pkg/wire"
)

// ErrApply is the error a host configured to fail a revision returns.
var ErrApply = errors.New("fleetsim: apply failed")

// Record is one simulated record.
type Record struct {
	Timestamp int64
	Shard     int
	ID        uint64
	Value     float64
}

// Host is a simulated host. Safe for concurrent use.
type Host struct {
	Name string

	mu         sync.Mutex // guards everything below
	shards     [][]Record
	frozen     []uint64 // published tails pinned by a freeze, nil when not frozen
	lastTS     int64
	applied    []uint64 // revisions applied, in order
	failRevs   map[uint64]bool
	applyDelay time.Duration
	alerts     []wire.Alert
	freezes    int
	releases   int
}

var _ fleet.Applier = (*Host)(nil)
var _ fleet.Freezer = (*Host)(nil)
var _ fleet.Responder = (*Host)(nil)

// NewHost returns a host with n shards.
func NewHost(name string, shards int) *Host {
	return &Host{Name: name, shards: make([][]Record, max(shards, 1)), failRevs: map[uint64]bool{}}
}

// FailRevision makes Apply of rev fail.
func (h *Host) FailRevision(rev uint64) {
	h.mu.Lock()
	h.failRevs[rev] = true
	h.mu.Unlock()
}

// SetApplyDelay makes Apply take d.
func (h *Host) SetApplyDelay(d time.Duration) {
	h.mu.Lock()
	h.applyDelay = d
	h.mu.Unlock()
}

// Applied returns the revisions applied, in order.
func (h *Host) Applied() []uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]uint64(nil), h.applied...)
}

// Apply implements fleet.Applier.
func (h *Host) Apply(ctx context.Context, cfg *wire.FleetConfig) error {
	h.mu.Lock()
	fail, delay := h.failRevs[cfg.Revision], h.applyDelay
	h.mu.Unlock()
	if delay > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
	}
	if fail {
		return fmt.Errorf("%w: revision %d on %s", ErrApply, cfg.Revision, h.Name)
	}
	h.mu.Lock()
	h.applied = append(h.applied, cfg.Revision)
	h.mu.Unlock()
	return nil
}

// Append stores a record with the given id and value in shard, stamped now (strictly after every
// earlier record of the host), and returns its timestamp.
func (h *Host) Append(shard int, id uint64, value float64) int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	ts := time.Now().UnixNano()
	if ts <= h.lastTS {
		ts = h.lastTS + 1
	}
	h.lastTS = ts
	s := shard % len(h.shards)
	h.shards[s] = append(h.shards[s], Record{Timestamp: ts, Shard: s, ID: id, Value: value})
	return ts
}

// AppendAt stores a record with an explicit timestamp (for scripted tests).
func (h *Host) AppendAt(shard int, ts int64, id uint64, value float64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lastTS = max(h.lastTS, ts)
	s := shard % len(h.shards)
	h.shards[s] = append(h.shards[s], Record{Timestamp: ts, Shard: s, ID: id, Value: value})
}

// AddAlert records an alert the Alerts query returns.
func (h *Host) AddAlert(al wire.Alert) {
	h.mu.Lock()
	h.alerts = append(h.alerts, al)
	h.mu.Unlock()
}

// Frozen reports whether the host is frozen, and how many freezes and releases it saw.
func (h *Host) Frozen() (frozen bool, freezes, releases int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.frozen != nil, h.freezes, h.releases
}

// Freeze implements fleet.Freezer.
func (h *Host) Freeze() (fleet.Frozen, func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	tails := make([]uint64, len(h.shards))
	for i, s := range h.shards {
		tails[i] = uint64(len(s))
	}
	h.frozen = tails
	h.freezes++
	// Appends stamp under mu and strictly increase, so every record stamped at or before lastTS
	// is inside tails, and every later one is stamped after lastTS.
	wm := max(h.lastTS, time.Now().UnixNano()-1)
	var once sync.Once
	return fleet.Frozen{Tails: append([]uint64(nil), tails...), Watermark: wm}, func() {
		once.Do(func() {
			h.mu.Lock()
			h.frozen = nil
			h.releases++
			h.mu.Unlock()
		})
	}
}

// visible returns the records visible under pin (or the frozen/current state), in time order.
func (h *Host) visible(pin *wire.Pin, from, to int64) ([]Record, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	tails := h.frozen
	var cut int64
	if pin != nil {
		if len(pin.Tails) != len(h.shards) {
			return nil, wire.Errorf(wire.CodeInvalidArgument, "snapshot %d has %d tails, host %s has %d shards",
				pin.Snapshot, len(pin.Tails), h.Name, len(h.shards))
		}
		tails, cut = pin.Tails, pin.CutTime
	}
	var out []Record
	for i, s := range h.shards {
		n := uint64(len(s))
		if tails != nil {
			if tails[i] > n {
				return nil, wire.Errorf(wire.CodeInvalidArgument, "snapshot tail %d beyond shard %d's %d records", tails[i], i, n)
			}
			n = tails[i]
		}
		for _, r := range s[:n] {
			if cut != 0 && r.Timestamp > cut {
				continue
			}
			if from != 0 && r.Timestamp < from || to != 0 && r.Timestamp >= to {
				continue
			}
			out = append(out, r)
		}
	}
	sortRecords(out)
	return out, nil
}

func sortRecords(rs []Record) {
	slices.SortFunc(rs, func(a, b Record) int {
		if c := cmp.Compare(a.Timestamp, b.Timestamp); c != 0 {
			return c
		}
		return cmp.Compare(a.Shard, b.Shard)
	})
}

// Columns of the simulated schema.
var Columns = []wire.ColumnInfo{{Name: "timestamp", Type: "ULONG"}, {Name: "shard", Type: "UINT"}, {Name: "id", Type: "ULONG"}, {Name: "value", Type: "DOUBLE"}}

func parseIDExpr(expr string) (id uint64, has bool, err error) {
	e := strings.TrimSpace(expr)
	if e == "" {
		return 0, false, nil
	}
	rest, ok := strings.CutPrefix(e, "id")
	if ok {
		rest = strings.TrimSpace(rest)
		if v, ok := strings.CutPrefix(rest, "=="); ok {
			n, perr := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			if perr == nil {
				return n, true, nil
			}
		}
	}
	return 0, false, wire.Errorf(wire.CodeInvalidExpr, "fleetsim understands only \"id == N\", not %q", expr)
}

// Query implements fleet.Responder.
func (h *Host) Query(ctx context.Context, req *wire.QueryRequest, pin *wire.Pin) (*wire.QueryReply, error) {
	id, hasID, err := parseIDExpr(req.Expr)
	if err != nil {
		return nil, err
	}
	rs, err := h.visible(pin, int64(req.From), int64(req.To))
	if err != nil {
		return nil, err
	}
	rep := &wire.QueryReply{MultiLog: "sim", Columns: Columns, Consistency: "snapshot", Rows: [][]any{}}
	for _, r := range rs {
		if hasID && r.ID != id {
			continue
		}
		if req.Limit > 0 && len(rep.Rows) == req.Limit {
			rep.Truncated, rep.Reason = true, "limit"
			break
		}
		rep.Rows = append(rep.Rows, []any{r.Timestamp, r.Shard, r.ID, r.Value})
	}
	rep.Count = len(rep.Rows)
	n := uint64(len(rs))
	rep.Completeness = wire.Completeness{Received: n, Stored: n, Ratio: 1}
	return rep, nil
}

// Aggregate implements fleet.Responder.
func (h *Host) Aggregate(ctx context.Context, req *wire.AggregateRequest, pin *wire.Pin) (*wire.AggregateReply, error) {
	id, hasID, err := parseIDExpr(req.Expr)
	if err != nil {
		return nil, err
	}
	fn := strings.ToUpper(strings.ReplaceAll(req.Func, " ", ""))
	switch fn {
	case "SUM(VALUE)", "MIN(VALUE)", "MAX(VALUE)", "AVG(VALUE)", "COUNT(*)", "COUNT(VALUE)":
	default:
		return nil, wire.Errorf(wire.CodeInvalidExpr, "fleetsim: unsupported aggregate %q", req.Func)
	}
	rs, err := h.visible(pin, int64(req.From), int64(req.To))
	if err != nil {
		return nil, err
	}
	rep := &wire.AggregateReply{MultiLog: "sim", Func: req.Func, Consistency: "snapshot"}
	var sum float64
	for _, r := range rs {
		if hasID && r.ID != id {
			continue
		}
		if rep.Count == 0 {
			rep.Value = r.Value
		}
		rep.Count++
		sum += r.Value
		switch fn {
		case "MIN(VALUE)":
			rep.Value = min(rep.Value, r.Value)
		case "MAX(VALUE)":
			rep.Value = max(rep.Value, r.Value)
		}
	}
	switch fn {
	case "SUM(VALUE)":
		rep.Value = sum
	case "AVG(VALUE)":
		if rep.Count > 0 {
			rep.Value = sum / float64(rep.Count)
		}
	case "COUNT(*)", "COUNT(VALUE)":
		rep.Value = float64(rep.Count)
	}
	return rep, nil
}

// Alerts implements fleet.Responder.
func (h *Host) Alerts(ctx context.Context, req *wire.AlertsRequest) (*wire.AlertsReply, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	rep := &wire.AlertsReply{Alerts: []wire.Alert{}}
	for _, al := range h.alerts {
		ts := al.WindowStart.UnixNano()
		if req.From != 0 && ts < int64(req.From) || req.To != 0 && ts >= int64(req.To) {
			continue
		}
		if req.Trigger != "" && al.Trigger != req.Trigger {
			continue
		}
		if req.Limit > 0 && len(rep.Alerts) == req.Limit {
			rep.Truncated = true
			break
		}
		rep.Alerts = append(rep.Alerts, al)
	}
	return rep, nil
}
