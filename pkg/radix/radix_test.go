package radix

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"testing"
	"unsafe"
)

type entry struct {
	key []byte
	ref uint32
}

func TestRangeMatchesModel(t *testing.T) {
	for _, keyLen := range []int{1, 2, 4} {
		rng := rand.New(rand.NewPCG(uint64(keyLen), 7))
		tr := New(keyLen)
		var model []entry
		space := 1 << min(8*keyLen, 12)
		for ref := range uint32(3000) {
			k := make([]byte, keyLen)
			v := rng.IntN(space)
			for i := range k {
				k[keyLen-1-i] = byte(v >> (8 * i))
			}
			if err := tr.Insert(k, ref); err != nil {
				t.Fatal(err)
			}
			model = append(model, entry{k, ref})
		}
		for range 300 {
			lo, hi := make([]byte, keyLen), make([]byte, keyLen)
			for i := range lo {
				lo[i], hi[i] = byte(rng.IntN(256)), byte(rng.IntN(256))
			}
			if bytes.Compare(lo, hi) > 0 {
				lo, hi = hi, lo
			}
			bound := uint32(rng.IntN(3200))
			var got, want []uint32
			tr.Range(lo, hi, bound, func(r uint32) bool { got = append(got, r); return true })
			for _, e := range model {
				if e.ref < bound && bytes.Compare(e.key, lo) >= 0 && bytes.Compare(e.key, hi) <= 0 {
					want = append(want, e.ref)
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Fatalf("keyLen %d range [%x,%x] bound %d: got %d refs, want %d", keyLen, lo, hi, bound, len(got), len(want))
			}
			if n := tr.CountRange(lo, hi, 1<<62); n < uint64(len(want)) {
				t.Fatalf("CountRange %d < %d", n, len(want))
			}
		}
	}
}

func TestGetOrderAndStop(t *testing.T) {
	tr := New(2)
	for i := range uint32(10000) {
		_ = tr.Insert([]byte{0, byte(i % 3)}, i)
	}
	var got []uint32
	tr.Get([]byte{0, 1}, 5000, func(r uint32) bool { got = append(got, r); return true })
	if !slices.IsSorted(got) || len(got) != 1667 || got[0] != 1 {
		t.Fatalf("got %d refs starting %v", len(got), got[:min(3, len(got))])
	}
	n := 0
	tr.Range([]byte{0, 0}, []byte{0, 2}, 1<<31, func(uint32) bool { n++; return n < 10 })
	if n != 10 {
		t.Fatalf("stop: visited %d", n)
	}
	if err := tr.Insert([]byte{1}, 1); err == nil {
		t.Fatal("short key accepted")
	}
	if tr.Keys() != 3 || tr.Entries() != 10000 {
		t.Fatalf("keys %d entries %d", tr.Keys(), tr.Entries())
	}
}

// TestConcurrentReaders runs one writer with readers that check every reference they see below
// the published bound is under the right key (run with -race).
func TestConcurrentReaders(t *testing.T) {
	tr := New(4)
	var published sync.Map
	var tail uint32
	var mu sync.RWMutex
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				mu.RLock()
				bound := tail
				mu.RUnlock()
				tr.Range(make([]byte, 4), []byte{255, 255, 255, 255}, bound, func(r uint32) bool {
					if r >= bound {
						t.Errorf("ref %d ≥ bound %d", r, bound)
					}
					if _, ok := published.Load(r); !ok {
						t.Errorf("ref %d not published", r)
					}
					return true
				})
			}
		}()
	}
	k := make([]byte, 4)
	for i := range uint32(20000) {
		binary.BigEndian.PutUint32(k, i*2654435761%100003)
		published.Store(i, true)
		_ = tr.Insert(k, i)
		if i%100 == 99 {
			mu.Lock()
			tail = i + 1
			mu.Unlock()
		}
	}
	close(done)
	wg.Wait()
}

func BenchmarkInsert(b *testing.B) {
	tr := New(4)
	k := make([]byte, 4)
	var i uint32
	b.ReportAllocs()
	for b.Loop() {
		binary.BigEndian.PutUint32(k, i%50000)
		_ = tr.Insert(k, i)
		i++
	}
	b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "records/s")
}

// TestBytesTracksHeap checks the tree's memory estimate against the heap it really holds:
// within the allocator's rounding, for trees of unique keys and of repeated keys.
func TestBytesTracksHeap(t *testing.T) {
	for _, tc := range []struct {
		name  string
		space int // distinct keys
	}{{"unique keys", 1 << 30}, {"repeated keys", 1000}} {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			tr := New(4)
			rng := rand.New(rand.NewPCG(1, 2))
			var key [4]byte
			last := int64(0)
			for ref := range uint32(200_000) {
				binary.BigEndian.PutUint32(key[:], uint32(rng.IntN(tc.space)))
				if err := tr.Insert(key[:], ref); err != nil {
					t.Fatal(err)
				}
				if b := tr.Bytes(); b < last {
					t.Fatalf("Bytes went down from %d to %d", last, b)
				} else {
					last = b
				}
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			heap := int64(after.HeapAlloc) - int64(before.HeapAlloc)
			est := tr.Bytes()
			runtime.KeepAlive(tr)
			if est < heap/2 || est > heap*3/2 {
				t.Fatalf("estimate %d bytes, heap grew by %d", est, heap)
			}
			t.Logf("%d keys: estimate %d bytes, heap %d", tr.Keys(), est, heap)
		})
	}
}

// TestBlocksHoldTheirRefs: every block size the writer grows to keeps its references in the
// block's own allocation (right after the block), with the size asked for.
func TestBlocksHoldTheirRefs(t *testing.T) {
	for size := firstBlock * 2; size <= maxBlock; size *= 2 {
		b := newBlock(size)
		if len(b.refs) != size {
			t.Fatalf("newBlock(%d) holds %d refs", size, len(b.refs))
		}
		start, end := uintptr(unsafe.Pointer(b)), uintptr(unsafe.Pointer(b))+unsafe.Sizeof(block{})+uintptr(size)*4
		if ref := uintptr(unsafe.Pointer(&b.refs[0])); ref < start+unsafe.Sizeof(block{}) || ref+uintptr(size)*4 > end {
			t.Fatalf("newBlock(%d): refs at %#x, not in the block's allocation [%#x, %#x)", size, ref, start, end)
		}
	}
	p := New(1).Leaf([]byte{7})
	if &p.head.refs[0] != &p.headRefs[0] {
		t.Fatal("the head block's refs are not in its Postings")
	}
}

// BenchmarkGetCold looks up one key of 50,000 in each of two trees (a MultiLog's two shards)
// of 100 references per key, inserted interleaved as a writer does, and reads its posting
// list: the dependent cache misses of an indexed equality lookup on data not in cache.
func BenchmarkGetCold(b *testing.B) {
	const keys, perKey = 50_000, 100
	trees := []*Tree{New(2), New(2)}
	rng := rand.New(rand.NewPCG(1, 1))
	var key [2]byte
	for ref := range uint32(keys * perKey) {
		binary.BigEndian.PutUint16(key[:], uint16(rng.IntN(keys)))
		for _, t := range trees {
			if err := t.Insert(key[:], ref); err != nil {
				b.Fatal(err)
			}
		}
	}
	refs, i := 0, 0
	for b.Loop() {
		binary.BigEndian.PutUint16(key[:], uint16(i%keys))
		for _, t := range trees {
			t.Get(key[:], math.MaxUint32, func(uint32) bool { refs++; return true })
		}
		i += 7919
	}
	b.ReportMetric(float64(refs)/float64(b.N), "refs/op")
}
