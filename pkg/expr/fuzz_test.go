package expr

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// fuzzMaxInput caps fuzz inputs: longer ones teach nothing new and slow the fuzzer down.
const fuzzMaxInput = 4 << 10

// addGoldenSeeds adds every input of the golden files to the corpus.
func addGoldenSeeds(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.txt"))
	for _, path := range files {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		lines := strings.Split(string(data), "\n")
		for i := 1; i < len(lines); i++ {
			if lines[i] == "----" {
				f.Add(lines[i-1])
			}
		}
	}
}

// checkParseResult asserts the invariants of one Parse call.
func checkParseResult(t *testing.T, src string, n Node, err error) {
	t.Helper()
	if (n == nil) == (err == nil) {
		t.Fatalf("Parse(%q) = %v, %v: want exactly one of a node and an error", src, n, err)
	}
	if err != nil {
		var pe *ParseError
		if !errors.As(err, &pe) || !errors.Is(err, ErrSyntax) {
			t.Fatalf("Parse(%q) error %v is not a *ParseError wrapping ErrSyntax", src, err)
		}
		if pe.Pos.Offset < 0 || pe.Pos.Offset > len(src) || pe.Pos.Line < 1 || pe.Pos.Col < 1 {
			t.Fatalf("Parse(%q) error position %+v out of the text", src, pe.Pos)
		}
		return
	}
	printed := n.String()
	again, err := Parse(printed)
	if err != nil {
		t.Fatalf("Parse(%q) printed as %q, which does not parse: %v", src, printed, err)
	}
	if !Equal(n, again) {
		t.Fatalf("Parse(%q) printed as %q parses to a different tree:\n%s\n%s", src, printed, Dump(n), Dump(again))
	}
	if again.String() != printed {
		t.Fatalf("printing is not stable: %q then %q", printed, again.String())
	}
}

func FuzzParse(f *testing.F) {
	addGoldenSeeds(f)
	for _, s := range []string{
		"a == 1", "((((a == 1))))", "!!!!a == 1", "a in (1, 2, 3)", "x == 'q\\x00'", "1e5 < y",
		"ip in ::ffff:0.0.0.0/96", "m == 0a-0b-0c-0d-0e-0f", "x == 0x1p-1074", "a = -0.0 or b = .5e-3",
	} {
		f.Add(s)
	}
	s := mustSchema(f, allTypesSchema)
	rec := make([]byte, s.RecordSize)
	for i := range rec {
		rec[i] = byte(i * 37)
	}
	f.Fuzz(func(t *testing.T, src string) {
		if len(src) > fuzzMaxInput {
			return
		}
		n, err := Parse(src)
		checkParseResult(t, src, n, err)
		// Truncated input must not break the parser either.
		for _, cut := range []int{len(src) / 2, len(src) - 1} {
			if cut > 0 {
				m, err := Parse(src[:cut])
				checkParseResult(t, src[:cut], m, err)
			}
		}
		if n == nil {
			return
		}
		filter, err := Bind(n, s)
		if (filter == nil) == (err == nil) {
			t.Fatalf("Bind(%q) = %v, %v: want exactly one", src, filter, err)
		}
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("Bind(%q) error %v is not a *ParseError", src, err)
			}
			return
		}
		filter.Match(rec)
		filter.Match(rec[:len(rec)-1])
		again, err := Compile(filter.String(), s)
		if err != nil || again.String() != filter.String() {
			t.Fatalf("Compile(%q).String() = %q does not compile back the same: %v", src, filter.String(), err)
		}
		if sel := filter.Select(rec, nil); (len(sel) == 1) != filter.Match(rec) {
			t.Fatalf("%q: Select and Match disagree", src)
		}
		if again.Match(rec) != filter.Match(rec) || naive(filter.Root, rec) != filter.Match(rec) {
			t.Fatalf("%q: Match disagrees between the tree, its canonical text and the naive evaluator", src)
		}
	})
}

func FuzzAggregateTrigger(f *testing.F) {
	for _, s := range []string{"SUM(x)", "count(*)", "AVG(y)", "x >= 10", "bytes < -1.5e3", "MAX(", "x >= 0x10"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		if len(src) > fuzzMaxInput {
			return
		}
		a, err := ParseAggregate(src)
		if (a == nil) == (err == nil) {
			t.Fatalf("ParseAggregate(%q) = %v, %v", src, a, err)
		}
		if a != nil {
			b, err := ParseAggregate(a.String())
			if err != nil || b.Func != a.Func || b.ColumnName != a.ColumnName {
				t.Fatalf("ParseAggregate(%q).String() = %q does not parse back: %v", src, a.String(), err)
			}
		}
		tr, err := ParseTrigger(src)
		if (tr == nil) == (err == nil) {
			t.Fatalf("ParseTrigger(%q) = %v, %v", src, tr, err)
		}
		if tr != nil {
			b, err := ParseTrigger(tr.String())
			if err != nil || b.Aggregate != tr.Aggregate || b.Op != tr.Op || b.Threshold != tr.Threshold {
				t.Fatalf("ParseTrigger(%q).String() = %q does not parse back: %v", src, tr.String(), err)
			}
		}
	})
}

// TestDeepNesting checks that hostile nesting is an error, not a stack overflow.
func TestDeepNesting(t *testing.T) {
	for _, src := range []string{
		strings.Repeat("(", 20000) + "a == 1" + strings.Repeat(")", 20000),
		strings.Repeat("!", 20000) + "a == 1",
		strings.Repeat("not ", 10000) + "a == 1",
	} {
		n, err := Parse(src)
		if n != nil || err == nil {
			t.Errorf("Parse of %d nested levels succeeded", len(src))
		}
	}
	ok := strings.Repeat("(", 200) + "a == 1" + strings.Repeat(")", 200)
	if _, err := Parse(ok); err != nil {
		t.Errorf("200 levels of parentheses: %v", err)
	}
	// A long flat chain is fine.
	chain := "a == 1" + strings.Repeat(" && a == 1", 5000)
	n, err := Parse(chain)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Parse(n.String()); err != nil {
		t.Fatal(err)
	}
}

// TestParseLinear checks that parsing allocates in proportion to the input, so that long
// expressions cost linear time (no rescanning of the rest of the text per token).
func TestParseLinear(t *testing.T) {
	var b strings.Builder
	b.WriteString("x == 0")
	for b.Len() < MaxSourceLen-40 {
		b.WriteString(" || x == 0x1f || y in (1.5, 10.0.0.0/8)\n")
	}
	src := b.String()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	n, err := Parse(src)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if perByte := float64(after.TotalAlloc-before.TotalAlloc) / float64(len(src)); perByte > 64 {
		t.Errorf("Parse of %d bytes allocated %.0f bytes per input byte", len(src), perByte)
	}
	if !Equal(n, mustParse(t, n.String())) {
		t.Errorf("long expression does not round-trip")
	}
}

func mustParse(t *testing.T, src string) Node {
	t.Helper()
	n, err := Parse(src)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
