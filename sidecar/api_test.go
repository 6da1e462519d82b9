package sidecar

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/confluo-go/confluo/pkg/wire"
)

// request sends a raw body to confluo.v1.host.testhost.<cmd> and decodes the envelope.
func request(t *testing.T, nc *nats.Conn, cmd string, body string) wire.Response {
	t.Helper()
	m, err := nc.Request("confluo.v1.host.testhost."+cmd, []byte(body), 5*time.Second)
	if err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	var r wire.Response
	if err := json.Unmarshal(m.Data, &r); err != nil {
		t.Fatalf("%s: reply is not a wire.Response: %v: %s", cmd, err, m.Data)
	}
	if (r.Error == nil) == (r.Result == nil) {
		t.Fatalf("%s: exactly one of result and error must be set: %s", cmd, m.Data)
	}
	return r
}

func wantCode(t *testing.T, r wire.Response, code wire.Code, mention string) {
	t.Helper()
	if r.Error == nil {
		t.Fatalf("want code %s, got result %s", code, r.Result)
	}
	if r.Error.Code != code {
		t.Fatalf("want code %s, got %+v", code, r.Error)
	}
	if !strings.Contains(r.Error.Description, mention) {
		t.Fatalf("description %q does not mention %q", r.Error.Description, mention)
	}
}

func TestNATSRequestReply(t *testing.T) {
	s, _ := startStub(t, testOptions(), newStubEngine())
	nc, err := nats.Connect(s.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	// Bad input on every field of the door; the daemon answers each with a code and keeps going.
	wantCode(t, request(t, nc, "query", `{"expr": `), wire.CodeBadRequest, "not valid JSON")
	wantCode(t, request(t, nc, "query", `[1,2]`), wire.CodeBadRequest, "query")
	wantCode(t, request(t, nc, "query", `{"limit": "ten"}`), wire.CodeBadRequest, `"limit"`)
	wantCode(t, request(t, nc, "query", `{"bogus": 1}`), wire.CodeBadRequest, "bogus")
	wantCode(t, request(t, nc, "query", `{} {}`), wire.CodeBadRequest, "trailing")
	wantCode(t, request(t, nc, "query", `{"limit": 1000000000}`), wire.CodeLimitExceeded, "1000000000")
	wantCode(t, request(t, nc, "query", `{"limit": -1}`), wire.CodeInvalidArgument, "negative")
	wantCode(t, request(t, nc, "query", `{"limit": 99999999999999999999999}`), wire.CodeBadRequest, "limit")
	wantCode(t, request(t, nc, "query", `{"from": 10, "to": 5}`), wire.CodeInvalidArgument, "after")
	wantCode(t, request(t, nc, "query", `{"from": "yesterday"}`), wire.CodeBadRequest, "yesterday")
	wantCode(t, request(t, nc, "query", `{"timeout_ms": -5}`), wire.CodeInvalidArgument, "timeout_ms")
	wantCode(t, request(t, nc, "query", `{"expr": "bad expr"}`), wire.CodeInvalidExpr, "1:5")
	wantCode(t, request(t, nc, "query", `{"multilog": "nope"}`), wire.CodeNotFound, "nope")
	wantCode(t, request(t, nc, "frobnicate", `{}`), wire.CodeUnknownCommand, "frobnicate")
	wantCode(t, request(t, nc, "aggregate", `{}`), wire.CodeInvalidArgument, "exactly one")
	wantCode(t, request(t, nc, "filter-add", `{"name": "a.b", "expr": "x"}`), wire.CodeInvalidArgument, "name")
	wantCode(t, request(t, nc, "trigger-add", `{"name": "t", "condition": "a > 1", "period_ms": -1}`), wire.CodeInvalidArgument, "period_ms")
	wantCode(t, request(t, nc, "filter-rm", `{}`), wire.CodeInvalidArgument, "name")
	wantCode(t, request(t, nc, "alerts", `{"limit": 1000000000}`), wire.CodeLimitExceeded, "maximum")
	big := `{"expr": "` + strings.Repeat("a", wire.MaxRequestBytes) + `"}`
	wantCode(t, request(t, nc, "query", big), wire.CodeTooLarge, "limit")

	// Good requests after all that.
	r := request(t, nc, "query", `{"expr": "timestamp > 0", "from": "-5m", "to": "now"}`)
	var q wire.QueryReply
	if err := json.Unmarshal(r.Result, &q); err != nil || q.Count != 1 || q.MultiLog != "packets" {
		t.Fatalf("query reply %s (%v)", r.Result, err)
	}
	if q.Rows[0][0].(float64) != 1000 {
		t.Fatalf("default limit not applied: %v", q.Rows)
	}
	if r := request(t, nc, "filter-add", `{"name": "f", "expr": "x > 1"}`); r.Error != nil {
		t.Fatal(r.Error)
	}
	wantCode(t, request(t, nc, "filter-add", `{"name": "f", "expr": "x > 1"}`), wire.CodeAlreadyExists, "f")
	r = request(t, nc, "filter-ls", ``)
	var fl wire.FilterList
	if err := json.Unmarshal(r.Result, &fl); err != nil || len(fl.Filters) != 1 || fl.Filters[0].MultiLog != "packets" {
		t.Fatalf("filter-ls %s", r.Result)
	}
	if r := request(t, nc, "filter-rm", `{"name": "f"}`); r.Error != nil {
		t.Fatal(r.Error)
	}
	wantCode(t, request(t, nc, "filter-rm", `{"name": "f"}`), wire.CodeNotFound, "f")
	r = request(t, nc, "stats", ``)
	var st wire.Stats
	if err := json.Unmarshal(r.Result, &st); err != nil || st.Host != "testhost" || !st.NATS.Connected || !st.NATS.Embedded {
		t.Fatalf("stats %s", r.Result)
	}
	if st.Queries.Total < 1 {
		t.Fatalf("queries not counted: %+v", st.Queries)
	}

	// Another host's subject is not ours: nobody answers.
	if _, err := nc.Request("confluo.v1.host.otherhost.stats", nil, 100*time.Millisecond); !errors.Is(err, nats.ErrNoResponders) && !errors.Is(err, nats.ErrTimeout) {
		t.Fatalf("other host answered: %v", err)
	}
}

func TestConcurrentQueryBound(t *testing.T) {
	o := testOptions()
	o.Query.MaxConcurrent = 1
	eng := newStubEngine()
	eng.block = make(chan struct{})
	eng.started = make(chan struct{}, 1)
	s, _ := startStub(t, o, eng)
	nc, err := nats.Connect(s.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	first := make(chan wire.Response, 1)
	go func() { first <- request(t, nc, "query", `{}`) }()
	<-eng.started
	wantCode(t, request(t, nc, "query", `{}`), wire.CodeBusy, "retry")
	wantCode(t, request(t, nc, "aggregate", `{"func": "COUNT(*)"}`), wire.CodeBusy, "retry")
	// Management keeps working while the slot is taken.
	if r := request(t, nc, "stats", ``); r.Error != nil {
		t.Fatal(r.Error)
	}
	close(eng.block)
	if r := <-first; r.Error != nil {
		t.Fatal(r.Error)
	}
	if s.queriesRejected.Load() != 2 {
		t.Fatalf("rejected = %d", s.queriesRejected.Load())
	}
}

func TestQueryTimeLimit(t *testing.T) {
	eng := newStubEngine()
	eng.block = make(chan struct{}) // never closed: only the time limit ends the query
	s, _ := startStub(t, testOptions(), eng)
	nc, err := nats.Connect(s.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	r := request(t, nc, "query", `{"timeout_ms": 20}`)
	var q wire.QueryReply
	if err := json.Unmarshal(r.Result, &q); err != nil || !q.Truncated || q.Reason != "time" {
		t.Fatalf("reply %s", r.Result)
	}
}

func TestHTTPAPI(t *testing.T) {
	s, _ := startStub(t, testOptions(), newStubEngine())
	base := "http://" + s.HTTPAddr()
	get := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	post := func(path, body string) (int, wire.Response) {
		resp, err := http.Post(base+path, "application/json", bytes.NewBufferString(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r wire.Response
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, r
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("/healthz %d", code)
	}
	if code, _ := get("/readyz"); code != 200 {
		t.Fatalf("/readyz %d", code)
	}
	if code, body := get("/v1/stats"); code != 200 || !strings.Contains(body, `"host":"testhost"`) {
		t.Fatalf("/v1/stats %d %s", code, body)
	}
	code, r := post("/v1/query", `{"limit": 1000000000}`)
	if code != 400 || r.Error == nil || r.Error.Code != wire.CodeLimitExceeded {
		t.Fatalf("huge limit: %d %+v", code, r.Error)
	}
	code, r = post("/v1/nope", `{}`)
	if code != 404 || r.Error.Code != wire.CodeUnknownCommand {
		t.Fatalf("unknown: %d %+v", code, r.Error)
	}
	code, r = post("/v1/query", `{"expr":`)
	if code != 400 || r.Error.Code != wire.CodeBadRequest {
		t.Fatalf("bad json: %d %+v", code, r.Error)
	}
	code, r = post("/v1/query", strings.Repeat(" ", wire.MaxRequestBytes+10))
	if code != 413 || r.Error.Code != wire.CodeTooLarge {
		t.Fatalf("too large: %d %+v", code, r.Error)
	}
	code, r = post("/v1/aggregate", `{"func": "SUM(len)"}`)
	if code != 200 || r.Error != nil {
		t.Fatalf("aggregate: %d %+v", code, r.Error)
	}
	code, body := get("/metrics")
	if code != 200 {
		t.Fatalf("/metrics %d", code)
	}
	for _, m := range []string{
		`confluo_sidecar_requests_total{code="limit_exceeded",command="query"} 1`,
		`confluo_sidecar_requests_total{code="unknown_command",command="unknown"} 1`,
		"confluo_sidecar_nats_connected 1",
		"confluo_sidecar_alerts_buffered 0",
		"confluo_sidecar_store_records 1",
	} {
		if !strings.Contains(body, m) {
			t.Errorf("/metrics lacks %q", m)
		}
	}
}
