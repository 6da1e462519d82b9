// Package engine is the sidecar's view of the store: the operations the query and management API
// needs, expressed in pkg/wire types. The product implementation wraps pkg/multilog (see
// multilog.go); tests of the API's error paths use doubles.
package engine

import (
	"context"

	"github.com/confluo-go/confluo/pkg/wire"
)

// Engine answers the sidecar's API. Implementations must be safe for concurrent use: the API calls
// them from many goroutines while ingest appends. Errors that should reach the client with a
// specific code are *wire.Error values (or wrap one); anything else is reported as internal.
type Engine interface {
	// MultiLogs lists the multilogs with their schemas and record counts.
	MultiLogs() []wire.MultiLogInfo
	// Query returns at most limit matching records of [req.From, req.To); limit is already
	// checked against the sidecar's bounds. It stops with Truncated/Reason "time" when ctx ends.
	Query(ctx context.Context, req wire.QueryRequest, limit int) (*wire.QueryReply, error)
	// Aggregate computes an ad-hoc or installed aggregate over a range.
	Aggregate(ctx context.Context, req wire.AggregateRequest) (*wire.AggregateReply, error)

	AddFilter(spec wire.FilterSpec) error
	RemoveFilter(multilog, name string) error
	Filters(multilog string) ([]wire.FilterSpec, error)

	AddAggregate(spec wire.AggregateSpec) error
	RemoveAggregate(multilog, name string) error
	Aggregates(multilog string) ([]wire.AggregateSpec, error)

	AddTrigger(spec wire.TriggerSpec) error
	RemoveTrigger(multilog, name string) error
	Triggers(multilog string) ([]wire.TriggerSpec, error)

	AddIndex(spec wire.IndexSpec) error
	RemoveIndex(multilog, column string) error
	Indexes(multilog string) ([]string, error)

	// AddMultiLog creates an empty multilog with a user schema (schema text); records reach it
	// only through a writer outside the API.
	AddMultiLog(name, schemaText string) error
	// Freeze pins what queries of a multilog see to its current version (ingest goes on) and
	// returns that version's shard tails; release undoes it. See the fleet snapshot protocol.
	Freeze(multilog string) (tails []uint64, release func(), err error)
}

// Pin restricts queries run with the returned context to a version (shard tails) and to records
// with timestamps at or below cutTime (no cut when cutTime is 0).
func WithPin(ctx context.Context, tails []uint64, cutTime int64) context.Context {
	return context.WithValue(ctx, pinKey{}, &pin{tails: tails, cut: cutTime})
}

type pinKey struct{}

type pin struct {
	tails []uint64
	cut   int64
}

func pinFrom(ctx context.Context) *pin {
	p, _ := ctx.Value(pinKey{}).(*pin)
	return p
}

// AlertFunc receives the alerts an engine's monitor raises; the sidecar fills Host, Seq,
// Completeness and Published. It must not block.
type AlertFunc func(wire.Alert)
