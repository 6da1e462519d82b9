package mlcut

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/confluo-go/confluo/pkg/fleet"
	"github.com/confluo-go/confluo/pkg/multilog"
	"github.com/confluo-go/confluo/pkg/schema"
	"github.com/confluo-go/confluo/pkg/wire"
)

// mlHost is a host over a real multilog with one writer: {timestamp, id: ULONG}. Freeze uses the
// multilog's Freeze/Unfreeze; the watermark is the timestamp of the last frozen record (one
// writer stamps in order, so every record at or below it is inside the frozen tails).
type mlHost struct {
	ml    *multilog.MultiLog
	idOff int

	mu  sync.Mutex // serialises the writer
	rec []byte
}

func newMLHost(t *testing.T) *mlHost {
	t.Helper()
	s, err := schema.Parse("{id: ULONG}")
	if err != nil {
		t.Fatal(err)
	}
	opts := multilog.DefaultOptions()
	opts.Writers, opts.ManualMonitor = 1, true
	ml, err := multilog.New(s, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ml.Close() })
	col, ok := s.Column("id")
	if !ok {
		t.Fatal("no id column")
	}
	return &mlHost{ml: ml, idOff: col.Offset, rec: make([]byte, s.RecordSize)}
}

func (h *mlHost) append(t *testing.T, id uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	binary.LittleEndian.PutUint64(h.rec, uint64(time.Now().UnixNano()))
	binary.LittleEndian.PutUint64(h.rec[h.idOff:], id)
	if err := h.ml.Writer(0).Append(h.rec); err != nil {
		t.Error(err)
	}
}

func (h *mlHost) Freeze() (fleet.Frozen, func()) {
	v := h.ml.Freeze()
	tails := v.Tails()
	var wm int64
	if tails[0] > 0 {
		rec, err := h.ml.Snapshot().Read(multilog.MakeRef(0, tails[0]-1))
		if err == nil {
			wm = int64(binary.LittleEndian.Uint64(rec))
		}
	}
	if wm == 0 {
		wm = 1 // nothing frozen: nothing is inside the cut
	}
	var once sync.Once
	return fleet.Frozen{Tails: tails, Watermark: wm}, func() { once.Do(h.ml.Unfreeze) }
}

func (h *mlHost) Query(_ context.Context, _ *wire.QueryRequest, pin *wire.Pin) (*wire.QueryReply, error) {
	if pin == nil {
		return nil, wire.Errorf(wire.CodeInvalidArgument, "this test host answers pinned queries only")
	}
	snap, err := h.ml.At(multilog.VersionOf(pin.Tails))
	if err != nil {
		return nil, wire.Wrap(wire.CodeInvalidArgument, err)
	}
	rep := &wire.QueryReply{Columns: []wire.ColumnInfo{{Name: "timestamp", Type: "ULONG"}, {Name: "id", Type: "ULONG"}}, Rows: [][]any{}}
	for seq := range pin.Tails[0] {
		rec, err := snap.Read(multilog.MakeRef(0, seq))
		if err != nil {
			return nil, wire.Wrap(wire.CodeInternal, err)
		}
		ts := int64(binary.LittleEndian.Uint64(rec))
		if ts > pin.CutTime {
			continue
		}
		rep.Rows = append(rep.Rows, []any{ts, binary.LittleEndian.Uint64(rec[h.idOff:])})
	}
	rep.Count = len(rep.Rows)
	return rep, nil
}

func (h *mlHost) Aggregate(context.Context, *wire.AggregateRequest, *wire.Pin) (*wire.AggregateReply, error) {
	return nil, wire.Errorf(wire.CodeUnavailable, "not in this test")
}

func (h *mlHost) Alerts(context.Context, *wire.AlertsRequest) (*wire.AlertsReply, error) {
	return nil, wire.Errorf(wire.CodeUnavailable, "not in this test")
}

// TestAtomicCutMultiLog is TestAtomicCut over two real multilogs (the in-process stand-in for
// the namespace-traffic test): with a packet injected between the sender's and the receiver's
// freeze, every packet received inside the cut was sent inside it.
func TestAtomicCutMultiLog(t *testing.T) {
	ctx := context.Background()
	ns := startServer(t, nil)
	nc := connect(t, ns.ClientURL())
	c := startCoordinator(t, nc, nil)
	send, recv := newMLHost(t), newMLHost(t)
	var (
		idMu   sync.Mutex
		nextID uint64
	)
	packet := func() {
		idMu.Lock()
		nextID++
		id := nextID
		idMu.Unlock()
		send.append(t, id) // the send record is appended before the receive record
		recv.append(t, id)
	}
	token := make(chan struct{}, 1)
	start := func(name string, f fleet.Freezer, r fleet.Responder) {
		a, err := fleet.NewAgent(nc, fleet.Options{Host: name, Freezer: f, Responder: r, DisableConfigWatch: true, HeartbeatInterval: fastHeartbeat})
		if err != nil {
			t.Fatal(err)
		}
		actx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.Run(actx) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	start("a-send", freezerFunc(func() (fleet.Frozen, func()) {
		f, release := send.Freeze()
		packet() // sent after the sender froze, received before the receiver freezes
		token <- struct{}{}
		return f, release
	}), send)
	start("b-recv", freezerFunc(func() (fleet.Frozen, func()) {
		select {
		case <-token:
		case <-time.After(2 * time.Second):
			t.Error("the sender never froze before the receiver")
		}
		return recv.Freeze()
	}), recv)
	waitUp(t, c, 2)

	hosts := []string{"a-send", "b-recv"}
	checked := 0
	for range 10 {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				packet()
				if i%32 == 0 {
					time.Sleep(50 * time.Microsecond)
				}
			}
		})
		time.Sleep(2 * time.Millisecond)
		snap, err := c.Snapshot(ctx, wire.SnapshotRequest{Hosts: hosts})
		close(stop)
		wg.Wait()
		if err != nil || !snap.Complete {
			t.Fatalf("snapshot %+v %v", snap, err)
		}
		ids := func(host string) map[string]bool {
			r, err := c.Query(ctx, wire.FleetQueryRequest{Hosts: []string{host}, Snapshot: snap.ID, Query: &wire.QueryRequest{}})
			if err != nil || r.Partial {
				t.Fatalf("pinned query %+v %v", r, err)
			}
			out := map[string]bool{}
			for _, row := range r.Rows {
				out[toString(row[1])] = true
			}
			return out
		}
		sends, recvs := ids("a-send"), ids("b-recv")
		for id := range recvs {
			if !sends[id] {
				t.Fatalf("snapshot %d: packet %s received inside the cut but sent outside it", snap.ID, id)
			}
		}
		checked += len(recvs)
	}
	if checked == 0 {
		t.Fatal("no packet inside any cut")
	}
	if _, frozen := send.ml.Frozen(); frozen {
		t.Error("sender multilog still frozen after the snapshots")
	}
	t.Logf("checked %d received packets over 10 cuts of two multilogs", checked)
}

func toString(v any) string { return fmt.Sprint(v) }
