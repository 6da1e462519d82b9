package spray

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// collector exposes a Spray's counters, read at scrape time.
type collector struct {
	s *Spray

	received, decoded, enqueued, decodeErrors, truncated *prometheus.Desc
	dropped, sourceDropped                               *prometheus.Desc
	ringEnqueued, ringDropped, ringLen                   *prometheus.Desc
}

// RegisterMetrics registers the spray's counters with reg (nil: nothing is registered):
//
//	confluo_spray_received_total            frames taken from the source
//	confluo_spray_decoded_total             records produced
//	confluo_spray_decode_errors_total       records of malformed frames (still enqueued)
//	confluo_spray_truncated_total           records whose headers the snap length cut short
//	confluo_spray_enqueued_total            records placed in a ring
//	confluo_spray_dropped_total{reason}     ring_full
//	confluo_spray_source_dropped_total{reason}  kernel (AF_PACKET), missed and no_mbuf (DPDK), errors
//	confluo_spray_ring_enqueued_total{ring}, confluo_spray_ring_dropped_total{ring}, confluo_spray_ring_records{ring}
//
// Every value is read when scraped (Stats), so the packet path pays nothing for metrics.
func (s *Spray) RegisterMetrics(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	c := &collector{
		s:             s,
		received:      prometheus.NewDesc("confluo_spray_received_total", "Frames the spray took from its source.", nil, nil),
		decoded:       prometheus.NewDesc("confluo_spray_decoded_total", "Records the spray produced.", nil, nil),
		decodeErrors:  prometheus.NewDesc("confluo_spray_decode_errors_total", "Records of malformed frames (still enqueued).", nil, nil),
		truncated:     prometheus.NewDesc("confluo_spray_truncated_total", "Records whose headers were cut short by the snap length.", nil, nil),
		enqueued:      prometheus.NewDesc("confluo_spray_enqueued_total", "Records placed in a ring.", nil, nil),
		dropped:       prometheus.NewDesc("confluo_spray_dropped_total", "Records the spray dropped, by reason.", []string{"reason"}, nil),
		sourceDropped: prometheus.NewDesc("confluo_spray_source_dropped_total", "Frames lost before the spray saw them, by reason.", []string{"reason"}, nil),
		ringEnqueued:  prometheus.NewDesc("confluo_spray_ring_enqueued_total", "Records placed in one ring.", []string{"ring"}, nil),
		ringDropped:   prometheus.NewDesc("confluo_spray_ring_dropped_total", "Records dropped because one ring was full.", []string{"ring"}, nil),
		ringLen:       prometheus.NewDesc("confluo_spray_ring_records", "Records waiting in one ring.", []string{"ring"}, nil),
	}
	return reg.Register(c)
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.received, c.decoded, c.decodeErrors, c.truncated, c.enqueued,
		c.dropped, c.sourceDropped, c.ringEnqueued, c.ringDropped, c.ringLen} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(c.received, st.Received)
	counter(c.decoded, st.Decoded)
	counter(c.decodeErrors, st.DecodeErrors)
	counter(c.truncated, st.Truncated)
	counter(c.enqueued, st.Enqueued)
	counter(c.dropped, st.DroppedRingFull, "ring_full")
	counter(c.sourceDropped, st.Source.KernelDrops, "kernel")
	counter(c.sourceDropped, st.Source.Missed, "missed")
	counter(c.sourceDropped, st.Source.NoMbuf, "no_mbuf")
	counter(c.sourceDropped, st.Source.Errors, "errors")
	for i, r := range st.Rings {
		ring := strconv.Itoa(i)
		counter(c.ringEnqueued, r.Enqueued, ring)
		counter(c.ringDropped, r.DroppedRingFull, ring)
		ch <- prometheus.MustNewConstMetric(c.ringLen, prometheus.GaugeValue, float64(r.Len), ring)
	}
}
