package coordinator

import (
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/confluo-go/confluo/pkg/wire"
)

// registry is the fleet as seen through heartbeats. Safe for concurrent use.
type registry struct {
	interval time.Duration // assumed when a heartbeat states none
	missed   int

	mu    sync.Mutex // guards hosts
	hosts map[string]*hostEntry
}

type hostEntry struct {
	hb       wire.AgentHeartbeat
	lastSeen time.Time
	up       bool // as of the last sweep or heartbeat
}

type stateChange struct {
	host string
	up   bool
}

func newRegistry(interval time.Duration, missed int) *registry {
	return &registry{interval: interval, missed: missed, hosts: map[string]*hostEntry{}}
}

func (r *registry) intervalOf(e *hostEntry) time.Duration {
	if e.hb.IntervalMillis > 0 {
		return time.Duration(e.hb.IntervalMillis) * time.Millisecond
	}
	return r.interval
}

// observe records a heartbeat; it reports whether the host came up (new or back).
func (r *registry) observe(hb wire.AgentHeartbeat, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.hosts[hb.Host]
	if !ok {
		e = &hostEntry{}
		r.hosts[hb.Host] = e
	}
	wasUp := e.up
	e.hb, e.lastSeen, e.up = hb, now, true
	return !wasUp
}

// ack records the outcome of an apply (so status is right before the next heartbeat).
func (r *registry) ack(a wire.ConfigAck) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.hosts[a.Host]
	if !ok {
		return
	}
	if a.Error == nil {
		e.hb.ConfigRevision, e.hb.ConfigError = a.Revision, nil
	} else {
		e.hb.ConfigError = a.Error
	}
}

func (r *registry) missedLocked(e *hostEntry, now time.Time) int {
	return int(now.Sub(e.lastSeen) / r.intervalOf(e))
}

// sweep marks hosts down that missed too many heartbeats and returns the changes.
func (r *registry) sweep(now time.Time) []stateChange {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []stateChange
	for h, e := range r.hosts {
		up := r.missedLocked(e, now) < r.missed
		if up != e.up {
			e.up = up
			out = append(out, stateChange{h, up})
		}
	}
	return out
}

// isDown reports whether host is known and has missed too many heartbeats (an unknown host is
// not down: a restarted coordinator has not heard from anyone yet).
func (r *registry) isDown(host string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.hosts[host]
	return ok && r.missedLocked(e, now) >= r.missed
}

// isUp reports whether host is up now.
func (r *registry) isUp(host string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.hosts[host]
	return ok && r.missedLocked(e, now) < r.missed
}

// status lists hosts matching selector, sorted by name.
func (r *registry) status(selector map[string]string, now time.Time, assigned func(string) uint64) []wire.HostStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]wire.HostStatus, 0, len(r.hosts))
	for h, e := range r.hosts {
		if !matches(e.hb.Labels, selector) {
			continue
		}
		missed := r.missedLocked(e, now)
		out = append(out, wire.HostStatus{
			Host:           h,
			Up:             missed < r.missed,
			Labels:         maps.Clone(e.hb.Labels),
			Version:        e.hb.Version,
			LastSeen:       e.lastSeen.UTC(),
			Missed:         missed,
			ConfigRevision: e.hb.ConfigRevision,
			ConfigError:    e.hb.ConfigError,
			Capture:        e.hb.Capture,
			Records:        e.hb.Records,
		})
	}
	slices.SortFunc(out, func(a, b wire.HostStatus) int {
		switch {
		case a.Host < b.Host:
			return -1
		case a.Host > b.Host:
			return 1
		}
		return 0
	})
	if assigned != nil {
		for i := range out {
			out[i].Assigned = assigned(out[i].Host)
		}
	}
	return out
}

// selectUp returns the names of the up hosts matching selector, sorted.
func (r *registry) selectUp(selector map[string]string, now time.Time) []string {
	var out []string
	for _, s := range r.status(selector, now, nil) {
		if s.Up {
			out = append(out, s.Host)
		}
	}
	return out
}

func (r *registry) counts(now time.Time) (up, down int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.hosts {
		if r.missedLocked(e, now) < r.missed {
			up++
		} else {
			down++
		}
	}
	return up, down
}

// matches reports whether labels has every key=value of selector.
func matches(labels, selector map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}
