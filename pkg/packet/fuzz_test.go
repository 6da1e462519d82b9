package packet_test

import (
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/confluo-go/confluo/pkg/packet"
	"github.com/confluo-go/confluo/pkg/pcapio"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

const maxFuzzFrame = 2048

// seedFrames returns frames of both test captures (every encap frame, a sample of the dev
// capture) and the synthetic frames of the unit tests.
func seedFrames(tb testing.TB, devEvery int) [][]byte {
	var out [][]byte
	for _, name := range goldenCaptures {
		r, err := pcapio.Open(filepath.Join("testdata", name+".pcap"))
		if err != nil {
			tb.Fatal(err)
		}
		for i := 0; ; i++ {
			f, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				tb.Fatal(err)
			}
			if name == "dev_sample" && i%devEvery != 0 {
				continue
			}
			out = append(out, append([]byte(nil), f.Data[:min(len(f.Data), maxFuzzFrame)]...))
		}
		r.Close()
	}
	out = append(out,
		tcpFrame([4]byte{10, 0, 0, 1}, [4]byte{10, 0, 0, 2}, 1, 2, nil),
		vxlanFrame(77), ipv6TCPFrame([]byte("hello")),
		udpFrame([4]byte{10, 0, 0, 1}, [4]byte{10, 0, 0, 2}, 5555, 9000, 0x17<<2, append(intStack(3), make([]byte, 10)...)),
	)
	return out
}

// FuzzDecode checks the decoder's safety invariants on arbitrary frames: no panic, nothing
// written outside the record, deterministic output, the truncated flag on cut copies, the flow
// hash as documented, and that a prefix of the frame never yields a field value the whole frame
// contradicts (apart from tunnels not yet recognised).
func FuzzDecode(f *testing.F) {
	for _, fr := range seedFrames(f, 50) {
		f.Add(fr, uint8(0x17), uint16(9000))
	}
	f.Fuzz(func(t *testing.T, frame []byte, intDSCP uint8, reqPort uint16) {
		if len(frame) > maxFuzzFrame {
			frame = frame[:maxFuzzFrame]
		}
		opts := packet.DefaultOptions()
		opts.INT, opts.INTDSCP, opts.RequestIDPorts = true, intDSCP&0x3f, []uint16{reqPort}
		d := packet.NewDecoder(opts)
		frame = frame[:len(frame):len(frame)]
		rec := decode(t, d, frame)
		again := decode(t, d, frame)
		if string(rec) != string(again) {
			t.Fatalf("decoding twice differs")
		}
		if h := packet.FlowHash(rec); h != u32(rec, packet.OffFlowHash) {
			t.Fatalf("flow_hash %#x, FlowHash %#x", u32(rec, packet.OffFlowHash), h)
		}
		if r := reason(rec); r >= packet.NumReasons {
			t.Fatalf("reason %d out of range", r)
		}
		full := recordFields(rec)
		for _, n := range []int{len(frame) / 2, len(frame) * 3 / 4, len(frame) - 1} {
			if n < 0 || n >= len(frame) {
				continue
			}
			cut := decode(t, d, frame[:n:n])
			// Same wire length: the copy is cut short.
			r2 := make([]byte, packet.RecordSize)
			d.Decode(r2, frame[:n:n], len(frame), 42)
			if r2[packet.OffTruncated] != 1 {
				t.Fatalf("cut at %d of %d: truncated flag not set", n, len(frame))
			}
			got := recordFields(cut)
			if got["tunnel_type"] != full["tunnel_type"] || reason(rec) != packet.ReasonNone {
				continue // flow fields describe different packets, or the full frame is malformed
			}
			for k, v := range got {
				switch k {
				case "cap_len", "frame_len", "truncated", "l4_payload_len":
					continue
				case "ip_proto", "ip6_ext_count":
					if got["ip_version"] == "6" && reason(cut) == packet.ReasonTruncated {
						continue // the extension header chain was cut: documented as partial
					}
				case "mpls_depth":
					if reason(cut) == packet.ReasonTruncated {
						continue // the label stack was cut: documented as partial
					}
				}
				if full[k] != v {
					t.Fatalf("cut at %d: %s = %s, whole frame %s", n, k, v, full[k])
				}
			}
		}
	})
}

// FuzzDifferential compares the decoder with gopacket: every field both produce must agree.
func FuzzDifferential(f *testing.F) {
	for _, fr := range seedFrames(f, 50) {
		f.Add(fr)
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) > maxFuzzFrame {
			frame = frame[:maxFuzzFrame]
		}
		if err := differential(frame); err != nil {
			t.Fatal(err)
		}
	})
}

// TestDifferentialCaptures runs the differential check on every frame of the test captures.
func TestDifferentialCaptures(t *testing.T) {
	frames := seedFrames(t, 1)
	for i, fr := range frames {
		if err := differential(fr); err != nil {
			t.Errorf("frame %d: %v", i+1, err)
		}
	}
}

var diffDecoder = packet.NewDecoder(packet.DefaultOptions())

// differential decodes frame with both decoders and compares what both produced. Structure must
// match for a layer to be compared: flow fields are compared with gopacket's first IP/L4 layers
// when neither decoder saw a tunnel, and with the last ones (and outer addresses with the first)
// when both saw exactly one tunnel.
func differential(frame []byte) error {
	rec := make([]byte, packet.RecordSize)
	diffDecoder.Decode(rec, frame, len(frame), 0)
	pres := binary.LittleEndian.Uint32(rec[packet.OffPresence:])
	pkt := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.DecodeOptions{NoCopy: true})

	var eths []*layers.Ethernet
	var dot1qs []*layers.Dot1Q
	var mplss []*layers.MPLS
	var ips []gopacket.Layer
	var tcps []*layers.TCP
	var udps []*layers.UDP
	var icmps []gopacket.Layer
	tunnels := 0
	var vni uint32
	vniKnown := false
	all := pkt.Layers()
	if pkt.ErrorLayer() != nil {
		// gopacket adds a layer before knowing it failed to decode it: drop the partial one.
		for i, l := range all {
			if l.LayerType() == gopacket.LayerTypeDecodeFailure && i > 0 {
				all = all[:i-1]
				break
			}
		}
	}
	prevIP, fragment := false, false
	for _, l := range all {
		_, isIP4 := l.(*layers.IPv4)
		_, isIP6 := l.(*layers.IPv6)
		if (isIP4 || isIP6) && prevIP {
			tunnels++ // IP in IP
		}
		prevIP = isIP4 || isIP6
		switch l := l.(type) {
		case *layers.Ethernet:
			eths = append(eths, l)
		case *layers.Dot1Q:
			dot1qs = append(dot1qs, l)
		case *layers.MPLS:
			mplss = append(mplss, l)
		case *layers.IPv4, *layers.IPv6:
			ips = append(ips, l)
		case *layers.TCP:
			tcps = append(tcps, l)
		case *layers.UDP:
			udps = append(udps, l)
		case *layers.ICMPv4, *layers.ICMPv6:
			icmps = append(icmps, l)
		case *layers.VXLAN:
			tunnels++
			if tunnels == 1 && l.ValidIDFlag {
				vni, vniKnown = l.VNI, true
			}
		case *layers.Geneve:
			tunnels++
			if tunnels == 1 {
				vni, vniKnown = l.VNI, true
			}
		case *layers.GRE:
			tunnels++
			if tunnels == 1 && l.KeyPresent {
				vni, vniKnown = l.Key, true
			}
		case *layers.EtherIP:
			tunnels++
		case *gopacket.Fragment:
			fragment = true // gopacket stops at any fragment, the decoder goes on into a first one
		}
	}
	var errs []string
	check := func(what string, got, want any) {
		if fmt.Sprint(got) != fmt.Sprint(want) {
			errs = append(errs, fmt.Sprintf("%s: decoder %v, gopacket %v", what, got, want))
		}
	}
	ourTunnel := pres&packet.PresTunnel != 0
	inner := 0 // index of the layers describing the flow fields
	switch {
	case tunnels == 0 && !ourTunnel:
	case (fragment || pkt.ErrorLayer() != nil) && ourTunnel:
		// gopacket stopped early (a fragment, or a layer it rejects that the decoder takes as
		// cut short): the innermost packets of the two may differ.
		return nil
	case tunnels == 1 && ourTunnel && packet.Reason(rec[packet.OffDecodeError]) != packet.ReasonTooManyHeaders:
		inner = -1 // last
		if vniKnown && pres&packet.PresVNI != 0 {
			check("vni", binary.LittleEndian.Uint32(rec[packet.OffVNI:]), vni)
		}
		if len(ips) >= 1 {
			if ip, ok := ips[0].(*layers.IPv4); ok && pres&packet.PresOuterIPv4 != 0 {
				check("outer_src_ip", addr(rec, packet.OffOuterSrcIP, 4), gpAddr(ip.SrcIP))
				check("outer_dst_ip", addr(rec, packet.OffOuterDstIP, 4), gpAddr(ip.DstIP))
			}
			if ip, ok := ips[0].(*layers.IPv6); ok && pres&packet.PresOuterIPv6 != 0 {
				check("outer_src_ip6", addr(rec, packet.OffOuterSrcIP6, 16), gpAddr(ip.SrcIP))
				check("outer_dst_ip6", addr(rec, packet.OffOuterDstIP6, 16), gpAddr(ip.DstIP))
			}
		}
		if len(ips) < 2 {
			ips = nil // the inner IP layer is gopacket's second
		}
		if len(udps) > 0 && (len(tcps) > 0 || len(udps) == 1) {
			udps = udps[1:] // the tunnel's UDP
		}
	default:
		return nil // different structure: nothing comparable
	}
	pick := func(n int) int {
		if inner < 0 {
			return n - 1
		}
		return 0
	}
	if len(eths) > 0 && pres&packet.PresEthernet != 0 && (inner == 0 || packet.Reason(rec[packet.OffDecodeError]) == packet.ReasonNone) {
		e := eths[pick(len(eths))]
		check("src_mac", macString(rec[packet.OffSrcMAC:]), e.SrcMAC)
		check("dst_mac", macString(rec[packet.OffDstMAC:]), e.DstMAC)
	}
	if len(dot1qs) > 0 && pres&packet.PresVLAN != 0 {
		check("vlan", binary.LittleEndian.Uint16(rec[packet.OffVLAN:]), dot1qs[0].VLANIdentifier)
		check("vlan_pcp", rec[packet.OffVLANPCP], dot1qs[0].Priority)
	}
	if len(dot1qs) > 1 && pres&packet.PresInnerVLAN != 0 {
		check("inner_vlan", binary.LittleEndian.Uint16(rec[packet.OffInnerVLAN:]), dot1qs[1].VLANIdentifier)
	}
	if len(mplss) > 0 && pres&packet.PresMPLS != 0 {
		check("mpls_label", binary.LittleEndian.Uint32(rec[packet.OffMPLSLabel:]), mplss[0].Label)
	}
	if len(ips) > 0 {
		switch ip := ips[pick(len(ips))].(type) {
		case *layers.IPv4:
			if pres&packet.PresIPv4 != 0 {
				check("src_ip", addr(rec, packet.OffSrcIP, 4), gpAddr(ip.SrcIP))
				check("dst_ip", addr(rec, packet.OffDstIP, 4), gpAddr(ip.DstIP))
				check("ttl", rec[packet.OffTTL], ip.TTL)
				check("ip_proto", rec[packet.OffIPProto], uint8(ip.Protocol))
				check("dscp", rec[packet.OffDSCP], ip.TOS>>2)
				check("ecn", rec[packet.OffECN], ip.TOS&3)
				if l := binary.LittleEndian.Uint16(rec[packet.OffIPLen:]); l != 0 { // 0: TSO, gopacket fills in
					check("ip_len", l, ip.Length)
				}
				check("ip_id", binary.LittleEndian.Uint32(rec[packet.OffIPID:]), ip.Id)
				check("frag_offset", binary.LittleEndian.Uint16(rec[packet.OffFragOffset:]), ip.FragOffset)
				check("frag_flags", rec[packet.OffFragFlags], uint8(ip.Flags&layers.IPv4MoreFragments)/uint8(layers.IPv4MoreFragments)*packet.FragMoreFragments|
					uint8(ip.Flags&layers.IPv4DontFragment)/uint8(layers.IPv4DontFragment)*packet.FragDontFragment|
					uint8(ip.Flags&layers.IPv4EvilBit)/uint8(layers.IPv4EvilBit)*packet.FragReserved)
			}
		case *layers.IPv6:
			if pres&packet.PresIPv6 != 0 {
				check("src_ip6", addr(rec, packet.OffSrcIP6, 16), gpAddr(ip.SrcIP))
				check("dst_ip6", addr(rec, packet.OffDstIP6, 16), gpAddr(ip.DstIP))
				check("ttl", rec[packet.OffTTL], ip.HopLimit)
				check("dscp", rec[packet.OffDSCP], ip.TrafficClass>>2)
				check("ecn", rec[packet.OffECN], ip.TrafficClass&3)
				if ip.Length != 0 {
					check("ip_len", int(binary.LittleEndian.Uint16(rec[packet.OffIPLen:])), min(int(ip.Length)+40, 65535))
				}
			}
		}
	}
	if len(tcps) > 0 && pres&packet.PresTCP != 0 {
		tc := tcps[pick(len(tcps))]
		check("src_port", binary.LittleEndian.Uint16(rec[packet.OffSrcPort:]), uint16(tc.SrcPort))
		check("dst_port", binary.LittleEndian.Uint16(rec[packet.OffDstPort:]), uint16(tc.DstPort))
		check("tcp_seq", binary.LittleEndian.Uint32(rec[packet.OffTCPSeq:]), tc.Seq)
		check("tcp_ack", binary.LittleEndian.Uint32(rec[packet.OffTCPAck:]), tc.Ack)
		check("tcp_window", binary.LittleEndian.Uint16(rec[packet.OffTCPWindow:]), tc.Window)
		var fl uint16
		for i, b := range []bool{tc.FIN, tc.SYN, tc.RST, tc.PSH, tc.ACK, tc.URG, tc.ECE, tc.CWR, tc.NS} {
			if b {
				fl |= 1 << i
			}
		}
		check("tcp_flags", binary.LittleEndian.Uint16(rec[packet.OffTCPFlags:])&0x1ff, fl)
		if pres&packet.PresTCPTimestamp != 0 {
			for _, o := range tc.Options {
				if o.OptionType == layers.TCPOptionKindTimestamps && len(o.OptionData) == 8 {
					check("tcp_tsval", binary.LittleEndian.Uint32(rec[packet.OffTCPTSval:]), binary.BigEndian.Uint32(o.OptionData))
					check("tcp_tsecr", binary.LittleEndian.Uint32(rec[packet.OffTCPTSecr:]), binary.BigEndian.Uint32(o.OptionData[4:]))
					break
				}
			}
		}
	}
	if len(udps) > 0 && pres&packet.PresUDP != 0 && len(tcps) == 0 {
		u := udps[pick(len(udps))]
		check("src_port", binary.LittleEndian.Uint16(rec[packet.OffSrcPort:]), uint16(u.SrcPort))
		check("dst_port", binary.LittleEndian.Uint16(rec[packet.OffDstPort:]), uint16(u.DstPort))
	}
	if len(icmps) > 0 && pres&(packet.PresICMP|packet.PresICMPv6) != 0 {
		var tc uint16
		switch l := icmps[pick(len(icmps))].(type) {
		case *layers.ICMPv4:
			tc = uint16(l.TypeCode)
		case *layers.ICMPv6:
			tc = uint16(l.TypeCode)
		}
		check("icmp_type", rec[packet.OffICMPType], uint8(tc>>8))
		check("icmp_code", rec[packet.OffICMPCode], uint8(tc))
	}
	if len(errs) > 0 {
		return fmt.Errorf("frame % x: %v", frame, errs)
	}
	return nil
}

func addr(rec []byte, off, n int) string {
	if n == 4 {
		return netip.AddrFrom4([4]byte(rec[off : off+4])).String()
	}
	return netip.AddrFrom16([16]byte(rec[off : off+16])).String()
}

// gpAddr formats a gopacket address as netip does (net.IP prints IPv4-mapped IPv6 as IPv4).
func gpAddr(ip []byte) string {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return fmt.Sprint(ip)
	}
	return a.String()
}

func macString(m []byte) string {
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5])
}
