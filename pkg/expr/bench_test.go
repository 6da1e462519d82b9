package expr

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// benchSchema is shaped like a packet header record (40 bytes).
const benchSchema = "{src_ip: IPV4, dst_ip: IPV4, src_port: USHORT, dst_port: USHORT, proto: UCHAR, " +
	"tcp_flags: UCHAR, ttl: UCHAR, dscp: UCHAR, len: UINT, rtt: FLOAT, vlan: USHORT, pad: USHORT}"

var benchFilters = []struct{ name, src string }{
	{"eq", "dst_port == 80"},
	{"range", "len >= 100 && len < 1400"},
	{"cidr", "src_ip in 10.0.0.0/8"},
	{"float", "rtt > 0.5"},
	{"in8", "dst_port in (22, 53, 80, 123, 443, 8080, 8443, 9000)"},
	{"in32", "dst_port in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32)"},
	{"typical", "src_ip in 10.0.0.0/8 && proto == tcp && (dst_port == 80 || dst_port == 443) && len > 64"},
	{"complex", "(proto == tcp && tcp_flags != 0 && !(dst_port in (22, 53))) || (proto == udp && len > 1000) || ttl < 2 || rtt >= 10"},
}

// benchRecords returns n random records, a quarter of them in 10.0.0.0/8 on port 80 or 443.
func benchRecords(b *testing.B, n int) (recs []byte, size int) {
	s := mustSchema(b, benchSchema)
	size = s.RecordSize
	recs = make([]byte, n*size)
	r := rand.New(rand.NewPCG(7, 7))
	for i := range n {
		rec := recs[i*size : (i+1)*size]
		for j := range rec {
			rec[j] = byte(r.Uint32())
		}
		if r.IntN(4) == 0 {
			c, _ := s.Column("src_ip")
			rec[c.Offset] = 10
			c, _ = s.Column("dst_port")
			binary.LittleEndian.PutUint16(rec[c.Offset:], []uint16{80, 443}[r.IntN(2)])
			c, _ = s.Column("proto")
			rec[c.Offset] = 6
		}
	}
	return recs, size
}

func BenchmarkMatch(b *testing.B) {
	s := mustSchema(b, benchSchema)
	const n = 4096
	recs, size := benchRecords(b, n)
	for _, bf := range benchFilters {
		f, err := Compile(bf.src, s)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(bf.name, func(b *testing.B) {
			b.ReportAllocs()
			i, matched := 0, 0
			for b.Loop() {
				if f.Match(recs[i*size : (i+1)*size]) {
					matched++
				}
				i = (i + 1) % n
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
			_ = matched
		})
	}
}

// BenchmarkSelect runs Select over batches of 1024 records; ns/op is per record.
func BenchmarkSelect(b *testing.B) {
	s := mustSchema(b, benchSchema)
	const n = 4096
	const batch = 1024
	recs, size := benchRecords(b, n)
	dst := make([]int32, 0, batch)
	for _, bf := range benchFilters {
		f, err := Compile(bf.src, s)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(bf.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				dst = f.Select(recs[i*batch*size:(i+1)*batch*size], dst[:0])
				i = (i + 1) % (n / batch)
			}
			b.ReportMetric(float64(b.N)*batch/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/batch, "ns/record")
		})
	}
}

// bench16 returns 16 different filters: the benchmark filters and their negations.
func bench16(b *testing.B) []*Filter {
	s := mustSchema(b, benchSchema)
	var filters []*Filter
	for i := range 16 {
		src := benchFilters[i%len(benchFilters)].src
		if i >= len(benchFilters) {
			src = "!(" + src + ")"
		}
		f, err := Compile(src, s)
		if err != nil {
			b.Fatal(err)
		}
		filters = append(filters, f)
	}
	return filters
}

// BenchmarkMatch16 evaluates 16 different filters on every record with Match, as a multilog with
// 16 filters does; records/s counts records, not filter evaluations.
func BenchmarkMatch16(b *testing.B) {
	const n = 4096
	recs, size := benchRecords(b, n)
	filters := bench16(b)
	b.ReportAllocs()
	i, matched := 0, 0
	for b.Loop() {
		rec := recs[i*size : (i+1)*size]
		for _, f := range filters {
			if f.Match(rec) {
				matched++
			}
		}
		i = (i + 1) % n
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	_ = matched
}

// BenchmarkSelect16 runs the same 16 filters with Select over batches of 1024 records.
func BenchmarkSelect16(b *testing.B) {
	const n = 4096
	const batch = 1024
	recs, size := benchRecords(b, n)
	filters := bench16(b)
	dst := make([]int32, 0, batch)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		chunk := recs[i*batch*size : (i+1)*batch*size]
		for _, f := range filters {
			dst = f.Select(chunk, dst[:0])
		}
		i = (i + 1) % (n / batch)
	}
	b.ReportMetric(float64(b.N)*batch/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/batch, "ns/record")
}

func BenchmarkCompile(b *testing.B) {
	s := mustSchema(b, benchSchema)
	src := benchFilters[len(benchFilters)-1].src
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile(src, s); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	src := benchFilters[len(benchFilters)-1].src
	b.ReportAllocs()
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		if _, err := Parse(src); err != nil {
			b.Fatal(err)
		}
	}
}
