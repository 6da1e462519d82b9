package multilog

import (
	"fmt"
	"log/slog"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Options configure a MultiLog. The zero value of a field means its default.
type Options struct {
	// Writers is the number of writer shards, fixed for the life of the MultiLog; Writer(i) is
	// valid for 0 ≤ i < Writers. Default runtime.NumCPU(). At most MaxWriters.
	Writers int

	// SegmentBytes is the size of one data-log segment, rounded down to whole records (at least
	// one record). Segments are allocated once, whole, and are the unit persistence writes and
	// archives. Default 1 MiB. At most 1 GiB.
	SegmentBytes int

	// FilterBucket is the time bucket of filter logs and aggregate partials (Confluo's 1 ms).
	// Default 1 ms. At least 1 µs.
	FilterBucket time.Duration

	// Grace is how long, in data time, the monitor waits after a trigger window ends before it
	// evaluates the window, so late records (reordering within a shard) still count. An alert
	// is delivered about Grace + MonitorInterval after its window closes. It applies to the
	// shard-derived watermark only (see IdleAfter), not to Watermark or AdvanceWatermark.
	// Default FilterBucket.
	Grace time.Duration

	// MonitorInterval is how often the monitor wakes up to evaluate triggers (wall-clock time).
	// Default 1 ms.
	MonitorInterval time.Duration

	// IdleAfter is how long (wall-clock time, as the monitor sees it) a shard may publish
	// nothing before it stops holding the watermark back. The monitor's data-time watermark is
	// the minimum over the shards of their largest appended timestamp, leaving out idle shards
	// (when every shard is idle: the maximum), so a window is complete only when every shard that
	// is still receiving data has passed it. A shard that has never appended counts as active
	// until IdleAfter after New. Not used when Watermark is set. Default 1 s.
	IdleAfter time.Duration

	// Watermark, if set, replaces the shard-derived watermark: it returns the data time up to
	// which every record has been appended (every record with a timestamp at or below it is in
	// the MultiLog; math.MaxInt64: the input has ended). A window [start, end) is complete when
	// end-1 is at or below it; Grace does not apply. The monitor calls it on each pass with its
	// own lock held: it must be quick and must not call back into the MultiLog. Default nil.
	// AdvanceWatermark raises the watermark in either mode.
	Watermark func() int64

	// ManualMonitor disables the monitor goroutine: triggers are evaluated only when Tick is
	// called (deterministic tests, replays driven step by step). Default false.
	ManualMonitor bool

	// MaxAlerts bounds the alerts kept for GetAlerts; older alerts are dropped first (counted by
	// Stats().AlertsDropped). Default 1 << 16.
	MaxAlerts int

	// Name labels this MultiLog's metrics (label "log"); needed when several MultiLogs share a
	// Registerer. Default "".
	Name string

	// Registerer, if set, receives the MultiLog's metrics (confluo_multilog_*). Default nil:
	// no metrics.
	Registerer prometheus.Registerer

	// Logger receives rare, non-hot-path events (trigger errors, subscriber overflow). Nil
	// discards.
	Logger *slog.Logger
}

// MaxWriters is the largest Options.Writers accepted.
const MaxWriters = 1024

// DefaultOptions returns the options with every default filled in.
func DefaultOptions() Options {
	var o Options
	o.fill()
	return o
}

func (o *Options) fill() {
	if o.Writers == 0 {
		o.Writers = runtime.NumCPU()
	}
	if o.SegmentBytes == 0 {
		o.SegmentBytes = 1 << 20
	}
	if o.FilterBucket == 0 {
		o.FilterBucket = time.Millisecond
	}
	if o.Grace == 0 {
		o.Grace = o.FilterBucket
	}
	if o.MonitorInterval == 0 {
		o.MonitorInterval = time.Millisecond
	}
	if o.MaxAlerts == 0 {
		o.MaxAlerts = 1 << 16
	}
	if o.IdleAfter == 0 {
		o.IdleAfter = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports the first option out of range, after defaults are applied.
func (o Options) Validate() error {
	o.fill()
	switch {
	case o.Writers < 1 || o.Writers > MaxWriters:
		return fmt.Errorf("%w: Writers %d not in 1..%d", ErrOptions, o.Writers, MaxWriters)
	case o.SegmentBytes < 1 || o.SegmentBytes > 1<<30:
		return fmt.Errorf("%w: SegmentBytes %d not in 1..1GiB", ErrOptions, o.SegmentBytes)
	case o.FilterBucket < time.Microsecond:
		return fmt.Errorf("%w: FilterBucket %v below 1µs", ErrOptions, o.FilterBucket)
	case o.Grace < 0:
		return fmt.Errorf("%w: Grace %v is negative", ErrOptions, o.Grace)
	case o.MonitorInterval < 0:
		return fmt.Errorf("%w: MonitorInterval %v is negative", ErrOptions, o.MonitorInterval)
	case o.IdleAfter < 0:
		return fmt.Errorf("%w: IdleAfter %v is negative", ErrOptions, o.IdleAfter)
	case o.MaxAlerts < 1:
		return fmt.Errorf("%w: MaxAlerts %d below 1", ErrOptions, o.MaxAlerts)
	}
	return nil
}
