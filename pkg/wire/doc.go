// Package wire is Confluo-Go's NATS protocol: the versioned subjects, the JSON message types and the
// coded errors that cross the wire. Subscribers (the coordinator, confluoctl, any NATS client) import
// it; nothing in it starts goroutines or holds state, so everything here is safe for concurrent use.
//
// Subjects (tokens in <> are validated by ValidateToken: letters, digits, '-', '_'):
//
//	confluo.v1.alerts.<host>.<trigger>     publish   Alert           a trigger fired
//	confluo.v1.events.flow.<host>          publish   FlowEventBatch  flow events (NetSeer)
//	confluo.v1.heartbeat.<host>            publish   Heartbeat       liveness, labels, capture stats
//	confluo.v1.host.<host>.<command>       request   see Command     request-reply API
//
// A sidecar publishes and answers only under its own <host>.
//
// Every reply is a Response envelope:
//
//	+----------------------------------------------+
//	| {"result": <command's reply type>}           |  success
//	| {"error": {"code": 1005, "description": ..}} |  failure (Error)
//	+----------------------------------------------+
//
// Error codes are stable (never renumbered); the HTTP API answers with the status in brackets:
//
//	1000 bad_request        [400] body is not valid JSON for the command
//	1001 unknown_command    [404] no such command
//	1002 invalid_argument   [400] a field is missing, malformed or out of range
//	1003 invalid_expression [400] an expression does not parse or type-check (position in description)
//	1004 limit_exceeded     [400] a limit above the sidecar's maximum
//	1005 not_found          [404] no such multilog, filter, aggregate, trigger or index
//	1006 already_exists     [409] the name is taken
//	1007 busy               [429] too many concurrent queries
//	1008 timeout            [504] the time limit passed
//	1009 unavailable        [503] starting or shutting down
//	1010 internal           [500] anything else
//	1011 forbidden          [403] not allowed
//	1012 too_large          [413] body larger than MaxRequestBytes
//
// Times in requests are Time values (nanoseconds, RFC 3339, "now" or "-5m"); times in published
// messages are RFC 3339 strings with nanoseconds. See docs/wire.md for examples.
package wire
