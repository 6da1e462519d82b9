package multilog

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/confluo-go/confluo/pkg/logstore"
	"github.com/confluo-go/confluo/pkg/schema"
)

// smallDisk mounts a tmpfs of size bytes for the test: a real file system that runs out of
// space (ENOSPC). It needs root, as make test runs; without it the test fails, saying so.
func smallDisk(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Fatalf("mount a %s tmpfs on %s (needs root, as make test runs): %v", size, dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// TestDiskFull fills a real file system under a persisted MultiLog: the append (Durable) or
// sync (DurableRelaxed) that finds no space fails with an error wrapping ENOSPC, nothing more
// is acknowledged as durable, nothing crashes, every acknowledged record stays readable, and
// once space is freed the directory reopens with every record that was acknowledged as on
// disk (Durable: every acknowledged append) and takes appends again.
func TestDiskFull(t *testing.T) {
	for _, mode := range []logstore.Mode{logstore.Durable, logstore.DurableRelaxed} {
		t.Run(mode.String(), func(t *testing.T) {
			disk := smallDisk(t, "1m")
			// Something else on the disk takes most of it; freeing it later is the operator's fix.
			filler := filepath.Join(disk, "filler")
			if err := os.WriteFile(filler, make([]byte, 512<<10), 0o644); err != nil {
				t.Fatal(err)
			}
			s, _ := schema.Parse(persistSchema)
			dir := filepath.Join(disk, "ml")
			p := Persistence{Dir: dir, Mode: mode, Store: logstore.Options{MaintainInterval: -1}}
			opts := Options{Writers: 2, SegmentBytes: 256 * s.RecordSize, ManualMonitor: true}
			ml, err := Open(s, opts, p)
			if err != nil {
				t.Fatal(err)
			}
			addWebLogs(t, ml)
			acked := []uint64{0, 0}
			var full error
			failed := -1 // the writer whose append failed (Durable)
			for seq := uint64(0); full == nil && seq < 1_000_000; seq += 100 {
				for w := range 2 {
					if err := ml.Writer(w).AppendBatch(persistBatch(s, w, seq, 100)); err != nil {
						full, failed = err, w
						break
					}
					acked[w] = seq + 100
				}
				if mode == logstore.DurableRelaxed && full == nil {
					full = ml.Store().Sync() // the flusher's work, done now so the test sees it
				}
			}
			if !errors.Is(full, syscall.ENOSPC) {
				t.Fatalf("filling the disk: %v, want an error wrapping ENOSPC", full)
			}
			t.Logf("disk full after %v acknowledged records: %v", acked, full)
			if mode == logstore.Durable {
				// The write error is sticky: the writer acknowledges nothing more.
				err := ml.Writer(failed).AppendBatch(persistBatch(s, failed, acked[failed]+100, 10))
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("writer %d's next append: %v, want its ENOSPC again", failed, err)
				}
			}
			checkAcked := func(ml *MultiLog) {
				t.Helper()
				for w := range 2 {
					want := persistBatch(s, w, 0, int(acked[w]))
					for seq := uint64(0); seq < acked[w]; seq++ {
						rec, err := ml.Read(MakeRef(w, seq))
						if err != nil || !bytes.Equal(rec, want[int(seq)*s.RecordSize:int(seq+1)*s.RecordSize]) {
							t.Fatalf("acknowledged record %d/%d: %v", w, seq, err)
						}
					}
				}
			}
			checkAcked(ml)
			if mode == logstore.DurableRelaxed {
				// A relaxed append is acknowledged before it is on disk; what survives is what
				// the store reported synced.
				for w := range 2 {
					acked[w] = ml.Store().Shard(w).DurableTail()
					if acked[w] == 0 {
						t.Fatalf("shard %d: nothing reported synced before the disk filled", w)
					}
				}
			}
			if err := ml.Close(); !errors.Is(err, syscall.ENOSPC) && mode == logstore.DurableRelaxed {
				t.Fatalf("close with unsynced records on a full disk: %v, want ENOSPC", err)
			}

			if err := os.Remove(filler); err != nil {
				t.Fatal(err)
			}
			ml, err = Open(nil, Options{ManualMonitor: true}, p)
			if err != nil {
				t.Fatalf("reopen after space was freed: %v", err)
			}
			defer ml.Close()
			checkAcked(ml)
			for w := range 2 {
				next := ml.Snapshot().Version().Tails()[w]
				if err := ml.Writer(w).AppendBatch(persistBatch(s, w, next, 50)); err != nil {
					t.Fatalf("append after reopen: %v", err)
				}
			}
			n, err := ml.Snapshot().CountFilter("web", MinTime, MaxTime)
			if want, _ := ml.Snapshot().CountNanos("dport == 80", MinTime, MaxTime); err != nil || n != want || n == 0 {
				t.Fatalf("restored filter after reopen counts %d (%v), want %d", n, err, want)
			}
		})
	}
}
