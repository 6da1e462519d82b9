package packet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Reason says why decoding stopped early or what was wrong with a frame. The first reason found
// for a frame is stored in its record's decode_error column and counted in Stats.
type Reason uint8

// Reasons. ReasonNone means the frame decoded as far as the decoder understands it.
const (
	ReasonNone           Reason = iota
	ReasonShortFrame            // shorter than an Ethernet header
	ReasonTruncated             // a header is cut short by the end of the capture (snaplen)
	ReasonBadLength             // a length field lies (IHL < 5, total length < header, data offset < 5, ...)
	ReasonBadVersion            // IP version nibble does not match the EtherType
	ReasonTooManyHeaders        // VLAN tags, MPLS labels, IPv6 extension headers or tunnels beyond the limits
	ReasonUnsupported           // an EtherType, protocol or tunnel payload the decoder does not parse
	ReasonBadTunnel             // malformed VXLAN/Geneve/GRE header
	ReasonBadINT                // malformed INT-MD shim or metadata header
	ReasonShortRecord           // the record buffer is shorter than RecordSize (nothing written)
	NumReasons
)

var reasonNames = [NumReasons]string{
	"none", "short_frame", "truncated", "bad_length", "bad_version", "too_many_headers",
	"unsupported", "bad_tunnel", "bad_int", "short_record",
}

func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return fmt.Sprintf("Reason(%d)", uint8(r))
}

// ErrOptions is returned (wrapped) by Options.Validate.
var ErrOptions = errors.New("packet: invalid options")

// Decoding limits.
const (
	maxVLANTags   = 4
	maxMPLSLabels = 8
	maxTunnels    = 3
)

// Options configure a Decoder; NewDecoder copies them. The zero value is usable but disables
// VXLAN and Geneve (port 0); DefaultOptions sets the standard ports.
type Options struct {
	// InPort and MirrorID are written to every record's in_port and mirror_id columns (the
	// decoder cannot learn them from the frame; a source that knows them sets them, see also
	// Decoder.SetIngress). Default 0 (unknown).
	InPort   uint32
	MirrorID uint16

	// VXLANPort is the UDP destination port of VXLAN. Default 4789; 0 disables VXLAN.
	VXLANPort uint16
	// GenevePort is the UDP destination port of Geneve. Default 6081; 0 disables Geneve.
	GenevePort uint16

	// INT enables INT-MD (INT spec v2.1, INT over TCP/UDP) decoding on IP packets whose
	// DSCP & INTDSCPMask == INTDSCP. Default off.
	INT         bool
	INTDSCP     uint8
	INTDSCPMask uint8 // default 0x3f (exact DSCP value)

	// RequestIDPorts are TCP/UDP ports (source or destination) whose payload starts with the
	// request-id shim. Default none.
	RequestIDPorts []uint16

	// MaxIPv6ExtHeaders caps the IPv6 extension headers walked. Default 8; at most 64.
	MaxIPv6ExtHeaders int
}

// DefaultOptions returns the default options: VXLAN on 4789, Geneve on 6081, INT off (mask 0x3f),
// no request-id ports, 8 IPv6 extension headers.
func DefaultOptions() Options {
	return Options{VXLANPort: 4789, GenevePort: 6081, INTDSCPMask: 0x3f, MaxIPv6ExtHeaders: 8}
}

// Validate checks the options.
func (o *Options) Validate() error {
	if o.INTDSCP > 0x3f || o.INTDSCPMask > 0x3f {
		return fmt.Errorf("%w: INTDSCP %#x / INTDSCPMask %#x: DSCP is 6 bits", ErrOptions, o.INTDSCP, o.INTDSCPMask)
	}
	if o.INT && o.INTDSCP&^o.INTDSCPMask != 0 {
		return fmt.Errorf("%w: INTDSCP %#x has bits outside INTDSCPMask %#x", ErrOptions, o.INTDSCP, o.INTDSCPMask)
	}
	if o.MaxIPv6ExtHeaders < 0 || o.MaxIPv6ExtHeaders > 64 {
		return fmt.Errorf("%w: MaxIPv6ExtHeaders %d not in 0..64", ErrOptions, o.MaxIPv6ExtHeaders)
	}
	return nil
}

// Stats counts what a Decoder saw. ByReason[ReasonNone] counts frames decoded without problems.
// A Stats is a plain value (a copy), safe to pass between goroutines.
type Stats struct {
	Packets   uint64             // frames decoded
	Truncated uint64             // records with the truncated flag set
	ByReason  [NumReasons]uint64 // frames by the first Reason found
}

// Decoder turns frames into records of the built-in packet schema. It never allocates, never
// panics and never reads outside the frame. A Decoder is not safe for concurrent use: use one per
// goroutine (Stats too must be read from that goroutine or while it is stopped).
type Decoder struct {
	opts        Options
	maxExt      int
	intMask     uint8
	intValue    uint8
	intOn       bool
	reqPortsAny bool
	reqPorts    [65536 / 64]uint64
	stats       Stats
}

// NewDecoder returns a decoder. Invalid options are clamped to their nearest valid value (call
// Options.Validate first to reject them instead); it never fails.
func NewDecoder(opts Options) *Decoder {
	d := &Decoder{opts: opts}
	d.maxExt = opts.MaxIPv6ExtHeaders
	if d.maxExt <= 0 {
		d.maxExt = 8
	}
	d.maxExt = min(d.maxExt, 64)
	d.intOn = opts.INT
	d.intMask = opts.INTDSCPMask & 0x3f
	if d.intMask == 0 {
		d.intMask = 0x3f
	}
	d.intValue = opts.INTDSCP & d.intMask
	for _, p := range opts.RequestIDPorts {
		d.reqPorts[p>>6] |= 1 << (p & 63)
		d.reqPortsAny = true
	}
	return d
}

// SetIngress sets the in_port and mirror_id written to the following records.
func (d *Decoder) SetIngress(inPort uint32, mirrorID uint16) {
	d.opts.InPort, d.opts.MirrorID = inPort, mirrorID
}

// Stats returns the counters so far.
func (d *Decoder) Stats() Stats { return d.stats }

// state is one frame's decoding state; it lives on the stack.
type state struct {
	rec     *[RecordSize]byte
	pres    uint32
	reason  Reason
	trunc   bool
	tunnels int
	vlans   int
	// softEnd: the IP header announced no length (IPv4 TSO total length 0, IPv6 jumbogram), so
	// the packet is taken to end where the capture ends and running past that end is a cut
	// copy, not a lying length field.
	softEnd bool
}

// overrun reports a header that runs past the end of the IP packet.
func (s *state) overrun(r Reason) {
	if s.softEnd {
		s.fail(ReasonTruncated)
	} else {
		s.fail(r)
	}
}

func (s *state) fail(r Reason) {
	if s.reason == ReasonNone {
		s.reason = r
	}
	if r == ReasonTruncated {
		s.trunc = true
	}
}

func be16(b []byte, i int) uint16 { return binary.BigEndian.Uint16(b[i : i+2]) }
func be32(b []byte, i int) uint32 { return binary.BigEndian.Uint32(b[i : i+4]) }

// mov2, mov4 and mov8 copy 2, 4 or 8 bytes with one load and one store (copy calls memmove).
func mov2(dst, src []byte) { binary.LittleEndian.PutUint16(dst, binary.LittleEndian.Uint16(src)) }
func mov4(dst, src []byte) { binary.LittleEndian.PutUint32(dst, binary.LittleEndian.Uint32(src)) }
func mov8(dst, src []byte) { binary.LittleEndian.PutUint64(dst, binary.LittleEndian.Uint64(src)) }

func (s *state) put16(off int, v uint16) { binary.LittleEndian.PutUint16(s.rec[off:off+2], v) }
func (s *state) put32(off int, v uint32) { binary.LittleEndian.PutUint32(s.rec[off:off+4], v) }

// Decode writes the record of one frame into rec[:RecordSize] and returns its flow hash.
// frame is the captured bytes starting at the Ethernet header, wireLen the length on the wire
// (values below len(frame) are taken as len(frame)), tsNanos the capture time. A rec shorter
// than RecordSize is left untouched and counted as ReasonShortRecord.
func (d *Decoder) Decode(rec []byte, frame []byte, wireLen int, tsNanos int64) uint32 {
	d.stats.Packets++
	if len(rec) < RecordSize {
		d.stats.ByReason[ReasonShortRecord]++
		return 0
	}
	s := state{rec: (*[RecordSize]byte)(rec[:RecordSize])}
	clear(s.rec[:])
	binary.LittleEndian.PutUint64(s.rec[OffTimestamp:], uint64(tsNanos))
	capLen := len(frame)
	if wireLen < capLen {
		wireLen = capLen
	}
	s.put32(OffFrameLen, uint32(min(uint64(wireLen), math.MaxUint32)))
	s.put16(OffCapLen, uint16(min(capLen, 65535)))
	s.put32(OffInPort, d.opts.InPort)
	s.put16(OffMirrorID, d.opts.MirrorID)

	if capLen < 14 {
		s.fail(ReasonShortFrame)
		s.trunc = true
	} else {
		d.ethernet(&s, frame, 0)
	}
	if capLen < wireLen {
		s.trunc = true
	}
	h := flowHash(s.rec, s.pres)
	s.put32(OffFlowHash, h)
	s.put32(OffPresence, s.pres)
	if s.trunc {
		s.rec[OffTruncated] = 1
		d.stats.Truncated++
	}
	s.rec[OffDecodeError] = byte(s.reason)
	d.stats.ByReason[s.reason]++
	return h
}

// ethernet decodes an Ethernet header at off (at least 14 bytes are known to be there or are
// checked) and what follows it.
func (d *Decoder) ethernet(s *state, b []byte, off int) {
	if len(b)-off < 14 {
		s.fail(ReasonTruncated)
		return
	}
	m := b[off : off+12]
	mov4(s.rec[OffDstMAC:OffDstMAC+4], m[0:4])
	mov2(s.rec[OffDstMAC+4:OffDstMAC+6], m[4:6])
	mov4(s.rec[OffSrcMAC:OffSrcMAC+4], m[6:10])
	mov2(s.rec[OffSrcMAC+4:OffSrcMAC+6], m[10:12])
	s.pres |= PresEthernet
	et := be16(b, off+12)
	off += 14
	for et == 0x8100 || et == 0x88a8 || et == 0x9100 {
		if s.vlans >= maxVLANTags {
			s.fail(ReasonTooManyHeaders)
			return
		}
		if len(b)-off < 4 {
			s.fail(ReasonTruncated)
			return
		}
		tci := be16(b, off)
		switch s.vlans {
		case 0:
			s.put16(OffVLAN, tci&0x0fff)
			s.rec[OffVLANPCP] = byte(tci >> 13)
			s.pres |= PresVLAN
		case 1:
			s.put16(OffInnerVLAN, tci&0x0fff)
			s.pres |= PresInnerVLAN
		}
		s.vlans++
		et = be16(b, off+2)
		off += 4
	}
	d.etherType(s, b, off, et)
}

// etherType dispatches on an EtherType whose payload starts at off.
func (d *Decoder) etherType(s *state, b []byte, off int, et uint16) {
	s.put16(OffEthType, et)
	switch et {
	case 0x0800:
		d.ipv4(s, b, off)
	case 0x86dd:
		d.ipv6(s, b, off)
	case 0x8847, 0x8848:
		d.mpls(s, b, off)
	case 0x8808:
		d.macControl(s, b, off)
	default:
		s.fail(ReasonUnsupported)
	}
}

func (d *Decoder) mpls(s *state, b []byte, off int) {
	for n := 0; ; n++ {
		if n >= maxMPLSLabels {
			s.fail(ReasonTooManyHeaders)
			return
		}
		if len(b)-off < 4 {
			s.fail(ReasonTruncated)
			return
		}
		e := be32(b, off)
		if n == 0 {
			s.put32(OffMPLSLabel, e>>12)
			s.pres |= PresMPLS
		}
		s.rec[OffMPLSDepth] = byte(n + 1)
		off += 4
		if e&0x100 != 0 { // bottom of stack
			break
		}
	}
	if len(b)-off < 1 {
		s.fail(ReasonTruncated)
		return
	}
	switch b[off] >> 4 {
	case 4:
		s.put16(OffEthType, 0x0800)
		d.ipv4(s, b, off)
	case 6:
		s.put16(OffEthType, 0x86dd)
		d.ipv6(s, b, off)
	default:
		s.fail(ReasonUnsupported)
	}
}

// macControl decodes 802.3x PAUSE (opcode 1) and 802.1Qbb PFC (opcode 0x0101).
func (d *Decoder) macControl(s *state, b []byte, off int) {
	if len(b)-off < 4 {
		s.fail(ReasonTruncated)
		return
	}
	switch be16(b, off) {
	case 0x0001:
		s.put16(OffPauseTime0, be16(b, off+2))
		s.pres |= PresPause
	case 0x0101:
		if len(b)-off < 20 {
			s.fail(ReasonTruncated)
			return
		}
		s.put16(OffPauseVector, be16(b, off+2))
		for i := range 8 {
			s.put16(OffPauseTime0+2*i, be16(b, off+4+2*i))
		}
		s.pres |= PresPFC
	default:
		s.fail(ReasonUnsupported)
	}
}

// innerL3 is the part of the record a tunnel's inner packet rewrites.
const (
	innerStart = OffSrcIP
	innerEnd   = OffICMPCode + 1
	innerPres  = PresIPv4 | PresIPv6 | PresIPOptions | PresIPv6Ext | PresFragment | PresPorts |
		PresTCP | PresTCPTimestamp | PresUDP | PresICMP | PresICMPv6 | PresINT | PresRequestID
)

// tunnel moves the addresses decoded so far to the outer columns (first tunnel only) and clears
// the inner fields for the encapsulated packet. It reports false when the tunnel limit is hit.
func (s *state) tunnel(kind byte) bool {
	if s.tunnels >= maxTunnels {
		s.fail(ReasonTooManyHeaders)
		return false
	}
	if s.tunnels == 0 {
		s.rec[OffTunnelType] = kind
		s.pres |= PresTunnel
		if s.pres&PresIPv4 != 0 {
			mov8(s.rec[OffOuterSrcIP:OffOuterSrcIP+8], s.rec[OffSrcIP:OffSrcIP+8])
			s.pres |= PresOuterIPv4
		} else if s.pres&PresIPv6 != 0 {
			copy(s.rec[OffOuterSrcIP6:OffOuterSrcIP6+32], s.rec[OffSrcIP6:OffSrcIP6+32])
			s.pres |= PresOuterIPv6
		}
	}
	s.tunnels++
	// Only the L3/L4 block can hold outer values here: INT and the request-id shim are decoded
	// after a TCP/UDP header that is not a tunnel's.
	clear(s.rec[innerStart:innerEnd])
	s.put16(OffL4PayloadLen, 0)
	s.rec[OffIPVersion] = 0
	s.pres &^= innerPres
	return true
}

// clearMACs forgets the outer Ethernet addresses when a tunnel carries Ethernet: src_mac and
// dst_mac describe the innermost Ethernet header, and stay empty if that one is cut.
func (s *state) clearMACs() {
	clear(s.rec[OffSrcMAC : OffDstMAC+6])
	s.pres &^= PresEthernet
}

func (d *Decoder) ipv4(s *state, b []byte, off int) {
	if len(b)-off < 20 {
		s.fail(ReasonTruncated)
		return
	}
	h := b[off : off+20]
	if h[0]>>4 != 4 {
		s.fail(ReasonBadVersion)
		return
	}
	ihl := int(h[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(h[2:4]))
	s.put16(OffIPLen, uint16(total))
	s.softEnd = total == 0
	if total == 0 {
		// TSO/GSO: a sender-side capture of a segmentation-offload packet carries total length
		// 0; the packet is what was captured (ip_len stays 0).
		total = min(len(b)-off, 65535)
	}
	s.rec[OffIPVersion] = 4
	s.rec[OffDSCP] = h[1] >> 2
	s.rec[OffECN] = h[1] & 3
	s.put32(OffIPID, uint32(binary.BigEndian.Uint16(h[4:6])))
	ff := binary.BigEndian.Uint16(h[6:8])
	fragOff := ff & 0x1fff
	flags := byte(ff >> 13) // reserved, DF, MF: FragReserved, FragDontFragment, FragMoreFragments
	s.rec[OffFragFlags] = flags
	s.put16(OffFragOffset, fragOff)
	if flags&FragMoreFragments != 0 || fragOff != 0 {
		s.pres |= PresFragment
	}
	s.rec[OffTTL] = h[8]
	proto := h[9]
	s.rec[OffIPProto] = proto
	mov8(s.rec[OffSrcIP:OffSrcIP+8], h[12:20])
	s.pres |= PresIPv4
	if ihl < 20 || total < ihl {
		s.fail(ReasonBadLength)
		return
	}
	if ihl > 20 {
		if len(b)-off < ihl {
			s.fail(ReasonTruncated)
			return
		}
		s.pres |= PresIPOptions
	}
	end := off + total
	if end > len(b) {
		s.trunc = true // payload cut by the capture; decode what is there
	}
	if fragOff != 0 {
		return // not the first fragment: no L4 header
	}
	d.l4(s, b, off+ihl, end, proto, h[1]>>2)
}

// ipv6 decodes an IPv6 header and its extension headers.
func (d *Decoder) ipv6(s *state, b []byte, off int) {
	if len(b)-off < 40 {
		s.fail(ReasonTruncated)
		return
	}
	h := b[off : off+40]
	if h[0]>>4 != 6 {
		s.fail(ReasonBadVersion)
		return
	}
	tc := byte(binary.BigEndian.Uint16(h[0:2]) >> 4)
	plen := int(binary.BigEndian.Uint16(h[4:6]))
	s.rec[OffIPVersion] = 6
	s.rec[OffDSCP] = tc >> 2
	s.rec[OffECN] = tc & 3
	s.put16(OffIPLen, uint16(min(plen+40, 65535)))
	s.rec[OffTTL] = h[7]
	mov8(s.rec[OffSrcIP6:OffSrcIP6+8], h[8:16])
	mov8(s.rec[OffSrcIP6+8:OffSrcIP6+16], h[16:24])
	mov8(s.rec[OffSrcIP6+16:OffSrcIP6+24], h[24:32])
	mov8(s.rec[OffSrcIP6+24:OffSrcIP6+32], h[32:40])
	s.pres |= PresIPv6
	next := h[6]
	off += 40
	end := off + plen
	s.softEnd = plen == 0 && next == 0
	if s.softEnd {
		end = len(b) // jumbogram (or lying zero): use what was captured
	}
	if end > len(b) {
		s.trunc = true
	}
	exts := 0
	fragmented := false
loop:
	for isIPv6ExtHeader(next) {
		if exts >= d.maxExt {
			s.fail(ReasonTooManyHeaders)
			break loop
		}
		if len(b)-off < 8 {
			s.fail(ReasonTruncated)
			break loop
		}
		var n int
		switch next {
		case 44: // fragment: always 8 bytes, decoded even past a lying payload length
			fo := be16(b, off+2)
			if s.pres&PresFragment == 0 { // the first fragment header counts
				s.put16(OffFragOffset, fo>>3)
				if fo&1 != 0 {
					s.rec[OffFragFlags] = FragMoreFragments
				}
				s.put32(OffIPID, be32(b, off+4))
				s.pres |= PresFragment
			}
			if fo>>3 != 0 {
				fragmented = true
			}
			n = 8
		case 51: // authentication header: length in 4-byte units minus 2
			n = (int(b[off+1]) + 2) * 4
		default: // hop-by-hop, routing, destination, mobility, HIP, shim6: 8-byte units, first 8 not counted
			n = (int(b[off+1]) + 1) * 8
		}
		if next != 44 && off+n > end && end <= len(b) {
			s.overrun(ReasonBadLength)
			break loop
		}
		next = b[off]
		off += n
		exts++
	}
	if exts > 0 {
		s.rec[OffIP6ExtCount] = byte(exts)
		s.pres |= PresIPv6Ext
	}
	s.rec[OffIPProto] = next
	if s.reason != ReasonNone || fragmented {
		return
	}
	d.l4(s, b, off, end, next, tc>>2)
}

// within limits a tunnel's payload to the outer packet (end), so padding or trailers after it
// are not read as part of the inner packet.
func within(b []byte, end int) []byte {
	if end >= 0 && end < len(b) {
		return b[:end]
	}
	return b
}

// l4 decodes the transport header at off; end is where the IP packet ends (possibly beyond the
// capture).
func (d *Decoder) l4(s *state, b []byte, off, end int, proto, dscp byte) {
	switch proto {
	case 6:
		d.tcp(s, b, off, end, dscp)
	case 17:
		d.udp(s, b, off, end, dscp)
	case 1, 58:
		if len(b)-off < 2 {
			s.fail(ReasonTruncated)
			return
		}
		s.rec[OffICMPType] = b[off]
		s.rec[OffICMPCode] = b[off+1]
		if proto == 1 {
			s.pres |= PresICMP
		} else {
			s.pres |= PresICMPv6
		}
	case 47:
		d.gre(s, within(b, end), off)
	case 4, 41: // IPv4 / IPv6 in IP
		if !s.tunnel(TunnelIPIP) {
			return
		}
		if proto == 4 {
			s.put16(OffEthType, 0x0800)
			d.ipv4(s, within(b, end), off)
		} else {
			s.put16(OffEthType, 0x86dd)
			d.ipv6(s, within(b, end), off)
		}
	case 59: // no next header
	default:
		s.fail(ReasonUnsupported)
	}
}

// ports decodes just the ports of a TCP/UDP header cut short by the capture.
func (s *state) ports(b []byte, off int) {
	if len(b)-off >= 4 {
		s.put16(OffSrcPort, be16(b, off))
		s.put16(OffDstPort, be16(b, off+2))
		s.pres |= PresPorts
	}
	s.fail(ReasonTruncated)
}

func (d *Decoder) tcp(s *state, b []byte, off, end int, dscp byte) {
	if len(b)-off < 20 {
		s.ports(b, off)
		return
	}
	h := b[off : off+20]
	s.put16(OffSrcPort, binary.BigEndian.Uint16(h[0:2]))
	s.put16(OffDstPort, binary.BigEndian.Uint16(h[2:4]))
	s.put32(OffTCPSeq, binary.BigEndian.Uint32(h[4:8]))
	s.put32(OffTCPAck, binary.BigEndian.Uint32(h[8:12]))
	s.put16(OffTCPFlags, binary.BigEndian.Uint16(h[12:14])&0x0fff)
	s.put16(OffTCPWindow, binary.BigEndian.Uint16(h[14:16]))
	s.pres |= PresTCP | PresPorts
	doff := int(h[12]>>4) * 4
	if doff < 20 {
		s.fail(ReasonBadLength)
		return
	}
	if off+doff > end {
		s.overrun(ReasonBadLength)
		return
	}
	if pl := end - off - doff; pl > 0 {
		s.put16(OffL4PayloadLen, uint16(pl))
	}
	if doff > 20 {
		if len(b)-off < doff {
			s.fail(ReasonTruncated)
			return
		}
		o := b[off+20 : off+doff]
		if len(o) >= 12 && o[0] == 1 && o[1] == 1 && o[2] == 8 && o[3] == 10 {
			// Linux's layout: NOP, NOP, timestamps.
			s.put32(OffTCPTSval, be32(o, 4))
			s.put32(OffTCPTSecr, be32(o, 8))
			s.pres |= PresTCPTimestamp
		} else {
			d.tcpOptions(s, o)
		}
	}
	d.payload(s, b, off+doff, end, dscp, binary.BigEndian.Uint16(h[0:2]), binary.BigEndian.Uint16(h[2:4]))
}

// tcpOptions looks for the timestamp option (kind 8, length 10).
func (d *Decoder) tcpOptions(s *state, o []byte) {
	for i := 0; i < len(o); {
		switch o[i] {
		case 0: // end of options
			return
		case 1: // no-op
			i++
			continue
		}
		if i+1 >= len(o) {
			return
		}
		n := int(o[i+1])
		if n < 2 || i+n > len(o) {
			return // malformed option list: stop looking, the header itself is fine
		}
		if o[i] == 8 && n == 10 {
			s.put32(OffTCPTSval, be32(o, i+2))
			s.put32(OffTCPTSecr, be32(o, i+6))
			s.pres |= PresTCPTimestamp
		}
		i += n
	}
}

func (d *Decoder) udp(s *state, b []byte, off, end int, dscp byte) {
	if len(b)-off < 8 {
		s.ports(b, off)
		return
	}
	h := b[off : off+8]
	sp := binary.BigEndian.Uint16(h[0:2])
	dp := binary.BigEndian.Uint16(h[2:4])
	s.put16(OffSrcPort, sp)
	s.put16(OffDstPort, dp)
	s.pres |= PresUDP | PresPorts
	if ul := int(binary.BigEndian.Uint16(h[4:6])); ul >= 8 && off+ul < end {
		end = off + ul
	}
	if pl := end - off - 8; pl > 0 {
		s.put16(OffL4PayloadLen, uint16(pl))
	}
	off += 8
	if dp != 0 {
		switch dp {
		case d.opts.VXLANPort:
			d.vxlan(s, within(b, end), off)
			return
		case d.opts.GenevePort:
			d.geneve(s, within(b, end), off)
			return
		}
	}
	d.payload(s, b, off, end, dscp, sp, dp)
}

// payload decodes what may follow a TCP/UDP header: an INT-MD shim and a request-id shim.
func (d *Decoder) payload(s *state, b []byte, off, end int, dscp byte, sp, dp uint16) {
	if d.intOn && dscp&d.intMask == d.intValue {
		n, ok := d.intMD(s, b, off, end)
		if !ok {
			return
		}
		off += n
	}
	if d.reqPortsAny && (d.reqPorts[sp>>6]&(1<<(sp&63)) != 0 || d.reqPorts[dp>>6]&(1<<(dp&63)) != 0) {
		if end-off < 10 {
			return // no room for a shim in this packet
		}
		if len(b)-off < 10 {
			s.fail(ReasonTruncated)
			return
		}
		binary.LittleEndian.PutUint64(s.rec[OffReqID:OffReqID+8], binary.BigEndian.Uint64(b[off:off+8]))
		s.put16(OffReqOffset, be16(b, off+8))
		s.pres |= PresRequestID
	}
}

// intFieldSizes are the per-hop metadata sizes of instruction bitmap bits 0..15 (bit 0 is the
// most significant bit of the 16-bit bitmap), INT spec v2.1 section 5.8.
var intFieldSizes = [16]int{4, 4, 4, 4, 8, 8, 8, 4, 4, 4, 4, 4, 4, 4, 4, 4}

// intMD decodes an INT-MD shim (4 bytes), metadata header (12 bytes) and metadata stack at off. It
// returns the bytes consumed.
func (d *Decoder) intMD(s *state, b []byte, off, end int) (int, bool) {
	if end-off < 16 {
		return 0, true // too short to carry INT: plain payload
	}
	if len(b)-off < 16 {
		s.fail(ReasonTruncated)
		return 0, false
	}
	if b[off]>>4 != 1 { // shim type 1 = INT-MD
		s.fail(ReasonBadINT)
		return 0, false
	}
	total := int(b[off+1]) * 4
	md := b[off+4 : off+16]
	hopML := int(md[2] & 0x1f)
	bitmap := binary.BigEndian.Uint16(md[4:6])
	if md[0]>>4 != 2 || total < 16 || (total > 16 && hopML == 0) {
		s.fail(ReasonBadINT)
		return 0, false
	}
	if off+total > end {
		s.overrun(ReasonBadINT)
		return 0, false
	}
	need := 0
	for i := range 16 {
		if bitmap&(0x8000>>i) != 0 {
			need += intFieldSizes[i]
		}
	}
	if need > hopML*4 {
		s.fail(ReasonBadINT)
		return 0, false
	}
	hops := 0
	if hopML > 0 {
		hops = (total - 16) / (hopML * 4)
	}
	s.rec[OffINTHopML] = byte(hopML)
	s.rec[OffINTHopCount] = byte(min(hops, 255))
	s.pres |= PresINT
	p := off + 16
	for h := 0; h < hops && h < MaxINTHops; h++ {
		if len(b)-p < hopML*4 {
			s.fail(ReasonTruncated)
			return 0, false
		}
		q := p
		base := OffINTSwitchID0 + h*INTHopStride
		if bitmap&0x8000 != 0 {
			s.put32(base+intHopSwitch, be32(b, q))
			q += 4
		}
		if bitmap&0x4000 != 0 {
			s.put16(base+intHopInPort, be16(b, q))
			s.put16(base+intHopEgPort, be16(b, q+2))
			q += 4
		}
		if bitmap&0x2000 != 0 {
			s.put32(base+intHopLatency, be32(b, q))
			q += 4
		}
		if bitmap&0x1000 != 0 {
			s.put32(base+intHopQueue, be32(b, q)&0x00ffffff)
		}
		p += hopML * 4
	}
	return total, true
}

// The tunnel functions enter the tunnel (outer addresses to the outer columns) before checking
// the tunnel header, so a cut or malformed tunnel header leaves empty flow fields rather than the
// outer packet's.

func (d *Decoder) vxlan(s *state, b []byte, off int) {
	if !s.tunnel(TunnelVXLAN) {
		return
	}
	s.clearMACs()
	if len(b)-off < 8 {
		s.fail(ReasonTruncated)
		return
	}
	if s.tunnels == 1 && b[off]&0x08 != 0 { // I flag: VNI valid (else decode on, like Wireshark)
		s.put32(OffVNI, be32(b, off+4)>>8)
		s.pres |= PresVNI
	}
	d.ethernet(s, b, off+8)
}

func (d *Decoder) geneve(s *state, b []byte, off int) {
	if !s.tunnel(TunnelGeneve) {
		return
	}
	if len(b)-off < 8 {
		s.clearMACs() // the payload protocol is unknown
		s.fail(ReasonTruncated)
		return
	}
	if b[off]>>6 != 0 {
		s.fail(ReasonBadTunnel)
		return
	}
	optLen := int(b[off]&0x3f) * 4
	proto := be16(b, off+2)
	if s.tunnels == 1 {
		s.put32(OffVNI, be32(b, off+4)>>8)
		s.pres |= PresVNI
	}
	off += 8 + optLen
	d.tunnelPayload(s, b, off, proto)
}

// tunnelPayload continues after a tunnel header whose payload protocol is an EtherType.
func (d *Decoder) tunnelPayload(s *state, b []byte, off int, proto uint16) {
	switch proto {
	case 0x6558: // transparent Ethernet bridging
		s.clearMACs()
		d.ethernet(s, b, off)
	case 0x0800:
		s.put16(OffEthType, proto)
		d.ipv4(s, b, off)
	case 0x86dd:
		s.put16(OffEthType, proto)
		d.ipv6(s, b, off)
	default:
		s.fail(ReasonUnsupported)
	}
}

func (d *Decoder) gre(s *state, b []byte, off int) {
	if !s.tunnel(TunnelGRE) {
		return
	}
	if len(b)-off < 4 {
		s.fail(ReasonTruncated)
		return
	}
	flags := b[off]
	if b[off+1]&7 != 0 || flags&0x40 != 0 { // version 1 (PPTP) or RFC 1701 routing
		s.fail(ReasonUnsupported)
		return
	}
	proto := be16(b, off+2)
	n := 4
	if flags&0x80 != 0 { // checksum
		n += 4
	}
	keyAt := off + n
	if flags&0x20 != 0 { // key
		n += 4
	}
	if flags&0x10 != 0 { // sequence
		n += 4
	}
	if len(b)-off < n {
		s.fail(ReasonTruncated)
		return
	}
	if s.tunnels == 1 && flags&0x20 != 0 {
		s.put32(OffVNI, be32(b, keyAt))
		s.pres |= PresVNI
	}
	d.tunnelPayload(s, b, off+n, proto)
}

// isIPv6ExtHeader reports whether an IPv6 next-header value is an extension header the decoder
// walks: hop-by-hop (0), routing (43), fragment (44), authentication (51), destination options
// (60), mobility (135), HIP (139) and shim6 (140).
func isIPv6ExtHeader(next byte) bool {
	switch next {
	case 0, 43, 44, 51, 60, 135, 139, 140:
		return true
	}
	return false
}
