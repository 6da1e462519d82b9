package e2e

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/confluo-go/confluo/coordinator"
	"github.com/confluo-go/confluo/pkg/fleet"
	"github.com/confluo-go/confluo/pkg/wire"
)

// BenchmarkFleet runs 1,000 simulated hosts (CONFLUO_BENCH_HOSTS overrides) on one embedded
// nats-server: fleet agents over in-memory stores, 25 hosts per NATS connection, and one
// coordinator. Sub-benchmarks: a full rollout in waves 10/50/100 %, an atomic snapshot of every
// host, and fan-out queries (a merged aggregate and a time-ordered record query with a limit).
//
//	go test -run '^$' -bench Fleet -benchtime 3x ./coordinator/e2e/
func BenchmarkFleet(b *testing.B) {
	n := 1000
	if s := os.Getenv("CONFLUO_BENCH_HOSTS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 1 {
			b.Fatalf("CONFLUO_BENCH_HOSTS=%q", s)
		}
	}
	ns := startServer(b, nil)
	c := startCoordinator(b, connect(b, ns.ClientURL()), func(o *coordinator.Options) {
		o.HeartbeatInterval = time.Second
		o.AckTimeout = 30 * time.Second
		o.SnapshotTimeout, o.SnapshotLease = 5*time.Second, 10*time.Second
		o.QueryTimeout = 10 * time.Second
	})
	const perConn = 25
	var nc *nats.Conn
	agents := make([]*simAgent, n)
	for i := range n {
		if i%perConn == 0 {
			nc = connect(b, ns.ClientURL())
		}
		agents[i] = startAgent(b, nc, fmt.Sprintf("sim%04d", i), map[string]string{"rack": fmt.Sprint("r", i%40)},
			func(o *fleet.Options) { o.HeartbeatInterval, o.RetryInterval = time.Second, 200*time.Millisecond })
		for k := range 10 {
			agents[i].host.Append(k, uint64(k), float64(k))
		}
	}
	waitUp(b, c, n)
	ctx := context.Background()
	cfgs := make([]uint64, 2)
	for i := range cfgs {
		cfg, err := c.PutConfig(ctx, wire.FleetConfig{Comment: fmt.Sprint("bench ", i)})
		if err != nil {
			b.Fatal(err)
		}
		cfgs[i] = cfg.Revision
	}
	// The first rollout also waits until every agent's KV watch is established.
	runRollout := func(rev uint64) *wire.RolloutState {
		st, err := c.StartRollout(ctx, wire.RolloutRequest{Revision: rev, Waves: []int{10, 50, 100}})
		if err != nil {
			b.Fatal(err)
		}
		done := waitRollout(b, c, st.ID)
		if done.State != wire.RolloutDone {
			b.Fatalf("rollout %s: %s %s", done.ID, done.State, done.Reason)
		}
		return done
	}
	runRollout(cfgs[1])

	b.Run("rollout", func(b *testing.B) {
		i := 0
		for b.Loop() {
			runRollout(cfgs[i%2])
			i++
		}
		b.ReportMetric(float64(n)*float64(i)/b.Elapsed().Seconds(), "hosts/s")
		b.ReportMetric(b.Elapsed().Seconds()/float64(i), "s/rollout")
	})
	b.Run("snapshot", func(b *testing.B) {
		var frozen, begin int64
		i := 0
		for b.Loop() {
			snap, err := c.Snapshot(ctx, wire.SnapshotRequest{})
			if err != nil || !snap.Complete || len(snap.Hosts) != n {
				b.Fatalf("snapshot: %v (missing %d)", err, len(snap.Missing))
			}
			frozen += snap.FrozenMicros
			begin += snap.BeginMicros
			i++
		}
		b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(i), "ms/snapshot")
		b.ReportMetric(float64(frozen)/float64(i)/1000, "frozen-ms")
		b.ReportMetric(float64(begin)/float64(i)/1000, "begin-ms")
	})
	b.Run("query-aggregate", func(b *testing.B) {
		i := 0
		for b.Loop() {
			r, err := c.Query(ctx, wire.FleetQueryRequest{Aggregate: &wire.AggregateRequest{Func: "AVG(value)"}})
			if err != nil || r.Partial || r.Aggregate.Count != uint64(10*n) || r.Aggregate.Value != 4.5 {
				b.Fatalf("query: %+v %v", r, err)
			}
			i++
		}
		b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(i), "ms/query")
	})
	b.Run("query-records", func(b *testing.B) {
		i := 0
		for b.Loop() {
			r, err := c.Query(ctx, wire.FleetQueryRequest{Query: &wire.QueryRequest{Limit: 1000}})
			if err != nil || r.Partial || len(r.Rows) != 1000 {
				b.Fatalf("query: partial=%v rows=%d %v", r.Partial, len(r.Rows), err)
			}
			i++
		}
		b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(i), "ms/query")
		b.ReportMetric(float64(10*n*i)/b.Elapsed().Seconds(), "records/s")
	})
}
