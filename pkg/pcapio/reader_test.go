package pcapio_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/confluo-go/confluo/pkg/packet"
	"github.com/confluo-go/confluo/pkg/pcapio"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// readAll reads every frame (copied) of a capture.
func readAll(t *testing.T, r *pcapio.Reader, ethernet bool) []pcapio.Frame {
	t.Helper()
	var out []pcapio.Frame
	for {
		var f pcapio.Frame
		var err error
		if ethernet {
			f, err = r.NextEthernet()
		} else {
			f, err = r.Next()
		}
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		f.Data = slices.Clone(f.Data)
		out = append(out, f)
	}
}

// The encap sample starts at 1763700000 s with frames 500 us apart (tshark -T fields -e
// frame.time_epoch); the pcapng copy was written by editcap -F pcapng (microsecond if_tsresol).
func TestReadPcapAndPcapNG(t *testing.T) {
	for _, name := range []string{"encap_sample.pcap", "encap_sample.pcapng"} {
		t.Run(name, func(t *testing.T) {
			r, err := pcapio.Open(filepath.Join("testdata", name))
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			wantFormat := pcapio.FormatPcap
			if filepath.Ext(name) == ".pcapng" {
				wantFormat = pcapio.FormatPcapNG
			}
			if r.Format() != wantFormat || r.LinkType() != pcapio.LinkEthernet {
				t.Errorf("format %v link type %v", r.Format(), r.LinkType())
			}
			frames := readAll(t, r, false)
			if len(frames) != 100 || r.Frames() != 100 {
				t.Fatalf("%d frames (Frames() %d), want 100", len(frames), r.Frames())
			}
			for i, f := range frames {
				want := int64(1763700000)*1e9 + int64(i)*500_000
				if f.Timestamp != want {
					t.Fatalf("frame %d: timestamp %d, want %d", i+1, f.Timestamp, want)
				}
				if f.LinkType != pcapio.LinkEthernet || f.WireLen != len(f.Data) {
					t.Fatalf("frame %d: link %v wire %d captured %d", i+1, f.LinkType, f.WireLen, len(f.Data))
				}
			}
			if len(frames[0].Data) != 168 || len(frames[99].Data) != 28 {
				t.Errorf("frame sizes %d, %d", len(frames[0].Data), len(frames[99].Data))
			}
		})
	}
}

func TestNanosecondPcapAndSnaplen(t *testing.T) {
	var buf bytes.Buffer
	w := pcapgo.NewWriterNanos(&buf)
	if err := w.WriteFileHeader(64, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	ts := time.Unix(1700000000, 123456789)
	data := make([]byte, 64)
	if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: ts, CaptureLength: 64, Length: 1500}, data); err != nil {
		t.Fatal(err)
	}
	r, err := pcapio.NewReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	f, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	if f.Timestamp != ts.UnixNano() || f.WireLen != 1500 || len(f.Data) != 64 {
		t.Errorf("timestamp %d (want %d) wire %d captured %d", f.Timestamp, ts.UnixNano(), f.WireLen, len(f.Data))
	}
	if _, err := r.Next(); err != io.EOF {
		t.Errorf("after the last frame: %v, want io.EOF", err)
	}
}

func TestBadFiles(t *testing.T) {
	if _, err := pcapio.NewReader(bytes.NewReader([]byte("this is not a capture file at all"))); !errors.Is(err, pcapio.ErrFormat) {
		t.Errorf("garbage: %v", err)
	}
	if _, err := pcapio.NewReader(bytes.NewReader(nil)); !errors.Is(err, pcapio.ErrFormat) {
		t.Errorf("empty: %v", err)
	}
	if _, err := pcapio.Open(filepath.Join("testdata", "no-such-file.pcap")); err == nil {
		t.Errorf("missing file: no error")
	}
	// A file cut in the middle of a frame.
	var buf bytes.Buffer
	w := pcapgo.NewWriter(&buf)
	_ = w.WriteFileHeader(65535, layers.LinkTypeEthernet)
	_ = w.WritePacket(gopacket.CaptureInfo{Timestamp: time.Unix(1, 0), CaptureLength: 100, Length: 100}, make([]byte, 100))
	r, err := pcapio.NewReader(bytes.NewReader(buf.Bytes()[:buf.Len()-10]))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Next(); !errors.Is(err, pcapio.ErrFormat) {
		t.Errorf("cut file: %v, want ErrFormat", err)
	}
}

// ipTCP returns an IPv4/TCP packet from 10.1.1.1:1111 to 10.2.2.2:2222.
func ipTCP(t *testing.T) []byte {
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 9, Protocol: layers.IPProtocolTCP, SrcIP: []byte{10, 1, 1, 1}, DstIP: []byte{10, 2, 2, 2}}
	tcp := &layers.TCP{SrcPort: 1111, DstPort: 2222, SYN: true}
	_ = tcp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, tcp); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestLinkTypes writes one IPv4/TCP packet under every supported link type (cooked v1 and v2
// in a pcapng with one interface each, raw and loopback in pcaps) and checks that NextEthernet
// yields a frame the packet decoder reads the same 5-tuple from.
func TestLinkTypes(t *testing.T) {
	ipPkt := ipTCP(t)
	addr := []byte{0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee}
	sll := binary.BigEndian.AppendUint16(nil, 0)    // packet type: to us
	sll = binary.BigEndian.AppendUint16(sll, 1)     // ARPHRD_ETHER
	sll = binary.BigEndian.AppendUint16(sll, 6)     // address length
	sll = append(sll, addr...)                      // address
	sll = append(sll, 0, 0)                         // address padding
	sll = binary.BigEndian.AppendUint16(sll, 0x800) // protocol
	sll = append(sll, ipPkt...)
	sll2 := binary.BigEndian.AppendUint16(nil, 0x800) // protocol
	sll2 = append(sll2, 0, 0)                         // reserved
	sll2 = binary.BigEndian.AppendUint32(sll2, 3)     // ifindex
	sll2 = binary.BigEndian.AppendUint16(sll2, 1)     // ARPHRD_ETHER
	sll2 = append(sll2, 0, 6)                         // packet type, address length
	sll2 = append(sll2, addr...)
	sll2 = append(sll2, 0, 0)
	sll2 = append(sll2, ipPkt...)

	var ng bytes.Buffer
	w, err := pcapgo.NewNgWriter(&ng, layers.LinkTypeLinuxSLL)
	if err != nil {
		t.Fatal(err)
	}
	iface := pcapgo.DefaultNgInterface
	iface.LinkType = layers.LinkType(pcapio.LinkLinuxSLL2)
	id, err := w.AddInterface(iface)
	if err != nil {
		t.Fatal(err)
	}
	ts := time.Unix(1700000000, 987654321)
	_ = w.WritePacket(gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(sll), Length: len(sll)}, sll)
	_ = w.WritePacket(gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(sll2), Length: len(sll2) + 100, InterfaceIndex: id}, sll2)
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	r, err := pcapio.NewReader(&ng)
	if err != nil {
		t.Fatal(err)
	}
	frames := readAll(t, r, true)
	if len(frames) != 2 {
		t.Fatalf("%d frames", len(frames))
	}
	for _, lt := range []pcapio.LinkType{pcapio.LinkRaw, pcapio.LinkIPv4, pcapio.LinkNull} {
		var buf bytes.Buffer
		pw := pcapgo.NewWriterNanos(&buf)
		_ = pw.WriteFileHeader(65535, layers.LinkType(lt))
		data := ipPkt
		if lt == pcapio.LinkNull {
			data = append(binary.LittleEndian.AppendUint32(nil, 2), ipPkt...)
		}
		_ = pw.WritePacket(gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(data), Length: len(data)}, data)
		r, err := pcapio.NewReader(&buf)
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, readAll(t, r, true)...)
	}
	d := packet.NewDecoder(packet.DefaultOptions())
	for i, f := range frames {
		if f.LinkType != pcapio.LinkEthernet || f.Timestamp != ts.UnixNano() {
			t.Errorf("frame %d: link %v timestamp %d", i, f.LinkType, f.Timestamp)
		}
		rec := make([]byte, packet.RecordSize)
		d.Decode(rec, f.Data, f.WireLen, f.Timestamp)
		if packet.Reason(rec[packet.OffDecodeError]) != packet.ReasonNone ||
			!slices.Equal(rec[packet.OffSrcIP:packet.OffSrcIP+8], []byte{10, 1, 1, 1, 10, 2, 2, 2}) ||
			binary.LittleEndian.Uint16(rec[packet.OffSrcPort:]) != 1111 || binary.LittleEndian.Uint16(rec[packet.OffDstPort:]) != 2222 {
			t.Errorf("frame %d: decoded % x", i, rec[packet.OffSrcIP:packet.OffSrcIP+8])
		}
		if i < 2 && !slices.Equal(rec[packet.OffSrcMAC:packet.OffSrcMAC+6], addr) {
			t.Errorf("frame %d: cooked source address % x", i, rec[packet.OffSrcMAC:packet.OffSrcMAC+6])
		}
		wantWire := 14 + len(ipPkt)
		if i == 1 {
			wantWire += 100
		}
		if f.WireLen != wantWire {
			t.Errorf("frame %d: wire length %d, want %d", i, f.WireLen, wantWire)
		}
	}
	if _, _, _, err := pcapio.ToEthernet(pcapio.LinkType(147), []byte{1, 2, 3}, 3, nil); !errors.Is(err, pcapio.ErrLinkType) {
		t.Errorf("unknown link type: %v", err)
	}
	if _, _, _, err := pcapio.ToEthernet(pcapio.LinkLinuxSLL, []byte{1, 2, 3}, 3, nil); !errors.Is(err, pcapio.ErrFrame) {
		t.Errorf("short cooked header: %v", err)
	}
}
