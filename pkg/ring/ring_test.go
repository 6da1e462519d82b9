package ring

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
)

func rec(size int, seq uint64) []byte {
	b := make([]byte, size)
	binary.LittleEndian.PutUint64(b, seq)
	for i := 8; i < size; i++ {
		b[i] = byte(seq) + byte(i)
	}
	return b
}

func checkRec(t testing.TB, b []byte, seq uint64) {
	t.Helper()
	if got := binary.LittleEndian.Uint64(b); got != seq {
		t.Fatalf("record sequence = %d, want %d", got, seq)
	}
	for i := 8; i < len(b); i++ {
		if b[i] != byte(seq)+byte(i) {
			t.Fatalf("record %d byte %d = %d, want %d (torn record)", seq, i, b[i], byte(seq)+byte(i))
		}
	}
}

func TestNewValidates(t *testing.T) {
	for _, tc := range []struct{ size, capacity int }{{0, 8}, {-1, 8}, {8, 0}, {8, -4}, {8, MaxCapacity + 1}} {
		if _, err := New(tc.size, tc.capacity); !errors.Is(err, ErrInvalid) {
			t.Errorf("New(%d, %d) error = %v, want ErrInvalid", tc.size, tc.capacity, err)
		}
	}
	r, err := New(16, 100)
	if err != nil {
		t.Fatal(err)
	}
	if r.Cap() != 128 || r.RecordSize() != 16 || r.Len() != 0 || r.Free() != 128 {
		t.Fatalf("Cap=%d RecordSize=%d Len=%d Free=%d, want 128 16 0 128", r.Cap(), r.RecordSize(), r.Len(), r.Free())
	}
}

func TestSingleFullEmpty(t *testing.T) {
	r, _ := New(12, 4)
	for i := range uint64(4) {
		if !r.Enqueue(rec(12, i)) {
			t.Fatalf("Enqueue %d failed on a ring with room", i)
		}
	}
	if r.Enqueue(rec(12, 99)) {
		t.Fatal("Enqueue succeeded on a full ring")
	}
	if r.Len() != 4 {
		t.Fatalf("Len = %d, want 4", r.Len())
	}
	dst := make([]byte, 12)
	for i := range uint64(4) {
		if !r.Dequeue(dst) {
			t.Fatalf("Dequeue %d failed", i)
		}
		checkRec(t, dst, i)
	}
	if r.Dequeue(dst) {
		t.Fatal("Dequeue succeeded on an empty ring")
	}
}

func TestBurstWrapAndPartial(t *testing.T) {
	const size = 10
	r, _ := New(size, 8)
	var next, want uint64
	burst := func(n int) []byte {
		b := make([]byte, 0, n*size)
		for range n {
			b = append(b, rec(size, next)...)
			next++
		}
		return b
	}
	// Move the indexes so later bursts wrap around the end of the buffer.
	for round := range 50 {
		in := burst(5)
		n := r.EnqueueBurst(in)
		free := 8 - (int(next-5) - int(want))
		if exp := min(5, free); n != exp {
			t.Fatalf("round %d: EnqueueBurst = %d, want %d", round, n, exp)
		}
		next -= uint64(5 - n) // not enqueued: regenerate next round
		out := make([]byte, 3*size)
		m := r.DequeueBurst(out)
		for i := range m {
			checkRec(t, out[i*size:(i+1)*size], want)
			want++
		}
	}
	out := make([]byte, 64*size)
	m := r.DequeueBurst(out)
	for i := range m {
		checkRec(t, out[i*size:(i+1)*size], want)
		want++
	}
	if want != next || r.Len() != 0 {
		t.Fatalf("drained to %d, produced %d, Len %d", want, next, r.Len())
	}
	if r.EnqueueBurst(nil) != 0 || r.DequeueBurst(make([]byte, size-1)) != 0 {
		t.Fatal("empty bursts must move nothing")
	}
}

func TestReserveCommitPeekRelease(t *testing.T) {
	const size = 8
	r, _ := New(size, 8)
	var next, want uint64
	for round := range 40 {
		s := r.Reserve(3)
		if len(s)%size != 0 || len(s) > 3*size {
			t.Fatalf("round %d: Reserve returned %d bytes", round, len(s))
		}
		k := len(s) / size
		for i := range k {
			binary.LittleEndian.PutUint64(s[i*size:], next)
			next++
		}
		r.Commit(k)
		p := r.Peek(2)
		for i := range len(p) / size {
			checkRec(t, p[i*size:(i+1)*size], want)
			want++
		}
		r.Release(len(p) / size)
	}
	for {
		p := r.Peek(100)
		if len(p) == 0 {
			break
		}
		for i := range len(p) / size {
			checkRec(t, p[i*size:(i+1)*size], want)
			want++
		}
		r.Release(len(p) / size)
	}
	if want != next {
		t.Fatalf("consumed %d, produced %d", want, next)
	}
	// Full ring: Reserve gives nothing.
	for r.Enqueue(rec(size, 0)) {
	}
	if s := r.Reserve(1); len(s) != 0 {
		t.Fatalf("Reserve on a full ring returned %d bytes", len(s))
	}
	r.Commit(0)
}

func TestMisusePanics(t *testing.T) {
	r, _ := New(8, 4)
	for name, f := range map[string]func(){
		"Enqueue short":       func() { r.Enqueue(make([]byte, 7)) },
		"EnqueueBurst ragged": func() { r.EnqueueBurst(make([]byte, 9)) },
		"Dequeue short":       func() { r.Dequeue(make([]byte, 7)) },
		"Commit too many":     func() { r.Reserve(1); r.Commit(2) },
		"Release too many":    func() { r.Peek(1); r.Release(1) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}

// TestStressSPSC runs a producer and a consumer goroutine through small rings with every API
// mix and checks that the consumer sees every sequence number once, in order, untorn. Run it
// with -race: the race detector checks the publication order of invariant 3.
func TestStressSPSC(t *testing.T) {
	const total = 50_000
	for _, mode := range []string{"single", "burst", "zerocopy"} {
		for _, capacity := range []int{1, 4, 64} {
			t.Run(fmt.Sprintf("%s/cap%d", mode, capacity), func(t *testing.T) {
				const size = 24
				r, _ := New(size, capacity)
				var wg sync.WaitGroup
				wg.Go(func() {
					var seq uint64
					buf := make([]byte, 0, 7*size)
					for seq < total {
						switch mode {
						case "single":
							if r.Enqueue(rec(size, seq)) {
								seq++
							} else {
								runtime.Gosched()
							}
						case "burst":
							buf = buf[:0]
							for i := uint64(0); i < 7 && seq+i < total; i++ {
								buf = append(buf, rec(size, seq+i)...)
							}
							n := r.EnqueueBurst(buf)
							if n == 0 {
								runtime.Gosched()
							}
							seq += uint64(n)
						case "zerocopy":
							s := r.Reserve(5)
							if len(s) == 0 {
								runtime.Gosched()
							}
							k := 0
							for ; k < len(s)/size && seq < total; k++ {
								copy(s[k*size:], rec(size, seq))
								seq++
							}
							r.Commit(k)
						}
					}
				})
				var want uint64
				out := make([]byte, 9*size)
				for want < total {
					switch mode {
					case "single":
						if r.Dequeue(out) {
							checkRec(t, out[:size], want)
							want++
						} else {
							runtime.Gosched()
						}
					case "burst":
						n := r.DequeueBurst(out)
						if n == 0 {
							runtime.Gosched()
						}
						for i := range n {
							checkRec(t, out[i*size:(i+1)*size], want)
							want++
						}
					case "zerocopy":
						p := r.Peek(3)
						if len(p) == 0 {
							runtime.Gosched()
						}
						for i := range len(p) / size {
							checkRec(t, p[i*size:(i+1)*size], want)
							want++
						}
						r.Release(len(p) / size)
					}
				}
				wg.Wait()
				if r.Len() != 0 {
					t.Fatalf("ring not empty after the run: Len %d", r.Len())
				}
			})
		}
	}
}
