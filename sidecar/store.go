package sidecar

import (
	"fmt"
	"log/slog"
	"math"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/confluo-go/confluo/pkg/multilog"
	"github.com/confluo-go/confluo/pkg/packet"
	"github.com/confluo-go/confluo/pkg/schema"
	"github.com/confluo-go/confluo/sidecar/internal/engine"
)

// openStore creates (or, with store.dir, opens) the packet multilog with the built-in packet
// schema, the engine serving the API from it, and the capture pipeline feeding it (nil for
// source "none"). The closers run in reverse order: the capture's, the engine's, then the
// multilog's (which flushes and closes a persistent store), so on shutdown the store closes
// after the rings were drained into it.
func openStore(opts Options, onAlert engine.AlertFunc, logger *slog.Logger, reg prometheus.Registerer) (engine.Engine, capturer, []func() error, error) {
	sch, err := schema.Parse(packet.SchemaText)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("sidecar: packet schema: %w", err)
	}
	var capture *pipeline
	// The packet multilog's metrics (confluo_multilog_*, and confluo_logstore_* when persisted)
	// go to the sidecar's registry, labelled with the multilog's name.
	mlOpts := multilog.Options{Writers: opts.Capture.Rings, FilterBucket: opts.Store.Bucket, Logger: logger,
		Name: opts.Store.MultiLog, Registerer: reg}
	if opts.Capture.Source != "none" {
		// Trigger windows close on the capture's watermark; capture is set below. Triggers
		// restored from store.dir start the monitor before that: no window is complete until
		// the capture exists.
		var running atomic.Pointer[pipeline]
		mlOpts.Watermark = func() int64 {
			if c := running.Load(); c != nil {
				return c.Watermark()
			}
			return math.MinInt64
		}
		defer func() { running.Store(capture) }()
	}
	ml, err := openMultiLog(sch, opts, mlOpts, logger)
	if err != nil {
		return nil, nil, nil, err
	}
	if opts.Capture.Source != "none" {
		if capture, err = newPipeline(opts.Capture, ml, logger); err != nil {
			_ = ml.Close()
			return nil, nil, nil, err
		}
	}
	store := engine.NewStore(engine.StoreOptions{Logger: logger}, onAlert)
	if err := store.Add(opts.Store.MultiLog, ml); err != nil {
		_ = store.Close()
		if capture != nil {
			_ = capture.closeUnused()
		}
		_ = ml.Close()
		return nil, nil, nil, err
	}
	closers := []func() error{ml.Close, store.Close}
	if capture == nil {
		return store, nil, closers, nil
	}
	closers = append(closers, capture.closeUnused)
	return store, capture, closers, nil
}

// openMultiLog creates the in-memory packet multilog (under store.retention_age and
// store.max_memory_bytes if set), or opens the persistent one in store.dir. A directory with
// damage opens (the damage is logged; queries reaching lost records report it); a directory
// written with another ring count fails, naming both.
func openMultiLog(sch *schema.Schema, opts Options, mo multilog.Options, logger *slog.Logger) (*multilog.MultiLog, error) {
	p, err := opts.Store.persistence()
	if err != nil {
		return nil, fmt.Errorf("%w: store.mode: %w", ErrInvalidOptions, err)
	}
	if p == nil {
		ml, err := multilog.New(sch, mo)
		if err != nil {
			return nil, fmt.Errorf("sidecar: store: %w", err)
		}
		return ml, nil
	}
	if p.Dir == "" {
		ml, err := multilog.Open(sch, mo, *p)
		if err != nil {
			return nil, fmt.Errorf("sidecar: store: %w", err)
		}
		logger.Info("in-memory store bounded", "retention_age", p.Store.RetentionAge, "max_memory_bytes", p.Store.MaxMemoryBytes)
		return ml, nil
	}
	ml, err := multilog.Open(sch, mo, *p)
	if ml == nil {
		return nil, fmt.Errorf("sidecar: store.dir %s: %w", opts.Store.Dir, err)
	}
	if err != nil {
		logger.Error("store directory has damage; the rest of the data is served", "dir", opts.Store.Dir, "err", err)
	}
	rec := ml.Store().Recovery()
	logger.Info("store opened", "dir", opts.Store.Dir, "mode", ml.Store().Options().Mode, "records", rec.Records,
		"torn_batches", rec.TornBatches, "duration", rec.Duration)
	return ml, nil
}
