package sidecar

import (
	"fmt"
	"log/slog"

	"github.com/confluo-go/confluo/pkg/multilog"
	"github.com/confluo-go/confluo/pkg/packet"
	"github.com/confluo-go/confluo/pkg/schema"
	"github.com/confluo-go/confluo/sidecar/internal/engine"
)

// openStore creates the packet multilog with the built-in packet schema, the engine serving the
// API from it, and the capture pipeline feeding it (nil for source "none").
func openStore(opts Options, onAlert engine.AlertFunc, logger *slog.Logger) (engine.Engine, capturer, []func() error, error) {
	sch, err := schema.Parse(packet.SchemaText)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("sidecar: packet schema: %w", err)
	}
	var capture *pipeline
	mlOpts := multilog.Options{Writers: opts.Capture.Rings, FilterBucket: opts.Store.Bucket, Logger: logger}
	if opts.Capture.Source != "none" {
		// Trigger windows close on the capture's watermark; capture is set below, before any
		// trigger (and so the monitor goroutine) exists.
		mlOpts.Watermark = func() int64 { return capture.Watermark() }
	}
	ml, err := multilog.New(sch, mlOpts)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("sidecar: store: %w", err)
	}
	if opts.Capture.Source != "none" {
		if capture, err = newPipeline(opts.Capture, ml, logger); err != nil {
			return nil, nil, nil, err
		}
	}
	store := engine.NewStore(engine.StoreOptions{Logger: logger}, onAlert)
	if err := store.Add(opts.Store.MultiLog, ml); err != nil {
		_ = store.Close()
		if capture != nil {
			_ = capture.closeUnused()
		}
		return nil, nil, nil, err
	}
	closers := []func() error{store.Close}
	if capture == nil {
		return store, nil, closers, nil
	}
	closers = append(closers, capture.closeUnused)
	return store, capture, closers, nil
}
