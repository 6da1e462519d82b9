package logstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// validManifest is a manifest for testSchemaText with the given segment_records and shard_first.
func validManifest(segRecords int, first uint64) string {
	return fmt.Sprintf(`{"format_version":1,"schema":%q,"record_size":26,"shards":1,"segment_records":%d,"shard_first":[%d]}`,
		testSchemaText, segRecords, first)
}

// openHostile writes manifest into a new directory, opens it and, if that succeeds, appends
// across a segment boundary and reopens. It returns Open's error; it never returns a store.
func openHostile(t *testing.T, manifest string) error {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, manifestName), []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := Open(dir, nil, Options{Mode: Durable, MaintainInterval: -1})
	if err != nil {
		return err
	}
	l := st.Shard(0)
	first := l.Tail()
	if _, err := l.Append(makeBatch(26, 0, first, 2*st.SegmentRecords()+1)); err != nil {
		t.Fatalf("append: %v", err)
	}
	closeT(t, st)
	st, err = Open(dir, nil, Options{Mode: Durable, MaintainInterval: -1})
	if err != nil {
		t.Fatalf("reopen after appending to an accepted manifest: %v", err)
	}
	defer closeT(t, st)
	checkRecords(t, st.Shard(0), first, first+uint64(2*st.SegmentRecords()+1))
	return nil
}

// TestHostileManifest checks that a malformed or hostile MANIFEST.json is refused with
// ErrManifest naming the file (and what is wrong), without a panic or an allocation the
// manifest dictates.
func TestHostileManifest(t *testing.T) {
	for name, tc := range map[string]struct{ manifest, want string }{
		"not json":           {`{"format_version": 1, "schema": `, "unexpected end"},
		"null":               {`null`, "format version 0"},
		"array":              {`[1, 2]`, "cannot unmarshal"},
		"future version":     {`{"format_version": 2}`, "format version 2"},
		"wrong record size":  {strings.Replace(validManifest(50, 0), `"record_size":26`, `"record_size":27`, 1), "record_size says 27"},
		"tiny record size":   {strings.Replace(validManifest(50, 0), `"record_size":26`, `"record_size":0`, 1), "record size 0"},
		"bad schema":         {strings.Replace(validManifest(50, 0), testSchemaText, "{src: IPV5}", 1), "schema"},
		"no shards":          {strings.Replace(validManifest(50, 0), `"shards":1`, `"shards":0`, 1), "0 shards"},
		"shard_first short":  {strings.Replace(validManifest(50, 0), `"shard_first":[0]`, `"shard_first":[]`, 1), "shard_first has 0 entries"},
		"off boundary":       {validManifest(50, 7), "not a segment boundary"},
		"huge segments":      {validManifest(1<<40, 0), "per segment"},
		"segment over 1 GiB": {validManifest(1<<30/26+1, 0), "per segment"},
		"negative segments":  {validManifest(-1, 0), "per segment"},
		// Sequence numbers must not wrap while appending (they would overwrite segment 0).
		"first near 2^64": {validManifest(50, 18446744073709551600), "below 2^62"},
	} {
		t.Run(name, func(t *testing.T) {
			err := openHostile(t, tc.manifest)
			if !errors.Is(err, ErrManifest) || !strings.Contains(err.Error(), manifestName) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("open: %v, want ErrManifest naming %s and %q", err, manifestName, tc.want)
			}
		})
	}
	// The largest accepted values work.
	if err := openHostile(t, validManifest(1000, 1<<62-(1<<62)%1000)); err != nil {
		t.Fatalf("a valid manifest near the limits: %v", err)
	}
}

// FuzzManifest feeds arbitrary MANIFEST.json contents to Open: it either refuses them with
// ErrManifest (or ErrOptions) naming the file, or opens a store that appends and reopens.
func FuzzManifest(f *testing.F) {
	f.Add([]byte(validManifest(50, 0)))
	f.Add([]byte(validManifest(1<<40, 0)))
	f.Add([]byte(validManifest(50, 18446744073709551600)))
	f.Add([]byte(`{"format_version":1,"schema":"{a: STRING(100000000)}","record_size":100000008,"shards":4096,"segment_records":10,"shard_first":[]}`))
	f.Fuzz(func(t *testing.T, manifest []byte) {
		if len(manifest) > 4096 {
			return
		}
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, manifestName), manifest, 0o644); err != nil {
			t.Fatal(err)
		}
		st, err := Open(dir, nil, Options{Mode: Durable, MaintainInterval: -1})
		if err != nil {
			if !errors.Is(err, ErrManifest) || !strings.Contains(err.Error(), manifestName) {
				t.Fatalf("open: %v, want ErrManifest naming the file", err)
			}
			return
		}
		defer st.Close()
		l := st.Shard(0)
		rs := st.Schema().RecordSize
		if st.SegmentRecords()*rs > 16<<20 {
			return // valid, but appending would allocate a large segment
		}
		if _, err := l.Append(make([]byte, rs*min(st.SegmentRecords()+1, 1<<16/rs+1))); err != nil {
			t.Fatalf("append: %v", err)
		}
	})
}

// craftArchive replaces segment first's archive in dir with one whose payload is the given
// zstd bytes, and a footer and checksums that agree with them (as a hostile writer would).
func craftArchive(t *testing.T, dir string, first uint64, payload []byte) string {
	t.Helper()
	path := segFile(dir, first, extArchive)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, hlen, err := decodeHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	old, err := decodeFooter(b[len(b)-footerSize:])
	if err != nil {
		t.Fatal(err)
	}
	old.payloadLen, old.payloadCRC = uint64(len(payload)), crc32c(payload)
	out := append(append(append([]byte(nil), b[:hlen]...), payload...), old.encode()...)
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestHostileArchivePayload checks that an archive whose zstd frame declares a huge content
// size (with checksums that agree, so only decompression can tell) is damage, reported with
// the file, and costs no more memory than a segment: the decoder is limited to what the
// footer says the segment holds.
func TestHostileArchivePayload(t *testing.T) {
	dir := t.TempDir()
	clock := &fakeClock{now: atSeq(0).Add(time.Hour)}
	opts := Options{Mode: Durable, SegmentBytes: smallSegments, MaintainInterval: -1, ArchiveAge: time.Millisecond, Now: clock.Now}
	st := openT(t, dir, opts)
	if _, err := st.Shard(0).Append(makeBatch(26, 0, 0, 120)); err != nil {
		t.Fatal(err)
	}
	if res, err := st.Maintain(); err != nil || res.Archived != 2 {
		t.Fatalf("maintain: %+v, %v", res, err)
	}
	closeT(t, st)

	// A zstd frame with a 1 KiB window declaring 1.75 GiB of content, then one RLE block.
	frame := []byte{0x28, 0xb5, 0x2f, 0xfd, 0xc0, 0x00}
	frame = binary.LittleEndian.AppendUint64(frame, 1792<<20)
	const blockLen = 1000
	hdr := uint32(1) | 1<<1 | blockLen<<3 // last block, RLE, 1000 bytes
	frame = append(frame, byte(hdr), byte(hdr>>8), byte(hdr>>16), 0x42)
	path := craftArchive(t, dir, 50, frame)

	st, err := Open(dir, nil, Options{Mode: Durable, MaintainInterval: -1})
	if err != nil {
		t.Fatalf("open: %v (the archive's checksums agree; only reading it can fail)", err)
	}
	defer closeT(t, st)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err = st.Shard(0).Read(60)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), path) {
		t.Fatalf("read from the hostile archive: %v, want ErrDamaged naming %s", err, path)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<20 {
		t.Fatalf("reading the hostile archive allocated %d MiB", grew>>20)
	}
	// The other segments stay readable.
	want := make([]byte, 26)
	for seq := uint64(0); seq < 120; seq++ {
		if seq == 50 {
			seq = 100
		}
		got, err := st.Shard(0).Read(seq)
		if makeRecord(want, 0, seq); err != nil || string(got) != string(want) {
			t.Fatalf("record %d beside the hostile archive: %v", seq, err)
		}
	}
}
