package ring

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// BenchmarkSPSCBurst32 moves records through one ring, bursts of 32, from a producer goroutine
// to the benchmark goroutine. Each b.Loop iteration is one burst of 32 records.
func BenchmarkSPSCBurst32(b *testing.B) {
	for _, size := range []int{8, 64, 276} { // 276: packet.RecordSize
		b.Run(fmt.Sprintf("rec%dB", size), func(b *testing.B) {
			const burst = 32
			r, _ := New(size, 4096)
			src := make([]byte, burst*size)
			dst := make([]byte, burst*size)
			var stop atomic.Bool
			var wg sync.WaitGroup
			wg.Go(func() {
				for !stop.Load() {
					if r.EnqueueBurst(src) == 0 {
						runtime.Gosched()
					}
				}
			})
			b.ReportAllocs()
			b.SetBytes(int64(burst * size))
			var n int
			for b.Loop() {
				got := 0
				for got < burst {
					k := r.DequeueBurst(dst[got*size:])
					if k == 0 {
						runtime.Gosched()
					}
					got += k
				}
				n += got
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
			stop.Store(true)
			wg.Wait()
		})
	}
}

// BenchmarkSPSCZeroCopy32 is the same with Reserve/Commit and Peek/Release (no copy on the
// consumer side, the producer writes one word per record).
func BenchmarkSPSCZeroCopy32(b *testing.B) {
	const size, burst = 64, 32
	r, _ := New(size, 4096)
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Go(func() {
		for !stop.Load() {
			s := r.Reserve(burst)
			if len(s) == 0 {
				runtime.Gosched()
				continue
			}
			for i := 0; i < len(s); i += size {
				s[i] = 1
			}
			r.Commit(len(s) / size)
		}
	})
	b.ReportAllocs()
	var n int
	for b.Loop() {
		got := 0
		for got < burst {
			p := r.Peek(burst - got)
			k := len(p) / size
			if k == 0 {
				runtime.Gosched()
			}
			r.Release(k)
			got += k
		}
		n += got
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
	stop.Store(true)
	wg.Wait()
}
