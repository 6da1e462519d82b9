package packet_test

import (
	"encoding/binary"
	"errors"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/confluo-go/confluo/pkg/packet"
	"github.com/confluo-go/confluo/pkg/schema"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

func TestSchemaOffsets(t *testing.T) {
	s, err := schema.Parse(packet.SchemaText)
	if err != nil {
		t.Fatalf("schema.Parse(SchemaText): %v", err)
	}
	if !packet.Schema().Equal(s) {
		t.Errorf("packet.Schema() differs from schema.Parse(SchemaText)")
	}
	if s.RecordSize != packet.RecordSize {
		t.Fatalf("RecordSize: schema %d, const %d", s.RecordSize, packet.RecordSize)
	}
	want := map[string]int{
		"timestamp": packet.OffTimestamp, "frame_len": packet.OffFrameLen, "cap_len": packet.OffCapLen,
		"mirror_id": packet.OffMirrorID, "in_port": packet.OffInPort, "presence": packet.OffPresence,
		"flow_hash": packet.OffFlowHash, "truncated": packet.OffTruncated, "decode_error": packet.OffDecodeError,
		"tunnel_type": packet.OffTunnelType, "ip_version": packet.OffIPVersion, "src_mac": packet.OffSrcMAC,
		"dst_mac": packet.OffDstMAC, "eth_type": packet.OffEthType, "vlan": packet.OffVLAN,
		"inner_vlan": packet.OffInnerVLAN, "vlan_pcp": packet.OffVLANPCP, "mpls_depth": packet.OffMPLSDepth,
		"mpls_label": packet.OffMPLSLabel, "vni": packet.OffVNI, "outer_src_ip": packet.OffOuterSrcIP,
		"outer_dst_ip": packet.OffOuterDstIP, "outer_src_ip6": packet.OffOuterSrcIP6,
		"outer_dst_ip6": packet.OffOuterDstIP6, "src_ip": packet.OffSrcIP, "dst_ip": packet.OffDstIP,
		"src_ip6": packet.OffSrcIP6, "dst_ip6": packet.OffDstIP6, "ip_proto": packet.OffIPProto,
		"dscp": packet.OffDSCP, "ecn": packet.OffECN, "ttl": packet.OffTTL, "ip_len": packet.OffIPLen,
		"frag_offset": packet.OffFragOffset, "ip_id": packet.OffIPID, "frag_flags": packet.OffFragFlags,
		"ip6_ext_count": packet.OffIP6ExtCount, "src_port": packet.OffSrcPort, "dst_port": packet.OffDstPort,
		"tcp_flags": packet.OffTCPFlags, "tcp_seq": packet.OffTCPSeq, "tcp_ack": packet.OffTCPAck,
		"tcp_window": packet.OffTCPWindow, "tcp_tsval": packet.OffTCPTSval, "tcp_tsecr": packet.OffTCPTSecr,
		"icmp_type": packet.OffICMPType, "icmp_code": packet.OffICMPCode, "pause_vector": packet.OffPauseVector,
		"pause_time0": packet.OffPauseTime0, "pause_time1": packet.OffPauseTime1, "pause_time2": packet.OffPauseTime2,
		"pause_time3": packet.OffPauseTime3, "pause_time4": packet.OffPauseTime4, "pause_time5": packet.OffPauseTime5,
		"pause_time6": packet.OffPauseTime6, "pause_time7": packet.OffPauseTime7,
		"int_hop_count": packet.OffINTHopCount, "int_hop_ml": packet.OffINTHopML,
		"req_id": packet.OffReqID, "req_offset": packet.OffReqOffset, "l4_payload_len": packet.OffL4PayloadLen,
	}
	for i := range packet.MaxINTHops {
		base := packet.OffINTSwitchID0 + i*packet.INTHopStride
		suffix := string(rune('0' + i))
		want["int_switch_id"+suffix] = base
		want["int_in_port"+suffix] = base + 4
		want["int_eg_port"+suffix] = base + 6
		want["int_latency"+suffix] = base + 8
		want["int_queue"+suffix] = base + 12
	}
	if len(want) != len(s.Columns) {
		t.Errorf("schema has %d columns, test knows %d", len(s.Columns), len(want))
	}
	for name, off := range want {
		c, ok := s.Column(name)
		if !ok {
			t.Errorf("column %s missing", name)
			continue
		}
		if c.Offset != off {
			t.Errorf("column %s: schema offset %d, const %d", name, c.Offset, off)
		}
	}
	raw, err := schema.Parse(packet.SchemaTextWithRaw(128))
	if err != nil {
		t.Fatal(err)
	}
	if c, ok := raw.Column(packet.RawHeaderColumn); !ok || c.Offset != packet.RecordSize || c.Size != 128 {
		t.Errorf("raw header column: %+v", c)
	}
}

func decode(t *testing.T, d *packet.Decoder, frame []byte) []byte {
	t.Helper()
	rec := make([]byte, packet.RecordSize+8)
	for i := range rec {
		rec[i] = 0xee // garbage the decoder must overwrite, and a canary after the record
	}
	d.Decode(rec[:packet.RecordSize], frame, len(frame), 42)
	for i := packet.RecordSize; i < len(rec); i++ {
		if rec[i] != 0xee {
			t.Fatalf("decoder wrote past RecordSize at %d", i)
		}
	}
	return rec[:packet.RecordSize]
}

func u16(rec []byte, off int) uint16 { return binary.LittleEndian.Uint16(rec[off:]) }
func u32(rec []byte, off int) uint32 { return binary.LittleEndian.Uint32(rec[off:]) }
func pres(rec []byte) uint32         { return u32(rec, packet.OffPresence) }
func reason(rec []byte) packet.Reason {
	return packet.Reason(rec[packet.OffDecodeError])
}

func TestDecodeTCP(t *testing.T) {
	d := packet.NewDecoder(packet.Options{InPort: 7, MirrorID: 3})
	f := tcpFrame([4]byte{10, 0, 0, 1}, [4]byte{10, 0, 0, 2}, 40000, 5201, make([]byte, 100))
	rec := decode(t, d, f)
	if reason(rec) != packet.ReasonNone || rec[packet.OffTruncated] != 0 {
		t.Fatalf("reason %v truncated %d", reason(rec), rec[packet.OffTruncated])
	}
	checks := []struct {
		name      string
		got, want uint64
	}{
		{"timestamp", binary.LittleEndian.Uint64(rec), 42},
		{"in_port", uint64(u32(rec, packet.OffInPort)), 7},
		{"mirror_id", uint64(u16(rec, packet.OffMirrorID)), 3},
		{"src_port", uint64(u16(rec, packet.OffSrcPort)), 40000},
		{"dst_port", uint64(u16(rec, packet.OffDstPort)), 5201},
		{"tcp_seq", uint64(u32(rec, packet.OffTCPSeq)), 1000},
		{"tcp_ack", uint64(u32(rec, packet.OffTCPAck)), 2000},
		{"tcp_flags", uint64(u16(rec, packet.OffTCPFlags)), 0x18},
		{"tcp_window", uint64(u16(rec, packet.OffTCPWindow)), 512},
		{"tcp_tsval", uint64(u32(rec, packet.OffTCPTSval)), 5},
		{"tcp_tsecr", uint64(u32(rec, packet.OffTCPTSecr)), 6},
		{"dscp", uint64(rec[packet.OffDSCP]), 0x2e},
		{"ecn", uint64(rec[packet.OffECN]), 1},
		{"ttl", uint64(rec[packet.OffTTL]), 64},
		{"ip_id", uint64(u32(rec, packet.OffIPID)), 7},
		{"frag_flags", uint64(rec[packet.OffFragFlags]), packet.FragDontFragment},
		{"ip_len", uint64(u16(rec, packet.OffIPLen)), 20 + 32 + 100},
		{"l4_payload_len", uint64(u16(rec, packet.OffL4PayloadLen)), 100},
		{"frame_len", uint64(u32(rec, packet.OffFrameLen)), uint64(len(f))},
		{"flow_hash", uint64(u32(rec, packet.OffFlowHash)), uint64(packet.FlowHash(rec))},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
		}
	}
	wantPres := packet.PresEthernet | packet.PresIPv4 | packet.PresPorts | packet.PresTCP | packet.PresTCPTimestamp
	if pres(rec) != wantPres {
		t.Errorf("presence %#x, want %#x", pres(rec), wantPres)
	}
	d.SetIngress(9, 4)
	rec = decode(t, d, f)
	if u32(rec, packet.OffInPort) != 9 || u16(rec, packet.OffMirrorID) != 4 {
		t.Errorf("SetIngress not applied")
	}
}

func TestFlowHashSymmetric(t *testing.T) {
	d := packet.NewDecoder(packet.DefaultOptions())
	rng := rand.New(rand.NewPCG(1, 2))
	const flows, buckets = 8192, 16
	var count [buckets]int
	seen := map[uint32]bool{}
	for range flows {
		a := [4]byte{10, byte(rng.IntN(4)), byte(rng.IntN(256)), byte(rng.IntN(256))}
		b := [4]byte{10, 1, 0, byte(rng.IntN(8))}
		sp, dp := uint16(rng.IntN(65536)), uint16(5201)
		h1 := d.Decode(make([]byte, packet.RecordSize), tcpFrame(a, b, sp, dp, nil), 0, 0)
		h2 := d.Decode(make([]byte, packet.RecordSize), tcpFrame(b, a, dp, sp, nil), 0, 0)
		if h1 != h2 {
			t.Fatalf("flow %v:%d <-> %v:%d: hashes %#x and %#x differ", a, sp, b, dp, h1, h2)
		}
		u1 := d.Decode(make([]byte, packet.RecordSize), udpFrame(a, b, sp, dp, 0, nil), 0, 0)
		if u1 == h1 {
			t.Errorf("TCP and UDP flows with the same addresses and ports hash alike")
		}
		count[h1%buckets]++
		seen[h1] = true
	}
	for i, c := range count {
		if c < flows/buckets*8/10 || c > flows/buckets*12/10 {
			t.Errorf("bucket %d has %d of %d flows: %v", i, c, flows, count)
		}
	}
	if len(seen) < flows*99/100 {
		t.Errorf("only %d distinct hashes for %d flows", len(seen), flows)
	}
	// Fragments: the first (with ports) and a later one (without) hash alike.
	first := udpFrame([4]byte{10, 0, 0, 1}, [4]byte{10, 0, 0, 2}, 1000, 2000, 0, make([]byte, 100))
	first[20] |= 0x20 // more fragments
	later := slices.Clone(first)
	later[20], later[21] = 0, 20 // offset 160 bytes, last fragment
	hf := d.Decode(make([]byte, packet.RecordSize), first, 0, 0)
	hl := d.Decode(make([]byte, packet.RecordSize), later, 0, 0)
	if hf != hl {
		t.Errorf("fragments of one datagram hash %#x and %#x", hf, hl)
	}
	// IPv6.
	f := ipv6TCPFrame(nil)
	rev := slices.Clone(f)
	copy(rev[22:38], f[38:54])
	copy(rev[38:54], f[22:38])
	copy(rev[54:56], f[56:58])
	copy(rev[56:58], f[54:56])
	if h1, h2 := d.Decode(make([]byte, packet.RecordSize), f, 0, 0), d.Decode(make([]byte, packet.RecordSize), rev, 0, 0); h1 != h2 || h1 == 0 {
		t.Errorf("IPv6 hashes %#x, %#x", h1, h2)
	}
}

func TestVXLANAndGeneve(t *testing.T) {
	d := packet.NewDecoder(packet.DefaultOptions())
	rec := decode(t, d, vxlanFrame(0xabcdef))
	if reason(rec) != packet.ReasonNone {
		t.Fatalf("reason %v", reason(rec))
	}
	if rec[packet.OffTunnelType] != packet.TunnelVXLAN || u32(rec, packet.OffVNI) != 0xabcdef {
		t.Errorf("tunnel %d vni %#x", rec[packet.OffTunnelType], u32(rec, packet.OffVNI))
	}
	if got := rec[packet.OffOuterSrcIP : packet.OffOuterSrcIP+8]; !slices.Equal(got, []byte{10, 0, 0, 1, 10, 0, 0, 2}) {
		t.Errorf("outer addresses %v", got)
	}
	if got := rec[packet.OffSrcIP : packet.OffSrcIP+8]; !slices.Equal(got, []byte{192, 168, 0, 1, 192, 168, 0, 2}) {
		t.Errorf("inner addresses %v", got)
	}
	if u16(rec, packet.OffSrcPort) != 40000 || u16(rec, packet.OffDstPort) != 443 || rec[packet.OffIPProto] != 6 {
		t.Errorf("inner 5-tuple ports %d %d proto %d", u16(rec, packet.OffSrcPort), u16(rec, packet.OffDstPort), rec[packet.OffIPProto])
	}
	if pres(rec)&(packet.PresTunnel|packet.PresVNI|packet.PresOuterIPv4|packet.PresTCP) != packet.PresTunnel|packet.PresVNI|packet.PresOuterIPv4|packet.PresTCP {
		t.Errorf("presence %#x", pres(rec))
	}

	// Geneve with 8 bytes of options carrying IPv6 directly (protocol 0x86dd).
	inner := ipv6TCPFrame(nil)[14:]
	gen := []byte{0x02, 0, 0x86, 0xdd, 0x00, 0x1b, 0x58, 0, 1, 2, 3, 4, 5, 6, 7, 8}
	f := udpFrame([4]byte{10, 9, 0, 1}, [4]byte{10, 9, 0, 2}, 1234, 6081, 0, append(gen, inner...))
	rec = decode(t, d, f)
	if reason(rec) != packet.ReasonNone || rec[packet.OffTunnelType] != packet.TunnelGeneve || u32(rec, packet.OffVNI) != 7000 {
		t.Fatalf("geneve: reason %v tunnel %d vni %d", reason(rec), rec[packet.OffTunnelType], u32(rec, packet.OffVNI))
	}
	if rec[packet.OffIPVersion] != 6 || u16(rec, packet.OffDstPort) != 80 || pres(rec)&packet.PresIPv4 != 0 {
		t.Errorf("geneve inner: version %d dport %d presence %#x", rec[packet.OffIPVersion], u16(rec, packet.OffDstPort), pres(rec))
	}

	// GRE with a key over IPv4 carrying IPv4/UDP.
	innerIP := ipv4([4]byte{3, 3, 3, 3}, [4]byte{4, 4, 4, 4}, layers.IPProtocolUDP)
	innerUDP := &layers.UDP{SrcPort: 1, DstPort: 2}
	_ = innerUDP.SetNetworkLayerForChecksum(innerIP)
	gre := serialize(&layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv4},
		ipv4([4]byte{1, 1, 1, 1}, [4]byte{2, 2, 2, 2}, layers.IPProtocolGRE),
		&layers.GRE{KeyPresent: true, Key: 777, Protocol: layers.EthernetTypeIPv4}, innerIP, innerUDP)
	ipip := serialize(&layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv4},
		ipv4([4]byte{1, 1, 1, 1}, [4]byte{2, 2, 2, 2}, layers.IPProtocolIPv4), innerIP, innerUDP)
	rec = decode(t, d, ipip)
	if reason(rec) != packet.ReasonNone || rec[packet.OffTunnelType] != packet.TunnelIPIP || pres(rec)&packet.PresVNI != 0 ||
		rec[packet.OffSrcIP] != 3 || rec[packet.OffOuterSrcIP] != 1 || u16(rec, packet.OffDstPort) != 2 {
		t.Errorf("ipip: reason %v tunnel %d src %d outer %d", reason(rec), rec[packet.OffTunnelType], rec[packet.OffSrcIP], rec[packet.OffOuterSrcIP])
	}
	rec = decode(t, d, gre)
	if reason(rec) != packet.ReasonNone || rec[packet.OffTunnelType] != packet.TunnelGRE || u32(rec, packet.OffVNI) != 777 ||
		rec[packet.OffSrcIP] != 3 || rec[packet.OffOuterSrcIP] != 1 || u16(rec, packet.OffDstPort) != 2 {
		t.Errorf("gre: reason %v tunnel %d key %d src %d outer %d", reason(rec), rec[packet.OffTunnelType], u32(rec, packet.OffVNI), rec[packet.OffSrcIP], rec[packet.OffOuterSrcIP])
	}
}

// intStack builds an INT-MD shim + metadata header + hops (bitmap bits 0-3: node id, L1 ports,
// hop latency, queue id+occupancy; hop ML 4 words).
func intStack(hops int) []byte {
	hopML := 4
	total := 16 + hops*hopML*4
	b := []byte{0x10, byte(total / 4), 0, 0, 0x20, 0, byte(hopML), 5, 0xf0, 0x00, 0, 0, 0, 0, 0, 0}
	for h := range hops {
		b = binary.BigEndian.AppendUint32(b, uint32(100+h))               // switch id
		b = binary.BigEndian.AppendUint16(b, uint16(10+h))                // ingress port
		b = binary.BigEndian.AppendUint16(b, uint16(20+h))                // egress port
		b = binary.BigEndian.AppendUint32(b, uint32(1000*(h+1)))          // hop latency
		b = binary.BigEndian.AppendUint32(b, uint32(7)<<24|uint32(300+h)) // queue id 7, occupancy
	}
	return b
}

func TestINTAndRequestID(t *testing.T) {
	opts := packet.DefaultOptions()
	opts.INT = true
	opts.INTDSCP = 0x17
	opts.RequestIDPorts = []uint16{9000}
	if err := opts.Validate(); err != nil {
		t.Fatal(err)
	}
	d := packet.NewDecoder(opts)
	shim := []byte{0, 0, 0, 0, 0, 0, 0x12, 0x34, 0x00, 0x40}
	payload := append(intStack(5), shim...)
	f := udpFrame([4]byte{10, 0, 0, 1}, [4]byte{10, 0, 0, 2}, 5555, 9000, 0x17<<2, payload)
	rec := decode(t, d, f)
	if reason(rec) != packet.ReasonNone {
		t.Fatalf("reason %v", reason(rec))
	}
	if pres(rec)&(packet.PresINT|packet.PresRequestID) != packet.PresINT|packet.PresRequestID {
		t.Fatalf("presence %#x", pres(rec))
	}
	if rec[packet.OffINTHopCount] != 5 || rec[packet.OffINTHopML] != 4 {
		t.Errorf("hop count %d hop ML %d", rec[packet.OffINTHopCount], rec[packet.OffINTHopML])
	}
	for h := range packet.MaxINTHops {
		base := packet.OffINTSwitchID0 + h*packet.INTHopStride
		if u32(rec, base) != uint32(100+h) || u16(rec, base+4) != uint16(10+h) || u16(rec, base+6) != uint16(20+h) ||
			u32(rec, base+8) != uint32(1000*(h+1)) || u32(rec, base+12) != uint32(300+h) {
			t.Errorf("hop %d: % x", h, rec[base:base+packet.INTHopStride])
		}
	}
	if binary.LittleEndian.Uint64(rec[packet.OffReqID:]) != 0x1234 || u16(rec, packet.OffReqOffset) != 0x40 {
		t.Errorf("request id %#x offset %#x", binary.LittleEndian.Uint64(rec[packet.OffReqID:]), u16(rec, packet.OffReqOffset))
	}

	// Other DSCP: no INT, the shim is read at the payload start.
	f = udpFrame([4]byte{10, 0, 0, 1}, [4]byte{10, 0, 0, 2}, 9000, 80, 0, shim)
	rec = decode(t, d, f)
	if pres(rec)&packet.PresINT != 0 || pres(rec)&packet.PresRequestID == 0 || binary.LittleEndian.Uint64(rec[packet.OffReqID:]) != 0x1234 {
		t.Errorf("shim without INT: presence %#x", pres(rec))
	}

	// A lying INT length is counted, not followed.
	bad := intStack(2)
	bad[1] = 200
	f = udpFrame([4]byte{10, 0, 0, 1}, [4]byte{10, 0, 0, 2}, 1, 2, 0x17<<2, bad)
	rec = decode(t, d, f)
	if reason(rec) != packet.ReasonBadINT || pres(rec)&packet.PresINT != 0 {
		t.Errorf("bad INT: reason %v presence %#x", reason(rec), pres(rec))
	}
	if d.Stats().ByReason[packet.ReasonBadINT] != 1 {
		t.Errorf("stats %+v", d.Stats())
	}

	// INT after TCP with options.
	f = tcpFrame([4]byte{10, 0, 0, 1}, [4]byte{10, 0, 0, 2}, 1, 2, intStack(1))
	f[15] = 0x17 << 2 // TOS; the checksum does not matter to the decoder
	rec = decode(t, d, f)
	if reason(rec) != packet.ReasonNone || rec[packet.OffINTHopCount] != 1 || u32(rec, packet.OffINTSwitchID0) != 100 {
		t.Errorf("INT over TCP: reason %v hops %d", reason(rec), rec[packet.OffINTHopCount])
	}
}

func TestIPv6ExtensionHeaderLimits(t *testing.T) {
	d := packet.NewDecoder(packet.DefaultOptions())
	base := ipv6TCPFrame(nil)
	build := func(n int, extLen byte) []byte {
		f := slices.Clone(base[:54])
		f[20] = 0 // next header: hop-by-hop
		for i := range n {
			next := byte(0)
			if i == n-1 {
				next = 6
			}
			f = append(f, next, extLen, 1, 4, 0, 0, 0, 0)
			f = append(f, make([]byte, int(extLen)*8)...)
		}
		f = append(f, base[54:]...)
		binary.BigEndian.PutUint16(f[18:], uint16(len(f)-54))
		return f
	}
	rec := decode(t, d, build(3, 0))
	if reason(rec) != packet.ReasonNone || rec[packet.OffIP6ExtCount] != 3 || u16(rec, packet.OffDstPort) != 80 {
		t.Errorf("3 ext headers: reason %v count %d dport %d", reason(rec), rec[packet.OffIP6ExtCount], u16(rec, packet.OffDstPort))
	}
	rec = decode(t, d, build(50, 0))
	if reason(rec) != packet.ReasonTooManyHeaders || pres(rec)&packet.PresTCP != 0 {
		t.Errorf("50 ext headers: reason %v", reason(rec))
	}
	// A header claiming more bytes than the payload length.
	f := build(1, 0)
	f[55] = 200
	rec = decode(t, d, f)
	if reason(rec) != packet.ReasonBadLength {
		t.Errorf("lying ext length: reason %v", reason(rec))
	}
}

func TestLyingLengths(t *testing.T) {
	d := packet.NewDecoder(packet.DefaultOptions())
	f := tcpFrame([4]byte{10, 0, 0, 1}, [4]byte{10, 0, 0, 2}, 1, 2, nil)
	cases := []struct {
		name   string
		mutate func(f []byte)
		want   packet.Reason
	}{
		{"ihl<5", func(f []byte) { f[14] = 0x43 }, packet.ReasonBadLength},
		{"total<ihl", func(f []byte) { binary.BigEndian.PutUint16(f[16:], 10) }, packet.ReasonBadLength},
		{"ihl beyond frame", func(f []byte) { f[14] = 0x4f }, packet.ReasonBadLength},
		{"version 6 in 0x0800", func(f []byte) { f[14] = 0x65 }, packet.ReasonBadVersion},
		{"tcp data offset<5", func(f []byte) { f[14+20+12] = 0x30 }, packet.ReasonBadLength},
		{"tcp data offset beyond packet", func(f []byte) { f[14+20+12] = 0xf0 }, packet.ReasonBadLength},
		{"unknown ethertype", func(f []byte) { f[12], f[13] = 0x12, 0x34 }, packet.ReasonUnsupported},
	}
	for _, c := range cases {
		g := slices.Clone(f)
		c.mutate(g)
		rec := decode(t, d, g)
		if reason(rec) != c.want {
			t.Errorf("%s: reason %v, want %v", c.name, reason(rec), c.want)
		}
	}
	// Total length beyond the capture: a cut copy, decoded, truncated.
	g := slices.Clone(f)
	binary.BigEndian.PutUint16(g[16:], 1500)
	rec := decode(t, d, g)
	if reason(rec) != packet.ReasonNone || rec[packet.OffTruncated] != 1 || pres(rec)&packet.PresTCP == 0 {
		t.Errorf("long total length: reason %v truncated %d", reason(rec), rec[packet.OffTruncated])
	}
	// Nested tunnels beyond the limit.
	inner := vxlanFrame(1)
	for range 4 {
		var vx [8]byte
		vx[0] = 0x08
		inner = udpFrame([4]byte{1, 2, 3, 4}, [4]byte{5, 6, 7, 8}, 1, 4789, 0, append(vx[:], inner...))
	}
	rec = decode(t, d, inner)
	if reason(rec) != packet.ReasonTooManyHeaders {
		t.Errorf("deep tunnels: reason %v", reason(rec))
	}
	// Short record.
	if h := d.Decode(make([]byte, 10), f, len(f), 0); h != 0 || d.Stats().ByReason[packet.ReasonShortRecord] != 1 {
		t.Errorf("short record: hash %d stats %+v", h, d.Stats())
	}
}

// TestTruncatedPrefixes decodes every prefix of a set of frames: never a panic, the truncated
// flag is set, and every field the prefix record has equals the full frame's.
func TestTruncatedPrefixes(t *testing.T) {
	opts := packet.DefaultOptions()
	opts.INT, opts.INTDSCP, opts.RequestIDPorts = true, 0x17, []uint16{9000}
	d := packet.NewDecoder(opts)
	frames := [][]byte{
		tcpFrame([4]byte{10, 0, 0, 1}, [4]byte{10, 0, 0, 2}, 1, 2, make([]byte, 20)),
		vxlanFrame(99),
		ipv6TCPFrame(make([]byte, 10)),
		udpFrame([4]byte{10, 0, 0, 1}, [4]byte{10, 0, 0, 2}, 5555, 9000, 0x17<<2, append(intStack(3), 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)),
	}
	for fi, f := range frames {
		full := recordFields(decode(t, d, f))
		for n := 0; n < len(f); n++ {
			rec := make([]byte, packet.RecordSize)
			d.Decode(rec, f[:n:n], len(f), 0)
			if rec[packet.OffTruncated] != 1 {
				t.Errorf("frame %d cut at %d: truncated flag not set", fi, n)
			}
			got := recordFields(rec)
			outerOnly := got["tunnel_type"] == "" && full["tunnel_type"] != ""
			for k, v := range got {
				if k == "cap_len" || k == "truncated" {
					continue
				}
				if outerOnly && full["outer_"+k] != "" {
					// Cut before the tunnel was recognised: the flow fields are the outer packet's.
					k = "outer_" + k
				} else if outerOnly && !strings.Contains(k, "mac") && k != "frame_len" {
					continue // other outer L3/L4 fields, not in the record of the full frame
				}
				if full[k] != v {
					t.Errorf("frame %d cut at %d: %s = %s, full frame %s", fi, n, k, v, full[k])
				}
			}
		}
	}
}

func TestZeroAllocs(t *testing.T) {
	opts := packet.DefaultOptions()
	opts.INT, opts.INTDSCP, opts.RequestIDPorts = true, 0x17, []uint16{9000}
	d := packet.NewDecoder(opts)
	rec := make([]byte, packet.RecordSize)
	frames := [][]byte{
		tcpFrame([4]byte{10, 0, 0, 1}, [4]byte{10, 0, 0, 2}, 1, 2, nil), vxlanFrame(1), ipv6TCPFrame(nil),
		udpFrame([4]byte{10, 0, 0, 1}, [4]byte{10, 0, 0, 2}, 5555, 9000, 0x17<<2, append(intStack(3), make([]byte, 10)...)),
	}
	for i, f := range frames {
		if n := testing.AllocsPerRun(100, func() { d.Decode(rec, f, len(f), 0) }); n != 0 {
			t.Errorf("frame %d: %v allocations per decode", i, n)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, o := range []packet.Options{
		{INTDSCP: 0x40}, {INT: true, INTDSCP: 0x11, INTDSCPMask: 0x10}, {MaxIPv6ExtHeaders: 100},
	} {
		if err := o.Validate(); !errors.Is(err, packet.ErrOptions) {
			t.Errorf("%+v: err %v", o, err)
		}
	}
	o := packet.DefaultOptions()
	if err := o.Validate(); err != nil {
		t.Error(err)
	}
}

func TestReasonString(t *testing.T) {
	names := map[string]bool{}
	for r := range packet.NumReasons {
		names[r.String()] = true
	}
	if len(names) != int(packet.NumReasons) {
		t.Errorf("reason names not distinct: %v", slices.Sorted(maps.Keys(names)))
	}
	_ = gopacket.Payload(nil)
}
