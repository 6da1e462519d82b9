package logstore

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fillDurable creates a Durable store in dir with n records in shard 0 (50-record segments) and
// closes it.
func fillDurable(t *testing.T, dir string, n int) {
	t.Helper()
	st := openT(t, dir, Options{Mode: Durable, SegmentBytes: smallSegments, MaintainInterval: -1})
	rs := st.Schema().RecordSize
	for seq := 0; seq < n; seq += 10 {
		if _, err := st.Shard(0).Append(makeBatch(rs, 0, uint64(seq), min(10, n-seq))); err != nil {
			t.Fatal(err)
		}
	}
	closeT(t, st)
}

func segFile(dir string, first uint64, ext string) string {
	return filepath.Join(dir, "shard-0000", "seg-"+pad20(first)+ext)
}

func pad20(n uint64) string {
	s := "00000000000000000000" + itoa(n)
	return s[len(s)-20:]
}

func itoa(n uint64) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

func appendToFile(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

func TestTornFinalBatchIsDiscarded(t *testing.T) {
	rs := testSchema(t).RecordSize
	cases := map[string]func(good []byte) []byte{
		// The header of a batch made it, its records did not all.
		"short records": func(good []byte) []byte { return good[:frameHeaderSize+rs+3] },
		// The whole batch made it but part of it is garbage (a torn sector).
		"bad checksum": func(good []byte) []byte {
			b := append([]byte(nil), good...)
			b[len(b)-1] ^= 0xff
			return b
		},
		// Only part of the batch header.
		"short header": func(good []byte) []byte { return good[:5] },
		// The file was extended but the data never written.
		"zeros": func(good []byte) []byte { return make([]byte, len(good)) },
	}
	for name, tear := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			fillDurable(t, dir, 120) // segments 0, 50 (sealed), 100 (20 records, active)
			path := segFile(dir, 100, extRaw)
			before, _ := os.Stat(path)
			recs := makeBatch(rs, 0, 120, 5)
			good := make([]byte, frameHeaderSize+len(recs))
			copy(good[frameHeaderSize:], recs)
			putFrameHeader(good, 20, good[frameHeaderSize:])
			torn := tear(good)
			appendToFile(t, path, torn)

			st, err := Open(dir, nil, Options{Mode: Durable, MaintainInterval: -1})
			if err != nil {
				t.Fatalf("a torn final batch is not damage: %v", err)
			}
			rec := st.Recovery()
			if rec.TornBatches != 1 || rec.TornBytes != int64(len(torn)) {
				t.Fatalf("recovery %+v, want 1 torn batch of %d bytes", rec, len(torn))
			}
			l := st.Shard(0)
			checkRecords(t, l, 0, 120)
			if _, err := l.Read(120); !errors.Is(err, ErrNotFound) {
				t.Fatalf("read past the tail: %v", err)
			}
			after, _ := os.Stat(path)
			if after.Size() != before.Size() {
				t.Fatalf("torn batch not cut: file %d bytes, was %d", after.Size(), before.Size())
			}
			// The tail resumes after the last whole record.
			if _, err := l.Append(makeBatch(rs, 0, 120, 35)); err != nil {
				t.Fatal(err)
			}
			closeT(t, st)
			st = openT(t, dir, Options{Mode: Durable, MaintainInterval: -1})
			defer closeT(t, st)
			if r := st.Recovery(); r.TornBatches != 0 || len(r.Damage) != 0 {
				t.Fatalf("second recovery %+v", r)
			}
			checkRecords(t, st.Shard(0), 0, 155)
		})
	}
}

func TestTornNewSegmentFile(t *testing.T) {
	dir := t.TempDir()
	fillDurable(t, dir, 100) // segments 0 and 50, both full
	// A crash while creating the next file: only part of its header exists.
	if err := os.WriteFile(segFile(dir, 100, extRaw), []byte("CFLOSEG\x00\x01"), 0o644); err != nil {
		t.Fatal(err)
	}
	st := openT(t, dir, Options{Mode: Durable, MaintainInterval: -1})
	defer closeT(t, st)
	if r := st.Recovery(); r.TornBatches != 1 {
		t.Fatalf("recovery %+v, want the half-created file counted as torn", r)
	}
	l := st.Shard(0)
	checkRecords(t, l, 0, 100)
	if _, err := l.Append(makeBatch(st.Schema().RecordSize, 0, 100, 7)); err != nil {
		t.Fatal(err)
	}
	checkRecords(t, l, 0, 107)
}

// damaged opens dir expecting a *DamageError and returns the store and the error.
func damaged(t *testing.T, dir string) (*Store, *DamageError) {
	t.Helper()
	st, err := Open(dir, nil, Options{Mode: Durable, MaintainInterval: -1})
	var de *DamageError
	if !errors.As(err, &de) || !errors.Is(err, ErrDamaged) {
		t.Fatalf("open: %v, want a *DamageError", err)
	}
	if st == nil {
		t.Fatal("open returned no store with the damage")
	}
	return st, de
}

// checkLost checks that exactly the records in lost are reported as damaged and all others
// of [0, n) are intact, through Read and Scan.
func checkLost(t *testing.T, st *Store, n uint64, lost func(uint64) bool) {
	t.Helper()
	l := st.Shard(0)
	want := make([]byte, l.rs)
	for seq := uint64(0); seq < n; seq++ {
		got, err := l.Read(seq)
		if lost(seq) {
			if !errors.Is(err, ErrDamaged) {
				t.Fatalf("record %d: %v, want ErrDamaged", seq, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("record %d: %v", seq, err)
		}
		makeRecord(want, 0, seq)
		if string(got) != string(want) {
			t.Fatalf("record %d differs", seq)
		}
	}
	var seen uint64
	if err := l.Scan(0, 1<<62, func(seq uint64, rec []byte) bool {
		if lost(seq) {
			t.Fatalf("scan returned lost record %d", seq)
		}
		seen++
		return true
	}); err != nil {
		t.Fatal(err)
	}
	var kept uint64
	for seq := uint64(0); seq < n; seq++ {
		if !lost(seq) {
			kept++
		}
	}
	if seen != kept {
		t.Fatalf("scan saw %d records, want %d", seen, kept)
	}
}

func TestBadChecksumInTheMiddle(t *testing.T) {
	dir := t.TempDir()
	fillDurable(t, dir, 170) // 10-record frames; segment 50 is sealed
	path := segFile(dir, 50, extRaw)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rs := testSchema(t).RecordSize
	hlen := headerFixed + len(testSchema(t).String()) + 4
	frame := frameHeaderSize + 10*rs
	off := hlen + 2*frame + frameHeaderSize + 7 // inside the third frame's records: 70..79
	b[off] ^= 0x40
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	st, de := damaged(t, dir)
	defer closeT(t, st)
	if len(de.Damage) != 1 || de.RecordsLost != 10 {
		t.Fatalf("damage %v", de)
	}
	d := de.Damage[0]
	if d.File != path || d.Offset != int64(hlen+2*frame) || d.FirstSeq != 70 || d.Records != 10 {
		t.Fatalf("damage %+v, want %s at offset %d, records 70..80", d, path, hlen+2*frame)
	}
	if !strings.Contains(de.Error(), path) || !strings.Contains(de.Error(), "offset") {
		t.Fatalf("error %q does not name the file and offset", de)
	}
	checkLost(t, st, 170, func(seq uint64) bool { return seq >= 70 && seq < 80 })
	// Appends continue; the damage stays reported until retention removes the segment.
	if _, err := st.Shard(0).Append(makeBatch(rs, 0, 170, 3)); err != nil {
		t.Fatal(err)
	}
}

func TestTruncatedSealedSegment(t *testing.T) {
	dir := t.TempDir()
	fillDurable(t, dir, 130)
	path := segFile(dir, 0, extRaw)
	fi, _ := os.Stat(path)
	rs := testSchema(t).RecordSize
	cut := fi.Size() - int64(frameHeaderSize+10*rs) - 5 // the last frame and a bit of the one before
	if err := os.Truncate(path, cut); err != nil {
		t.Fatal(err)
	}
	st, de := damaged(t, dir)
	defer closeT(t, st)
	if de.RecordsLost != 20 {
		t.Fatalf("damage %v, want 20 records lost (30..49)", de)
	}
	// Reported at the start of the cut frame (records 30..39), with the file and offset.
	hlen := headerFixed + len(testSchema(t).String()) + 4
	if off := int64(hlen + 3*(frameHeaderSize+10*rs)); len(de.Damage) != 1 || de.Damage[0].File != path || de.Damage[0].Offset != off || de.Damage[0].FirstSeq != 30 {
		t.Fatalf("damage %+v, want one place: %s at offset %d, from record 30", de.Damage, path, off)
	}
	if !strings.Contains(de.Error(), path) || !strings.Contains(de.Error(), "offset") {
		t.Fatalf("error %q does not name the file and offset", de)
	}
	checkLost(t, st, 130, func(seq uint64) bool { return seq >= 30 && seq < 50 })
}

func TestMissingAndBadHeaderSegments(t *testing.T) {
	dir := t.TempDir()
	fillDurable(t, dir, 220)
	if err := os.Remove(segFile(dir, 50, extRaw)); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(segFile(dir, 100, extRaw))
	b[20] ^= 1 // shard id inside the header: header checksum fails
	os.WriteFile(segFile(dir, 100, extRaw), b, 0o644)
	st, de := damaged(t, dir)
	defer closeT(t, st)
	if len(de.Damage) != 2 || de.RecordsLost != 100 {
		t.Fatalf("damage %v, want 2 places, 100 records", de)
	}
	if !strings.Contains(de.Damage[0].Reason, "missing") || !strings.Contains(de.Damage[1].Reason, "checksum") {
		t.Fatalf("reasons %q, %q", de.Damage[0].Reason, de.Damage[1].Reason)
	}
	checkLost(t, st, 220, func(seq uint64) bool { return seq >= 50 && seq < 150 })
}

func TestLeftoverTmpAndUnknownFiles(t *testing.T) {
	dir := t.TempDir()
	fillDurable(t, dir, 60)
	os.WriteFile(filepath.Join(dir, "shard-0000", "seg-00000000000000000000.zst.tmp"), []byte("half an archive"), 0o644)
	os.WriteFile(filepath.Join(dir, "shard-0000", "notes.txt"), []byte("hello"), 0o644)
	st := openT(t, dir, Options{Mode: Durable, MaintainInterval: -1})
	defer closeT(t, st)
	if r := st.Recovery(); r.LeftoverTmps != 1 {
		t.Fatalf("recovery %+v", r)
	}
	checkRecords(t, st.Shard(0), 0, 60)
}

func FuzzRecoverSegment(f *testing.F) {
	f.Add([]byte{}, 0, byte(0))
	f.Add([]byte("garbage"), 100, byte(7))
	f.Fuzz(func(t *testing.T, junk []byte, at int, flip byte) {
		if len(junk) > 4096 {
			return
		}
		dir := t.TempDir()
		fillDurable(t, dir, 75)
		path := segFile(dir, 50, extRaw)
		b, _ := os.ReadFile(path)
		if at < 0 {
			at = -at
		}
		at %= len(b) + 1
		if at < len(b) {
			b[at] ^= flip
		}
		b = append(b[:at:at], append(junk, b[at:]...)...)
		os.WriteFile(path, b, 0o644)
		st, err := Open(dir, nil, Options{Mode: Durable, MaintainInterval: -1})
		if err != nil && !errors.Is(err, ErrDamaged) {
			t.Fatalf("open: %v", err)
		}
		defer st.Close()
		// Records of the untouched sealed segment are intact; every other record readable is
		// exactly what was written (a flipped bit never passes as a record).
		l := st.Shard(0)
		if l.Tail() < 50 {
			t.Fatalf("tail %d: the sealed segment was lost", l.Tail())
		}
		want := make([]byte, l.rs)
		for seq := uint64(0); seq < l.Tail(); seq++ {
			got, err := l.Read(seq)
			if seq < 50 && err != nil || err != nil && !errors.Is(err, ErrDamaged) {
				t.Fatalf("record %d: %v", seq, err)
			}
			makeRecord(want, 0, seq)
			if err == nil && string(got) != string(want) {
				t.Fatalf("record %d differs", seq)
			}
		}
	})
}

func TestDurableWriteErrorIsSticky(t *testing.T) {
	dir := t.TempDir()
	st := openT(t, dir, Options{Mode: Durable, SegmentBytes: smallSegments, MaintainInterval: -1})
	rs := st.Schema().RecordSize
	l := st.Shard(0)
	if _, err := l.Append(makeBatch(rs, 0, 0, 10)); err != nil {
		t.Fatal(err)
	}
	// The disk goes bad: the segment file can no longer be written.
	l.flushMu.Lock()
	good := l.active.file
	bad, err := os.Open(good.Name())
	if err != nil {
		t.Fatal(err)
	}
	l.active.file = bad
	l.flushMu.Unlock()
	_, err = l.Append(makeBatch(rs, 0, 10, 5))
	if err == nil || !strings.Contains(err.Error(), "shard 0") {
		t.Fatalf("append on a bad disk: %v", err)
	}
	if l.Tail() != 15 || l.DurableTail() != 10 {
		t.Fatalf("tail %d durable %d, want 15 (in memory) and 10 (on disk)", l.Tail(), l.DurableTail())
	}
	if _, err2 := l.Append(makeBatch(rs, 0, 15, 5)); err2 == nil || err2.Error() != err.Error() {
		t.Fatalf("second append: %v, want the same error", err2)
	}
	l.flushMu.Lock()
	l.active.file = good
	l.flushMu.Unlock()
	bad.Close()
	st.Close()
	// What was acknowledged is there (Close may have written more, intact).
	st = openT(t, dir, Options{Mode: Durable, MaintainInterval: -1})
	defer closeT(t, st)
	if tail := st.Shard(0).Tail(); tail < 10 {
		t.Fatalf("tail %d below the acknowledged 10", tail)
	}
	checkRecords(t, st.Shard(0), 0, st.Shard(0).Tail())
}
