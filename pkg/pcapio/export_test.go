package pcapio_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/confluo-go/confluo/pkg/packet"
	"github.com/confluo-go/confluo/pkg/pcapio"
	"github.com/confluo-go/confluo/pkg/schema"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// exportCaptures are real and crafted captures (owned by pkg/packet's tests).
var exportCaptures = []string{
	filepath.Join("..", "packet", "testdata", "dev_sample.pcap"),
	filepath.Join("testdata", "encap_sample.pcap"),
}

// tsharkTuples returns the innermost 5-tuple of every frame as tshark sees it:
// "src dst proto sport dport" with proto tcp/udp, or just "src dst" for other IP packets, or "".
func tsharkTuples(t *testing.T, path string) []string {
	t.Helper()
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		t.Fatalf("this test needs tshark to read the exported pcap: install the Debian package tshark (scripts/setup.d/20-tshark.sh): %v", err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(tshark, "-r", path, "-T", "fields", "-E", "separator=|", "-E", "occurrence=l",
		"-e", "ip.src", "-e", "ip.dst", "-e", "ipv6.src", "-e", "ipv6.dst",
		"-e", "tcp.srcport", "-e", "tcp.dstport", "-e", "udp.srcport", "-e", "udp.dstport", "-e", "frame.protocols")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark -r %s: %v: %s", path, err, stderr.String())
	}
	var tuples []string
	for line := range strings.SplitSeq(strings.TrimSuffix(string(out), "\n"), "\n") {
		f := strings.Split(line, "|")
		src, dst := f[0], f[1]
		protos := strings.Split(f[8], ":")
		lastIP := -1
		for i, p := range protos {
			if p == "ip" || p == "ipv6" {
				lastIP = i
			}
		}
		if lastIP >= 0 && protos[lastIP] == "ipv6" {
			src, dst = f[2], f[3]
		}
		tuple := ""
		if src != "" && dst != "" {
			tuple = src + " " + dst
			rest := protos[lastIP+1:]
			switch {
			case slices.Contains(rest, "tcp") && f[4] != "":
				tuple += " tcp " + f[4] + " " + f[5]
			case slices.Contains(rest, "udp") && f[6] != "":
				tuple += " udp " + f[6] + " " + f[7]
			}
		}
		tuples = append(tuples, tuple)
	}
	return tuples
}

// recordTuple formats a packet record's 5-tuple like tsharkTuples.
func recordTuple(rec []byte) string {
	pres := binary.LittleEndian.Uint32(rec[packet.OffPresence:])
	var tuple string
	switch {
	case pres&packet.PresIPv4 != 0:
		tuple = netip.AddrFrom4([4]byte(rec[packet.OffSrcIP:])).String() + " " + netip.AddrFrom4([4]byte(rec[packet.OffDstIP:])).String()
	case pres&packet.PresIPv6 != 0:
		tuple = netip.AddrFrom16([16]byte(rec[packet.OffSrcIP6:])).String() + " " + netip.AddrFrom16([16]byte(rec[packet.OffDstIP6:])).String()
	default:
		return ""
	}
	ports := " " + strconv.Itoa(int(binary.LittleEndian.Uint16(rec[packet.OffSrcPort:]))) + " " + strconv.Itoa(int(binary.LittleEndian.Uint16(rec[packet.OffDstPort:])))
	switch {
	case pres&packet.PresTCP != 0:
		tuple += " tcp" + ports
	case pres&packet.PresUDP != 0:
		tuple += " udp" + ports
	}
	return tuple
}

// decodeCapture returns the records of every frame, with rawSize bytes of raw header after the
// packet columns when rawSize > 0, and the frames.
func decodeCapture(t *testing.T, path string, rawSize int) (recs [][]byte, frames []pcapio.Frame) {
	t.Helper()
	r, err := pcapio.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	d := packet.NewDecoder(packet.DefaultOptions())
	for {
		f, err := r.NextEthernet()
		if err == io.EOF {
			return recs, frames
		}
		if err != nil {
			t.Fatal(err)
		}
		rec := make([]byte, packet.RecordSize+rawSize)
		d.Decode(rec, f.Data, f.WireLen, f.Timestamp)
		copy(rec[packet.RecordSize:], f.Data)
		recs = append(recs, rec)
		f.Data = slices.Clone(f.Data)
		frames = append(frames, f)
	}
}

func export(t *testing.T, s *schema.Schema, recs [][]byte, opts pcapio.ExportOptions) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "export.pcap")
	out, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	e, err := pcapio.NewExporter(out, s, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range recs {
		if err := e.Write(rec); err != nil {
			t.Fatal(err)
		}
	}
	if e.Written() != uint64(len(recs)) {
		t.Errorf("Written %d, want %d", e.Written(), len(recs))
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestExportSynthesized exports records without raw bytes; tshark must see in the export the
// 5-tuple of every record, and for every frame that decoded whole, the original's 5-tuple.
func TestExportSynthesized(t *testing.T) {
	s, err := schema.Parse(packet.SchemaText)
	if err != nil {
		t.Fatal(err)
	}
	for _, capture := range append(slices.Clone(exportCaptures), tunnelCapture(t)) {
		t.Run(filepath.Base(capture), func(t *testing.T) {
			recs, _ := decodeCapture(t, capture, 0)
			path := export(t, s, recs, pcapio.ExportOptions{})
			got := tsharkTuples(t, path)
			orig := tsharkTuples(t, capture)
			if len(got) != len(recs) || len(orig) != len(recs) {
				t.Fatalf("tshark read %d frames from the export, %d from the capture; %d records", len(got), len(orig), len(recs))
			}
			withIP := 0
			for i, rec := range recs {
				want := recordTuple(rec)
				if got[i] != want {
					t.Errorf("frame %d: export has %q, record %q", i+1, got[i], want)
				}
				if rec[packet.OffTruncated] == 0 && got[i] != orig[i] {
					t.Errorf("frame %d: export has %q, original %q", i+1, got[i], orig[i])
				}
				if want != "" {
					withIP++
				}
			}
			t.Logf("%d frames, %d with an IP 5-tuple, all seen by tshark in the export", len(recs), withIP)
			// The export reads back with the original timestamps and wire lengths.
			r, err := pcapio.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			for i, f := range readAll(t, r, false) {
				if f.Timestamp != schema.Timestamp(recs[i]) || f.WireLen != int(binary.LittleEndian.Uint32(recs[i][packet.OffFrameLen:])) {
					t.Fatalf("frame %d: timestamp %d wire %d", i+1, f.Timestamp, f.WireLen)
				}
			}
		})
	}
}

// tunnelCapture writes a pcap of IP-in-IP, IPv6-in-IPv4, keyed GRE and VLAN-tagged ICMPv6 frames
// (serialized by gopacket) and returns its path.
func tunnelCapture(t *testing.T) string {
	eth := func(et layers.EthernetType) *layers.Ethernet {
		return &layers.Ethernet{SrcMAC: []byte{2, 0, 0, 0, 0, 1}, DstMAC: []byte{2, 0, 0, 0, 0, 2}, EthernetType: et}
	}
	v4 := func(src, dst byte, p layers.IPProtocol) *layers.IPv4 {
		return &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: p, SrcIP: []byte{10, 0, 0, src}, DstIP: []byte{10, 0, 0, dst}}
	}
	v6 := func(p layers.IPProtocol) *layers.IPv6 {
		return &layers.IPv6{Version: 6, HopLimit: 9, NextHeader: p, SrcIP: netip.MustParseAddr("fd00::1").AsSlice(), DstIP: netip.MustParseAddr("fd00::2").AsSlice()}
	}
	var frames [][]byte
	add := func(ls ...gopacket.SerializableLayer) {
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true}, ls...); err != nil {
			t.Fatal(err)
		}
		frames = append(frames, slices.Clone(buf.Bytes()))
	}
	add(eth(layers.EthernetTypeIPv4), v4(1, 2, layers.IPProtocolIPv4), v4(3, 4, layers.IPProtocolTCP), &layers.TCP{SrcPort: 10, DstPort: 20, SYN: true, DataOffset: 5})
	add(eth(layers.EthernetTypeIPv4), v4(1, 2, layers.IPProtocolIPv6), v6(layers.IPProtocolUDP), &layers.UDP{SrcPort: 30, DstPort: 40})
	add(eth(layers.EthernetTypeIPv4), v4(5, 6, layers.IPProtocolGRE), &layers.GRE{KeyPresent: true, Key: 99, Protocol: layers.EthernetTypeIPv4},
		v4(7, 8, layers.IPProtocolUDP), &layers.UDP{SrcPort: 50, DstPort: 60})
	add(eth(layers.EthernetTypeDot1Q), &layers.Dot1Q{VLANIdentifier: 42, Type: layers.EthernetTypeIPv6}, v6(layers.IPProtocolICMPv6),
		&layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(128, 0)})
	path := filepath.Join(t.TempDir(), "tunnels.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := pcapgo.NewWriterNanos(f)
	_ = w.WriteFileHeader(65535, layers.LinkTypeEthernet)
	for i, fr := range frames {
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: time.Unix(100, int64(i)), CaptureLength: len(fr), Length: len(fr)}, fr); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestExportRaw exports records that keep the first 256 captured bytes: the export holds exactly
// those bytes, and tshark sees the original 5-tuples.
func TestExportRaw(t *testing.T) {
	const rawSize = 256
	s, err := schema.Parse(packet.SchemaTextWithRaw(rawSize))
	if err != nil {
		t.Fatal(err)
	}
	for _, capture := range exportCaptures {
		t.Run(filepath.Base(capture), func(t *testing.T) {
			recs, frames := decodeCapture(t, capture, rawSize)
			path := export(t, s, recs, pcapio.ExportOptions{})
			r, err := pcapio.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			back := readAll(t, r, false)
			if len(back) != len(frames) {
				t.Fatalf("%d frames back, want %d", len(back), len(frames))
			}
			for i, f := range back {
				want := frames[i].Data[:min(rawSize, len(frames[i].Data))]
				if !bytes.Equal(f.Data, want) || f.WireLen != frames[i].WireLen || f.Timestamp != frames[i].Timestamp {
					t.Fatalf("frame %d: bytes/wire length/timestamp differ from the capture", i+1)
				}
			}
			got := tsharkTuples(t, path)
			orig := tsharkTuples(t, capture)
			for i := range orig {
				if got[i] != orig[i] {
					t.Errorf("frame %d: export has %q, original %q", i+1, got[i], orig[i])
				}
			}
			// Forcing synthesis on the same schema works too.
			if _, err := pcapio.NewExporter(io.Discard, s, pcapio.ExportOptions{Synthesize: true}); err != nil {
				t.Errorf("Synthesize on the raw schema: %v", err)
			}
		})
	}
}

func TestExportErrors(t *testing.T) {
	s, err := schema.Parse("{a: INT}")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pcapio.NewExporter(io.Discard, s, pcapio.ExportOptions{}); !errors.Is(err, pcapio.ErrSchema) {
		t.Errorf("schema without packet columns: %v", err)
	}
	ps, _ := schema.Parse(packet.SchemaText)
	e, err := pcapio.NewExporter(io.Discard, ps, pcapio.ExportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Write(make([]byte, 10)); !errors.Is(err, schema.ErrRecordLen) {
		t.Errorf("short record: %v", err)
	}
	if err := e.WriteBatch(make([]byte, packet.RecordSize+1)); !errors.Is(err, schema.ErrRecordLen) {
		t.Errorf("ragged batch: %v", err)
	}
	if err := e.WriteBatch(make([]byte, 3*packet.RecordSize)); err != nil || e.Written() != 3 {
		t.Errorf("batch of 3 zero records: %v, written %d", err, e.Written())
	}
	s2, _ := schema.Parse("{frame_len: UINT, raw_header: INT}")
	if _, err := pcapio.NewExporter(io.Discard, s2, pcapio.ExportOptions{}); !errors.Is(err, pcapio.ErrSchema) {
		t.Errorf("raw_header of the wrong type: %v", err)
	}
}
