package expr

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/confluo-go/confluo/pkg/schema"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the golden files in testdata/ with the current output")

// A golden file is a sequence of cases separated by blank lines:
//
//	# comment lines are kept
//	command [args]
//	input (one or more lines)
//	----
//	expected output (one or more lines, no blank line)
//
// Commands:
//
//	parse            input: a filter; output: Dump tree and canonical text, or the error
//	schema           input: schema text for the following bind/ranges cases; output: the schema
//	bind             input: a filter; output: the typed tree's text, or the error
//	ranges COLUMN    input: a filter; output: ColumnKeyRanges for COLUMN
//	aggregate        input: an aggregate; output: canonical text, or the error (bound to the
//	                 current schema if one was set)
//	trigger          input: a trigger; output: canonical text, or the error
type goldenCase struct {
	comments []string
	command  string
	input    string
	expected string
}

func readGolden(t *testing.T, path string) []goldenCase {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Line-based, so that inputs may be empty or contain blank lines: a case is comments, a
	// command, input lines up to "----", then output lines up to a blank line or the end.
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	var cases []goldenCase
	for i := 0; i < len(lines); {
		if lines[i] == "" {
			i++
			continue
		}
		var c goldenCase
		for ; i < len(lines) && strings.HasPrefix(lines[i], "#"); i++ {
			c.comments = append(c.comments, lines[i])
		}
		if i == len(lines) {
			t.Fatalf("%s: comments without a case at the end", path)
		}
		c.command = lines[i]
		i++
		start := i
		for i < len(lines) && lines[i] != "----" {
			i++
		}
		if i == len(lines) {
			t.Fatalf("%s:%d: case %q has no ---- line", path, start, c.command)
		}
		c.input = strings.Join(lines[start:i], "\n")
		i++
		start = i
		for i < len(lines) && lines[i] != "" {
			i++
		}
		c.expected = strings.Join(lines[start:i], "\n")
		cases = append(cases, c)
	}
	return cases
}

func writeGolden(t *testing.T, path string, cases []goldenCase) {
	t.Helper()
	var b strings.Builder
	for i, c := range cases {
		if i > 0 {
			b.WriteString("\n")
		}
		for _, line := range c.comments {
			b.WriteString(line + "\n")
		}
		b.WriteString(c.command + "\n" + c.input + "\n----\n" + c.expected + "\n")
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func runGoldenCase(t *testing.T, s **schema.Schema, c goldenCase) string {
	cmd, arg, _ := strings.Cut(c.command, " ")
	switch cmd {
	case "parse":
		n, err := Parse(c.input)
		if (n == nil) == (err == nil) {
			t.Errorf("Parse(%q): node %v, err %v: want exactly one", c.input, n, err)
		}
		if err != nil {
			return "error: " + err.Error()
		}
		again, err := Parse(n.String())
		if err != nil || !Equal(n, again) {
			t.Errorf("Parse(%q).String() = %q does not parse back to an equal tree (err %v)", c.input, n.String(), err)
		}
		return Dump(n) + "\n" + n.String()
	case "schema":
		parsed, err := schema.Parse(c.input)
		if err != nil {
			return "error: " + err.Error()
		}
		*s = parsed
		return parsed.String()
	case "bind":
		if *s == nil {
			t.Fatalf("bind before schema")
		}
		f, err := Compile(c.input, *s)
		if err != nil {
			return "error: " + err.Error()
		}
		again, err := Compile(f.String(), *s)
		if err != nil || again.String() != f.String() {
			t.Errorf("Compile(%q).String() = %q does not compile back to the same tree: %v", c.input, f.String(), err)
		}
		return f.String()
	case "ranges":
		if *s == nil {
			t.Fatalf("ranges before schema")
		}
		col, ok := (*s).Column(arg)
		if !ok {
			t.Fatalf("ranges: unknown column %q", arg)
		}
		f, err := Compile(c.input, *s)
		if err != nil {
			return "error: " + err.Error()
		}
		rs, ok := ColumnKeyRanges(f.Root, col)
		if !ok {
			return "unconstrained"
		}
		if len(rs) == 0 {
			return "empty"
		}
		var out []string
		for _, r := range rs {
			out = append(out, r.String())
		}
		return strings.Join(out, "\n")
	case "aggregate":
		a, err := ParseAggregate(c.input)
		if err == nil && *s != nil {
			a, err = BindAggregate(a, *s)
		}
		if err != nil {
			return "error: " + err.Error()
		}
		col := "*"
		if a.Column != nil {
			col = a.Column.Name + " " + a.Column.TypeString()
		}
		return fmt.Sprintf("%s column=%s", a, col)
	case "trigger":
		tr, err := ParseTrigger(c.input)
		if err != nil {
			return "error: " + err.Error()
		}
		again, err := ParseTrigger(tr.String())
		if err != nil || *again != (Trigger{Aggregate: tr.Aggregate, Op: tr.Op, Threshold: tr.Threshold,
			AggregatePos: again.AggregatePos, OpPos: again.OpPos, ThresholdPos: again.ThresholdPos}) {
			t.Errorf("ParseTrigger(%q).String() = %q does not parse back: %v", c.input, tr.String(), err)
		}
		return fmt.Sprintf("aggregate=%s op=%s threshold=%g", tr.Aggregate, tr.Op, tr.Threshold)
	}
	t.Fatalf("unknown golden command %q", c.command)
	return ""
}

func TestGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no golden files in testdata/")
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			cases := readGolden(t, path)
			var s *schema.Schema
			for i := range cases {
				c := &cases[i]
				got := runGoldenCase(t, &s, *c)
				if *rewrite {
					c.expected = got
					continue
				}
				if got != c.expected {
					t.Errorf("%s: %s\n%s\ngot:\n%s\nwant:\n%s", path, c.command, c.input, got, c.expected)
				}
			}
			if *rewrite {
				writeGolden(t, path, cases)
			}
		})
	}
}
