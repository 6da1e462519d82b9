package multilog

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestResidentMemoryUnderBound runs a MultiLog with a memory bound, an index, a filter and an
// aggregate in a child process (testdata/rsschild, built without the race detector) that
// ingests 8 times the bound, and samples the child's resident memory from /proc; once
// persisted (DurableRelaxed: the bound archives, then deletes) and once in memory (the bound
// drops the oldest data). It checks the promise of the memory bound at the level the host sees:
//
//   - RSS stays under baseline + 2·(bound + fixed overhead) + 16 MiB, where the fixed
//     overhead is what doc.go states (active segments, cached segments, the current epoch
//     of each derived log) and the factor 2 is the garbage collector's headroom;
//   - the bound was enforced (segments deleted by it are counted).
func TestResidentMemoryUnderBound(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Fatalf("this test reads /proc/PID/status: linux only, not %s", runtime.GOOS)
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go tool (on PATH, as make test sets it) is needed to build the child without -race: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "rsschild")
	build := exec.Command(goTool, "build", "-o", bin, "./testdata/rsschild")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build testdata/rsschild: %v\n%s", err, out)
	}
	t.Run("durable_relaxed", func(t *testing.T) { residentMemoryUnderBound(t, bin, t.TempDir()) })
	t.Run("in_memory", func(t *testing.T) { residentMemoryUnderBound(t, bin, "-") })
}

// residentMemoryUnderBound runs the child on dir ("-": in memory) and checks its RSS.
func residentMemoryUnderBound(t *testing.T, bin, dir string) {

	const (
		bound    = 64 << 20
		total    = 8 * bound
		shards   = 2
		segBytes = 1 << 20
		cache    = 2
		// Current epochs per shard (doc.go): an index epoch closes at maxEpochBytes plus
		// one segment's entries (26,214 records × 4 bytes) and the keys new in it (50,000
		// dport values × up to 250 bytes); filter and aggregate epochs of 65,536 records
		// hold at most 4 bytes per match and a few pages of partials.
		indexEpoch = 16<<20 + 26214*4 + 50000*250
		otherEpoch = 65536*4 + 64<<10
		fixed      = shards*segBytes + cache*segBytes + shards*(indexEpoch+2*otherEpoch)
		limit      = 2*(bound+fixed) + 16<<20
	)
	cmd := exec.Command(bin, dir, strconv.Itoa(total), strconv.Itoa(bound))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() || lines.Text() != "ready" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child did not get ready: %q %s", lines.Text(), stderr.String())
	}
	baseline, err := residentBytes(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var samples []int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if rss, err := residentBytes(cmd.Process.Pid); err == nil {
					mu.Lock()
					samples = append(samples, rss)
					mu.Unlock()
				}
			}
		}
	}()
	var done string
	for lines.Scan() {
		if strings.HasPrefix(lines.Text(), "done ") {
			done = lines.Text()
		}
	}
	close(stop)
	<-sampled
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v\n%s", err, stderr.String())
	}
	if done == "" {
		t.Fatalf("child ended without reporting: %s", stderr.String())
	}
	if len(samples) < 20 {
		t.Fatalf("only %d RSS samples: the run was too short to say anything", len(samples))
	}
	peak := func(s []int64) int64 {
		var m int64
		for _, v := range s {
			m = max(m, v)
		}
		return m
	}
	first, second := peak(samples[:len(samples)/2]), peak(samples[len(samples)/2:])
	t.Logf("%d MiB ingested, bound %d MiB, stated fixed overhead %s: RSS baseline %s, peak %s (first half %s, second half %s; limit %s); %s",
		total>>20, bound>>20, mib(fixed), mib(baseline), mib(max(first, second)), mib(first), mib(second), mib(baseline+limit), done)
	if p := max(first, second); p > baseline+limit {
		t.Errorf("peak RSS %s > baseline %s + 2·(bound %d MiB + fixed %s) + 16 MiB", mib(p), mib(baseline), bound>>20, mib(fixed))
	}
	if !strings.Contains(done, "DeletedByMemory:") || strings.Contains(done, "DeletedByMemory:0 ") {
		t.Errorf("the memory bound never deleted anything, so it was not tested: %s", done)
	}
	const batchBytes = 1024 * 40 // the child appends whole batches of 1,024 40-byte records
	if want := fmt.Sprintf("records=%d ", (total+batchBytes-1)/batchBytes*1024); !strings.Contains(done, want) {
		t.Errorf("child report %q, want %s", done, want)
	}
}

// residentBytes reads VmRSS of process pid.
func residentBytes(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/%d/status: VmRSS %q: %w", pid, rest, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no VmRSS", pid)
}
