package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestSubjects(t *testing.T) {
	s, err := AlertSubject("hv-1", "syn_flood")
	if err != nil || s != "confluo.v1.alerts.hv-1.syn_flood" {
		t.Fatalf("AlertSubject = %q, %v", s, err)
	}
	h, tr, err := ParseAlertSubject(s)
	if err != nil || h != "hv-1" || tr != "syn_flood" {
		t.Fatalf("ParseAlertSubject = %q %q %v", h, tr, err)
	}
	c, err := CommandSubject("hv-1", CmdQuery)
	if err != nil || c != "confluo.v1.host.hv-1.query" {
		t.Fatalf("CommandSubject = %q, %v", c, err)
	}
	h, cmd, err := ParseCommandSubject(c)
	if err != nil || h != "hv-1" || cmd != CmdQuery || !cmd.Known() {
		t.Fatalf("ParseCommandSubject = %q %q %v", h, cmd, err)
	}
	if s, _ := HeartbeatSubject("a"); s != "confluo.v1.heartbeat.a" {
		t.Fatalf("HeartbeatSubject = %q", s)
	}
	if s, _ := FlowEventSubject("a"); s != "confluo.v1.events.flow.a" {
		t.Fatalf("FlowEventSubject = %q", s)
	}
	if Command("nope").Known() {
		t.Fatal("unknown command is known")
	}
}

func TestBadTokens(t *testing.T) {
	for _, bad := range []string{"", "a.b", "*", ">", "a b", string(make([]byte, MaxTokenLen+1))} {
		if _, err := AlertSubject(bad, "t"); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("AlertSubject(%q): err = %v, want ErrInvalidToken", bad, err)
		}
		if _, err := AlertSubject("h", bad); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("AlertSubject(h, %q): err = %v, want ErrInvalidToken", bad, err)
		}
	}
	for _, bad := range []string{"confluo.v1.host.h", "confluo.v2.host.h.query", "confluo.v1.host.h.a.b", "x"} {
		if _, _, err := ParseCommandSubject(bad); err == nil {
			t.Errorf("ParseCommandSubject(%q) accepted", bad)
		}
	}
}

func TestErrors(t *testing.T) {
	e := Errorf(CodeNotFound, "filter %q", "x")
	wrapped := fmt.Errorf("outer: %w", e)
	if !errors.Is(wrapped, ErrNotFound) || errors.Is(wrapped, ErrBusy) {
		t.Fatal("errors.Is by code broken")
	}
	if Wrap(CodeInternal, wrapped) != e {
		t.Fatal("Wrap must return the inner *Error")
	}
	if w := Wrap(CodeInvalidExpr, errors.New("boom")); w.Code != CodeInvalidExpr || w.Description != "boom" {
		t.Fatalf("Wrap = %+v", w)
	}
	b, _ := json.Marshal(Response{Error: e})
	if string(b) != `{"error":{"code":1005,"description":"filter \"x\""}}` {
		t.Fatalf("json = %s", b)
	}
	seen := map[string]bool{}
	for c := range codeNames {
		if seen[c.String()] {
			t.Fatalf("duplicate code name %s", c)
		}
		seen[c.String()] = true
		if c.HTTPStatus() < 400 {
			t.Fatalf("code %d has no HTTP status", c)
		}
	}
}

func TestTime(t *testing.T) {
	now := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	cases := map[string]int64{
		"":                       0,
		"123":                    123,
		"now":                    now.UnixNano(),
		"-5m":                    now.Add(-5 * time.Minute).UnixNano(),
		"2026-11-22T00:00:01.5Z": now.Add(1500 * time.Millisecond).UnixNano(),
	}
	for in, want := range cases {
		got, err := ParseTime(in, now)
		if err != nil || int64(got) != want {
			t.Errorf("ParseTime(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"yesterday", "-x", "2026-13-01"} {
		if _, err := ParseTime(bad, now); err == nil {
			t.Errorf("ParseTime(%q) accepted", bad)
		}
	}
	var q QueryRequest
	if err := json.Unmarshal([]byte(`{"from": 5, "to": "2026-11-22T00:00:00Z"}`), &q); err != nil {
		t.Fatal(err)
	}
	if q.From != 5 || q.To.Std() != now {
		t.Fatalf("decoded %+v", q)
	}
	if err := json.Unmarshal([]byte(`{"from": 1.5}`), &q); err == nil {
		t.Fatal("fractional ns accepted")
	}
}
