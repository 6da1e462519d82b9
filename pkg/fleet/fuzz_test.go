package fleet

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/confluo-go/confluo/pkg/wire"
)

type stubStore struct{}

func (stubStore) Freeze() (Frozen, func()) { return Frozen{Tails: []uint64{1}}, func() {} }
func (stubStore) Query(context.Context, *wire.QueryRequest, *wire.Pin) (*wire.QueryReply, error) {
	return &wire.QueryReply{}, nil
}
func (stubStore) Aggregate(context.Context, *wire.AggregateRequest, *wire.Pin) (*wire.AggregateReply, error) {
	return &wire.AggregateReply{}, nil
}
func (stubStore) Alerts(context.Context, *wire.AlertsRequest) (*wire.AlertsReply, error) {
	return &wire.AlertsReply{}, nil
}

// FuzzAgentMessages feeds arbitrary bytes to the agent's request handlers: they never panic,
// whatever arrives on the wire (replies are skipped: the messages have no reply subject).
func FuzzAgentMessages(f *testing.F) {
	for _, s := range []string{`{"epoch":1,"lease_ms":10}`, `{"epoch":18446744073709551615}`, `{"query":{"limit":-1}}`,
		`{"aggregate":{},"pin":{"tails":[1,2]}}`, `{"alerts":{},"pin":{}}`, `null`, `[]`, `{"epoch":-1}`, "\x00\xff"} {
		f.Add([]byte(s))
	}
	a, err := NewAgent(&nats.Conn{}, Options{Host: "fuzz", Freezer: stubStore{}, Responder: stubStore{}, DisableConfigWatch: true})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<16 {
			return
		}
		m := &nats.Msg{Data: data}
		a.onBegin(m)
		a.onEnd(m)
		a.onQuery(context.Background(), m)
		a.queries.Wait()
		a.releaseAll()
	})
}
