package coordinator

import (
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/confluo-go/confluo/pkg/wire"
)

// FuzzMessages feeds arbitrary heartbeats, acks and API request bodies to the coordinator's
// decoders: they never panic, and a bad API body is always a coded error.
func FuzzMessages(f *testing.F) {
	for _, s := range []string{`{"host":"h1","interval_ms":-5}`, `{"host":"h1","labels":{"a":"b"},"config_revision":3}`,
		`{"host":"h1","revision":1,"error":{"code":1,"description":"x"}}`, `{"waves":[0,100]}`, `{"query":{"from":"-5m"}}`,
		`{"from":"bogus"}`, `null`, "\xff"} {
		f.Add([]byte(s))
	}
	opts := DefaultOptions()
	opts.Conn = &nats.Conn{}
	c, err := New(opts)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<16 {
			return
		}
		c.onHeartbeat(&nats.Msg{Subject: "confluo.v1.heartbeat.h1", Data: data})
		c.onAck(&nats.Msg{Subject: "confluo.v1.ack.h1", Data: data})
		for _, v := range []any{&wire.StatusRequest{}, &wire.FleetConfig{}, &wire.RolloutRequest{}, &wire.RollbackRequest{},
			&wire.HistoryRequest{}, &wire.FleetQueryRequest{}, &wire.SnapshotRequest{}, &wire.RevisionRequest{}} {
			if err := decodeReq(data, v); err != nil {
				if we := toWire(err); we.Code != wire.CodeBadRequest && we.Code != wire.CodeTooLarge {
					t.Fatalf("decode %T: %v", v, err)
				}
			}
		}
	})
}
