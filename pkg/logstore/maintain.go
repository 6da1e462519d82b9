package logstore

import (
	"errors"
	"fmt"
	"os"
	"time"
)

// MaintainResult says what one Maintain run did.
type MaintainResult struct {
	Archived        int    // segments compressed into archive files
	Released        int    // sealed segments released from memory (their data stays on disk)
	DeletedByAge    int    // segments deleted by RetentionAge
	DeletedByDisk   int    // segments deleted by MaxDiskBytes
	DeletedByMemory int    // segments dropped by MaxMemoryBytes
	RecordsDeleted  uint64 // records in deleted segments
}

type deleteReason int

const (
	byAge deleteReason = iota
	byDisk
	byMemory
)

// Maintain applies the archival, retention and memory rules once, oldest data first:
//
//  1. sealed segments older than ArchiveAge are archived (compressed) and released from memory;
//  2. whole oldest segments older than RetentionAge are deleted;
//  3. while the files exceed MaxDiskBytes, whole oldest segments are deleted;
//  4. while sealed segments in memory plus ExtraMemoryBytes exceed MaxMemoryBytes, the oldest
//     sealed segment in memory is archived and released (durable modes) or dropped (InMemory;
//     or when the archive would not fit MaxDiskBytes, in which case rule 3 deletes the oldest
//     data on disk); once no sealed segment is left in memory, the oldest sealed segment is
//     deleted (DeletedByMemory: the owner's memory derived from it goes with it, OnDelete).
//
// The active segment of a shard is never archived, released or deleted. Deletions are written
// to the manifest before files are removed. Everything is counted in Stats. Maintain runs in the
// background every MaintainInterval; owners may also call it. Safe for concurrent use.
func (st *Store) Maintain() (MaintainResult, error) {
	st.maintainMu.Lock()
	defer st.maintainMu.Unlock()
	var res MaintainResult
	if st.shut {
		return res, ErrClosed
	}
	var errs []error
	if st.opts.Mode == DurableRelaxed {
		// Sealed segments must be on disk before they can be archived, released or deleted.
		if err := st.Sync(); err != nil {
			errs = append(errs, err)
		}
	}
	now := st.opts.Now().UnixNano()
	var doomed []doomedFiles

	if age := st.opts.ArchiveAge; age > 0 {
		cutoff := now - int64(age)
		for _, l := range st.shards {
			for _, seg := range l.segments() {
				if seg.maxTS.Load() < cutoff && st.archivable(l, seg) {
					if err := st.archiveSegment(l, seg); err != nil {
						errs = append(errs, err)
						break
					}
					res.Archived++
				}
			}
		}
	}
	if age := st.opts.RetentionAge; age > 0 {
		cutoff := now - int64(age)
		for _, l := range st.shards {
			for {
				segs := l.segments()
				if len(segs) == 0 || !st.deletable(segs[0]) || segs[0].maxTS.Load() >= cutoff {
					break
				}
				doomed = append(doomed, st.deleteFront(l, segs[0], byAge, &res))
			}
		}
	}
	doomed = append(doomed, st.enforceDisk(&res)...)
	if st.opts.MaxMemoryBytes > 0 {
		for st.memoryOver() {
			l, seg := st.oldest(func(seg *segment) bool { return seg.sealed.Load() && seg.mem.Load() != nil })
			if seg == nil {
				// Every sealed segment has left memory and the owner's memory (ExtraMemoryBytes)
				// still keeps the total over: delete the oldest data, by the retention rule.
				l, seg = st.oldestDeletable()
				if seg == nil || st.opts.ExtraMemoryBytes == nil {
					break
				}
				doomed = append(doomed, st.deleteFront(l, seg, byMemory, &res))
				continue
			}
			switch {
			case st.opts.Mode == InMemory:
				if l.segments()[0] == seg {
					doomed = append(doomed, st.deleteFront(l, seg, byMemory, &res))
					continue
				}
				// Not reachable: in memory mode a segment without memory is deleted.
				st.release(l.id, seg)
			case !seg.onDisk.Load():
				errs = append(errs, fmt.Errorf("logstore: shard %d: segment %d is not on disk yet; cannot release it", l.id, seg.first))
				goto done
			case st.archivable(l, seg):
				if err := st.archiveSegment(l, seg); err != nil {
					errs = append(errs, err)
					st.release(l.id, seg) // its segment file is still there
				} else {
					res.Archived++
				}
			default:
				st.release(l.id, seg)
			}
			res.Released++
			doomed = append(doomed, st.enforceDisk(&res)...)
		}
	}
done:
	if len(doomed) > 0 {
		// Record the new first sequence numbers before removing files, so a crash in between
		// leaves files recovery knows to delete rather than holes.
		if err := st.writeShardFirst(); err != nil {
			errs = append(errs, err)
		} else {
			for _, d := range doomed {
				for _, p := range d.paths {
					if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
						errs = append(errs, fmt.Errorf("logstore: remove %s: %w", p, err))
					}
				}
			}
		}
	}
	st.counters.lastMaintainNano.Store(time.Now().UnixNano())
	return res, errors.Join(errs...)
}

// archivable: sealed, complete on disk, not archived yet, no holes.
func (st *Store) archivable(l *ShardLog, seg *segment) bool {
	if st.opts.Mode == InMemory || !seg.sealed.Load() || !seg.onDisk.Load() {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return seg.archPath == "" && len(seg.holes) == 0 && !seg.dropped && seg.rawPath != ""
}

// deletable: sealed, and on disk unless the store keeps nothing on disk.
func (st *Store) deletable(seg *segment) bool {
	return seg.sealed.Load() && (seg.onDisk.Load() || st.opts.Mode == InMemory)
}

// oldest returns, over all shards, the shard's first segment satisfying ok with the smallest
// timestamps (the oldest data).
func (st *Store) oldest(ok func(*segment) bool) (*ShardLog, *segment) {
	var bestL *ShardLog
	var best *segment
	for _, l := range st.shards {
		for _, seg := range l.segments() {
			if !ok(seg) {
				continue
			}
			if best == nil || seg.minTS.Load() < best.minTS.Load() {
				bestL, best = l, seg
			}
			break
		}
	}
	return bestL, best
}

// memoryOver reports whether the sealed segments in memory plus the owner's extra memory
// exceed MaxMemoryBytes (which must be set).
func (st *Store) memoryOver() bool {
	n := st.memSealed.Load()
	if st.opts.ExtraMemoryBytes != nil {
		n += st.opts.ExtraMemoryBytes()
	}
	return n > st.opts.MaxMemoryBytes
}

// oldestDeletable returns, over all shards, the first segment that may be deleted with the
// oldest data (smallest timestamps), or nil.
func (st *Store) oldestDeletable() (*ShardLog, *segment) {
	var victimL *ShardLog
	var victim *segment
	for _, l := range st.shards {
		segs := l.segments()
		if len(segs) == 0 || !st.deletable(segs[0]) {
			continue
		}
		if victim == nil || segs[0].minTS.Load() < victim.minTS.Load() {
			victimL, victim = l, segs[0]
		}
	}
	return victimL, victim
}

// enforceDisk deletes whole oldest segments while the files exceed MaxDiskBytes.
func (st *Store) enforceDisk(res *MaintainResult) []doomedFiles {
	max := st.opts.MaxDiskBytes
	if max <= 0 {
		return nil
	}
	var doomed []doomedFiles
	for st.diskBytes.Load() > max {
		victimL, victim := st.oldestDeletable()
		if victim == nil {
			break
		}
		doomed = append(doomed, st.deleteFront(victimL, victim, byDisk, res))
	}
	return doomed
}

type doomedFiles struct {
	paths []string
	bytes int64
}

// deleteFront removes seg, the first segment of l, from the store's view: readers get
// ErrDropped from now on. The caller removes the files after writing the manifest; l.mu must
// not be held.
func (st *Store) deleteFront(l *ShardLog, seg *segment, why deleteReason, res *MaintainResult) doomedFiles {
	l.mu.Lock()
	segs := l.segments()
	rest := append([]*segment(nil), segs[1:]...)
	if len(rest) == 0 {
		l.firstSeq.Store(seg.first + uint64(seg.capacity)) // before the list: see setSegmentsLocked
	}
	l.setSegmentsLocked(rest)
	seg.dropped = true
	var d doomedFiles
	if seg.rawPath != "" {
		d.paths = append(d.paths, seg.rawPath)
	}
	if seg.archPath != "" {
		d.paths = append(d.paths, seg.archPath)
	}
	d.bytes = seg.rawBytes + seg.archBytes
	l.mu.Unlock()
	if m := seg.mem.Swap(nil); m != nil {
		st.memSealed.Add(-int64(len(*m)))
	}
	st.cache.drop(cacheKey{l.id, seg.first})
	// Counted as gone now; the files are removed once the manifest says so.
	st.diskBytes.Add(-d.bytes)
	n := uint64(seg.count.Load())
	st.counters.deletedRecords.Add(n)
	st.counters.deletedBytes.Add(n * uint64(st.rs))
	res.RecordsDeleted += n
	switch why {
	case byAge:
		st.counters.deletedAge.Add(1)
		res.DeletedByAge++
	case byDisk:
		st.counters.deletedDisk.Add(1)
		res.DeletedByDisk++
	case byMemory:
		st.counters.deletedMemory.Add(1)
		res.DeletedByMemory++
	}
	if st.opts.OnDelete != nil {
		st.opts.OnDelete(l.id, seg.first)
	}
	return d
}
