package engine

import (
	"context"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/confluo-go/confluo/pkg/multilog"
	"github.com/confluo-go/confluo/pkg/packet"
	"github.com/confluo-go/confluo/pkg/schema"
	"github.com/confluo-go/confluo/pkg/wire"
)

// sampleRecords decodes the sample capture into packet records.
func sampleRecords(tb testing.TB) []byte {
	f, err := os.Open("../../testdata/dev_sample.pcap")
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		tb.Fatal(err)
	}
	dec := packet.NewDecoder(packet.DefaultOptions())
	var recs []byte
	rec := make([]byte, packet.RecordSize)
	for {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			break
		}
		dec.Decode(rec, data, ci.Length, ci.Timestamp.UnixNano())
		recs = append(recs, rec...)
	}
	return recs
}

// BenchmarkIngestDuringScan measures one writer's append rate alone and while another
// goroutine runs full-range scans through the Store (the API's query path), the acceptance
// check that a query cannot starve ingest (compare the two records/s figures).
func BenchmarkIngestDuringScan(b *testing.B) {
	sch, err := schema.Parse(packet.SchemaText)
	if err != nil {
		b.Fatal(err)
	}
	recs := sampleRecords(b)
	const batch = 256
	rs := packet.RecordSize
	for _, scan := range []bool{false, true} {
		name := "alone"
		if scan {
			name = "with-full-scan"
		}
		b.Run(name, func(b *testing.B) {
			ml, err := multilog.New(sch, multilog.Options{Writers: 1, SegmentBytes: 64 << 20})
			if err != nil {
				b.Fatal(err)
			}
			store := NewStore(StoreOptions{}, nil)
			defer store.Close()
			if err := store.Add("packets", ml); err != nil {
				b.Fatal(err)
			}
			w := ml.Writer(0)
			// Seed the log so the scans have work from the start.
			for i := 0; i+batch*rs <= len(recs); i += batch * rs {
				if err := w.AppendBatch(recs[i : i+batch*rs]); err != nil {
					b.Fatal(err)
				}
			}
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			var scans, scanned atomic.Uint64
			if scan {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for ctx.Err() == nil {
						reply, err := store.Query(ctx, wire.QueryRequest{MultiLog: "packets", Expr: "frame_len > 100000", Columns: []string{"timestamp"}}, 100000)
						if err != nil {
							b.Error(err)
							return
						}
						scans.Add(1)
						scanned.Add(reply.Version)
					}
				}()
			}
			off := 0
			n := 0
			b.ReportAllocs()
			for b.Loop() {
				if off+batch*rs > len(recs) {
					off = 0
				}
				if err := w.AppendBatch(recs[off : off+batch*rs]); err != nil {
					b.Fatal(err)
				}
				off += batch * rs
				n += batch
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
			cancel()
			wg.Wait()
			if scan {
				b.ReportMetric(float64(scans.Load()), "scans")
			}
		})
	}
}
