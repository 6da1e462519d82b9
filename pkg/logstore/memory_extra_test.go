package logstore

import (
	"sync"
	"testing"
)

// extraOwner stands for an owner whose memory derives from the records (the MultiLog's derived
// logs): perSegment bytes for each segment not deleted, plus fixed bytes no deletion frees.
type extraOwner struct {
	mu         sync.Mutex
	perSegment int64
	fixed      int64
	kept       map[[2]uint64]bool // (shard, first) of segments it derived from
}

func (o *extraOwner) bytes() int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.fixed + int64(len(o.kept))*o.perSegment
}

func (o *extraOwner) onDelete(shard int, first uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.kept, [2]uint64{uint64(shard), first})
}

// TestExtraMemoryUnderBound: the owner's memory counts against MaxMemoryBytes. Maintain first
// releases sealed segments (archives them), then deletes the oldest segments, counted in
// DeletedByMemory, until the sum is under the bound; when the owner's fixed memory alone is
// over, it deletes every sealed segment and stops without error.
func TestExtraMemoryUnderBound(t *testing.T) {
	for _, tc := range []struct {
		name        string
		fixed       int64
		wantUnder   bool
		wantDeleted bool
	}{
		{"reclaimable", 0, true, true},
		{"fixed over the bound", 1 << 30, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			owner := &extraOwner{perSegment: 4 * smallSegments, fixed: tc.fixed, kept: map[[2]uint64]bool{}}
			const bound = 20 * smallSegments
			st := openT(t, t.TempDir(), Options{Mode: Durable, Shards: 2, SegmentBytes: smallSegments, MaxMemoryBytes: bound,
				MaintainInterval: -1, OnDelete: owner.onDelete, ExtraMemoryBytes: owner.bytes})
			defer closeT(t, st)
			rs := st.Schema().RecordSize
			for shard := range 2 {
				for seq := uint64(0); seq < 1000; seq += 50 {
					if _, err := st.Shard(shard).Append(makeBatch(rs, shard, seq, 50)); err != nil {
						t.Fatal(err)
					}
					owner.mu.Lock()
					owner.kept[[2]uint64{uint64(shard), seq}] = true
					owner.mu.Unlock()
				}
			}
			// 40 full segments: 40 segments in memory and 160 of owner memory, against a
			// bound of 20.
			res, err := st.Maintain()
			if err != nil {
				t.Fatal(err)
			}
			sealed, _ := st.MemoryBytes()
			s := st.Stats()
			if tc.wantDeleted && (res.DeletedByMemory == 0 || s.DeletedByMemory != uint64(res.DeletedByMemory)) {
				t.Fatalf("maintain %+v, stats %+v: want deletions by memory, counted", res, s)
			}
			if res.Released == 0 {
				t.Fatalf("maintain %+v: sealed segments should be released before data is deleted", res)
			}
			if under := sealed+owner.bytes() <= bound; under != tc.wantUnder {
				t.Fatalf("sealed %d + owner %d against bound %d: under %v, want %v (maintain %+v)", sealed, owner.bytes(), bound, under, tc.wantUnder, res)
			}
			// No more deleted than needed: 5 segments of 4 units fit the bound of 20.
			if owner.mu.Lock(); tc.wantUnder && len(owner.kept) != 5 {
				t.Fatalf("%d segments kept, want 5", len(owner.kept))
			}
			owner.mu.Unlock()
			for shard := range 2 {
				l := st.Shard(shard)
				first := l.FirstSeq()
				if tc.wantUnder {
					// Oldest first across shards: both lost about the same amount.
					if first < 800 || first >= 1000 {
						t.Fatalf("shard %d: first kept %d", shard, first)
					}
				} else if first != 1000 {
					t.Fatalf("shard %d: first kept %d, want every sealed segment deleted", shard, first)
				}
				checkRecords(t, l, first, 1000)
			}
			// Appends go on.
			if _, err := st.Shard(0).Append(makeBatch(rs, 0, 1000, 10)); err != nil {
				t.Fatal(err)
			}
		})
	}
}
