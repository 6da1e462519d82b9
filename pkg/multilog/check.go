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
	segs := sh.segments()
	need := (newTail + uint64(sh.segRecords) - 1) / uint64(sh.segRecords)
	if uint64(len(segs)) < need {
		panic(fmt.Sprintf("multilog: invariant: shard %d has %d segments for tail %d", sh.id, len(segs), newTail))
	}
	for i, seg := range segs {
		if seg.first != uint64(i*sh.segRecords) {
			panic(fmt.Sprintf("multilog: invariant: shard %d segment %d starts at %d", sh.id, i, seg.first))
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
