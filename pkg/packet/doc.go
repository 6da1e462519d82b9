// Package packet decodes mirrored frames into fixed-size records of the built-in packet schema.
//
// This is the hot path of Confluo-Go: every mirrored copy becomes one record. A Decoder writes the
// fields straight into the record bytes at constant offsets (the Off* constants, which match
// schema.Parse(SchemaText)), never allocates, never panics and never reads past the frame:
//
//	d := packet.NewDecoder(packet.DefaultOptions())
//	rec := make([]byte, packet.RecordSize)
//	hash := d.Decode(rec, frame, wireLen, tsNanos) // also stored in the flow_hash column
//
// Decoded: Ethernet, 802.1Q/QinQ (0x8100, 0x88a8, 0x9100; up to 4 tags), MPLS (up to 8 labels),
// IPv4 with options, IPv6 with extension headers (hop-by-hop, routing, fragment, destination
// options, AH, mobility; up to Options.MaxIPv6ExtHeaders), TCP with options (timestamps), UDP,
// ICMP, ICMPv6, GRE (with checksum/key/sequence), IP-in-IP (4, 41), VXLAN, Geneve (with options), 802.3x PAUSE,
// 802.1Qbb PFC, INT-MD and the request-id shim. Tunnels nest up to 3 deep; the flow fields
// describe the innermost packet and the outermost tunnel's IP addresses are kept in the outer_*
// columns.
//
// A copy cut short (snaplen) decodes every header that is whole and sets the truncated column; a
// lying length field, too many extension headers or an unknown protocol stop decoding there. In
// every case the first problem is stored as a Reason in decode_error and counted in Stats, and the
// presence bitmap says which fields are valid.
//
// # INT-MD (INT spec v2.1, INT over TCP/UDP)
//
// When Options.INT is set and the IP DSCP matches Options.INTDSCP under Options.INTDSCPMask, an
// INT shim follows the TCP header (with options) or the UDP header:
//
//	0               8               16                              32
//	+-------+---+---+---------------+-------------------------------+
//	| type=1|NPT|res| length (words)| UDP port / IP proto / DSCP    |  shim
//	+-------+-+-+-+-+---------------+-----------+---------+---------+
//	| ver=2 |D|E|M| reserved                    | hop ML  | rem.hops|  metadata header
//	+-------+-+-+-+-----------------------------+---------+---------+
//	| instruction bitmap            | domain specific id            |
//	+-------------------------------+-------------------------------+
//	| DS instruction                | DS flags                      |
//	+-------------------------------+-------------------------------+
//	| hop 0 metadata (hop ML words, newest hop first) ...           |
//
// Of each of the first MaxINTHops hops the decoder keeps node id (bitmap bit 0), level 1
// ingress/egress port ids (bit 1), hop latency (bit 2) and queue occupancy (bit 3, 24 bits).
//
// # Request-id shim (BufScope)
//
// On the TCP/UDP ports listed in Options.RequestIDPorts (either direction) the L4 payload (after
// any INT data) starts with:
//
//	0                               8               10
//	+-------------------------------+---------------+
//	| request id (uint64, big end.) | offset (u16)  |
//	+-------------------------------+---------------+
//
// stored in req_id and req_offset.
//
// # Record
//
// See SchemaText for the columns and their conventions. RecordSize is 276 bytes (offset, column,
// type; numbers little-endian, addresses in network byte order):
//
//	+--------------------------+--------------------------+--------------------------+
//	|   0 timestamp      ULONG |   8 frame_len      UINT  |  12 cap_len        USHORT|
//	|  14 mirror_id      USHORT|  16 in_port        UINT  |  20 presence       UINT  |
//	|  24 flow_hash      UINT  |  28 truncated      BOOL  |  29 decode_error   UCHAR |
//	|  30 tunnel_type    UCHAR |  31 ip_version     UCHAR |  32 src_mac        MAC   |
//	|  38 dst_mac        MAC   |  44 eth_type       USHORT|  46 vlan           USHORT|
//	|  48 inner_vlan     USHORT|  50 vlan_pcp       UCHAR |  51 mpls_depth     UCHAR |
//	|  52 mpls_label     UINT  |  56 vni            UINT  |  60 outer_src_ip   IPV4  |
//	|  64 outer_dst_ip   IPV4  |  68 outer_src_ip6  IPV6  |  84 outer_dst_ip6  IPV6  |
//	| 100 src_ip         IPV4  | 104 dst_ip         IPV4  | 108 src_ip6        IPV6  |
//	| 124 dst_ip6        IPV6  | 140 ip_proto       UCHAR | 141 dscp           UCHAR |
//	| 142 ecn            UCHAR | 143 ttl            UCHAR | 144 ip_len         USHORT|
//	| 146 frag_offset    USHORT| 148 ip_id          UINT  | 152 frag_flags     UCHAR |
//	| 153 ip6_ext_count  UCHAR | 154 src_port       USHORT| 156 dst_port       USHORT|
//	| 158 tcp_flags      USHORT| 160 tcp_seq        UINT  | 164 tcp_ack        UINT  |
//	| 168 tcp_window     USHORT| 170 tcp_tsval      UINT  | 174 tcp_tsecr      UINT  |
//	| 178 icmp_type      UCHAR | 179 icmp_code      UCHAR | 180 pause_vector   USHORT|
//	| 182 pause_time0    USHORT| 184 pause_time1    USHORT| 186 pause_time2    USHORT|
//	| 188 pause_time3    USHORT| 190 pause_time4    USHORT| 192 pause_time5    USHORT|
//	| 194 pause_time6    USHORT| 196 pause_time7    USHORT| 198 int_hop_count  UCHAR |
//	| 199 int_hop_ml     UCHAR | 200 int_switch_id0 UINT  | 204 int_in_port0   USHORT|
//	| 206 int_eg_port0   USHORT| 208 int_latency0   UINT  | 212 int_queue0     UINT  |
//	| 216..263 int_*1, int_*2, int_*3: hops 1-3, 16 bytes each, like hop 0           |
//	| 264 req_id         ULONG | 272 req_offset     USHORT| 274 l4_payload_len USHORT|
//	+--------------------------+--------------------------+--------------------------+
package packet
