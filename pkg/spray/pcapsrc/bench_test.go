package pcapsrc_test

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/confluo-go/confluo/pkg/spray"
	"github.com/confluo-go/confluo/pkg/spray/internal/testframes"
	"github.com/confluo-go/confluo/pkg/spray/pcapsrc"
)

// BenchmarkReplayDecodeRings measures the embedded default path on one core: preloaded pcap
// replay -> packet decode -> flow hash -> 2 rings, with consumer goroutines releasing records
// in place (one goroutine stands in for the writers, so producer and consumer each have a core
// of this 2-core machine). One b.Loop iteration replays the 65536-frame capture once.
func BenchmarkReplayDecodeRings(b *testing.B) {
	const frames = 1 << 16
	pkts := testframes.Mixed(testframes.Flows(1024), frames, 128, start)
	src, err := pcapsrc.Open(writeFile(b, false, pkts), pcapsrc.Options{Preload: true})
	if err != nil {
		b.Fatal(err)
	}
	for _, policy := range []spray.FullPolicy{spray.Drop, spray.Wait} {
		b.Run(policy.String(), func(b *testing.B) {
			s, err := spray.New(src, spray.Options{Rings: 2, RingCapacity: 8192, Full: policy})
			if err != nil {
				b.Fatal(err)
			}
			var stop atomic.Bool
			var wg sync.WaitGroup
			wg.Go(func() {
				for !stop.Load() {
					idle := true
					for r := range s.Rings() {
						rg := s.Ring(r)
						p := rg.Peek(256)
						rg.Release(len(p) / rg.RecordSize())
						idle = idle && len(p) == 0
					}
					if idle {
						runtime.Gosched()
					}
				}
			})
			b.ReportAllocs()
			for b.Loop() {
				if err := s.Run(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
			stop.Store(true)
			wg.Wait()
			st := s.Stats()
			b.ReportMetric(float64(st.Received)/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(st.DroppedRingFull)/float64(max(st.Received, 1)), "dropped/record")
		})
	}
}
