package ovs

import (
	"sync"

	"github.com/ovn-org/libovsdb/model"

	"github.com/confluo-go/confluo/ovs/internal/vswitch"
)

// rowWatches fans the row additions of one session's cache out to the
// rowWatch values open on it. Safe for concurrent use.
type rowWatches struct {
	mu sync.Mutex // guards open
	// open: watches receiving events.
	open map[*rowWatch]struct{}
}

// watch starts recording the rows the cache adds from now on. The caller
// closes the watch when done.
func (ws *rowWatches) watch() *rowWatch {
	w := &rowWatch{ws: ws, wake: make(chan struct{}, 1)}
	w.mu.added = map[string]bool{}
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.open == nil {
		ws.open = map[*rowWatch]struct{}{}
	}
	ws.open[w] = struct{}{}
	return w
}

// added records that the cache added row m. libovsdb calls it from its event
// goroutine after the update that added the row is in the cache.
func (ws *rowWatches) added(m model.Model) {
	uuid := rowUUID(m)
	if uuid == "" {
		return
	}
	ws.mu.Lock()
	defer ws.mu.Unlock()
	for w := range ws.open {
		w.add(uuid)
	}
}

// changed wakes every open watch: the cache moved on.
func (ws *rowWatches) changed() {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	for w := range ws.open {
		w.notify()
	}
}

// rowWatch is the set of rows a session's cache added since the watch was
// opened. It tells a caller that the cache has applied its transaction even
// when a later transaction (someone else's) deleted the inserted rows again
// before a look at the cache could see them: then the cache's state alone
// would look exactly as before the commit. Safe for concurrent use.
type rowWatch struct {
	ws *rowWatches
	mu struct {
		sync.Mutex
		// added: UUIDs of rows added to the cache since the watch opened.
		added map[string]bool
	}
	// wake has capacity 1 and is signalled on every cache event, so a
	// waiter can look at the cache again at once.
	wake chan struct{}
}

func (w *rowWatch) add(uuid string) {
	w.mu.Lock()
	w.mu.added[uuid] = true
	w.mu.Unlock()
	w.notify()
}

func (w *rowWatch) notify() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// sawAdded reports whether the cache added every row in uuids since the watch
// opened (they may have been deleted again since).
func (w *rowWatch) sawAdded(uuids []string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, u := range uuids {
		if !w.mu.added[u] {
			return false
		}
	}
	return true
}

// close stops recording. It is idempotent.
func (w *rowWatch) close() {
	w.ws.mu.Lock()
	defer w.ws.mu.Unlock()
	delete(w.ws.open, w)
}

// rowUUID returns the UUID of a row of one of the monitored tables, or "".
func rowUUID(m model.Model) string {
	switch r := m.(type) {
	case *vswitch.Mirror:
		return r.UUID
	case *vswitch.Port:
		return r.UUID
	case *vswitch.Interface:
		return r.UUID
	case *vswitch.Bridge:
		return r.UUID
	case *vswitch.OpenvSwitch:
		return r.UUID
	}
	return ""
}
