package logstore

import (
	"runtime"
	"testing"
	"time"
)

// TestHeapStaysUnderMemoryBound appends far more than MaxMemoryBytes with the background
// maintainer on, and checks the live heap (after a GC) against the bound plus the stated fixed
// overhead: one active segment per shard and CacheSegments cached segments, plus slack for the
// test's own data and the runtime.
func TestHeapStaysUnderMemoryBound(t *testing.T) {
	for _, tc := range []struct {
		mode  Mode
		total int
	}{{InMemory, 256 << 20}, {DurableRelaxed, 48 << 20}} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			const (
				segBytes = 1 << 20
				bound    = 8 << 20
				shards   = 2
				cache    = 2
				slack    = 8 << 20
			)
			dir := ""
			if tc.mode != InMemory {
				dir = t.TempDir()
			}
			st := openT(t, dir, Options{Mode: tc.mode, Shards: shards, SegmentBytes: segBytes, MaxMemoryBytes: bound,
				CacheSegments: cache, MaintainInterval: 10 * time.Millisecond, SyncInterval: 5 * time.Millisecond})
			defer closeT(t, st)
			rs := st.Schema().RecordSize
			batch := makeBatch(rs, 0, 0, 4096)
			var base runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&base)
			appended := 0
			var maxLive int64
			for appended < tc.total {
				for shard := 0; shard < shards; shard++ {
					if _, err := st.Shard(shard).Append(batch); err != nil {
						t.Fatal(err)
					}
					appended += len(batch)
				}
				if appended%(16<<20) < 2*len(batch) {
					if _, err := st.Maintain(); err != nil {
						t.Fatal(err)
					}
					var m runtime.MemStats
					runtime.GC()
					runtime.ReadMemStats(&m)
					live := int64(m.HeapAlloc) - int64(base.HeapAlloc)
					maxLive = max(maxLive, live)
					limit := int64(bound + shards*segBytes + cache*segBytes + slack)
					if live > limit {
						t.Fatalf("after %d MiB appended: live heap grew by %d MiB, bound %d MiB + overhead %d MiB",
							appended>>20, live>>20, bound>>20, (limit-bound)>>20)
					}
				}
			}
			s := st.Stats()
			if s.DeletedByMemory+s.SegmentsReleased == 0 {
				t.Fatalf("stats %+v: nothing archived or dropped", s)
			}
			t.Logf("%d MiB appended; live heap grew at most %.1f MiB (bound %d MiB); sealed in memory %d MiB; archived %d, released %d, dropped %d segments",
				appended>>20, float64(maxLive)/(1<<20), bound>>20, s.SealedBytes>>20, s.SegmentsArchived, s.SegmentsReleased, s.DeletedByMemory)
		})
	}
}
