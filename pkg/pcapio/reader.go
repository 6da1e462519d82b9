// Package pcapio reads pcap and pcapng captures and exports packet records back to pcap.
//
// Reading uses github.com/gopacket/gopacket/pcapgo (no hand-written file parser): classic pcap with
// microsecond or nanosecond timestamps in either byte order (also gzip-compressed), and pcapng
// (every interface's timestamp resolution and link type). Frames come out with a nanosecond
// timestamp, the captured bytes, the length on the wire and the link type:
//
//	r, err := pcapio.Open("trace.pcapng")
//	if err != nil { ... }
//	defer r.Close()
//	for {
//		f, err := r.NextEthernet() // or Next for the frame as captured
//		if err == io.EOF { break }
//		if err != nil { ... }
//		dec.Decode(rec, f.Data, f.WireLen, f.Timestamp)
//	}
//
// NextEthernet turns Linux cooked captures (SLL, SLL2), raw IP and BSD loopback frames into
// Ethernet frames, the form packet.Decoder expects: cooked headers are rewritten in place (the
// zero destination MAC stands for "unknown", the source MAC is the cooked header's address),
// raw IP frames get a synthetic Ethernet header.
//
// Export (see Exporter) writes records of the packet schema as an Ethernet pcap with nanosecond
// timestamps, from a raw header column when the schema has one, else synthesized from the decoded
// fields.
package pcapio

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/gopacket/gopacket/pcapgo"
)

// Sentinel errors; returned errors wrap them.
var (
	ErrFormat   = errors.New("pcapio: not a pcap or pcapng capture")
	ErrLinkType = errors.New("pcapio: unsupported link type")
	ErrFrame    = errors.New("pcapio: malformed frame")
	ErrSchema   = errors.New("pcapio: schema lacks a column the export needs")
)

// LinkType is a pcap link-layer header type (LINKTYPE_* in the tcpdump registry).
type LinkType uint32

// Link types the package knows.
const (
	LinkNull      LinkType = 0   // BSD loopback: 4-byte address family in host byte order
	LinkEthernet  LinkType = 1   // Ethernet
	LinkRaw       LinkType = 101 // raw IPv4 or IPv6
	LinkLinuxSLL  LinkType = 113 // Linux cooked capture v1
	LinkIPv4      LinkType = 228 // raw IPv4
	LinkIPv6      LinkType = 229 // raw IPv6
	LinkLinuxSLL2 LinkType = 276 // Linux cooked capture v2
)

func (l LinkType) String() string {
	switch l {
	case LinkNull:
		return "NULL"
	case LinkEthernet:
		return "EN10MB"
	case LinkRaw:
		return "RAW"
	case LinkLinuxSLL:
		return "LINUX_SLL"
	case LinkIPv4:
		return "IPV4"
	case LinkIPv6:
		return "IPV6"
	case LinkLinuxSLL2:
		return "LINUX_SLL2"
	}
	return fmt.Sprintf("LinkType(%d)", uint32(l))
}

// Format is the container format of a capture file.
type Format uint8

// Formats.
const (
	FormatPcap Format = iota + 1
	FormatPcapNG
)

func (f Format) String() string {
	switch f {
	case FormatPcap:
		return "pcap"
	case FormatPcapNG:
		return "pcapng"
	}
	return "unknown"
}

// Frame is one captured frame. Data is owned by the Reader and valid until the next call to Next
// or NextEthernet (copy it to keep it or to hand it to another goroutine).
type Frame struct {
	Timestamp int64 // nanoseconds since the Unix epoch
	Data      []byte
	WireLen   int // length on the wire (>= len(Data))
	LinkType  LinkType
	Interface int // pcapng interface index; 0 for pcap
}

// Reader reads frames from a pcap or pcapng capture. A Reader is not safe for concurrent use.
type Reader struct {
	closer  io.Closer
	format  Format
	pcap    *pcapgo.Reader
	ng      *pcapgo.NgReader
	ngFirst LinkType // link type of the first pcapng interface, peeked
	scratch []byte
	frames  uint64
}

// Open opens a capture file; Close closes it.
func Open(path string) (*Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("pcapio: %w", err)
	}
	r, err := NewReader(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	r.closer = f
	return r, nil
}

// pcapng section header block type.
const ngSectionHeader = 0x0a0d0d0a

// NewReader reads a capture from r, telling pcap from pcapng by the first four bytes.
func NewReader(r io.Reader) (*Reader, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	magic, err := br.Peek(4)
	if err != nil {
		return nil, fmt.Errorf("%w: reading the file header: %w", ErrFormat, err)
	}
	if binary.LittleEndian.Uint32(magic) == ngSectionHeader {
		first := peekNgLinkType(br)
		ng, err := pcapgo.NewNgReader(br, pcapgo.NgReaderOptions{WantMixedLinkType: true, SkipUnknownVersion: true})
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrFormat, err)
		}
		return &Reader{format: FormatPcapNG, ng: ng, ngFirst: first}, nil
	}
	p, err := pcapgo.NewReader(br)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFormat, err)
	}
	return &Reader{format: FormatPcap, pcap: p}, nil
}

// peekNgLinkType returns the link type of the interface description block that follows the
// section header, without consuming input (pcapgo reads interfaces lazily when link types may be
// mixed). It returns LinkEthernet if the block is not where it usually is.
func peekNgLinkType(br *bufio.Reader) LinkType {
	hdr, err := br.Peek(12)
	if err != nil {
		return LinkEthernet
	}
	var order binary.ByteOrder = binary.LittleEndian
	if binary.BigEndian.Uint32(hdr[8:12]) == 0x1a2b3c4d {
		order = binary.BigEndian
	}
	shbLen := int(order.Uint32(hdr[4:8]))
	if shbLen < 28 || shbLen > br.Size()-16 {
		return LinkEthernet
	}
	b, err := br.Peek(shbLen + 10)
	if err != nil || order.Uint32(b[shbLen:]) != 1 { // interface description block
		return LinkEthernet
	}
	return LinkType(order.Uint16(b[shbLen+8:]))
}

// Format returns the container format.
func (r *Reader) Format() Format { return r.format }

// LinkType returns the link type of the file (pcapng: of its first interface).
func (r *Reader) LinkType() LinkType {
	if r.ng != nil {
		if r.ng.NInterfaces() > 0 {
			if iface, err := r.ng.Interface(0); err == nil {
				return LinkType(iface.LinkType)
			}
		}
		return r.ngFirst
	}
	return LinkType(r.pcap.LinkType())
}

// Frames returns how many frames have been read.
func (r *Reader) Frames() uint64 { return r.frames }

// Close closes the file opened by Open; for NewReader it does nothing.
func (r *Reader) Close() error {
	if r.closer != nil {
		return r.closer.Close()
	}
	return nil
}

// Next returns the next frame as captured, or io.EOF after the last one. An error wrapping
// ErrFormat (a corrupt or cut file) ends the capture: later calls are not meaningful.
func (r *Reader) Next() (Frame, error) {
	var f Frame
	if r.ng != nil {
		data, ci, err := r.ng.ZeroCopyReadPacketData()
		if err != nil {
			return f, r.readErr(err)
		}
		f.Interface = ci.InterfaceIndex
		f.LinkType = LinkType(r.ng.LinkType())
		if iface, err := r.ng.Interface(ci.InterfaceIndex); err == nil {
			f.LinkType = LinkType(iface.LinkType)
		}
		f.Data, f.WireLen, f.Timestamp = data, ci.Length, ci.Timestamp.UnixNano()
	} else {
		data, ci, err := r.pcap.ZeroCopyReadPacketData()
		if err != nil {
			return f, r.readErr(err)
		}
		f.LinkType = LinkType(r.pcap.LinkType())
		f.Data, f.WireLen, f.Timestamp = data, ci.Length, ci.Timestamp.UnixNano()
	}
	if f.WireLen < len(f.Data) {
		f.WireLen = len(f.Data)
	}
	r.frames++
	return f, nil
}

func (r *Reader) readErr(err error) error {
	if err == io.EOF {
		return io.EOF
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: frame %d cut short by the end of the file: %w", ErrFormat, r.frames+1, err)
	}
	return fmt.Errorf("%w: frame %d: %w", ErrFormat, r.frames+1, err)
}

// NextEthernet returns the next frame converted to Ethernet (see ToEthernet); its LinkType is
// LinkEthernet. A frame that cannot be converted gives an error wrapping ErrFrame or ErrLinkType;
// reading may go on with the next frame.
func (r *Reader) NextEthernet() (Frame, error) {
	f, err := r.Next()
	if err != nil {
		return f, err
	}
	data, wire, scratch, err := ToEthernet(f.LinkType, f.Data, f.WireLen, r.scratch)
	r.scratch = scratch
	if err != nil {
		return f, fmt.Errorf("frame %d: %w", r.frames, err)
	}
	f.Data, f.WireLen, f.LinkType = data, wire, LinkEthernet
	return f, nil
}

// ToEthernet returns frame (of link type lt) as an Ethernet frame and its wire length.
// Ethernet frames are returned as they are; Linux cooked (SLL, SLL2) headers are rewritten in
// place into a 14-byte Ethernet header (the bytes before the returned slice change); raw IP and
// BSD loopback frames are copied behind a synthetic Ethernet header into scratch, which is
// returned for reuse.
func ToEthernet(lt LinkType, frame []byte, wireLen int, scratch []byte) (data []byte, wire int, newScratch []byte, err error) {
	switch lt {
	case LinkEthernet:
		return frame, wireLen, scratch, nil
	case LinkLinuxSLL:
		// pkttype(2) hatype(2) halen(2) addr(8) protocol(2)
		if len(frame) < 16 {
			return nil, 0, scratch, fmt.Errorf("%w: Linux cooked header needs 16 bytes, have %d", ErrFrame, len(frame))
		}
		halen := binary.BigEndian.Uint16(frame[4:6])
		var src [6]byte
		if halen == 6 {
			copy(src[:], frame[6:12])
		}
		copy(frame[8:14], src[:])
		clear(frame[2:8])
		return frame[2:], wireLen - 2, scratch, nil
	case LinkLinuxSLL2:
		// protocol(2) reserved(2) ifindex(4) hatype(2) pkttype(1) halen(1) addr(8)
		if len(frame) < 20 {
			return nil, 0, scratch, fmt.Errorf("%w: Linux cooked v2 header needs 20 bytes, have %d", ErrFrame, len(frame))
		}
		proto0, proto1 := frame[0], frame[1]
		if frame[11] != 6 {
			clear(frame[12:18])
		}
		frame[18], frame[19] = proto0, proto1
		clear(frame[6:12])
		return frame[6:], wireLen - 6, scratch, nil
	case LinkRaw, LinkIPv4, LinkIPv6:
		if len(frame) < 1 {
			return nil, 0, scratch, fmt.Errorf("%w: empty raw IP frame", ErrFrame)
		}
		var et uint16
		switch frame[0] >> 4 {
		case 4:
			et = 0x0800
		case 6:
			et = 0x86dd
		default:
			return nil, 0, scratch, fmt.Errorf("%w: raw IP frame with IP version %d", ErrFrame, frame[0]>>4)
		}
		scratch = withEthernet(scratch, et, frame)
		return scratch, wireLen + 14, scratch, nil
	case LinkNull:
		if len(frame) < 4 {
			return nil, 0, scratch, fmt.Errorf("%w: loopback header needs 4 bytes, have %d", ErrFrame, len(frame))
		}
		family := binary.LittleEndian.Uint32(frame[:4])
		if family > 0xffff {
			family = binary.BigEndian.Uint32(frame[:4])
		}
		var et uint16
		switch family {
		case 2:
			et = 0x0800
		case 10, 24, 28, 30:
			et = 0x86dd
		default:
			return nil, 0, scratch, fmt.Errorf("%w: loopback address family %d", ErrFrame, family)
		}
		scratch = withEthernet(scratch, et, frame[4:])
		return scratch, wireLen - 4 + 14, scratch, nil
	}
	return nil, 0, scratch, fmt.Errorf("%w: %v", ErrLinkType, lt)
}

func withEthernet(dst []byte, et uint16, payload []byte) []byte {
	dst = append(dst[:0], make([]byte, 12)...)
	dst = binary.BigEndian.AppendUint16(dst, et)
	return append(dst, payload...)
}
