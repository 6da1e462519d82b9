package logstore

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

const (
	extRaw     = ".log"
	extArchive = ".zst"
	extTmp     = ".tmp"
)

// Damage is one damaged place found by recovery or a read.
type Damage struct {
	Shard    int
	File     string // the file (or, for a missing file, the name it should have had)
	Offset   int64  // byte offset of the damage in File
	FirstSeq uint64 // first record lost
	Records  uint64 // records lost (0 if nothing was lost)
	Reason   string
}

func (d Damage) String() string {
	return fmt.Sprintf("shard %d: %s at offset %d: %s (records %d..%d lost)", d.Shard, d.File, d.Offset, d.Reason, d.FirstSeq, d.FirstSeq+d.Records)
}

// DamageError lists the damage recovery found. Open returns it together with a usable Store:
// the damaged records are holes (Read reports them, Scan skips them), everything else is
// readable and appends continue.
type DamageError struct {
	Damage      []Damage
	RecordsLost uint64
}

func (e *DamageError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "logstore: damaged data: %d place(s), %d record(s) lost", len(e.Damage), e.RecordsLost)
	for i, d := range e.Damage {
		if i == 8 {
			fmt.Fprintf(&b, "; and %d more", len(e.Damage)-i)
			break
		}
		b.WriteString("; ")
		b.WriteString(d.String())
	}
	return b.String()
}

// Unwrap makes errors.Is(err, ErrDamaged) true.
func (e *DamageError) Unwrap() error { return ErrDamaged }

// Recovery reports what Open found in the directory.
type Recovery struct {
	Segments     int    // segment files read
	Archives     int    // archive files found
	Records      uint64 // records restored (all shards)
	Bytes        int64  // bytes of segment files read
	TornBatches  int    // torn final batches discarded (crash during a write: expected)
	TornBytes    int64  // bytes of those batches
	Damage       []Damage
	RecordsLost  uint64
	LeftoverTmps int // temporary files of interrupted archival or manifest writes removed
	Duration     time.Duration
}

// Err returns a *DamageError if recovery found damage, else nil.
func (r *Recovery) Err() error {
	if len(r.Damage) == 0 {
		return nil
	}
	return &DamageError{Damage: slices.Clone(r.Damage), RecordsLost: r.RecordsLost}
}

// rawScan is the result of reading a raw segment file.
type rawScan struct {
	hdr      segmentHeader
	data     []byte // capacity records; holes are zero
	count    int    // records present, holes included
	holes    []Hole
	damage   []Damage
	validEnd int64 // end of the last whole frame
	torn     int64 // bytes after validEnd discarded as a torn final batch (last segment only)
	fileSize int64
	minTS    int64
	maxTS    int64
}

// scanRawFile reads and checks a raw segment file. For the shard's last segment (last), a bad
// or incomplete frame with nothing valid after it is a torn final batch; anywhere else it is
// damage. The records are returned in data only if keep is set.
func (l *ShardLog) scanRawFile(path string, first uint64, last, keep bool) (rawScan, error) {
	r := rawScan{minTS: math.MaxInt64, maxTS: math.MinInt64}
	b, err := os.ReadFile(path)
	if err != nil {
		return r, fmt.Errorf("logstore: read %s: %w", path, err)
	}
	r.fileSize = int64(len(b))
	h, hlen, err := decodeHeader(b)
	if err == nil {
		err = l.checkHeader(h, kindRaw, first)
	}
	if err != nil {
		return r, fmt.Errorf("%w: %s: %v", ErrDamaged, path, err)
	}
	r.hdr = h
	rs, capacity := l.rs, l.segRecords
	if keep {
		r.data = make([]byte, capacity*rs)
	}
	off, next := hlen, 0
	r.validEnd = int64(off)
	for off < len(b) {
		idx, recs, ok := parseFrame(b[off:], rs, capacity, next)
		if !ok {
			// Look for the next valid frame; if there is none this is the end.
			p := off + 1
			for ; p+frameHeaderSize <= len(b); p++ {
				if _, _, ok2 := parseFrame(b[p:], rs, capacity, next); ok2 {
					break
				}
			}
			if p+frameHeaderSize > len(b) {
				if last {
					r.torn = int64(len(b) - off)
					break
				}
				r.damage = append(r.damage, Damage{Shard: l.id, File: path, Offset: int64(off), FirstSeq: first + uint64(next),
					Records: uint64(capacity - next), Reason: fmt.Sprintf("bad or torn batch frame, %d bytes to the end of the file unreadable", len(b)-off)})
				r.holes = append(r.holes, Hole{First: first + uint64(next), Count: uint64(capacity - next)})
				next = capacity
				break
			}
			idx2, _, _ := parseFrame(b[p:], rs, capacity, next)
			r.damage = append(r.damage, Damage{Shard: l.id, File: path, Offset: int64(off), FirstSeq: first + uint64(next),
				Records: uint64(idx2 - next), Reason: fmt.Sprintf("bad batch frame (checksum or length), %d bytes skipped", p-off)})
			if idx2 > next {
				r.holes = append(r.holes, Hole{First: first + uint64(next), Count: uint64(idx2 - next)})
			}
			next = idx2
			off = p
			continue
		}
		if idx > next {
			r.damage = append(r.damage, Damage{Shard: l.id, File: path, Offset: int64(off), FirstSeq: first + uint64(next),
				Records: uint64(idx - next), Reason: "records missing between batch frames"})
			r.holes = append(r.holes, Hole{First: first + uint64(next), Count: uint64(idx - next)})
		}
		if keep {
			copy(r.data[idx*rs:], recs)
		}
		for o := 0; o < len(recs); o += rs {
			ts := int64(binary.LittleEndian.Uint64(recs[o:]))
			r.minTS, r.maxTS = min(r.minTS, ts), max(r.maxTS, ts)
		}
		next = idx + len(recs)/rs
		off += frameHeaderSize + len(recs)
		r.validEnd = int64(off)
	}
	if !last && next < capacity {
		r.damage = append(r.damage, Damage{Shard: l.id, File: path, Offset: int64(len(b)), FirstSeq: first + uint64(next),
			Records: uint64(capacity - next), Reason: fmt.Sprintf("segment file truncated: %d of %d records", next, capacity)})
		r.holes = append(r.holes, Hole{First: first + uint64(next), Count: uint64(capacity - next)})
		next = capacity
	}
	r.count = next
	return r, nil
}

func (l *ShardLog) checkHeader(h segmentHeader, kind uint8, first uint64) error {
	switch {
	case h.kind != kind:
		return fmt.Errorf("file kind %d, want %d", h.kind, kind)
	case h.recordSize != l.rs:
		return fmt.Errorf("record size %d, want %d", h.recordSize, l.rs)
	case h.shard != l.id:
		return fmt.Errorf("shard %d, want %d", h.shard, l.id)
	case h.first != first:
		return fmt.Errorf("first sequence %d, file name says %d", h.first, first)
	case h.capacity != l.segRecords:
		return fmt.Errorf("capacity %d records, want %d", h.capacity, l.segRecords)
	case h.schemaText != l.st.schemaText:
		return fmt.Errorf("schema %q, want %q", h.schemaText, l.st.schemaText)
	}
	return nil
}

// parseSegmentName parses "seg-<20 digits>.log|.zst".
func parseSegmentName(name string) (first uint64, ext string, ok bool) {
	base, ext := name, filepath.Ext(name)
	if ext != extRaw && ext != extArchive {
		return 0, "", false
	}
	base = strings.TrimSuffix(base, ext)
	digits, ok := strings.CutPrefix(base, "seg-")
	if !ok || len(digits) != 20 {
		return 0, "", false
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	if err != nil {
		return 0, "", false
	}
	return n, ext, true
}

// recover restores the shard from its directory. Damage is appended to rec; an error is
// returned only for problems that prevent opening (I/O errors on the directory).
func (l *ShardLog) recover(rec *Recovery, firstKept uint64) error {
	if err := os.MkdirAll(l.dir, 0o755); err != nil {
		return fmt.Errorf("logstore: shard %d: %w", l.id, err)
	}
	entries, err := os.ReadDir(l.dir)
	if err != nil {
		return fmt.Errorf("logstore: shard %d: %w", l.id, err)
	}
	raws := map[uint64]string{}
	archives := map[uint64]string{}
	var firsts []uint64
	for _, e := range entries {
		name := e.Name()
		path := filepath.Join(l.dir, name)
		if strings.HasSuffix(name, extTmp) {
			if err := os.Remove(path); err != nil {
				return fmt.Errorf("logstore: remove leftover %s: %w", path, err)
			}
			rec.LeftoverTmps++
			continue
		}
		first, ext, ok := parseSegmentName(name)
		if !ok {
			l.st.opts.Logger.Warn("logstore: ignoring unknown file", "file", path)
			continue
		}
		if first%uint64(l.segRecords) != 0 {
			rec.Damage = append(rec.Damage, Damage{Shard: l.id, File: path, Reason: "segment file name is not on a segment boundary; file ignored"})
			continue
		}
		if first < firstKept {
			// Deleted by retention; the crash came before the file was removed.
			if err := os.Remove(path); err != nil {
				return fmt.Errorf("logstore: remove retained-out %s: %w", path, err)
			}
			continue
		}
		if _, seen := raws[first]; !seen {
			if _, seen := archives[first]; !seen {
				firsts = append(firsts, first)
			}
		}
		if ext == extRaw {
			raws[first] = path
		} else {
			archives[first] = path
		}
	}
	slices.Sort(firsts)
	l.next = firstKept
	var segs []*segment
	expect := firstKept
	for i, first := range firsts {
		for ; expect < first; expect += uint64(l.segRecords) {
			// A whole segment file is missing.
			path := l.segmentPath(expect, extRaw)
			seg := newSegment(expect, l.segRecords)
			seg.count.Store(int64(l.segRecords))
			seg.sealed.Store(true)
			seg.onDisk.Store(true)
			seg.holes = []Hole{{First: expect, Count: uint64(l.segRecords)}}
			rec.Damage = append(rec.Damage, Damage{Shard: l.id, File: path, FirstSeq: expect, Records: uint64(l.segRecords), Reason: "segment file missing"})
			rec.RecordsLost += uint64(l.segRecords)
			segs = append(segs, seg)
		}
		last := i == len(firsts)-1
		seg, err := l.recoverSegment(rec, first, raws[first], archives[first], last)
		if err != nil {
			return err
		}
		segs = append(segs, seg)
		expect = first + uint64(l.segRecords)
		l.next = first + uint64(seg.count.Load())
	}
	l.setSegmentsLocked(segs)
	l.firstSeq.Store(firstKept)
	if len(segs) > 0 {
		l.firstSeq.Store(segs[0].first)
	}
	if n := len(segs); n > 0 && !segs[n-1].sealed.Load() {
		l.active = segs[n-1]
		l.filled = int(l.active.count.Load())
	}
	l.tail.Store(l.next)
	l.durableTail.Store(l.next)
	l.syncedFrom.Store(time.Now().UnixNano())
	return nil
}

// recoverSegment restores one segment from its archive and/or raw file.
func (l *ShardLog) recoverSegment(rec *Recovery, first uint64, raw, archive string, last bool) (*segment, error) {
	seg := newSegment(first, l.segRecords)
	if archive != "" {
		f, size, err := l.st.checkArchive(archive, l, first)
		if err == nil {
			rec.Archives++
			seg.count.Store(int64(f.records))
			seg.minTS.Store(f.minTS)
			seg.maxTS.Store(f.maxTS)
			seg.sealed.Store(true)
			seg.onDisk.Store(true)
			seg.archPath, seg.archBytes = archive, size
			l.st.diskBytes.Add(size)
			rec.Records += f.records
			if raw != "" {
				// Archival finished writing the archive; the crash came before the raw file
				// was removed.
				if err := os.Remove(raw); err != nil {
					return nil, fmt.Errorf("logstore: remove archived %s: %w", raw, err)
				}
			}
			return seg, nil
		}
		if raw == "" {
			rec.Damage = append(rec.Damage, Damage{Shard: l.id, File: archive, FirstSeq: first, Records: uint64(l.segRecords), Reason: err.Error()})
			rec.RecordsLost += uint64(l.segRecords)
			seg.count.Store(int64(l.segRecords))
			seg.sealed.Store(true)
			seg.onDisk.Store(true)
			seg.archPath = archive
			seg.holes = []Hole{{First: first, Count: uint64(l.segRecords)}}
			return seg, nil
		}
		l.st.opts.Logger.Warn("logstore: bad archive file, using the segment file", "file", archive, "err", err)
	}
	r, err := l.scanRawFile(raw, first, last, last)
	if err != nil {
		if last && r.fileSize <= int64(headerFixed+4+len(l.st.schemaText)) {
			// Crash while creating the file: no record was ever acknowledged in it.
			rec.TornBatches++
			rec.TornBytes += r.fileSize
			if err := os.Remove(raw); err != nil {
				return nil, fmt.Errorf("logstore: remove torn %s: %w", raw, err)
			}
			mem := make([]byte, l.segRecords*l.rs)
			seg.mem.Store(&mem)
			l.st.memActive.Add(int64(len(mem)))
			return seg, nil
		}
		rec.Damage = append(rec.Damage, Damage{Shard: l.id, File: raw, FirstSeq: first, Records: uint64(l.segRecords), Reason: err.Error()})
		rec.RecordsLost += uint64(l.segRecords)
		seg.count.Store(int64(l.segRecords))
		seg.sealed.Store(true)
		seg.onDisk.Store(true)
		seg.rawPath, seg.rawBytes = raw, r.fileSize
		l.st.diskBytes.Add(r.fileSize)
		seg.holes = []Hole{{First: first, Count: uint64(l.segRecords)}}
		return seg, nil
	}
	rec.Segments++
	rec.Bytes += r.fileSize
	rec.Records += uint64(r.count)
	rec.Damage = append(rec.Damage, r.damage...)
	for _, h := range r.holes {
		rec.RecordsLost += h.Count
		rec.Records -= h.Count
	}
	seg.holes = r.holes
	seg.count.Store(int64(r.count))
	seg.minTS.Store(r.minTS)
	seg.maxTS.Store(r.maxTS)
	seg.rawPath = raw
	if r.torn > 0 {
		rec.TornBatches++
		rec.TornBytes += r.torn
	}
	if last && r.torn > 0 {
		// Cut the torn final batch so appends continue after the last whole record.
		if err := truncateFile(raw, r.validEnd); err != nil {
			return nil, err
		}
		r.fileSize = r.validEnd
	}
	if last && r.count < l.segRecords {
		// The active segment: keep appending to the file.
		f, err := os.OpenFile(raw, os.O_RDWR, 0)
		if err != nil {
			return nil, fmt.Errorf("logstore: reopen %s: %w", raw, err)
		}
		seg.file, seg.fileOff = f, r.validEnd
		seg.persisted, seg.synced = r.count, r.count
		seg.rawBytes = r.validEnd
		l.st.diskBytes.Add(r.validEnd)
		seg.mem.Store(&r.data)
		l.st.memActive.Add(int64(len(r.data)))
		return seg, nil
	}
	seg.rawBytes = r.fileSize
	l.st.diskBytes.Add(r.fileSize)
	seg.sealed.Store(true)
	seg.onDisk.Store(true)
	// Sealed segments stay on disk; reads go through the cache.
	return seg, nil
}

func truncateFile(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("logstore: truncate torn batch of %s: %w", path, err)
	}
	err = f.Truncate(size)
	if err == nil {
		err = fdatasync(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("logstore: truncate torn batch of %s: %w", path, err)
	}
	return nil
}
