package sidecar

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves goroutines behind (the daemon's, the embedded
// NATS server's or the client's).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
