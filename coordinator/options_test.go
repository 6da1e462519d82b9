package coordinator

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadOptions(t *testing.T) {
	o, err := LoadOptions("testdata/coordinator.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	if o.NATS.URLs[0] != "nats://127.0.0.1:4222" || o.AckTimeout != 30*time.Second || o.Waves[2] != 100 || o.MissedHeartbeats != 3 {
		t.Errorf("loaded %+v", o)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("ack_timout: 3s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOptions(bad); !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), "ack_timout") {
		t.Errorf("unknown key: %v", err)
	}
	if _, err := LoadOptions(filepath.Join(t.TempDir(), "missing.yaml")); !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("missing file: %v", err)
	}
}
