package sidecar

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/confluo-go/confluo/ovs"
)

// mirror owns the OVS mirror and spray port of MirrorOptions. Not safe for concurrent use; the
// sidecar calls it from New and Run only.
type mirror struct {
	opts   MirrorOptions
	ctrl   *ovs.Controller
	spray  ovs.SprayPortStatus
	logger *slog.Logger
	cancel context.CancelFunc
	done   chan struct{}
}

// setupMirror connects to OVSDB, ensures the spray port and the mirror, and returns the capture
// interface: the spray port (afpacket) or its vhost-user socket (dpdk).
func setupMirror(o MirrorOptions, source string, reg prometheus.Registerer, logger *slog.Logger) (*mirror, string, error) {
	oo := ovs.DefaultOptions()
	oo.Endpoint, oo.OVSRunDir, oo.VSwitchdNetNS, oo.Logger, oo.Registerer = o.DB, o.OVSRunDir, o.VSwitchdNetNS, logger, reg
	if o.VhostDir != "" {
		oo.VhostDir = o.VhostDir
	}
	if source == "dpdk" {
		if err := os.MkdirAll(oo.VhostDir, 0o750); err != nil {
			return nil, "", fmt.Errorf("sidecar: mirror.vhost_dir: %w", err)
		}
	}
	ctrl, err := ovs.New(oo)
	if err != nil {
		return nil, "", fmt.Errorf("sidecar: mirror: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := ctrl.Connect(ctx); err != nil {
		_ = ctrl.Close()
		return nil, "", fmt.Errorf("sidecar: mirror: connect to %s: %w", o.DB, err)
	}
	status, _, err := ctrl.EnsureSprayPort(ctx, o.Bridge)
	if err != nil {
		_ = ctrl.Close()
		return nil, "", fmt.Errorf("sidecar: mirror: spray port on %s: %w", o.Bridge, err)
	}
	spec := ovs.MirrorSpec{Bridge: o.Bridge, Name: o.Name, SelectAll: o.SelectAll, SrcPorts: o.SrcPorts,
		DstPorts: o.DstPorts, VLANs: o.VLANs, Flows: o.Flows, Snaplen: o.Snaplen, Output: status.Name}
	res, err := ctrl.EnsureMirror(ctx, spec)
	if err != nil {
		_ = ctrl.Close()
		return nil, "", fmt.Errorf("sidecar: mirror %s/%s: %w", o.Bridge, o.Name, err)
	}
	logger.Info("mirror ensured", "bridge", o.Bridge, "mirror", o.Name, "spray_port", status.Name, "change", res.Change)
	iface := status.Name
	if source == "dpdk" {
		if status.VhostServerPath == "" {
			_ = ctrl.Close()
			return nil, "", fmt.Errorf("sidecar: mirror: spray port %s on %s is %q, not a dpdkvhostuserclient port (is DPDK initialized in OVS?)",
				status.Name, o.Bridge, status.Type)
		}
		iface = status.VhostServerPath
	}
	return &mirror{opts: o, ctrl: ctrl, spray: status, logger: logger}, iface, nil
}

// run keeps the mirror reconciled in the background until stop.
func (m *mirror) run() {
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel, m.done = cancel, make(chan struct{})
	go func() {
		defer close(m.done)
		if err := m.ctrl.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			m.logger.Warn("mirror controller stopped", "err", err)
		}
	}()
}

// stop stops reconciling and, if RemoveOnExit, removes the mirror and the spray port the
// controller manages (never anything it did not create).
func (m *mirror) stop() error {
	var errs []error
	if m.opts.RemoveOnExit {
		// Removed while the controller still runs (so it is connected); removal also stops
		// the controller from keeping them.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := m.ctrl.RemoveMirror(ctx, m.opts.Bridge, m.opts.Name); err != nil && !errors.Is(err, ovs.ErrMirrorNotFound) {
			errs = append(errs, fmt.Errorf("remove mirror: %w", err))
		}
		if m.spray.Managed || m.spray.Name == ovs.DefaultSprayPortName(m.opts.Bridge) {
			if err := m.ctrl.RemoveSprayPort(ctx, m.opts.Bridge); err != nil {
				errs = append(errs, fmt.Errorf("remove spray port: %w", err))
			}
		}
		m.logger.Info("mirror removed on exit", "bridge", m.opts.Bridge, "mirror", m.opts.Name, "err", errors.Join(errs...))
	}
	if m.cancel != nil {
		m.cancel()
		<-m.done
	}
	errs = append(errs, m.ctrl.Close())
	return errors.Join(errs...)
}
