package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/confluo-go/confluo/pkg/wire"
)

func snapshotKey(id uint64) string { return "snapshot." + strconv.FormatUint(id, 10) }

// selectHosts resolves an explicit host list or a selector over the hosts that are up.
func (c *Coordinator) selectHosts(hosts []string, selector map[string]string) ([]string, error) {
	if len(hosts) > 0 {
		out := slices.Clone(hosts)
		slices.Sort(out)
		out = slices.Compact(out)
		for _, h := range out {
			if err := wire.ValidateToken("host", h); err != nil {
				return nil, wire.Wrap(wire.CodeInvalidArgument, err)
			}
		}
		return out, nil
	}
	out := c.reg.selectUp(selector, time.Now())
	if len(out) == 0 {
		return nil, wire.Errorf(wire.CodeNotFound, "no host that is up matches selector %v", selector)
	}
	return out, nil
}

// Snapshot takes a distributed atomic snapshot (see the package documentation) and stores it in
// the history. A snapshot where some host did not freeze in time is stored too, with Complete
// false and the missing hosts named; every host that froze is released either way.
func (c *Coordinator) Snapshot(ctx context.Context, req wire.SnapshotRequest) (*wire.SnapshotRecord, error) {
	if c.kv == nil {
		return nil, ErrNotRunning
	}
	ctx, cancel := c.bind(ctx)
	defer cancel()
	hosts, err := c.selectHosts(req.Hosts, req.Selector)
	if err != nil {
		return nil, err
	}
	timeout := c.opts.SnapshotTimeout
	if req.TimeoutMillis > 0 {
		timeout = min(timeout, time.Duration(req.TimeoutMillis)*time.Millisecond)
	}
	epoch, err := c.nextCounter(ctx, "epoch")
	if err != nil {
		return nil, wire.Wrap(wire.CodeInternal, err)
	}
	rec := &wire.SnapshotRecord{ID: epoch, Started: time.Now().UTC(), Hosts: []wire.HostCut{}}
	begin, _ := json.Marshal(wire.SnapshotBegin{Epoch: epoch, LeaseMillis: c.opts.SnapshotLease.Milliseconds()})
	t0 := time.Now()
	replies, missing, err := c.scatter(ctx, hosts, wire.AgentSnapshotBegin, func(string) []byte { return begin }, timeout)
	if err != nil && ctx.Err() != nil {
		return nil, wire.Wrap(wire.CodeUnavailable, err) // coordinator stopping: the lease releases the hosts
	}
	if err != nil {
		return nil, wire.Wrap(wire.CodeInternal, err)
	}
	rec.BeginMicros = time.Since(t0).Microseconds()
	var frozen []string
	for _, h := range hosts {
		r, ok := replies[h]
		if !ok || r.absent {
			continue
		}
		if r.err != nil {
			missing = append(missing, h)
			c.log.Warn("snapshot begin failed", "host", h, "err", r.err)
			continue
		}
		var br wire.SnapshotBeginReply
		if err := json.Unmarshal(r.result, &br); err != nil || br.Status != wire.SnapFrozen || br.Epoch != epoch {
			missing = append(missing, h)
			c.log.Warn("snapshot begin not frozen", "host", h, "status", br.Status, "err", err)
			continue
		}
		frozen = append(frozen, h)
		rec.Hosts = append(rec.Hosts, wire.HostCut{Host: h, Tails: br.Tails, Watermark: br.Watermark, FrozenAt: br.FrozenAt})
	}
	if c.opts.SnapshotEndDelay > 0 {
		select {
		case <-ctx.Done():
			return nil, wire.Errorf(wire.CodeUnavailable, "coordinator stopped during snapshot %d", epoch)
		case <-time.After(c.opts.SnapshotEndDelay):
		}
	}
	// Phase two: release, and wait (bounded) for the hosts to confirm, so that when Snapshot
	// returns the hosts query live data again. A lost end is covered by the lease.
	end, _ := json.Marshal(wire.SnapshotEnd{Epoch: epoch})
	var ended map[string]hostReply
	var unconfirmed []string
	if len(frozen) > 0 {
		ended, unconfirmed, err = c.scatter(ctx, frozen, wire.AgentSnapshotEnd, func(string) []byte { return end }, timeout)
		if err != nil && ctx.Err() != nil {
			return nil, wire.Wrap(wire.CodeUnavailable, err)
		}
	}
	rec.FrozenMicros = time.Since(t0).Microseconds()
	for h, r := range ended {
		if r.err != nil {
			unconfirmed = append(unconfirmed, h)
		}
	}
	if len(unconfirmed) > 0 {
		c.log.Warn("snapshot end not confirmed: the lease releases them", "epoch", epoch, "hosts", len(unconfirmed))
	}
	c.met.snapFrozen.Observe(time.Since(t0).Seconds())
	slices.Sort(missing)
	rec.Missing = slices.Compact(missing)
	rec.Complete = len(rec.Missing) == 0
	for i, hc := range rec.Hosts {
		if i == 0 || hc.Watermark < rec.CutTime {
			rec.CutTime = hc.Watermark
		}
	}
	if err := c.putJSON(ctx, snapshotKey(epoch), rec); err != nil {
		return nil, wire.Wrap(wire.CodeInternal, fmt.Errorf("coordinator: store snapshot %d: %w", epoch, err))
	}
	if rec.Complete {
		c.met.snapshots.Inc()
	} else {
		c.met.snapFailed.Inc()
	}
	return rec, nil
}

// GetSnapshot returns a stored snapshot.
func (c *Coordinator) GetSnapshot(ctx context.Context, id uint64) (*wire.SnapshotRecord, error) {
	var rec wire.SnapshotRecord
	if _, err := c.getJSON(ctx, snapshotKey(id), &rec); err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, wire.Errorf(wire.CodeNotFound, "snapshot %d does not exist", id)
		}
		return nil, wire.Wrap(wire.CodeInternal, err)
	}
	return &rec, nil
}

// Snapshots lists stored snapshots, newest first (limit 0: the SnapshotHistory option).
func (c *Coordinator) Snapshots(ctx context.Context, limit int) (*wire.SnapshotList, error) {
	if limit <= 0 {
		limit = c.opts.SnapshotHistory
	}
	n, err := c.counter(ctx, "epoch")
	if err != nil {
		return nil, wire.Wrap(wire.CodeInternal, err)
	}
	out := &wire.SnapshotList{Snapshots: []wire.SnapshotRecord{}}
	for id := n; id >= 1 && len(out.Snapshots) < limit; id-- {
		rec, err := c.GetSnapshot(ctx, id)
		if err != nil {
			continue // an epoch whose coordinator died before storing it
		}
		out.Snapshots = append(out.Snapshots, *rec)
	}
	return out, nil
}
