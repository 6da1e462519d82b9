package logstore

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// fakeClock is a settable clock for archival and retention ages.
type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time { return c.now }

// atSeq is the wall time at which record seq was written, per makeRecord.
func atSeq(seq uint64) time.Time { return time.Unix(0, tsOf(seq)) }

type scanned struct {
	seq uint64
	rec []byte
}

func scanAll(t *testing.T, l *ShardLog, from, to int64) []scanned {
	t.Helper()
	var out []scanned
	if err := l.Scan(from, to, func(seq uint64, rec []byte) bool {
		out = append(out, scanned{seq, append([]byte(nil), rec...)})
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func sameScan(t *testing.T, what string, got, want []scanned) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d records, want %d", what, len(got), len(want))
	}
	for i := range got {
		if got[i].seq != want[i].seq || !bytes.Equal(got[i].rec, want[i].rec) {
			t.Fatalf("%s: record %d: seq %d, want %d (or bytes differ)", what, i, got[i].seq, want[i].seq)
		}
	}
}

func TestArchiveRoundTrip(t *testing.T) {
	for _, codec := range []Codec{CodecZstdTransposed, CodecZstd} {
		t.Run(codec.String(), func(t *testing.T) {
			dir := t.TempDir()
			clock := &fakeClock{now: atSeq(0)}
			opts := Options{Mode: Durable, SegmentBytes: smallSegments, MaintainInterval: -1, Codec: codec,
				ArchiveAge: time.Millisecond, Now: clock.Now, CacheSegments: 2}
			st := openT(t, dir, opts)
			rs := st.Schema().RecordSize
			l := st.Shard(0)
			const n = 430
			if _, err := l.Append(makeBatch(rs, 0, 0, n)); err != nil {
				t.Fatal(err)
			}
			ranges := [][2]int64{{0, 1 << 62}, {tsOf(10), tsOf(20)}, {tsOf(45), tsOf(260)}, {tsOf(420), tsOf(500)}, {tsOf(1000), tsOf(2000)}}
			var before [][]scanned
			for _, r := range ranges {
				before = append(before, scanAll(t, l, r[0], r[1]))
			}
			segBefore, err := l.ReadSegment(100)
			if err != nil {
				t.Fatal(err)
			}
			segBefore = append([]byte(nil), segBefore...)

			// Records up to 300 are older than ArchiveAge: segments 0..250 are archived.
			clock.now = atSeq(300).Add(time.Millisecond)
			res, err := st.Maintain()
			if err != nil {
				t.Fatal(err)
			}
			if res.Archived != 6 {
				t.Fatalf("archived %d segments, want 6 (0..250): %+v", res.Archived, res)
			}
			for _, sg := range l.Segments() {
				wantArchived := sg.First+50 <= 300
				if sg.Archived != wantArchived || sg.InMemory == wantArchived {
					t.Fatalf("segment %d: %+v", sg.First, sg)
				}
			}
			if _, err := os.Stat(segFile(dir, 0, extRaw)); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("segment file of an archived segment still there: %v", err)
			}
			if _, err := os.Stat(segFile(dir, 0, extArchive)); err != nil {
				t.Fatal(err)
			}
			for i, r := range ranges {
				sameScan(t, "after archival", scanAll(t, l, r[0], r[1]), before[i])
			}
			segAfter, err := l.ReadSegment(100)
			if err != nil || !bytes.Equal(segAfter, segBefore) {
				t.Fatalf("archived segment reads back differently: %v", err)
			}
			checkRecords(t, l, 0, n)
			stats := st.Stats()
			if stats.SegmentsArchived != 6 || stats.ArchivedRawBytes != 6*50*uint64(rs) || stats.CacheMisses == 0 {
				t.Fatalf("stats %+v", stats)
			}
			if sealed, _ := st.MemoryBytes(); sealed != 2*smallSegments {
				t.Fatalf("sealed memory %d, want the 2 unarchived sealed segments (%d)", sealed, 2*smallSegments)
			}
			closeT(t, st)

			// Reopen: archives are restored and skipped by time range without being read.
			st = openT(t, dir, Options{Mode: Durable, MaintainInterval: -1})
			defer closeT(t, st)
			if r := st.Recovery(); r.Archives != 6 || r.Records != n {
				t.Fatalf("recovery %+v", r)
			}
			l = st.Shard(0)
			misses := st.Stats().CacheMisses
			sameScan(t, "reopened, recent range", scanAll(t, l, ranges[3][0], ranges[3][1]), before[3])
			if got := st.Stats().CacheMisses; got != misses {
				t.Fatalf("a range in the active segment read %d archived segments, want 0", got-misses)
			}
			sameScan(t, "reopened, old range", scanAll(t, l, ranges[1][0], ranges[1][1]), before[1])
			if got := st.Stats().CacheMisses; got != misses+1 {
				t.Fatalf("a range inside segment 0 read %d released segments, want 1", got-misses)
			}
			for i, r := range ranges {
				sameScan(t, "reopened", scanAll(t, l, r[0], r[1]), before[i])
			}
		})
	}
}

func TestBadArchiveIsDamage(t *testing.T) {
	dir := t.TempDir()
	clock := &fakeClock{now: atSeq(0).Add(time.Hour)}
	st := openT(t, dir, Options{Mode: Durable, SegmentBytes: smallSegments, MaintainInterval: -1, ArchiveAge: time.Millisecond, Now: clock.Now})
	if _, err := st.Shard(0).Append(makeBatch(st.Schema().RecordSize, 0, 0, 120)); err != nil {
		t.Fatal(err)
	}
	if res, err := st.Maintain(); err != nil || res.Archived != 2 {
		t.Fatalf("maintain: %+v, %v", res, err)
	}
	closeT(t, st)
	path := segFile(dir, 50, extArchive)
	b, _ := os.ReadFile(path)
	b[len(b)/2] ^= 0x10
	os.WriteFile(path, b, 0o644)
	st, de := damaged(t, dir)
	defer closeT(t, st)
	if len(de.Damage) != 1 || de.Damage[0].File != path || de.RecordsLost != 50 {
		t.Fatalf("damage %v", de)
	}
	checkLost(t, st, 120, func(seq uint64) bool { return seq >= 50 && seq < 100 })
}

// An archive written completely whose segment file was not yet removed (crash in between):
// the archive wins, the segment file is removed.
func TestCrashBetweenArchiveAndRemove(t *testing.T) {
	dir := t.TempDir()
	fillDurable(t, dir, 120)
	raw, _ := os.ReadFile(segFile(dir, 0, extRaw))
	clock := &fakeClock{now: atSeq(0).Add(time.Hour)}
	st := openT(t, dir, Options{Mode: Durable, MaintainInterval: -1, ArchiveAge: time.Millisecond, Now: clock.Now})
	if res, err := st.Maintain(); err != nil || res.Archived != 2 {
		t.Fatalf("maintain: %+v, %v", res, err)
	}
	closeT(t, st)
	os.WriteFile(segFile(dir, 0, extRaw), raw, 0o644)
	st = openT(t, dir, Options{Mode: Durable, MaintainInterval: -1})
	defer closeT(t, st)
	if _, err := os.Stat(segFile(dir, 0, extRaw)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("leftover segment file not removed: %v", err)
	}
	checkRecords(t, st.Shard(0), 0, 120)
}

func TestRetentionByAge(t *testing.T) {
	dir := t.TempDir()
	clock := &fakeClock{now: atSeq(0)}
	var deleted []string // OnDelete calls, in order
	onDelete := func(shard int, first uint64) { deleted = append(deleted, fmt.Sprintf("%d/%d", shard, first)) }
	st := openT(t, dir, Options{Mode: Durable, Shards: 2, SegmentBytes: smallSegments, MaintainInterval: -1, RetentionAge: time.Second, Now: clock.Now, OnDelete: onDelete})
	rs := st.Schema().RecordSize
	for shard := 0; shard < 2; shard++ {
		if _, err := st.Shard(shard).Append(makeBatch(rs, shard, 0, 260)); err != nil {
			t.Fatal(err)
		}
	}
	disk := st.DiskBytes()
	// Records before 120 are older than a second: segments 0 and 50 go (100 has record 149).
	clock.now = atSeq(120).Add(time.Second)
	res, err := st.Maintain()
	if err != nil {
		t.Fatal(err)
	}
	if res.DeletedByAge != 4 || res.RecordsDeleted != 200 {
		t.Fatalf("maintain %+v, want 4 segments / 200 records deleted", res)
	}
	if want := []string{"0/0", "0/50", "1/0", "1/50"}; !slices.Equal(deleted, want) {
		t.Fatalf("OnDelete calls %v, want %v", deleted, want)
	}
	if s := st.Stats(); s.DeletedByAge != 4 || s.RecordsDeleted != 200 || s.BytesDeleted != 200*int64(rs) || s.Records != 2*160 {
		t.Fatalf("stats %+v", s)
	}
	if st.DiskBytes() >= disk {
		t.Fatalf("disk bytes %d not below %d", st.DiskBytes(), disk)
	}
	l := st.Shard(1)
	if l.FirstSeq() != 100 {
		t.Fatalf("first kept %d, want 100", l.FirstSeq())
	}
	if _, err := l.Read(99); !errors.Is(err, ErrDropped) {
		t.Fatalf("read deleted record: %v, want ErrDropped", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "shard-0001", "seg-00000000000000000050.log")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("deleted segment file still there: %v", err)
	}
	closeT(t, st)
	st = openT(t, dir, Options{Mode: Durable, MaintainInterval: -1})
	defer closeT(t, st)
	for shard := 0; shard < 2; shard++ {
		l := st.Shard(shard)
		if l.FirstSeq() != 100 {
			t.Fatalf("reopened: first kept %d", l.FirstSeq())
		}
		checkRecords(t, l, 100, 260)
	}
}

// Retention deletes segments still in the manifest's range (crash after the manifest write,
// before the files were removed): recovery removes the leftovers instead of restoring them.
func TestRetentionLeftoverFiles(t *testing.T) {
	dir := t.TempDir()
	fillDurable(t, dir, 200)
	keep, _ := os.ReadFile(segFile(dir, 0, extRaw))
	st := openT(t, dir, Options{Mode: Durable, MaintainInterval: -1, MaxDiskBytes: 1})
	if res, err := st.Maintain(); err != nil || res.DeletedByDisk != 4 || st.DiskBytes() != 0 {
		t.Fatalf("maintain %+v, %v; disk %d", res, err, st.DiskBytes())
	}
	closeT(t, st)
	os.WriteFile(segFile(dir, 0, extRaw), keep, 0o644)
	st = openT(t, dir, Options{Mode: Durable, MaintainInterval: -1})
	defer closeT(t, st)
	if _, err := os.Stat(segFile(dir, 0, extRaw)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("leftover not removed: %v", err)
	}
	l := st.Shard(0)
	if l.FirstSeq() != 200 || l.Tail() != 200 {
		t.Fatalf("first %d tail %d", l.FirstSeq(), l.Tail())
	}
	if _, err := l.Append(makeBatch(st.Schema().RecordSize, 0, 200, 10)); err != nil {
		t.Fatal(err)
	}
	checkRecords(t, l, 200, 210)
}

func TestRetentionByDiskSize(t *testing.T) {
	dir := t.TempDir()
	st := openT(t, dir, Options{Mode: Durable, Shards: 2, SegmentBytes: smallSegments, MaintainInterval: -1})
	rs := st.Schema().RecordSize
	for shard := 0; shard < 2; shard++ {
		if _, err := st.Shard(shard).Append(makeBatch(rs, shard, 0, 500)); err != nil {
			t.Fatal(err)
		}
	}
	closeT(t, st)
	budget := st.DiskBytes() / 2
	st = openT(t, dir, Options{Mode: Durable, MaintainInterval: -1, MaxDiskBytes: budget})
	defer closeT(t, st)
	res, err := st.Maintain()
	if err != nil {
		t.Fatal(err)
	}
	if st.DiskBytes() > budget || res.DeletedByDisk == 0 {
		t.Fatalf("disk %d over budget %d after %+v", st.DiskBytes(), budget, res)
	}
	var onDisk int64
	for shard := 0; shard < 2; shard++ {
		entries, _ := os.ReadDir(filepath.Join(dir, "shard-000"+itoa(uint64(shard))))
		for _, e := range entries {
			fi, _ := e.Info()
			onDisk += fi.Size()
		}
		l := st.Shard(shard)
		// Whole oldest segments went, both shards alike (their data has the same ages).
		if l.FirstSeq() < 200 || l.FirstSeq()%50 != 0 {
			t.Fatalf("shard %d: first kept %d", shard, l.FirstSeq())
		}
		checkRecords(t, l, l.FirstSeq(), 500)
	}
	if onDisk != st.DiskBytes() {
		t.Fatalf("files hold %d bytes, DiskBytes says %d", onDisk, st.DiskBytes())
	}
	if s := st.Stats(); s.DeletedByDisk != uint64(res.DeletedByDisk) || s.RecordsDeleted != res.RecordsDeleted {
		t.Fatalf("stats %+v, result %+v", s, res)
	}
}

func TestMemoryBoundInMemoryDrops(t *testing.T) {
	st := openT(t, "", Options{Mode: InMemory, Shards: 2, SegmentBytes: smallSegments, MaintainInterval: -1, MaxMemoryBytes: 3 * smallSegments})
	defer closeT(t, st)
	rs := st.Schema().RecordSize
	for seq := uint64(0); seq < 2000; seq += 100 {
		for shard := 0; shard < 2; shard++ {
			if _, err := st.Shard(shard).Append(makeBatch(rs, shard, seq, 100)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := st.Maintain(); err != nil {
			t.Fatal(err)
		}
		if sealed, _ := st.MemoryBytes(); sealed > 3*smallSegments {
			t.Fatalf("sealed memory %d over the bound %d", sealed, 3*smallSegments)
		}
	}
	s := st.Stats()
	if s.DeletedByMemory == 0 || s.RecordsDeleted != s.DeletedByMemory*50 || s.DiskBytes != 0 {
		t.Fatalf("stats %+v", s)
	}
	kept := uint64(0)
	for shard := 0; shard < 2; shard++ {
		l := st.Shard(shard)
		checkRecords(t, l, l.FirstSeq(), 2000)
		kept += 2000 - l.FirstSeq()
	}
	if kept+s.RecordsDeleted != 4000 {
		t.Fatalf("kept %d + deleted %d != appended 4000", kept, s.RecordsDeleted)
	}
}

func TestMemoryBoundDurableArchives(t *testing.T) {
	for _, mode := range []Mode{Durable, DurableRelaxed} {
		t.Run(mode.String(), func(t *testing.T) {
			dir := t.TempDir()
			st := openT(t, dir, Options{Mode: mode, SegmentBytes: smallSegments, MaintainInterval: -1, SyncInterval: time.Hour, MaxMemoryBytes: 2 * smallSegments})
			defer closeT(t, st)
			rs := st.Schema().RecordSize
			l := st.Shard(0)
			before := []scanned(nil)
			for seq := uint64(0); seq < 1000; seq += 100 {
				if _, err := l.Append(makeBatch(rs, 0, seq, 100)); err != nil {
					t.Fatal(err)
				}
				if _, err := st.Maintain(); err != nil {
					t.Fatal(err)
				}
				if sealed, _ := st.MemoryBytes(); sealed > 2*smallSegments {
					t.Fatalf("sealed memory %d over the bound", sealed)
				}
			}
			s := st.Stats()
			if s.DeletedByMemory != 0 || s.SegmentsArchived < 17 {
				t.Fatalf("stats %+v: want archival, no drops", s)
			}
			// Nothing lost: everything reads back, from archives and memory alike.
			checkRecords(t, l, 0, 1000)
			for seq := uint64(0); seq < 1000; seq++ {
				rec := make([]byte, rs)
				makeRecord(rec, 0, seq)
				before = append(before, scanned{seq, rec})
			}
			sameScan(t, "bounded", scanAll(t, l, 0, 1<<62), before)
		})
	}
}

func TestMemoryBoundWithFullDiskDropsOldest(t *testing.T) {
	dir := t.TempDir()
	st := openT(t, dir, Options{Mode: Durable, SegmentBytes: smallSegments, MaintainInterval: -1,
		MaxMemoryBytes: smallSegments, MaxDiskBytes: 6 * smallSegments})
	defer closeT(t, st)
	rs := st.Schema().RecordSize
	l := st.Shard(0)
	for seq := uint64(0); seq < 3000; seq += 100 {
		if _, err := l.Append(makeBatch(rs, 0, seq, 100)); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Maintain(); err != nil {
			t.Fatal(err)
		}
		sealed, _ := st.MemoryBytes()
		if sealed > smallSegments || st.DiskBytes() > 6*smallSegments {
			t.Fatalf("memory %d / disk %d over the bounds", sealed, st.DiskBytes())
		}
	}
	s := st.Stats()
	if s.DeletedByDisk == 0 || s.SegmentsArchived == 0 {
		t.Fatalf("stats %+v: want archival and deletions by disk size", s)
	}
	checkRecords(t, l, l.FirstSeq(), 3000)
	if l.FirstSeq() == 0 || uint64(s.RecordsDeleted) != l.FirstSeq() {
		t.Fatalf("first kept %d, %d records deleted", l.FirstSeq(), s.RecordsDeleted)
	}
}

func TestBackgroundMaintainerKeepsMemoryBound(t *testing.T) {
	// Sealing a segment over the bound wakes the background maintainer.
	st := openT(t, "", Options{Mode: InMemory, SegmentBytes: smallSegments, MaintainInterval: time.Hour, MaxMemoryBytes: 2 * smallSegments})
	defer closeT(t, st)
	rs := st.Schema().RecordSize
	if _, err := st.Shard(0).Append(makeBatch(rs, 0, 0, 1000)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if sealed, _ := st.MemoryBytes(); sealed <= 2*smallSegments {
			break
		}
		if time.Now().After(deadline) {
			sealed, _ := st.MemoryBytes()
			t.Fatalf("background maintainer never ran: sealed memory %d", sealed)
		}
		time.Sleep(time.Millisecond)
	}
	if st.Stats().DeletedByMemory == 0 {
		t.Fatal("nothing counted as dropped")
	}
}
