// Package ring provides a bounded lock-free single-producer single-consumer ring of fixed-size
// records with burst enqueue and dequeue.
//
// The spray stage has one ring per writer core: the capture goroutine that owns the ring's flows
// is its only producer and the writer core is its only consumer. Records are copied in bursts, or
// produced and consumed in place with Reserve/Commit and Peek/Release, so a record can be decoded
// straight into ring memory and appended to the MultiLog straight out of it.
//
// Usage:
//
//	r, err := ring.New(recordSize, 4096)
//	// producer goroutine
//	n := r.EnqueueBurst(recs) // recs holds k records back to back; n <= k were taken
//	// consumer goroutine
//	n = r.DequeueBurst(buf)   // copies up to len(buf)/recordSize records into buf
//
// Memory layout (capacity C a power of two, record size R):
//
//	        +-----------+-----------+-----+-------------+
//	buf     | slot 0    | slot 1    | ... | slot C-1    |   slot i = buf[i*R : (i+1)*R]
//	        +-----------+-----------+-----+-------------+
//	          ^ tail&(C-1): next record to read    ^ head&(C-1): next slot to write
//
// head and tail are free-running 64-bit counters, each on its own cache line together with the
// other side's cached copy of the opposite index, so producer and consumer do not share a
// written cache line in the common case.
package ring

import (
	"errors"
	"fmt"
	"math/bits"
	"sync/atomic"
)

// ErrInvalid is returned for an invalid record size or capacity.
var ErrInvalid = errors.New("ring: invalid argument")

// MaxCapacity is the largest number of records a ring holds.
const MaxCapacity = 1 << 30

const cacheLine = 64

// Ring is a bounded single-producer single-consumer queue of fixed-size records.
//
// Exactly one goroutine may call the producer methods (Enqueue, EnqueueBurst, Reserve, Commit)
// and exactly one goroutine may call the consumer methods (Dequeue, DequeueBurst, Peek, Release)
// at a time; the two may run concurrently. Len, Cap, RecordSize and Free are safe for concurrent
// use from any goroutine.
//
// Invariants:
//  1. 0 <= head - tail <= capacity at every instant, seen from either side.
//  2. Slots [tail, head) hold published records; only the consumer reads them. Slots
//     [head, tail+capacity) are free; only the producer writes them.
//  3. The producer stores head (release) only after it has written the slots it publishes; the
//     consumer stores tail (release) only after it has finished reading the slots it frees.
//  4. producer.cachedTail <= tail and consumer.cachedHead <= head: the cached copies lag the
//     real indexes, so using them can only under-estimate free space or available records.
type Ring struct {
	_ [cacheLine]byte

	// Producer cache line: written by the producer only.
	head       atomic.Uint64
	cachedTail uint64
	reserved   uint64 // records handed out by the last Reserve, not yet committed
	_          [cacheLine - 24]byte

	// Consumer cache line: written by the consumer only.
	tail       atomic.Uint64
	cachedHead uint64
	peeked     uint64 // records handed out by the last Peek, not yet released
	_          [cacheLine - 24]byte

	// Read-only after New.
	buf        []byte
	mask       uint64
	capacity   uint64
	recordSize int
	_          [cacheLine - 48]byte
}

// New returns an empty ring of capacity records of recordSize bytes each. The capacity is rounded
// up to a power of two; it must be at least 1 and at most MaxCapacity.
func New(recordSize, capacity int) (*Ring, error) {
	if recordSize <= 0 {
		return nil, fmt.Errorf("%w: record size %d", ErrInvalid, recordSize)
	}
	if capacity <= 0 || capacity > MaxCapacity {
		return nil, fmt.Errorf("%w: capacity %d (want 1..%d)", ErrInvalid, capacity, MaxCapacity)
	}
	c := uint64(1) << bits.Len64(uint64(capacity-1))
	if int64(c)*int64(recordSize) > 1<<40 {
		return nil, fmt.Errorf("%w: %d records of %d bytes is too large", ErrInvalid, c, recordSize)
	}
	return &Ring{
		buf:        make([]byte, int(c)*recordSize),
		mask:       c - 1,
		capacity:   c,
		recordSize: recordSize,
	}, nil
}

// RecordSize returns the size in bytes of one record.
func (r *Ring) RecordSize() int { return r.recordSize }

// Cap returns the ring's capacity in records.
func (r *Ring) Cap() int { return int(r.capacity) }

// Len returns the number of records in the ring. Called concurrently with the producer or the
// consumer it is a snapshot that may be stale by the time it returns.
func (r *Ring) Len() int {
	tail := r.tail.Load()
	head := r.head.Load()
	if head < tail { // tail moved past our head read; the ring was emptied meanwhile
		return 0
	}
	return int(head - tail)
}

// Free returns the number of free slots; the same staleness caveat as Len applies.
func (r *Ring) Free() int { return r.Cap() - r.Len() }

// check panics if invariant 1 does not hold between head and tail as the calling side sees
// them. Only with the invariants build tag.
func (r *Ring) check(head, tail uint64) {
	if head-tail > r.capacity || tail > head {
		panic(fmt.Sprintf("ring: invariant 1 broken: head %d tail %d capacity %d", head, tail, r.capacity))
	}
}

// free returns how many slots the producer may write, refreshing the cached tail only when the
// cached value does not already allow want slots.
func (r *Ring) free(head uint64, want uint64) uint64 {
	free := r.capacity - (head - r.cachedTail)
	if free < want {
		r.cachedTail = r.tail.Load()
		free = r.capacity - (head - r.cachedTail)
	}
	return free
}

// avail returns how many records the consumer may read, refreshing the cached head only when
// needed.
func (r *Ring) avail(tail uint64, want uint64) uint64 {
	avail := r.cachedHead - tail
	if avail < want {
		r.cachedHead = r.head.Load()
		avail = r.cachedHead - tail
	}
	return avail
}

// Enqueue copies one record into the ring and reports whether there was room. rec must be
// exactly RecordSize bytes long. Producer only.
func (r *Ring) Enqueue(rec []byte) bool {
	if len(rec) != r.recordSize {
		panic(fmt.Sprintf("ring: Enqueue of %d bytes into a ring of %d-byte records", len(rec), r.recordSize))
	}
	head := r.head.Load()
	if r.free(head, 1) == 0 {
		return false
	}
	off := int(head&r.mask) * r.recordSize
	copy(r.buf[off:off+r.recordSize], rec)
	if invariants {
		r.check(head+1, r.tail.Load())
	}
	r.head.Store(head + 1)
	return true
}

// EnqueueBurst copies as many of the records in recs (back to back, len(recs) a multiple of
// RecordSize) as fit and returns how many it enqueued; the rest are the caller's to retry or
// drop. Producer only.
func (r *Ring) EnqueueBurst(recs []byte) int {
	if len(recs)%r.recordSize != 0 {
		panic(fmt.Sprintf("ring: EnqueueBurst of %d bytes into a ring of %d-byte records", len(recs), r.recordSize))
	}
	want := uint64(len(recs) / r.recordSize)
	if want == 0 {
		return 0
	}
	head := r.head.Load()
	n := min(r.free(head, want), want)
	if n == 0 {
		return 0
	}
	idx := head & r.mask
	first := min(n, r.capacity-idx) // slots up to the end of buf
	size := uint64(r.recordSize)
	copy(r.buf[idx*size:], recs[:first*size])
	if first < n {
		copy(r.buf, recs[first*size:n*size])
	}
	if invariants {
		r.check(head+n, r.tail.Load())
	}
	r.head.Store(head + n)
	return int(n)
}

// Reserve returns up to max free slots, contiguous in memory, for the producer to fill in
// place; the slice may be shorter than max (at the end of the buffer or when the ring is nearly
// full) and is empty when the ring is full. Commit(n) publishes the first n of them. The slice
// stays valid until Commit. Producer only.
func (r *Ring) Reserve(max int) []byte {
	if max <= 0 {
		return nil
	}
	head := r.head.Load()
	n := min(r.free(head, uint64(max)), uint64(max))
	idx := head & r.mask
	n = min(n, r.capacity-idx)
	r.reserved = n
	size := uint64(r.recordSize)
	return r.buf[idx*size : (idx+n)*size : (idx+n)*size]
}

// Commit publishes the first n records of the last Reserve. n must not exceed what Reserve
// returned. Producer only.
func (r *Ring) Commit(n int) {
	if n < 0 || uint64(n) > r.reserved {
		panic(fmt.Sprintf("ring: Commit(%d) after Reserve of %d", n, r.reserved))
	}
	r.reserved = 0
	if n > 0 {
		head := r.head.Load() + uint64(n)
		if invariants {
			r.check(head, r.tail.Load())
		}
		r.head.Store(head)
	}
}

// Dequeue copies the oldest record into dst (at least RecordSize bytes) and reports whether
// there was one. Consumer only.
func (r *Ring) Dequeue(dst []byte) bool {
	if len(dst) < r.recordSize {
		panic(fmt.Sprintf("ring: Dequeue into %d bytes from a ring of %d-byte records", len(dst), r.recordSize))
	}
	tail := r.tail.Load()
	if r.avail(tail, 1) == 0 {
		return false
	}
	off := int(tail&r.mask) * r.recordSize
	copy(dst, r.buf[off:off+r.recordSize])
	if invariants {
		r.check(r.head.Load(), tail+1)
	}
	r.tail.Store(tail + 1)
	return true
}

// DequeueBurst copies up to len(dst)/RecordSize of the oldest records into dst, back to back,
// and returns how many it copied. Consumer only.
func (r *Ring) DequeueBurst(dst []byte) int {
	want := uint64(len(dst) / r.recordSize)
	if want == 0 {
		return 0
	}
	tail := r.tail.Load()
	n := min(r.avail(tail, want), want)
	if n == 0 {
		return 0
	}
	idx := tail & r.mask
	first := min(n, r.capacity-idx)
	size := uint64(r.recordSize)
	copy(dst, r.buf[idx*size:(idx+first)*size])
	if first < n {
		copy(dst[first*size:], r.buf[:(n-first)*size])
	}
	if invariants {
		r.check(r.head.Load(), tail+n)
	}
	r.tail.Store(tail + n)
	return int(n)
}

// Peek returns up to max of the oldest records, contiguous in ring memory, without removing
// them; the slice may be shorter than max at the end of the buffer and is empty when the ring
// is empty. The records stay valid until Release, which frees the first n of them. Consumer
// only.
func (r *Ring) Peek(max int) []byte {
	if max <= 0 {
		return nil
	}
	tail := r.tail.Load()
	n := min(r.avail(tail, uint64(max)), uint64(max))
	idx := tail & r.mask
	n = min(n, r.capacity-idx)
	r.peeked = n
	size := uint64(r.recordSize)
	return r.buf[idx*size : (idx+n)*size : (idx+n)*size]
}

// Release frees the first n records returned by the last Peek. Consumer only.
func (r *Ring) Release(n int) {
	if n < 0 || uint64(n) > r.peeked {
		panic(fmt.Sprintf("ring: Release(%d) after Peek of %d", n, r.peeked))
	}
	r.peeked = 0
	if n > 0 {
		tail := r.tail.Load() + uint64(n)
		if invariants {
			r.check(r.head.Load(), tail)
		}
		r.tail.Store(tail)
	}
}
