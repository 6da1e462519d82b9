package wire

// Fleet protocol: the subjects and messages between the coordinator and the fleet agent that every
// sidecar embeds (package pkg/fleet), and between confluoctl and the coordinator.
//
//	confluo.v1.heartbeat.<host>          publish   AgentHeartbeat (a Heartbeat plus the config revision)
//	confluo.v1.ack.<host>                publish   ConfigAck      a host applied (or failed) a revision
//	confluo.v1.agent.<host>.<op>         request   AgentOp below  only the coordinator sends these
//	confluo.v1.coordinator.<op>          request   CoordinatorOp  confluoctl fleet ... -> coordinator
//
// The desired configuration lives in the JetStream key-value bucket FleetBucket:
//
//	+---------------------+----------------------------------------------------------+
//	| key                 | value                                                    |
//	+---------------------+----------------------------------------------------------+
//	| config.<revision>   | FleetConfig: one immutable revision of the configuration |
//	| host.<host>         | Assignment: the revision <host> should run               |
//	| rollout.<id>        | RolloutState: waves, acks, state                         |
//	| rollout.current     | the id of the rollout in progress ("" when none)         |
//	| snapshot.<epoch>    | SnapshotRecord: a distributed snapshot                   |
//	| meta.<counter>      | counters (revision, epoch, rollout id), updated with CAS |
//	+---------------------+----------------------------------------------------------+
//
// Agents only read config.* and their own host.<host>; only the coordinator writes.

import (
	"encoding/json"
	"time"
)

// FleetBucket is the JetStream key-value bucket holding the fleet's desired state.
const FleetBucket = "confluo_fleet"

// More subject kinds (the third token).
const (
	kindAck         = "ack"
	kindAgent       = "agent"
	kindCoordinator = "coordinator"
)

// AgentOp is the last token of confluo.v1.agent.<host>.<op>.
type AgentOp string

// The operations a fleet agent answers; every reply is a Response envelope.
const (
	AgentSnapshotBegin AgentOp = "snapshot-begin" // SnapshotBegin -> SnapshotBeginReply
	AgentSnapshotEnd   AgentOp = "snapshot-end"   // SnapshotEnd -> SnapshotEndReply
	AgentQuery         AgentOp = "query"          // HostQuery -> HostQueryReply
	AgentPing          AgentOp = "ping"           // (empty) -> AgentHeartbeat
)

// CoordinatorOp is the last token of confluo.v1.coordinator.<op>.
type CoordinatorOp string

// The operations the coordinator answers (confluoctl fleet ...); every reply is a Response.
const (
	CoordStatus    CoordinatorOp = "status"     // StatusRequest -> FleetStatus
	CoordConfigPut CoordinatorOp = "config-put" // FleetConfig -> FleetConfig (with its new Revision)
	CoordConfigGet CoordinatorOp = "config-get" // RevisionRequest -> FleetConfig
	CoordRollout   CoordinatorOp = "rollout"    // RolloutRequest -> RolloutState
	CoordRollback  CoordinatorOp = "rollback"   // RollbackRequest -> RolloutState
	CoordHistory   CoordinatorOp = "history"    // HistoryRequest -> History
	CoordQuery     CoordinatorOp = "query"      // FleetQueryRequest -> FleetQueryReply
	CoordSnapshot  CoordinatorOp = "snapshot"   // SnapshotRequest -> SnapshotRecord
	CoordSnapshots CoordinatorOp = "snapshots"  // HistoryRequest -> SnapshotList
)

// AckSubject is confluo.v1.ack.<host>, where an agent publishes ConfigAck messages.
func AckSubject(host string) (string, error) {
	if err := ValidateToken("host", host); err != nil {
		return "", err
	}
	return Root + "." + kindAck + "." + host, nil
}

// AckWildcard subscribes to every host's acks.
const AckWildcard = Root + "." + kindAck + ".*"

// AgentSubject is confluo.v1.agent.<host>.<op>.
func AgentSubject(host string, op AgentOp) (string, error) {
	if err := ValidateToken("host", host); err != nil {
		return "", err
	}
	if err := ValidateToken("op", string(op)); err != nil {
		return "", err
	}
	return Root + "." + kindAgent + "." + host + "." + string(op), nil
}

// AgentWildcard is confluo.v1.agent.<host>.*, which the agent of <host> subscribes to.
func AgentWildcard(host string) string { return Root + "." + kindAgent + "." + host + ".*" }

// CoordinatorSubject is confluo.v1.coordinator.<op>.
func CoordinatorSubject(op CoordinatorOp) string {
	return Root + "." + kindCoordinator + "." + string(op)
}

// CoordinatorWildcard is what the coordinator subscribes to.
const CoordinatorWildcard = Root + "." + kindCoordinator + ".*"

// AgentHeartbeat is what a fleet agent publishes on confluo.v1.heartbeat.<host>: a Heartbeat (its
// fields are inlined, so any Heartbeat subscriber can decode it) plus the configuration state.
type AgentHeartbeat struct {
	Heartbeat
	// ConfigRevision is the revision the host runs (0: none applied yet).
	ConfigRevision uint64 `json:"config_revision"`
	// ConfigError is the error of the last revision the host failed to apply, if any.
	ConfigError *Error `json:"config_error,omitempty"`
	// IntervalMillis is the heartbeat interval, so the registry knows when a host is late.
	IntervalMillis int64 `json:"interval_ms"`
}

// FleetConfig is one immutable revision of the desired configuration of a host: mirror specs,
// multilog schemas, filters, aggregates, triggers and indexes.
type FleetConfig struct {
	// Revision is assigned by the coordinator (1, 2, ...) when the config is stored.
	Revision uint64    `json:"revision" yaml:"revision,omitempty"`
	Created  time.Time `json:"created" yaml:"created,omitempty"`
	Comment  string    `json:"comment,omitempty" yaml:"comment,omitempty"`
	// Mirrors are OVS mirror specs in the OVS controller's JSON form (opaque to the coordinator).
	Mirrors []json.RawMessage `json:"mirrors,omitempty" yaml:"-"`
	// Schemas maps a multilog name to its schema text ("{src: IPV4, len: USHORT}").
	Schemas    map[string]string `json:"schemas,omitempty" yaml:"schemas,omitempty"`
	Filters    []FilterSpec      `json:"filters,omitempty" yaml:"filters,omitempty"`
	Aggregates []AggregateSpec   `json:"aggregates,omitempty" yaml:"aggregates,omitempty"`
	Triggers   []TriggerSpec     `json:"triggers,omitempty" yaml:"triggers,omitempty"`
	Indexes    []IndexSpec       `json:"indexes,omitempty" yaml:"indexes,omitempty"`
}

// Assignment is the value of host.<host>: the revision the host should run, and the rollout that
// asked for it.
type Assignment struct {
	Revision uint64    `json:"revision"`
	Rollout  string    `json:"rollout"`
	Assigned time.Time `json:"assigned"`
}

// ConfigAck is published by an agent on confluo.v1.ack.<host> after it tried to apply a revision.
// An agent acks again when it sees the same assignment again (a resumed rollout).
type ConfigAck struct {
	Host     string    `json:"host"`
	Revision uint64    `json:"revision"`
	Rollout  string    `json:"rollout"`
	Error    *Error    `json:"error,omitempty"` // nil: applied
	Applied  time.Time `json:"applied"`
}

// Rollout states.
const (
	RolloutRunning    = "running"
	RolloutDone       = "done"
	RolloutHalted     = "halted"     // a wave failed above the threshold
	RolloutSuperseded = "superseded" // a newer rollout or rollback replaced it
)

// RolloutRequest starts rolling Revision (or Config, stored first as a new revision) out.
type RolloutRequest struct {
	Revision uint64       `json:"revision,omitempty"`
	Config   *FleetConfig `json:"config,omitempty"`
	// Selector picks hosts whose labels match every key=value; empty: every known host.
	Selector map[string]string `json:"selector,omitempty"`
	// Waves are cumulative percentages of the selected hosts, ascending, ending at 100.
	// Default [10, 50, 100].
	Waves []int `json:"waves,omitempty"`
	// MaxFailureRatio halts the rollout when more than this fraction of a wave fails (an error or no
	// ack within AckTimeoutMillis). Default 0 (any failure halts).
	MaxFailureRatio float64 `json:"max_failure_ratio,omitempty"`
	// AckTimeoutMillis is how long a wave waits for acks. Default: the coordinator's option (30s).
	AckTimeoutMillis int64 `json:"ack_timeout_ms,omitempty"`
}

// RollbackRequest returns the hosts of a rollout (default: the latest) to the revisions they ran
// before it.
type RollbackRequest struct {
	Rollout          string `json:"rollout,omitempty"`
	AckTimeoutMillis int64  `json:"ack_timeout_ms,omitempty"`
}

// HostResult is one host's outcome in a wave.
type HostResult struct {
	Host     string    `json:"host"`
	Target   uint64    `json:"target"`   // the revision assigned in this wave
	Previous uint64    `json:"previous"` // the revision it was assigned before
	Acked    bool      `json:"acked"`
	Error    *Error    `json:"error,omitempty"` // apply error, or timeout
	At       time.Time `json:"at,omitzero"`
}

// Wave is one step of a rollout.
type Wave struct {
	Percent  int          `json:"percent"`
	Hosts    []HostResult `json:"hosts"`
	Started  time.Time    `json:"started,omitzero"`
	Finished time.Time    `json:"finished,omitzero"`
	Failed   int          `json:"failed"`
}

// RolloutState is a rollout as stored under rollout.<id> and returned by the coordinator.
type RolloutState struct {
	ID              string            `json:"id"`
	Kind            string            `json:"kind"` // "rollout" or "rollback"
	Revision        uint64            `json:"revision"`
	Selector        map[string]string `json:"selector,omitempty"`
	MaxFailureRatio float64           `json:"max_failure_ratio"`
	AckTimeoutMS    int64             `json:"ack_timeout_ms"`
	State           string            `json:"state"`
	Reason          string            `json:"reason,omitempty"`
	CurrentWave     int               `json:"current_wave"`
	Waves           []Wave            `json:"waves"`
	// RollbackOf names the rollout a rollback undoes.
	RollbackOf string    `json:"rollback_of,omitempty"`
	Created    time.Time `json:"created"`
	Updated    time.Time `json:"updated"`
}

// StatusRequest asks for the registry, optionally restricted by a label selector.
type StatusRequest struct {
	Selector map[string]string `json:"selector,omitempty"`
}

// HostStatus is one host in the registry.
type HostStatus struct {
	Host           string            `json:"host"`
	Up             bool              `json:"up"`
	Labels         map[string]string `json:"labels,omitempty"`
	Version        string            `json:"version"`
	LastSeen       time.Time         `json:"last_seen"`
	Missed         int               `json:"missed"` // heartbeats missed right now
	ConfigRevision uint64            `json:"config_revision"`
	Assigned       uint64            `json:"assigned"` // desired revision (host.<host>)
	ConfigError    *Error            `json:"config_error,omitempty"`
	Capture        CaptureStats      `json:"capture"`
	Records        uint64            `json:"records"`
}

// FleetStatus is the registry plus the rollout in progress.
type FleetStatus struct {
	Hosts   []HostStatus  `json:"hosts"`
	Up      int           `json:"up"`
	Down    int           `json:"down"`
	Rollout *RolloutState `json:"rollout,omitempty"`
	// LatestRevision is the newest stored config revision.
	LatestRevision uint64 `json:"latest_revision"`
}

// HistoryRequest bounds a history listing (newest first). Limit 0: 20.
type HistoryRequest struct {
	Limit int `json:"limit,omitempty"`
}

// RevisionRequest names a config revision; 0 is the latest.
type RevisionRequest struct {
	Revision uint64 `json:"revision,omitempty"`
}

// History lists rollouts and config revisions, newest first.
type History struct {
	Rollouts  []RolloutState `json:"rollouts"`
	Revisions []FleetConfig  `json:"revisions"`
}

// Consistency values: how a fleet answer was served.
const (
	// ConsistencyAtomic: every host answered at the tails of one distributed atomic snapshot,
	// restricted to the snapshot's cut time.
	ConsistencyAtomic = "atomic_snapshot"
	// ConsistencyTimeCut: every host answered over the same closed time range ending in the past.
	ConsistencyTimeCut = "time_cut"
	// ConsistencyBestEffort: each host answered at its own current version.
	ConsistencyBestEffort = "best_effort"
)

// SnapshotBegin asks an agent to freeze its published tail for Epoch. The agent releases the
// freeze on SnapshotEnd for the same epoch, or by itself after LeaseMillis.
type SnapshotBegin struct {
	Epoch       uint64 `json:"epoch"`
	LeaseMillis int64  `json:"lease_ms"`
}

// Snapshot begin/end statuses.
const (
	SnapFrozen   = "frozen"   // begin: frozen now (or a duplicate begin of the frozen epoch)
	SnapStale    = "stale"    // the epoch is older than one already seen: nothing done
	SnapReleased = "released" // end: the freeze of the epoch was released
	SnapExpired  = "expired"  // the epoch's lease already ran out; nothing frozen
)

// SnapshotBeginReply carries the frozen published tails.
type SnapshotBeginReply struct {
	Host   string   `json:"host"`
	Epoch  uint64   `json:"epoch"`
	Status string   `json:"status"`
	Tails  []uint64 `json:"tails,omitempty"`
	// Watermark (ns since epoch): every record with a timestamp at or below it is inside Tails.
	Watermark int64 `json:"watermark"`
	// FrozenAt is when the freeze happened (the agent's clock, ns).
	FrozenAt int64 `json:"frozen_at"`
}

// SnapshotEnd releases the freeze of Epoch.
type SnapshotEnd struct {
	Epoch uint64 `json:"epoch"`
}

// SnapshotEndReply says what an end did.
type SnapshotEndReply struct {
	Host   string `json:"host"`
	Epoch  uint64 `json:"epoch"`
	Status string `json:"status"`
}

// SnapshotRequest takes a distributed atomic snapshot of the hosts matching Selector (default:
// every host that is up).
type SnapshotRequest struct {
	Selector      map[string]string `json:"selector,omitempty"`
	Hosts         []string          `json:"hosts,omitempty"`
	TimeoutMillis int64             `json:"timeout_ms,omitempty"`
}

// HostCut is one host's part of a snapshot.
type HostCut struct {
	Host      string   `json:"host"`
	Tails     []uint64 `json:"tails"`
	Watermark int64    `json:"watermark"`
	FrozenAt  int64    `json:"frozen_at"`
}

// SnapshotRecord is a distributed snapshot as stored under snapshot.<epoch>. ID is the epoch.
// A snapshot is Complete when every selected host froze; otherwise Missing names the hosts that
// did not, and queries cannot be pinned to it.
type SnapshotRecord struct {
	ID       uint64    `json:"id"`
	Hosts    []HostCut `json:"hosts"`
	Missing  []string  `json:"missing,omitempty"`
	Complete bool      `json:"complete"`
	// CutTime (ns) is the smallest watermark: pinned queries read records at or below it within
	// each host's tails, which makes the cut consistent across hosts.
	CutTime int64     `json:"cut_time"`
	Started time.Time `json:"started"`
	// BeginMicros is the begin phase: from sending begin until every host's tails arrived.
	BeginMicros int64 `json:"begin_us"`
	// FrozenMicros is how long the snapshot kept hosts frozen (begin sent to every end confirmed).
	FrozenMicros int64 `json:"frozen_us"`
}

// SnapshotList lists snapshots, newest first.
type SnapshotList struct {
	Snapshots []SnapshotRecord `json:"snapshots"`
}

// Pin restricts a host's query to a snapshot: records inside Tails with timestamp <= CutTime.
type Pin struct {
	Snapshot uint64   `json:"snapshot"`
	Tails    []uint64 `json:"tails"`
	CutTime  int64    `json:"cut_time"`
}

// HostQuery is sent to confluo.v1.agent.<host>.query: exactly one of Query, Aggregate, Alerts.
type HostQuery struct {
	Query     *QueryRequest     `json:"query,omitempty"`
	Aggregate *AggregateRequest `json:"aggregate,omitempty"`
	Alerts    *AlertsRequest    `json:"alerts,omitempty"`
	Pin       *Pin              `json:"pin,omitempty"`
}

// HostQueryReply answers a HostQuery (the member matching the request is set).
type HostQueryReply struct {
	Host      string          `json:"host"`
	Query     *QueryReply     `json:"query,omitempty"`
	Aggregate *AggregateReply `json:"aggregate,omitempty"`
	Alerts    *AlertsReply    `json:"alerts,omitempty"`
}

// FleetQueryRequest is a network-wide query: exactly one of Query, Aggregate, Alerts, sent to the
// hosts matching Selector (or the listed Hosts; default every host that is up). Snapshot pins it
// to a complete snapshot. Limit in Query is global.
type FleetQueryRequest struct {
	Selector      map[string]string `json:"selector,omitempty"`
	Hosts         []string          `json:"hosts,omitempty"`
	Query         *QueryRequest     `json:"query,omitempty"`
	Aggregate     *AggregateRequest `json:"aggregate,omitempty"`
	Alerts        *AlertsRequest    `json:"alerts,omitempty"`
	Snapshot      uint64            `json:"snapshot,omitempty"`
	TimeoutMillis int64             `json:"timeout_ms,omitempty"`
}

// FleetQueryReply is the merged answer. Rows are in time order across hosts; RowHosts[i] names the
// host of Rows[i]. Missing names hosts that did not answer in time; Errors holds hosts that
// answered with an error. Partial is set when either is non-empty.
type FleetQueryReply struct {
	Consistency string            `json:"consistency"`
	Snapshot    uint64            `json:"snapshot,omitempty"`
	Hosts       []string          `json:"hosts"` // asked
	Answered    []string          `json:"answered"`
	Missing     []string          `json:"missing,omitempty"`
	Errors      map[string]*Error `json:"errors,omitempty"`
	Partial     bool              `json:"partial"`

	Columns   []ColumnInfo `json:"columns,omitempty"`
	Rows      [][]any      `json:"rows,omitempty"`
	RowHosts  []string     `json:"row_hosts,omitempty"`
	Truncated bool         `json:"truncated,omitempty"`

	Aggregate *AggregateReply `json:"aggregate,omitempty"`
	Alerts    []Alert         `json:"alerts,omitempty"`

	Completeness Completeness `json:"completeness"`
}
