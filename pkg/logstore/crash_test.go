package logstore

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/confluo-go/confluo/pkg/schema"
)

const (
	childEnv     = "CONFLUO_LOGSTORE_CRASH_CHILD"
	childModeEnv = "CONFLUO_LOGSTORE_CRASH_MODE"
)

// crashOptions are the options of the kill -9 test: tiny segments so kills land in every
// phase (inside a frame, between frames, while a new segment file is created or synced).
func crashOptions(mode Mode) Options {
	return Options{Mode: mode, Shards: 2, SegmentBytes: 64 * 26, MaintainInterval: -1, SyncInterval: time.Millisecond}
}

// crashChild is the child process of TestKill9: it opens the store in dir (recovering it),
// appends batches of deterministic records in Durable mode to both shards and prints
// "ack <shard> <tail>" after every acknowledged batch, until it is killed (or after a while,
// if the parent died).
func crashChild(dir string) int {
	s, err := schema.Parse(testSchemaText)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	mode, err := ParseMode(os.Getenv(childModeEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	st, err := Open(dir, s, crashOptions(mode))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		return 2
	}
	rs := s.RecordSize
	out := bufio.NewWriter(os.Stdout)
	fmt.Fprintf(out, "ready\n")
	out.Flush()
	rng := rand.New(rand.NewPCG(uint64(os.Getpid()), uint64(time.Now().UnixNano())))
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		shard := rng.IntN(2)
		l := st.Shard(shard)
		tail := l.Tail()
		n := 1 + rng.IntN(40)
		if _, err := l.Append(makeBatch(rs, shard, tail, n)); err != nil {
			fmt.Fprintln(os.Stderr, "child append:", err)
			return 2
		}
		// Only now is the batch acknowledged. DurableRelaxed acknowledges it in memory; what
		// the flusher has synced so far (DurableTail) is what a crash must keep.
		fmt.Fprintf(out, "ack %d %d\ndurable %d %d\n", shard, tail+uint64(n), shard, l.DurableTail())
		out.Flush()
	}
	return 0
}

// TestKill9 runs a child that appends in Durable mode, SIGKILLs it at random moments, reopens
// the directory and checks that every acknowledged record is present and intact, that nothing
// beyond whole records is visible, and that recovery reports no damage.
func TestKill9(t *testing.T) { kill9(t, Durable, 60) }

// TestKill9Relaxed does the same in DurableRelaxed mode, where acknowledged records of the
// last SyncInterval may be lost: it checks that every record the background flusher had
// reported synced (DurableTail) survives, that what survives is a whole, intact prefix and
// that recovery reports no damage.
func TestKill9Relaxed(t *testing.T) { kill9(t, DurableRelaxed, 15) }

func kill9(t *testing.T, mode Mode, kills int) {
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	acked := [2]uint64{}
	durable := [2]uint64{} // DurableTail the child reported, per shard
	torn, lost := 0, uint64(0)
	start := time.Now()
	for i := 0; i < kills; i++ {
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"="+dir, childModeEnv+"="+mode.String())
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 1024)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		// Wait until the child has recovered and is appending, then let it run a random while.
		if l, ok := <-lines; !ok || l != "ready" {
			cmd.Wait()
			t.Fatalf("kill %d: child did not start: %q; stderr: %s", i, l, stderr.String())
		}
		killAt := time.After(time.Duration(rng.IntN(15000)) * time.Microsecond)
	run:
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					break run
				}
				recordAck(t, l, &acked, &durable)
			case <-killAt:
				break run
			}
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatalf("kill %d: %v", i, err)
		}
		for l := range lines {
			recordAck(t, l, &acked, &durable)
		}
		err = cmd.Wait()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("kill %d: child ended with %v, not SIGKILL; stderr: %s", i, err, stderr.String())
		}

		st, err := Open(dir, nil, Options{Mode: mode, MaintainInterval: -1})
		if err != nil {
			t.Fatalf("kill %d: reopen: %v", i, err)
		}
		rec := st.Recovery()
		torn += rec.TornBatches
		for shard := 0; shard < 2; shard++ {
			l := st.Shard(shard)
			if mode == Durable && l.Tail() < acked[shard] {
				st.Close()
				t.Fatalf("kill %d: shard %d: tail %d below acknowledged %d", i, shard, l.Tail(), acked[shard])
			}
			if l.Tail() < durable[shard] {
				st.Close()
				t.Fatalf("kill %d: shard %d: tail %d below the %d records reported synced", i, shard, l.Tail(), durable[shard])
			}
			// Every record up to the tail is whole and is exactly what was appended: a torn
			// batch is never visible, acknowledged or not.
			checkRecords(t, l, 0, l.Tail())
			// Unacknowledged but complete batches may survive; they count from now on.
			lost += acked[shard] - min(acked[shard], l.Tail())
			acked[shard], durable[shard] = l.Tail(), l.Tail()
		}
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d kills in %v; %d records acknowledged, %d of them lost (not yet synced); %d torn final batches discarded",
		kills, time.Since(start).Round(time.Millisecond), acked[0]+acked[1], lost, torn)
	if acked[0]+acked[1] == 0 {
		t.Fatal("the child never acknowledged a record")
	}
}

func recordAck(t *testing.T, line string, acked, durable *[2]uint64) {
	t.Helper()
	f := strings.Fields(line)
	if len(f) != 3 || f[0] != "ack" && f[0] != "durable" {
		t.Fatalf("child printed %q", line)
	}
	shard, err1 := strconv.Atoi(f[1])
	tail, err2 := strconv.ParseUint(f[2], 10, 64)
	if err1 != nil || err2 != nil || shard < 0 || shard > 1 {
		t.Fatalf("child printed %q", line)
	}
	if f[0] == "durable" {
		durable[shard] = max(durable[shard], tail)
		return
	}
	acked[shard] = max(acked[shard], tail)
}
