package ovs

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics of one Controller, registered on Options.Registerer.
type metrics struct {
	reconciles     prometheus.Counter
	changes        *prometheus.CounterVec
	errors         prometheus.Counter
	reconnects     prometheus.Counter
	purges         prometheus.Counter
	purgeFailures  prometheus.Counter
	flowInstalls   prometheus.Counter
	connectedGauge prometheus.GaugeFunc
}

func newMetrics(reg prometheus.Registerer, c *Controller) (*metrics, error) {
	m := &metrics{
		reconciles: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "confluo_ovs_reconciles_total", Help: "Reconciliation passes run.",
		}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "confluo_ovs_changes_total", Help: "OVSDB changes committed, by kind (created, updated, removed).",
		}, []string{"change"}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "confluo_ovs_reconcile_errors_total", Help: "Reconciliation steps that failed.",
		}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "confluo_ovs_reconnects_total", Help: "OVSDB reconnections after a lost session.",
		}),
		purges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "confluo_ovs_revalidator_purges_total", Help: "revalidator/purge calls after a change.",
		}),
		purgeFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "confluo_ovs_revalidator_purge_failures_total", Help: "revalidator/purge calls that failed.",
		}),
		flowInstalls: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "confluo_ovs_flow_selection_installs_total", Help: "Times OpenFlow selection rules were (re)installed.",
		}),
		connectedGauge: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "confluo_ovs_connected", Help: "1 while the controller has an OVSDB session.",
		}, func() float64 {
			if c.Connected() {
				return 1
			}
			return 0
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, col := range []prometheus.Collector{m.reconciles, m.changes, m.errors, m.reconnects, m.purges,
		m.purgeFailures, m.flowInstalls, m.connectedGauge} {
		if err := reg.Register(col); err != nil {
			return nil, err
		}
	}
	return m, nil
}
