package multilog

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confluo-go/confluo/pkg/schema"
)

// detRecord is record seq of shard w in TestConcurrent: k = seq % 7, timestamp = seq.
func detRecord(s *schema.Schema, w int, seq uint64) []byte {
	rec := make([]byte, s.RecordSize)
	schema.SetTimestamp(rec, int64(seq))
	binary.LittleEndian.PutUint32(rec[8:], uint32(seq%7))
	binary.LittleEndian.PutUint32(rec[12:], uint32(w))
	return rec
}

// expectedK3 is the number of records with k == 3 among the first tail records of a shard.
func expectedK3(tail uint64) uint64 {
	n := tail / 7
	if tail%7 > 3 {
		n++
	}
	return n
}

// TestConcurrent appends from several writers while readers query snapshots, indexes are added
// with backfill and visibility is frozen; every snapshot must see whole batches in every log.
func TestConcurrent(t *testing.T) {
	s, err := schema.Parse("{k: UINT, w: UINT}")
	if err != nil {
		t.Fatal(err)
	}
	const writers, batches, batch = 3, 300, 17
	ml, err := New(s, Options{Writers: writers, SegmentBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	if err := ml.AddFilter("k3", "k == 3"); err != nil {
		t.Fatal(err)
	}
	if err := ml.AddAggregate("n3", "k3", "COUNT(*)"); err != nil {
		t.Fatal(err)
	}
	if err := ml.AddAggregate("sum3", "k3", "SUM(k)"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var stop atomic.Bool
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wr := ml.Writer(w)
			var seq uint64
			for range batches {
				var buf []byte
				for range batch {
					buf = append(buf, detRecord(s, w, seq)...)
					seq++
				}
				if err := wr.AppendBatch(buf); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	var readers sync.WaitGroup
	for range 2 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for !stop.Load() {
				sn := ml.Snapshot()
				var want uint64
				for _, tail := range sn.Version().Tails() {
					if tail%batch != 0 {
						t.Errorf("tail %d is not a batch boundary", tail)
					}
					want += expectedK3(tail)
				}
				got, err := sn.CountNanos("k == 3", MinTime, MaxTime)
				if err != nil {
					t.Error(err)
					return
				}
				if got != want {
					t.Errorf("k == 3 at %v: %d, want %d", sn.Version(), got, want)
				}
				// Every log agrees at the snapshot: the filter log, the aggregates.
				nf, err := sn.CountFilter("k3", MinTime, MaxTime)
				if err != nil || nf != want {
					t.Errorf("filter k3 at %v: %d, want %d (%v)", sn.Version(), nf, want, err)
				}
				n3, _ := sn.GetAggregate("n3", MinTime, MaxTime)
				s3, _ := sn.GetAggregate("sum3", 0, 1<<40)
				if n3.Count != want || (want > 0 && s3.Value.I != int64(3*want)) {
					t.Errorf("aggregates at %v: count %d sum %v, want %d", sn.Version(), n3.Count, s3.Value, want)
				}
				// The backfilled aggregate, once ready, agrees at every version: snapshots
				// older than its start read the backfill below their tails.
				if nb, err := sn.GetAggregate("n3b", MinTime, MaxTime); err == nil && nb.Count != want {
					t.Errorf("backfilled aggregate at %v: count %d, want %d", sn.Version(), nb.Count, want)
				}
				rows, _ := sn.QueryNanos("k == 3 || k == 5", MinTime, MaxTime, 0)
				last := int64(-1)
				for rows.Next() {
					if rows.Timestamp() < last {
						t.Errorf("rows out of timestamp order")
					}
					last = rows.Timestamp()
					if k := binary.LittleEndian.Uint32(rows.Record()[8:]); k != 3 && k != 5 {
						t.Errorf("row with k %d", k)
					}
				}
			}
		}()
	}
	if err := ml.AddIndex("k", 0, Backfill()); err != nil {
		t.Error(err)
	}
	if err := ml.AddAggregate("n3b", "k3", "COUNT(*)", AggregateBackfill()); err != nil {
		t.Error(err)
	}
	v := ml.Freeze()
	if got := ml.Snapshot().Version(); got.String() != v.String() {
		t.Errorf("frozen snapshot %v, want %v", got, v)
	}
	ml.Unfreeze()
	if err := ml.AddIndex("w", 0); err != nil {
		t.Error(err)
	}
	wg.Wait()
	stop.Store(true)
	readers.Wait()
	if got := ml.NumRecords(); got != writers*batches*batch {
		t.Fatalf("NumRecords %d", got)
	}
	if nb, err := ml.GetAggregate("n3b", MinTime, MaxTime); err != nil || nb.Count != writers*expectedK3(batches*batch) {
		t.Fatalf("backfilled aggregate: %v (%v)", nb.Count, err)
	}
	plan, _ := ml.Snapshot().Explain("k == 3")
	if plan == "scan" {
		t.Errorf("k == 3 not planned through the index")
	}
	n, _ := ml.Snapshot().CountNanos("w == 1 && k == 3", MinTime, MaxTime)
	if n != expectedK3(batches*batch) {
		t.Fatalf("w == 1 && k == 3: %d", n)
	}
}

func TestFreeze(t *testing.T) {
	s, _ := schema.Parse("{k: UINT, w: UINT}")
	ml, _ := New(s, Options{Writers: 2})
	w := ml.Writer(1)
	for i := range 10 {
		_ = w.Append(detRecord(s, 1, uint64(i)))
	}
	v := ml.Freeze()
	for i := range 5 {
		_ = w.Append(detRecord(s, 1, uint64(10+i)))
	}
	if n := ml.NumRecords(); n != 10 {
		t.Fatalf("frozen NumRecords %d, want 10", n)
	}
	if _, err := ml.Read(MakeRef(1, 12)); err == nil {
		t.Fatal("read beyond the frozen version")
	}
	if fv, ok := ml.Frozen(); !ok || fv.NumRecords() != v.NumRecords() {
		t.Fatal("Frozen")
	}
	ml.Unfreeze()
	if n := ml.NumRecords(); n != 15 {
		t.Fatalf("NumRecords after Unfreeze %d", n)
	}
	if _, err := ml.At(VersionOf([]uint64{0, 16})); err == nil {
		t.Fatal("At a future version")
	}
	sn, err := ml.At(v)
	if err != nil || sn.NumRecords() != 10 {
		t.Fatalf("At %v: %v", v, err)
	}
}

// TestAppendTakesNoConfigLock: configuration changes (AddIndex and its backfill, filters,
// aggregates) hold MultiLog.mu; writers must make progress while it is held, with a derived
// log installed, so adding an index can never block them.
func TestAppendTakesNoConfigLock(t *testing.T) {
	s, _ := schema.Parse("{k: UINT, w: UINT}")
	ml, _ := New(s, Options{Writers: 2})
	if err := ml.AddIndex("k", 0); err != nil {
		t.Fatal(err)
	}
	ml.mu.Lock()
	done := make(chan error, 1)
	go func() {
		var err error
		for seq := range uint64(100) {
			if err = ml.Writer(1).Append(detRecord(s, 1, seq)); err != nil {
				break
			}
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("appends blocked while the configuration lock is held")
	}
	n, err := ml.Snapshot().CountNanos("k == 3", MinTime, MaxTime)
	ml.mu.Unlock()
	if err != nil || n != expectedK3(100) {
		t.Fatalf("k == 3: %d, %v; want %d", n, err, expectedK3(100))
	}
}
