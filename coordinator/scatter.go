package coordinator

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/confluo-go/confluo/pkg/wire"
)

// hostReply is one host's answer in a scatter: the result, or the coded error it answered with.
type hostReply struct {
	result json.RawMessage
	err    *wire.Error
	absent bool // nobody subscribed to the host's subject (NATS no-responders): counted as missing
}

// scatter sends op to every host (payload(host) is the body) with a reply subject per host and
// gathers until every host answered, the timeout passed, or ctx is done. Hosts that did not answer
// are returned in missing, sorted as given.
func (c *Coordinator) scatter(ctx context.Context, hosts []string, op wire.AgentOp, payload func(host string) []byte,
	timeout time.Duration) (replies map[string]hostReply, missing []string, err error) {
	inbox := c.nc.NewRespInbox()
	ch := make(chan *nats.Msg, len(hosts)+16)
	sub, err := c.nc.ChanSubscribe(inbox+".*", ch)
	if err != nil {
		return nil, nil, fmt.Errorf("coordinator: subscribe replies: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	_ = sub.SetPendingLimits(-1, -1)
	replies = make(map[string]hostReply, len(hosts))
	want := make(map[string]bool, len(hosts))
	for _, h := range hosts {
		subj, err := wire.AgentSubject(h, op)
		if err != nil {
			return nil, nil, err
		}
		want[h] = true
		if err := c.nc.PublishRequest(subj, inbox+"."+h, payload(h)); err != nil {
			return nil, nil, fmt.Errorf("coordinator: send %s to %s: %w", op, h, err)
		}
	}
	if err := c.nc.Flush(); err != nil {
		return nil, nil, fmt.Errorf("coordinator: flush: %w", err)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	for len(replies) < len(want) {
		select {
		case <-ctx.Done():
			return replies, missingOf(hosts, replies), ctx.Err()
		case <-t.C:
			return replies, missingOf(hosts, replies), nil
		case m := <-ch:
			h := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
			if !want[h] {
				continue
			}
			if _, dup := replies[h]; dup {
				continue
			}
			if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
				replies[h] = hostReply{absent: true}
				continue
			}
			var resp wire.Response
			dec := json.NewDecoder(bytes.NewReader(m.Data))
			dec.UseNumber()
			if err := dec.Decode(&resp); err != nil {
				replies[h] = hostReply{err: wire.Errorf(wire.CodeBadRequest, "host %s sent a malformed reply: %v", h, err)}
				continue
			}
			replies[h] = hostReply{result: resp.Result, err: resp.Error}
		}
	}
	return replies, missingOf(hosts, replies), nil
}

func missingOf(hosts []string, replies map[string]hostReply) []string {
	var out []string
	for _, h := range hosts {
		if r, ok := replies[h]; !ok || r.absent {
			out = append(out, h)
		}
	}
	return out
}

// decodeNumber decodes a result keeping JSON numbers exact (timestamps are 19-digit integers).
func decodeNumber(raw json.RawMessage, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	return dec.Decode(v)
}
