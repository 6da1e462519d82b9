package sidecar

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/confluo-go/confluo/pkg/wire"
)

func TestDefaultOptionsValid(t *testing.T) {
	o := DefaultOptions()
	if err := o.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	if o.HTTP.Listen != "127.0.0.1:7480" {
		t.Fatalf("HTTP must default to localhost, got %q", o.HTTP.Listen)
	}
}

func TestValidateNamesField(t *testing.T) {
	cases := []struct {
		field string
		edit  func(*Options)
	}{
		{"host", func(o *Options) { o.Host = "a.b" }},
		{"capture.source", func(o *Options) { o.Capture.Source = "tape" }},
		{"capture.file", func(o *Options) { o.Capture.Source = "pcap" }},
		{"capture.file", func(o *Options) { o.Capture.Source, o.Capture.File = "pcap", "/nonexistent.pcap" }},
		{"capture.interface", func(o *Options) { o.Capture.Source = "afpacket" }},
		{"capture.rings", func(o *Options) { o.Capture.Rings = 0 }},
		{"capture.ring_capacity", func(o *Options) { o.Capture.RingCapacity = 1000 }},
		{"capture.snaplen", func(o *Options) { o.Capture.Snaplen = 10 }},
		{"store.bucket", func(o *Options) { o.Store.Bucket = 0 }},
		{"nats.urls[0]", func(o *Options) { o.NATS.URLs = []string{"localhost:4222"} }},
		{"nats.urls", func(o *Options) { o.NATS.User = "u" }},
		{"nats.password", func(o *Options) { o.NATS.URLs, o.NATS.Password = []string{"nats://x:1"}, "p" }},
		{"nats.creds_file", func(o *Options) { o.NATS.URLs, o.NATS.CredsFile = []string{"nats://x:1"}, "/nonexistent.creds" }},
		{"nats.tls", func(o *Options) {
			o.NATS.URLs, o.NATS.TLS.ServerName, o.NATS.TLS.CertFile = []string{"nats://x:1"}, "x", "/etc/hostname"
		}},
		{"nats.embedded_port", func(o *Options) { o.NATS.EmbeddedPort = 70000 }},
		{"http.listen", func(o *Options) { o.HTTP.Listen = "nocolon" }},
		{"query.max_limit", func(o *Options) { o.Query.MaxLimit = 1 }},
		{"query.timeout", func(o *Options) { o.Query.Timeout = -time.Second }},
		{"query.max_concurrent", func(o *Options) { o.Query.MaxConcurrent = 0 }},
		{"alerts.buffer", func(o *Options) { o.Alerts.Buffer = 0 }},
		{"triggers[0].name", func(o *Options) {
			o.Triggers = append(o.Triggers, wire.TriggerSpec{Name: "bad name", Condition: "x > 1"})
		}},
		{"shutdown_timeout", func(o *Options) { o.ShutdownTimeout = 0 }},
	}
	for _, c := range cases {
		o := DefaultOptions()
		c.edit(&o)
		err := o.Validate()
		if err == nil {
			t.Errorf("%s: accepted", c.field)
			continue
		}
		if !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), c.field+":") {
			t.Errorf("%s: error does not name the field: %v", c.field, err)
		}
	}
}

func TestLoadOptionsYAML(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	writeFile(t, good, `
host: hv1
labels: {rack: r1}
capture: {source: none, rings: 4}
nats: {urls: ["nats://127.0.0.1:4222"], reconnect_wait: 1s}
query: {timeout: 2s, max_concurrent: 2}
filters:
  - {name: syns, expr: "tcp_flags == 2"}
triggers:
  - {name: synflood, condition: "nsyn >= 10", period_ms: 100}
`)
	o, err := LoadOptions(good)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	if o.Host != "hv1" || o.Capture.Rings != 4 || o.Query.Timeout != 2*time.Second || o.NATS.ReconnectWait != time.Second ||
		o.Labels["rack"] != "r1" || o.Triggers[0].PeriodMillis != 100 || o.Capture.RingCapacity != 65536 {
		t.Fatalf("decoded %+v", o)
	}

	for name, text := range map[string]string{
		"unknown key":   "capture: {sorce: pcap}\n",
		"wrong type":    "capture: {rings: many}\n",
		"bad duration":  "query: {timeout: soon}\n",
		"not a mapping": "- a\n- b\n",
	} {
		p := filepath.Join(dir, "bad.yaml")
		writeFile(t, p, text)
		if _, err := LoadOptions(p); err == nil || !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("%s: err = %v", name, err)
		} else if name == "unknown key" && !strings.Contains(err.Error(), "sorce") {
			t.Errorf("unknown key error does not name the key: %v", err)
		}
	}
	if _, err := LoadOptions(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("missing file accepted")
	}
	empty := filepath.Join(dir, "empty.yaml")
	writeFile(t, empty, "")
	if o, err := LoadOptions(empty); err != nil || o.Query.DefaultLimit != 1000 {
		t.Errorf("empty file: %v %+v", err, o.Query)
	}
}

func TestNewRejectsInvalidOptions(t *testing.T) {
	o := DefaultOptions()
	o.Capture.Rings = -1
	if _, err := New(o, nil, nil); !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("New: %v", err)
	}
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// A configured filter with a bad expression stops New with a configuration error that says
// where the expression is wrong, and leaves nothing running (goleak checks).
func TestNewRejectsBadConfiguredFilter(t *testing.T) {
	o := testOptions()
	o.Capture.Source, o.Capture.File = "pcap", samplePcap
	o.Filters = []wire.FilterSpec{{Name: "f", Expr: "src_ip == 10.0.0.300"}}
	_, err := New(o, nil, nil)
	if !errors.Is(err, ErrInvalidOptions) || !errors.Is(err, wire.ErrInvalidExpr) || !strings.Contains(err.Error(), `filters "f"`) {
		t.Fatalf("New: %v", err)
	}
}

func TestMainExitCodes(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-rings", "0"}, "capture.rings"},
		{[]string{"-config", "/nonexistent.yaml"}, "nonexistent.yaml"},
		{[]string{"-source", "tape"}, "capture.source"},
		{[]string{"-log-format", "xml"}, "log-format"},
		{[]string{"-no-such-flag"}, "no-such-flag"},
	} {
		var out strings.Builder
		if code := Main(c.args, &out); code != 2 || !strings.Contains(out.String(), c.want) {
			t.Errorf("Main(%v) = %d, output %q; want 2 naming %q", c.args, code, out.String(), c.want)
		}
	}
}
