package mirrorspec

import (
	"errors"
	"testing"
)

// FuzzParseFlowMatch: an error iff an empty result, errors wrap
// ErrInvalidFlow, and the canonical form parses to itself.
func FuzzParseFlowMatch(f *testing.F) {
	for _, s := range []string{"tcp,tp_dst=443", "ip,nw_src=10.0.0.0/8", "tcp6,ipv6_dst=::1", "in_port=1",
		"dl_vlan=7,udp,tp_src=0x10/0xf0", "", ",", "tcp,,", "actions=drop", "tcp,tp_dst="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		if len(in) > 512 {
			return
		}
		out, err := ParseFlowMatch(in)
		if (err != nil) != (out == "") {
			t.Fatalf("ParseFlowMatch(%q) = %q, %v: error iff empty result violated", in, out, err)
		}
		if err != nil {
			if !errors.Is(err, ErrInvalidFlow) {
				t.Fatalf("error %v does not wrap ErrInvalidFlow", err)
			}
			return
		}
		again, err := ParseFlowMatch(out)
		if err != nil || again != out {
			t.Fatalf("canonical %q of %q re-parses to %q, %v", out, in, again, err)
		}
	})
}

func BenchmarkPlanMirror(b *testing.B) {
	st := baseState("system", false, true, managedMirror(ptr(64)))
	spec := Spec{Bridge: "br0", Name: "m1", SrcPorts: []string{"vm1", "vm2"}, Snaplen: 256}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := PlanMirror(st, spec); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "plans/s")
}
