package packet

import (
	"strconv"
	"sync"

	"github.com/confluo-go/confluo/pkg/schema"
)

// SchemaText is the built-in packet schema in the store's schema language. Its column offsets are
// the Off* constants below (a test checks that schema.Parse(SchemaText) agrees).
//
// Conventions:
//   - Flow fields (src_ip..icmp_code, ports, TCP) describe the innermost decoded packet; for
//     tunnels the outer IP addresses go to outer_src_ip/outer_dst_ip (IPv4) or
//     outer_src_ip6/outer_dst_ip6 (IPv6), and src_mac/dst_mac are the innermost Ethernet's.
//   - mpls_label is the top label; mpls_depth the number of labels decoded (fewer than the stack
//     holds if the copy is cut inside it).
//   - eth_type is the EtherType of the innermost payload after any VLAN tags (after MPLS:
//     0x0800 or 0x86dd by the IP version nibble; tunnels carrying IP directly: that type).
//   - vlan and inner_vlan are the 12-bit VIDs of the first and second tag seen (QinQ: 0x88a8
//     service tag, then 0x8100 customer tag); vlan_pcp is the first tag's priority.
//   - An IPv4 packet sets src_ip/dst_ip, an IPv6 packet src_ip6/dst_ip6; ip_version says which.
//   - ip_len is the IPv4 total length (0 in sender-side captures of TSO packets, which are then
//     taken to end where the capture ends), or 40 + the IPv6 payload length (saturating at 65535).
//   - ip_proto is the upper-layer protocol; for IPv6 the Next Header after the extension headers
//     (ip6_ext_count of them). If the chain is cut or stops early (decode_error set), ip_proto is
//     the Next Header value where decoding stopped.
//   - ip_id is the IPv4 identification or the IPv6 fragment header's identification;
//     frag_flags has FragMoreFragments, FragDontFragment, FragReserved; frag_offset is in
//     8-byte units.
//   - tcp_flags are the 12 flag bits of the TCP header (FIN=0x001 .. AE=0x100, reserved above).
//   - pause_vector is the PFC class-enable vector; pause_time0..7 the PFC times (802.3x PAUSE:
//     pause_time0 only).
//   - int_* are the first (newest) four hops of an INT-MD metadata stack; int_hop_count is the
//     number of hops in the stack, which may exceed four.
//   - req_id and req_offset come from the request-id shim (see package doc).
//   - l4_payload_len is the TCP/UDP payload length the IP header announces (not what was captured).
//   - presence is a bitmap of Pres* bits; truncated is 1 when the copy was cut short;
//     decode_error is the Reason of the first problem found (0 = none).
const SchemaText = "{timestamp: ULONG, frame_len: UINT, cap_len: USHORT, mirror_id: USHORT, in_port: UINT, " +
	"presence: UINT, flow_hash: UINT, truncated: BOOL, decode_error: UCHAR, tunnel_type: UCHAR, " +
	"ip_version: UCHAR, src_mac: MAC, dst_mac: MAC, eth_type: USHORT, vlan: USHORT, inner_vlan: USHORT, " +
	"vlan_pcp: UCHAR, mpls_depth: UCHAR, mpls_label: UINT, vni: UINT, " +
	"outer_src_ip: IPV4, outer_dst_ip: IPV4, outer_src_ip6: IPV6, outer_dst_ip6: IPV6, " +
	"src_ip: IPV4, dst_ip: IPV4, src_ip6: IPV6, dst_ip6: IPV6, ip_proto: UCHAR, dscp: UCHAR, ecn: UCHAR, " +
	"ttl: UCHAR, ip_len: USHORT, frag_offset: USHORT, ip_id: UINT, frag_flags: UCHAR, ip6_ext_count: UCHAR, " +
	"src_port: USHORT, dst_port: USHORT, tcp_flags: USHORT, tcp_seq: UINT, tcp_ack: UINT, tcp_window: USHORT, " +
	"tcp_tsval: UINT, tcp_tsecr: UINT, icmp_type: UCHAR, icmp_code: UCHAR, pause_vector: USHORT, " +
	"pause_time0: USHORT, pause_time1: USHORT, pause_time2: USHORT, pause_time3: USHORT, " +
	"pause_time4: USHORT, pause_time5: USHORT, pause_time6: USHORT, pause_time7: USHORT, " +
	"int_hop_count: UCHAR, int_hop_ml: UCHAR, " +
	"int_switch_id0: UINT, int_in_port0: USHORT, int_eg_port0: USHORT, int_latency0: UINT, int_queue0: UINT, " +
	"int_switch_id1: UINT, int_in_port1: USHORT, int_eg_port1: USHORT, int_latency1: UINT, int_queue1: UINT, " +
	"int_switch_id2: UINT, int_in_port2: USHORT, int_eg_port2: USHORT, int_latency2: UINT, int_queue2: UINT, " +
	"int_switch_id3: UINT, int_in_port3: USHORT, int_eg_port3: USHORT, int_latency3: UINT, int_queue3: UINT, " +
	"req_id: ULONG, req_offset: USHORT, l4_payload_len: USHORT}"

// Byte offsets of the columns of SchemaText in a record. Numbers are little-endian, addresses in
// network byte order (the schema package's layout).
const (
	OffTimestamp    = 0   // timestamp ULONG
	OffFrameLen     = 8   // frame_len UINT
	OffCapLen       = 12  // cap_len USHORT
	OffMirrorID     = 14  // mirror_id USHORT
	OffInPort       = 16  // in_port UINT
	OffPresence     = 20  // presence UINT
	OffFlowHash     = 24  // flow_hash UINT
	OffTruncated    = 28  // truncated BOOL
	OffDecodeError  = 29  // decode_error UCHAR
	OffTunnelType   = 30  // tunnel_type UCHAR
	OffIPVersion    = 31  // ip_version UCHAR
	OffSrcMAC       = 32  // src_mac MAC
	OffDstMAC       = 38  // dst_mac MAC
	OffEthType      = 44  // eth_type USHORT
	OffVLAN         = 46  // vlan USHORT
	OffInnerVLAN    = 48  // inner_vlan USHORT
	OffVLANPCP      = 50  // vlan_pcp UCHAR
	OffMPLSDepth    = 51  // mpls_depth UCHAR
	OffMPLSLabel    = 52  // mpls_label UINT
	OffVNI          = 56  // vni UINT
	OffOuterSrcIP   = 60  // outer_src_ip IPV4
	OffOuterDstIP   = 64  // outer_dst_ip IPV4
	OffOuterSrcIP6  = 68  // outer_src_ip6 IPV6
	OffOuterDstIP6  = 84  // outer_dst_ip6 IPV6
	OffSrcIP        = 100 // src_ip IPV4
	OffDstIP        = 104 // dst_ip IPV4
	OffSrcIP6       = 108 // src_ip6 IPV6
	OffDstIP6       = 124 // dst_ip6 IPV6
	OffIPProto      = 140 // ip_proto UCHAR
	OffDSCP         = 141 // dscp UCHAR
	OffECN          = 142 // ecn UCHAR
	OffTTL          = 143 // ttl UCHAR
	OffIPLen        = 144 // ip_len USHORT
	OffFragOffset   = 146 // frag_offset USHORT
	OffIPID         = 148 // ip_id UINT
	OffFragFlags    = 152 // frag_flags UCHAR
	OffIP6ExtCount  = 153 // ip6_ext_count UCHAR
	OffSrcPort      = 154 // src_port USHORT
	OffDstPort      = 156 // dst_port USHORT
	OffTCPFlags     = 158 // tcp_flags USHORT
	OffTCPSeq       = 160 // tcp_seq UINT
	OffTCPAck       = 164 // tcp_ack UINT
	OffTCPWindow    = 168 // tcp_window USHORT
	OffTCPTSval     = 170 // tcp_tsval UINT
	OffTCPTSecr     = 174 // tcp_tsecr UINT
	OffICMPType     = 178 // icmp_type UCHAR
	OffICMPCode     = 179 // icmp_code UCHAR
	OffPauseVector  = 180 // pause_vector USHORT
	OffPauseTime0   = 182 // pause_time0 USHORT
	OffPauseTime1   = 184 // pause_time1 USHORT
	OffPauseTime2   = 186 // pause_time2 USHORT
	OffPauseTime3   = 188 // pause_time3 USHORT
	OffPauseTime4   = 190 // pause_time4 USHORT
	OffPauseTime5   = 192 // pause_time5 USHORT
	OffPauseTime6   = 194 // pause_time6 USHORT
	OffPauseTime7   = 196 // pause_time7 USHORT
	OffINTHopCount  = 198 // int_hop_count UCHAR
	OffINTHopML     = 199 // int_hop_ml UCHAR
	OffINTSwitchID0 = 200 // int_switch_id0 UINT
	OffINTInPort0   = 204 // int_in_port0 USHORT
	OffINTEgPort0   = 206 // int_eg_port0 USHORT
	OffINTLatency0  = 208 // int_latency0 UINT
	OffINTQueue0    = 212 // int_queue0 UINT
	OffReqID        = 264 // req_id ULONG
	OffReqOffset    = 272 // req_offset USHORT
	OffL4PayloadLen = 274 // l4_payload_len USHORT
	RecordSize      = 276
)

// INT hop columns: hop i (0..MaxINTHops-1) starts at OffINTSwitchID0 + i*INTHopStride.
const (
	MaxINTHops    = 4
	INTHopStride  = 16
	intHopSwitch  = 0
	intHopInPort  = 4
	intHopEgPort  = 6
	intHopLatency = 8
	intHopQueue   = 12
)

// Presence bits of the presence column: which headers were decoded whole.
const (
	PresEthernet     uint32 = 1 << iota // Ethernet header
	PresVLAN                            // vlan (and vlan_pcp) valid
	PresInnerVLAN                       // inner_vlan valid (QinQ)
	PresMPLS                            // mpls_label/mpls_depth valid
	PresIPv4                            // src_ip, dst_ip and IPv4 header fields
	PresIPv6                            // src_ip6, dst_ip6 and IPv6 header fields
	PresIPOptions                       // the IPv4 header had options
	PresIPv6Ext                         // IPv6 extension headers were walked (ip6_ext_count)
	PresFragment                        // frag_* and ip_id describe a fragment header or IPv4 fragment
	PresPorts                           // src_port/dst_port valid (TCP or UDP)
	PresTCP                             // tcp_* valid
	PresTCPTimestamp                    // tcp_tsval/tcp_tsecr valid
	PresUDP                             // UDP header
	PresICMP                            // icmp_type/icmp_code of ICMP (v4)
	PresICMPv6                          // icmp_type/icmp_code of ICMPv6
	PresTunnel                          // tunnel_type valid (and vni for VXLAN/Geneve/keyed GRE)
	PresOuterIPv4                       // outer_src_ip/outer_dst_ip valid
	PresOuterIPv6                       // outer_src_ip6/outer_dst_ip6 valid
	PresPause                           // 802.3x PAUSE: pause_time0
	PresPFC                             // 802.1Qbb PFC: pause_vector, pause_time0..7
	PresINT                             // int_* valid
	PresRequestID                       // req_id/req_offset valid
	PresVNI                             // vni valid
)

// Tunnel types of the tunnel_type column.
const (
	TunnelNone   = 0
	TunnelVXLAN  = 1
	TunnelGeneve = 2
	TunnelGRE    = 3
	TunnelIPIP   = 4 // IPv4 or IPv6 directly in IPv4 or IPv6 (protocol 4 or 41)
)

// Fragment flag bits of the frag_flags column.
const (
	FragMoreFragments = 1 << 0
	FragDontFragment  = 1 << 1
	FragReserved      = 1 << 2
)

// SchemaTextWithRaw returns SchemaText with one more column, raw_header STRING(n), placed right
// after the built-in columns (at offset RecordSize). Fill it with copy(rec[RecordSize:], frame);
// pcapio's exporter writes those bytes back exactly.
func SchemaTextWithRaw(n int) string {
	return SchemaText[:len(SchemaText)-1] + ", raw_header: STRING(" + strconv.Itoa(n) + ")}"
}

// RawHeaderColumn is the name of the optional raw header column.
const RawHeaderColumn = "raw_header"

var builtin = sync.OnceValue(func() *schema.Schema {
	s, err := schema.Parse(SchemaText)
	if err != nil {
		panic("packet: SchemaText does not parse: " + err.Error()) // a test guards against this
	}
	return s
})

// Schema returns the parsed built-in packet schema (shared, immutable, safe for concurrent use).
func Schema() *schema.Schema { return builtin() }
