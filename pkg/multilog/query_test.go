package multilog

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/confluo-go/confluo/pkg/expr"
	"github.com/confluo-go/confluo/pkg/schema"
)

// TestSegIndex checks the multiply-by-reciprocal segment index against division, for segment
// sizes from 1 record to 1 GiB of 1-byte records and sequence numbers on both sides of 2^32.
func TestSegIndex(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	divisors := []int{1, 2, 3, 7, 10, 1000, 3855, 26214, 65536, 1<<20 - 1, 1 << 20, 1 << 30}
	for range 50 {
		divisors = append(divisors, 1+rng.IntN(1<<30))
	}
	for _, d := range divisors {
		sh := &shard{segRecords: d, segMagic: divMagic(d)}
		seqs := []uint64{0, 1, uint64(d) - 1, uint64(d), uint64(d) + 1, 1<<32 - 1, 1 << 32, 1<<48 - 1}
		for k := uint64(1); k < 1<<32/uint64(d) && k < 1000; k *= 3 {
			seqs = append(seqs, k*uint64(d)-1, k*uint64(d), k*uint64(d)+1)
		}
		for range 2000 {
			seqs = append(seqs, uint64(rng.Uint32()))
		}
		for _, seq := range seqs {
			if got, want := sh.segIndex(seq), seq/uint64(d); got != want {
				t.Fatalf("segRecords %d: segIndex(%d) = %d, want %d", d, seq, got, want)
			}
		}
	}
}

// TestExactPlans checks when an index plan is trusted to decide the predicate alone (no
// per-record test), and that those queries give the same rows as a scan without indexes.
func TestExactPlans(t *testing.T) {
	s, err := schema.Parse("{u: USHORT, b: UINT, i: INT, f: FLOAT, ip: IPV4, name: STRING(8)}")
	if err != nil {
		t.Fatal(err)
	}
	indexed, _ := New(s, Options{Writers: 2, SegmentBytes: 64 * s.RecordSize})
	plain, _ := New(s, Options{Writers: 2, SegmentBytes: 64 * s.RecordSize})
	for _, c := range []struct {
		col    string
		bucket float64
	}{{"u", 0}, {"b", 10}, {"i", 1}, {"f", 0}, {"ip", 0}, {"name", 0}} {
		if err := indexed.AddIndex(c.col, c.bucket); err != nil {
			t.Fatal(err)
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	names := []string{"a", "b", "ab", "abcdefgh"}
	for i := range 5000 {
		rec := []any{int64(i+1) * 1000, uint16(rng.IntN(40)), uint32(rng.IntN(400)), int32(rng.IntN(40) - 20),
			float32(rng.IntN(7)) - 3, fmt.Sprintf("10.0.0.%d", rng.IntN(30)), names[rng.IntN(len(names))]}
		if rng.IntN(50) == 0 {
			rec[4] = float32(math.Copysign(0, -1))
		}
		for _, ml := range []*MultiLog{indexed, plain} {
			if err := ml.Writer(i % 2).AppendValues(rec...); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, c := range []struct {
		q     string
		exact bool
	}{
		{"u == 7", true},
		{"u in (1, 2, 39)", true},
		{"i == -3", true},
		{"ip == 10.0.0.4", true},
		{"u <= 3", false},                 // a range: the key range holds exactly the matches, but only == and in are trusted
		{"u == 7 && i == 2", false},       // the plan narrows by one side only
		{"u == 7 || i == 2", false},       // two indexes
		{"b == 123", false},               // bucketed: a key holds 10 values
		{"f == 0", false},                 // floats: +0 and -0 are equal values with different bytes
		{"name == \"a\"", false},          // strings
		{"ip in 10.0.0.0/30", false},      // a prefix
		{"u == 7 && u == 7", false},       // an AND, even of the same comparison
		{"u in (1, 2) && i < 100", false}, // ditto
	} {
		snap := indexed.Snapshot()
		f, err := indexed.compile(c.q)
		if err != nil {
			t.Fatalf("%s: %v", c.q, err)
		}
		p := indexed.planFor(condFromExpr(f.Root), snap.NumRecords())
		if p == nil {
			t.Fatalf("%s: not planned through an index", c.q)
		}
		if p.exact != c.exact {
			t.Errorf("%s: exact = %v, want %v", c.q, p.exact, c.exact)
		}
		got := queryRefs(t, indexed, c.q, 2_000_000, 4_000_000)
		want := queryRefs(t, plain, c.q, 2_000_000, 4_000_000)
		if len(want) == 0 {
			t.Fatalf("%s: no rows: the test data misses the case", c.q)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: indexed rows %v\nwant (scan) %v", c.q, got, want)
		}
	}
}

func queryRefs(t *testing.T, ml *MultiLog, q string, from, to int64) []Ref {
	t.Helper()
	r, err := ml.QueryNanos(q, from, to, 0)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	var out []Ref
	for r.Next() {
		if ts := r.Timestamp(); ts < from || ts >= to {
			t.Fatalf("%s: row at %d outside [%d, %d)", q, ts, from, to)
		}
		out = append(out, r.Ref())
	}
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSelectForeignFilter: a filter compiled against another schema would read its columns at
// the wrong offsets; Select refuses it with an error instead of answering wrongly, and takes a
// filter compiled against an equal schema.
func TestSelectForeignFilter(t *testing.T) {
	s, _ := schema.Parse("{ip: IPV4, x: UINT}")
	ml, _ := New(s, Options{Writers: 1})
	for i := range 10 {
		if err := ml.Writer(0).AppendValues(int64(i+1), "10.0.0.1", uint32(i)); err != nil {
			t.Fatal(err)
		}
	}
	// Same layout, other types: without the check, x < 5 would read x as a FLOAT.
	other, _ := schema.Parse("{ip: IPV4, x: FLOAT}")
	f, err := expr.Compile("x < 5", other)
	if err != nil {
		t.Fatal(err)
	}
	rows := ml.Snapshot().Select(f, MinTime, MaxTime, 0)
	if rows.Next() || !errors.Is(rows.Err(), ErrExpr) {
		t.Fatalf("foreign filter: Next true or Err %v, want ErrExpr", rows.Err())
	}
	same, _ := schema.Parse(s.String())
	f, err = expr.Compile("x < 5", same)
	if err != nil {
		t.Fatal(err)
	}
	rows = ml.Snapshot().Select(f, MinTime, MaxTime, 0)
	n := 0
	for rows.Next() {
		n++
	}
	if n != 5 || rows.Err() != nil {
		t.Fatalf("filter of an equal schema: %d rows, %v; want 5", n, rows.Err())
	}
}

// TestExactPlanAsksItsIndex: whether a plan is exact depends on the indexes the plan reads. A
// query that planned through a bucketed index, while the index was meanwhile replaced by an
// unbucketed one, must still test its candidates (a bucket key holds other values too).
func TestExactPlanAsksItsIndex(t *testing.T) {
	s, _ := schema.Parse("{b: UINT}")
	ml, _ := New(s, Options{Writers: 1})
	for i := range 100 {
		if err := ml.Writer(0).AppendValues(int64(i+1), uint32(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := ml.AddIndex("b", 10, Backfill()); err != nil {
		t.Fatal(err)
	}
	f, err := ml.compile("b == 42")
	if err != nil {
		t.Fatal(err)
	}
	c := condFromExpr(f.Root)
	p := ml.planCond(c) // through the bucketed index: key 4 holds 40..49
	if p == nil || len(p.ranges) != 1 || p.ranges[0].ix.bucket != 10 {
		t.Fatalf("plan %+v, want one range of the bucketed index", p)
	}
	if err := ml.RemoveIndex("b"); err != nil {
		t.Fatal(err)
	}
	if err := ml.AddIndex("b", 0, Backfill()); err != nil {
		t.Fatal(err)
	}
	if exactCond(c, p) {
		t.Fatal("a plan over the bucketed index is exact because the current index is not bucketed")
	}
	if got := planFreshExact(ml, c); !got {
		t.Fatal("a fresh plan over the unbucketed index is not exact")
	}
}

func planFreshExact(ml *MultiLog, c cond) bool {
	p := ml.planFor(c, ml.NumRecords())
	return p != nil && p.exact
}
