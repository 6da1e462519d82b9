package mirrorspec

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Flow selection.
//
// OVS 3.1 (Debian 12, schema 8.3.1) has no Mirror "filter" column (it arrived
// in OVS 3.3), so selection by flow is done with OpenFlow: every match of a
// spec becomes one flow in table 0
//
//	cookie=<mirror cookie>,priority=<FlowPriority>,<match>,actions=NORMAL,output:<spray ofport>
//
// that forwards the packet as the bridge's default flow would and also sends
// a copy to the spray port. This is only correct on bridges whose table 0 is
// the stock "priority=0,actions=NORMAL" (standalone OVS bridges); on bridges
// programmed by an SDN controller the flow would bypass its pipeline, so the
// controller refuses to install flow selections on bridges that have flows
// other than its own and the default one.

// FlowPriority is the OpenFlow priority of flow-selection rules.
const FlowPriority = 40000

var flowProtocols = map[string]string{
	"ip": "ip", "ipv6": "ipv6", "tcp": "tcp", "udp": "udp", "sctp": "sctp",
	"icmp": "icmp", "tcp6": "tcp6", "udp6": "udp6", "sctp6": "sctp6",
	"icmp6": "icmp6", "arp": "arp",
}

// ParseFlowMatch checks an OpenFlow match written in ovs-ofctl syntax against
// the subset the controller accepts and returns it in canonical form (fields
// in the order given, lower-case keys, no spaces).
//
// Accepted: at most one protocol keyword (ip, ipv6, tcp, udp, sctp, icmp,
// tcp6, udp6, sctp6, icmp6, arp) and the fields in_port, dl_vlan, dl_src,
// dl_dst, nw_src, nw_dst, ipv6_src, ipv6_dst, nw_proto, tp_src, tp_dst.
// tp_src/tp_dst need a tcp/udp/sctp keyword; address fields need ip/ipv6 (or
// a protocol implying it). Actions, priorities, cookies and tables are
// rejected: the controller sets them.
func ParseFlowMatch(match string) (string, error) {
	fail := func(format string, args ...any) (string, error) {
		return "", fmt.Errorf("%w %q: %s", ErrInvalidFlow, match, fmt.Sprintf(format, args...))
	}
	if strings.TrimSpace(match) == "" {
		return fail("empty")
	}
	var (
		proto string
		parts []string
		seen  = map[string]bool{}
	)
	for _, raw := range strings.Split(match, ",") {
		tok := strings.ToLower(strings.TrimSpace(raw))
		if tok == "" {
			return fail("empty field")
		}
		key, value, hasValue := strings.Cut(tok, "=")
		key = strings.TrimSpace(key)
		value = strings.TrimSpace(value)
		if !hasValue {
			p, ok := flowProtocols[key]
			if !ok {
				return fail("unknown keyword %q", key)
			}
			if proto != "" {
				return fail("two protocols %q and %q", proto, p)
			}
			proto = p
			parts = append(parts, p)
			continue
		}
		if seen[key] {
			return fail("field %q given twice", key)
		}
		seen[key] = true
		if value == "" {
			return fail("field %q has no value", key)
		}
		switch key {
		case "in_port", "nw_proto":
			if _, err := strconv.ParseUint(value, 10, 16); err != nil {
				return fail("%s=%q is not a number", key, value)
			}
		case "dl_vlan":
			v, err := strconv.ParseUint(value, 10, 16)
			if err != nil || v > 4095 {
				return fail("dl_vlan=%q is not in 0..4095", value)
			}
		case "tp_src", "tp_dst":
			switch proto {
			case "tcp", "udp", "sctp", "tcp6", "udp6", "sctp6":
			default:
				return fail("%s needs a tcp, udp or sctp keyword before it", key)
			}
			if err := checkPortValue(value); err != nil {
				return fail("%s=%q: %v", key, value, err)
			}
		case "dl_src", "dl_dst":
			if err := checkMAC(value); err != nil {
				return fail("%s=%q: %v", key, value, err)
			}
		case "nw_src", "nw_dst", "ipv6_src", "ipv6_dst":
			want6 := strings.HasPrefix(key, "ipv6")
			is6 := proto == "ipv6" || strings.HasSuffix(proto, "6")
			if proto == "" || proto == "arp" || is6 != want6 {
				return fail("%s needs a matching ip or ipv6 protocol keyword before it", key)
			}
			if err := checkAddr(value, want6); err != nil {
				return fail("%s=%q: %v", key, value, err)
			}
		case "actions", "action", "priority", "cookie", "table", "idle_timeout", "hard_timeout":
			return fail("%q is set by the controller, give only a match", key)
		default:
			return fail("unsupported field %q", key)
		}
		parts = append(parts, key+"="+value)
	}
	return strings.Join(parts, ","), nil
}

func checkPortValue(v string) error {
	port, mask, masked := strings.Cut(v, "/")
	if _, err := strconv.ParseUint(port, 0, 16); err != nil {
		return fmt.Errorf("port is not a number in 0..65535")
	}
	if masked {
		if _, err := strconv.ParseUint(mask, 0, 16); err != nil {
			return fmt.Errorf("mask is not a number in 0..65535")
		}
	}
	return nil
}

func checkMAC(v string) error {
	f := strings.Split(v, ":")
	if len(f) != 6 {
		return fmt.Errorf("not a MAC address")
	}
	for _, b := range f {
		if len(b) != 2 {
			return fmt.Errorf("not a MAC address")
		}
		if _, err := strconv.ParseUint(b, 16, 8); err != nil {
			return fmt.Errorf("not a MAC address")
		}
	}
	return nil
}

func checkAddr(v string, want6 bool) error {
	var addr netip.Addr
	if strings.Contains(v, "/") {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			return fmt.Errorf("not an address or prefix")
		}
		addr = p.Addr()
	} else {
		a, err := netip.ParseAddr(v)
		if err != nil {
			return fmt.Errorf("not an address or prefix")
		}
		addr = a
	}
	if addr.Is4() == want6 {
		if want6 {
			return fmt.Errorf("not an IPv6 address")
		}
		return fmt.Errorf("not an IPv4 address")
	}
	return nil
}
