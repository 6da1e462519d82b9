package packet_test

import "golang.org/x/sys/unix"

// threadCPUNanos is the CPU time of the calling OS thread. Benchmarks report it per operation
// ("cpu-ns/op") next to wall time, because the machine is shared and wall time counts the time
// other processes ran.
func threadCPUNanos() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return ts.Nano()
}
