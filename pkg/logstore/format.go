package logstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/fnv"
)

// FormatVersion is the on-disk format version written into every segment file and the manifest.
// A reader accepts files whose version it knows (currently only 1); see docs/format.md.
const FormatVersion = 1

const (
	segmentMagic = "CFLOSEG\x00"
	footerMagic  = "CFLOFTR\x00"

	kindRaw     = 1
	kindArchive = 2

	// headerFixed is the size of the fixed part of a segment header; the schema text and a
	// CRC-32C follow it.
	headerFixed = 48
	// frameHeaderSize is the size of a batch frame header.
	frameHeaderSize = 12
	// footerSize is the size of an archive footer.
	footerSize = 64
)

// Codec says how an archive file's payload is compressed.
type Codec uint8

// The archive codecs.
const (
	// CodecZstdTransposed stores the records as byte planes (byte 0 of every record, then byte 1
	// of every record, ...) compressed with zstd: fixed-size records whose columns change slowly
	// (timestamps, addresses, ports) compress several times better this way. The default.
	CodecZstdTransposed Codec = 1
	// CodecZstd stores the records as they are, compressed with zstd.
	CodecZstd Codec = 2
)

func (c Codec) String() string {
	switch c {
	case CodecZstdTransposed:
		return "zstd-transposed"
	case CodecZstd:
		return "zstd"
	}
	return fmt.Sprintf("Codec(%d)", uint8(c))
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

func crc32c(b []byte) uint32 { return crc32.Checksum(b, crcTable) }

// schemaHash is FNV-1a 64 of the schema text.
func schemaHash(text string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(text))
	return h.Sum64()
}

// segmentHeader is the header at the start of every segment file.
//
//	0        8     10   11    12          16          20         24
//	+--------+-----+----+-----+-----------+-----------+----------+
//	| magic  | ver |kind|codec| hdr len   | rec size  | shard id |
//	+--------+-----+----+-----+-----------+-----------+----------+
//	24                   32          36           40                48
//	+--------------------+-----------+------------+-----------------+
//	| first sequence     | capacity  | schema len | schema hash     |
//	+--------------------+-----------+------------+-----------------+
//	48                         48+schema len     +4
//	+--------------------------+-----------------+
//	| schema text              | CRC-32C of 0..  |
//	+--------------------------+-----------------+
type segmentHeader struct {
	kind       uint8
	codec      Codec
	recordSize int
	shard      int
	first      uint64
	capacity   int
	schemaText string
}

func (h *segmentHeader) size() int { return headerFixed + len(h.schemaText) + 4 }

func (h *segmentHeader) encode() []byte {
	b := make([]byte, h.size())
	copy(b, segmentMagic)
	binary.LittleEndian.PutUint16(b[8:], FormatVersion)
	b[10] = h.kind
	b[11] = byte(h.codec)
	binary.LittleEndian.PutUint32(b[12:], uint32(len(b)))
	binary.LittleEndian.PutUint32(b[16:], uint32(h.recordSize))
	binary.LittleEndian.PutUint32(b[20:], uint32(h.shard))
	binary.LittleEndian.PutUint64(b[24:], h.first)
	binary.LittleEndian.PutUint32(b[32:], uint32(h.capacity))
	binary.LittleEndian.PutUint32(b[36:], uint32(len(h.schemaText)))
	binary.LittleEndian.PutUint64(b[40:], schemaHash(h.schemaText))
	copy(b[headerFixed:], h.schemaText)
	binary.LittleEndian.PutUint32(b[len(b)-4:], crc32c(b[:len(b)-4]))
	return b
}

var errHeader = errors.New("bad segment header")

// decodeHeader parses a segment header from the start of b. It returns the header and its size.
func decodeHeader(b []byte) (segmentHeader, int, error) {
	var h segmentHeader
	if len(b) < headerFixed+4 {
		return h, 0, fmt.Errorf("%w: file of %d bytes is shorter than a header", errHeader, len(b))
	}
	if string(b[:8]) != segmentMagic {
		return h, 0, fmt.Errorf("%w: bad magic %q", errHeader, b[:8])
	}
	if v := binary.LittleEndian.Uint16(b[8:]); v != FormatVersion {
		return h, 0, fmt.Errorf("%w: format version %d, this build reads %d", errHeader, v, FormatVersion)
	}
	n := int(binary.LittleEndian.Uint32(b[12:]))
	textLen := int(binary.LittleEndian.Uint32(b[36:]))
	if n != headerFixed+textLen+4 || n > len(b) {
		return h, 0, fmt.Errorf("%w: header length %d (schema text %d bytes, file %d bytes)", errHeader, n, textLen, len(b))
	}
	if got, want := crc32c(b[:n-4]), binary.LittleEndian.Uint32(b[n-4:]); got != want {
		return h, 0, fmt.Errorf("%w: header checksum %08x, stored %08x", errHeader, got, want)
	}
	h.kind = b[10]
	h.codec = Codec(b[11])
	h.recordSize = int(binary.LittleEndian.Uint32(b[16:]))
	h.shard = int(binary.LittleEndian.Uint32(b[20:]))
	h.first = binary.LittleEndian.Uint64(b[24:])
	h.capacity = int(binary.LittleEndian.Uint32(b[32:]))
	h.schemaText = string(b[headerFixed : headerFixed+textLen])
	if binary.LittleEndian.Uint64(b[40:]) != schemaHash(h.schemaText) {
		return h, 0, fmt.Errorf("%w: schema hash does not match the schema text", errHeader)
	}
	return h, n, nil
}

// putFrameHeader fills hdr (frameHeaderSize bytes) for a batch of records starting at record
// index idx of its segment.
//
//	0            4             8            12
//	+------------+-------------+------------+-----------------------+
//	| length     | first index | CRC-32C    | records (length bytes)|
//	+------------+-------------+------------+-----------------------+
//	CRC-32C covers bytes 0..8 of the header and the records.
func putFrameHeader(hdr []byte, idx int, recs []byte) {
	binary.LittleEndian.PutUint32(hdr[0:], uint32(len(recs)))
	binary.LittleEndian.PutUint32(hdr[4:], uint32(idx))
	c := crc32.Update(0, crcTable, hdr[:8])
	c = crc32.Update(c, crcTable, recs)
	binary.LittleEndian.PutUint32(hdr[8:], c)
}

// parseFrame checks the frame at the start of b. It returns the first record index, the
// records and ok; ok is false for anything that is not a whole, valid frame whose records fit
// in the segment at or after minIdx.
func parseFrame(b []byte, recordSize, capacity, minIdx int) (idx int, recs []byte, ok bool) {
	if len(b) < frameHeaderSize {
		return 0, nil, false
	}
	n := int(binary.LittleEndian.Uint32(b[0:]))
	idx = int(binary.LittleEndian.Uint32(b[4:]))
	if n == 0 || n%recordSize != 0 || n > len(b)-frameHeaderSize || idx < minIdx || idx+n/recordSize > capacity {
		return 0, nil, false
	}
	c := crc32.Update(0, crcTable, b[:8])
	c = crc32.Update(c, crcTable, b[frameHeaderSize:frameHeaderSize+n])
	if c != binary.LittleEndian.Uint32(b[8:]) {
		return 0, nil, false
	}
	return idx, b[frameHeaderSize : frameHeaderSize+n], true
}

// archiveFooter ends an archive file.
//
//	0          8          16         24         32          40        48      52      56       64
//	+----------+----------+----------+----------+-----------+---------+-------+-------+--------+
//	| first seq| min ts   | max ts   | records  | payload   | raw len | pay-  | footer| magic  |
//	|          |          |          |          | length    |         | load  | CRC   |        |
//	|          |          |          |          |           |         | CRC   |       |        |
//	+----------+----------+----------+----------+-----------+---------+-------+-------+--------+
type archiveFooter struct {
	first        uint64
	minTS, maxTS int64
	records      uint64
	payloadLen   uint64
	rawLen       uint64
	payloadCRC   uint32
}

func (f *archiveFooter) encode() []byte {
	b := make([]byte, footerSize)
	binary.LittleEndian.PutUint64(b[0:], f.first)
	binary.LittleEndian.PutUint64(b[8:], uint64(f.minTS))
	binary.LittleEndian.PutUint64(b[16:], uint64(f.maxTS))
	binary.LittleEndian.PutUint64(b[24:], f.records)
	binary.LittleEndian.PutUint64(b[32:], f.payloadLen)
	binary.LittleEndian.PutUint64(b[40:], f.rawLen)
	binary.LittleEndian.PutUint32(b[48:], f.payloadCRC)
	binary.LittleEndian.PutUint32(b[52:], crc32c(b[:52]))
	copy(b[56:], footerMagic)
	return b
}

var errFooter = errors.New("bad archive footer")

func decodeFooter(b []byte) (archiveFooter, error) {
	var f archiveFooter
	if len(b) != footerSize {
		return f, fmt.Errorf("%w: %d bytes", errFooter, len(b))
	}
	if string(b[56:]) != footerMagic {
		return f, fmt.Errorf("%w: bad magic %q", errFooter, b[56:])
	}
	if got, want := crc32c(b[:52]), binary.LittleEndian.Uint32(b[52:]); got != want {
		return f, fmt.Errorf("%w: checksum %08x, stored %08x", errFooter, got, want)
	}
	f.first = binary.LittleEndian.Uint64(b[0:])
	f.minTS = int64(binary.LittleEndian.Uint64(b[8:]))
	f.maxTS = int64(binary.LittleEndian.Uint64(b[16:]))
	f.records = binary.LittleEndian.Uint64(b[24:])
	f.payloadLen = binary.LittleEndian.Uint64(b[32:])
	f.rawLen = binary.LittleEndian.Uint64(b[40:])
	f.payloadCRC = binary.LittleEndian.Uint32(b[48:])
	return f, nil
}

// transpose writes the byte planes of n records of size rs from src into dst (len n*rs):
// dst[j*n+i] = src[i*rs+j].
func transpose(dst, src []byte, rs int) {
	n := len(src) / rs
	for j := 0; j < rs; j++ {
		plane := dst[j*n : (j+1)*n]
		for i := range plane {
			plane[i] = src[i*rs+j]
		}
	}
}

// untranspose is the inverse of transpose.
func untranspose(dst, src []byte, rs int) {
	n := len(src) / rs
	for j := 0; j < rs; j++ {
		plane := src[j*n : (j+1)*n]
		for i, c := range plane {
			dst[i*rs+j] = c
		}
	}
}
