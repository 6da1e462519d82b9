package pcapio

// Export of packet records to pcap.
//
// Two modes, chosen per schema:
//
//   - Exact: when the schema has the raw header column (packet.RawHeaderColumn, a STRING(N)
//     filled with the first N captured bytes, see packet.SchemaTextWithRaw), each frame is those
//     bytes, cut to the record's cap_len when the schema has it, with frame_len as the wire
//     length. Wireshark sees the original headers byte for byte.
//   - Synthesized: otherwise each frame is rebuilt from the decoded fields of the packet schema:
//     Ethernet (src_mac, dst_mac, eth_type), the VLAN tags (QinQ uses 0x88a8 for the outer tag),
//     the top MPLS label (as the only one),
//     for VXLAN/Geneve/GRE/IP-in-IP tunnels the outer IP header (outer addresses) and tunnel header with
//     the VNI, then IPv4 or IPv6 (ttl, dscp, ecn, ip_id, fragment fields, ip_proto, ip_len),
//     then TCP (ports, seq, ack, flags, window, timestamp option), UDP (ports) or ICMP/ICMPv6
//     (type, code), or a PAUSE/PFC frame. Payloads are not kept, so the frame stops after the
//     headers and the wire length is frame_len: tools show the copy as cut short ("packet size
//     limited during capture"). The IPv4 header checksum is correct; TCP/UDP checksums are 0.
//     What the record does not hold (IP options, IPv6 extension headers other than the fragment
//     header, MPLS labels below the top, Geneve options, INT data, request-id shim, payload) is
//     not reproduced, so lengths announced in the headers count bytes that are not there.

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/confluo-go/confluo/pkg/packet"
	"github.com/confluo-go/confluo/pkg/schema"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// ExportOptions configure an Exporter; NewExporter copies them.
type ExportOptions struct {
	// Snaplen is written to the file header. Default 65535.
	Snaplen uint32
	// Synthesize forces synthesized frames even when the schema has a raw header column.
	// Default false.
	Synthesize bool
}

// Exporter writes records as an Ethernet pcap with nanosecond timestamps. Not safe for concurrent
// use.
type Exporter struct {
	w       *pcapgo.Writer
	s       *schema.Schema
	snaplen int
	raw     *schema.Column // nil: synthesize
	capLen  *schema.Column
	cols    synthColumns
	buf     []byte
	n       uint64
}

// synthColumns are the offsets of the packet schema columns synthesis reads.
type synthColumns struct {
	frameLen, presence, tunnelType, ipVersion, srcMAC, dstMAC, ethType, vlan, innerVLAN, vlanPCP,
	vni, outerSrcIP, outerDstIP, outerSrcIP6, outerDstIP6, srcIP, dstIP, srcIP6, dstIP6, ipProto,
	dscp, ecn, ttl, ipLen, fragOffset, ipID, fragFlags, srcPort, dstPort, tcpFlags, tcpSeq, tcpAck,
	tcpWindow, tcpTSval, tcpTSecr, icmpType, icmpCode, pauseVector, pauseTime0, l4PayloadLen, mplsLabel int
}

// NewExporter writes the pcap file header to w and returns an exporter for records of s.
func NewExporter(w io.Writer, s *schema.Schema, opts ExportOptions) (*Exporter, error) {
	e := &Exporter{s: s, snaplen: 65535}
	if opts.Snaplen != 0 {
		e.snaplen = int(opts.Snaplen)
	}
	if c, ok := s.Column(packet.RawHeaderColumn); ok && !opts.Synthesize {
		if c.Type != schema.String {
			return nil, fmt.Errorf("%w: %s must be STRING(N), not %s", ErrSchema, c.Name, c.TypeString())
		}
		e.raw = c
		if cl, ok := s.Column("cap_len"); ok && cl.Type == schema.UShort {
			e.capLen = cl
		}
		if _, ok := s.Column("frame_len"); !ok {
			return nil, fmt.Errorf("%w: frame_len UINT", ErrSchema)
		}
	} else if err := e.cols.resolve(s); err != nil {
		return nil, err
	}
	e.cols.frameLen = -1
	if c, ok := s.Column("frame_len"); ok && c.Type == schema.UInt {
		e.cols.frameLen = c.Offset
	}
	e.w = pcapgo.NewWriterNanos(w)
	if err := e.w.WriteFileHeader(uint32(e.snaplen), layers.LinkTypeEthernet); err != nil {
		return nil, fmt.Errorf("pcapio: write pcap header: %w", err)
	}
	return e, nil
}

func (c *synthColumns) resolve(s *schema.Schema) error {
	want := []struct {
		name string
		t    schema.Type
		dst  *int
	}{
		{"presence", schema.UInt, &c.presence}, {"tunnel_type", schema.UChar, &c.tunnelType},
		{"ip_version", schema.UChar, &c.ipVersion}, {"src_mac", schema.MAC, &c.srcMAC},
		{"dst_mac", schema.MAC, &c.dstMAC}, {"eth_type", schema.UShort, &c.ethType},
		{"vlan", schema.UShort, &c.vlan}, {"inner_vlan", schema.UShort, &c.innerVLAN},
		{"vlan_pcp", schema.UChar, &c.vlanPCP}, {"vni", schema.UInt, &c.vni},
		{"outer_src_ip", schema.IPv4, &c.outerSrcIP}, {"outer_dst_ip", schema.IPv4, &c.outerDstIP},
		{"outer_src_ip6", schema.IPv6, &c.outerSrcIP6}, {"outer_dst_ip6", schema.IPv6, &c.outerDstIP6},
		{"src_ip", schema.IPv4, &c.srcIP}, {"dst_ip", schema.IPv4, &c.dstIP},
		{"src_ip6", schema.IPv6, &c.srcIP6}, {"dst_ip6", schema.IPv6, &c.dstIP6},
		{"ip_proto", schema.UChar, &c.ipProto}, {"dscp", schema.UChar, &c.dscp},
		{"ecn", schema.UChar, &c.ecn}, {"ttl", schema.UChar, &c.ttl},
		{"ip_len", schema.UShort, &c.ipLen}, {"frag_offset", schema.UShort, &c.fragOffset},
		{"ip_id", schema.UInt, &c.ipID}, {"frag_flags", schema.UChar, &c.fragFlags},
		{"src_port", schema.UShort, &c.srcPort}, {"dst_port", schema.UShort, &c.dstPort},
		{"tcp_flags", schema.UShort, &c.tcpFlags}, {"tcp_seq", schema.UInt, &c.tcpSeq},
		{"tcp_ack", schema.UInt, &c.tcpAck}, {"tcp_window", schema.UShort, &c.tcpWindow},
		{"tcp_tsval", schema.UInt, &c.tcpTSval}, {"tcp_tsecr", schema.UInt, &c.tcpTSecr},
		{"icmp_type", schema.UChar, &c.icmpType}, {"icmp_code", schema.UChar, &c.icmpCode},
		{"pause_vector", schema.UShort, &c.pauseVector}, {"pause_time0", schema.UShort, &c.pauseTime0},
		{"l4_payload_len", schema.UShort, &c.l4PayloadLen}, {"mpls_label", schema.UInt, &c.mplsLabel},
	}
	for _, w := range want {
		col, ok := s.Column(w.name)
		if !ok || col.Type != w.t {
			return fmt.Errorf("%w: synthesizing frames needs column %s %v (the packet schema's)", ErrSchema, w.name, w.t)
		}
		*w.dst = col.Offset
	}
	// pause_time1..7 must follow pause_time0 as in the packet schema.
	for i := 1; i < 8; i++ {
		col, ok := s.Column(fmt.Sprintf("pause_time%d", i))
		if !ok || col.Offset != c.pauseTime0+2*i {
			return fmt.Errorf("%w: pause_time%d USHORT right after pause_time%d", ErrSchema, i, i-1)
		}
	}
	return nil
}

// Written returns how many records have been written.
func (e *Exporter) Written() uint64 { return e.n }

// Write writes one record as one frame.
func (e *Exporter) Write(rec []byte) error {
	if len(rec) != e.s.RecordSize {
		return fmt.Errorf("%w: record %d has %d bytes, the schema %d", schema.ErrRecordLen, e.n+1, len(rec), e.s.RecordSize)
	}
	ts := schema.Timestamp(rec)
	var frame []byte
	if e.raw != nil {
		frame = rec[e.raw.Offset : e.raw.Offset+e.raw.Size]
		if e.capLen != nil {
			frame = frame[:min(len(frame), int(binary.LittleEndian.Uint16(rec[e.capLen.Offset:])))]
		}
	} else {
		e.buf = e.cols.synthesize(e.buf[:0], rec)
		frame = e.buf
	}
	if len(frame) > e.snaplen {
		frame = frame[:e.snaplen]
	}
	wire := len(frame)
	if e.cols.frameLen >= 0 {
		wire = max(wire, int(binary.LittleEndian.Uint32(rec[e.cols.frameLen:])))
	}
	ci := gopacket.CaptureInfo{Timestamp: time.Unix(0, ts), CaptureLength: len(frame), Length: wire}
	if err := e.w.WritePacket(ci, frame); err != nil {
		return fmt.Errorf("pcapio: write frame %d: %w", e.n+1, err)
	}
	e.n++
	return nil
}

// WriteBatch writes records stored back to back (len(recs) a multiple of the record size).
func (e *Exporter) WriteBatch(recs []byte) error {
	if len(recs)%e.s.RecordSize != 0 {
		return fmt.Errorf("%w: batch of %d bytes is not a multiple of the record size %d", schema.ErrRecordLen, len(recs), e.s.RecordSize)
	}
	for off := 0; off < len(recs); off += e.s.RecordSize {
		if err := e.Write(recs[off : off+e.s.RecordSize]); err != nil {
			return err
		}
	}
	return nil
}

func le16(rec []byte, off int) uint16 { return binary.LittleEndian.Uint16(rec[off:]) }
func le32(rec []byte, off int) uint32 { return binary.LittleEndian.Uint32(rec[off:]) }

func (c *synthColumns) synthesize(b []byte, rec []byte) []byte {
	pres := le32(rec, c.presence)
	b = append(b, rec[c.dstMAC:c.dstMAC+6]...)
	b = append(b, rec[c.srcMAC:c.srcMAC+6]...)
	if pres&packet.PresVLAN != 0 {
		tpid := uint16(0x8100)
		if pres&packet.PresInnerVLAN != 0 {
			tpid = 0x88a8
		}
		b = binary.BigEndian.AppendUint16(b, tpid)
		b = binary.BigEndian.AppendUint16(b, uint16(rec[c.vlanPCP])<<13|le16(rec, c.vlan))
	}
	if pres&packet.PresInnerVLAN != 0 {
		b = binary.BigEndian.AppendUint16(b, 0x8100)
		b = binary.BigEndian.AppendUint16(b, le16(rec, c.innerVLAN))
	}
	ver := rec[c.ipVersion]
	tunnel := rec[c.tunnelType]
	if pres&packet.PresTunnel != 0 && pres&(packet.PresOuterIPv4|packet.PresOuterIPv6) != 0 && (ver == 4 || ver == 6) {
		b = c.outer(b, rec, pres, tunnel, ver)
	} else if pres&packet.PresMPLS != 0 && (ver == 4 || ver == 6) {
		b = binary.BigEndian.AppendUint16(b, 0x8847)
		b = binary.BigEndian.AppendUint32(b, le32(rec, c.mplsLabel)<<12|1<<8|64) // bottom of stack, TTL 64
	} else {
		et := le16(rec, c.ethType)
		switch {
		case ver == 4:
			et = 0x0800
		case ver == 6:
			et = 0x86dd
		case pres&(packet.PresPause|packet.PresPFC) != 0:
			et = 0x8808
		}
		b = binary.BigEndian.AppendUint16(b, et)
	}
	switch {
	case ver == 4 || ver == 6:
		b = c.ip(b, rec, pres, ver)
	case pres&packet.PresPFC != 0:
		b = binary.BigEndian.AppendUint16(b, 0x0101)
		b = binary.BigEndian.AppendUint16(b, le16(rec, c.pauseVector))
		b = append(b, rec[c.pauseTime0:c.pauseTime0+16]...)
		for i := 0; i < 8; i++ { // schema is little-endian, wire big-endian
			n := len(b) - 16 + 2*i
			b[n], b[n+1] = b[n+1], b[n]
		}
	case pres&packet.PresPause != 0:
		b = binary.BigEndian.AppendUint16(b, 0x0001)
		b = binary.BigEndian.AppendUint16(b, le16(rec, c.pauseTime0))
	}
	return b
}

// outer appends the EtherType, outer IP header and tunnel header of a tunnelled record; the
// inner Ethernet header (for VXLAN, Geneve and GRE with TEB) repeats the record's MACs.
func (c *synthColumns) outer(b []byte, rec []byte, pres uint32, tunnel, innerVer byte) []byte {
	innerEth := tunnel == packet.TunnelVXLAN || tunnel == packet.TunnelGeneve
	innerLen := c.innerLen(rec, innerVer)
	if innerEth {
		innerLen += 14
	}
	var tun []byte
	var proto byte
	var scratch [16]byte
	vni := le32(rec, c.vni)
	switch tunnel {
	case packet.TunnelVXLAN, packet.TunnelGeneve:
		proto = 17
		dport := uint16(4789)
		if tunnel == packet.TunnelGeneve {
			dport = 6081
		}
		tunLen := 8 + 8
		binary.BigEndian.PutUint16(scratch[0:], 49152|uint16(vni)&0x3fff)
		binary.BigEndian.PutUint16(scratch[2:], dport)
		binary.BigEndian.PutUint16(scratch[4:], uint16(min(tunLen+innerLen, 65535)))
		if tunnel == packet.TunnelVXLAN {
			scratch[8] = 0x08
		} else {
			binary.BigEndian.PutUint16(scratch[10:], 0x6558)
		}
		binary.BigEndian.PutUint32(scratch[12:], vni<<8)
		tun = scratch[:16]
	case packet.TunnelIPIP:
		proto = 4
		if innerVer == 6 {
			proto = 41
		}
		tun = scratch[:0]
	default: // GRE
		proto = 47
		et := uint16(0x0800)
		if innerVer == 6 {
			et = 0x86dd
		}
		binary.BigEndian.PutUint16(scratch[2:], et)
		tun = scratch[:4]
		if pres&packet.PresVNI != 0 {
			scratch[0] = 0x20
			binary.BigEndian.PutUint32(scratch[4:], vni)
			tun = scratch[:8]
		}
	}
	total := len(tun) + innerLen
	if pres&packet.PresOuterIPv4 != 0 {
		b = binary.BigEndian.AppendUint16(b, 0x0800)
		b = appendIPv4(b, 0, 0, 64, proto, 0, uint16(min(20+total, 65535)), rec[c.outerSrcIP:c.outerSrcIP+4], rec[c.outerDstIP:c.outerDstIP+4])
	} else {
		b = binary.BigEndian.AppendUint16(b, 0x86dd)
		b = appendIPv6(b, 0, 0, 64, proto, uint16(min(total, 65535)), rec[c.outerSrcIP6:c.outerSrcIP6+32])
	}
	b = append(b, tun...)
	if innerEth {
		b = append(b, rec[c.dstMAC:c.dstMAC+6]...)
		b = append(b, rec[c.srcMAC:c.srcMAC+6]...)
		et := uint16(0x0800)
		if innerVer == 6 {
			et = 0x86dd
		}
		b = binary.BigEndian.AppendUint16(b, et)
	}
	return b
}

// innerLen is the length of the IP packet the record describes.
func (c *synthColumns) innerLen(rec []byte, ver byte) int {
	n := int(le16(rec, c.ipLen))
	if n == 0 {
		n = 20
		if ver == 6 {
			n = 40
		}
	}
	return n
}

func (c *synthColumns) ip(b []byte, rec []byte, pres uint32, ver byte) []byte {
	proto := rec[c.ipProto]
	ipLen := c.innerLen(rec, ver)
	if ver == 4 {
		flagsOff := le16(rec, c.fragOffset) & 0x1fff
		ff := rec[c.fragFlags]
		if ff&packet.FragMoreFragments != 0 {
			flagsOff |= 0x2000
		}
		if ff&packet.FragDontFragment != 0 {
			flagsOff |= 0x4000
		}
		if ff&packet.FragReserved != 0 {
			flagsOff |= 0x8000
		}
		tos := rec[c.dscp]<<2 | rec[c.ecn]&3
		b = appendIPv4(b, tos, uint16(le32(rec, c.ipID)), rec[c.ttl], proto, flagsOff, uint16(ipLen), rec[c.srcIP:c.srcIP+4], rec[c.dstIP:c.dstIP+4])
	} else {
		tc := rec[c.dscp]<<2 | rec[c.ecn]&3
		plen := max(ipLen-40, 0)
		if pres&packet.PresFragment != 0 {
			// Keep the fragment header: it carries the fragment fields.
			b = appendIPv6(b, tc, 0, rec[c.ttl], 44, uint16(plen), rec[c.srcIP6:c.srcIP6+32])
			b = append(b, proto, 0)
			fo := le16(rec, c.fragOffset) << 3
			if rec[c.fragFlags]&packet.FragMoreFragments != 0 {
				fo |= 1
			}
			b = binary.BigEndian.AppendUint16(b, fo)
			b = binary.BigEndian.AppendUint32(b, le32(rec, c.ipID))
		} else {
			b = appendIPv6(b, tc, 0, rec[c.ttl], proto, uint16(plen), rec[c.srcIP6:c.srcIP6+32])
		}
	}
	if pres&packet.PresFragment != 0 && le16(rec, c.fragOffset) != 0 {
		return b // later fragments carry no L4 header
	}
	switch {
	case pres&packet.PresTCP != 0:
		hl := 20
		if pres&packet.PresTCPTimestamp != 0 {
			hl = 32
		}
		b = binary.BigEndian.AppendUint16(b, le16(rec, c.srcPort))
		b = binary.BigEndian.AppendUint16(b, le16(rec, c.dstPort))
		b = binary.BigEndian.AppendUint32(b, le32(rec, c.tcpSeq))
		b = binary.BigEndian.AppendUint32(b, le32(rec, c.tcpAck))
		b = binary.BigEndian.AppendUint16(b, uint16(hl/4)<<12|le16(rec, c.tcpFlags)&0x0fff)
		b = binary.BigEndian.AppendUint16(b, le16(rec, c.tcpWindow))
		b = append(b, 0, 0, 0, 0) // checksum, urgent pointer
		if hl == 32 {
			b = append(b, 1, 1, 8, 10)
			b = binary.BigEndian.AppendUint32(b, le32(rec, c.tcpTSval))
			b = binary.BigEndian.AppendUint32(b, le32(rec, c.tcpTSecr))
		}
	case pres&packet.PresUDP != 0:
		b = binary.BigEndian.AppendUint16(b, le16(rec, c.srcPort))
		b = binary.BigEndian.AppendUint16(b, le16(rec, c.dstPort))
		b = binary.BigEndian.AppendUint16(b, uint16(min(8+int(le16(rec, c.l4PayloadLen)), math.MaxUint16)))
		b = append(b, 0, 0)
	case pres&(packet.PresICMP|packet.PresICMPv6) != 0:
		b = append(b, rec[c.icmpType], rec[c.icmpCode], 0, 0)
	}
	return b
}

func appendIPv4(b []byte, tos byte, id uint16, ttl, proto byte, flagsOff uint16, total uint16, src, dst []byte) []byte {
	start := len(b)
	b = append(b, 0x45, tos)
	b = binary.BigEndian.AppendUint16(b, total)
	b = binary.BigEndian.AppendUint16(b, id)
	b = binary.BigEndian.AppendUint16(b, flagsOff)
	b = append(b, ttl, proto, 0, 0)
	b = append(b, src...)
	b = append(b, dst...)
	var sum uint32
	for i := start; i < start+20; i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(b[start+10:], ^uint16(sum))
	return b
}

// appendIPv6 appends an IPv6 header; addrs is source and destination, 32 bytes.
func appendIPv6(b []byte, tc byte, flow uint32, hlim, next byte, plen uint16, addrs []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, 6<<28|uint32(tc)<<20|flow&0xfffff)
	b = binary.BigEndian.AppendUint16(b, plen)
	b = append(b, next, hlim)
	return append(b, addrs...)
}
