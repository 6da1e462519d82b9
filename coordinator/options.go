package coordinator

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"github.com/confluo-go/confluo/pkg/wire"
)

// ErrInvalidOptions is wrapped by every error of Options.Validate.
var ErrInvalidOptions = errors.New("coordinator: invalid options")

// Options configure a Coordinator. Every default is written next to its field and set by
// DefaultOptions. An Options value is not safe for concurrent mutation; New copies it.
type Options struct {
	NATS NATSOptions `yaml:"nats"`

	// Bucket is the JetStream key-value bucket of the desired state. Default wire.FleetBucket.
	Bucket string `yaml:"bucket"`
	// Replicas of the bucket (1 for a single server). Default 1.
	Replicas int `yaml:"replicas"`

	// HeartbeatInterval is assumed for hosts whose heartbeats do not state theirs. Default 5s.
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval"`
	// MissedHeartbeats after which a host is marked down. Default 3.
	MissedHeartbeats int `yaml:"missed_heartbeats"`

	// AckTimeout is how long a rollout wave waits for acks by default. Default 30s.
	AckTimeout time.Duration `yaml:"ack_timeout"`
	// Waves are the default cumulative percentages of a rollout. Default [10, 50, 100].
	Waves []int `yaml:"waves"`

	// SnapshotLease is the lease sent with snapshot-begin: a host releases its freeze by itself
	// after it. Default 5s.
	SnapshotLease time.Duration `yaml:"snapshot_lease"`
	// SnapshotTimeout bounds the begin phase (waiting for every host's tails). Default 2s.
	SnapshotTimeout time.Duration `yaml:"snapshot_timeout"`
	// SnapshotHistory is how many snapshots are listed by default. Default 100.
	SnapshotHistory int `yaml:"snapshot_history"`

	// QueryTimeout bounds a fleet query when the request sets none. Default 5s.
	QueryTimeout time.Duration `yaml:"query_timeout"`

	// SnapshotEndDelay delays phase two of every snapshot. Fault injection for tests (a
	// coordinator stopped during the delay never sends end). Default 0.
	SnapshotEndDelay time.Duration `yaml:"-"`

	// Conn, when set, is used instead of connecting with NATS (the caller owns it).
	Conn *nats.Conn `yaml:"-"`
	// Logger; nil discards. Registerer for metrics; nil registers nothing.
	Logger     *slog.Logger          `yaml:"-"`
	Registerer prometheus.Registerer `yaml:"-"`
}

// NATSOptions say how to reach NATS. With no URLs an embedded nats-server with JetStream is
// started (StoreDir required then).
type NATSOptions struct {
	// URLs of the server or cluster. Default none: embedded.
	URLs []string `yaml:"urls"`
	// CredsFile (JWT + nkey), NKeyFile, or User/Password. Default none.
	CredsFile string `yaml:"creds_file"`
	NKeyFile  string `yaml:"nkey_file"`
	User      string `yaml:"user"`
	Password  string `yaml:"password"`
	// TLS: CA, client certificate and key. Default off.
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// Embedded server: listen host and port (-1: any free port) and JetStream store directory.
	// Defaults 127.0.0.1, 4222, "" (required when embedded).
	EmbeddedHost string `yaml:"embedded_host"`
	EmbeddedPort int    `yaml:"embedded_port"`
	StoreDir     string `yaml:"store_dir"`
	// ConfigFile is a nats-server configuration file for the embedded server (accounts,
	// permissions, TLS). Default none.
	ConfigFile string `yaml:"config_file"`
}

// DefaultOptions returns the documented defaults.
func DefaultOptions() Options {
	return Options{
		NATS:              NATSOptions{EmbeddedHost: "127.0.0.1", EmbeddedPort: 4222},
		Bucket:            wire.FleetBucket,
		Replicas:          1,
		HeartbeatInterval: 5 * time.Second,
		MissedHeartbeats:  3,
		AckTimeout:        30 * time.Second,
		Waves:             []int{10, 50, 100},
		SnapshotLease:     5 * time.Second,
		SnapshotTimeout:   2 * time.Second,
		SnapshotHistory:   100,
		QueryTimeout:      5 * time.Second,
	}
}

// Validate reports the first bad option, wrapping ErrInvalidOptions.
func (o Options) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidOptions}, args...)...)
	}
	if err := wire.ValidateToken("bucket", o.Bucket); err != nil {
		return bad("bucket: %v", err)
	}
	switch {
	case o.Replicas < 1 || o.Replicas > 5:
		return bad("replicas %d not in 1..5", o.Replicas)
	case o.HeartbeatInterval <= 0:
		return bad("heartbeat_interval %v must be positive", o.HeartbeatInterval)
	case o.MissedHeartbeats < 1:
		return bad("missed_heartbeats %d must be at least 1", o.MissedHeartbeats)
	case o.AckTimeout <= 0:
		return bad("ack_timeout %v must be positive", o.AckTimeout)
	case o.SnapshotLease <= 0 || o.SnapshotTimeout <= 0:
		return bad("snapshot_lease %v and snapshot_timeout %v must be positive", o.SnapshotLease, o.SnapshotTimeout)
	case o.SnapshotTimeout >= o.SnapshotLease:
		return bad("snapshot_timeout %v must be shorter than snapshot_lease %v", o.SnapshotTimeout, o.SnapshotLease)
	case o.SnapshotHistory < 1:
		return bad("snapshot_history %d must be at least 1", o.SnapshotHistory)
	case o.QueryTimeout <= 0:
		return bad("query_timeout %v must be positive", o.QueryTimeout)
	case o.SnapshotEndDelay < 0:
		return bad("snapshot end delay %v is negative", o.SnapshotEndDelay)
	}
	if err := validateWaves(o.Waves); err != nil {
		return bad("waves: %v", err)
	}
	if o.Conn == nil && len(o.NATS.URLs) == 0 && o.NATS.StoreDir == "" {
		return bad("nats.store_dir is required for the embedded server (no nats.urls given)")
	}
	if (o.NATS.CertFile == "") != (o.NATS.KeyFile == "") {
		return bad("nats.cert_file and nats.key_file go together")
	}
	return nil
}

func validateWaves(w []int) error {
	if len(w) == 0 {
		return errors.New("no waves")
	}
	prev := 0
	for i, p := range w {
		if p <= prev || p > 100 {
			return fmt.Errorf("wave %d is %d%%: percentages must ascend within 1..100", i, p)
		}
		prev = p
	}
	if prev != 100 {
		return fmt.Errorf("the last wave is %d%%, it must be 100", prev)
	}
	return nil
}

// LoadOptions reads a YAML file over DefaultOptions, rejecting unknown keys. It does not Validate.
func LoadOptions(path string) (Options, error) {
	o := DefaultOptions()
	data, err := os.ReadFile(path)
	if err != nil {
		return o, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&o); err != nil && !errors.Is(err, io.EOF) {
		return o, fmt.Errorf("%w: %s: %w", ErrInvalidOptions, path, err)
	}
	return o, nil
}
