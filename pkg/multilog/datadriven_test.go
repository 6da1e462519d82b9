package multilog

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/confluo-go/confluo/pkg/schema"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the expected output of the testdata/ scripts")

// testCase is one command of a script:
//
//	command arg key=value ...
//	input lines
//	----
//	expected output
//	<blank line>
type testCase struct {
	pos    string
	cmd    string
	args   []string
	kv     map[string]string
	input  string
	expect string
}

func parseScript(t *testing.T, path string) ([]testCase, []string) {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cases []testCase
	var preamble []string // comment lines kept for rewriting, per case
	sc := bufio.NewScanner(f)
	line := 0
	var comments []string
	for sc.Scan() {
		line++
		text := sc.Text()
		if strings.TrimSpace(text) == "" {
			continue
		}
		if strings.HasPrefix(text, "#") {
			comments = append(comments, text)
			continue
		}
		tc := testCase{pos: fmt.Sprintf("%s:%d", path, line), kv: map[string]string{}}
		fields := strings.Fields(text)
		tc.cmd = fields[0]
		for _, a := range fields[1:] {
			if k, v, ok := strings.Cut(a, "="); ok {
				tc.kv[k] = v
			} else {
				tc.args = append(tc.args, a)
			}
		}
		var in []string
		for sc.Scan() {
			line++
			if sc.Text() == "----" {
				break
			}
			in = append(in, sc.Text())
		}
		tc.input = strings.Join(in, "\n")
		var out []string
		for sc.Scan() {
			line++
			if sc.Text() == "" {
				break
			}
			out = append(out, sc.Text())
		}
		tc.expect = strings.Join(out, "\n")
		cases = append(cases, tc)
		preamble = append(preamble, strings.Join(comments, "\n"))
		comments = nil
	}
	return cases, preamble
}

// TestScripts runs the data-driven store scripts in testdata/; -rewrite regenerates their
// expected output.
func TestScripts(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.txt")
	if len(files) == 0 {
		t.Fatal("no testdata scripts")
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			cases, comments := parseScript(t, path)
			r := &scriptRunner{snaps: map[string]*Snapshot{}}
			defer r.close()
			var b strings.Builder
			for i, tc := range cases {
				got := r.run(t, tc)
				if *rewrite {
					if comments[i] != "" {
						b.WriteString(comments[i] + "\n")
					}
					b.WriteString(strings.TrimSpace(strings.Join(append([]string{tc.cmd}, rawArgs(tc)...), " ")) + "\n")
					if tc.input != "" {
						b.WriteString(tc.input + "\n")
					}
					b.WriteString("----\n" + got + "\n\n")
					continue
				}
				if got != tc.expect {
					t.Errorf("%s: %s\ngot:\n%s\nwant:\n%s", tc.pos, tc.cmd, got, tc.expect)
				}
			}
			if *rewrite {
				if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func rawArgs(tc testCase) []string {
	out := append([]string(nil), tc.args...)
	keys := make([]string, 0, len(tc.kv))
	for k := range tc.kv {
		keys = append(keys, k)
	}
	// Keep a stable order.
	for i := range keys {
		for j := i + 1; j < len(keys); j++ {
			if keys[j] < keys[i] {
				keys[i], keys[j] = keys[j], keys[i]
			}
		}
	}
	for _, k := range keys {
		out = append(out, k+"="+tc.kv[k])
	}
	return out
}

type scriptRunner struct {
	ml    *MultiLog
	snaps map[string]*Snapshot
}

func (r *scriptRunner) close() {
	if r.ml != nil {
		r.ml.Close()
	}
}

func parseTime(s string, def int64) (int64, error) {
	switch s {
	case "":
		return def, nil
	case "min":
		return MinTime, nil
	case "max":
		return MaxTime, nil
	}
	if ts, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return ts.UnixNano(), nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return int64(d), nil
	}
	return strconv.ParseInt(s, 10, 64)
}

func (r *scriptRunner) snapshot(tc testCase) *Snapshot {
	if name := tc.kv["at"]; name != "" {
		return r.snaps[name]
	}
	return r.ml.Snapshot()
}

func (r *scriptRunner) formatRows(rows *Rows) string {
	var b strings.Builder
	n := 0
	for rows.Next() {
		vals, _ := r.ml.schema.Decode(rows.Record())
		strs := make([]string, len(vals))
		for i, v := range vals {
			strs[i] = v.String()
		}
		fmt.Fprintf(&b, "%v %s\n", rows.Ref(), strings.Join(strs, ", "))
		n++
	}
	fmt.Fprintf(&b, "%d rows", n)
	return b.String()
}

func (r *scriptRunner) run(t *testing.T, tc testCase) string {
	errOut := func(err error) string { return "error: " + err.Error() }
	if tc.cmd != "new" && r.ml == nil {
		t.Fatalf("%s: %s before new", tc.pos, tc.cmd)
	}
	from, _ := parseTime(tc.kv["from"], MinTime)
	to, _ := parseTime(tc.kv["to"], MaxTime)
	arg := func(i int) string {
		if i < len(tc.args) {
			return tc.args[i]
		}
		return ""
	}
	switch tc.cmd {
	case "new":
		s, err := schema.Parse(tc.input)
		if err != nil {
			return errOut(err)
		}
		o := Options{Writers: 1, ManualMonitor: true}
		if v := tc.kv["writers"]; v != "" {
			o.Writers, _ = strconv.Atoi(v)
		}
		if v := tc.kv["bucket"]; v != "" {
			o.FilterBucket, _ = time.ParseDuration(v)
		}
		if v := tc.kv["grace"]; v != "" {
			o.Grace, _ = time.ParseDuration(v)
		}
		if v := tc.kv["idle-after"]; v != "" {
			o.IdleAfter, _ = time.ParseDuration(v)
		}
		if v := tc.kv["segment"]; v != "" {
			o.SegmentBytes, _ = strconv.Atoi(v)
		}
		r.close()
		ml, err := New(s, o)
		if err != nil {
			return errOut(err)
		}
		r.ml = ml
		return "ok " + s.String()
	case "append":
		w, _ := strconv.Atoi(tc.kv["writer"])
		var batch []byte
		for _, line := range strings.Split(tc.input, "\n") {
			var vals []string
			for _, v := range strings.Split(line, ",") {
				vals = append(vals, strings.TrimSpace(v))
			}
			if ts, err := time.Parse(time.RFC3339Nano, vals[0]); err == nil {
				vals[0] = strconv.FormatInt(ts.UnixNano(), 10)
			}
			rec, err := r.ml.schema.EncodeStrings(vals)
			if err != nil {
				return errOut(err)
			}
			batch = append(batch, rec...)
		}
		if err := r.ml.Writer(w).AppendBatch(batch); err != nil {
			return errOut(err)
		}
		return fmt.Sprintf("ok %d records, version %v", len(batch)/r.ml.schema.RecordSize, r.ml.Snapshot().Version())
	case "index":
		bucket, _ := strconv.ParseFloat(tc.kv["bucket"], 64)
		var opts []IndexOption
		if tc.kv["backfill"] == "true" {
			opts = append(opts, Backfill())
		}
		if err := r.ml.AddIndex(arg(0), bucket, opts...); err != nil {
			return errOut(err)
		}
		return "ok"
	case "remove-index":
		if err := r.ml.RemoveIndex(arg(0)); err != nil {
			return errOut(err)
		}
		return "ok"
	case "snapshot":
		r.snaps[arg(0)] = r.ml.Snapshot()
		return "version " + r.snaps[arg(0)].Version().String()
	case "freeze":
		return "frozen at " + r.ml.Freeze().String()
	case "unfreeze":
		r.ml.Unfreeze()
		return "ok"
	case "query":
		limit, _ := strconv.Atoi(tc.kv["limit"])
		rows, err := r.snapshot(tc).QueryNanos(tc.input, from, to, limit)
		if err != nil {
			return errOut(err)
		}
		return r.formatRows(rows)
	case "explain":
		s, err := r.snapshot(tc).Explain(tc.input)
		if err != nil {
			return errOut(err)
		}
		return s
	case "count":
		n, err := r.snapshot(tc).CountNanos(tc.input, from, to)
		if err != nil {
			return errOut(err)
		}
		return strconv.FormatUint(n, 10)
	case "filter":
		var opts []FilterOption
		if tc.kv["backfill"] == "true" {
			opts = append(opts, FilterBackfill())
		}
		if err := r.ml.AddFilter(arg(0), tc.input, opts...); err != nil {
			return errOut(err)
		}
		return "ok"
	case "remove-filter":
		if err := r.ml.RemoveFilter(arg(0)); err != nil {
			return errOut(err)
		}
		return "ok"
	case "query-filter":
		limit, _ := strconv.Atoi(tc.kv["limit"])
		rows, err := r.snapshot(tc).QueryFilter(arg(0), from, to, tc.input, limit)
		if err != nil {
			return errOut(err)
		}
		return r.formatRows(rows)
	case "aggregate":
		var opts []AggregateOption
		if tc.kv["backfill"] == "true" {
			opts = append(opts, AggregateBackfill())
		}
		if err := r.ml.AddAggregate(arg(0), tc.kv["filter"], tc.input, opts...); err != nil {
			return errOut(err)
		}
		return "ok"
	case "remove-aggregate":
		if err := r.ml.RemoveAggregate(arg(0)); err != nil {
			return errOut(err)
		}
		return "ok"
	case "get":
		v, err := r.snapshot(tc).GetAggregate(arg(0), from, to)
		if err != nil {
			return errOut(err)
		}
		return fmt.Sprintf("%s count=%d value=%s", v.Func, v.Count, v)
	case "trigger":
		period, _ := time.ParseDuration(tc.kv["period"])
		var opts []TriggerOption
		if tc.kv["backfill"] == "true" {
			opts = append(opts, TriggerBackfill())
		}
		if err := r.ml.InstallTrigger(arg(0), tc.input, period, opts...); err != nil {
			return errOut(err)
		}
		return "ok"
	case "remove-trigger":
		if err := r.ml.RemoveTrigger(arg(0)); err != nil {
			return errOut(err)
		}
		return "ok"
	case "tick":
		return formatAlerts(r.ml.Tick())
	case "advance":
		ts, err := parseTime(arg(0), MinTime)
		if err != nil {
			return errOut(err)
		}
		r.ml.AdvanceWatermark(ts)
		return "ok"
	case "flush":
		return formatAlerts(r.ml.Flush())
	case "alerts":
		return formatAlerts(r.ml.GetAlerts(from, to, tc.kv["trigger"]))
	}
	t.Fatalf("%s: unknown command %q", tc.pos, tc.cmd)
	return ""
}

func formatAlerts(alerts []Alert) string {
	var b strings.Builder
	for _, a := range alerts {
		fmt.Fprintf(&b, "alert %s [%d,%d) value=%g count=%d version=%v\n", a.Trigger, a.WindowStart, a.WindowEnd, a.Value, a.Count, a.Version)
	}
	fmt.Fprintf(&b, "%d alerts", len(alerts))
	return b.String()
}
