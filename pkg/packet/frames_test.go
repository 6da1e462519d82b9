package packet_test

import (
	"encoding/binary"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Frame builders for tests and benchmarks, using gopacket's serializers so the bytes do not come
// from the decoder's own understanding of the formats.

var (
	macA = []byte{0x02, 0, 0, 0, 0, 0x0a}
	macB = []byte{0x02, 0, 0, 0, 0, 0x0b}
)

func serialize(ls ...gopacket.SerializableLayer) []byte {
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ls...); err != nil {
		panic(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func ipv4(src, dst [4]byte, proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: proto, SrcIP: src[:], DstIP: dst[:], Id: 7, Flags: layers.IPv4DontFragment, TOS: 0x2e<<2 | 1}
}

// tcpFrame is Ethernet/IPv4/TCP with a timestamp option and a payload.
func tcpFrame(src, dst [4]byte, sport, dport uint16, payload []byte) []byte {
	ip := ipv4(src, dst, layers.IPProtocolTCP)
	tcp := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Seq: 1000, Ack: 2000,
		ACK: true, PSH: true, Window: 512,
		Options: []layers.TCPOption{{OptionType: layers.TCPOptionKindNop}, {OptionType: layers.TCPOptionKindNop},
			{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: []byte{0, 0, 0, 5, 0, 0, 0, 6}}}}
	_ = tcp.SetNetworkLayerForChecksum(ip)
	return serialize(&layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv4}, ip, tcp, gopacket.Payload(payload))
}

// udpFrame is Ethernet/IPv4/UDP.
func udpFrame(src, dst [4]byte, sport, dport uint16, tos uint8, payload []byte) []byte {
	ip := ipv4(src, dst, layers.IPProtocolUDP)
	ip.TOS = tos
	udp := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
	_ = udp.SetNetworkLayerForChecksum(ip)
	return serialize(&layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv4}, ip, udp, gopacket.Payload(payload))
}

// vxlanFrame is Ethernet/IPv4/UDP/VXLAN/Ethernet/IPv4/TCP.
func vxlanFrame(vni uint32) []byte {
	inner := tcpFrame([4]byte{192, 168, 0, 1}, [4]byte{192, 168, 0, 2}, 40000, 443, make([]byte, 64))
	var vx [8]byte
	vx[0] = 0x08
	binary.BigEndian.PutUint32(vx[4:], vni<<8)
	return udpFrame([4]byte{10, 0, 0, 1}, [4]byte{10, 0, 0, 2}, 50000, 4789, 0, append(vx[:], inner...))
}

func ipv6TCPFrame(payload []byte) []byte {
	src := []byte{0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}
	dst := []byte{0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2}
	ip := &layers.IPv6{Version: 6, HopLimit: 63, NextHeader: layers.IPProtocolTCP, SrcIP: src, DstIP: dst, TrafficClass: 0x2e<<2 | 2}
	tcp := &layers.TCP{SrcPort: 5000, DstPort: 80, Seq: 1, Ack: 2, SYN: true, Window: 1000}
	_ = tcp.SetNetworkLayerForChecksum(ip)
	return serialize(&layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv6}, ip, tcp, gopacket.Payload(payload))
}
