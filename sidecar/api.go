package sidecar

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"strings"
	"time"

	"github.com/confluo-go/confluo/pkg/wire"
)

// handle runs one API command; HTTP and NATS both end here, so both doors behave the same. It
// never panics: a panic in a handler becomes an internal error and is counted.
func (s *Sidecar) handle(ctx context.Context, cmd wire.Command, body []byte) (result any, err error) {
	start := time.Now()
	defer func() {
		if r := recover(); r != nil {
			s.logger.Error("api handler panic", "command", string(cmd), "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			result, err = nil, wire.Errorf(wire.CodeInternal, "%s: internal error: %v", cmd, r)
		}
		code := "ok"
		if err != nil {
			code = wire.Wrap(wire.CodeInternal, err).Code.String()
		}
		c := string(cmd)
		if !cmd.Known() {
			c = "unknown"
		}
		s.metrics.requests.WithLabelValues(c, code).Inc()
		s.metrics.requestSeconds.WithLabelValues(c).Observe(time.Since(start).Seconds())
	}()
	if len(body) > wire.MaxRequestBytes {
		return nil, wire.Errorf(wire.CodeTooLarge, "%s: body is %d bytes, the limit is %d", cmd, len(body), wire.MaxRequestBytes)
	}
	if s.stopping.Load() {
		return nil, wire.Errorf(wire.CodeUnavailable, "%s: the sidecar is shutting down", cmd)
	}
	e := s.engine
	switch cmd {
	case wire.CmdQuery:
		var req wire.QueryRequest
		if err := decode(cmd, body, &req); err != nil {
			return nil, err
		}
		return s.query(ctx, req)
	case wire.CmdAggregate:
		var req wire.AggregateRequest
		if err := decode(cmd, body, &req); err != nil {
			return nil, err
		}
		return s.aggregate(ctx, req)
	case wire.CmdAlerts:
		var req wire.AlertsRequest
		if err := decode(cmd, body, &req); err != nil {
			return nil, err
		}
		return s.alerts(req)
	case wire.CmdStats:
		if err := decode(cmd, body, &struct{}{}); err != nil {
			return nil, err
		}
		return s.Stats(), nil
	case wire.CmdMultiLogs:
		if err := decode(cmd, body, &struct{}{}); err != nil {
			return nil, err
		}
		return wire.MultiLogList{MultiLogs: e.MultiLogs()}, nil
	case wire.CmdFilterAdd:
		var spec wire.FilterSpec
		if err := decode(cmd, body, &spec); err != nil {
			return nil, err
		}
		spec.MultiLog = s.multilog(spec.MultiLog)
		if err := wire.ValidateToken("name", spec.Name); err != nil {
			return nil, wire.Errorf(wire.CodeInvalidArgument, "%s: %v", cmd, err)
		}
		return ack(cmd, e.AddFilter(spec), "filter "+spec.Name+" added")
	case wire.CmdAggregateAdd:
		var spec wire.AggregateSpec
		if err := decode(cmd, body, &spec); err != nil {
			return nil, err
		}
		spec.MultiLog = s.multilog(spec.MultiLog)
		if err := wire.ValidateToken("name", spec.Name); err != nil {
			return nil, wire.Errorf(wire.CodeInvalidArgument, "%s: %v", cmd, err)
		}
		return ack(cmd, e.AddAggregate(spec), "aggregate "+spec.Name+" added")
	case wire.CmdTriggerAdd:
		var spec wire.TriggerSpec
		if err := decode(cmd, body, &spec); err != nil {
			return nil, err
		}
		spec.MultiLog = s.multilog(spec.MultiLog)
		if err := wire.ValidateToken("name", spec.Name); err != nil {
			return nil, wire.Errorf(wire.CodeInvalidArgument, "%s: %v", cmd, err)
		}
		if spec.PeriodMillis < 0 || spec.PeriodMillis > 24*3600*1000 {
			return nil, wire.Errorf(wire.CodeInvalidArgument, "%s: period_ms %d is not in [0, 86400000]", cmd, spec.PeriodMillis)
		}
		return ack(cmd, e.AddTrigger(spec), "trigger "+spec.Name+" added")
	case wire.CmdIndexAdd:
		var spec wire.IndexSpec
		if err := decode(cmd, body, &spec); err != nil {
			return nil, err
		}
		spec.MultiLog = s.multilog(spec.MultiLog)
		if spec.Column == "" {
			return nil, wire.Errorf(wire.CodeInvalidArgument, "%s: column is required", cmd)
		}
		return ack(cmd, e.AddIndex(spec), "index on "+spec.Column+" added")
	case wire.CmdFilterRemove, wire.CmdAggregateRemove, wire.CmdTriggerRemove, wire.CmdIndexRemove:
		var req wire.NameRequest
		if err := decode(cmd, body, &req); err != nil {
			return nil, err
		}
		if req.Name == "" {
			return nil, wire.Errorf(wire.CodeInvalidArgument, "%s: name is required", cmd)
		}
		ml := s.multilog(req.MultiLog)
		switch cmd {
		case wire.CmdFilterRemove:
			err = e.RemoveFilter(ml, req.Name)
		case wire.CmdAggregateRemove:
			err = e.RemoveAggregate(ml, req.Name)
		case wire.CmdTriggerRemove:
			err = e.RemoveTrigger(ml, req.Name)
		default:
			err = e.RemoveIndex(ml, req.Name)
		}
		return ack(cmd, err, req.Name+" removed")
	case wire.CmdFilterList, wire.CmdAggregateList, wire.CmdTriggerList, wire.CmdIndexList:
		var req wire.NameRequest
		if err := decode(cmd, body, &req); err != nil {
			return nil, err
		}
		ml := s.multilog(req.MultiLog)
		switch cmd {
		case wire.CmdFilterList:
			l, err := e.Filters(ml)
			return wire.FilterList{Filters: nonNil(l)}, coded(cmd, err)
		case wire.CmdAggregateList:
			l, err := e.Aggregates(ml)
			return wire.AggregateList{Aggregates: nonNil(l)}, coded(cmd, err)
		case wire.CmdTriggerList:
			l, err := e.Triggers(ml)
			return wire.TriggerList{Triggers: nonNil(l)}, coded(cmd, err)
		default:
			l, err := e.Indexes(ml)
			return wire.IndexList{Columns: nonNil(l)}, coded(cmd, err)
		}
	}
	return nil, wire.Errorf(wire.CodeUnknownCommand, "unknown command %q (known: %s)", cmd, knownCommands())
}

func knownCommands() string {
	names := make([]string, len(wire.Commands))
	for i, c := range wire.Commands {
		names[i] = string(c)
	}
	return strings.Join(names, ", ")
}

func nonNil[T any](l []T) []T {
	if l == nil {
		return []T{}
	}
	return l
}

func (s *Sidecar) multilog(name string) string {
	if name == "" {
		return s.opts.Store.MultiLog
	}
	return name
}

// decode parses a request body strictly: unknown fields and trailing data are errors naming what
// was wrong. An empty body is the zero request.
func decode(cmd wire.Command, body []byte, dst any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		var syn *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.Is(err, io.ErrUnexpectedEOF):
			return wire.Errorf(wire.CodeBadRequest, "%s: body is not valid JSON: it ends in the middle of a value", cmd)
		case errors.As(err, &syn):
			return wire.Errorf(wire.CodeBadRequest, "%s: body is not valid JSON at offset %d: %v", cmd, syn.Offset, err)
		case errors.As(err, &typ):
			return wire.Errorf(wire.CodeBadRequest, "%s: field %q: expected %s, got JSON %s", cmd, typ.Field, typ.Type, typ.Value)
		}
		return wire.Errorf(wire.CodeBadRequest, "%s: %v", cmd, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return wire.Errorf(wire.CodeBadRequest, "%s: trailing data after the JSON object", cmd)
	}
	return nil
}

func ack(cmd wire.Command, err error, msg string) (any, error) {
	if err != nil {
		return nil, coded(cmd, err)
	}
	return wire.Ack{OK: true, Message: msg}, nil
}

// coded turns an engine error into a wire error; uncoded errors are internal.
func coded(cmd wire.Command, err error) error {
	if err == nil {
		return nil
	}
	var we *wire.Error
	if errors.As(err, &we) {
		return we
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return wire.Errorf(wire.CodeTimeout, "%s: %v", cmd, err)
	}
	return wire.Errorf(wire.CodeInternal, "%s: %v", cmd, err)
}

// admit takes a query slot or refuses with busy; the returned func releases it.
func (s *Sidecar) admit(cmd wire.Command) (func(), error) {
	select {
	case s.querySlots <- struct{}{}:
		s.metrics.queriesRunning.Inc()
		s.queriesRunning.Add(1)
		return func() {
			<-s.querySlots
			s.metrics.queriesRunning.Dec()
			s.queriesRunning.Add(-1)
		}, nil
	default:
		s.queriesRejected.Add(1)
		s.metrics.queriesRejected.Inc()
		return nil, wire.Errorf(wire.CodeBusy, "%s: %d queries are already running; retry later", cmd, cap(s.querySlots))
	}
}

func (s *Sidecar) queryContext(ctx context.Context, cmd wire.Command, timeoutMillis int) (context.Context, context.CancelFunc, error) {
	timeout := s.opts.Query.Timeout
	switch {
	case timeoutMillis < 0:
		return nil, nil, wire.Errorf(wire.CodeInvalidArgument, "%s: timeout_ms %d is negative", cmd, timeoutMillis)
	case timeoutMillis > 0 && time.Duration(timeoutMillis)*time.Millisecond < timeout:
		timeout = time.Duration(timeoutMillis) * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	return ctx, cancel, nil
}

func checkRange(cmd wire.Command, from, to wire.Time) error {
	if from < 0 || to < 0 {
		return wire.Errorf(wire.CodeInvalidArgument, "%s: from/to must not be negative", cmd)
	}
	if to != 0 && from > to {
		return wire.Errorf(wire.CodeInvalidArgument, "%s: from %d is after to %d", cmd, from, to)
	}
	return nil
}

func (s *Sidecar) query(ctx context.Context, req wire.QueryRequest) (any, error) {
	const cmd = wire.CmdQuery
	req.MultiLog = s.multilog(req.MultiLog)
	limit := req.Limit
	switch {
	case limit < 0:
		return nil, wire.Errorf(wire.CodeInvalidArgument, "%s: limit %d is negative", cmd, limit)
	case limit == 0:
		limit = s.opts.Query.DefaultLimit
	case limit > s.opts.Query.MaxLimit:
		return nil, wire.Errorf(wire.CodeLimitExceeded, "%s: limit %d is above the maximum %d", cmd, limit, s.opts.Query.MaxLimit)
	}
	if req.Expr != "" && req.Filter != "" {
		return nil, wire.Errorf(wire.CodeInvalidArgument, "%s: set expr or filter, not both", cmd)
	}
	if err := checkRange(cmd, req.From, req.To); err != nil {
		return nil, err
	}
	ctx, cancel, err := s.queryContext(ctx, cmd, req.TimeoutMillis)
	if err != nil {
		return nil, err
	}
	defer cancel()
	release, err := s.admit(cmd)
	if err != nil {
		return nil, err
	}
	defer release()
	s.queriesTotal.Add(1)
	reply, err := s.engine.Query(ctx, req, limit)
	if err != nil {
		s.queriesFailed.Add(1)
		return nil, coded(cmd, err)
	}
	reply.Completeness = s.completeness()
	return reply, nil
}

func (s *Sidecar) aggregate(ctx context.Context, req wire.AggregateRequest) (any, error) {
	const cmd = wire.CmdAggregate
	req.MultiLog = s.multilog(req.MultiLog)
	if (req.Name == "") == (req.Func == "") {
		return nil, wire.Errorf(wire.CodeInvalidArgument, "%s: set exactly one of name (an installed aggregate) and func (\"SUM(len)\")", cmd)
	}
	if req.Expr != "" && req.Filter != "" {
		return nil, wire.Errorf(wire.CodeInvalidArgument, "%s: set expr or filter, not both", cmd)
	}
	if err := checkRange(cmd, req.From, req.To); err != nil {
		return nil, err
	}
	ctx, cancel, err := s.queryContext(ctx, cmd, req.TimeoutMillis)
	if err != nil {
		return nil, err
	}
	defer cancel()
	release, err := s.admit(cmd)
	if err != nil {
		return nil, err
	}
	defer release()
	s.queriesTotal.Add(1)
	reply, err := s.engine.Aggregate(ctx, req)
	if err != nil {
		s.queriesFailed.Add(1)
		return nil, coded(cmd, err)
	}
	reply.Completeness = s.completeness()
	return reply, nil
}

func (s *Sidecar) alerts(req wire.AlertsRequest) (any, error) {
	const cmd = wire.CmdAlerts
	limit := req.Limit
	switch {
	case limit < 0:
		return nil, wire.Errorf(wire.CodeInvalidArgument, "%s: limit %d is negative", cmd, limit)
	case limit == 0:
		limit = s.opts.Query.DefaultLimit
	case limit > s.opts.Query.MaxLimit:
		return nil, wire.Errorf(wire.CodeLimitExceeded, "%s: limit %d is above the maximum %d", cmd, limit, s.opts.Query.MaxLimit)
	}
	if err := checkRange(cmd, req.From, req.To); err != nil {
		return nil, err
	}
	from, to := req.From.Std(), req.To.Std()
	list, truncated := s.publisher.History(func(a *wire.Alert) bool {
		if req.MultiLog != "" && a.MultiLog != req.MultiLog || req.Trigger != "" && a.Trigger != req.Trigger {
			return false
		}
		if req.From != 0 && a.WindowEnd.Before(from) || req.To != 0 && !a.WindowStart.Before(to) {
			return false
		}
		return true
	}, limit)
	return wire.AlertsReply{Alerts: nonNil(list), Truncated: truncated}, nil
}
