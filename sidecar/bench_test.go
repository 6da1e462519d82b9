package sidecar

import (
	"context"
	"testing"

	"github.com/confluo-go/confluo/pkg/multilog"
	"github.com/confluo-go/confluo/pkg/packet"
	"github.com/confluo-go/confluo/pkg/schema"
)

// BenchmarkPcapPipeline replays the sample capture (preloaded, 20 passes) through the whole
// capture path: pcap source -> spray (decode, flow hash) -> 2 rings -> 2 writers -> MultiLog.
func BenchmarkPcapPipeline(b *testing.B) {
	sch, err := schema.Parse(packet.SchemaText)
	if err != nil {
		b.Fatal(err)
	}
	o := DefaultOptions().Capture
	o.Source, o.File, o.Loops = "pcap", samplePcap, 20
	var records uint64
	b.ReportAllocs()
	for b.Loop() {
		ml, err := multilog.New(sch, multilog.Options{Writers: o.Rings, SegmentBytes: 16 << 20})
		if err != nil {
			b.Fatal(err)
		}
		p, err := newPipeline(o, ml, nil)
		if err != nil {
			b.Fatal(err)
		}
		if err := p.Run(context.Background()); err != nil {
			b.Fatal(err)
		}
		st := p.Stats()
		if st.Stored != st.Received || st.Stored == 0 {
			b.Fatalf("stored %d of %d", st.Stored, st.Received)
		}
		records += st.Stored
		_ = ml.Close()
	}
	b.ReportMetric(float64(records)/b.Elapsed().Seconds(), "records/s")
}
