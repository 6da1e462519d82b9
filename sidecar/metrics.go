package sidecar

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the sidecar's Prometheus metrics (confluo_sidecar_*). Hot counters owned by other
// components are read at scrape time through CounterFunc/GaugeFunc.
type metrics struct {
	requests        *prometheus.CounterVec
	requestSeconds  *prometheus.HistogramVec
	queriesRunning  prometheus.Gauge
	queriesRejected prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, s *Sidecar) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "confluo_sidecar_requests_total",
			Help: "API requests (HTTP and NATS) by command and result code.",
		}, []string{"command", "code"}),
		requestSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "confluo_sidecar_request_seconds",
			Help:    "API request latency by command.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}, []string{"command"}),
		queriesRunning: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "confluo_sidecar_queries_running",
			Help: "Queries and aggregates running now.",
		}),
		queriesRejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "confluo_sidecar_queries_rejected_total",
			Help: "Queries refused because max_concurrent queries were running.",
		}),
	}
	if reg == nil {
		return m
	}
	counter := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f)
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	reg.MustRegister(m.requests, m.requestSeconds, m.queriesRunning, m.queriesRejected,
		counter("confluo_sidecar_alerts_raised_total", "Alerts raised by triggers.",
			func() float64 { return float64(s.publisher.raised.Load()) }),
		counter("confluo_sidecar_alerts_published_total", "Alerts delivered to NATS (flushed).",
			func() float64 { return float64(s.publisher.published.Load()) }),
		counter("confluo_sidecar_alerts_dropped_total", "Alerts dropped because the outage buffer was full.",
			func() float64 { return float64(s.publisher.dropped.Load()) }),
		gauge("confluo_sidecar_alerts_buffered", "Alerts waiting for NATS.",
			func() float64 { return float64(s.publisher.Buffered()) }),
		gauge("confluo_sidecar_nats_connected", "1 when the NATS connection is up.",
			func() float64 {
				if s.nc != nil && s.nc.IsConnected() {
					return 1
				}
				return 0
			}),
		counter("confluo_sidecar_capture_received_total", "Packets received by the capture source.",
			func() float64 { return float64(s.captureStats().Received) }),
		counter("confluo_sidecar_capture_stored_total", "Records appended to the packet multilog.",
			func() float64 { return float64(s.captureStats().Stored) }),
		gauge("confluo_sidecar_store_records", "Records in all multilogs.",
			func() float64 {
				var n uint64
				for _, ml := range s.engine.MultiLogs() {
					n += ml.Records
				}
				return float64(n)
			}),
		gauge("confluo_sidecar_store_bytes", "Memory the multilogs take.",
			func() float64 {
				var n uint64
				for _, ml := range s.engine.MultiLogs() {
					n += ml.Bytes
				}
				return float64(n)
			}),
		gauge("confluo_sidecar_triggers", "Triggers installed on the packet multilog.",
			func() float64 {
				l, _ := s.engine.Triggers(s.opts.Store.MultiLog)
				return float64(len(l))
			}),
		counter("confluo_sidecar_trigger_evaluations_total", "Trigger windows evaluated.",
			func() float64 {
				if e, ok := s.engine.(interface{ Evaluations() uint64 }); ok {
					return float64(e.Evaluations())
				}
				return 0
			}),
		counter("confluo_sidecar_queries_total", "Queries and aggregates run (admitted).",
			func() float64 { return float64(s.queriesTotal.Load()) }),
		&dropCollector{s: s, desc: prometheus.NewDesc("confluo_sidecar_capture_dropped_total",
			"Packets dropped on the capture path, by reason.", []string{"reason"}, nil)},
		&ringCollector{s: s, desc: prometheus.NewDesc("confluo_sidecar_ring_depth",
			"Records waiting in each ring.", []string{"ring"}, nil)},
	)
	return m
}

type dropCollector struct {
	s    *Sidecar
	desc *prometheus.Desc
}

func (c *dropCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c *dropCollector) Collect(ch chan<- prometheus.Metric) {
	for reason, n := range c.s.captureStats().Dropped {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(n), reason)
	}
}

type ringCollector struct {
	s    *Sidecar
	desc *prometheus.Desc
}

func (c *ringCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c *ringCollector) Collect(ch chan<- prometheus.Metric) {
	if c.s.capture == nil {
		return
	}
	for i, d := range c.s.capture.RingDepths() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(d), itoa(i))
	}
}
