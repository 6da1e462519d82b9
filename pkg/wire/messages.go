package wire

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Command is the last token of a request-reply subject and the last path element of the HTTP API
// (POST /v1/<command>).
type Command string

// The commands a sidecar answers. The request and reply types are named next to each.
const (
	CmdQuery           Command = "query"         // QueryRequest -> QueryReply
	CmdAggregate       Command = "aggregate"     // AggregateRequest -> AggregateReply
	CmdAlerts          Command = "alerts"        // AlertsRequest -> AlertsReply
	CmdStats           Command = "stats"         // (empty) -> Stats
	CmdMultiLogs       Command = "multilogs"     // (empty) -> MultiLogList
	CmdFilterAdd       Command = "filter-add"    // FilterSpec -> Ack
	CmdFilterRemove    Command = "filter-rm"     // NameRequest -> Ack
	CmdFilterList      Command = "filter-ls"     // NameRequest (multilog only) -> FilterList
	CmdAggregateAdd    Command = "aggregate-add" // AggregateSpec -> Ack
	CmdAggregateRemove Command = "aggregate-rm"  // NameRequest -> Ack
	CmdAggregateList   Command = "aggregate-ls"  // NameRequest (multilog only) -> AggregateList
	CmdTriggerAdd      Command = "trigger-add"   // TriggerSpec -> Ack
	CmdTriggerRemove   Command = "trigger-rm"    // NameRequest -> Ack
	CmdTriggerList     Command = "trigger-ls"    // NameRequest (multilog only) -> TriggerList
	CmdIndexAdd        Command = "index-add"     // IndexSpec -> Ack
	CmdIndexRemove     Command = "index-rm"      // NameRequest (name = column) -> Ack
	CmdIndexList       Command = "index-ls"      // NameRequest (multilog only) -> IndexList
)

// Commands lists every known command.
var Commands = []Command{
	CmdQuery, CmdAggregate, CmdAlerts, CmdStats, CmdMultiLogs,
	CmdFilterAdd, CmdFilterRemove, CmdFilterList,
	CmdAggregateAdd, CmdAggregateRemove, CmdAggregateList,
	CmdTriggerAdd, CmdTriggerRemove, CmdTriggerList,
	CmdIndexAdd, CmdIndexRemove, CmdIndexList,
}

// Known reports whether c is one of Commands.
func (c Command) Known() bool {
	for _, k := range Commands {
		if c == k {
			return true
		}
	}
	return false
}

// MaxRequestBytes bounds a request body; larger requests get CodeTooLarge.
const MaxRequestBytes = 1 << 20

// Response is the envelope of every reply, on NATS and HTTP: exactly one of Result and Error is set.
//
//	{"result": {...}}                                     success
//	{"error": {"code": 1005, "description": "..."}}       failure
type Response struct {
	Result json.RawMessage `json:"result,omitempty"`
	Error  *Error          `json:"error,omitempty"`
}

// Time is an instant in a request, nanoseconds since the Unix epoch. In JSON it is accepted as a
// number of nanoseconds, a string of digits, an RFC 3339 string ("2026-11-22T00:00:00.5Z"), "now",
// or a negative Go duration relative to now ("-5m"); it is always written as a number. Zero means
// "unbounded" in a range.
type Time int64

// UnmarshalJSON implements json.Unmarshaler.
func (t *Time) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] != '"' {
		if string(b) == "null" {
			*t = 0
			return nil
		}
		n, err := strconv.ParseInt(string(b), 10, 64)
		if err != nil {
			return fmt.Errorf("time %s: not an integer of nanoseconds", b)
		}
		*t = Time(n)
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := ParseTime(s, time.Now())
	if err != nil {
		return err
	}
	*t = v
	return nil
}

// ParseTime parses the text forms of Time relative to now.
func ParseTime(s string, now time.Time) (Time, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return 0, nil
	case s == "now":
		return Time(now.UnixNano()), nil
	case strings.HasPrefix(s, "-"):
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, fmt.Errorf("time %q: not a relative duration like -5m: %w", s, err)
		}
		return Time(now.Add(d).UnixNano()), nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return Time(n), nil
	}
	tt, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, fmt.Errorf("time %q: want nanoseconds, RFC 3339, \"now\" or -duration", s)
	}
	return Time(tt.UnixNano()), nil
}

// Std converts to time.Time (UTC).
func (t Time) Std() time.Time { return time.Unix(0, int64(t)).UTC() }

// Completeness says how much of the mirrored traffic a result or alert could see: everything the
// capture received, what reached the store, and what was dropped on the way, by reason (for example
// "ring_full", "decode_error", "snaplen", "kernel").
type Completeness struct {
	Received uint64            `json:"received"`
	Stored   uint64            `json:"stored"`
	Dropped  uint64            `json:"dropped"`
	ByReason map[string]uint64 `json:"dropped_by_reason,omitempty"`
	// Ratio is (Received-Dropped)/Received, 1 when nothing was received: the share of the
	// traffic that was not lost (records still in flight to the store are not lost).
	Ratio float64 `json:"ratio"`
}

// Alert is published on confluo.v1.alerts.<host>.<trigger> when a trigger fires.
//
//	{"host":"hv1","multilog":"packets","trigger":"syn_flood","condition":"syns >= 100",
//	 "aggregate":"syns","window_start":"2026-11-22T00:00:00Z","window_end":"2026-11-22T00:00:00.001Z",
//	 "value":153,"op":">=","threshold":100,"version":42113,"seq":7,
//	 "completeness":{"received":50000,"stored":50000,"dropped":0,"ratio":1},
//	 "published":"2026-11-22T00:00:00.002Z"}
type Alert struct {
	Host      string `json:"host"`
	MultiLog  string `json:"multilog"`
	Trigger   string `json:"trigger"`
	Condition string `json:"condition"` // the trigger's expression, for example "syns >= 100"
	Aggregate string `json:"aggregate"` // the aggregate the trigger watches
	// WindowStart and WindowEnd bound the trigger's window [start, end).
	WindowStart time.Time `json:"window_start"`
	WindowEnd   time.Time `json:"window_end"`
	Value       float64   `json:"value"`
	Op          string    `json:"op"`
	Threshold   float64   `json:"threshold"`
	// Version is the store version (records visible) the value was computed at.
	Version uint64 `json:"version"`
	// Seq numbers a host's alerts from 1; a subscriber drops duplicates (delivery is at least once).
	Seq          uint64       `json:"seq"`
	Completeness Completeness `json:"completeness"`
	Published    time.Time    `json:"published"`
}

// CaptureStats are the counters of the capture path, summed over sources and rings.
type CaptureStats struct {
	Source   string            `json:"source"` // "pcap:<file>", "afpacket:<iface>", "dpdk:<port>"
	Received uint64            `json:"received"`
	Stored   uint64            `json:"stored"`
	Dropped  map[string]uint64 `json:"dropped,omitempty"`
	Done     bool              `json:"done"` // a finite source (a file) has been fully read
}

// Heartbeat is published on confluo.v1.heartbeat.<host> every heartbeat interval.
type Heartbeat struct {
	Host     string            `json:"host"`
	Version  string            `json:"version"` // software version
	Labels   map[string]string `json:"labels,omitempty"`
	Time     time.Time         `json:"time"`
	Started  time.Time         `json:"started"`
	Capture  CaptureStats      `json:"capture"`
	Records  uint64            `json:"records"`  // records in the packet multilog
	Triggers int               `json:"triggers"` // installed triggers
	Alerts   uint64            `json:"alerts"`   // alerts raised since start
}

// QueryRequest asks for the records of a multilog that match Expr (or the named Filter) in
// [From, To), oldest first, at most Limit of them. Paging: pass the reply's NextCursor as Cursor
// with the same Expr/Filter/From/To; the cursor pins the store version of the first page.
type QueryRequest struct {
	MultiLog string `json:"multilog,omitempty"` // default "packets"
	Expr     string `json:"expr,omitempty"`     // empty: all records
	Filter   string `json:"filter,omitempty"`   // a named filter instead of Expr
	From     Time   `json:"from,omitempty"`
	To       Time   `json:"to,omitempty"`
	Limit    int    `json:"limit,omitempty"` // default and maximum: the sidecar's query options
	Cursor   string `json:"cursor,omitempty"`
	// TimeoutMillis shortens the sidecar's per-query time limit; it cannot extend it.
	TimeoutMillis int  `json:"timeout_ms,omitempty"`
	Raw           bool `json:"raw,omitempty"` // also return the records' bytes (base64)
	// Columns selects the columns of Rows, in this order. Default: every column.
	Columns []string `json:"columns,omitempty"`
}

// ColumnInfo names a column and its schema type text.
type ColumnInfo struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

// QueryReply carries the rows of a query. Rows[i][j] is column Columns[j] of record i: numbers are
// JSON numbers, IPs and MACs their text form, strings with trailing NULs removed.
type QueryReply struct {
	MultiLog   string       `json:"multilog"`
	Schema     string       `json:"schema"`
	Columns    []ColumnInfo `json:"columns"`
	Rows       [][]any      `json:"rows"`
	Raw        [][]byte     `json:"raw,omitempty"`
	Count      int          `json:"count"`
	Truncated  bool         `json:"truncated"`
	Reason     string       `json:"reason,omitempty"` // why truncated: "limit", "time" (both may carry NextCursor)
	NextCursor string       `json:"next_cursor,omitempty"`
	Version    uint64       `json:"version"`
	// Consistency states how the result was served: "snapshot" (one store version).
	Consistency  string       `json:"consistency"`
	Completeness Completeness `json:"completeness"`
}

// AggregateRequest computes Func ("SUM(len)", "COUNT(*)", "AVG(ttl)") over the records matching
// Expr (or the named Filter) in [From, To), or, with Name set, reads an installed aggregate.
type AggregateRequest struct {
	MultiLog      string `json:"multilog,omitempty"`
	Name          string `json:"name,omitempty"`
	Func          string `json:"func,omitempty"`
	Expr          string `json:"expr,omitempty"`
	Filter        string `json:"filter,omitempty"`
	From          Time   `json:"from,omitempty"`
	To            Time   `json:"to,omitempty"`
	TimeoutMillis int    `json:"timeout_ms,omitempty"`
}

// AggregateReply is the value of an aggregate over a range.
type AggregateReply struct {
	MultiLog     string       `json:"multilog"`
	Func         string       `json:"func"`
	Value        float64      `json:"value"`
	Count        uint64       `json:"count"` // records aggregated
	Version      uint64       `json:"version"`
	Consistency  string       `json:"consistency"`
	Completeness Completeness `json:"completeness"`
}

// AlertsRequest lists alerts raised in [From, To), optionally of one trigger.
type AlertsRequest struct {
	MultiLog string `json:"multilog,omitempty"`
	Trigger  string `json:"trigger,omitempty"`
	From     Time   `json:"from,omitempty"`
	To       Time   `json:"to,omitempty"`
	Limit    int    `json:"limit,omitempty"`
}

// AlertsReply lists alerts, oldest first.
type AlertsReply struct {
	Alerts    []Alert `json:"alerts"`
	Truncated bool    `json:"truncated"`
}

// NameRequest names an object of a multilog (a filter, aggregate, trigger, or an index's column).
type NameRequest struct {
	MultiLog string `json:"multilog,omitempty"`
	Name     string `json:"name,omitempty"`
}

// FilterSpec installs a named filter.
type FilterSpec struct {
	MultiLog string `json:"multilog,omitempty" yaml:"multilog,omitempty"`
	Name     string `json:"name" yaml:"name"`
	Expr     string `json:"expr" yaml:"expr"`
}

// AggregateSpec installs a named aggregate Func over the records of the named Filter.
type AggregateSpec struct {
	MultiLog string `json:"multilog,omitempty" yaml:"multilog,omitempty"`
	Name     string `json:"name" yaml:"name"`
	Filter   string `json:"filter" yaml:"filter"`
	Func     string `json:"func" yaml:"func"` // "SUM(len)"
}

// TriggerSpec installs a trigger: Condition ("<aggregate> <op> <threshold>") evaluated every
// PeriodMillis over that window.
type TriggerSpec struct {
	MultiLog     string `json:"multilog,omitempty" yaml:"multilog,omitempty"`
	Name         string `json:"name" yaml:"name"`
	Condition    string `json:"condition" yaml:"condition"`
	PeriodMillis int    `json:"period_ms,omitempty" yaml:"period_ms,omitempty"`
}

// IndexSpec adds an index on a column.
type IndexSpec struct {
	MultiLog string `json:"multilog,omitempty" yaml:"multilog,omitempty"`
	Column   string `json:"column" yaml:"column"`
}

// Ack answers a successful change.
type Ack struct {
	OK      bool   `json:"ok"`
	Message string `json:"message,omitempty"`
}

// FilterList lists a multilog's filters.
type FilterList struct {
	Filters []FilterSpec `json:"filters"`
}

// AggregateList lists a multilog's aggregates.
type AggregateList struct {
	Aggregates []AggregateSpec `json:"aggregates"`
}

// TriggerList lists a multilog's triggers.
type TriggerList struct {
	Triggers []TriggerSpec `json:"triggers"`
}

// IndexList lists a multilog's indexed columns.
type IndexList struct {
	Columns []string `json:"columns"`
}

// MultiLogInfo describes one multilog.
type MultiLogInfo struct {
	Name    string `json:"name"`
	Schema  string `json:"schema"`
	Records uint64 `json:"records"`
	// Bytes is the memory the multilog's logs take.
	Bytes uint64 `json:"bytes"`
	// RecordsDeleted counts the records retention or the memory bound removed (they are not
	// in Records, and no query returns them).
	RecordsDeleted uint64 `json:"records_deleted"`
}

// MultiLogList lists the multilogs of a sidecar.
type MultiLogList struct {
	MultiLogs []MultiLogInfo `json:"multilogs"`
}

// Stats is a sidecar's state.
type Stats struct {
	Host      string         `json:"host"`
	Version   string         `json:"version"`
	Started   time.Time      `json:"started"`
	Capture   CaptureStats   `json:"capture"`
	MultiLogs []MultiLogInfo `json:"multilogs"`
	Queries   QueryStats     `json:"queries"`
	NATS      NATSStats      `json:"nats"`
}

// QueryStats counts the API's queries.
type QueryStats struct {
	Total    uint64 `json:"total"`
	Failed   uint64 `json:"failed"`
	Rejected uint64 `json:"rejected"` // refused because the concurrency bound was reached
	Running  int64  `json:"running"`
}

// NATSStats is the sidecar's NATS connection and alert delivery state.
type NATSStats struct {
	Connected       bool   `json:"connected"`
	URL             string `json:"url"`
	Embedded        bool   `json:"embedded"`
	AlertsPublished uint64 `json:"alerts_published"`
	AlertsBuffered  int    `json:"alerts_buffered"`
	AlertsDropped   uint64 `json:"alerts_dropped"` // buffer full during an outage
}

// FlowEvent is one flow-level event (NetSeer-style): congestion, path change, drop or pause.
type FlowEvent struct {
	Kind     string    `json:"kind"` // "congestion", "path_change", "drop", "pause"
	FlowHash uint32    `json:"flow_hash"`
	Flow     string    `json:"flow"` // "tcp 10.0.0.1:1234 -> 10.0.0.2:80"
	First    time.Time `json:"first"`
	Last     time.Time `json:"last"`
	Count    uint64    `json:"count"`
}

// FlowEventBatch is published on confluo.v1.events.flow.<host>.
type FlowEventBatch struct {
	Host   string      `json:"host"`
	Seq    uint64      `json:"seq"`
	Events []FlowEvent `json:"events"`
}
