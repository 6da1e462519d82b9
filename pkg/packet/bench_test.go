package packet_test

import (
	"io"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/confluo-go/confluo/pkg/packet"
	"github.com/confluo-go/confluo/pkg/pcapio"
)

// reportCPU locks the benchmark to its OS thread and returns a function reporting the thread's
// CPU time per operation.
func reportCPU(b *testing.B) func(n int) {
	runtime.LockOSThread()
	start := threadCPUNanos()
	return func(n int) {
		if end := threadCPUNanos(); end > 0 && n > 0 {
			b.ReportMetric(float64(end-start)/float64(n), "cpu-ns/op")
		}
		runtime.UnlockOSThread()
	}
}

func benchDecode(b *testing.B, frame []byte) {
	d := packet.NewDecoder(packet.DefaultOptions())
	rec := make([]byte, packet.RecordSize)
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	done := reportCPU(b)
	n := 0
	for b.Loop() {
		d.Decode(rec, frame, len(frame), 1)
		n++
	}
	done(n)
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
	if d.Stats().ByReason[packet.ReasonNone] != uint64(n) {
		b.Fatalf("decode problems: %+v", d.Stats())
	}
}

// BenchmarkDecodeIPv4TCP: target <= 40 ns/op, 0 allocs.
func BenchmarkDecodeIPv4TCP(b *testing.B) {
	benchDecode(b, tcpFrame([4]byte{10, 0, 0, 1}, [4]byte{10, 0, 0, 2}, 40000, 5201, make([]byte, 1400)))
}

// BenchmarkDecodeVXLAN: target <= 80 ns/op, 0 allocs.
func BenchmarkDecodeVXLAN(b *testing.B) {
	benchDecode(b, vxlanFrame(5000))
}

func BenchmarkDecodeIPv6TCP(b *testing.B) {
	benchDecode(b, ipv6TCPFrame(make([]byte, 100)))
}

// BenchmarkDecodeDevSample decodes the frames of testdata/dev_sample.pcap round robin (real
// kernel traffic: TCP with timestamps, UDP, ICMP).
func BenchmarkDecodeDevSample(b *testing.B) {
	r, err := pcapio.Open(filepath.Join("testdata", "dev_sample.pcap"))
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	var frames [][]byte
	for {
		f, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			b.Fatal(err)
		}
		frames = append(frames, append([]byte(nil), f.Data...))
	}
	d := packet.NewDecoder(packet.DefaultOptions())
	rec := make([]byte, packet.RecordSize)
	b.ReportAllocs()
	done := reportCPU(b)
	n := 0
	for b.Loop() {
		f := frames[n%len(frames)]
		d.Decode(rec, f, len(f), 1)
		n++
	}
	done(n)
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
}
