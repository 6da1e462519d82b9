package packet_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/confluo-go/confluo/pkg/packet"
	"github.com/confluo-go/confluo/pkg/pcapio"
)

var rewrite = flag.Bool("rewrite", false, "regenerate testdata/*.golden by running tshark on testdata/*.pcap")

// goldenCaptures are the captures under testdata with golden files derived from tshark.
var goldenCaptures = []string{"dev_sample", "encap_sample"}

// tsharkFields are the fields the golden files are derived from.
var tsharkFields = []string{
	"frame.number", "frame.protocols", "frame.len", "frame.cap_len", "eth.src", "eth.dst", "eth.type",
	"vlan.id", "vlan.priority", "ieee8021ad.id", "ieee8021ad.priority",
	"vxlan.vni", "geneve.vni", "gre.key", "mpls.label",
	"ip.src", "ip.dst", "ip.proto", "ip.ttl", "ip.dsfield.dscp", "ip.dsfield.ecn", "ip.len", "ip.id",
	"ip.flags", "ip.frag_offset",
	"ipv6.src", "ipv6.dst", "ipv6.hlim", "ipv6.plen", "ipv6.tclass.dscp", "ipv6.tclass.ecn",
	"ipv6.fraghdr.offset", "ipv6.fraghdr.more", "ipv6.fraghdr.ident",
	"tcp.srcport", "tcp.dstport", "tcp.flags", "tcp.seq_raw", "tcp.ack_raw", "tcp.window_size_value",
	"tcp.options.timestamp.tsval", "tcp.options.timestamp.tsecr", "tcp.len",
	"udp.srcport", "udp.dstport", "udp.length",
	"icmp.type", "icmp.code", "icmpv6.type", "icmpv6.code",
	"macc.opcode", "macc.pause_time", "macc.cbfc.enbv",
	"macc.cbfc.pause_time.c0", "macc.cbfc.pause_time.c1", "macc.cbfc.pause_time.c2", "macc.cbfc.pause_time.c3",
	"macc.cbfc.pause_time.c4", "macc.cbfc.pause_time.c5", "macc.cbfc.pause_time.c6", "macc.cbfc.pause_time.c7",
	"_ws.expert.message",
}

// TestGolden decodes every frame of the test captures and compares the fields with the values
// tshark printed for them (testdata/*.golden, regenerated with -rewrite, which needs tshark).
//
// Every field in the golden line must be decoded with the same value, except that a truncated
// record may lack fields of a header that was cut (tshark shows partial headers; the decoder only
// whole ones). Every comparable field the decoder produced must be in the golden line, except for
// truncated records (tshark stops at the first exception).
func TestGolden(t *testing.T) {
	for _, name := range goldenCaptures {
		t.Run(name, func(t *testing.T) {
			pcapPath := filepath.Join("testdata", name+".pcap")
			goldenPath := filepath.Join("testdata", name+".golden")
			if *rewrite {
				writeGolden(t, pcapPath, goldenPath)
			}
			golden := readGolden(t, goldenPath)
			r, err := pcapio.Open(pcapPath)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			d := packet.NewDecoder(packet.DefaultOptions())
			rec := make([]byte, packet.RecordSize)
			n, fieldsChecked, missingTruncated := 0, 0, 0
			for {
				f, err := r.NextEthernet()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				n++
				d.Decode(rec, f.Data, f.WireLen, f.Timestamp)
				want, ok := golden[n]
				if !ok {
					t.Fatalf("frame %d: no golden line", n)
				}
				got := recordFields(rec)
				truncated := rec[packet.OffTruncated] == 1
				for _, k := range sortedKeys(want) {
					g, ok := got[k]
					if !ok {
						if truncated {
							missingTruncated++
							continue
						}
						t.Errorf("frame %d: %s: tshark has %s, decoder has nothing (reason %v)", n, k, want[k], packet.Reason(rec[packet.OffDecodeError]))
						continue
					}
					fieldsChecked++
					if g != want[k] {
						t.Errorf("frame %d: %s: decoder %s, tshark %s", n, k, g, want[k])
					}
				}
				if !truncated {
					for _, k := range sortedKeys(got) {
						if _, ok := want[k]; !ok {
							t.Errorf("frame %d: decoder has %s=%s, tshark has no such field", n, k, got[k])
						}
					}
				}
			}
			if n != len(golden) {
				t.Errorf("decoded %d frames, golden has %d", n, len(golden))
			}
			t.Logf("%d frames, %d fields equal to tshark's, %d tshark fields of cut headers not decoded", n, fieldsChecked, missingTruncated)
			st := d.Stats()
			t.Logf("stats: packets %d truncated %d by reason %v", st.Packets, st.Truncated, st.ByReason)
		})
	}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func readGolden(t *testing.T, path string) map[int]map[string]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (regenerate with: go test ./pkg/packet -run TestGolden -rewrite)", err)
	}
	out := map[int]map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		parts := strings.Fields(line)
		n, err := strconv.Atoi(parts[0])
		if err != nil {
			t.Fatalf("%s: bad line %q", path, line)
		}
		m := map[string]string{}
		for _, kv := range parts[1:] {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				t.Fatalf("%s: frame %d: bad field %q", path, n, kv)
			}
			m[k] = v
		}
		out[n] = m
	}
	return out
}

// writeGolden runs tshark on the capture and writes the fields it printed, renamed to the
// packet schema's columns and normalized to decimal / text addresses.
func writeGolden(t *testing.T, pcapPath, goldenPath string) {
	t.Helper()
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		t.Fatalf("-rewrite needs tshark (Debian package tshark; scripts/setup.d/20-tshark.sh): %v", err)
	}
	args := []string{"-r", pcapPath, "-T", "fields", "-E", "separator=|", "-E", "occurrence=a", "-E", "aggregator=;"}
	for _, f := range tsharkFields {
		args = append(args, "-e", f)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(tshark, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark: %v: %s", err, stderr.String())
	}
	version, _ := exec.Command(tshark, "-v").Output()
	var b strings.Builder
	fmt.Fprintf(&b, "# Field values of %s as printed by %s\n", filepath.Base(pcapPath), strings.SplitN(string(version), "\n", 2)[0])
	fmt.Fprintf(&b, "# (tshark -T fields), renamed to packet schema columns. Regenerate: go test ./pkg/packet -run TestGolden -rewrite\n")
	for line := range strings.SplitSeq(strings.TrimRight(string(out), "\n"), "\n") {
		cols := strings.Split(line, "|")
		if len(cols) != len(tsharkFields) {
			t.Fatalf("tshark line has %d fields, want %d: %q", len(cols), len(tsharkFields), line)
		}
		row := map[string][]string{}
		for i, f := range tsharkFields {
			if cols[i] != "" {
				row[f] = strings.Split(cols[i], ";")
			}
		}
		fields := goldenFromTshark(t, row)
		b.WriteString(row["frame.number"][0])
		for _, k := range sortedKeys(fields) {
			b.WriteString(" " + k + "=" + fields[k])
		}
		b.WriteByte('\n')
	}
	if err := os.WriteFile(goldenPath, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// goldenFromTshark maps one tshark row to packet schema columns.
func goldenFromTshark(t *testing.T, row map[string][]string) map[string]string {
	out := map[string]string{}
	type field struct {
		v  string
		ok bool
	}
	first := func(f string) field {
		v, ok := row[f]
		if !ok {
			return field{}
		}
		return field{v[0], true}
	}
	last := func(f string) field {
		v, ok := row[f]
		if !ok {
			return field{}
		}
		return field{v[len(v)-1], true}
	}
	num := func(s string) string { // tshark prints some numbers in hex
		n, err := strconv.ParseUint(s, 0, 64)
		if err != nil {
			t.Fatalf("tshark number %q: %v", s, err)
		}
		return strconv.FormatUint(n, 10)
	}
	set := func(key string, f field) {
		if f.ok {
			out[key] = f.v
		}
	}
	setNum := func(key string, f field) {
		if f.ok {
			out[key] = num(f.v)
		}
	}
	protos := strings.Split(row["frame.protocols"][0], ":")
	has := func(p string) bool { return slices.Contains(protos, p) }

	setNum("frame_len", first("frame.len"))
	setNum("cap_len", first("frame.cap_len"))
	set("src_mac", last("eth.src"))
	set("dst_mac", last("eth.dst"))
	expert := strings.Join(row["_ws.expert.message"], ";")
	truncated := strings.Contains(expert, "exceeds packet length") || out["cap_len"] != out["frame_len"]
	if truncated {
		out["truncated"] = "1"
	} else {
		out["truncated"] = "0"
	}

	// VLAN tags in order: an 802.1ad service tag comes first.
	var vids, pcps []string
	vids = append(vids, row["ieee8021ad.id"]...)
	pcps = append(pcps, row["ieee8021ad.priority"]...)
	vids = append(vids, row["vlan.id"]...)
	pcps = append(pcps, row["vlan.priority"]...)
	if len(vids) > 0 {
		out["vlan"] = vids[0]
		out["vlan_pcp"] = pcps[0]
	}
	if len(vids) > 1 {
		out["inner_vlan"] = vids[1]
	}
	if l, ok := row["mpls.label"]; ok {
		out["mpls_label"] = l[0]
		out["mpls_depth"] = strconv.Itoa(len(l))
	}

	tunnel := ""
	switch {
	case has("vxlan"):
		tunnel = "1"
		setNum("vni", first("vxlan.vni"))
	case has("geneve"):
		tunnel = "2"
		setNum("vni", first("geneve.vni"))
	case has("gre"):
		tunnel = "3"
		setNum("vni", first("gre.key"))
	}
	if tunnel != "" {
		out["tunnel_type"] = tunnel
		if len(row["ip.src"]) > 1 {
			set("outer_src_ip", first("ip.src"))
			set("outer_dst_ip", first("ip.dst"))
		} else if len(row["ipv6.src"]) > 1 {
			set("outer_src_ip6", first("ipv6.src"))
			set("outer_dst_ip6", first("ipv6.dst"))
		}
	}

	// The innermost IP layer decides the version.
	lastIP := -1
	for i, p := range protos {
		if p == "ip" || p == "ipv6" {
			lastIP = i
		}
	}
	l4 := ""
	if lastIP >= 0 {
		exts := 0
		for _, p := range protos[lastIP+1:] {
			if strings.HasPrefix(p, "ipv6.") {
				exts++
				continue
			}
			l4 = p
			break
		}
		if protos[lastIP] == "ip" {
			out["ip_version"] = "4"
			set("src_ip", last("ip.src"))
			set("dst_ip", last("ip.dst"))
			setNum("ip_proto", last("ip.proto"))
			setNum("ttl", last("ip.ttl"))
			setNum("dscp", last("ip.dsfield.dscp"))
			setNum("ecn", last("ip.dsfield.ecn"))
			setNum("ip_len", last("ip.len"))
			setNum("ip_id", last("ip.id"))
			setNum("frag_flags", last("ip.flags"))
			setNum("frag_offset", last("ip.frag_offset"))
		} else {
			out["ip_version"] = "6"
			set("src_ip6", last("ipv6.src"))
			set("dst_ip6", last("ipv6.dst"))
			setNum("ttl", last("ipv6.hlim"))
			setNum("dscp", last("ipv6.tclass.dscp"))
			setNum("ecn", last("ipv6.tclass.ecn"))
			if pl := last("ipv6.plen"); pl.ok {
				n, _ := strconv.Atoi(pl.v)
				out["ip_len"] = strconv.Itoa(n + 40)
			}
			if exts > 0 {
				out["ip6_ext_count"] = strconv.Itoa(exts)
			}
			if _, ok := row["ipv6.fraghdr.ident"]; ok {
				setNum("ip_id", last("ipv6.fraghdr.ident"))
				setNum("frag_offset", last("ipv6.fraghdr.offset"))
				if m := last("ipv6.fraghdr.more").v; m == "1" || m == "True" {
					out["frag_flags"] = "1"
				} else {
					out["frag_flags"] = "0"
				}
			}
			switch l4 {
			case "tcp":
				out["ip_proto"] = "6"
			case "udp":
				out["ip_proto"] = "17"
			case "icmpv6":
				out["ip_proto"] = "58"
			}
		}
	}
	switch l4 {
	case "tcp":
		setNum("src_port", last("tcp.srcport"))
		setNum("dst_port", last("tcp.dstport"))
		setNum("tcp_flags", last("tcp.flags"))
		setNum("tcp_seq", last("tcp.seq_raw"))
		setNum("tcp_ack", last("tcp.ack_raw"))
		setNum("tcp_window", last("tcp.window_size_value"))
		setNum("tcp_tsval", last("tcp.options.timestamp.tsval"))
		setNum("tcp_tsecr", last("tcp.options.timestamp.tsecr"))
		if n := last("tcp.len"); n.ok && n.v != "0" {
			out["l4_payload_len"] = n.v
		}
	case "udp":
		if tunnel == "1" || tunnel == "2" {
			if len(row["udp.srcport"]) < 2 {
				break // the UDP is the tunnel's
			}
		}
		setNum("src_port", last("udp.srcport"))
		setNum("dst_port", last("udp.dstport"))
		if n := last("udp.length"); n.ok {
			if v, _ := strconv.Atoi(n.v); v > 8 {
				out["l4_payload_len"] = strconv.Itoa(v - 8)
			}
		}
	case "icmp":
		setNum("icmp_type", last("icmp.type"))
		setNum("icmp_code", last("icmp.code"))
	case "icmpv6":
		setNum("icmp_type", last("icmpv6.type"))
		setNum("icmp_code", last("icmpv6.code"))
	}
	if op := first("macc.opcode"); op.ok {
		switch num(op.v) {
		case "1":
			setNum("pause_time0", first("macc.pause_time"))
		case "257":
			setNum("pause_vector", first("macc.cbfc.enbv"))
			for i := range 8 {
				setNum(fmt.Sprintf("pause_time%d", i), first(fmt.Sprintf("macc.cbfc.pause_time.c%d", i)))
			}
		}
	}
	return out
}

// recordFields formats the comparable fields of a record that its presence bitmap says are valid.
func recordFields(rec []byte) map[string]string {
	out := map[string]string{}
	pres := binary.LittleEndian.Uint32(rec[packet.OffPresence:])
	u8 := func(off int) string { return strconv.Itoa(int(rec[off])) }
	u16 := func(off int) string { return strconv.Itoa(int(binary.LittleEndian.Uint16(rec[off:]))) }
	u32 := func(off int) string { return strconv.FormatUint(uint64(binary.LittleEndian.Uint32(rec[off:])), 10) }
	ip4 := func(off int) string { return netip.AddrFrom4([4]byte(rec[off : off+4])).String() }
	ip6 := func(off int) string { return netip.AddrFrom16([16]byte(rec[off : off+16])).String() }
	mac := func(off int) string {
		m := rec[off : off+6]
		return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5])
	}
	out["frame_len"] = u32(packet.OffFrameLen)
	out["cap_len"] = u16(packet.OffCapLen)
	out["truncated"] = u8(packet.OffTruncated)
	if pres&packet.PresEthernet != 0 {
		out["src_mac"] = mac(packet.OffSrcMAC)
		out["dst_mac"] = mac(packet.OffDstMAC)
	}
	if pres&packet.PresVLAN != 0 {
		out["vlan"] = u16(packet.OffVLAN)
		out["vlan_pcp"] = u8(packet.OffVLANPCP)
	}
	if pres&packet.PresInnerVLAN != 0 {
		out["inner_vlan"] = u16(packet.OffInnerVLAN)
	}
	if pres&packet.PresMPLS != 0 {
		out["mpls_label"] = u32(packet.OffMPLSLabel)
		out["mpls_depth"] = u8(packet.OffMPLSDepth)
	}
	if pres&packet.PresTunnel != 0 {
		out["tunnel_type"] = u8(packet.OffTunnelType)
	}
	if pres&packet.PresVNI != 0 {
		out["vni"] = u32(packet.OffVNI)
	}
	if pres&packet.PresOuterIPv4 != 0 {
		out["outer_src_ip"] = ip4(packet.OffOuterSrcIP)
		out["outer_dst_ip"] = ip4(packet.OffOuterDstIP)
	}
	if pres&packet.PresOuterIPv6 != 0 {
		out["outer_src_ip6"] = ip6(packet.OffOuterSrcIP6)
		out["outer_dst_ip6"] = ip6(packet.OffOuterDstIP6)
	}
	if pres&(packet.PresIPv4|packet.PresIPv6) != 0 {
		out["ip_version"] = u8(packet.OffIPVersion)
		out["ip_proto"] = u8(packet.OffIPProto)
		out["ttl"] = u8(packet.OffTTL)
		out["dscp"] = u8(packet.OffDSCP)
		out["ecn"] = u8(packet.OffECN)
		out["ip_len"] = u16(packet.OffIPLen)
	}
	if pres&packet.PresIPv4 != 0 {
		out["src_ip"] = ip4(packet.OffSrcIP)
		out["dst_ip"] = ip4(packet.OffDstIP)
		out["ip_id"] = u32(packet.OffIPID)
		out["frag_flags"] = u8(packet.OffFragFlags)
		out["frag_offset"] = u16(packet.OffFragOffset)
	}
	if pres&packet.PresIPv6 != 0 {
		out["src_ip6"] = ip6(packet.OffSrcIP6)
		out["dst_ip6"] = ip6(packet.OffDstIP6)
		if pres&packet.PresIPv6Ext != 0 {
			out["ip6_ext_count"] = u8(packet.OffIP6ExtCount)
		}
		if pres&packet.PresFragment != 0 {
			out["ip_id"] = u32(packet.OffIPID)
			out["frag_flags"] = u8(packet.OffFragFlags)
			out["frag_offset"] = u16(packet.OffFragOffset)
		}
	}
	if pres&packet.PresPorts != 0 {
		out["src_port"] = u16(packet.OffSrcPort)
		out["dst_port"] = u16(packet.OffDstPort)
	}
	if pres&(packet.PresTCP|packet.PresUDP) != 0 {
		if v := u16(packet.OffL4PayloadLen); v != "0" {
			out["l4_payload_len"] = v
		}
	}
	if pres&packet.PresTCP != 0 {
		out["tcp_flags"] = u16(packet.OffTCPFlags)
		out["tcp_seq"] = u32(packet.OffTCPSeq)
		out["tcp_ack"] = u32(packet.OffTCPAck)
		out["tcp_window"] = u16(packet.OffTCPWindow)
	}
	if pres&packet.PresTCPTimestamp != 0 {
		out["tcp_tsval"] = u32(packet.OffTCPTSval)
		out["tcp_tsecr"] = u32(packet.OffTCPTSecr)
	}
	if pres&(packet.PresICMP|packet.PresICMPv6) != 0 {
		out["icmp_type"] = u8(packet.OffICMPType)
		out["icmp_code"] = u8(packet.OffICMPCode)
	}
	if pres&packet.PresPause != 0 {
		out["pause_time0"] = u16(packet.OffPauseTime0)
	}
	if pres&packet.PresPFC != 0 {
		out["pause_vector"] = u16(packet.OffPauseVector)
		for i := range 8 {
			out[fmt.Sprintf("pause_time%d", i)] = u16(packet.OffPauseTime0 + 2*i)
		}
	}
	return out
}
