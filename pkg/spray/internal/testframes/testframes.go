// Package testframes builds Ethernet frames and capture files for the spray's tests and
// benchmarks.
package testframes

import (
	"encoding/binary"
	"io"
	"net"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Flow is one 5-tuple.
type Flow struct {
	Src, Dst     net.IP
	SPort, DPort uint16
	TCP          bool
}

// Flows returns n distinct IPv4 flows, alternating TCP and UDP.
func Flows(n int) []Flow {
	fl := make([]Flow, n)
	for i := range fl {
		fl[i] = Flow{
			Src:   net.IPv4(10, 0, byte(i>>8), byte(i)).To4(),
			Dst:   net.IPv4(10, 1, byte(i>>8), byte(i)).To4(),
			SPort: uint16(10000 + i), DPort: uint16(80 + i%7), TCP: i%2 == 0,
		}
	}
	return fl
}

// Reverse returns the flow in the other direction.
func (f Flow) Reverse() Flow {
	return Flow{Src: f.Dst, Dst: f.Src, SPort: f.DPort, DPort: f.SPort, TCP: f.TCP}
}

// Frame serializes one frame of flow f with payload bytes; the payload starts with seq (8 bytes
// little-endian) when it has room.
func Frame(f Flow, payload int, seq uint64) []byte {
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, SrcIP: f.Src, DstIP: f.Dst, Protocol: layers.IPProtocolUDP}
	pl := make([]byte, payload)
	if payload >= 8 {
		binary.LittleEndian.PutUint64(pl, seq)
	}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	var err error
	if f.TCP {
		ip.Protocol = layers.IPProtocolTCP
		tcp := &layers.TCP{SrcPort: layers.TCPPort(f.SPort), DstPort: layers.TCPPort(f.DPort), Seq: uint32(seq), ACK: true, Window: 1024}
		_ = tcp.SetNetworkLayerForChecksum(ip)
		err = gopacket.SerializeLayers(buf, opts, eth, ip, tcp, gopacket.Payload(pl))
	} else {
		udp := &layers.UDP{SrcPort: layers.UDPPort(f.SPort), DstPort: layers.UDPPort(f.DPort)}
		_ = udp.SetNetworkLayerForChecksum(ip)
		err = gopacket.SerializeLayers(buf, opts, eth, ip, udp, gopacket.Payload(pl))
	}
	if err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// Packet is one frame with its capture metadata.
type Packet struct {
	Data    []byte
	WireLen int
	Time    time.Time
}

// Mixed returns n packets over flows (both directions alternating), 1 µs apart from start,
// each truncated to snaplen (0: no truncation).
func Mixed(flows []Flow, n, snaplen int, start time.Time) []Packet {
	out := make([]Packet, n)
	for i := range out {
		f := flows[i%len(flows)]
		if (i/len(flows))%2 == 1 {
			f = f.Reverse()
		}
		data := Frame(f, 64+i%200, uint64(i))
		wire := len(data)
		if snaplen > 0 && len(data) > snaplen {
			data = data[:snaplen]
		}
		out[i] = Packet{Data: data, WireLen: wire, Time: start.Add(time.Duration(i) * time.Microsecond)}
	}
	return out
}

// WritePcap writes packets as a pcap file with nanosecond timestamps.
func WritePcap(w io.Writer, pkts []Packet) error {
	pw, err := pcapgo.NewWriterNanos(w), error(nil)
	if err = pw.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		return err
	}
	for _, p := range pkts {
		ci := gopacket.CaptureInfo{Timestamp: p.Time, CaptureLength: len(p.Data), Length: p.WireLen}
		if err := pw.WritePacket(ci, p.Data); err != nil {
			return err
		}
	}
	return nil
}

// WritePcapng writes packets as a pcapng file.
func WritePcapng(w io.Writer, pkts []Packet) error {
	nw, err := pcapgo.NewNgWriter(w, layers.LinkTypeEthernet)
	if err != nil {
		return err
	}
	for _, p := range pkts {
		ci := gopacket.CaptureInfo{Timestamp: p.Time, CaptureLength: len(p.Data), Length: p.WireLen}
		if err := nw.WritePacket(ci, p.Data); err != nil {
			return err
		}
	}
	return nw.Flush()
}
