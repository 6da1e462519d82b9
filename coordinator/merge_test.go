package coordinator

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/confluo-go/confluo/pkg/wire"
)

func TestMergeAggregate(t *testing.T) {
	hosts := func(vals ...[2]float64) []wire.HostQueryReply {
		var out []wire.HostQueryReply
		for i, v := range vals {
			out = append(out, wire.HostQueryReply{Host: string(rune('a' + i)), Aggregate: &wire.AggregateReply{Value: v[0], Count: uint64(v[1]),
				Completeness: wire.Completeness{Received: 10, Stored: 9, Dropped: 1, ByReason: map[string]uint64{"ring_full": 1}}}})
		}
		return out
	}
	for _, tc := range []struct {
		fn    string
		in    []wire.HostQueryReply
		want  float64
		count uint64
	}{
		{"SUM(len)", hosts([2]float64{10, 2}, [2]float64{5, 1}), 15, 3},
		{"count(*)", hosts([2]float64{2, 2}, [2]float64{1, 1}), 3, 3},
		{"AVG(len)", hosts([2]float64{10, 1}, [2]float64{1, 3}), 13.0 / 4, 4},
		{"AVG(len)", hosts([2]float64{0, 0}, [2]float64{0, 0}), 0, 0},
		{"MIN(ttl)", hosts([2]float64{0, 0}, [2]float64{7, 2}, [2]float64{3, 1}), 3, 3},
		{"MAX(ttl)", hosts([2]float64{-5, 1}, [2]float64{-9, 2}), -5, 3},
		{"MAX(ttl)", hosts([2]float64{0, 0}), 0, 0},
	} {
		out := &wire.FleetQueryReply{}
		if err := mergeAggregate(out, tc.in, tc.fn); err != nil {
			t.Fatal(err)
		}
		if out.Aggregate.Value != tc.want || out.Aggregate.Count != tc.count {
			t.Errorf("%s over %d hosts = %v (count %d), want %v (%d)", tc.fn, len(tc.in), out.Aggregate.Value, out.Aggregate.Count, tc.want, tc.count)
		}
		n := uint64(len(tc.in))
		if c := out.Completeness; c.Received != 10*n || c.Stored != 9*n || c.ByReason["ring_full"] != n || c.Ratio != 0.9 {
			t.Errorf("%s completeness %+v", tc.fn, c)
		}
	}
	if err := mergeAggregate(&wire.FleetQueryReply{}, nil, "P99(len)"); err == nil {
		t.Error("P99 merged")
	}
}

func TestMergeRows(t *testing.T) {
	cols := []wire.ColumnInfo{{Name: "timestamp", Type: "ULONG"}, {Name: "v", Type: "INT"}}
	big := json.Number("1763769600000000003") // beyond float64 precision
	answers := []wire.HostQueryReply{
		{Host: "b", Query: &wire.QueryReply{Columns: cols, Rows: [][]any{{json.Number("1763769600000000001"), 1}, {big, 3}}}},
		{Host: "a", Query: &wire.QueryReply{Columns: cols, Rows: [][]any{{json.Number("1763769600000000002"), 2}, {big, 4}}}},
		{Host: "c", Query: &wire.QueryReply{Columns: cols[:1], Rows: [][]any{{json.Number("1")}}}},
	}
	out := &wire.FleetQueryReply{}
	mergeRows(out, answers, 3)
	if len(out.Rows) != 3 || !out.Truncated || out.Errors["c"] == nil {
		t.Fatalf("merged %+v", out)
	}
	want := []string{"b", "a", "a"} // ties in time broken by host name
	for i, h := range want {
		if out.RowHosts[i] != h {
			t.Errorf("row %d from %s, want %s (%v)", i, out.RowHosts[i], h, out.Rows)
		}
	}
	if out.Rows[2][1] != 4 {
		t.Errorf("row 2 = %v, want value 4 (host a's tie)", out.Rows[2])
	}
}

func TestRegistry(t *testing.T) {
	r := newRegistry(time.Second, 3)
	t0 := time.Unix(1000, 0)
	hb := wire.AgentHeartbeat{Heartbeat: wire.Heartbeat{Host: "h1", Labels: map[string]string{"rack": "r1"}}, IntervalMillis: 100}
	if !r.observe(hb, t0) || r.observe(hb, t0) {
		t.Fatal("observe should report up only the first time")
	}
	if !r.isUp("h1", t0.Add(250*time.Millisecond)) || r.isDown("h1", t0.Add(250*time.Millisecond)) {
		t.Error("down too early: the host states a 100ms interval, 3 may be missed")
	}
	if ch := r.sweep(t0.Add(350 * time.Millisecond)); len(ch) != 1 || ch[0].up || !r.isDown("h1", t0.Add(350*time.Millisecond)) {
		t.Errorf("sweep %+v", ch)
	}
	if r.isDown("ghost", t0) {
		t.Error("unknown host is down")
	}
	if got := r.selectUp(map[string]string{"rack": "r1"}, t0); len(got) != 1 {
		t.Errorf("selectUp %v", got)
	}
	if got := r.selectUp(map[string]string{"rack": "r2"}, t0); len(got) != 0 {
		t.Errorf("selectUp r2 %v", got)
	}
	r.ack(wire.ConfigAck{Host: "h1", Revision: 4})
	if st := r.status(nil, t0, nil); st[0].ConfigRevision != 4 || st[0].ConfigError != nil {
		t.Errorf("after ack %+v", st[0])
	}
	r.ack(wire.ConfigAck{Host: "h1", Revision: 5, Error: wire.Errorf(wire.CodeInvalidArgument, "bad")})
	if st := r.status(nil, t0, nil); st[0].ConfigRevision != 4 || st[0].ConfigError == nil {
		t.Errorf("after failed ack %+v", st[0])
	}
}
