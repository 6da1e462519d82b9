package coordinator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/confluo-go/confluo/pkg/wire"
)

// apiTimeout bounds one API request (a snapshot or query has its own shorter bounds).
const apiTimeout = 60 * time.Second

// serveAPI answers one confluo.v1.coordinator.<op> request.
func (c *Coordinator) serveAPI(ctx context.Context, m *nats.Msg) {
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	op := wire.CoordinatorOp(m.Subject[len(wire.Root+".coordinator."):])
	result, err := c.handle(ctx, op, m.Data)
	var resp wire.Response
	if err != nil {
		resp.Error = toWire(err)
	} else if b, merr := json.Marshal(result); merr != nil {
		resp.Error = wire.Errorf(wire.CodeInternal, "encode reply: %v", merr)
	} else {
		resp.Result = b
	}
	out, _ := json.Marshal(resp)
	if m.Reply != "" {
		if err := m.Respond(out); err != nil {
			c.log.Warn("respond", "subject", m.Subject, "err", err)
		}
	}
}

func toWire(err error) *wire.Error {
	var we *wire.Error
	switch {
	case errors.As(err, &we):
		return we
	case errors.Is(err, ErrNotRunning):
		return wire.Errorf(wire.CodeUnavailable, "%v", err)
	case errors.Is(err, context.DeadlineExceeded):
		return wire.Errorf(wire.CodeTimeout, "%v", err)
	}
	return wire.Wrap(wire.CodeInternal, err)
}

func decodeReq(data []byte, v any) error {
	if len(data) > wire.MaxRequestBytes {
		return wire.Errorf(wire.CodeTooLarge, "request is %d bytes, the limit is %d", len(data), wire.MaxRequestBytes)
	}
	if len(data) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytesReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return wire.Errorf(wire.CodeBadRequest, "request body: %v", err)
	}
	return nil
}

func (c *Coordinator) handle(ctx context.Context, op wire.CoordinatorOp, data []byte) (any, error) {
	switch op {
	case wire.CoordStatus:
		var req wire.StatusRequest
		if err := decodeReq(data, &req); err != nil {
			return nil, err
		}
		return c.Status(ctx, req.Selector)
	case wire.CoordConfigPut:
		var req wire.FleetConfig
		if err := decodeReq(data, &req); err != nil {
			return nil, err
		}
		return c.PutConfig(ctx, req)
	case wire.CoordConfigGet:
		var req wire.RevisionRequest
		if err := decodeReq(data, &req); err != nil {
			return nil, err
		}
		return c.GetConfig(ctx, req.Revision)
	case wire.CoordRollout:
		var req wire.RolloutRequest
		if err := decodeReq(data, &req); err != nil {
			return nil, err
		}
		return c.StartRollout(ctx, req)
	case wire.CoordRollback:
		var req wire.RollbackRequest
		if err := decodeReq(data, &req); err != nil {
			return nil, err
		}
		return c.Rollback(ctx, req)
	case wire.CoordHistory:
		var req wire.HistoryRequest
		if err := decodeReq(data, &req); err != nil {
			return nil, err
		}
		return c.History(ctx, req.Limit)
	case wire.CoordQuery:
		var req wire.FleetQueryRequest
		if err := decodeReq(data, &req); err != nil {
			return nil, err
		}
		return c.Query(ctx, req)
	case wire.CoordSnapshot:
		var req wire.SnapshotRequest
		if err := decodeReq(data, &req); err != nil {
			return nil, err
		}
		return c.Snapshot(ctx, req)
	case wire.CoordSnapshots:
		var req wire.HistoryRequest
		if err := decodeReq(data, &req); err != nil {
			return nil, err
		}
		return c.Snapshots(ctx, req.Limit)
	}
	return nil, wire.Errorf(wire.CodeUnknownCommand, "unknown coordinator operation %q", op)
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
