package sidecar

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/confluo-go/confluo/pkg/wire"
)

// FuzzRequest feeds arbitrary bodies to every command: the API answers each with a result or a
// coded error, never panics, and its answer always encodes as a wire.Response.
func FuzzRequest(f *testing.F) {
	for _, seed := range []string{``, `{}`, `{"expr": "x"}`, `{"limit": -1}`, `{"limit": 1e99}`, `[`, `null`,
		`{"from": "-5m", "to": "now"}`, `{"name": "a", "expr": "b"}`, `{"cursor": "!!"}`, `{"timeout_ms": -1}`,
		`{"func": "SUM(x)"}`, `{"name": "t", "condition": "a > 1", "period_ms": 99999999999}`} {
		for i := range wire.Commands {
			f.Add(uint8(i), []byte(seed))
		}
	}
	o := testOptions()
	o.NATS.Disabled, o.HTTP.Listen = true, ""
	s, err := newSidecar(o, nil, nil).init(newStubEngine(), nil, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, c uint8, body []byte) {
		cmd := wire.Command("no-such-command")
		if int(c) < len(wire.Commands) {
			cmd = wire.Commands[c]
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		res, err := s.handle(ctx, cmd, body)
		if err != nil {
			var we *wire.Error
			if !errors.As(err, &we) || strings.HasPrefix(we.Code.String(), "code_") {
				t.Fatalf("%s %q: uncoded error %v", cmd, body, err)
			}
			if we.Code == wire.CodeInternal {
				t.Fatalf("%s %q: internal error %v", cmd, body, err)
			}
		}
		var r wire.Response
		if jerr := json.Unmarshal(encodeResponse(res, err), &r); jerr != nil || (r.Error == nil) == (r.Result == nil) {
			t.Fatalf("%s %q: bad envelope (%v)", cmd, body, jerr)
		}
	})
}

// Without the fleet agent the sidecar publishes its own heartbeats.
func TestHeartbeatWithoutFleet(t *testing.T) {
	o := testOptions()
	o.Fleet.Enabled = false
	o.HeartbeatInterval = 10 * time.Millisecond
	s, _ := startStub(t, o, newStubEngine())
	if s.agent != nil {
		t.Fatal("fleet agent running with fleet.enabled false")
	}
	nc, err := nats.Connect(s.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, _ := nc.SubscribeSync(wire.HeartbeatWildcard)
	m, err := sub.NextMsg(30 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var hb wire.Heartbeat
	if err := json.Unmarshal(m.Data, &hb); err != nil || hb.Host != "testhost" || hb.Records != 1 || m.Subject != "confluo.v1.heartbeat.testhost" {
		t.Fatalf("heartbeat %s on %s (%v)", m.Data, m.Subject, err)
	}
}
