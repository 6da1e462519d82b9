package ovs

import (
	"errors"

	"github.com/confluo-go/confluo/ovs/internal/mirrorspec"
)

// Errors of the controller. Spec and planning errors come from the internal
// planner and are re-exported here so callers can use errors.Is.
var (
	// ErrNotRunning: nothing listens on the OVSDB endpoint (OVS not running).
	ErrNotRunning = errors.New("ovs: OVSDB server not reachable (is Open vSwitch running?)")
	// ErrPermission: the OVSDB socket exists but may not be opened.
	ErrPermission = errors.New("ovs: permission denied on OVSDB socket")
	// ErrNotConnected: the controller has no OVSDB session right now.
	ErrNotConnected = errors.New("ovs: not connected to OVSDB")
	// ErrTransaction: OVSDB rejected a transaction; per-operation errors are joined into it.
	ErrTransaction = errors.New("ovs: OVSDB transaction failed")
	// ErrClosed: the controller was closed.
	ErrClosed = errors.New("ovs: controller closed")
	// ErrVSwitchd: ovs-vswitchd could not be reached through ovs-appctl/ovs-ofctl.
	ErrVSwitchd = errors.New("ovs: ovs-vswitchd not reachable")
	// ErrNotApplied: a transaction committed but the cache did not show the result in time.
	ErrNotApplied = errors.New("ovs: change not visible after commit")
	// ErrSprayPortNotReady: ovs-vswitchd has not given the spray port an
	// OpenFlow port number yet (or failed to create it); Run retries.
	ErrSprayPortNotReady = errors.New("ovs: spray port not ready")
	// ErrFlowSelection: flow selection cannot be installed on this bridge.
	ErrFlowSelection = errors.New("ovs: flow selection not possible")

	ErrInvalidSpec    = mirrorspec.ErrInvalidSpec
	ErrSnaplen        = mirrorspec.ErrSnaplen
	ErrNoSelection    = mirrorspec.ErrNoSelection
	ErrBridgeNotFound = mirrorspec.ErrBridgeNotFound
	ErrPortNotFound   = mirrorspec.ErrPortNotFound
	ErrMirrorNotFound = mirrorspec.ErrMirrorNotFound
	ErrUnmanaged      = mirrorspec.ErrUnmanaged
	ErrInvalidFlow    = mirrorspec.ErrInvalidFlow
	ErrOutputIsSource = mirrorspec.ErrOutputIsSource
)
