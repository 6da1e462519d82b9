package expr

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/confluo-go/confluo/pkg/schema"
)

const allTypesSchema = "{b: BOOL, c: CHAR, uc: UCHAR, sh: SHORT, us: USHORT, i: INT, u: UINT, l: LONG, " +
	"ul: ULONG, f: FLOAT, d: DOUBLE, s: STRING(8), ip: IPV4, ip6: IPV6, mac: MAC, proto: UCHAR}"

func mustSchema(t testing.TB, text string) *schema.Schema {
	t.Helper()
	s, err := schema.Parse(text)
	if err != nil {
		t.Fatalf("schema.Parse(%q): %v", text, err)
	}
	return s
}

// naive evaluates a typed tree on a record the slow, obvious way: schema's Get and Compare, and
// IEEE comparisons for floats.
func naive(e Expr, rec []byte) bool {
	switch e := e.(type) {
	case *And:
		for _, t := range e.Terms {
			if !naive(t, rec) {
				return false
			}
		}
		return true
	case *Or:
		for _, t := range e.Terms {
			if naive(t, rec) {
				return true
			}
		}
		return false
	case *Not:
		return !naive(e.X, rec)
	case *True:
		return true
	case *Compare:
		v := e.Column.Get(rec)
		if v.Type.IsFloat() {
			return e.Op.EvalFloat(v.F, e.Value.F)
		}
		c := schema.Compare(v, e.Value)
		switch e.Op {
		case OpEq:
			return c == 0
		case OpNe:
			return c != 0
		case OpLt:
			return c < 0
		case OpLe:
			return c <= 0
		case OpGt:
			return c > 0
		case OpGe:
			return c >= 0
		}
	case *MaskCompare:
		v := e.Column.Get(rec)
		v.U &= e.Mask
		return naive(&Compare{Column: e.Column, Op: e.Op, Value: e.Value}, maskedRecord(e.Column, rec, v))
	case *In:
		v := e.Column.Get(rec)
		for _, w := range e.Values {
			if v.Type.IsFloat() && v.F == w.F || !v.Type.IsFloat() && schema.Compare(v, w) == 0 {
				return true
			}
		}
		return false
	case *InPrefix:
		return e.Prefix.Contains(e.Column.Get(rec).Addr())
	}
	panic(fmt.Sprintf("naive: unknown expr %T", e))
}

// maskedRecord returns a copy of rec with the column set to v.
func maskedRecord(c *schema.Column, rec []byte, v schema.Value) []byte {
	out := bytes.Clone(rec)
	if err := c.Put(out, v); err != nil {
		panic(err)
	}
	return out
}

// Literal pools per column: every literal binds to its column; records take their values from
// the same pools (plus NaN and infinities for floats) so that equality is often true.
var literalPools = map[string][]string{
	"b":     {"true", "false", "0", "1"},
	"c":     {"-128", "-1", "0", "1", "97", "'a'", "127"},
	"uc":    {"0", "1", "2", "254", "255", "0xff"},
	"sh":    {"-32768", "-1", "0", "1", "300", "32767"},
	"us":    {"0", "1", "80", "443", "65535"},
	"i":     {"-2147483648", "-5", "-1", "0", "1", "5", "2147483647"},
	"u":     {"0", "1", "5", "4294967294", "4294967295"},
	"l":     {"-9223372036854775808", "-1", "0", "1", "9223372036854775807"},
	"ul":    {"0", "1", "9223372036854775808", "18446744073709551615"},
	"f":     {"0", "-0.0", "0.1", "0.5", "1", "-1.5", "1e-45", "3e38", "-3e38", "16777217"},
	"d":     {"0", "-0.0", "0.1", "0.5", "1", "-1.5", "5e-324", "1e308"},
	"s":     {`""`, `"a"`, `"ab"`, `"abc"`, `"b"`, `"zz"`, `"abcdefgh"`, `"\xff"`},
	"ip":    {"0.0.0.0", "10.0.0.1", "10.1.2.3", "192.168.1.1", "255.255.255.255", "::ffff:10.0.0.1"},
	"ip6":   {"::", "::1", "fe80::1", "2001:db8::5", "10.0.0.1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
	"mac":   {"00:00:00:00:00:00", "00:1b:21:aa:bb:cc", "ff:ff:ff:ff:ff:ff", "00-1b-21-aa-bb-cd"},
	"proto": {"tcp", "udp", "icmp", "0", "6", "17", "255"},
}

var prefixPools = map[string][]string{
	"ip":  {"10.0.0.0/8", "10.1.0.0/16", "0.0.0.0/0", "192.168.1.1/32", "10.0.0.0/31"},
	"ip6": {"2001:db8::/32", "::/0", "fe80::/10", "10.0.0.0/8", "::/127", "ffff:ffff:ffff:ffff::/64"},
}

var opTexts = []string{"==", "=", "!=", "<", "<=", ">", ">="}

// randFilter returns random filter text over the pools' columns.
func randFilter(r *rand.Rand, cols []string, depth int) string {
	if depth > 0 {
		switch r.IntN(6) {
		case 0:
			return "(" + randFilter(r, cols, depth-1) + " && " + randFilter(r, cols, depth-1) + ")"
		case 1:
			return "(" + randFilter(r, cols, depth-1) + " or " + randFilter(r, cols, depth-1) + ")"
		case 2:
			return "!(" + randFilter(r, cols, depth-1) + ")"
		}
	}
	col := cols[r.IntN(len(cols))]
	pool := literalPools[col]
	lit := func() string { return pool[r.IntN(len(pool))] }
	switch r.IntN(11) {
	case 10:
		if col == "uc" || col == "us" || col == "u" || col == "ul" {
			return col + " & " + []string{"0", "1", "3", "0x12", "0xff", "255"}[r.IntN(6)] + " " + opTexts[r.IntN(len(opTexts))] + " " + lit()
		}
		return "true"
	case 0:
		if p, ok := prefixPools[col]; ok {
			return col + " in " + p[r.IntN(len(p))]
		}
		return "true"
	case 1:
		n := 1 + r.IntN(12)
		vals := make([]string, n)
		for i := range vals {
			vals[i] = lit()
			if p, ok := prefixPools[col]; ok && r.IntN(3) == 0 {
				vals[i] = p[r.IntN(len(p))]
			}
		}
		not := ""
		if r.IntN(2) == 0 {
			not = "not "
		}
		return col + " " + not + "in (" + strings.Join(vals, ", ") + ")"
	case 2:
		if col == "proto" || col == "c" {
			return col + " == " + lit() // names and 'a' cannot go first
		}
		return lit() + " " + opTexts[r.IntN(len(opTexts))] + " " + strings.ToUpper(col)
	}
	return col + " " + opTexts[r.IntN(len(opTexts))] + " " + lit()
}

// randRecord fills a record with values from the pools, and sometimes random bytes.
func randRecord(t testing.TB, r *rand.Rand, s *schema.Schema, rec []byte) {
	for i := range rec {
		rec[i] = byte(r.Uint32())
	}
	for ci := 1; ci < len(s.Columns); ci++ {
		c := &s.Columns[ci]
		if r.IntN(5) == 0 && c.Type != schema.Bool && c.Type != schema.String {
			continue // keep the random bytes (for floats: any NaN, denormal, ...)
		}
		if c.Type == schema.Float && r.IntN(6) == 0 {
			// NaNs of both signs (quiet and signalling), infinities, -0, the largest finite.
			special := []uint32{0x7fc00000, 0xffc00000, 0x7f800001, 0xff800001, 0x7f800000, 0xff800000, 0x80000000, 0x7f7fffff, 0xff7fffff}
			binary.LittleEndian.PutUint32(rec[c.Offset:], special[r.IntN(len(special))])
			continue
		}
		if c.Type == schema.Double && r.IntN(6) == 0 {
			special := []uint64{0x7ff8000000000000, 0xfff8000000000000, 0x7ff0000000000001, 0xfff0000000000001,
				0x7ff0000000000000, 0xfff0000000000000, 0x8000000000000000, 0x7fefffffffffffff, 0xffefffffffffffff}
			binary.LittleEndian.PutUint64(rec[c.Offset:], special[r.IntN(len(special))])
			continue
		}
		text := literalPools[c.Name][r.IntN(len(literalPools[c.Name]))]
		lit, err := Parse(c.Name + " == " + text)
		if err != nil {
			t.Fatalf("pool literal %q: %v", text, err)
		}
		f, err := Bind(lit, s)
		if err != nil {
			t.Fatalf("pool literal %q: %v", text, err)
		}
		if err := c.Put(rec, f.Root.(*Compare).Value); err != nil {
			t.Fatalf("put %q: %v", text, err)
		}
	}
}

// TestMatchAgainstNaive cross-checks Match with a naive evaluator of the typed tree on random
// filters and records, and checks that ColumnKeyRanges holds the key of every matching record.
func TestMatchAgainstNaive(t *testing.T) {
	all := []string{"b", "c", "uc", "sh", "us", "i", "u", "l", "ul", "f", "d", "s", "ip", "ip6", "mac", "proto"}
	t.Run("all columns", func(t *testing.T) { testMatchAgainstNaive(t, all) })
	// Few columns: terms on the same column meet often, which exercises the merging of ranges
	// and equalities.
	t.Run("few columns", func(t *testing.T) { testMatchAgainstNaive(t, []string{"c", "us", "ip"}) })
	t.Run("wide columns", func(t *testing.T) { testMatchAgainstNaive(t, []string{"l", "ul", "mac", "ip6"}) })
}

func testMatchAgainstNaive(t *testing.T, cols []string) {
	s := mustSchema(t, allTypesSchema)
	r := rand.New(rand.NewPCG(1, 2))
	const filters, records = 3000, 64
	recs := make([][]byte, records)
	var batch []byte
	selected := make([]int32, records)
	matched := 0
	for n := range filters {
		src := randFilter(r, cols, r.IntN(4))
		f, err := Compile(src, s)
		if err != nil {
			t.Fatalf("Compile(%q): %v", src, err)
		}
		// The canonical text compiles to the same tree.
		if again, err := Compile(f.String(), s); err != nil || again.String() != f.String() {
			t.Fatalf("Compile(%q).String() = %q: does not compile back the same (%v)", src, f.String(), err)
		}
		if n%10 == 0 {
			for i := range recs {
				if n == 0 {
					recs[i] = make([]byte, s.RecordSize)
				}
				randRecord(t, r, s, recs[i])
			}
			batch = bytes.Join(recs, nil)
		}
		// Select over the batch, as -1 (no match) or the index, per record.
		sel := f.Select(batch, make([]int32, 0, records))
		for i := range selected {
			selected[i] = -1
		}
		for _, i := range sel {
			selected[i] = i
		}
		for i := range recs {
			rec := recs[i]
			got, want := f.Match(rec), naive(f.Root, rec)
			if got != want {
				var vals []string
				for ci := range s.Columns {
					vals = append(vals, s.Columns[ci].Name+"="+s.Columns[ci].Get(rec).String())
				}
				t.Fatalf("filter %q (%s): Match = %v, naive = %v on record %s", src, f, got, want, strings.Join(vals, " "))
			}
			if got != (selected[i] == int32(i)) {
				t.Fatalf("filter %q: Select and Match disagree on record %d", src, i)
			}
			if !got {
				continue
			}
			matched++
			for ci := range s.Columns {
				c := &s.Columns[ci]
				ranges, ok := ColumnKeyRanges(f.Root, c)
				if !ok {
					continue
				}
				key := c.AppendKey(nil, rec)
				in := false
				for _, kr := range ranges {
					in = in || kr.Contains(key)
				}
				if !in {
					t.Fatalf("filter %q matches a record whose %s key %x is outside ColumnKeyRanges %v (value %v)",
						src, c.Name, key, ranges, c.Get(rec))
				}
			}
		}
	}
	if matched < filters*records/20 || matched > filters*records*19/20 {
		t.Errorf("%d of %d evaluations matched: the random filters are too one-sided to test much", matched, filters*records)
	}
}

// TestMatchShortRecord checks that a record shorter than the schema never matches (and does not
// panic).
func TestMatchShortRecord(t *testing.T) {
	s := mustSchema(t, allTypesSchema)
	f, err := Compile("!(mac == 01:02:03:04:05:06)", s)
	if err != nil {
		t.Fatal(err)
	}
	for n := range s.RecordSize {
		if f.Match(make([]byte, n)) {
			t.Errorf("Match of a %d-byte record (schema: %d) = true", n, s.RecordSize)
		}
	}
	if !f.Match(append(make([]byte, s.RecordSize), 1, 2, 3)) {
		t.Errorf("a longer record does not match")
	}
}

func TestMatchAllocations(t *testing.T) {
	s := mustSchema(t, allTypesSchema)
	rec := make([]byte, s.RecordSize)
	for _, src := range []string{
		"i > 5 && (ip in 10.0.0.0/8 || ip6 in 2001:db8::/32) && s != \"ab\"",
		"s in (\"a\", \"b\", \"c\") && us in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11) && f in (0.5, 1)",
		"!(mac == 00:1b:21:aa:bb:cc) || d > 0.1 || s < \"m\" || ip6 < ::1",
	} {
		f, err := Compile(src, s)
		if err != nil {
			t.Fatal(err)
		}
		if allocs := testing.AllocsPerRun(100, func() { f.Match(rec) }); allocs != 0 {
			t.Errorf("Match(%q) allocates %v times per call", src, allocs)
		}
	}
}

// TestTypingPitfalls covers literals that must be converted to the column's type before
// comparing, where a careless implementation gets the wrong answer.
func TestTypingPitfalls(t *testing.T) {
	s := mustSchema(t, allTypesSchema)
	put := func(rec []byte, col string, v any) {
		t.Helper()
		c, _ := s.Column(col)
		var value schema.Value
		var err error
		switch x := v.(type) {
		case float32:
			value = schema.FloatValue(schema.Float, float64(x))
		case float64:
			value = schema.FloatValue(c.Type, x)
		case int64:
			value = schema.IntValue(c.Type, x)
		case uint64:
			value = schema.UintValue(c.Type, x)
		case string:
			if c.Type == schema.String {
				value = schema.BytesValue(schema.String, []byte(x))
			} else {
				value, err = c.ParseValue(x)
				if err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := c.Put(rec, value); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		filter string
		col    string
		value  any
		want   bool
	}{
		// Confluo's pitfall: 0.1 as a double is not 0.1f; compared as FLOAT, 0.1f is not > 0.1.
		{"f > 0.1", "f", float32(0.1), false},
		{"f >= 0.1", "f", float32(0.1), true},
		{"f == 0.1", "f", float32(0.1), true},
		{"f < 0.1", "f", float32(0.1), false},
		{"f > 0.1", "f", math.Nextafter32(0.1, 1), true},
		{"f in (0.1, 0.2)", "f", float32(0.1), true},
		// On a DOUBLE column, 0.1 is the double 0.1, so 0.1f (widened) differs.
		{"d == 0.1", "d", float64(float32(0.1)), false},
		{"d > 0.1", "d", float64(float32(0.1)), true},
		// -0 equals 0; NaN satisfies only !=.
		{"f == 0", "f", math.Copysign(0, -1), true},
		{"f >= 0", "f", math.Copysign(0, -1), true},
		{"f < 0", "f", math.Copysign(0, -1), false},
		{"d == -0.0", "d", 0.0, true},
		{"f == 0", "f", math.NaN(), false},
		{"f < 1", "f", math.NaN(), false},
		{"f >= 1", "f", math.NaN(), false},
		{"f != 1", "f", math.NaN(), true},
		{"f < 1", "f", math.Float64frombits(0xfff8000000000000), false},
		{"f > -1", "f", math.Float64frombits(0xfff8000000000000), false},
		{"f in (0, 1)", "f", math.Float64frombits(0xfff8000000000000), false},
		{"d <= 1e308", "d", math.Float64frombits(0xfff8000000000000), false},
		{"d >= -1e308", "d", math.NaN(), false},
		{"!(d >= -1e308)", "d", math.Float64frombits(0xfff8000000000000), true},
		{"!(f < 1)", "f", math.NaN(), true},
		{"f > 3e38", "f", math.Inf(1), true},
		// A literal beyond float32 precision rounds to the nearest FLOAT.
		{"f == 16777217", "f", float32(16777216), true},
		// Signed columns compare signed, unsigned unsigned, at every width.
		{"c < 0", "c", int64(-1), true},
		{"c > 100", "c", int64(-128), false},
		{"sh < 0", "sh", int64(-32768), true},
		{"i < 0", "i", int64(-1), true},
		{"i > -2147483648", "i", int64(-2147483648), false},
		{"l < 0", "l", int64(math.MinInt64), true},
		{"l > 0", "l", int64(math.MaxInt64), true},
		{"uc > 127", "uc", uint64(255), true},
		{"us > 32767", "us", uint64(65535), true},
		{"u > 2147483647", "u", uint64(4294967295), true},
		{"ul > 9223372036854775807", "ul", uint64(math.MaxUint64), true},
		{"ul >= 0", "ul", uint64(0), true},
		{"ul < 0", "ul", uint64(0), false},
		{"ul > 18446744073709551615", "ul", uint64(math.MaxUint64), false},
		{"c == 'a'", "c", int64('a'), true},
		// Strings compare NUL-padded: "ab" < "abc", "b" > "abc".
		{`s < "abc"`, "s", "ab", true},
		{`s > "abc"`, "s", "b", true},
		{`s == "ab"`, "s", "ab", true},
		{`s == "ab"`, "s", "abc", false},
		{`s == ""`, "s", "", true},
		{`s > ""`, "s", "a", true},
		{`s == "abcdefgh"`, "s", "abcdefgh", true},
		// Addresses compare in network byte order.
		{"ip > 10.0.0.255", "ip", "10.0.1.0", true},
		{"ip < 9.255.255.255", "ip", "10.0.0.0", false},
		{"ip in 10.0.0.0/8", "ip", "10.255.255.255", true},
		{"ip in 10.0.0.0/8", "ip", "11.0.0.0", false},
		{"ip in 0.0.0.0/0", "ip", "255.255.255.255", true},
		{"ip6 in 2001:db8::/32", "ip6", "2001:db8:ffff::1", true},
		{"ip6 in 2001:db8::/32", "ip6", "2001:db9::", false},
		{"ip6 in 10.0.0.0/8", "ip6", "10.1.2.3", true},
		{"ip6 == 10.1.2.3", "ip6", "::ffff:10.1.2.3", true},
		{"ip6 > ::ffff:ffff", "ip6", "::1:0:0", true},
		{"ip6 < ::1:0:0", "ip6", "::ffff:ffff", true},
		{"mac > 00:ff:ff:ff:ff:ff", "mac", "01:00:00:00:00:00", true},
		{"mac == 00-1B-21-AA-BB-CC", "mac", "00:1b:21:aa:bb:cc", true},
		{"proto == tcp", "proto", uint64(6), true},
		{"proto in (udp, icmp)", "proto", uint64(6), false},
		{"b == true", "b", uint64(1), true},
		{"b != 1", "b", uint64(0), true},
	}
	for _, tc := range cases {
		f, err := Compile(tc.filter, s)
		if err != nil {
			t.Errorf("Compile(%q): %v", tc.filter, err)
			continue
		}
		rec := make([]byte, s.RecordSize)
		put(rec, tc.col, tc.value)
		if got := f.Match(rec); got != tc.want {
			t.Errorf("%q with %s = %v: Match = %v, want %v", tc.filter, tc.col, tc.value, got, tc.want)
		}
		if got := naive(f.Root, rec); got != tc.want {
			t.Errorf("%q with %s = %v: naive = %v, want %v", tc.filter, tc.col, tc.value, got, tc.want)
		}
	}
}

// TestBindErrors checks that every binding error names the problem, carries the position of the
// offending token and wraps the right sentinel.
func TestBindErrors(t *testing.T) {
	s := mustSchema(t, allTypesSchema)
	cases := []struct {
		src    string
		offset int
		kind   error
		msg    string
	}{
		{"nope == 1", 0, ErrColumn, `unknown column "nope"`},
		{"i == 1 && NOPE == 1", 10, ErrColumn, `unknown column "NOPE"`},
		{"uc == 256", 6, ErrType, "out of range 0..255"},
		{"i == 1.5", 5, ErrType, "integer column takes integer literals"},
		{`s == "123456789"`, 5, ErrType, "longer than 8"},
		{"i in 10.0.0.0/8", 5, ErrType, "prefixes need an IPV4 or IPV6 column"},
		{"ip == 10.0.0.0/8", 6, ErrType, "needs 'in'"},
		{"ip in (1.2.3.4, fe80::1)", 16, ErrType, "IPv6 address does not fit"},
		{"f > 1e39", 4, ErrType, "32-bit float"},
		{"proto == xyz", 9, ErrType, `unknown name "xyz"`},
		{"i > 1 &&", 8, ErrSyntax, "expected column"},
	}
	for _, tc := range cases {
		_, err := Compile(tc.src, s)
		var pe *ParseError
		if !errors.As(err, &pe) {
			t.Errorf("Compile(%q) = %v, want a *ParseError", tc.src, err)
			continue
		}
		if pe.Pos.Offset != tc.offset || pe.Kind != tc.kind || !strings.Contains(pe.Msg, tc.msg) {
			t.Errorf("Compile(%q) = %q at offset %d (%v), want offset %d, %v, containing %q",
				tc.src, err, pe.Pos.Offset, pe.Kind, tc.offset, tc.kind, tc.msg)
		}
		if !strings.HasPrefix(err.Error(), fmt.Sprintf("expr: 1:%d: ", tc.offset+1)) {
			t.Errorf("Compile(%q) error %q does not start with the position", tc.src, err)
		}
	}
}

func TestConstantsOption(t *testing.T) {
	s := mustSchema(t, "{app: UCHAR, proto: UCHAR}")
	opts := Options{Constants: Constants{"app": {"web": 1, "db": 2}}}
	f, err := CompileWith("app in (web, db)", s, opts)
	if err != nil {
		t.Fatal(err)
	}
	if f.String() != "app in (1, 2)" {
		t.Errorf("String = %q", f.String())
	}
	// Custom constants replace the defaults.
	if _, err := CompileWith("proto == tcp", s, opts); err == nil {
		t.Errorf("proto == tcp compiled with constants that lack proto")
	}
	if _, err := CompileWith("app == 1", s, Options{Constants: Constants{"App": {}}}); err == nil {
		t.Errorf("options with an upper-case column name were accepted")
	}
	// A constant that does not fit the column is an error, not a wrap-around.
	if _, err := CompileWith("app == big", s, Options{Constants: Constants{"app": {"big": 300}}}); err == nil {
		t.Errorf("constant 300 accepted for a UCHAR column")
	}
}

func TestNewFilter(t *testing.T) {
	s := mustSchema(t, allTypesSchema)
	i, _ := s.Column("i")
	f, err := NewFilter(&And{Terms: []Expr{
		&Compare{Column: i, Op: OpGe, Value: schema.IntValue(schema.Int, 3)},
		&Not{X: &In{Column: i, Values: []schema.Value{schema.IntValue(schema.Int, 4)}}},
	}}, s)
	if err != nil {
		t.Fatal(err)
	}
	rec := make([]byte, s.RecordSize)
	for v, want := range map[int64]bool{2: false, 3: true, 4: false, 5: true} {
		if err := i.Put(rec, schema.IntValue(schema.Int, v)); err != nil {
			t.Fatal(err)
		}
		if got := f.Match(rec); got != want {
			t.Errorf("%s with i = %d: %v, want %v", f, v, got, want)
		}
	}
	other := mustSchema(t, "{i: UINT}")
	oi, _ := other.Column("i")
	if _, err := NewFilter(&Compare{Column: oi, Op: OpEq, Value: schema.UintValue(schema.UInt, 1)}, s); err == nil {
		t.Errorf("NewFilter accepted a column of another schema")
	}
	if _, err := NewFilter(&Compare{Column: i, Op: OpEq, Value: schema.UintValue(schema.UInt, 1)}, s); err == nil {
		t.Errorf("NewFilter accepted a value of the wrong type")
	}
	uc, _ := s.Column("uc")
	if _, err := NewFilter(&In{Column: uc, Values: []schema.Value{schema.UintValue(schema.UChar, 300)}}, s); err == nil {
		t.Errorf("NewFilter accepted 300 for a UCHAR column")
	}
	c, _ := s.Column("c")
	if _, err := NewFilter(&Compare{Column: c, Op: OpLt, Value: schema.IntValue(schema.Char, -129)}, s); err == nil {
		t.Errorf("NewFilter accepted -129 for a CHAR column")
	}
}

func TestPositions(t *testing.T) {
	src := "a == 1 &&\n  (b < 2 ||\n   c in (10.0.0.0/8))"
	n, err := Parse(src)
	if err != nil {
		t.Fatal(err)
	}
	and := n.(*BinaryExpr)
	if and.OpPos != (Pos{Offset: 7, Line: 1, Col: 8}) {
		t.Errorf("&& at %+v", and.OpPos)
	}
	or := and.Y.(*BinaryExpr)
	b := or.X.(*CompareExpr)
	if b.Column.Pos != (Pos{Offset: 13, Line: 2, Col: 4}) || b.Value.Pos.Col != 8 {
		t.Errorf("b at %+v, 2 at %+v", b.Column.Pos, b.Value.Pos)
	}
	in := or.Y.(*InExpr)
	if in.Values[0].Pos != (Pos{Offset: 31, Line: 3, Col: 10}) {
		t.Errorf("prefix at %+v", in.Values[0].Pos)
	}
	if !bytes.Equal([]byte(src[in.Values[0].Pos.Offset:][:10]), []byte("10.0.0.0/8")) {
		t.Errorf("offset does not point at the literal")
	}
}

func TestColumns(t *testing.T) {
	s := mustSchema(t, allTypesSchema)
	f, err := Compile("ip in 10.0.0.0/8 && (I > 3 || !(b == true)) && i < 100 && s in (\"a\")", s)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range f.Columns() {
		names = append(names, c.Name)
	}
	if got := strings.Join(names, ","); got != "b,i,s,ip" {
		t.Errorf("Columns = %s, want b,i,s,ip", got)
	}
}

// TestSelectChunks checks Select against Match over batches that span several chunks, with a
// trailing partial record, appending to a non-empty dst, without allocating.
func TestSelectChunks(t *testing.T) {
	s := mustSchema(t, allTypesSchema)
	r := rand.New(rand.NewPCG(3, 4))
	const n = 3*selectChunk + 17
	batch := make([]byte, n*s.RecordSize+5)
	for i := range n {
		randRecord(t, r, s, batch[i*s.RecordSize:(i+1)*s.RecordSize])
	}
	all := []string{"b", "c", "uc", "sh", "us", "i", "u", "l", "ul", "f", "d", "s", "ip", "ip6", "mac", "proto"}
	for range 300 {
		src := randFilter(r, all, r.IntN(4))
		f, err := Compile(src, s)
		if err != nil {
			t.Fatal(err)
		}
		dst := make([]int32, 1, n+1)
		dst[0] = -7
		var got []int32
		if allocs := testing.AllocsPerRun(10, func() { got = f.Select(batch, dst[:1]) }); allocs != 0 && !raceEnabled {
			t.Errorf("Select(%q) allocates %v times", src, allocs)
		}
		want := []int32{-7}
		for i := range n {
			if f.Match(batch[i*s.RecordSize : (i+1)*s.RecordSize]) {
				want = append(want, int32(i))
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("Select(%q) = %v, Match says %v", src, got, want)
		}
	}
}
