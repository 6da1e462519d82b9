//go:build !linux

package packet_test

// threadCPUNanos is not available here; benchmarks then report no cpu-ns/op.
func threadCPUNanos() int64 { return 0 }
