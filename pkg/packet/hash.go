package packet

import (
	"encoding/binary"
	"math/bits"
)

// FlowHash returns the symmetric flow hash of a record of the built-in schema, the value Decode
// stores in its flow_hash column.
//
// The hash covers the innermost 5-tuple. Each endpoint is folded to one 64-bit word:
//
//	IPv4:  ip<<16 | port
//	IPv6:  (hi64(ip) ^ rotl(lo64(ip), 29)) * k1 ^ port
//	other: the 48-bit MAC address (no ports, protocol 0)
//
// Fragments (more-fragments set or a non-zero offset) hash with ports 0, so the first fragment,
// which carries the ports, and the later ones, which do not, get the same value.
//
// The two endpoint words are ordered (smaller first), so both directions of a flow give the same
// input; the protocol is xored into the top byte of the smaller one, both are xored with constants
// and multiplied into a 128-bit product whose halves are xored and folded to 32 bits (wyhash's
// "mum" mixer). It costs a few nanoseconds and distributes well enough to spray flows over cores;
// it is not keyed, so do not rely on it against adversarial traffic.
func FlowHash(rec []byte) uint32 {
	if len(rec) < RecordSize {
		return 0
	}
	r := (*[RecordSize]byte)(rec[:RecordSize])
	return flowHash(r, binary.LittleEndian.Uint32(r[OffPresence:]))
}

func flowHash(r *[RecordSize]byte, pres uint32) uint32 {
	var a, b uint64
	var proto uint64
	sp := uint64(binary.LittleEndian.Uint16(r[OffSrcPort:]))
	dp := uint64(binary.LittleEndian.Uint16(r[OffDstPort:]))
	if r[OffFragFlags]&FragMoreFragments != 0 || binary.LittleEndian.Uint16(r[OffFragOffset:]) != 0 {
		sp, dp = 0, 0 // every fragment of a datagram hashes alike, ports or not
	}
	switch {
	case pres&PresIPv4 != 0:
		a = uint64(binary.BigEndian.Uint32(r[OffSrcIP:]))<<16 | sp
		b = uint64(binary.BigEndian.Uint32(r[OffDstIP:]))<<16 | dp
		proto = uint64(r[OffIPProto])
	case pres&PresIPv6 != 0:
		a = fold6(r[OffSrcIP6:OffSrcIP6+16]) ^ sp
		b = fold6(r[OffDstIP6:OffDstIP6+16]) ^ dp
		proto = uint64(r[OffIPProto])
	case pres&PresEthernet != 0:
		a = mac48(r[OffSrcMAC : OffSrcMAC+6])
		b = mac48(r[OffDstMAC : OffDstMAC+6])
	default:
		return 0
	}
	if a > b {
		a, b = b, a
	}
	hi, lo := bits.Mul64(a^proto<<56^0xa0761d6478bd642f, b^0xe7037ed1a0b428db)
	h := hi ^ lo
	return uint32(h ^ h>>32)
}

func fold6(ip []byte) uint64 {
	_ = ip[15]
	return (binary.BigEndian.Uint64(ip[0:8]) ^ bits.RotateLeft64(binary.BigEndian.Uint64(ip[8:16]), 29)) * 0x9e3779b97f4a7c15
}

func mac48(m []byte) uint64 {
	_ = m[5]
	return uint64(m[0])<<40 | uint64(m[1])<<32 | uint64(m[2])<<24 | uint64(m[3])<<16 | uint64(m[4])<<8 | uint64(m[5])
}
