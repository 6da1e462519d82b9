package sidecar

import (
	"encoding/json"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/confluo-go/confluo/pkg/natstest"
	"github.com/confluo-go/confluo/pkg/wire"
)

// runServer starts an embedded server on port (-1: random); the outage test stops and restarts
// it on the same port.
func runServer(t *testing.T, port int) *server.Server {
	t.Helper()
	return natstest.Start(t, &server.Options{Port: port})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; !cond(); i++ {
		if i > 30000 { // a hang guard, not a timing assertion
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func receive(t *testing.T, sub *nats.Subscription, n int) []wire.Alert {
	t.Helper()
	var out []wire.Alert
	for len(out) < n {
		m, err := sub.NextMsg(30 * time.Second)
		if err != nil {
			t.Fatalf("after %d of %d alerts: %v", len(out), n, err)
		}
		var a wire.Alert
		if err := json.Unmarshal(m.Data, &a); err != nil {
			t.Fatalf("alert is not JSON: %v: %s", err, m.Data)
		}
		if host, trigger, err := wire.ParseAlertSubject(m.Subject); err != nil || host != a.Host || trigger != a.Trigger {
			t.Fatalf("subject %q does not match alert %+v (%v)", m.Subject, a, err)
		}
		out = append(out, a)
	}
	return out
}

func raiseN(s *Sidecar, n int) {
	for i := 0; i < n; i++ {
		start := time.Unix(0, int64(i)*int64(time.Millisecond))
		s.raise(wire.Alert{Trigger: "synflood", Condition: "syns >= 10", Aggregate: "syns", Op: ">=",
			Threshold: 10, Value: float64(10 + i), WindowStart: start, WindowEnd: start.Add(time.Millisecond)})
	}
}

// TestAlertsSurviveNATSOutage stops the NATS server mid-run, raises alerts, restarts the server on
// the same port and checks that every alert within the buffer arrives, in order, and that alerts
// beyond the buffer are dropped oldest-first and counted.
func TestAlertsSurviveNATSOutage(t *testing.T) {
	ns := runServer(t, -1)
	port := ns.Addr().(*net.TCPAddr).Port
	url := ns.ClientURL()

	o := testOptions()
	o.NATS.URLs = []string{url}
	o.Alerts.Buffer = 10
	s, _ := startStub(t, o, newStubEngine())

	subConn, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer subConn.Close()
	sub, err := subConn.SubscribeSync(wire.AlertsWildcard("testhost"))
	if err != nil {
		t.Fatal(err)
	}
	if err := subConn.Flush(); err != nil {
		t.Fatal(err)
	}

	raiseN(s, 3)
	got := receive(t, sub, 3)
	if got[0].Seq != 1 || got[2].Seq != 3 || got[0].Host != "testhost" || got[0].MultiLog != "packets" {
		t.Fatalf("before the outage: %+v", got)
	}
	// Delivered alerts leave the buffer after their flush; until then an outage would resend them.
	waitFor(t, "the buffer to empty", func() bool { return s.publisher.Buffered() == 0 })

	outage := func(raise int) {
		ns.Shutdown()
		ns.WaitForShutdown()
		waitFor(t, "the sidecar to see the outage", func() bool { return !s.nc.IsConnected() })
		raiseN(s, raise)
		waitFor(t, "alerts to be buffered", func() bool { return s.publisher.Buffered() == min(raise, o.Alerts.Buffer) })
		// Hold delivery until the subscriber is back, so the test does not depend on who
		// reconnects first.
		s.publisher.sendMu.Lock()
		ns = runServer(t, port)
		waitFor(t, "the subscriber to reconnect", func() bool { return subConn.IsConnected() && subConn.Flush() == nil })
		waitFor(t, "the sidecar to reconnect", func() bool { return s.nc.IsConnected() })
		s.publisher.sendMu.Unlock()
		s.publisher.kick()
	}

	// Outage 1: exactly a buffer's worth, nothing may be lost.
	outage(10)
	got = receive(t, sub, 10)
	for i, a := range got {
		if a.Seq != uint64(4+i) {
			t.Fatalf("outage 1: alert %d has seq %d, want %d", i, a.Seq, 4+i)
		}
	}
	waitFor(t, "the buffer to empty", func() bool { return s.publisher.Buffered() == 0 })
	if d := s.publisher.dropped.Load(); d != 0 {
		t.Fatalf("outage 1 dropped %d", d)
	}

	// Outage 2: 13 alerts into a buffer of 10: the oldest 3 are dropped and counted.
	outage(13)
	got = receive(t, sub, 10)
	for i, a := range got {
		if a.Seq != uint64(14+3+i) {
			t.Fatalf("outage 2: alert %d has seq %d, want %d", i, a.Seq, 17+i)
		}
	}
	if d := s.publisher.dropped.Load(); d != 3 {
		t.Fatalf("outage 2 dropped %d, want 3", d)
	}
	if extra, err := sub.NextMsg(50 * time.Millisecond); err == nil {
		t.Fatalf("unexpected extra alert %s", extra.Data)
	}
	st := s.Stats()
	if st.NATS.AlertsDropped != 3 || st.NATS.AlertsBuffered != 0 || !st.NATS.Connected || st.NATS.Embedded {
		t.Fatalf("stats %+v", st.NATS)
	}
	ns.Shutdown()
}
