// Command confluo-coordinator runs the Confluo-Go fleet coordinator: registry, configuration
// rollout, network-wide queries and distributed snapshots over NATS.
//
//	confluo-coordinator [--config coordinator.yaml] [--nats-url nats://host:4222] [--store-dir DIR]
//	                    [--metrics 127.0.0.1:7490] [--log-level info]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/confluo-go/confluo/coordinator"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "confluo-coordinator:", err)
		os.Exit(1)
	}
}

func run() error {
	config := flag.String("config", "", "YAML options file")
	url := flag.String("nats-url", "", "NATS URL(s), comma-separated (default: embedded server)")
	storeDir := flag.String("store-dir", "", "JetStream store directory of the embedded server")
	metrics := flag.String("metrics", "127.0.0.1:7490", "listen address of /metrics (empty: off)")
	level := flag.String("log-level", "info", "debug, info, warn or error")
	flag.Parse()

	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	opts := coordinator.DefaultOptions()
	if *config != "" {
		var err error
		if opts, err = coordinator.LoadOptions(*config); err != nil {
			return err
		}
	}
	if *url != "" {
		opts.NATS.URLs = strings.Split(*url, ",")
	}
	if *storeDir != "" {
		opts.NATS.StoreDir = *storeDir
	}
	opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	reg := prometheus.NewRegistry()
	opts.Registerer = reg
	if err := opts.Validate(); err != nil {
		return err
	}
	c, err := coordinator.New(opts)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *metrics != "" {
		srv := &http.Server{Addr: *metrics, Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				opts.Logger.Error("metrics listener", "err", err)
			}
		}()
		defer srv.Close()
	}
	return c.Run(ctx)
}
