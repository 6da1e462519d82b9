// Package mirrorspec turns a declarative mirror specification into the OVSDB
// operations that realise it on one bridge. It is pure: it reads a snapshot of
// the rows that matter (State) and returns operations, so the controller can
// send them as one transaction and the tests can compare them with golden files.
//
// Every row the planner creates carries ExternalIDManagedBy=ManagedByValue in
// its external_ids. The planner refuses to edit or delete a row without that
// mark (ErrUnmanaged).
package mirrorspec

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Keys and values written into external_ids of managed rows.
const (
	// ExternalIDManagedBy marks a Mirror, Port or Interface row as created by Confluo-Go.
	ExternalIDManagedBy = "confluo-managed-by"
	// ManagedByValue is the value of ExternalIDManagedBy on managed rows.
	ManagedByValue = "confluo-go"
	// ExternalIDRole says what a managed row is for: RoleMirror or RoleSprayPort.
	ExternalIDRole = "confluo-role"
	// RoleMirror is the role of a managed Mirror row.
	RoleMirror = "mirror"
	// RoleSprayPort is the role of a managed spray Port/Interface row.
	RoleSprayPort = "spray-port"
	// ExternalIDFlows holds the OpenFlow matches of a flow-selected mirror, joined by ";".
	ExternalIDFlows = "confluo-flows"
)

// Snaplen limits imposed by the OVSDB schema (Mirror.snaplen).
const (
	MinSnaplen = 14
	MaxSnaplen = 65535
)

// MaxNameLen is the longest mirror name accepted.
const MaxNameLen = 64

// Errors returned by Validate and the planners.
var (
	ErrInvalidSpec     = errors.New("mirrorspec: invalid spec")
	ErrSnaplen         = errors.New("mirrorspec: snaplen out of range (0 or 14..65535)")
	ErrNoSelection     = errors.New("mirrorspec: mirror selects nothing")
	ErrBridgeNotFound  = errors.New("mirrorspec: bridge not found")
	ErrPortNotFound    = errors.New("mirrorspec: port not found on bridge")
	ErrMirrorNotFound  = errors.New("mirrorspec: mirror not found")
	ErrUnmanaged       = errors.New("mirrorspec: row exists but is not managed by confluo")
	ErrInvalidFlow     = errors.New("mirrorspec: invalid flow match")
	ErrOutputIsSource  = errors.New("mirrorspec: output port is also selected")
	ErrSprayPortExists = errors.New("mirrorspec: spray port name used by an unmanaged port")
)

// Spec declares one mirror. The zero value is invalid; see Validate.
// A Spec is a plain value and safe to copy; it is not safe for concurrent mutation.
type Spec struct {
	// Bridge is the name of the bridge that owns the mirror.
	Bridge string `json:"bridge"`
	// Name is the Mirror row's name, unique per bridge.
	Name string `json:"name"`
	// SelectAll mirrors every packet on the bridge. Exclusive with SrcPorts/DstPorts.
	SelectAll bool `json:"select_all,omitempty"`
	// SrcPorts mirrors packets received on these ports (by Port name).
	SrcPorts []string `json:"src_ports,omitempty"`
	// DstPorts mirrors packets sent out of these ports (by Port name).
	DstPorts []string `json:"dst_ports,omitempty"`
	// VLANs restricts the mirror to these VLAN ids (0..4095); empty means all.
	VLANs []int `json:"vlans,omitempty"`
	// Snaplen truncates each copy to this many bytes; 0 means whole packets,
	// otherwise 14..65535.
	Snaplen int `json:"snaplen,omitempty"`
	// Output is the spray port the copies go to; "" means the bridge's default
	// spray port (DefaultSprayPortName), created if missing.
	Output string `json:"output,omitempty"`
	// Flows selects by OpenFlow match instead of (or besides) ports and VLANs,
	// e.g. "tcp,tp_dst=443". Each match becomes a table-0 flow that forwards
	// normally and also outputs to the spray port. See Flow.
	Flows []string `json:"flows,omitempty"`
}

// Normalize returns a copy with names trimmed, lists sorted and de-duplicated,
// so that equal specs compare equal.
func (s Spec) Normalize() Spec {
	n := s
	n.Bridge = strings.TrimSpace(s.Bridge)
	n.Name = strings.TrimSpace(s.Name)
	n.Output = strings.TrimSpace(s.Output)
	n.SrcPorts = sortedUnique(s.SrcPorts)
	n.DstPorts = sortedUnique(s.DstPorts)
	if len(s.VLANs) > 0 {
		n.VLANs = slices.Clone(s.VLANs)
		slices.Sort(n.VLANs)
		n.VLANs = slices.Compact(n.VLANs)
	} else {
		n.VLANs = nil
	}
	n.Flows = sortedUnique(s.Flows)
	return n
}

func sortedUnique(in []string) []string {
	if len(in) == 0 {
		return nil
	}
	out := make([]string, 0, len(in))
	for _, v := range in {
		out = append(out, strings.TrimSpace(v))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// OutputPort returns the name of the port the mirror outputs to.
func (s Spec) OutputPort() string {
	if s.Output != "" {
		return s.Output
	}
	return DefaultSprayPortName(s.Bridge)
}

// Key identifies the mirror: "bridge/name".
func (s Spec) Key() string { return s.Bridge + "/" + s.Name }

// Validate reports the first problem with s, wrapping one of the package's sentinels.
func (s Spec) Validate() error {
	switch {
	case s.Bridge == "":
		return fmt.Errorf("%w: bridge is empty", ErrInvalidSpec)
	case s.Name == "":
		return fmt.Errorf("%w: mirror name is empty", ErrInvalidSpec)
	case len(s.Name) > MaxNameLen:
		return fmt.Errorf("%w: mirror name %q longer than %d bytes", ErrInvalidSpec, s.Name, MaxNameLen)
	}
	for _, r := range s.Name + s.Bridge + s.Output {
		if r < 0x21 || r > 0x7e || r == '/' {
			return fmt.Errorf("%w: bridge, mirror and output names must be printable ASCII without spaces or '/'", ErrInvalidSpec)
		}
	}
	if s.Snaplen != 0 && (s.Snaplen < MinSnaplen || s.Snaplen > MaxSnaplen) {
		return fmt.Errorf("%w: %d", ErrSnaplen, s.Snaplen)
	}
	for _, v := range s.VLANs {
		if v < 0 || v > 4095 {
			return fmt.Errorf("%w: vlan %d not in 0..4095", ErrInvalidSpec, v)
		}
	}
	if s.SelectAll && (len(s.SrcPorts) > 0 || len(s.DstPorts) > 0) {
		return fmt.Errorf("%w: select_all cannot be combined with source or destination ports", ErrInvalidSpec)
	}
	if !s.SelectAll && len(s.SrcPorts) == 0 && len(s.DstPorts) == 0 && len(s.Flows) == 0 {
		// OVS selects no packet by VLAN alone: select_vlan only narrows a port selection.
		return fmt.Errorf("%w: give select_all, source ports, destination ports or flows (vlans only narrow them)", ErrNoSelection)
	}
	out := s.OutputPort()
	if slices.Contains(s.SrcPorts, out) || slices.Contains(s.DstPorts, out) {
		return fmt.Errorf("%w: %q", ErrOutputIsSource, out)
	}
	for _, f := range s.Flows {
		if _, err := ParseFlowMatch(f); err != nil {
			return err
		}
	}
	return nil
}

// DefaultSprayPortName is the name of the spray port EnsureSprayPort creates on
// bridge: "cf-" followed by the bridge name, cut to the 15 bytes a Linux
// interface name may have.
func DefaultSprayPortName(bridge string) string {
	name := "cf-" + bridge
	if len(name) > 15 {
		name = name[:15]
	}
	return name
}
