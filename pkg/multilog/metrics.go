package multilog

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// registerMetrics exposes the MultiLog's counters through reg. Hot counters are read at scrape
// time (CounterFunc / GaugeFunc): the append path only maintains what it keeps anyway.
func (ml *MultiLog) registerMetrics(reg prometheus.Registerer) error {
	var labels prometheus.Labels
	if ml.opts.Name != "" {
		labels = prometheus.Labels{"log": ml.opts.Name}
	}
	counter := func(name, help string, fn func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "confluo", Subsystem: "multilog", Name: name, Help: help, ConstLabels: labels,
		}, fn)
	}
	gauge := func(name, help string, fn func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "confluo", Subsystem: "multilog", Name: name, Help: help, ConstLabels: labels,
		}, fn)
	}
	m := ml.monitor
	collectors := []prometheus.Collector{
		counter("records_total", "Records appended and published.", func() float64 { return float64(ml.current().NumRecords()) }),
		gauge("segment_bytes", "Bytes held by data-log segments.", func() float64 { return float64(ml.MemoryBytes()) }),
		gauge("derived_bytes", "Bytes held by derived logs (indexes, filters, aggregates), as accounted for the memory bound.", func() float64 { return float64(ml.DerivedBytes()) }),
		counter("monitor_ticks_total", "Monitor passes.", func() float64 { return float64(m.ticks.Load()) }),
		counter("monitor_overruns_total", "Monitor passes longer than the monitor interval.", func() float64 { return float64(m.overruns.Load()) }),
		counter("window_evaluations_total", "Trigger windows evaluated.", func() float64 { return float64(m.evaluations.Load()) }),
		counter("late_buckets_total", "Data for trigger windows already evaluated (ignored).", func() float64 { return float64(m.late.Load()) }),
		counter("alerts_total", "Alerts fired.", func() float64 { return float64(ml.alerts.fired.Load()) }),
		counter("alerts_dropped_total", "Alerts dropped from the alert log or from full subscriber channels.", func() float64 { return float64(ml.alerts.dropped.Load()) }),
	}
	var errs []error
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: metrics: %w", ErrOptions, err)
	}
	return nil
}
