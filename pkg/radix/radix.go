// Package radix is a 256-ary radix tree from fixed-length, order-preserving keys to append-only
// posting lists of uint32 references, built for the Atomic MultiLog's indexes.
//
// One goroutine inserts; any number of goroutines read concurrently without locks. Readers pass
// an exclusive upper bound on the references they may see (a MultiLog shard's published tail),
// which is how a reader fixes its version: entries at or above the bound are skipped even if the
// writer has already added them.
//
//	root ── byte 0 ──▶ node ── byte 1 ──▶ ... ── byte KeyLen-1 ──▶ leaf: postings
//	                                                                  [r0 r1 r2 r3]→[r4 … r11]→…
//
// Nodes start sparse (a sorted, copy-on-write array of up to 16 children) and become dense (256
// slots) when they outgrow it, so wide sparse key spaces (IP addresses) stay small.
//
// Usage:
//
//	t := radix.New(4)
//	t.Insert([]byte{10, 0, 0, 1}, 7) // writer goroutine only
//	t.Range(lo, hi, tail, func(ref uint32) bool { ...; return true })
package radix

import (
	"bytes"
	"errors"
	"sync/atomic"
	"unsafe"
)

// ErrKeyLen is returned (wrapped) when a key does not have the tree's key length.
var ErrKeyLen = errors.New("radix: key has the wrong length")

// MaxKeyLen is the longest key a tree accepts.
const MaxKeyLen = 1 << 16

const sparseMax = 16

// Tree maps fixed-length keys to posting lists of increasing uint32 references.
//
// A Tree is safe for one inserting goroutine concurrently with any number of readers.
//
// Invariants:
//
//  1. A node's children pointer (sparse or dense) only ever grows: a child once published stays
//     reachable at the same key byte forever.
//  2. A child node is fully initialised (its leaf postings allocated) before it is published, so
//     a reader that finds it may use it at once.
//  3. The references in one posting list are appended in increasing order (the writer inserts
//     references in increasing order per tree), so a reader stops at the first one ≥ its bound.
//  4. A posting block's count is stored after its slot is written; readers load the count first
//     and read only slots below it.
//  5. bytes is the writer's running estimate of the tree's memory (wbytes), stored whenever the
//     writer publishes (Published, Insert); it only grows.
type Tree struct {
	keyLen int
	root   node
	// entries is the number of references published; written by the writer only.
	entries atomic.Uint64
	keys    atomic.Uint64
	bytes   atomic.Int64
	pending uint64 // writer only: published but not yet in entries
	wbytes  int64  // writer only: memory allocated for the tree so far (see Bytes)
}

type node struct {
	sparse atomic.Pointer[sparseKids]
	dense  atomic.Pointer[denseKids]
	leaf   *Postings // non-nil for leaves; immutable once published
}

type sparseKids struct {
	keys []byte // sorted
	kids []*node
}

type denseKids [256]atomic.Pointer[node]

// Postings is one key's posting list: blocks of references, each block twice the size of the
// previous one up to 4,096. Readers use it through Tree; the writer may append through Leaf.
type Postings struct {
	head     block
	headRefs [firstBlock]uint32 // head.refs: in the same allocation
	// count is the number of references published by Publish, so that Len (the planner's
	// estimate) reads the list's first cache line instead of chasing every block.
	count atomic.Uint64

	// Writer only.
	wbuf  []uint32 // last.refs, kept here so Add touches one cache line
	wn    int      // references written into last
	tree  *Tree
	last  *block
	added uint64 // references added since the last Publish
	// Dirty is free for the writer's bookkeeping (e.g. "already on my publish list").
	Dirty bool
}

// block is one run of a posting list. Its refs live in the same allocation as the block (see
// newBlock; the head block's in its Postings): a reader following the chain takes one cache
// miss per block instead of two, which is most of an indexed lookup's time on cold data.
type block struct {
	refs []uint32
	n    atomic.Uint32
	next atomic.Pointer[block]
}

// newBlock returns a block of size refs (a power of two from firstBlock*2 to maxBlock) whose
// refs are in the same allocation.
func newBlock(size int) *block {
	switch size {
	case 8:
		return inlineBlock(new(struct {
			block
			arr [8]uint32
		}))
	case 16:
		return inlineBlock(new(struct {
			block
			arr [16]uint32
		}))
	case 32:
		return inlineBlock(new(struct {
			block
			arr [32]uint32
		}))
	case 64:
		return inlineBlock(new(struct {
			block
			arr [64]uint32
		}))
	case 128:
		return inlineBlock(new(struct {
			block
			arr [128]uint32
		}))
	case 256:
		return inlineBlock(new(struct {
			block
			arr [256]uint32
		}))
	case 512:
		return inlineBlock(new(struct {
			block
			arr [512]uint32
		}))
	case 1024:
		return inlineBlock(new(struct {
			block
			arr [1024]uint32
		}))
	case 2048:
		return inlineBlock(new(struct {
			block
			arr [2048]uint32
		}))
	case 4096:
		return inlineBlock(new(struct {
			block
			arr [4096]uint32
		}))
	}
	return &block{refs: make([]uint32, size)}
}

// inlineBlock points b's block at the array that follows it in the same allocation.
func inlineBlock[A any](b *struct {
	block
	arr A
}) *block {
	b.refs = unsafe.Slice((*uint32)(unsafe.Pointer(&b.arr)), int(unsafe.Sizeof(b.arr))/int(refBytes))
	return &b.block
}

const (
	firstBlock = 4
	maxBlock   = 4096
)

// Sizes for the memory estimate (Bytes): what each allocation holds, without the allocator's
// rounding to size classes.
const (
	nodeBytes     = int64(unsafe.Sizeof(node{}))
	postingsBytes = int64(unsafe.Sizeof(Postings{}))
	blockBytes    = int64(unsafe.Sizeof(block{}))
	refBytes      = int64(unsafe.Sizeof(uint32(0)))
	sparseBytes   = int64(unsafe.Sizeof(sparseKids{}))
	denseBytes    = int64(unsafe.Sizeof(denseKids{}))
	ptrBytes      = int64(unsafe.Sizeof((*node)(nil)))
)

func sparseSize(keys, kids int) int64 { return sparseBytes + int64(keys) + int64(kids)*ptrBytes }

// New returns an empty tree for keys of keyLen bytes (1..MaxKeyLen).
func New(keyLen int) *Tree {
	if keyLen < 1 || keyLen > MaxKeyLen {
		panic("radix: key length out of range")
	}
	return &Tree{keyLen: keyLen}
}

// KeyLen is the length of the tree's keys.
func (t *Tree) KeyLen() int { return t.keyLen }

// Entries is the number of references inserted so far.
func (t *Tree) Entries() uint64 { return t.entries.Load() }

// Keys is the number of distinct keys inserted so far.
func (t *Tree) Keys() uint64 { return t.keys.Load() }

// Bytes estimates the memory the tree holds (nodes, child arrays, posting lists and blocks,
// without allocator rounding) as of the writer's last publication. It is tracked as the tree
// grows, so it costs one atomic load.
func (t *Tree) Bytes() int64 { return t.bytes.Load() }

func (n *node) child(b byte) *node {
	if d := n.dense.Load(); d != nil {
		return d[b].Load()
	}
	s := n.sparse.Load()
	if s == nil {
		return nil
	}
	for i, k := range s.keys {
		if k == b {
			return s.kids[i]
		}
		if k > b {
			break
		}
	}
	return nil
}

// addChild publishes c at byte b; writer only, b must be absent. It returns the change in
// the bytes the node's child arrays hold (the replaced array becomes garbage).
func (n *node) addChild(b byte, c *node) int64 {
	if d := n.dense.Load(); d != nil {
		d[b].Store(c)
		return 0
	}
	s := n.sparse.Load()
	var keys []byte
	var kids []*node
	var old int64
	if s != nil {
		keys, kids = s.keys, s.kids
		old = sparseSize(cap(keys), cap(kids))
	}
	if len(keys) >= sparseMax {
		d := new(denseKids)
		for i, k := range keys {
			d[k].Store(kids[i])
		}
		d[b].Store(c)
		n.dense.Store(d)
		return denseBytes - old
	}
	i := 0
	for i < len(keys) && keys[i] < b {
		i++
	}
	nk := make([]byte, 0, len(keys)+1)
	nk = append(append(append(nk, keys[:i]...), b), keys[i:]...)
	nc := make([]*node, 0, len(kids)+1)
	nc = append(append(append(nc, kids[:i]...), c), kids[i:]...)
	n.sparse.Store(&sparseKids{keys: nk, kids: nc})
	return sparseSize(cap(nk), cap(nc)) - old
}

// Insert appends ref to key's posting list and publishes it. Only one goroutine may insert
// (or use Leaf), and it must insert references in increasing order per key. It returns
// ErrKeyLen for a key of the wrong length.
func (t *Tree) Insert(key []byte, ref uint32) error {
	p := t.Leaf(key)
	if p == nil {
		return ErrKeyLen
	}
	p.Add(ref)
	p.Publish()
	t.Published()
	return nil
}

// Leaf returns key's posting list, creating it if needed (writer only), or nil for a key of the
// wrong length. The writer may keep it and call Add and Publish directly, which is cheaper than
// Insert when many references go to the same key.
func (t *Tree) Leaf(key []byte) *Postings {
	if len(key) != t.keyLen {
		return nil
	}
	n := &t.root
	last := len(key) - 1
	for i, b := range key {
		c := n.child(b)
		if c == nil {
			c = &node{}
			t.wbytes += nodeBytes
			if i == last {
				p := &Postings{tree: t}
				p.head.refs = p.headRefs[:]
				p.last, p.wbuf = &p.head, p.head.refs
				c.leaf = p
				t.keys.Store(t.keys.Load() + 1)
				t.wbytes += postingsBytes
			}
			t.wbytes += n.addChild(b, c)
		}
		n = c
	}
	return n.leaf
}

// Add appends ref to the posting list without publishing it: readers see it after Publish.
// Writer only; refs must increase.
func (p *Postings) Add(ref uint32) {
	if p.wn == len(p.wbuf) {
		p.grow(1)
	}
	p.wbuf[p.wn] = ref
	p.wn++
	p.added++
}

// grow publishes the full last block and links a new one twice its size, or larger (up to
// maxBlock) if need references are about to be added (writer only).
func (p *Postings) grow(need int) {
	b := p.last
	size := 2 * len(b.refs)
	for size < need && size < maxBlock {
		size *= 2
	}
	size = min(size, maxBlock)
	nb := newBlock(size)
	p.tree.wbytes += blockBytes + int64(size)*refBytes
	b.n.Store(uint32(p.wn)) // a full block is published before the next is linked
	b.next.Store(nb)
	p.last, p.wbuf, p.wn = nb, nb.refs, 0
}

// AddMany appends refs (increasing, and above every reference added before) without
// publishing them. Writer only.
func (p *Postings) AddMany(refs []uint32) {
	for len(refs) > 0 {
		if p.wn == len(p.wbuf) {
			p.grow(len(refs))
		}
		n := copy(p.wbuf[p.wn:], refs)
		p.wn += n
		p.added += uint64(n)
		refs = refs[n:]
	}
}

// Publish makes the references added so far visible to readers: one atomic store. Writer
// only. Entries() counts them once the writer calls Tree.Published.
func (p *Postings) Publish() {
	if p.added == 0 {
		return
	}
	p.last.n.Store(uint32(p.wn))
	p.count.Store(p.count.Load() + p.added)
	p.tree.pending += p.added
	p.added = 0
}

// Published adds the references published since the last call to Entries (one atomic store
// for any number of Publish calls) and stores the memory estimate (Bytes). Writer only.
func (t *Tree) Published() {
	if t.pending > 0 {
		t.entries.Store(t.entries.Load() + t.pending)
		t.pending = 0
	}
	if t.wbytes != t.bytes.Load() {
		t.bytes.Store(t.wbytes)
	}
}

// Len is the number of references published by Publish (references in a block that filled
// up since are counted at the next Publish). One atomic load.
func (p *Postings) Len() uint64 { return p.count.Load() }

// Each calls fn for each published reference below bound, in increasing order, until fn
// returns false; it reports whether fn never did.
func (p *Postings) Each(bound uint32, fn func(uint32) bool) bool { return p.each(bound, fn) }

// Get calls fn for each reference below bound stored under key, in increasing order, until fn
// returns false.
func (t *Tree) Get(key []byte, bound uint32, fn func(ref uint32) bool) bool {
	if len(key) != t.keyLen {
		return true
	}
	n := &t.root
	for _, b := range key {
		if n = n.child(b); n == nil {
			return true
		}
	}
	return n.leaf.each(bound, fn)
}

func (p *Postings) each(bound uint32, fn func(uint32) bool) bool {
	for b := &p.head; b != nil; b = b.next.Load() {
		n := b.n.Load()
		for _, r := range b.refs[:n] {
			if r >= bound {
				return true
			}
			if !fn(r) {
				return false
			}
		}
		if int(n) < len(b.refs) {
			return true
		}
	}
	return true
}

// Range calls fn for each reference below bound under every key k with lo ≤ k ≤ hi (bytewise),
// key by key in increasing key order, until fn returns false. It reports whether fn never
// returned false. Keys of the wrong length make Range return true at once.
func (t *Tree) Range(lo, hi []byte, bound uint32, fn func(ref uint32) bool) bool {
	if len(lo) != t.keyLen || len(hi) != t.keyLen || bytes.Compare(lo, hi) > 0 {
		return true
	}
	return rangeNode(&t.root, lo, hi, 0, true, true, bound, fn)
}

// CountRange returns the number of references (ignoring any bound) under keys in [lo, hi],
// stopping early once it exceeds limit; the planner uses it to estimate selectivity.
func (t *Tree) CountRange(lo, hi []byte, limit uint64) uint64 {
	var total uint64
	if len(lo) != t.keyLen || len(hi) != t.keyLen || bytes.Compare(lo, hi) > 0 {
		return 0
	}
	countNode(&t.root, lo, hi, 0, true, true, &total, limit)
	return total
}

func bounds(d int, lo, hi []byte, loTight, hiTight bool) (byte, byte) {
	first, last := byte(0), byte(255)
	if loTight {
		first = lo[d]
	}
	if hiTight {
		last = hi[d]
	}
	return first, last
}

func (n *node) eachChild(first, last byte, fn func(b byte, c *node) bool) bool {
	if dk := n.dense.Load(); dk != nil {
		for b := int(first); b <= int(last); b++ {
			if c := dk[b].Load(); c != nil {
				if !fn(byte(b), c) {
					return false
				}
			}
		}
		return true
	}
	s := n.sparse.Load()
	if s == nil {
		return true
	}
	for i, k := range s.keys {
		if k < first {
			continue
		}
		if k > last {
			break
		}
		if !fn(k, s.kids[i]) {
			return false
		}
	}
	return true
}

func rangeNode(n *node, lo, hi []byte, d int, loTight, hiTight bool, bound uint32, fn func(uint32) bool) bool {
	if n.leaf != nil {
		return n.leaf.each(bound, fn)
	}
	first, last := bounds(d, lo, hi, loTight, hiTight)
	return n.eachChild(first, last, func(b byte, c *node) bool {
		return rangeNode(c, lo, hi, d+1, loTight && b == first, hiTight && b == last, bound, fn)
	})
}

func countNode(n *node, lo, hi []byte, d int, loTight, hiTight bool, total *uint64, limit uint64) bool {
	if n.leaf != nil {
		*total += n.leaf.Len()
		return *total <= limit
	}
	first, last := bounds(d, lo, hi, loTight, hiTight)
	return n.eachChild(first, last, func(b byte, c *node) bool {
		return countNode(c, lo, hi, d+1, loTight && b == first, hiTight && b == last, total, limit)
	})
}
