package schema

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestParseLayout(t *testing.T) {
	s, err := Parse("{ Src: ipv4, dst: IPV4, sport: ushort, dport: USHORT, len: uint, app: String(16), mac: MAC, v6: IPV6, f: FLOAT, }")
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		name   string
		typ    Type
		offset int
		size   int
	}{
		{"timestamp", ULong, 0, 8}, {"src", IPv4, 8, 4}, {"dst", IPv4, 12, 4}, {"sport", UShort, 16, 2},
		{"dport", UShort, 18, 2}, {"len", UInt, 20, 4}, {"app", String, 24, 16}, {"mac", MAC, 40, 6},
		{"v6", IPv6, 46, 16}, {"f", Float, 62, 4},
	}
	if len(s.Columns) != len(want) {
		t.Fatalf("got %d columns, want %d", len(s.Columns), len(want))
	}
	for i, w := range want {
		c := s.Columns[i]
		if c.Name != w.name || c.Type != w.typ || c.Offset != w.offset || c.Size != w.size || c.Index != i {
			t.Errorf("column %d = %+v, want %+v", i, c, w)
		}
	}
	if s.RecordSize != 66 {
		t.Errorf("RecordSize = %d, want 66", s.RecordSize)
	}
	if c, ok := s.Column("SPORT"); !ok || c.Name != "sport" {
		t.Errorf("Column(SPORT) = %v, %v", c, ok)
	}
	again, err := Parse(s.String())
	if err != nil || !again.Equal(s) || again.RecordSize != s.RecordSize {
		t.Fatalf("round trip of %q: %v", s.String(), err)
	}
}

func TestParseOneColumnAndTimestamp(t *testing.T) {
	s, err := Parse("{x: double}")
	if err != nil || len(s.Columns) != 2 || s.RecordSize != 16 {
		t.Fatalf("one column: %v %+v", err, s)
	}
	// A user timestamp column becomes the implicit one, wherever it is written.
	s, err = Parse("{a: INT, TimeStamp: ULONG}")
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Columns) != 2 || s.Columns[0].Name != "timestamp" || s.Columns[1].Name != "a" || s.Columns[1].Offset != 8 {
		t.Fatalf("timestamp not first: %+v", s.Columns)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"{}", "at least one column"},
		{"{a INT}", `expected ':' after column "a"`},
		{"{a: INTEGER}", `column "a": unknown type "INTEGER"`},
		{"{a: STRING}", "STRING needs a size"},
		{"{a: STRING(0)}", "STRING size must be"},
		{"{a: STRING(70000)}", "STRING size must be"},
		{"{a: INT, A: LONG}", `"A": duplicate column`},
		{"{timestamp: LONG}", "must be ULONG"},
		{"{a: INT", "expected ',' or '}'"},
		{"{a: INT} x", "unexpected"},
		{"{1a: INT}", "expected a column name"},
		{"{a: INT, , b: INT}", "expected a column name"},
		{"{In: INT}", `"In": a keyword of the filter language`},
		{"{a: INT, and: INT}", `"and": a keyword of the filter language`},
	} {
		_, err := Parse(tc.text)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) error = %v, want it to contain %q", tc.text, err, tc.want)
		}
		if err != nil && !errors.Is(err, ErrSyntax) && !errors.Is(err, ErrColumn) {
			t.Errorf("Parse(%q) error %v is neither ErrSyntax nor ErrColumn", tc.text, err)
		}
	}
	var se *SyntaxError
	if _, err := Parse("{a: INT; b: INT}"); !errors.As(err, &se) || se.Pos != 7 {
		t.Errorf("position of ';' error = %v", err)
	}
}

func TestBuilder(t *testing.T) {
	s, err := NewBuilder().Add("a", Int).AddString("name", 8).Add("ip", IPv6).Build()
	if err != nil {
		t.Fatal(err)
	}
	if got := s.String(); got != "{timestamp: ULONG, a: INT, name: STRING(8), ip: IPV6}" {
		t.Errorf("String() = %q", got)
	}
	if _, err := NewBuilder().Add("s", String).Build(); err == nil {
		t.Error("Add(String) accepted")
	}
	if _, err := NewBuilder().Add("bad-name", Int).Build(); err == nil {
		t.Error("bad name accepted")
	}
	// Names are ASCII: the Kelvin sign lower-cases to an ASCII k but is not a valid name.
	if s, err := NewBuilder().Add("\u212a", Int).Build(); !errors.Is(err, ErrColumn) {
		t.Errorf("Kelvin sign name: %v, %v", s, err)
	}
	if s, err := NewBuilder().Add("Mixed_Case1", Int).Build(); err != nil || s.Columns[1].Name != "mixed_case1" {
		t.Errorf("mixed-case name: %v, %v", s, err)
	}
}

func TestParseValueErrors(t *testing.T) {
	s, err := Parse("{b: BOOL, c: CHAR, i: INT, u: USHORT, f: FLOAT, s: STRING(4), ip: IPV4, ip6: IPV6, m: MAC}")
	if err != nil {
		t.Fatal(err)
	}
	col := func(n string) *Column { c, _ := s.Column(n); return c }
	for _, tc := range []struct{ col, text, want string }{
		{"b", "yes", `column "b" (BOOL)`},
		{"i", "2147483648", "out of range"},
		{"i", "1.5", "not a number"},
		{"u", "-1", `column "u" (USHORT)`},
		{"u", "65536", "out of range"},
		{"f", "1e39", "out of range"},
		{"s", "hello", "longer than 4"},
		{"ip", "10.0.0.256", "not an IPv4 address"},
		{"ip", "::1", "not an IPv4 address"},
		{"ip6", "nope", "not an IP address"},
		{"m", "00:11:22:33:44", "not a 6-byte MAC"},
	} {
		_, err := col(tc.col).ParseValue(tc.text)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrValue) {
			t.Errorf("ParseValue(%s, %q) = %v, want error containing %q", tc.col, tc.text, err, tc.want)
		}
	}
	for _, tc := range []struct{ col, text, want string }{
		{"b", "TRUE", "true"}, {"c", "a", "97"}, {"c", "-5", "-5"}, {"i", "0x10", "16"},
		{"f", "0.1", "0.1"}, {"s", "abcd", "abcd"}, {"ip", "10.1.2.3", "10.1.2.3"},
		{"ip6", "10.1.2.3", "::ffff:10.1.2.3"}, {"ip6", "fd00::1", "fd00::1"}, {"m", "00-11-22-33-44-55", "00:11:22:33:44:55"},
	} {
		v, err := col(tc.col).ParseValue(tc.text)
		if err != nil || v.String() != tc.want {
			t.Errorf("ParseValue(%s, %q) = %v, %v; want %s", tc.col, tc.text, v, err, tc.want)
		}
	}
}

func TestEncodeDecode(t *testing.T) {
	s, err := Parse("{b: BOOL, c: CHAR, sh: SHORT, i: INT, l: LONG, u: UINT, ul: ULONG, f: FLOAT, d: DOUBLE, s: STRING(5), ip: IPV4, m: MAC}")
	if err != nil {
		t.Fatal(err)
	}
	ts := time.Unix(1700000000, 123)
	rec, err := s.Encode(ts, true, int8(-3), -300, -70000, int64(math.MinInt64), uint32(4000000000), uint64(math.MaxUint64),
		float32(0.1), 2.5, "hi", netip.MustParseAddr("192.168.1.2"), "01:02:03:04:05:06")
	if err != nil {
		t.Fatal(err)
	}
	if Timestamp(rec) != ts.UnixNano() {
		t.Errorf("Timestamp = %d", Timestamp(rec))
	}
	vals, err := s.Decode(rec)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range vals[1:] {
		got = append(got, v.String())
	}
	want := "true -3 -300 -70000 -9223372036854775808 4000000000 18446744073709551615 0.1 2.5 hi 192.168.1.2 01:02:03:04:05:06"
	if strings.Join(got, " ") != want {
		t.Errorf("decoded %q\nwant    %q", strings.Join(got, " "), want)
	}
	if _, err := s.Encode(1); err == nil || !strings.Contains(err.Error(), "1 values for 13 columns") {
		t.Errorf("short Encode error = %v", err)
	}
	if _, err := s.Encode(true, 1000, 1, 1, 1, 1, 1, 1.0, 1.0, "x", "1.2.3.4", "01:02:03:04:05:06"); err == nil || !strings.Contains(err.Error(), `"c"`) {
		t.Errorf("CHAR overflow error = %v", err)
	}
	if _, err := s.EncodeStrings([]string{"1", "1", "1", "1", "1", "1", "1", "1", "1", "toolong", "1.2.3.4", "01:02:03:04:05:06"}); err == nil || !strings.Contains(err.Error(), `column "s"`) {
		t.Errorf("string too long error = %v", err)
	}
	if _, err := s.Decode(rec[1:]); !errors.Is(err, ErrRecordLen) {
		t.Errorf("Decode short record error = %v", err)
	}
}

// A STRING field is NUL-padded, so bytes with a NUL before their end would read back cut short:
// they are refused with the column named. Trailing NULs are padding and fine.
func TestStringWithNUL(t *testing.T) {
	s, _ := Parse("{s: STRING(5), n: INT}")
	if _, err := s.Encode([]byte("a\x00bc"), 1); !errors.Is(err, ErrValue) || !strings.Contains(err.Error(), `column "s"`) ||
		!strings.Contains(err.Error(), "NUL") {
		t.Errorf("Encode of a string with an inner NUL: error = %v", err)
	}
	rec, err := s.Encode([]byte("ab\x00\x00"), 1)
	if err != nil {
		t.Fatalf("Encode of a NUL-padded string: %v", err)
	}
	c, _ := s.Column("s")
	if got := c.Get(rec).String(); got != "ab" {
		t.Errorf("padded string read back as %q", got)
	}
}

// The Confluo pitfall: on a FLOAT column, 0.1 is stored as float32(0.1) and must compare equal to
// the literal 0.1, not greater than it.
func TestFloatComparesAsFloat32(t *testing.T) {
	s, _ := Parse("{f: FLOAT}")
	c, _ := s.Column("f")
	rec, _ := s.Encode(0.1)
	lit, _ := c.ParseValue("0.1")
	if Compare(c.Get(rec), lit) != 0 {
		t.Fatalf("stored 0.1f vs literal 0.1: Compare = %d", Compare(c.Get(rec), lit))
	}
	if !bytes.Equal(c.AppendKey(nil, rec), c.AppendValueKey(nil, lit)) {
		t.Fatal("keys of equal FLOAT values differ")
	}
}

// Keys must order exactly as Compare orders values, for every type.
func TestKeysPreserveOrder(t *testing.T) {
	s, err := Parse("{b: BOOL, c: CHAR, uc: UCHAR, sh: SHORT, us: USHORT, i: INT, u: UINT, l: LONG, ul: ULONG, f: FLOAT, d: DOUBLE, s: STRING(3), ip: IPV4, ip6: IPV6, m: MAC}")
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	randomRecord := func() []byte {
		rec := make([]byte, s.RecordSize)
		for i := range rec {
			rec[i] = byte(rng.Uint32())
		}
		if rng.IntN(4) == 0 { // many equal and near values
			for i := range rec {
				rec[i] &= 1
			}
		}
		c, _ := s.Column("b")
		rec[c.Offset] &= 1
		c, _ = s.Column("s")
		for i := c.Offset; i < c.Offset+c.Size; i++ {
			if rec[i] == 0 {
				clear(rec[i : c.Offset+c.Size]) // NUL padding runs to the end
				break
			}
		}
		for _, n := range []string{"f", "d"} { // avoid NaNs, whose order is by convention only
			c, _ := s.Column(n)
			if v := c.Get(rec); math.IsNaN(v.F) {
				clear(rec[c.Offset : c.Offset+c.Size])
			}
		}
		return rec
	}
	for range 20000 {
		a, b := randomRecord(), randomRecord()
		for i := 1; i < len(s.Columns); i++ {
			c := &s.Columns[i]
			va, vb := c.Get(a), c.Get(b)
			want := Compare(va, vb)
			if c.Type.IsFloat() && va.F == 0 && vb.F == 0 {
				continue // -0 and +0 compare equal as numbers but have distinct keys
			}
			got := bytes.Compare(c.AppendKey(nil, a), c.AppendKey(nil, b))
			if got != want {
				t.Fatalf("column %s: values %v, %v: key order %d, value order %d", c.Name, va, vb, got, want)
			}
			if !bytes.Equal(c.AppendKey(nil, a), c.AppendValueKey(nil, va)) {
				t.Fatalf("column %s: AppendKey and AppendValueKey differ for %v", c.Name, va)
			}
			// Put(Get(x)) reproduces the field.
			rec := make([]byte, s.RecordSize)
			if err := c.Put(rec, va); err != nil || !bytes.Equal(rec[c.Offset:c.Offset+c.Size], a[c.Offset:c.Offset+c.Size]) {
				t.Fatalf("column %s: Put(Get) = %v, field %x vs %x", c.Name, err, rec[c.Offset:c.Offset+c.Size], a[c.Offset:c.Offset+c.Size])
			}
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"{a: INT}", "{a: STRING(4), b: IPV6}", "x: mac", "{timestamp: ULONG, y: FLOAT,}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		if len(text) > 4096 {
			return
		}
		s, err := Parse(text)
		if (s == nil) == (err == nil) {
			t.Fatalf("Parse(%q) = %v, %v: want exactly one of schema and error", text, s, err)
		}
		if err != nil {
			return
		}
		again, err := Parse(s.String())
		if err != nil || !again.Equal(s) {
			t.Fatalf("round trip of %q via %q: %v", text, s.String(), err)
		}
	})
}
