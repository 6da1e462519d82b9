package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/confluo-go/confluo/pkg/wire"
	"github.com/confluo-go/confluo/sidecar"
)

// startSidecar runs a real sidecar replaying the sample capture with an embedded NATS server.
func startSidecar(t *testing.T) *sidecar.Sidecar {
	t.Helper()
	o := sidecar.DefaultOptions()
	o.Host = "clitest"
	o.NATS.EmbeddedPort = -1
	o.HTTP.Listen = "127.0.0.1:0"
	o.HeartbeatInterval = 0
	o.Capture.Source, o.Capture.File = "pcap", "../testdata/dev_sample.pcap"
	s, err := sidecar.New(o, nil, prometheus.NewRegistry())
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
	for i := 0; !s.CaptureDone(); i++ {
		if i > 30000 {
			t.Fatal("capture not stored")
		}
		time.Sleep(time.Millisecond)
	}
	return s
}

func run(t *testing.T, s *sidecar.Sidecar, args ...string) (string, error) {
	return runWithStderr(t, s, io.Discard, args...)
}

func runWithStderr(t *testing.T, s *sidecar.Sidecar, stderr io.Writer, args ...string) (string, error) {
	t.Helper()
	root := &cobra.Command{Use: "confluoctl", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(Commands()...)
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(stderr)
	root.SetArgs(append(args, "--nats", s.NATSURL(), "--host", "clitest"))
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

func mustRun(t *testing.T, s *sidecar.Sidecar, args ...string) string {
	t.Helper()
	out, err := run(t, s, args...)
	if err != nil {
		t.Fatalf("confluoctl %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func TestCommands(t *testing.T) {
	s := startSidecar(t)

	out := mustRun(t, s, "query", "src_ip == 10.88.0.1 && ip_proto == tcp && dst_port == 5301", "--limit", "3")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 4 || !strings.Contains(lines[0], "SRC_IP") ||
		!strings.Contains(lines[1], "10.88.0.1") || !strings.Contains(lines[1], "5301") {
		t.Fatalf("query table:\n%s", out)
	}
	out = mustRun(t, s, "query", "ip_proto == udp && dst_port == 5302", "--all", "--limit", "100", "--json", "--columns", "timestamp")
	dec, total := json.NewDecoder(strings.NewReader(out)), 0
	for dec.More() {
		var r wire.QueryReply
		if err := dec.Decode(&r); err != nil {
			t.Fatal(err)
		}
		total += r.Count
	}
	if total != 834 { // tshark -Y 'udp.dstport == 5302' counts 834
		t.Fatalf("--all --json returned %d rows, want 834", total)
	}

	pcapPath := filepath.Join(t.TempDir(), "udp.pcap")
	mustRun(t, s, "query", "ip_proto == udp && dst_port == 5302", "--all", "--output", "pcap", "-o", pcapPath)
	f, err := os.Open(pcapPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	frames := 0
	for {
		if _, _, err := r.ReadPacketData(); err != nil {
			break
		}
		frames++
	}
	if frames != 834 {
		t.Fatalf("pcap output has %d frames, want 834", frames)
	}

	out = mustRun(t, s, "aggregate", "COUNT(*)", "ip_proto == udp && frame_len < 300")
	if !strings.HasPrefix(out, "COUNT(*) = 2 ") { // tshark -Y 'udp && frame.len < 300' counts 2
		t.Fatalf("aggregate: %q", out)
	}

	mustRun(t, s, "filter", "add", "udp5302", "ip_proto == udp && dst_port == 5302")
	mustRun(t, s, "aggregate", "add", "udp_pkts", "--filter", "udp5302", "COUNT(*)")
	if out := mustRun(t, s, "filter", "ls"); !strings.Contains(out, "udp5302") {
		t.Fatalf("filter ls: %q", out)
	}
	if out := mustRun(t, s, "aggregate", "ls"); !strings.Contains(out, "udp_pkts") || !strings.Contains(out, "COUNT(*)") {
		t.Fatalf("aggregate ls: %q", out)
	}
	if out := mustRun(t, s, "aggregate", "--name", "udp_pkts"); !strings.HasPrefix(out, "COUNT(*) = 834 ") {
		t.Fatalf("aggregate --name: %q", out)
	}

	// tail receives the alerts of a trigger installed after it subscribed.
	tailOut := make(chan string, 1)
	listening := &signalWriter{ready: make(chan struct{})}
	go func() {
		out, err := runWithStderr(t, s, listening, "tail", "--count", "1")
		if err != nil {
			out = "error: " + err.Error()
		}
		tailOut <- out
	}()
	select {
	case <-listening.ready:
	case out := <-tailOut:
		t.Fatalf("tail ended early: %s", out)
	}
	mustRun(t, s, "trigger", "add", "udp_burst", "udp_pkts >= 80", "--period", "100ms")
	select {
	case out := <-tailOut:
		if !strings.HasPrefix(out, "ALERT clitest/udp_burst #1") {
			t.Fatalf("tail: %q", out)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("tail received no alert")
	}
	if out := mustRun(t, s, "alerts"); !strings.Contains(out, "udp_burst") {
		t.Fatalf("alerts: %q", out)
	}
	if out := mustRun(t, s, "trigger", "ls"); !strings.Contains(out, "udp_pkts >= 80") || !strings.Contains(out, "100ms") {
		t.Fatalf("trigger ls: %q", out)
	}
	mustRun(t, s, "trigger", "rm", "udp_burst")
	if out := mustRun(t, s, "stats"); !strings.Contains(out, "received 4347, stored 4347") {
		t.Fatalf("stats: %q", out)
	}

	// Errors from the sidecar come back as coded wire errors.
	_, err = run(t, s, "query", "src_ip == ")
	var we *wire.Error
	if !errors.As(err, &we) || we.Code != wire.CodeInvalidExpr {
		t.Fatalf("bad expression: %v", err)
	}
	_, err = run(t, s, "filter", "rm", "nope")
	if !errors.Is(err, wire.ErrNotFound) {
		t.Fatalf("rm unknown: %v", err)
	}
	if _, err := run(t, s, "query", "--from", "yesterday"); err == nil || !strings.Contains(err.Error(), "--from") {
		t.Fatalf("bad --from: %v", err)
	}

	// The HTTP API gives the same answers.
	root := &cobra.Command{Use: "confluoctl", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(Commands()...)
	var buf bytes.Buffer
	root.SetOut(&buf)
	root.SetArgs([]string{"aggregate", "COUNT(*)", "ip_proto == udp && frame_len < 300", "--api", "http://" + s.HTTPAddr()})
	if err := root.Execute(); err != nil || !strings.HasPrefix(buf.String(), "COUNT(*) = 2 ") {
		t.Fatalf("over HTTP: %q %v", buf.String(), err)
	}
}

// signalWriter closes ready at the first write (tail's "listening on" line, after its
// subscription is flushed to the server).
type signalWriter struct {
	once  sync.Once
	ready chan struct{}
}

func (w *signalWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.ready) })
	return len(p), nil
}
