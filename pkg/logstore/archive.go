package logstore

import (
	"container/list"
	"fmt"
	"os"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// codecs returns the store's zstd encoder and decoder, creating them on first use. Both are
// used through EncodeAll/DecodeAll, which are safe for concurrent use.
func (st *Store) codecs() (*zstd.Encoder, *zstd.Decoder, error) {
	st.codecMu.Lock()
	defer st.codecMu.Unlock()
	if st.enc == nil {
		// A window no larger than a segment (a payload is one segment) keeps the encoder's
		// retained memory small.
		window := zstd.MinWindowSize
		for window < st.segRecords*st.rs && window < 8<<20 {
			window *= 2
		}
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(st.opts.CompressionLevel), zstd.WithEncoderConcurrency(1),
			zstd.WithWindowSize(window), zstd.WithLowerEncoderMem(true))
		if err != nil {
			return nil, nil, fmt.Errorf("logstore: zstd encoder: %w", err)
		}
		// A payload decompresses to at most one segment (readArchive passes a buffer of the
		// footer's size, checked against the segment): a frame declaring more, or a window
		// larger than the encoder's, is damage, not an allocation the file dictates.
		dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
			zstd.WithDecodeAllCapLimit(true), zstd.WithDecoderMaxWindow(uint64(window)),
			zstd.WithDecoderMaxMemory(uint64(max(st.segRecords*st.rs, window))))
		if err != nil {
			enc.Close()
			return nil, nil, fmt.Errorf("logstore: zstd decoder: %w", err)
		}
		st.enc, st.dec = enc, dec
	}
	return st.enc, st.dec, nil
}

// compress returns the archive payload for records (laid end to end).
func (st *Store) compress(recs []byte) ([]byte, error) {
	enc, _, err := st.codecs()
	if err != nil {
		return nil, err
	}
	src := recs
	if st.opts.Codec == CodecZstdTransposed {
		src = make([]byte, len(recs))
		transpose(src, recs, st.rs)
	}
	return enc.EncodeAll(src, make([]byte, 0, len(recs)/3)), nil
}

// archiveSegment writes seg's records into an archive file (tmp, fsync, rename, fsync dir),
// removes its raw file and releases its memory. seg must be sealed, onDisk and without holes.
func (st *Store) archiveSegment(l *ShardLog, seg *segment) error {
	data, err := l.segmentData(seg)
	if err != nil {
		return err
	}
	payload, err := st.compress(data)
	if err != nil {
		return err
	}
	h := segmentHeader{kind: kindArchive, codec: st.opts.Codec, recordSize: st.rs, shard: l.id, first: seg.first, capacity: seg.capacity, schemaText: st.schemaText}
	f := archiveFooter{first: seg.first, minTS: seg.minTS.Load(), maxTS: seg.maxTS.Load(), records: uint64(seg.count.Load()),
		payloadLen: uint64(len(payload)), rawLen: uint64(len(data)), payloadCRC: crc32c(payload)}
	hb, fb := h.encode(), f.encode()
	file := make([]byte, 0, len(hb)+len(payload)+len(fb))
	file = append(append(append(file, hb...), payload...), fb...)
	path := l.segmentPath(seg.first, extArchive)
	name := path[len(l.dir)+1:]
	if err := writeFileAtomic(l.dir, name, file); err != nil {
		return fmt.Errorf("logstore: shard %d: archive segment %d: %w", l.id, seg.first, err)
	}
	l.mu.Lock()
	raw, rawBytes := seg.rawPath, seg.rawBytes
	seg.archPath, seg.archBytes = path, int64(len(file))
	seg.rawPath, seg.rawBytes = "", 0
	l.mu.Unlock()
	st.diskBytes.Add(int64(len(file)))
	st.counters.archived.Add(1)
	st.counters.archivedRaw.Add(uint64(len(data)))
	st.counters.archivedBytes.Add(uint64(len(file)))
	if raw != "" {
		if err := os.Remove(raw); err != nil {
			return fmt.Errorf("logstore: shard %d: remove archived segment file: %w", l.id, err)
		}
		st.diskBytes.Add(-rawBytes)
	}
	st.release(l.id, seg)
	return nil
}

// release drops seg of shard's memory; reads go to disk (through the cache) from now on.
func (st *Store) release(shard int, seg *segment) {
	if m := seg.mem.Swap(nil); m != nil {
		st.memSealed.Add(-int64(len(*m)))
		st.counters.released.Add(1)
		if st.opts.OnRelease != nil {
			st.opts.OnRelease(shard, seg.first)
		}
	}
}

// readFooter reads and checks an archive file's header and footer. It returns the footer, the
// payload and the file size.
func (st *Store) readArchiveFile(path string, l *ShardLog, first uint64) (archiveFooter, []byte, segmentHeader, int64, error) {
	var f archiveFooter
	b, err := os.ReadFile(path)
	if err != nil {
		return f, nil, segmentHeader{}, 0, fmt.Errorf("logstore: read %s: %w", path, err)
	}
	h, hlen, err := decodeHeader(b)
	if err == nil {
		err = l.checkHeader(h, kindArchive, first)
	}
	if err == nil && h.codec != CodecZstd && h.codec != CodecZstdTransposed {
		err = fmt.Errorf("unknown codec %d", h.codec)
	}
	if err == nil && len(b) < hlen+footerSize {
		err = fmt.Errorf("archive of %d bytes has no footer", len(b))
	}
	if err == nil {
		f, err = decodeFooter(b[len(b)-footerSize:])
	}
	if err == nil {
		switch payload := b[hlen : len(b)-footerSize]; {
		case f.first != first:
			err = fmt.Errorf("footer first sequence %d, file name says %d", f.first, first)
		case uint64(len(payload)) != f.payloadLen:
			err = fmt.Errorf("payload of %d bytes, footer says %d", len(payload), f.payloadLen)
		case crc32c(payload) != f.payloadCRC:
			err = fmt.Errorf("payload checksum mismatch")
		case f.records > uint64(l.segRecords) || f.rawLen != f.records*uint64(l.rs):
			err = fmt.Errorf("footer says %d records of %d bytes", f.records, f.rawLen)
		default:
			return f, payload, h, int64(len(b)), nil
		}
	}
	return f, nil, h, int64(len(b)), fmt.Errorf("%w: %s: %v", ErrDamaged, path, err)
}

// checkArchive validates an archive file at recovery.
func (st *Store) checkArchive(path string, l *ShardLog, first uint64) (archiveFooter, int64, error) {
	f, _, _, size, err := st.readArchiveFile(path, l, first)
	return f, size, err
}

// readArchive returns the records of an archive file.
func (st *Store) readArchive(path string, shard int, first uint64) ([]byte, archiveFooter, error) {
	l := st.shards[shard]
	f, payload, h, _, err := st.readArchiveFile(path, l, first)
	if err != nil {
		return nil, f, err
	}
	_, dec, err := st.codecs()
	if err != nil {
		return nil, f, err
	}
	raw, err := dec.DecodeAll(payload, make([]byte, 0, f.rawLen))
	if err != nil {
		return nil, f, fmt.Errorf("%w: %s: decompress: %v", ErrDamaged, path, err)
	}
	if uint64(len(raw)) != f.rawLen {
		return nil, f, fmt.Errorf("%w: %s: decompressed %d bytes, footer says %d", ErrDamaged, path, len(raw), f.rawLen)
	}
	if h.codec == CodecZstdTransposed {
		out := make([]byte, len(raw))
		untranspose(out, raw, st.rs)
		raw = out
	}
	return raw, f, nil
}

type cacheKey struct {
	shard int
	first uint64
}

// segmentCache is a small LRU of segments read back from disk. Safe for concurrent use.
type segmentCache struct {
	mu    sync.Mutex
	max   int
	lru   *list.List // of *cacheEntry, most recent first
	items map[cacheKey]*list.Element
	st    *Store
}

type cacheEntry struct {
	key  cacheKey
	data []byte
}

func newSegmentCache(n int) *segmentCache {
	return &segmentCache{max: n, lru: list.New(), items: map[cacheKey]*list.Element{}}
}

func (c *segmentCache) get(k cacheKey, load func() ([]byte, error)) ([]byte, error) {
	c.mu.Lock()
	if e, ok := c.items[k]; ok {
		c.lru.MoveToFront(e)
		data := e.Value.(*cacheEntry).data
		c.mu.Unlock()
		if c.st != nil {
			c.st.counters.cacheHits.Add(1)
		}
		return data, nil
	}
	c.mu.Unlock()
	if c.st != nil {
		c.st.counters.cacheMisses.Add(1)
	}
	data, err := load()
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[k]; ok {
		return e.Value.(*cacheEntry).data, nil
	}
	c.items[k] = c.lru.PushFront(&cacheEntry{key: k, data: data})
	for c.lru.Len() > c.max {
		e := c.lru.Back()
		c.lru.Remove(e)
		delete(c.items, e.Value.(*cacheEntry).key)
	}
	return data, nil
}

func (c *segmentCache) drop(k cacheKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[k]; ok {
		c.lru.Remove(e)
		delete(c.items, k)
	}
}

// bytes is the memory held by cached segments.
func (c *segmentCache) bytes() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n int64
	for e := c.lru.Front(); e != nil; e = e.Next() {
		n += int64(len(e.Value.(*cacheEntry).data))
	}
	return n
}
