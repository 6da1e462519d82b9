package coordinator

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the coordinator's Prometheus metrics (confluo_coordinator_*).
type metrics struct {
	heartbeats  prometheus.Counter
	acks        prometheus.Counter
	badMessages prometheus.Counter
	droppedAcks prometheus.Counter
	snapshots   prometheus.Counter
	snapFailed  prometheus.Counter
	queries     prometheus.Counter
	partial     prometheus.Counter
	snapFrozen  prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer, c *Coordinator) *metrics {
	m := &metrics{
		heartbeats:  prometheus.NewCounter(prometheus.CounterOpts{Name: "confluo_coordinator_heartbeats_total", Help: "Heartbeats received."}),
		acks:        prometheus.NewCounter(prometheus.CounterOpts{Name: "confluo_coordinator_acks_total", Help: "Config acks received."}),
		badMessages: prometheus.NewCounter(prometheus.CounterOpts{Name: "confluo_coordinator_bad_messages_total", Help: "Malformed or impersonating heartbeats and acks dropped."}),
		droppedAcks: prometheus.NewCounter(prometheus.CounterOpts{Name: "confluo_coordinator_dropped_acks_total", Help: "Acks dropped because the rollout queue was full."}),
		snapshots:   prometheus.NewCounter(prometheus.CounterOpts{Name: "confluo_coordinator_snapshots_total", Help: "Distributed snapshots taken."}),
		snapFailed:  prometheus.NewCounter(prometheus.CounterOpts{Name: "confluo_coordinator_snapshot_failures_total", Help: "Snapshots where a host did not freeze."}),
		queries:     prometheus.NewCounter(prometheus.CounterOpts{Name: "confluo_coordinator_queries_total", Help: "Fleet queries served."}),
		partial:     prometheus.NewCounter(prometheus.CounterOpts{Name: "confluo_coordinator_partial_queries_total", Help: "Fleet queries answered partially."}),
		snapFrozen: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "confluo_coordinator_snapshot_frozen_seconds", Help: "Time hosts stayed frozen per snapshot.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
	}
	if reg != nil {
		reg.MustRegister(m.heartbeats, m.acks, m.badMessages, m.droppedAcks, m.snapshots, m.snapFailed,
			m.queries, m.partial, m.snapFrozen,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "confluo_coordinator_hosts_up", Help: "Hosts up."},
				func() float64 { up, _ := c.reg.counts(time.Now()); return float64(up) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "confluo_coordinator_hosts_down", Help: "Hosts down."},
				func() float64 { _, down := c.reg.counts(time.Now()); return float64(down) }),
		)
	}
	return m
}
