package pcapsrc_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"go.uber.org/goleak"

	"github.com/confluo-go/confluo/pkg/packet"
	"github.com/confluo-go/confluo/pkg/spray"
	"github.com/confluo-go/confluo/pkg/spray/internal/testframes"
	"github.com/confluo-go/confluo/pkg/spray/pcapsrc"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var start = time.Unix(1700000000, 0)

func writeFile(t testing.TB, ng bool, pkts []testframes.Packet) string {
	t.Helper()
	var buf bytes.Buffer
	var err error
	if ng {
		err = testframes.WritePcapng(&buf, pkts)
	} else {
		err = testframes.WritePcap(&buf, pkts)
	}
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "trace.pcap")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// collect runs the source directly and returns copies of every frame handed out.
func collect(t *testing.T, src *pcapsrc.Source) []spray.Frame {
	t.Helper()
	var out []spray.Frame
	err := src.Run(context.Background(), 0, func(fr []spray.Frame) {
		for _, f := range fr {
			f.Data = bytes.Clone(f.Data)
			out = append(out, f)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestReplayFormatsAndModes(t *testing.T) {
	pkts := testframes.Mixed(testframes.Flows(20), 500, 96, start)
	for _, ng := range []bool{false, true} {
		for _, preload := range []bool{false, true} {
			name := map[bool]string{false: "pcap", true: "pcapng"}[ng] + map[bool]string{false: "/stream", true: "/preload"}[preload]
			t.Run(name, func(t *testing.T) {
				path := writeFile(t, ng, pkts)
				src, err := pcapsrc.Open(path, pcapsrc.Options{Loops: 2, Preload: preload, Burst: 7})
				if err != nil {
					t.Fatal(err)
				}
				got := collect(t, src)
				if len(got) != 2*len(pkts) {
					t.Fatalf("replayed %d frames, want %d (2 loops of %d)", len(got), 2*len(pkts), len(pkts))
				}
				var last int64
				for i, f := range got {
					p := pkts[i%len(pkts)]
					if !bytes.Equal(f.Data, p.Data) || f.WireLen != p.WireLen {
						t.Fatalf("frame %d: %d/%d bytes differ from the %d/%d written", i, len(f.Data), f.WireLen, len(p.Data), p.WireLen)
					}
					if i < len(pkts) && f.Timestamp != p.Time.UnixNano() {
						t.Fatalf("frame %d: timestamp %d, want recorded %d", i, f.Timestamp, p.Time.UnixNano())
					}
					if f.Timestamp <= last {
						t.Fatalf("frame %d: timestamp %d not after %d (loops must not go back in time)", i, f.Timestamp, last)
					}
					last = f.Timestamp
				}
				st := src.Stats()
				if st.Received != uint64(2*len(pkts)) || src.Loops() != 2 {
					t.Fatalf("stats %+v loops %d", st, src.Loops())
				}
			})
		}
	}
}

func TestRetimeAndPace(t *testing.T) {
	pkts := testframes.Mixed(testframes.Flows(3), 30, 0, start) // 30 µs of capture
	path := writeFile(t, false, pkts)
	before := time.Now().UnixNano()
	src, err := pcapsrc.Open(path, pcapsrc.Options{Retime: true, Pace: true, Speed: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	got := collect(t, src)
	if len(got) != 30 {
		t.Fatalf("%d frames", len(got))
	}
	for i, f := range got {
		if f.Timestamp < before {
			t.Fatalf("frame %d: retimed timestamp %d is before the replay started (%d)", i, f.Timestamp, before)
		}
		if i > 0 && f.Timestamp-got[i-1].Timestamp != int64(time.Microsecond) {
			t.Fatalf("frame %d: gap %d ns, want the recorded 1000", i, f.Timestamp-got[i-1].Timestamp)
		}
	}
}

func TestBadFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if _, err := pcapsrc.Open(write("empty", nil), pcapsrc.Options{}); !errors.Is(err, pcapsrc.ErrFormat) {
		t.Errorf("empty file: %v, want ErrFormat", err)
	}
	if _, err := pcapsrc.Open(write("junk", []byte("this is not a capture file at all")), pcapsrc.Options{}); !errors.Is(err, pcapsrc.ErrFormat) {
		t.Errorf("junk file: %v, want ErrFormat", err)
	}
	if _, err := pcapsrc.Open(filepath.Join(dir, "missing"), pcapsrc.Options{}); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want ErrNotExist", err)
	}
	// A frame cut in the middle of its record.
	var buf bytes.Buffer
	if err := testframes.WritePcap(&buf, testframes.Mixed(testframes.Flows(2), 10, 0, start)); err != nil {
		t.Fatal(err)
	}
	cut := write("cut", buf.Bytes()[:buf.Len()-20])
	if _, err := pcapsrc.Open(cut, pcapsrc.Options{Preload: true}); !errors.Is(err, pcapsrc.ErrFormat) {
		t.Errorf("cut file preloaded: %v, want ErrFormat", err)
	}
	src, err := pcapsrc.Open(cut, pcapsrc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	err = src.Run(context.Background(), 0, func(fr []spray.Frame) { n += len(fr) })
	if !errors.Is(err, pcapsrc.ErrFormat) || n != 9 {
		t.Errorf("cut file streamed: %d frames, err %v; want 9 frames and ErrFormat", n, err)
	}
	// A link type that cannot become Ethernet.
	user := bytes.Clone(buf.Bytes())
	binary.LittleEndian.PutUint32(user[20:], 147) // LINKTYPE_USER0
	if _, err := pcapsrc.Open(write("user0", user), pcapsrc.Options{}); !errors.Is(err, pcapsrc.ErrLinkType) {
		t.Errorf("USER0 file: %v, want ErrLinkType", err)
	}
	if _, err := pcapsrc.Open(cut, pcapsrc.Options{Preload: true, MaxPreloadBytes: 100}); !errors.Is(err, pcapsrc.ErrTooLarge) {
		t.Errorf("preload over the limit: %v, want ErrTooLarge", err)
	}
	if _, err := pcapsrc.Open(cut, pcapsrc.Options{Loops: -2}); !errors.Is(err, pcapsrc.ErrInvalidOptions) {
		t.Errorf("loops -2: %v, want ErrInvalidOptions", err)
	}
}

func TestCloseStopsEndlessReplay(t *testing.T) {
	path := writeFile(t, false, testframes.Mixed(testframes.Flows(2), 10, 0, start))
	src, err := pcapsrc.Open(path, pcapsrc.Options{Loops: -1, Preload: true})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var runErr error
	wg.Go(func() { runErr = src.Run(context.Background(), 0, func([]spray.Frame) {}) })
	for src.Loops() < 3 {
		time.Sleep(time.Millisecond)
	}
	src.Close()
	wg.Wait()
	if runErr != nil {
		t.Fatal(runErr)
	}
}

// TestSprayFromPcap is the embedded default end to end: file -> decode -> 2 rings, consumers
// draining; every frame becomes one record and both directions of a flow share a ring.
func TestSprayFromPcap(t *testing.T) {
	flows := testframes.Flows(100)
	pkts := testframes.Mixed(flows, 5000, 128, start)
	src, err := pcapsrc.Open(writeFile(t, true, pkts), pcapsrc.Options{Loops: 3})
	if err != nil {
		t.Fatal(err)
	}
	s, err := spray.New(src, spray.Options{Rings: 2, RingCapacity: 256, Full: spray.Wait})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	done := make(chan struct{})
	counts := make([]int, 2)
	for r := range 2 {
		wg.Go(func() {
			rg := s.Ring(r)
			for {
				p := rg.Peek(32)
				if len(p) == 0 {
					select {
					case <-done:
						if rg.Len() == 0 {
							return
						}
					default:
						time.Sleep(20 * time.Microsecond)
					}
					continue
				}
				for i := 0; i < len(p); i += packet.RecordSize {
					if h := binary.LittleEndian.Uint32(p[i+packet.OffFlowHash:]); int(h%2) != r {
						t.Errorf("hash %#x on ring %d", h, r)
					}
				}
				counts[r] += len(p) / packet.RecordSize
				rg.Release(len(p) / packet.RecordSize)
			}
		})
	}
	if err := s.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	close(done)
	wg.Wait()
	st := s.Stats()
	want := uint64(3 * len(pkts))
	if st.Source.Received != want || st.Enqueued != want || counts[0]+counts[1] != int(want) || st.DroppedRingFull != 0 || st.DecodeErrors != 0 {
		t.Fatalf("stats %+v, consumers %v; want %d of everything", st, counts, want)
	}
	if counts[0] == 0 || counts[1] == 0 {
		t.Fatalf("one ring got nothing: %v", counts)
	}
}

// TestRawIPCapture replays a LINKTYPE_RAW capture: frames come out as Ethernet (pcapio's
// conversion) and decode as IPv4.
func TestRawIPCapture(t *testing.T) {
	pkts := testframes.Mixed(testframes.Flows(4), 40, 0, start)
	var buf bytes.Buffer
	w := pcapgo.NewWriterNanos(&buf)
	if err := w.WriteFileHeader(65535, layers.LinkTypeRaw); err != nil {
		t.Fatal(err)
	}
	for _, p := range pkts {
		ip := p.Data[14:]
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: p.Time, CaptureLength: len(ip), Length: len(ip)}, ip); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "raw.pcap")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	src, err := pcapsrc.Open(path, pcapsrc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := spray.New(src, spray.Options{Rings: 1, RingCapacity: 64})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if st.Enqueued != 40 || st.DecodeErrors != 0 || st.Source.Errors != 0 {
		t.Fatalf("stats %+v, want 40 records without errors", st)
	}
	rec := make([]byte, packet.RecordSize)
	for s.Ring(0).Dequeue(rec) {
		if binary.LittleEndian.Uint32(rec[packet.OffPresence:])&packet.PresIPv4 == 0 {
			t.Fatalf("record without IPv4: presence %#x", binary.LittleEndian.Uint32(rec[packet.OffPresence:]))
		}
	}
}
