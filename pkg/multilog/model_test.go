package multilog

import (
	"cmp"
	"encoding/binary"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/confluo-go/confluo/pkg/expr"
	"github.com/confluo-go/confluo/pkg/schema"
)

var modelSeeds = flag.Int("model.seeds", 40, "number of random seeds for TestModel")

// randSchema returns a random schema of 1..6 columns of every type.
func randSchema(rng *rand.Rand) *schema.Schema {
	types := []schema.Type{schema.Bool, schema.Char, schema.UChar, schema.Short, schema.UShort,
		schema.Int, schema.UInt, schema.Long, schema.ULong, schema.Float, schema.Double,
		schema.String, schema.IPv4, schema.IPv6, schema.MAC}
	b := schema.NewBuilder()
	for i := range 1 + rng.IntN(6) {
		t := types[rng.IntN(len(types))]
		name := fmt.Sprintf("c%d", i)
		if t == schema.String {
			b.AddString(name, 1+rng.IntN(4))
		} else {
			b.Add(name, t)
		}
	}
	s, err := b.Build()
	if err != nil {
		panic(err)
	}
	return s
}

// randValue returns a random value of c's type from a small domain, so that equal values and
// shared index buckets are common.
func randValue(rng *rand.Rand, c *schema.Column) schema.Value {
	t := c.Type
	switch {
	case t == schema.Bool:
		return schema.UintValue(t, uint64(rng.IntN(2)))
	case t.IsUnsigned():
		if rng.IntN(20) == 0 {
			return schema.UintValue(t, math.MaxUint64>>(64-8*c.Size))
		}
		return schema.UintValue(t, uint64(rng.IntN(40)))
	case t.IsSigned():
		if rng.IntN(20) == 0 {
			return schema.IntValue(t, -1<<(8*c.Size-1))
		}
		return schema.IntValue(t, int64(rng.IntN(40)-20))
	case t.IsFloat():
		switch rng.IntN(30) {
		case 0:
			return schema.FloatValue(t, math.NaN())
		case 1:
			return schema.FloatValue(t, math.Copysign(0, -1))
		case 2:
			return schema.FloatValue(t, math.Inf(1))
		}
		return schema.FloatValue(t, float64(rng.IntN(40)-20)/4+0.1)
	case t == schema.String:
		n := rng.IntN(c.Size + 1)
		b := make([]byte, n)
		for i := range b {
			b[i] = "abc"[rng.IntN(3)]
		}
		return schema.BytesValue(t, b)
	case t == schema.IPv4:
		return schema.BytesValue(t, []byte{10, byte(rng.IntN(2)), byte(rng.IntN(3)), byte(rng.IntN(4))})
	case t == schema.IPv6:
		b := make([]byte, 16)
		b[0], b[1], b[14], b[15] = 0x20, 0x01, byte(rng.IntN(3)), byte(rng.IntN(4))
		return schema.BytesValue(t, b)
	default: // MAC
		return schema.BytesValue(t, []byte{0, 0x1b, 0, 0, byte(rng.IntN(2)), byte(rng.IntN(4))})
	}
}

func literal(v schema.Value, c *schema.Column) string {
	switch t := v.Type; {
	case t == schema.Bool:
		return strconv.FormatUint(v.U, 10)
	case t.IsUnsigned():
		return strconv.FormatUint(v.U, 10)
	case t.IsSigned():
		return strconv.FormatInt(v.I, 10)
	case t.IsFloat():
		if math.IsNaN(v.F) || math.IsInf(v.F, 0) {
			return "1.5"
		}
		return strconv.FormatFloat(v.F, 'g', -1, 64)
	case t == schema.String:
		return strconv.Quote(string(v.B))
	default:
		return v.String()
	}
}

// randExpr returns random filter text over s, of nesting depth at most depth.
func randExpr(rng *rand.Rand, s *schema.Schema, depth int) string {
	if depth > 0 {
		switch rng.IntN(6) {
		case 0:
			return "(" + randExpr(rng, s, depth-1) + " && " + randExpr(rng, s, depth-1) + ")"
		case 1:
			return "(" + randExpr(rng, s, depth-1) + " || " + randExpr(rng, s, depth-1) + ")"
		case 2:
			return "!(" + randExpr(rng, s, depth-1) + ")"
		}
	}
	c := &s.Columns[1+rng.IntN(len(s.Columns)-1)]
	if rng.IntN(8) == 0 {
		return fmt.Sprintf("timestamp %s %d", []string{"<", ">=", "=="}[rng.IntN(3)], rng.IntN(1000)*timeScale)
	}
	if c.Type.IsIP() && rng.IntN(3) == 0 {
		v := randValue(rng, c)
		a, _ := netip.AddrFromSlice(v.B)
		bits := []int{8, 16, 24, 30, 32}[rng.IntN(5)]
		if c.Type == schema.IPv6 {
			bits = []int{16, 120, 126, 128}[rng.IntN(4)]
		}
		p, _ := a.Prefix(bits)
		return fmt.Sprintf("%s in %s", c.Name, p)
	}
	if rng.IntN(6) == 0 {
		var vals []string
		for range 1 + rng.IntN(3) {
			vals = append(vals, literal(randValue(rng, c), c))
		}
		return fmt.Sprintf("%s in (%s)", c.Name, strings.Join(vals, ", "))
	}
	ops := []string{"==", "!=", "<", "<=", ">", ">="}
	if c.Type == schema.MAC || c.Type == schema.String {
		ops = ops[:2]
	}
	return fmt.Sprintf("%s %s %s", c.Name, ops[rng.IntN(len(ops))], literal(randValue(rng, c), c))
}

func randRecord(rng *rand.Rand, s *schema.Schema, ts int64) []byte {
	rec := make([]byte, s.RecordSize)
	schema.SetTimestamp(rec, ts)
	for i := 1; i < len(s.Columns); i++ {
		c := &s.Columns[i]
		if err := c.Put(rec, randValue(rng, c)); err != nil {
			panic(err)
		}
	}
	return rec
}

// model is the naive slice-and-scan MultiLog.
type model struct {
	shards [][][]byte
	// filters and aggregates with their start (per shard) in the model
	filters []modelFilter
	aggs    []modelAgg
}

type modelFilter struct {
	name  string
	f     *expr.Filter
	start []int
}

type modelAgg struct {
	name   string
	filter int
	agg    *expr.Aggregate
	start  []int
}

func (m *model) starts(backfill bool) []int {
	st := make([]int, len(m.shards))
	if !backfill {
		for i := range st {
			st[i] = len(m.shards[i])
		}
	}
	return st
}

// aggregate computes a model aggregate at tails over [from, to).
func (m *model) aggregate(a modelAgg, tails []uint64, from, to int64) (count uint64, vals []schema.Value) {
	f := m.filters[a.filter]
	for i, recs := range m.shards {
		for seq := a.start[i]; seq < int(tails[i]); seq++ {
			rec := recs[seq]
			ts := schema.Timestamp(rec)
			if ts >= from && ts < to && f.f.Match(rec) {
				count++
				if a.agg.Column != nil {
					vals = append(vals, a.agg.Column.Get(rec))
				}
			}
		}
	}
	return count, vals
}

type modelRow struct {
	ts    int64
	shard int
	seq   int
	rec   []byte
}

func (m *model) query(tails []uint64, f *expr.Filter, from, to int64, limit int) []modelRow {
	var rows []modelRow
	for i, recs := range m.shards {
		for seq, rec := range recs[:tails[i]] {
			ts := schema.Timestamp(rec)
			if ts >= from && ts < to && (f == nil || f.Match(rec)) {
				rows = append(rows, modelRow{ts, i, seq, rec})
			}
		}
	}
	slices.SortStableFunc(rows, func(a, b modelRow) int {
		if a.ts != b.ts {
			return cmp.Compare(a.ts, b.ts)
		}
		if a.shard != b.shard {
			return a.shard - b.shard
		}
		return a.seq - b.seq
	})
	if limit > 0 && len(rows) > limit {
		rows = rows[:limit]
	}
	return rows
}

// timeScale spreads the model's timestamps (0..1000 units) over many time buckets.
const timeScale = 1000

func randRange(rng *rand.Rand) (int64, int64) {
	switch rng.IntN(4) {
	case 0:
		return MinTime, MaxTime
	case 1:
		return MinTime, int64(rng.IntN(1100)) * timeScale
	}
	a, b := int64(rng.IntN(1100*timeScale)), int64(rng.IntN(1100*timeScale))
	return min(a, b), max(a, b) + int64(rng.IntN(2))
}

// TestModel runs random schemas, appends from several writers, indexes (with and without
// backfill), snapshots and queries against the naive model.
func TestModel(t *testing.T) {
	for seed := range uint64(*modelSeeds) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { runModel(t, seed) })
	}
}

func runModel(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 99))
	s := randSchema(rng)
	writers := 1 + rng.IntN(3)
	bucket := []time.Duration{time.Microsecond, 3 * time.Microsecond, 50 * time.Microsecond, time.Millisecond}[rng.IntN(4)]
	ml, err := New(s, Options{Writers: writers, SegmentBytes: s.RecordSize * (1 + rng.IntN(20)), FilterBucket: bucket, ManualMonitor: true})
	if err != nil {
		t.Fatal(err)
	}
	m := &model{shards: make([][][]byte, writers)}
	ordered := rng.IntN(2) == 0
	clock := make([]int64, writers)
	type snap struct {
		s     *Snapshot
		tails []uint64
	}
	var snaps []snap
	checkMonitoring := func(sn snap) {
		for _, mf := range m.filters {
			from, to := randRange(rng)
			var want []modelRow
			for i, recs := range m.shards {
				for seq := mf.start[i]; seq < int(sn.tails[i]); seq++ {
					rec := recs[seq]
					if ts := schema.Timestamp(rec); ts >= from && ts < to && mf.f.Match(rec) {
						want = append(want, modelRow{ts, i, seq, rec})
					}
				}
			}
			slices.SortStableFunc(want, func(a, b modelRow) int {
				if c := cmp.Compare(a.ts, b.ts); c != 0 {
					return c
				}
				if a.shard != b.shard {
					return a.shard - b.shard
				}
				return a.seq - b.seq
			})
			rows, err := sn.s.QueryFilter(mf.name, from, to, "", 0)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for rows.Next() {
				if n >= len(want) || rows.Ref() != MakeRef(want[n].shard, uint64(want[n].seq)) {
					t.Fatalf("filter %s %q [%d,%d) at %v: row %d is %v", mf.name, mf.f, from, to, sn.tails, n, rows.Ref())
				}
				n++
			}
			if n != len(want) {
				t.Fatalf("filter %s %q [%d,%d) at %v: %d rows, want %d", mf.name, mf.f, from, to, sn.tails, n, len(want))
			}
		}
		for _, ma := range m.aggs {
			from, to := randRange(rng)
			if rng.IntN(3) == 0 && from != MinTime && to != MaxTime { // whole buckets
				b := int64(bucket)
				from, to = from/b*b, to/b*b
			}
			got, err := sn.s.GetAggregate(ma.name, from, to)
			if err != nil {
				t.Fatal(err)
			}
			count, vals := m.aggregate(ma, sn.tails, from, to)
			if got.Count != count || got.Empty != (count == 0) {
				t.Fatalf("aggregate %s %s [%d,%d) at %v: count %d, want %d", ma.name, ma.agg, from, to, sn.tails, got.Count, count)
			}
			if count == 0 {
				continue
			}
			checkAggValue(t, ma.agg, got, count, vals)
		}
	}
	check := func(sn snap) {
		checkMonitoring(sn)
		for range 4 {
			src := randExpr(rng, s, 2)
			if rng.IntN(10) == 0 {
				src = ""
			}
			from, to := randRange(rng)
			limit := 0
			if rng.IntN(4) == 0 {
				limit = 1 + rng.IntN(10)
			}
			f, err := ml.compile(src)
			if err != nil {
				t.Fatalf("schema %s: compile %q: %v", s, src, err)
			}
			want := m.query(sn.tails, f, from, to, limit)
			rows, err := sn.s.QueryNanos(src, from, to, limit)
			if err != nil {
				t.Fatal(err)
			}
			var got []modelRow
			for rows.Next() {
				got = append(got, modelRow{rows.Timestamp(), rows.Ref().Shard(), int(rows.Ref().Seq()), rows.Record()})
			}
			if len(got) != len(want) {
				plan, _ := sn.s.Explain(src)
				t.Fatalf("schema %s indexes %v: %q [%d,%d) limit %d at %v: got %d rows, want %d (plan %s)",
					s, ml.Indexes(), src, from, to, limit, sn.tails, len(got), len(want), plan)
			}
			for i := range got {
				g, w := got[i], want[i]
				if g.ts != w.ts || g.shard != w.shard || g.seq != w.seq || string(g.rec) != string(w.rec) {
					t.Fatalf("%q row %d: got %d/%d ts %d, want %d/%d ts %d", src, i, g.shard, g.seq, g.ts, w.shard, w.seq, w.ts)
				}
			}
			n, err := sn.s.CountNanos(src, from, to)
			if err != nil {
				t.Fatal(err)
			}
			if wantN := len(m.query(sn.tails, f, from, to, 0)); n != uint64(wantN) {
				t.Fatalf("%q: Count %d, want %d", src, n, wantN)
			}
		}
	}
	for step := range 60 {
		switch op := rng.IntN(10); {
		case op < 6: // append a batch
			w := rng.IntN(writers)
			n := 1 + rng.IntN(30)
			var batch []byte
			for range n {
				var ts int64
				if ordered {
					clock[w] += int64(rng.IntN(20)) * timeScale / 4
					ts = clock[w]
				} else {
					ts = int64(rng.IntN(1000)) * timeScale
				}
				rec := randRecord(rng, s, ts)
				m.shards[w] = append(m.shards[w], rec)
				batch = append(batch, rec...)
			}
			if rng.IntN(2) == 0 {
				if err := ml.Writer(w).AppendBatch(batch); err != nil {
					t.Fatal(err)
				}
			} else {
				for off := 0; off < len(batch); off += s.RecordSize {
					if err := ml.Writer(w).Append(batch[off : off+s.RecordSize]); err != nil {
						t.Fatal(err)
					}
				}
			}
		case op < 7: // add or remove an index
			c := &s.Columns[rng.IntN(len(s.Columns))]
			bucket := 0.0
			if c.Type.IsNumeric() && c.Type != schema.Bool && rng.IntN(2) == 0 {
				bucket = float64(1 + rng.IntN(8))
				if c.Type.IsFloat() {
					bucket = []float64{0.25, 1, 3.5}[rng.IntN(3)]
				}
			}
			var opts []IndexOption
			if rng.IntN(2) == 0 {
				opts = append(opts, Backfill())
			}
			if err := ml.AddIndex(c.Name, bucket, opts...); err != nil {
				if err2 := ml.RemoveIndex(c.Name); err2 != nil {
					t.Fatalf("AddIndex %s: %v; RemoveIndex: %v", c.Name, err, err2)
				}
			}
		case op < 8 && rng.IntN(2) == 0: // add a filter or an aggregate
			if len(m.filters) == 0 || rng.IntN(2) == 0 {
				name := fmt.Sprintf("f%d", len(m.filters))
				src := randExpr(rng, s, 2)
				backfill := rng.IntN(2) == 0
				var opts []FilterOption
				if backfill {
					opts = append(opts, FilterBackfill())
				}
				if err := ml.AddFilter(name, src, opts...); err != nil {
					t.Fatalf("AddFilter %q: %v", src, err)
				}
				f, _ := expr.Compile(src, s)
				m.filters = append(m.filters, modelFilter{name, f, m.starts(backfill)})
			} else {
				fi := rng.IntN(len(m.filters))
				c := &s.Columns[rng.IntN(len(s.Columns))]
				fn := []string{"SUM", "MIN", "MAX", "COUNT", "AVG"}[rng.IntN(5)]
				src := fmt.Sprintf("%s(%s)", fn, c.Name)
				name := fmt.Sprintf("a%d", len(m.aggs))
				backfill := rng.IntN(2) == 0
				var opts []AggregateOption
				if backfill {
					opts = append(opts, AggregateBackfill())
				}
				err := ml.AddAggregate(name, m.filters[fi].name, src, opts...)
				valid := fn == "COUNT" || c.Type.IsNumeric() || ((fn == "MIN" || fn == "MAX") && c.Size <= 8)
				if (err == nil) != valid {
					t.Fatalf("AddAggregate %s on %s: %v", src, c.TypeString(), err)
				}
				if err == nil {
					ea, _ := expr.CompileAggregate(src, s)
					start := m.starts(false)
					if backfill { // every match the filter logged
						start = slices.Clone(m.filters[fi].start)
					}
					m.aggs = append(m.aggs, modelAgg{name, fi, ea, start})
				}
			}
		case op < 8:
			sn := ml.Snapshot()
			snaps = append(snaps, snap{sn, sn.Version().Tails()})
		default:
			sn := ml.Snapshot()
			check(snap{sn, sn.Version().Tails()})
			if len(snaps) > 0 {
				check(snaps[rng.IntN(len(snaps))])
			}
		}
		_ = step
	}
	sn := ml.Snapshot()
	check(snap{sn, sn.Version().Tails()})
	for _, old := range snaps {
		check(old)
	}
	// Read every record by reference.
	for i, recs := range m.shards {
		for seq, rec := range recs {
			got, err := ml.Read(MakeRef(i, uint64(seq)))
			if err != nil || string(got) != string(rec) {
				t.Fatalf("Read %d/%d: %v", i, seq, err)
			}
		}
		if _, err := ml.Read(MakeRef(i, uint64(len(recs)))); err == nil {
			t.Fatalf("Read past the tail of shard %d succeeded", i)
		}
	}
	if got := ml.NumRecords(); got != uint64(totalLen(m.shards)) {
		t.Fatalf("NumRecords %d", got)
	}
	_ = binary.LittleEndian
}

func totalLen(s [][][]byte) int {
	n := 0
	for _, x := range s {
		n += len(x)
	}
	return n
}

func checkAggValue(t *testing.T, a *expr.Aggregate, got AggregateValue, count uint64, vals []schema.Value) {
	t.Helper()
	switch a.Func {
	case expr.Count:
		if got.Value.U != count {
			t.Fatalf("%s = %v, want %d", a, got.Value, count)
		}
	case expr.Sum, expr.Avg:
		var si int64
		var sf float64
		for _, v := range vals {
			switch {
			case v.Type.IsSigned():
				si += v.I
			case v.Type.IsUnsigned():
				si += int64(v.U)
			default:
				sf += v.F
			}
		}
		if a.Column.Type.IsFloat() {
			want := sf
			if a.Func == expr.Avg {
				want = sf / float64(count)
			}
			if !closeFloat(got.Value.F, want) {
				t.Fatalf("%s = %v, want %v", a, got.Value.F, want)
			}
		} else if a.Func == expr.Sum {
			if got.Value.I != si {
				t.Fatalf("%s = %v, want %d", a, got.Value.I, si)
			}
		} else if !closeFloat(got.Value.F, float64(si)/float64(count)) {
			t.Fatalf("%s = %v, want %v", a, got.Value.F, float64(si)/float64(count))
		}
	case expr.Min, expr.Max:
		var best *schema.Value
		for i := range vals {
			v := &vals[i]
			if v.Type.IsFloat() && math.IsNaN(v.F) {
				continue
			}
			if best == nil {
				best = v
				continue
			}
			c := schema.Compare(*v, *best)
			if (a.Func == expr.Min && c < 0) || (a.Func == expr.Max && c > 0) {
				best = v
			}
		}
		if best == nil {
			if !math.IsNaN(got.Value.F) {
				t.Fatalf("%s over NaNs = %v", a, got.Value)
			}
			return
		}
		if schema.Compare(got.Value, *best) != 0 {
			t.Fatalf("%s = %v, want %v", a, got.Value, *best)
		}
	}
}

func closeFloat(a, b float64) bool {
	if math.IsNaN(a) || math.IsNaN(b) {
		return math.IsNaN(a) && math.IsNaN(b)
	}
	if math.IsInf(a, 0) || math.IsInf(b, 0) {
		return a == b
	}
	return math.Abs(a-b) <= 1e-9*math.Max(1, math.Max(math.Abs(a), math.Abs(b)))
}
