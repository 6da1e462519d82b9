package mirrorspec

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/confluo-go/confluo/ovs/internal/vswitch"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the golden files in testdata/")

const (
	brUUID    = "00000000-0000-4000-8000-000000000001"
	p1UUID    = "00000000-0000-4000-8000-000000000011"
	p2UUID    = "00000000-0000-4000-8000-000000000012"
	sprayUUID = "00000000-0000-4000-8000-000000000013"
	sprayIf   = "00000000-0000-4000-8000-000000000023"
	mirUUID   = "00000000-0000-4000-8000-000000000031"
)

func ptr[T any](v T) *T { return &v }

// baseState is bridge br0 (datapath dp) with ports vm1, vm2 and optionally
// the managed spray port cf-br0 and a mirror m1.
func baseState(dp string, dpdk, withSpray bool, mirror *vswitch.Mirror) *State {
	st := &State{
		Bridge: &vswitch.Bridge{UUID: brUUID, Name: "br0", DatapathType: dp},
		PortsByName: map[string]*vswitch.Port{
			"vm1": {UUID: p1UUID, Name: "vm1"},
			"vm2": {UUID: p2UUID, Name: "vm2"},
		},
		Interfaces:      map[string]*vswitch.Interface{},
		Mirrors:         map[string]*vswitch.Mirror{},
		DPDKInitialized: dpdk,
		VhostDir:        "/run/confluo/vhost",
	}
	if withSpray {
		st.PortsByName["cf-br0"] = &vswitch.Port{UUID: sprayUUID, Name: "cf-br0", Interfaces: []string{sprayIf},
			ExternalIDs: managedIDs(RoleSprayPort)}
		st.Interfaces[sprayIf] = &vswitch.Interface{UUID: sprayIf, Name: "cf-br0", Type: "internal",
			Options: map[string]string{}, ExternalIDs: managedIDs(RoleSprayPort)}
	}
	if mirror != nil {
		st.Mirrors[mirror.UUID] = mirror
	}
	return st
}

func managedMirror(snaplen *int) *vswitch.Mirror {
	return &vswitch.Mirror{UUID: mirUUID, Name: "m1", SelectSrcPort: []string{p1UUID},
		OutputPort: ptr(sprayUUID), Snaplen: snaplen, ExternalIDs: managedIDs(RoleMirror)}
}

func TestPlanGolden(t *testing.T) {
	cases := []struct {
		name  string
		state *State
		run   func(st *State) (Plan, error)
	}{
		{"create-with-spray-port", baseState("system", false, false, nil), func(st *State) (Plan, error) {
			return PlanMirror(st, Spec{Bridge: "br0", Name: "m1", SrcPorts: []string{"vm1"}, DstPorts: []string{"vm1"}, Snaplen: 128})
		}},
		{"create-existing-spray-port", baseState("system", false, true, nil), func(st *State) (Plan, error) {
			return PlanMirror(st, Spec{Bridge: "br0", Name: "m1", SelectAll: true, VLANs: []int{20, 10, 10}})
		}},
		{"create-dpdk-spray-port", baseState("netdev", true, false, nil), func(st *State) (Plan, error) {
			return PlanMirror(st, Spec{Bridge: "br0", Name: "m1", SelectAll: true})
		}},
		{"create-netdev-no-dpdk", baseState("netdev", false, false, nil), func(st *State) (Plan, error) {
			return PlanMirror(st, Spec{Bridge: "br0", Name: "m1", SelectAll: true})
		}},
		{"unchanged", baseState("system", false, true, managedMirror(nil)), func(st *State) (Plan, error) {
			return PlanMirror(st, Spec{Bridge: "br0", Name: "m1", SrcPorts: []string{"vm1"}})
		}},
		{"update-snaplen", baseState("system", false, true, managedMirror(ptr(64))), func(st *State) (Plan, error) {
			return PlanMirror(st, Spec{Bridge: "br0", Name: "m1", SrcPorts: []string{"vm1", "vm2"}, Snaplen: 256})
		}},
		{"repair-spray-type", func() *State {
			st := baseState("system", false, true, managedMirror(nil))
			st.Interfaces[sprayIf].Type = "tap"
			return st
		}(), func(st *State) (Plan, error) {
			return PlanMirror(st, Spec{Bridge: "br0", Name: "m1", SrcPorts: []string{"vm1"}})
		}},
		{"flows", baseState("system", false, true, nil), func(st *State) (Plan, error) {
			return PlanMirror(st, Spec{Bridge: "br0", Name: "m1", Flows: []string{"tcp,tp_dst=443"}})
		}},
		{"remove", baseState("system", false, true, managedMirror(nil)), func(st *State) (Plan, error) {
			return PlanRemoveMirror(st, "m1")
		}},
		{"unmanaged-mirror", baseState("system", false, true, &vswitch.Mirror{UUID: mirUUID, Name: "m1"}), func(st *State) (Plan, error) {
			return PlanMirror(st, Spec{Bridge: "br0", Name: "m1", SelectAll: true})
		}},
		{"remove-unmanaged", baseState("system", false, true, &vswitch.Mirror{UUID: mirUUID, Name: "m1"}), func(st *State) (Plan, error) {
			return PlanRemoveMirror(st, "m1")
		}},
		{"missing-port", baseState("system", false, true, nil), func(st *State) (Plan, error) {
			return PlanMirror(st, Spec{Bridge: "br0", Name: "m1", SrcPorts: []string{"nope"}})
		}},
		{"unmanaged-output-port", baseState("system", false, false, nil), func(st *State) (Plan, error) {
			return PlanMirror(st, Spec{Bridge: "br0", Name: "m1", SrcPorts: []string{"vm1"}, Output: "vm2"})
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			plan, err := tc.run(tc.state)
			var got strings.Builder
			if err != nil {
				got.WriteString("error: " + err.Error() + "\n")
			} else {
				got.WriteString("change: " + plan.Change.String() + "\n")
				for _, r := range plan.Reasons {
					got.WriteString("reason: " + r + "\n")
				}
				got.WriteString(FormatOps(plan.Ops))
			}
			path := filepath.Join("testdata", tc.name+".golden")
			if *rewrite {
				if err := os.WriteFile(path, []byte(got.String()), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -rewrite to create)", err)
			}
			if got.String() != string(want) {
				t.Errorf("plan differs from %s:\n--- got\n%s--- want\n%s", path, got.String(), want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	cases := []struct {
		spec Spec
		want error
	}{
		{Spec{Bridge: "br0", Name: "m", SelectAll: true}, nil},
		{Spec{Bridge: "br0", Name: "m", SelectAll: true, Snaplen: 14}, nil},
		{Spec{Bridge: "br0", Name: "m", SelectAll: true, Snaplen: 65535}, nil},
		{Spec{Bridge: "br0", Name: "m", SelectAll: true, Snaplen: 13}, ErrSnaplen},
		{Spec{Bridge: "br0", Name: "m", SelectAll: true, Snaplen: 65536}, ErrSnaplen},
		{Spec{Bridge: "br0", Name: "m", SelectAll: true, Snaplen: -1}, ErrSnaplen},
		{Spec{Bridge: "", Name: "m", SelectAll: true}, ErrInvalidSpec},
		{Spec{Bridge: "br0", Name: "", SelectAll: true}, ErrInvalidSpec},
		{Spec{Bridge: "br0", Name: "a b", SelectAll: true}, ErrInvalidSpec},
		{Spec{Bridge: "br0", Name: strings.Repeat("x", 65), SelectAll: true}, ErrInvalidSpec},
		{Spec{Bridge: "br0", Name: "m"}, ErrNoSelection},
		{Spec{Bridge: "br0", Name: "m", SelectAll: true, SrcPorts: []string{"p"}}, ErrInvalidSpec},
		{Spec{Bridge: "br0", Name: "m", SelectAll: true, VLANs: []int{4096}}, ErrInvalidSpec},
		{Spec{Bridge: "br0", Name: "m", VLANs: []int{5}}, ErrNoSelection},
		{Spec{Bridge: "br0", Name: "m", SrcPorts: []string{"cf-br0"}}, ErrOutputIsSource},
		{Spec{Bridge: "br0", Name: "m", SrcPorts: []string{"x"}, Output: "x"}, ErrOutputIsSource},
		{Spec{Bridge: "br0", Name: "m", Flows: []string{"tcp,tp_dst=443"}}, nil},
		{Spec{Bridge: "br0", Name: "m", Flows: []string{"tp_dst=443"}}, ErrInvalidFlow},
	}
	for _, tc := range cases {
		err := tc.spec.Validate()
		if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("Validate(%+v) = %v, want %v", tc.spec, err, tc.want)
		}
	}
}

func TestParseFlowMatch(t *testing.T) {
	good := map[string]string{
		"tcp,tp_dst=443":                  "tcp,tp_dst=443",
		" TCP , tp_dst = 443 ":            "tcp,tp_dst=443",
		"udp,tp_src=53,nw_dst=10.0.0.0/8": "udp,tp_src=53,nw_dst=10.0.0.0/8",
		"ip,nw_src=10.1.2.3":              "ip,nw_src=10.1.2.3",
		"tcp6,ipv6_dst=fe80::1,tp_dst=80": "tcp6,ipv6_dst=fe80::1,tp_dst=80",
		"in_port=3":                       "in_port=3",
		"dl_src=aa:bb:cc:dd:ee:ff":        "dl_src=aa:bb:cc:dd:ee:ff",
		"tcp,tp_dst=0x1000/0xf000":        "tcp,tp_dst=0x1000/0xf000",
		"dl_vlan=100,icmp":                "dl_vlan=100,icmp",
	}
	for in, want := range good {
		got, err := ParseFlowMatch(in)
		if err != nil || got != want {
			t.Errorf("ParseFlowMatch(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	bad := []string{"", "tcp,", "tcp,actions=drop", "tcp,tp_dst=99999", "tp_dst=443", "tcp,udp",
		"nw_src=10.0.0.1", "ip,nw_src=fe80::1", "ipv6,ipv6_src=10.0.0.1", "bogus", "tcp,tp_dst=443,tp_dst=80",
		"dl_src=zz:bb:cc:dd:ee:ff", "priority=5", "in_port=x", "dl_vlan=5000", "arp,nw_src=1.2.3.4",
		"tcp,tp_dst=1;drop"}
	for _, in := range bad {
		got, err := ParseFlowMatch(in)
		if !errors.Is(err, ErrInvalidFlow) || got != "" {
			t.Errorf("ParseFlowMatch(%q) = %q, %v; want ErrInvalidFlow", in, got, err)
		}
	}
}

func TestSpecFromMirrorRoundTrip(t *testing.T) {
	st := baseState("system", false, true, nil)
	spec := Spec{Bridge: "br0", Name: "m1", SrcPorts: []string{"vm2", "vm1"}, VLANs: []int{7}, Snaplen: 100,
		Flows: []string{"tcp,tp_dst=443"}}.Normalize()
	m := &vswitch.Mirror{UUID: mirUUID, Name: "m1", SelectSrcPort: []string{p2UUID, p1UUID}, SelectVLAN: []int{7},
		OutputPort: ptr(sprayUUID), Snaplen: ptr(100),
		ExternalIDs: map[string]string{ExternalIDManagedBy: ManagedByValue, ExternalIDFlows: "tcp,tp_dst=443"}}
	got := SpecFromMirror(st, m)
	spec.Output = "cf-br0"
	if got.Key() != spec.Key() || got.Snaplen != spec.Snaplen || strings.Join(got.SrcPorts, ",") != "vm1,vm2" ||
		got.Output != "cf-br0" || len(got.Flows) != 1 || len(got.VLANs) != 1 {
		t.Fatalf("SpecFromMirror = %+v, want %+v", got, spec)
	}
}

func TestDefaultSprayPortName(t *testing.T) {
	if got := DefaultSprayPortName("br0"); got != "cf-br0" {
		t.Fatalf("got %q", got)
	}
	if got := DefaultSprayPortName("a-very-long-bridge"); len(got) != 15 {
		t.Fatalf("got %q, want 15 bytes", got)
	}
}
