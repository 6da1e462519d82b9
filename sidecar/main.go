package sidecar

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Main is confluo-sidecar's entry point: parse flags and the config file (flags win), validate,
// run until SIGTERM or SIGINT. It returns the process exit code: 0 after a clean shutdown, 2 for
// bad flags or configuration, 1 for a runtime failure.
func Main(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("confluo-sidecar", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		config    = fs.String("config", "", "YAML configuration file (see docs/sidecar.md)")
		host      = fs.String("host", "", "host name used in NATS subjects (default: the OS host name)")
		source    = fs.String("source", "", "capture source: none, pcap, afpacket, dpdk")
		file      = fs.String("file", "", "pcap/pcapng file for -source pcap")
		iface     = fs.String("interface", "", "interface (afpacket) or vhost-user socket (dpdk)")
		pace      = fs.Bool("pace", false, "replay the file at its recorded pace")
		retime    = fs.Bool("retime", false, "shift replayed timestamps to now")
		rings     = fs.Int("rings", 0, "number of rings and writer goroutines")
		natsURL   = fs.String("nats", "", "external NATS URLs, comma-separated (default: embedded server)")
		natsPort  = fs.Int("nats-port", 0, "embedded NATS port (-1: random)")
		httpAddr  = fs.String("http", "", "HTTP API listen address (default 127.0.0.1:7480; \"off\" disables)")
		logLevel  = fs.String("log-level", "info", "debug, info, warn, error")
		logFormat = fs.String("log-format", "text", "text or json")
	)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	opts := DefaultOptions()
	if *config != "" {
		var err error
		if opts, err = LoadOptions(*config); err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
	}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "host":
			opts.Host = *host
		case "source":
			opts.Capture.Source = *source
		case "file":
			opts.Capture.File = *file
			if opts.Capture.Source == "none" {
				opts.Capture.Source = "pcap"
			}
		case "interface":
			opts.Capture.Interface = *iface
		case "pace":
			opts.Capture.Pace = *pace
		case "retime":
			opts.Capture.Retime = *retime
		case "rings":
			opts.Capture.Rings = *rings
		case "nats":
			opts.NATS.URLs = strings.Split(*natsURL, ",")
		case "nats-port":
			opts.NATS.EmbeddedPort = *natsPort
		case "http":
			opts.HTTP.Listen = *httpAddr
			if *httpAddr == "off" {
				opts.HTTP.Listen = ""
			}
		}
	})
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "confluo-sidecar: -log-level: %v\n", err)
		return 2
	}
	var handler slog.Handler
	switch *logFormat {
	case "text":
		handler = slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})
	case "json":
		handler = slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level})
	default:
		fmt.Fprintf(stderr, "confluo-sidecar: -log-format %q is not text or json\n", *logFormat)
		return 2
	}
	logger := slog.New(handler)
	if err := opts.Validate(); err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	if limit, ok := goMemoryLimit(opts.Store.MaxMemoryBytes, os.Getenv("GOMEMLIMIT")); ok {
		debug.SetMemoryLimit(limit)
		logger.Info("Go memory limit set from store.max_memory_bytes", "bytes", limit)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s, err := New(opts, logger, reg)
	if err != nil {
		logger.Error("cannot start", "err", err)
		if errors.Is(err, ErrInvalidOptions) {
			return 2
		}
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := s.Run(ctx); err != nil {
		logger.Error("stopped with an error", "err", err)
		return 1
	}
	return 0
}

// memoryLimitAllowance is what the Go memory limit allows above store.max_memory_bytes: the
// store's fixed overhead (active segments, cached segments, current derived-log epochs), the
// rings, NATS, HTTP and the runtime.
const memoryLimitAllowance = 256 << 20

// goMemoryLimit is the Go memory limit (debug.SetMemoryLimit) for a memory bound: without
// one, garbage may let the heap grow to twice what the store keeps before the collector runs.
// ok is false with no bound, or when GOMEMLIMIT (the operator's own choice) is set.
func goMemoryLimit(bound int64, env string) (limit int64, ok bool) {
	if bound <= 0 || env != "" {
		return 0, false
	}
	return bound + memoryLimitAllowance, true
}
