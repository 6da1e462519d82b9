package spray_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/confluo-go/confluo/pkg/packet"
	"github.com/confluo-go/confluo/pkg/spray"
	"github.com/confluo-go/confluo/pkg/spray/internal/testframes"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeSource hands out frames whose first 8 bytes are (flow << 32 | seq-in-flow), in bursts.
type fakeSource struct {
	queues  int
	perFlow int
	flows   int
	burst   int
	recv    atomic.Uint64
	closed  atomic.Bool
	runErr  error
}

func (f *fakeSource) Queues() int { return f.queues }
func (f *fakeSource) Run(ctx context.Context, q int, burst func([]spray.Frame)) error {
	buf := make([]byte, 8*f.burst)
	frames := make([]spray.Frame, 0, f.burst)
	for seq := range f.perFlow {
		for fl := range f.flows {
			if f.queues > 1 && fl%f.queues != q { // "kernel" spray: flow fl on queue fl%queues
				continue
			}
			if ctx.Err() != nil || f.closed.Load() {
				return nil
			}
			b := buf[8*len(frames) : 8*len(frames)+8]
			binary.LittleEndian.PutUint64(b, uint64(fl)<<32|uint64(seq))
			frames = append(frames, spray.Frame{Data: b, WireLen: 100, Timestamp: int64(seq)})
			if len(frames) == f.burst {
				burst(frames)
				f.recv.Add(uint64(len(frames)))
				frames = frames[:0]
			}
		}
	}
	if len(frames) > 0 {
		burst(frames)
		f.recv.Add(uint64(len(frames)))
	}
	return f.runErr
}
func (f *fakeSource) Stats() spray.SourceStats { return spray.SourceStats{Received: f.recv.Load()} }
func (f *fakeSource) Close() error             { f.closed.Store(true); return nil }

// idDecoder copies the frame's id into a 16-byte record and hashes by flow.
type idDecoder struct{}

func (idDecoder) Decode(rec, frame []byte, wireLen int, ts int64) uint32 {
	copy(rec, frame[:8])
	binary.LittleEndian.PutUint64(rec[8:], uint64(ts))
	return binary.LittleEndian.Uint32(frame[4:8]) * 2654435761
}

// drain consumes every ring until stop is closed and the rings are empty, checking that each
// flow lives on one ring and arrives in order, and returns the records seen per ring.
func drain(t *testing.T, s *spray.Spray, stop <-chan struct{}, slow bool) []int {
	t.Helper()
	counts := make([]int, s.Rings())
	var wg sync.WaitGroup
	var mu sync.Mutex
	flowRing := map[uint32]int{}
	for r := range s.Rings() {
		wg.Go(func() {
			rg := s.Ring(r)
			next := map[uint32]uint32{}
			for {
				p := rg.Peek(7)
				if len(p) == 0 {
					select {
					case <-stop:
						if rg.Len() == 0 {
							return
						}
					default:
					}
					time.Sleep(50 * time.Microsecond)
					continue
				}
				for i := 0; i < len(p); i += rg.RecordSize() {
					seq := binary.LittleEndian.Uint32(p[i:])
					flow := binary.LittleEndian.Uint32(p[i+4:])
					if want, ok := next[flow]; ok && seq < want {
						t.Errorf("ring %d flow %d: seq %d after %d (reordered or duplicated)", r, flow, seq, want)
					}
					next[flow] = seq + 1
					mu.Lock()
					if o, ok := flowRing[flow]; ok && o != r {
						t.Errorf("flow %d on rings %d and %d", flow, o, r)
					}
					flowRing[flow] = r
					mu.Unlock()
					counts[r]++
				}
				rg.Release(len(p) / rg.RecordSize())
				if slow {
					time.Sleep(20 * time.Microsecond)
				}
			}
		})
	}
	wg.Wait()
	return counts
}

func TestSpraySoftwareHashWait(t *testing.T) {
	src := &fakeSource{queues: 1, perFlow: 300, flows: 50, burst: 32}
	s, err := spray.New(src, spray.Options{Rings: 3, RingCapacity: 16, RecordSize: 16,
		NewDecoder: func() spray.Decoder { return idDecoder{} }, Full: spray.Wait})
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var counts []int
	done := make(chan struct{})
	go func() { counts = drain(t, s, stop, true); close(done) }()
	if err := s.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	close(stop)
	<-done
	st := s.Stats()
	total := 300 * 50
	if st.Received != uint64(total) || st.Decoded != uint64(total) || st.Enqueued != uint64(total) || st.DroppedRingFull != 0 {
		t.Fatalf("stats %+v, want %d received, decoded and enqueued, none dropped", st, total)
	}
	sum := 0
	for r, c := range counts {
		if c == 0 {
			t.Errorf("ring %d got no records", r)
		}
		if uint64(c) != st.Rings[r].Enqueued {
			t.Errorf("ring %d: consumer saw %d, stats say %d enqueued", r, c, st.Rings[r].Enqueued)
		}
		sum += c
	}
	if sum != total || st.Source.Received != uint64(total) {
		t.Fatalf("consumers saw %d, source %d, want %d", sum, st.Source.Received, total)
	}
}

func TestSprayDropCountsWhenFull(t *testing.T) {
	src := &fakeSource{queues: 1, perFlow: 100, flows: 10, burst: 16}
	s, err := spray.New(src, spray.Options{Rings: 2, RingCapacity: 8, RecordSize: 16,
		NewDecoder: func() spray.Decoder { return idDecoder{} }})
	if err != nil {
		t.Fatal(err)
	}
	// No consumer: each ring keeps its first 8 records, the rest are dropped and counted.
	if err := s.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if st.Enqueued != 16 || st.DroppedRingFull != 1000-16 || st.Received != 1000 {
		t.Fatalf("stats %+v, want 16 enqueued and 984 dropped of 1000", st)
	}
	for r, rs := range st.Rings {
		if rs.Enqueued != 8 || rs.Len != 8 || rs.Enqueued+rs.DroppedRingFull == 0 {
			t.Errorf("ring %d: %+v, want 8 enqueued and waiting", r, rs)
		}
	}
}

func TestSprayKernelQueuesFeedTheirRing(t *testing.T) {
	src := &fakeSource{queues: 4, perFlow: 200, flows: 40, burst: 8}
	s, err := spray.New(src, spray.Options{Rings: 4, RingCapacity: 64, RecordSize: 16,
		NewDecoder: func() spray.Decoder { return idDecoder{} }, Full: spray.Wait})
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan []int)
	go func() { done <- drain(t, s, stop, false) }()
	if err := s.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	close(stop)
	counts := <-done
	for r, c := range counts {
		if c != 10*200 { // queue r carries flows r, r+4, ...: 10 flows of 200
			t.Errorf("ring %d saw %d records, want 2000 (queue %d's flows only)", r, c, r)
		}
	}
}

func TestSprayRunErrorAndCancel(t *testing.T) {
	boom := errors.New("boom")
	src := &fakeSource{queues: 1, perFlow: 1, flows: 1, burst: 1, runErr: boom}
	s, err := spray.New(src, spray.Options{RecordSize: 16, NewDecoder: func() spray.Decoder { return idDecoder{} }})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(context.Background()); !errors.Is(err, boom) {
		t.Fatalf("Run error = %v, want boom", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	src2 := &fakeSource{queues: 1, perFlow: 1 << 30, flows: 1, burst: 1}
	s2, _ := spray.New(src2, spray.Options{RecordSize: 16, NewDecoder: func() spray.Decoder { return idDecoder{} }})
	if err := s2.Run(ctx); err != nil {
		t.Fatalf("Run on a cancelled context = %v, want nil", err)
	}
}

func TestOptionsValidate(t *testing.T) {
	src := &fakeSource{queues: 3}
	dec := func() spray.Decoder { return idDecoder{} }
	for name, o := range map[string]spray.Options{
		"rings":         {Rings: -1},
		"capacity":      {RingCapacity: -5},
		"burst":         {Burst: 33},
		"policy":        {Full: 9},
		"decoder size":  {NewDecoder: dec},
		"queues/rings":  {Rings: 2, RecordSize: 16, NewDecoder: dec},
		"packet record": {RecordSize: 10, NewDecoder: spray.NewPacketDecoder, Rings: 3},
	} {
		if _, err := spray.New(src, o); !errors.Is(err, spray.ErrInvalidOptions) {
			t.Errorf("%s: New error = %v, want ErrInvalidOptions", name, err)
		}
	}
	if _, err := spray.New(nil, spray.Options{}); !errors.Is(err, spray.ErrInvalidOptions) {
		t.Errorf("nil source: %v", err)
	}
	if err := spray.DefaultOptions().Validate(); err != nil {
		t.Errorf("defaults invalid: %v", err)
	}
}

// frameSource replays fixed frames once, one queue.
type frameSource struct {
	pkts []testframes.Packet
}

func (f *frameSource) Queues() int { return 1 }
func (f *frameSource) Run(ctx context.Context, q int, burst func([]spray.Frame)) error {
	fr := make([]spray.Frame, 0, 32)
	for i, p := range f.pkts {
		fr = append(fr, spray.Frame{Data: p.Data, WireLen: p.WireLen, Timestamp: p.Time.UnixNano()})
		if len(fr) == cap(fr) || i == len(f.pkts)-1 {
			burst(fr)
			fr = fr[:0]
		}
	}
	return nil
}
func (f *frameSource) Stats() spray.SourceStats { return spray.SourceStats{} }
func (f *frameSource) Close() error             { return nil }

// TestSprayPacketDecoder runs real frames through the default packet decoder: both directions
// of a flow land on one ring, the ring is hash % N, and bad frames are counted by reason.
func TestSprayPacketDecoder(t *testing.T) {
	flows := testframes.Flows(64)
	pkts := testframes.Mixed(flows, 2000, 0, time.Unix(1700000000, 0))
	good := len(pkts)
	// Truncated headers (snaplen inside the IP header) and a malformed IPv4 header.
	trunc := testframes.Frame(flows[0], 10, 1)[:20]
	bad := testframes.Frame(flows[1], 10, 1)
	bad[14] = 0x42 // IHL 2
	pkts = append(pkts, testframes.Packet{Data: trunc, WireLen: 80}, testframes.Packet{Data: bad, WireLen: len(bad)})
	s, err := spray.New(&frameSource{pkts: pkts}, spray.Options{Rings: 4, RingCapacity: 4096})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if st.Enqueued != uint64(good+2) || st.Truncated != 1 || st.DecodeErrors != 1 {
		t.Fatalf("stats %+v, want %d enqueued, 1 truncated, 1 decode error", st, good+2)
	}
	flowRing := map[[2]uint64]int{}
	for r := range s.Rings() {
		rg := s.Ring(r)
		for {
			p := rg.Peek(64)
			if len(p) == 0 {
				break
			}
			for i := 0; i < len(p); i += packet.RecordSize {
				rec := p[i : i+packet.RecordSize]
				h := binary.LittleEndian.Uint32(rec[packet.OffFlowHash:])
				if int(h%4) != r {
					t.Fatalf("record with hash %#x on ring %d, want %d", h, r, h%4)
				}
				if rec[packet.OffDecodeError] != 0 {
					continue
				}
				src := binary.BigEndian.Uint32(rec[packet.OffSrcIP:])
				dst := binary.BigEndian.Uint32(rec[packet.OffDstIP:])
				k := [2]uint64{uint64(min(src, dst)), uint64(max(src, dst))}
				if o, ok := flowRing[k]; ok && o != r {
					t.Fatalf("flow %x: both rings %d and %d (hash not symmetric?)", k, o, r)
				}
				flowRing[k] = r
			}
			rg.Release(len(p) / packet.RecordSize)
		}
	}
	if len(flowRing) != len(flows) {
		t.Fatalf("saw %d flows, want %d", len(flowRing), len(flows))
	}
}

func TestRegisterMetrics(t *testing.T) {
	src := &fakeSource{queues: 1, perFlow: 10, flows: 10, burst: 4}
	s, err := spray.New(src, spray.Options{Rings: 2, RingCapacity: 4, RecordSize: 16,
		NewDecoder: func() spray.Decoder { return idDecoder{} }})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	if err := s.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	if err := s.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	series := 0
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			series++
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += "{" + l.GetName() + "=" + l.GetValue() + "}"
			}
			if m.GetCounter() != nil {
				got[key] = m.GetCounter().GetValue()
			} else {
				got[key] = m.GetGauge().GetValue()
			}
		}
	}
	for key, want := range map[string]float64{
		"confluo_spray_received_total":                      100,
		"confluo_spray_enqueued_total":                      8,
		"confluo_spray_dropped_total{reason=ring_full}":     92,
		"confluo_spray_ring_records{ring=1}":                4,
		"confluo_spray_source_dropped_total{reason=kernel}": 0,
	} {
		if got[key] != want {
			t.Errorf("%s = %v, want %v", key, got[key], want)
		}
	}
	if series != 16 {
		t.Errorf("%d series, want 16: %v", series, got)
	}
}

// TestWaitPolicyCancel: a Wait spray whose rings nobody drains must still stop on cancel,
// counting what it could not enqueue as dropped.
func TestWaitPolicyCancel(t *testing.T) {
	src := &fakeSource{queues: 1, perFlow: 1 << 20, flows: 4, burst: 8}
	s, err := spray.New(src, spray.Options{Rings: 2, RingCapacity: 4, RecordSize: 16,
		NewDecoder: func() spray.Decoder { return idDecoder{} }, Full: spray.Wait})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	for s.Ring(0).Len() < 4 || s.Ring(1).Len() < 4 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if st.Enqueued != 8 || st.Received != st.Enqueued+st.DroppedRingFull {
		t.Fatalf("stats %+v: want 8 enqueued and the rest of what was received dropped", st)
	}
	if err := s.Run(ctx); err != nil { // a second Run after the first ended is fine
		t.Fatal(err)
	}
}

// TestRawHeaderColumn: with a record larger than the packet record (packet.SchemaTextWithRaw),
// the spray fills the raw_header column with the first captured bytes, zero-padded.
func TestRawHeaderColumn(t *testing.T) {
	const raw = 64
	pkts := testframes.Mixed(testframes.Flows(2), 3, 0, time.Unix(1700000000, 0))
	pkts[2].Data = pkts[2].Data[:40]
	s, err := spray.New(&frameSource{pkts: pkts}, spray.Options{Rings: 1, RingCapacity: 8, RecordSize: packet.RecordSize + raw})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	rec := make([]byte, packet.RecordSize+raw)
	for i := range 3 {
		if !s.Ring(0).Dequeue(rec) {
			t.Fatalf("record %d missing", i)
		}
		want := make([]byte, raw)
		copy(want, pkts[i].Data)
		if got := rec[packet.RecordSize:]; !bytes.Equal(got, want) {
			t.Fatalf("record %d raw_header = %x, want %x", i, got, want)
		}
	}
}
