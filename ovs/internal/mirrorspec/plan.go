package mirrorspec

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ovn-org/libovsdb/ovsdb"

	"github.com/confluo-go/confluo/ovs/internal/vswitch"
)

// Named UUIDs used inside one transaction.
const (
	namedSprayPort      = "confluo_spray_port"
	namedSprayInterface = "confluo_spray_iface"
	namedMirror         = "confluo_mirror"
)

// Interface types a spray port can have.
const (
	TypeInternal   = "internal"
	TypeVhostUser  = "dpdkvhostuserclient"
	OptionVhostSrv = "vhost-server-path"
)

// State is the part of the Open_vSwitch database the planners read: one
// bridge with its ports, their interfaces and its mirrors. Maps are keyed by
// row UUID except PortsByName. The controller builds it from its cache; tests
// build it by hand. A State is read-only to the planners, so several
// goroutines may plan from one State at once.
type State struct {
	Bridge *vswitch.Bridge
	// PortsByName holds the ports attached to Bridge.
	PortsByName map[string]*vswitch.Port
	// Interfaces holds the interfaces of those ports, by UUID.
	Interfaces map[string]*vswitch.Interface
	// Mirrors holds the mirrors attached to Bridge, by UUID.
	Mirrors map[string]*vswitch.Mirror
	// DPDKInitialized is Open_vSwitch.dpdk_initialized.
	DPDKInitialized bool
	// VhostDir is the directory for vhost-user sockets of spray ports.
	VhostDir string
}

// Change says what a plan does. A plain value.
type Change int

// Kinds of change.
const (
	Unchanged Change = iota
	Created
	Updated
	Removed
)

func (c Change) String() string {
	switch c {
	case Unchanged:
		return "unchanged"
	case Created:
		return "created"
	case Updated:
		return "updated"
	case Removed:
		return "removed"
	}
	return fmt.Sprintf("Change(%d)", int(c))
}

// Plan is the result of a planner: the operations of one transaction and why.
// Not safe for concurrent mutation.
type Plan struct {
	Ops []ovsdb.Operation
	// Change is what happens to the planned object (mirror or spray port).
	Change Change
	// Reasons lists what differed, e.g. "snaplen 0 -> 128", "spray port missing".
	Reasons []string
}

// Empty reports whether the plan has nothing to do.
func (p Plan) Empty() bool { return len(p.Ops) == 0 }

func (p *Plan) add(change Change, reason string, ops ...ovsdb.Operation) {
	p.Ops = append(p.Ops, ops...)
	if change > p.Change {
		p.Change = change
	}
	p.Reasons = append(p.Reasons, reason)
}

// IsManaged reports whether external_ids mark a row as created by Confluo-Go.
func IsManaged(externalIDs map[string]string) bool {
	return externalIDs[ExternalIDManagedBy] == ManagedByValue
}

func managedIDs(role string) map[string]string {
	return map[string]string{ExternalIDManagedBy: ManagedByValue, ExternalIDRole: role}
}

// SprayInterface returns the Interface type and options a spray port called
// name gets on this bridge: a dpdkvhostuserclient port with its socket under
// VhostDir on a netdev bridge with DPDK initialized, otherwise an internal
// port (a kernel tap device on netdev bridges).
func (st *State) SprayInterface(name string) (string, map[string]string) {
	if st.Bridge != nil && st.Bridge.DatapathType == "netdev" && st.DPDKInitialized {
		return TypeVhostUser, map[string]string{OptionVhostSrv: filepath.Join(st.VhostDir, name+".sock")}
	}
	return TypeInternal, map[string]string{}
}

// FindMirror returns the mirror called name on the bridge, or nil.
// With several rows of that name a managed one is preferred.
func (st *State) FindMirror(name string) *vswitch.Mirror {
	var found *vswitch.Mirror
	for _, uuid := range sortedKeys(st.Mirrors) {
		m := st.Mirrors[uuid]
		if m.Name != name {
			continue
		}
		if found == nil || (!IsManaged(found.ExternalIDs) && IsManaged(m.ExternalIDs)) {
			found = m
		}
	}
	return found
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

// PlanSprayPort plans creating or repairing the spray port called name. It
// returns the reference to use for the port in the same transaction (its UUID,
// or a named UUID when the plan creates it). An existing port that is not
// managed is used as it is and never edited.
func PlanSprayPort(st *State, name string) (Plan, string, error) {
	var plan Plan
	if st.Bridge == nil {
		return plan, "", ErrBridgeNotFound
	}
	wantType, wantOptions := st.SprayInterface(name)
	if port, ok := st.PortsByName[name]; ok {
		if !IsManaged(port.ExternalIDs) {
			return plan, port.UUID, nil
		}
		for _, ifUUID := range port.Interfaces {
			iface, ok := st.Interfaces[ifUUID]
			if !ok || iface.Name != name {
				continue
			}
			var reasons []string
			if iface.Type != wantType {
				reasons = append(reasons, fmt.Sprintf("interface type %q -> %q", iface.Type, wantType))
			}
			if !maps.Equal(iface.Options, wantOptions) {
				reasons = append(reasons, fmt.Sprintf("interface options %v -> %v", iface.Options, wantOptions))
			}
			if len(reasons) > 0 {
				plan.add(Updated, "spray port "+name+": "+strings.Join(reasons, ", "), ovsdb.Operation{
					Op:    ovsdb.OperationUpdate,
					Table: vswitch.InterfaceTable,
					Row: ovsdb.Row{
						"type":    wantType,
						"options": mustMap(wantOptions),
					},
					Where: []ovsdb.Condition{uuidIs(iface.UUID)},
				})
			}
			return plan, port.UUID, nil
		}
		// The managed port lost its interface: rebuild it below under a new row.
		plan.add(Updated, "spray port "+name+": interface missing, recreated",
			ovsdb.Operation{
				Op:        ovsdb.OperationMutate,
				Table:     vswitch.BridgeTable,
				Where:     []ovsdb.Condition{uuidIs(st.Bridge.UUID)},
				Mutations: []ovsdb.Mutation{{Column: "ports", Mutator: ovsdb.MutateOperationDelete, Value: mustSet(ovsdb.UUID{GoUUID: port.UUID})}},
			})
	}
	ifaceIDs := managedIDs(RoleSprayPort)
	plan.add(Created, "spray port "+name+" missing, created as "+wantType,
		ovsdb.Operation{
			Op:       ovsdb.OperationInsert,
			Table:    vswitch.InterfaceTable,
			UUIDName: namedSprayInterface,
			Row: ovsdb.Row{
				"name":         name,
				"type":         wantType,
				"options":      mustMap(wantOptions),
				"external_ids": mustMap(ifaceIDs),
			},
		},
		ovsdb.Operation{
			Op:       ovsdb.OperationInsert,
			Table:    vswitch.PortTable,
			UUIDName: namedSprayPort,
			Row: ovsdb.Row{
				"name":         name,
				"interfaces":   mustSet(ovsdb.UUID{GoUUID: namedSprayInterface}),
				"external_ids": mustMap(managedIDs(RoleSprayPort)),
			},
		},
		ovsdb.Operation{
			Op:        ovsdb.OperationMutate,
			Table:     vswitch.BridgeTable,
			Where:     []ovsdb.Condition{uuidIs(st.Bridge.UUID)},
			Mutations: []ovsdb.Mutation{{Column: "ports", Mutator: ovsdb.MutateOperationInsert, Value: mustSet(ovsdb.UUID{GoUUID: namedSprayPort})}},
		})
	return plan, namedSprayPort, nil
}

// PlanMirror plans making the bridge's mirror match spec: creating it (and the
// spray port it outputs to, when missing) or updating the columns that differ.
// It returns ErrUnmanaged if a mirror of that name exists without the managed
// mark, and ErrPortNotFound naming a selected port that is not on the bridge.
// spec must be valid (Validate).
func PlanMirror(st *State, spec Spec) (Plan, error) {
	spec = spec.Normalize()
	var plan Plan
	if st.Bridge == nil {
		return plan, fmt.Errorf("%w: %q", ErrBridgeNotFound, spec.Bridge)
	}
	existing := st.FindMirror(spec.Name)
	if existing != nil && !IsManaged(existing.ExternalIDs) {
		return plan, fmt.Errorf("%w: mirror %q on bridge %q", ErrUnmanaged, spec.Name, spec.Bridge)
	}
	src, err := portUUIDs(st, spec.SrcPorts)
	if err != nil {
		return plan, err
	}
	dst, err := portUUIDs(st, spec.DstPorts)
	if err != nil {
		return plan, err
	}
	sprayPlan, outRef, err := PlanSprayPort(st, spec.OutputPort())
	if err != nil {
		return plan, err
	}
	plan.Ops = append(plan.Ops, sprayPlan.Ops...)
	plan.Reasons = append(plan.Reasons, sprayPlan.Reasons...)
	if !sprayPlan.Empty() {
		plan.Change = Updated
	}

	ids := managedIDs(RoleMirror)
	if len(spec.Flows) > 0 {
		ids[ExternalIDFlows] = strings.Join(spec.Flows, ";")
	}
	row := ovsdb.Row{
		"name":            spec.Name,
		"select_all":      spec.SelectAll,
		"select_src_port": mustSet(uuidList(src)...),
		"select_dst_port": mustSet(uuidList(dst)...),
		"select_vlan":     mustSet(intList(spec.VLANs)...),
		"output_port":     mustSet(ovsdb.UUID{GoUUID: outRef}),
		"snaplen":         mustSet(intList(optional(spec.Snaplen))...),
		"external_ids":    mustMap(ids),
	}
	if existing == nil {
		plan.Change = Created
		plan.add(Created, fmt.Sprintf("mirror %q missing, created", spec.Name),
			ovsdb.Operation{Op: ovsdb.OperationInsert, Table: vswitch.MirrorTable, UUIDName: namedMirror, Row: row},
			ovsdb.Operation{
				Op:        ovsdb.OperationMutate,
				Table:     vswitch.BridgeTable,
				Where:     []ovsdb.Condition{uuidIs(st.Bridge.UUID)},
				Mutations: []ovsdb.Mutation{{Column: "mirrors", Mutator: ovsdb.MutateOperationInsert, Value: mustSet(ovsdb.UUID{GoUUID: namedMirror})}},
			})
		return plan, nil
	}

	var reasons []string
	if existing.SelectAll != spec.SelectAll {
		reasons = append(reasons, fmt.Sprintf("select_all %v -> %v", existing.SelectAll, spec.SelectAll))
	}
	if !sameSet(existing.SelectSrcPort, src) {
		reasons = append(reasons, "select_src_port "+portNames(st, existing.SelectSrcPort)+" -> "+portNames(st, src))
	}
	if !sameSet(existing.SelectDstPort, dst) {
		reasons = append(reasons, "select_dst_port "+portNames(st, existing.SelectDstPort)+" -> "+portNames(st, dst))
	}
	if !sameSet(existing.SelectVLAN, spec.VLANs) {
		reasons = append(reasons, fmt.Sprintf("select_vlan %v -> %v", existing.SelectVLAN, spec.VLANs))
	}
	if existing.OutputPort == nil || *existing.OutputPort != outRef {
		reasons = append(reasons, "output_port "+outputName(st, existing.OutputPort)+" -> "+spec.OutputPort())
	}
	if got := deref(existing.Snaplen); got != spec.Snaplen {
		reasons = append(reasons, fmt.Sprintf("snaplen %d -> %d", got, spec.Snaplen))
	}
	if existing.ExternalIDs[ExternalIDFlows] != ids[ExternalIDFlows] {
		reasons = append(reasons, fmt.Sprintf("flows %q -> %q", existing.ExternalIDs[ExternalIDFlows], ids[ExternalIDFlows]))
	}
	if len(reasons) == 0 {
		return plan, nil
	}
	// Keep foreign external_ids; only ours are rewritten.
	merged := maps.Clone(existing.ExternalIDs)
	delete(merged, ExternalIDFlows)
	maps.Copy(merged, ids)
	row["external_ids"] = mustMap(merged)
	plan.add(Updated, fmt.Sprintf("mirror %q: %s", spec.Name, strings.Join(reasons, ", ")), ovsdb.Operation{
		Op:    ovsdb.OperationUpdate,
		Table: vswitch.MirrorTable,
		Row:   row,
		Where: []ovsdb.Condition{uuidIs(existing.UUID)},
	})
	return plan, nil
}

// PlanRemoveMirror plans detaching and deleting the managed mirror called
// name. It returns ErrMirrorNotFound or ErrUnmanaged. The spray port stays.
func PlanRemoveMirror(st *State, name string) (Plan, error) {
	var plan Plan
	if st.Bridge == nil {
		return plan, ErrBridgeNotFound
	}
	m := st.FindMirror(name)
	if m == nil {
		return plan, fmt.Errorf("%w: %q on bridge %q", ErrMirrorNotFound, name, st.Bridge.Name)
	}
	if !IsManaged(m.ExternalIDs) {
		return plan, fmt.Errorf("%w: mirror %q on bridge %q", ErrUnmanaged, name, st.Bridge.Name)
	}
	plan.add(Removed, fmt.Sprintf("mirror %q removed", name),
		ovsdb.Operation{
			Op:        ovsdb.OperationMutate,
			Table:     vswitch.BridgeTable,
			Where:     []ovsdb.Condition{uuidIs(st.Bridge.UUID)},
			Mutations: []ovsdb.Mutation{{Column: "mirrors", Mutator: ovsdb.MutateOperationDelete, Value: mustSet(ovsdb.UUID{GoUUID: m.UUID})}},
		},
		ovsdb.Operation{
			Op:    ovsdb.OperationDelete,
			Table: vswitch.MirrorTable,
			Where: []ovsdb.Condition{uuidIs(m.UUID)},
		})
	return plan, nil
}

// SpecFromMirror rebuilds the spec a managed mirror row realises, resolving
// port UUIDs to names through st (unknown UUIDs are kept as UUIDs).
func SpecFromMirror(st *State, m *vswitch.Mirror) Spec {
	spec := Spec{
		Name:      m.Name,
		SelectAll: m.SelectAll,
		SrcPorts:  resolvePorts(st, m.SelectSrcPort),
		DstPorts:  resolvePorts(st, m.SelectDstPort),
		VLANs:     slices.Clone(m.SelectVLAN),
		Snaplen:   deref(m.Snaplen),
	}
	if st.Bridge != nil {
		spec.Bridge = st.Bridge.Name
	}
	if m.OutputPort != nil {
		spec.Output = outputName(st, m.OutputPort)
	}
	if f := m.ExternalIDs[ExternalIDFlows]; f != "" {
		spec.Flows = strings.Split(f, ";")
	}
	return spec.Normalize()
}

func resolvePorts(st *State, uuids []string) []string {
	out := make([]string, 0, len(uuids))
	for _, u := range uuids {
		out = append(out, portName(st, u))
	}
	return out
}

func portName(st *State, uuid string) string {
	for name, p := range st.PortsByName {
		if p.UUID == uuid {
			return name
		}
	}
	return uuid
}

func portNames(st *State, uuids []string) string {
	names := resolvePorts(st, uuids)
	slices.Sort(names)
	return "[" + strings.Join(names, " ") + "]"
}

func outputName(st *State, uuid *string) string {
	if uuid == nil {
		return "none"
	}
	return portName(st, *uuid)
}

func portUUIDs(st *State, names []string) ([]string, error) {
	out := make([]string, 0, len(names))
	for _, n := range names {
		p, ok := st.PortsByName[n]
		if !ok {
			return nil, fmt.Errorf("%w: %q on bridge %q", ErrPortNotFound, n, st.Bridge.Name)
		}
		out = append(out, p.UUID)
	}
	return out, nil
}

func sameSet[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for _, v := range a {
		if !slices.Contains(b, v) {
			return false
		}
	}
	for _, v := range b {
		if !slices.Contains(a, v) {
			return false
		}
	}
	return true
}

func optional(v int) []int {
	if v == 0 {
		return nil
	}
	return []int{v}
}

func deref(p *int) int {
	if p == nil {
		return 0
	}
	return *p
}

func uuidIs(uuid string) ovsdb.Condition {
	return ovsdb.NewCondition("_uuid", ovsdb.ConditionEqual, ovsdb.UUID{GoUUID: uuid})
}

func uuidList(uuids []string) []any {
	out := make([]any, 0, len(uuids))
	for _, u := range uuids {
		out = append(out, ovsdb.UUID{GoUUID: u})
	}
	return out
}

func intList(v []int) []any {
	out := make([]any, 0, len(v))
	for _, x := range v {
		out = append(out, x)
	}
	return out
}

func mustSet(elems ...any) ovsdb.OvsSet {
	if elems == nil {
		elems = []any{}
	}
	return ovsdb.OvsSet{GoSet: elems}
}

func mustMap(m map[string]string) ovsdb.OvsMap {
	out := ovsdb.OvsMap{GoMap: make(map[any]any, len(m))}
	for k, v := range m {
		out.GoMap[k] = v
	}
	return out
}

// MarshalText renders the change as its name, so JSON shows "created".
func (c Change) MarshalText() ([]byte, error) { return []byte(c.String()), nil }
