package spray_test

import (
	"context"
	"testing"
	"time"

	"github.com/confluo-go/confluo/pkg/spray"
	"github.com/confluo-go/confluo/pkg/spray/internal/testframes"
)

// loopSource hands the same frames out in bursts of 32, n bursts per Run.
type loopSource struct {
	frames []spray.Frame
	n      int
}

func (l *loopSource) Queues() int { return 1 }
func (l *loopSource) Run(ctx context.Context, q int, burst func([]spray.Frame)) error {
	for i := 0; i < l.n; i++ {
		off := (i * 32) % (len(l.frames) - 32)
		burst(l.frames[off : off+32])
	}
	return nil
}
func (l *loopSource) Stats() spray.SourceStats { return spray.SourceStats{} }
func (l *loopSource) Close() error             { return nil }

// BenchmarkDecodeSpray measures the producer side on one core: packet decode, flow hash, stage
// per ring and burst enqueue into 4 rings whose records are released by the same goroutine
// after each Run. One b.Loop iteration is 64 bursts of 32 frames (2048 records).
func BenchmarkDecodeSpray(b *testing.B) {
	pkts := testframes.Mixed(testframes.Flows(256), 4096, 128, time.Unix(1700000000, 0))
	frames := make([]spray.Frame, len(pkts))
	for i, p := range pkts {
		frames[i] = spray.Frame{Data: p.Data, WireLen: p.WireLen, Timestamp: p.Time.UnixNano()}
	}
	src := &loopSource{frames: frames, n: 64}
	s, err := spray.New(src, spray.Options{Rings: 4, RingCapacity: 4096})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Run(context.Background()); err != nil {
			b.Fatal(err)
		}
		for r := range s.Rings() {
			rg := s.Ring(r)
			for p := rg.Peek(4096); len(p) > 0; p = rg.Peek(4096) {
				rg.Release(len(p) / rg.RecordSize())
			}
		}
	}
	st := s.Stats()
	if st.DroppedRingFull != 0 {
		b.Fatalf("dropped %d", st.DroppedRingFull)
	}
	b.ReportMetric(float64(st.Enqueued)/b.Elapsed().Seconds(), "records/s")
}
