package logstore

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// registerMetrics exposes the store's counters (confluo_logstore_*) through reg, read at
// scrape time.
func (st *Store) registerMetrics(reg prometheus.Registerer) error {
	var labels prometheus.Labels
	if st.opts.Name != "" {
		labels = prometheus.Labels{"log": st.opts.Name}
	}
	counter := func(name, help string, fn func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "confluo", Subsystem: "logstore", Name: name, Help: help, ConstLabels: labels,
		}, fn)
	}
	gauge := func(name, help string, fn func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "confluo", Subsystem: "logstore", Name: name, Help: help, ConstLabels: labels,
		}, fn)
	}
	c := &st.counters
	u := func(a interface{ Load() uint64 }) func() float64 { return func() float64 { return float64(a.Load()) } }
	collectors := []prometheus.Collector{
		gauge("sealed_memory_bytes", "Bytes of sealed segments held in memory (bounded by MaxMemoryBytes).", func() float64 { return float64(st.memSealed.Load()) }),
		gauge("active_memory_bytes", "Bytes of active segments in memory.", func() float64 { return float64(st.memActive.Load()) }),
		gauge("disk_bytes", "Bytes of segment and archive files.", func() float64 { return float64(st.diskBytes.Load()) }),
		counter("segments_archived_total", "Segments compressed into archive files.", u(&c.archived)),
		counter("archived_raw_bytes_total", "Record bytes of archived segments.", u(&c.archivedRaw)),
		counter("archive_bytes_total", "Archive file bytes written.", u(&c.archivedBytes)),
		counter("segments_released_total", "Sealed segments released from memory.", u(&c.released)),
		counter("segments_deleted_age_total", "Segments deleted by RetentionAge.", u(&c.deletedAge)),
		counter("segments_deleted_disk_total", "Segments deleted by MaxDiskBytes.", u(&c.deletedDisk)),
		counter("segments_deleted_memory_total", "Segments dropped by MaxMemoryBytes.", u(&c.deletedMemory)),
		counter("records_deleted_total", "Records in deleted segments.", u(&c.deletedRecords)),
		counter("flush_errors_total", "Failed background flushes.", u(&c.flushErrors)),
		counter("maintain_errors_total", "Failed background maintenance runs.", u(&c.maintainErrors)),
		gauge("recovery_records_lost", "Records lost to damage found at the last open.", func() float64 { return float64(st.recovery.RecordsLost) }),
		gauge("recovery_torn_batches", "Torn final batches discarded at the last open.", func() float64 { return float64(st.recovery.TornBatches) }),
	}
	var errs []error
	for _, col := range collectors {
		if err := reg.Register(col); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: metrics: %w", ErrOptions, err)
	}
	return nil
}
