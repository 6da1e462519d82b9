package multilog

import (
	"fmt"

	"github.com/confluo-go/confluo/pkg/schema"
)

// checkBeforePublish verifies a shard's invariants from its writer's goroutine, before a tail
// is published (invariants builds only).
func (sh *shard) checkBeforePublish(newTail uint64) {
	if old := sh.tail.Load(); newTail < old {
		panic(fmt.Sprintf("multilog: invariant: shard %d tail going back %d → %d", sh.id, old, newTail))
	}
	d := sh.segments()
	need := (newTail + uint64(sh.segRecords) - 1) / uint64(sh.segRecords)
	if d.base+uint64(len(d.segs)) < need {
		panic(fmt.Sprintf("multilog: invariant: shard %d has segments %d+%d for tail %d", sh.id, d.base, len(d.segs), newTail))
	}
	// segDir invariant 1: the directory starts at or below the first kept record (checked once
	// the shard is attached to its log: replay starts the directory at the store's FirstSeq).
	if fk := sh.firstKept(); sh.log != nil && d.base*uint64(sh.segRecords) > fk {
		panic(fmt.Sprintf("multilog: invariant: shard %d directory starts at segment %d, first kept record %d", sh.id, d.base, fk))
	}
	for i, seg := range d.segs {
		if seg.first != (d.base+uint64(i))*uint64(sh.segRecords) {
			panic(fmt.Sprintf("multilog: invariant: shard %d segment %d starts at %d", sh.id, d.base+uint64(i), seg.first))
		}
	}
}

// checkRow verifies that rows come in (timestamp, shard, sequence) order (invariants builds).
func (r *Rows) checkRow(prevTS int64, prev Ref) {
	if r.count <= 1 {
		return
	}
	if r.ts < prevTS || (r.ts == prevTS && (r.ref.Shard() < prev.Shard() || (r.ref.Shard() == prev.Shard() && r.ref.Seq() <= prev.Seq()))) {
		panic(fmt.Sprintf("multilog: invariant: row %v at %d after %v at %d", r.ref, r.ts, prev, prevTS))
	}
	if schema.Timestamp(r.rec) != r.ts {
		panic("multilog: invariant: row timestamp does not match its record")
	}
}
