// Command rsschild ingests packet-header-shaped records into a persisted MultiLog with a
// memory bound, an index, a filter and an aggregate, as a sidecar does for months, so that
// TestResidentMemoryUnderBound (package multilog) can sample its resident memory from outside.
// It is built without the race detector, whose shadow memory would swamp the figures.
//
// Usage: rsschild DIR TOTAL_BYTES BOUND_BYTES
//
// DIR "-" keeps everything in memory (no directory: the bound drops the oldest data).
//
// It prints "ready" once the MultiLog is open (the parent takes its baseline then), and
// "done <stats>" at the end.
package main

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/confluo-go/confluo/pkg/logstore"
	"github.com/confluo-go/confluo/pkg/multilog"
	"github.com/confluo-go/confluo/pkg/schema"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "rsschild:", err)
		os.Exit(1)
	}
}

func run() error {
	if len(os.Args) != 4 {
		return fmt.Errorf("usage: rsschild DIR TOTAL_BYTES BOUND_BYTES")
	}
	dir := os.Args[1]
	total, err1 := strconv.ParseInt(os.Args[2], 10, 64)
	bound, err2 := strconv.ParseInt(os.Args[3], 10, 64)
	if err1 != nil || err2 != nil {
		return fmt.Errorf("bad sizes %q %q", os.Args[2], os.Args[3])
	}
	// What a deployment does (the sidecar sets it from store.max_memory_bytes): a soft limit
	// for the Go heap, so garbage does not pile up above what the store keeps.
	debug.SetMemoryLimit(bound + 64<<20)
	s, err := schema.Parse(`{src_ip: IPV4, dst_ip: IPV4, sport: USHORT, dport: USHORT, proto: UCHAR,
		tcp_flags: UCHAR, ttl: UCHAR, dscp: UCHAR, len: UINT, flow_hash: UINT, in_port: USHORT, vlan: USHORT, tcp_seq: UINT}`)
	if err != nil {
		return err
	}
	p := multilog.Persistence{
		Dir:  dir,
		Mode: logstore.DurableRelaxed,
		Store: logstore.Options{
			MaxMemoryBytes:   bound,
			MaxDiskBytes:     4 * bound,
			CacheSegments:    2,
			MaintainInterval: 20 * time.Millisecond,
			SyncInterval:     20 * time.Millisecond,
		},
	}
	if dir == "-" {
		p.Dir, p.Mode, p.Store.MaxDiskBytes = "", logstore.InMemory, 0
	}
	ml, err := multilog.Open(s, multilog.Options{Writers: 2, ManualMonitor: true}, p)
	if err != nil {
		return err
	}
	defer ml.Close()
	if err := ml.AddIndex("dport", 0); err != nil {
		return err
	}
	if err := ml.AddFilter("web", "dport == 80 || dport == 443"); err != nil {
		return err
	}
	if err := ml.AddAggregate("web_bytes", "web", "SUM(len)"); err != nil {
		return err
	}
	fmt.Println("ready")

	const batch = 1024
	rs := s.RecordSize
	dport, _ := s.Column("dport")
	length, _ := s.Column("len")
	src, _ := s.Column("src_ip")
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, batch*rs)
	ts := int64(1795392000) * 1e9
	for n := int64(0); n < total; n += int64(len(buf)) {
		for i := range batch {
			rec := buf[i*rs : (i+1)*rs]
			ts += 1000
			binary.LittleEndian.PutUint64(rec, uint64(ts))
			binary.BigEndian.PutUint32(rec[src.Offset:], 10<<24|uint32(rng.IntN(1<<16)))
			binary.LittleEndian.PutUint16(rec[dport.Offset:], uint16(rng.IntN(50000)))
			binary.LittleEndian.PutUint32(rec[length.Offset:], uint32(64+rng.IntN(1400)))
		}
		if err := ml.Writer(int(n/int64(len(buf))) % 2).AppendBatch(buf); err != nil {
			return err
		}
		if (n/int64(len(buf)))%256 == 0 { // read as users do: recent data, through the index
			if _, err := ml.Snapshot().CountNanos("dport == 443", ts-int64(time.Second), ts+1); err != nil {
				return err
			}
			if _, err := ml.GetAggregate("web_bytes", ts-int64(time.Second), ts+1); err != nil {
				return err
			}
		}
	}
	st := ml.PersistStats()
	fmt.Printf("done records=%d derived_bytes=%d persist=%+v\n", ml.Stats().Records, ml.DerivedBytes(), st)
	return nil
}
