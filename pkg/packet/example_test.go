package packet_test

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/confluo-go/confluo/pkg/packet"
)

func ExampleDecoder() {
	d := packet.NewDecoder(packet.DefaultOptions())
	frame := tcpFrame([4]byte{10, 0, 0, 1}, [4]byte{10, 0, 0, 2}, 40000, 443, nil)
	rec := make([]byte, packet.RecordSize)
	hash := d.Decode(rec, frame, len(frame), 1_700_000_000_000_000_000)

	src := netip.AddrFrom4([4]byte(rec[packet.OffSrcIP:]))
	dst := netip.AddrFrom4([4]byte(rec[packet.OffDstIP:]))
	sport := binary.LittleEndian.Uint16(rec[packet.OffSrcPort:])
	dport := binary.LittleEndian.Uint16(rec[packet.OffDstPort:])
	fmt.Println(src, sport, "->", dst, dport, "proto", rec[packet.OffIPProto])
	fmt.Println("hash stored:", binary.LittleEndian.Uint32(rec[packet.OffFlowHash:]) == hash)
	fmt.Println("reason:", packet.Reason(rec[packet.OffDecodeError]))
	// Output:
	// 10.0.0.1 40000 -> 10.0.0.2 443 proto 6
	// hash stored: true
	// reason: none
}
