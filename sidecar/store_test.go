package sidecar

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/confluo-go/confluo/pkg/wire"
)

// storeAnswers is what a set of queries returns from a running sidecar.
func storeAnswers(t *testing.T, s *Sidecar) []any {
	t.Helper()
	nc, err := nats.Connect(s.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var out []any
	st := call[wire.Stats](t, nc, "testhost", wire.CmdStats, nil)
	out = append(out, st.MultiLogs[0].Records)
	for _, expr := range []string{"", "ip_proto == udp && frame_len < 300", "dst_ip in 10.88.0.0/24 && ip_proto == 6", "ip_version == 6"} {
		agg := call[wire.AggregateReply](t, nc, "testhost", wire.CmdAggregate, wire.AggregateRequest{Func: "COUNT(*)", Expr: expr})
		q := call[wire.QueryReply](t, nc, "testhost", wire.CmdQuery,
			wire.QueryRequest{Expr: expr, Limit: 100000, Columns: []string{"timestamp", "ip_id", "src_ip"}})
		out = append(out, expr, agg.Count, q.Count, q.Rows)
	}
	return out
}

// TestStoreDirSurvivesRestart runs a sidecar on the sample capture with a store directory,
// stops it, starts another on the same directory with source none, and gets the same answers.
func TestStoreDirSurvivesRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	for _, mode := range []string{"durable", "durable_relaxed"} {
		t.Run(mode, func(t *testing.T) {
			dir := filepath.Join(dir, mode)
			o := testOptions()
			o.Store.Dir, o.Store.Mode = dir, mode
			o.Store.Indexes = []string{"dst_port"}
			if err := o.Validate(); err != nil {
				t.Fatal(err)
			}
			o.Capture.Source, o.Capture.File = "pcap", samplePcap
			reg := prometheus.NewRegistry()
			first, err := New(o, nil, reg)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- first.Run(ctx) }()
			waitFor(t, "the capture to be stored", first.CaptureDone)
			want := storeAnswers(t, first)
			// The store's own metrics reach the sidecar's registry.
			families, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			seen := map[string]bool{}
			for _, f := range families {
				seen[strings.SplitN(f.GetName(), "_", 3)[1]] = true
			}
			for _, sub := range []string{"sidecar", "multilog", "logstore"} {
				if !seen[sub] {
					t.Errorf("no confluo_%s_* metric registered", sub)
				}
			}
			if want[0].(uint64) == 0 {
				t.Fatal("nothing stored")
			}
			cancel() // SIGTERM: drain, then flush and close the store
			if err := <-done; err != nil {
				t.Fatalf("Run: %v", err)
			}

			o2 := testOptions()
			o2.Store.Dir, o2.Store.Mode = dir, mode
			if err := o2.Validate(); err != nil {
				t.Fatal(err)
			}
			second := startNone(t, o2)
			if got := storeAnswers(t, second); !reflect.DeepEqual(got, want) {
				t.Fatalf("after restart:\n got %.300v\nwant %.300v", got, want)
			}
		})
	}
}

func startNone(t *testing.T, o Options) *Sidecar {
	t.Helper()
	s, err := New(o, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	waitFor(t, "the sidecar to be ready", s.Ready)
	return s
}

func TestStoreOptionsValidate(t *testing.T) {
	cases := []struct {
		name   string
		change func(*StoreOptions)
		field  string
	}{
		{"bad mode", func(s *StoreOptions) { s.Mode = "fast" }, "store.mode"},
		{"durable without dir", func(s *StoreOptions) { s.Mode = "durable" }, "store.dir"},
		{"in_memory with dir", func(s *StoreOptions) { s.Dir, s.Mode = "/tmp/x", "in_memory" }, "store.mode"},
		{"negative sync", func(s *StoreOptions) { s.Dir, s.SyncInterval = "/tmp/x", -time.Second }, "store.sync_interval"},
		{"negative retention", func(s *StoreOptions) { s.Dir, s.RetentionAge = "/tmp/x", -time.Second }, "store.retention_age"},
		{"negative disk", func(s *StoreOptions) { s.Dir, s.MaxDiskBytes = "/tmp/x", -1 }, "store.max_disk_bytes"},
		{"negative memory bound in memory", func(s *StoreOptions) { s.MaxMemoryBytes = -1 }, "store.max_memory_bytes"},
		{"disk bound without dir", func(s *StoreOptions) { s.MaxDiskBytes = 1 << 30 }, "store.max_disk_bytes"},
		{"archive without dir", func(s *StoreOptions) { s.ArchiveAfter = time.Hour }, "store.archive_after"},
	}
	for _, c := range cases {
		o := testOptions()
		c.change(&o.Store)
		err := o.Validate()
		if !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: %v, want an error naming %s", c.name, err, c.field)
		}
	}
	o := testOptions()
	if err := o.UnmarshalYAMLBytes([]byte("store:\n  dir: /var/lib/confluo\n  mode: durable_relaxed\n  sync_interval: 20ms\n  archive_after: 1h\n  retention_age: 168h\n  max_disk_bytes: 10000000000\n  max_memory_bytes: 1000000000\n")); err != nil {
		t.Fatal(err)
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	p, err := o.Store.persistence()
	if err != nil || p == nil || p.Dir != "/var/lib/confluo" || p.Store.RetentionAge != 168*time.Hour || p.Store.SyncInterval != 20*time.Millisecond {
		t.Fatalf("persistence %+v, %v", p, err)
	}
	// A directory written with another ring count is refused, naming the directory.
	dir := t.TempDir()
	o = testOptions()
	o.Store.Dir = dir
	s, err := New(o, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Run(ctx); err != nil {
		t.Fatal(err)
	}
	o.Capture.Rings = 3
	if _, err := New(o, nil, prometheus.NewRegistry()); err == nil || !strings.Contains(err.Error(), dir) {
		t.Fatalf("another ring count: %v, want an error naming %s", err, dir)
	}
}

func TestGoMemoryLimit(t *testing.T) {
	for _, c := range []struct {
		bound int64
		env   string
		want  int64
		ok    bool
	}{
		{0, "", 0, false},
		{1 << 30, "", 1<<30 + memoryLimitAllowance, true},
		{1 << 30, "2GiB", 0, false}, // the operator's GOMEMLIMIT wins
	} {
		got, ok := goMemoryLimit(c.bound, c.env)
		if got != c.want || ok != c.ok {
			t.Errorf("goMemoryLimit(%d, %q) = %d, %v; want %d, %v", c.bound, c.env, got, ok, c.want, c.ok)
		}
	}
}

// TestInMemoryStoreRetention runs a sidecar without a store directory under retention_age:
// the replayed capture's packets are years old, so the background maintenance drops every
// sealed segment; stats count what was dropped, and queries answer over what is kept.
func TestInMemoryStoreRetention(t *testing.T) {
	o := testOptions()
	o.Store.RetentionAge = time.Hour
	o.Capture.Loops = 8 // several 1 MiB segments per ring
	s := startPcap(t, o)
	nc, err := nats.Connect(s.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var st wire.Stats
	waitFor(t, "retention to drop the old packets", func() bool {
		st = call[wire.Stats](t, nc, "testhost", wire.CmdStats, nil)
		return st.MultiLogs[0].RecordsDeleted > 0
	})
	ml := st.MultiLogs[0]
	if ml.Records+ml.RecordsDeleted != st.Capture.Stored {
		t.Fatalf("%d records kept + %d dropped, want the %d stored", ml.Records, ml.RecordsDeleted, st.Capture.Stored)
	}
	agg := call[wire.AggregateReply](t, nc, "testhost", wire.CmdAggregate, wire.AggregateRequest{Func: "COUNT(*)"})
	if agg.Count != ml.Records {
		t.Fatalf("COUNT(*) over the kept packets %d, stats say %d kept", agg.Count, ml.Records)
	}
}
