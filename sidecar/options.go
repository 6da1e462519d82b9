package sidecar

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/confluo-go/confluo/pkg/logstore"
	"github.com/confluo-go/confluo/pkg/multilog"
	"github.com/confluo-go/confluo/pkg/wire"
)

// ErrInvalidOptions is wrapped by every error of Options.Validate and LoadOptions.
var ErrInvalidOptions = errors.New("sidecar: invalid options")

// Options configure a Sidecar. Every default is written next to its field and set by
// DefaultOptions. In YAML the keys are the lower-case names in the yaml tags; unknown keys are
// errors. An Options value is not safe for concurrent mutation; New copies it.
type Options struct {
	// Host names this hypervisor in every subject. Default: the OS host name with characters
	// outside [A-Za-z0-9_-] replaced by '-'.
	Host string `yaml:"host"`
	// Labels are published in heartbeats (rack, zone, ...). Default: none.
	Labels map[string]string `yaml:"labels"`

	Capture CaptureOptions `yaml:"capture"`
	Store   StoreOptions   `yaml:"store"`
	NATS    NATSOptions    `yaml:"nats"`
	HTTP    HTTPOptions    `yaml:"http"`
	Query   QueryOptions   `yaml:"query"`
	Alerts  AlertOptions   `yaml:"alerts"`
	Mirror  MirrorOptions  `yaml:"mirror"`
	Fleet   FleetOptions   `yaml:"fleet"`

	// Filters, Aggregates and Triggers are installed at start, in that order.
	Filters    []wire.FilterSpec    `yaml:"filters"`
	Aggregates []wire.AggregateSpec `yaml:"aggregates"`
	Triggers   []wire.TriggerSpec   `yaml:"triggers"`

	// HeartbeatInterval between heartbeats on confluo.v1.heartbeat.<host>. Default 5s; 0 disables.
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval"`
	// ShutdownTimeout bounds the graceful shutdown (drain rings, flush alerts). Default 10s.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
}

// CaptureOptions choose where mirrored packets come from.
type CaptureOptions struct {
	// Source is "pcap" (replay File), "afpacket" (Interface), "dpdk" (binary built with -tags dpdk)
	// or "none" (no capture; the API still serves). Default "none".
	Source string `yaml:"source"`
	// File is the pcap/pcapng file for Source "pcap".
	File string `yaml:"file"`
	// Pace replays a file at its recorded pace instead of as fast as possible. Default false.
	Pace bool `yaml:"pace"`
	// Retime shifts a replayed file's timestamps so its first frame carries the replay's start
	// time (recorded gaps kept). Default false: recorded timestamps.
	Retime bool `yaml:"retime"`
	// Loops is the number of passes over the file; -1 forever. Default 1.
	Loops int `yaml:"loops"`
	// Interface is the mirror output port for Source "afpacket" or the vhost-user socket path
	// for "dpdk".
	Interface string `yaml:"interface"`
	// Namespace is the network namespace path (/var/run/netns/x) of Interface for "afpacket".
	// Default "": the sidecar's own.
	Namespace string `yaml:"namespace"`
	// Rings is the number of rings and writer goroutines. Default 2.
	Rings int `yaml:"rings"`
	// RingCapacity is each ring's size in records, a power of two. Default 65536.
	RingCapacity int `yaml:"ring_capacity"`
	// Snaplen is the bytes of each frame decoded. Default 256.
	Snaplen int `yaml:"snaplen"`
}

// StoreOptions configure the packet multilog.
type StoreOptions struct {
	// MultiLog is the name of the built-in packet multilog. Default "packets".
	MultiLog string `yaml:"multilog"`
	// Bucket is the time bucket of filters, aggregates and triggers. Default 1ms.
	Bucket time.Duration `yaml:"bucket"`
	// Indexes lists columns indexed at start. Default none.
	Indexes []string `yaml:"indexes"`

	// Dir is the directory the packet multilog persists to (multilog.Open; format in
	// docs/format.md). A sidecar restarted on the same directory serves the earlier data, its
	// indexes, filters, aggregates and triggers. Default "": in memory only, nothing survives a
	// restart.
	Dir string `yaml:"dir"`
	// Mode is in_memory, durable (an ingest batch is on disk before the next one starts) or
	// durable_relaxed (synced every sync_interval; a crash loses at most that). Default
	// durable_relaxed with a dir, in_memory without; durable modes need a dir.
	Mode string `yaml:"mode"`
	// SyncInterval is how often durable_relaxed syncs. Default 50ms.
	SyncInterval time.Duration `yaml:"sync_interval"`
	// ArchiveAfter: sealed segments whose newest packet is older than this are compressed on
	// disk and leave memory (queries read them transparently). Default 0: not by age. Needs dir.
	ArchiveAfter time.Duration `yaml:"archive_after"`
	// RetentionAge: data older than this is deleted, whole segments at a time (counted), on
	// disk and in memory alike. Default 0: kept forever.
	RetentionAge time.Duration `yaml:"retention_age"`
	// MaxDiskBytes bounds the store's files; the oldest data is deleted to stay under it
	// (counted). Default 0: unbounded. Needs dir.
	MaxDiskBytes int64 `yaml:"max_disk_bytes"`
	// MaxMemoryBytes bounds the packet data and the index, filter and aggregate entries held
	// in memory (plus one active segment per ring, a small read cache and each derived log's
	// current epoch): with a dir, older data is archived to disk, and deleted when that is not
	// enough; in memory, the oldest data is dropped. Counted either way. Default 0: unbounded.
	MaxMemoryBytes int64 `yaml:"max_memory_bytes"`
}

// persistence returns the multilog persistence for the options, or nil for an unbounded
// in-memory multilog. In memory with retention_age or max_memory_bytes it is a store without
// a directory, which drops the oldest data.
func (o StoreOptions) persistence() (*multilog.Persistence, error) {
	mode, err := o.mode()
	if err != nil || (mode == logstore.InMemory && o.RetentionAge == 0 && o.MaxMemoryBytes == 0) {
		return nil, err
	}
	return &multilog.Persistence{Dir: o.Dir, Mode: mode, Store: logstore.Options{
		SyncInterval:   o.SyncInterval,
		ArchiveAge:     o.ArchiveAfter,
		RetentionAge:   o.RetentionAge,
		MaxDiskBytes:   o.MaxDiskBytes,
		MaxMemoryBytes: o.MaxMemoryBytes,
	}}, nil
}

// mode parses Mode with its default.
func (o StoreOptions) mode() (logstore.Mode, error) {
	if o.Mode == "" {
		if o.Dir == "" {
			return logstore.InMemory, nil
		}
		return logstore.DurableRelaxed, nil
	}
	return logstore.ParseMode(o.Mode)
}

// NATSOptions configure the NATS connection. With no URLs an embedded nats-server is started.
type NATSOptions struct {
	// URLs of an external server or cluster ("nats://host:4222"). Default none: embedded server.
	URLs []string `yaml:"urls"`
	// CredsFile is a user JWT + nkey seed file (decentralized auth). Default none.
	CredsFile string `yaml:"creds_file"`
	// NKeyFile is an nkey seed file. Default none.
	NKeyFile string `yaml:"nkey_file"`
	// User and Password for user/password auth. Default none.
	User     string `yaml:"user"`
	Password string `yaml:"password"`
	// TLS to the external server. Default off.
	TLS TLSOptions `yaml:"tls"`
	// Embedded server listen address and port when URLs is empty. Default 127.0.0.1:4222; port -1
	// picks a free port.
	EmbeddedHost string `yaml:"embedded_host"`
	EmbeddedPort int    `yaml:"embedded_port"`
	// ReconnectWait between reconnect attempts. Default 250ms.
	ReconnectWait time.Duration `yaml:"reconnect_wait"`
	// Disabled turns NATS off entirely (HTTP API only). Default false.
	Disabled bool `yaml:"disabled"`
}

// TLSOptions configure TLS to NATS.
type TLSOptions struct {
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName overrides the name checked in the server's certificate.
	ServerName string `yaml:"server_name"`
}

// Enabled reports whether any TLS setting is present.
func (t TLSOptions) Enabled() bool {
	return t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != ""
}

// MirrorOptions make the sidecar own an Open vSwitch mirror: at start it ensures the bridge's spray
// port and the mirror (package ovs), captures from the spray port, keeps both reconciled while it
// runs, and on shutdown removes the mirror (and the spray port it created) if RemoveOnExit.
type MirrorOptions struct {
	// Enabled turns mirror management on. Default false (capture from capture.interface as is).
	Enabled bool `yaml:"enabled"`
	// DB is the OVSDB endpoint. Default "unix:/var/run/openvswitch/db.sock".
	DB string `yaml:"db"`
	// OVSRunDir is ovs-vswitchd's run directory. Default "/var/run/openvswitch".
	OVSRunDir string `yaml:"ovs_rundir"`
	// VSwitchdNetNS is ovs-vswitchd's network namespace (/run/netns/x) when it is not the
	// sidecar's; the spray port lives there, so capture.namespace defaults to it. Default "".
	VSwitchdNetNS string `yaml:"vswitchd_netns"`
	// VhostDir is where a dpdkvhostuserclient spray port expects its vhost-user server socket
	// (<vhost_dir>/<port>.sock) on an OVS-DPDK bridge. Default "/var/run/confluo/vhost".
	VhostDir string `yaml:"vhost_dir"`
	// Bridge and Name identify the mirror. Name default "confluo".
	Bridge string `yaml:"bridge"`
	Name   string `yaml:"name"`
	// Selection: SelectAll, or SrcPorts/DstPorts, optionally VLANs; Flows are OpenFlow matches.
	SelectAll bool     `yaml:"select_all"`
	SrcPorts  []string `yaml:"src_ports"`
	DstPorts  []string `yaml:"dst_ports"`
	VLANs     []int    `yaml:"vlans"`
	Flows     []string `yaml:"flows"`
	// Snaplen truncates mirrored copies in OVS; 0 keeps whole packets. Default 0.
	Snaplen int `yaml:"snaplen"`
	// RemoveOnExit removes the mirror and the spray port on shutdown. Default false.
	RemoveOnExit bool `yaml:"remove_on_exit"`
}

// FleetOptions configure the fleet agent (package pkg/fleet) the sidecar embeds on its NATS
// connection: heartbeats with the config revision, configuration rollouts from the coordinator,
// distributed snapshots and network-wide queries.
type FleetOptions struct {
	// Enabled runs the agent (it then publishes the heartbeats). Default true; needs NATS.
	Enabled bool `yaml:"enabled"`
	// ConfigWatch applies configuration revisions from the JetStream key-value bucket. Default
	// true; always off with the embedded NATS server (it runs without JetStream).
	ConfigWatch bool `yaml:"config_watch"`
}

// HTTPOptions configure the local HTTP API, /metrics, /healthz and /readyz.
type HTTPOptions struct {
	// Listen address. Default "127.0.0.1:7480" (localhost only); "" disables HTTP.
	Listen string `yaml:"listen"`
}

// QueryOptions bound what one query may cost so queries cannot starve ingest.
type QueryOptions struct {
	// DefaultLimit rows when a request sets none. Default 1000.
	DefaultLimit int `yaml:"default_limit"`
	// MaxLimit is the largest limit a request may ask for. Default 100000.
	MaxLimit int `yaml:"max_limit"`
	// Timeout per query. Default 5s.
	Timeout time.Duration `yaml:"timeout"`
	// MaxConcurrent queries; more are refused with code busy. Default 4.
	MaxConcurrent int `yaml:"max_concurrent"`
}

// AlertOptions configure alert delivery.
type AlertOptions struct {
	// Buffer is how many alerts are kept while NATS is unreachable; beyond it the oldest are
	// dropped and counted. Default 10000.
	Buffer int `yaml:"buffer"`
	// History is how many recent alerts the alerts command can list. Default 10000.
	History int `yaml:"history"`
}

// DefaultOptions returns the documented defaults.
func DefaultOptions() Options {
	return Options{
		Host:              defaultHost(),
		Capture:           CaptureOptions{Source: "none", Rings: 2, RingCapacity: 65536, Snaplen: 256},
		Store:             StoreOptions{MultiLog: "packets", Bucket: time.Millisecond},
		NATS:              NATSOptions{EmbeddedHost: "127.0.0.1", EmbeddedPort: 4222, ReconnectWait: 250 * time.Millisecond},
		HTTP:              HTTPOptions{Listen: "127.0.0.1:7480"},
		Fleet:             FleetOptions{Enabled: true, ConfigWatch: true},
		Mirror:            MirrorOptions{DB: "unix:/var/run/openvswitch/db.sock", OVSRunDir: "/var/run/openvswitch", VhostDir: "/var/run/confluo/vhost", Name: "confluo"},
		Query:             QueryOptions{DefaultLimit: 1000, MaxLimit: 100000, Timeout: 5 * time.Second, MaxConcurrent: 4},
		Alerts:            AlertOptions{Buffer: 10000, History: 10000},
		HeartbeatInterval: 5 * time.Second,
		ShutdownTimeout:   10 * time.Second,
	}
}

func defaultHost() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "localhost"
	}
	b := []byte(h)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			b[i] = '-'
		}
	}
	if len(b) > wire.MaxTokenLen {
		b = b[:wire.MaxTokenLen]
	}
	return string(b)
}

// LoadOptions reads a YAML file over DefaultOptions. Unknown keys are errors naming the key and
// line. It does not Validate.
func LoadOptions(path string) (Options, error) {
	o := DefaultOptions()
	data, err := os.ReadFile(path)
	if err != nil {
		return o, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	if err := o.UnmarshalYAMLBytes(data); err != nil {
		return o, fmt.Errorf("%w: %s: %w", ErrInvalidOptions, path, err)
	}
	return o, nil
}

// UnmarshalYAMLBytes decodes YAML over o, rejecting unknown keys. An empty document leaves o as is.
func (o *Options) UnmarshalYAMLBytes(data []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(o); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// Validate checks every field and returns all problems joined, each naming its field.
func (o *Options) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s: %s", ErrInvalidOptions, field, fmt.Sprintf(format, args...)))
	}
	if err := wire.ValidateToken("host", o.Host); err != nil {
		bad("host", "%v", err)
	}
	for k := range o.Labels {
		if k == "" {
			bad("labels", "empty label name")
		}
	}
	c := o.Capture
	switch c.Source {
	case "none":
	case "pcap":
		if c.File == "" {
			bad("capture.file", "required when capture.source is pcap")
		} else if _, err := os.Stat(c.File); err != nil {
			bad("capture.file", "%v", err)
		}
	case "afpacket", "dpdk":
		if c.Interface == "" && !o.Mirror.Enabled {
			bad("capture.interface", "required when capture.source is %s", c.Source)
		}
	default:
		bad("capture.source", "%q is not one of none, pcap, afpacket, dpdk", c.Source)
	}
	if c.Loops < -1 {
		bad("capture.loops", "%d is not -1 (forever) or a count", c.Loops)
	}
	if c.Rings < 1 || c.Rings > 256 {
		bad("capture.rings", "%d is not in [1, 256]", c.Rings)
	}
	if c.RingCapacity < 2 || c.RingCapacity&(c.RingCapacity-1) != 0 || c.RingCapacity > 1<<24 {
		bad("capture.ring_capacity", "%d is not a power of two in [2, 16777216]", c.RingCapacity)
	}
	if c.Snaplen < 64 || c.Snaplen > 65535 {
		bad("capture.snaplen", "%d is not in [64, 65535]", c.Snaplen)
	}
	if err := wire.ValidateToken("store.multilog", o.Store.MultiLog); err != nil {
		bad("store.multilog", "%v", err)
	}
	if o.Store.Bucket <= 0 {
		bad("store.bucket", "%v is not positive", o.Store.Bucket)
	}
	st := o.Store
	mode, err := st.mode()
	switch {
	case err != nil:
		bad("store.mode", "%q is not in_memory, durable or durable_relaxed", st.Mode)
	case mode == logstore.InMemory && st.Dir != "":
		bad("store.mode", "in_memory keeps nothing on disk, but store.dir is set")
	case mode != logstore.InMemory && st.Dir == "":
		bad("store.dir", "mode %s needs a directory", strings.ToLower(mode.String()))
	}
	for _, d := range []struct {
		field string
		v     time.Duration
	}{{"store.sync_interval", st.SyncInterval}, {"store.archive_after", st.ArchiveAfter}, {"store.retention_age", st.RetentionAge}} {
		if d.v < 0 {
			bad(d.field, "%v is negative", d.v)
		}
	}
	for _, b := range []struct {
		field string
		v     int64
	}{{"store.max_disk_bytes", st.MaxDiskBytes}, {"store.max_memory_bytes", st.MaxMemoryBytes}} {
		if b.v < 0 {
			bad(b.field, "%d is negative", b.v)
		}
	}
	if st.Dir == "" {
		for _, f := range []struct {
			field string
			set   bool
		}{{"store.archive_after", st.ArchiveAfter != 0}, {"store.max_disk_bytes", st.MaxDiskBytes != 0}} {
			if f.set {
				bad(f.field, "needs store.dir (the in-memory store has no disk to archive to or bound)")
			}
		}
	}
	n := o.NATS
	for i, u := range n.URLs {
		if !strings.Contains(u, "://") {
			bad(fmt.Sprintf("nats.urls[%d]", i), "%q has no scheme (nats://, tls://, ws://)", u)
		}
	}
	if len(n.URLs) == 0 && (n.CredsFile != "" || n.NKeyFile != "" || n.User != "" || n.TLS.Enabled()) {
		bad("nats.urls", "credentials or TLS are set but no external URL; the embedded server takes none")
	}
	auth := 0
	for _, set := range []bool{n.CredsFile != "", n.NKeyFile != "", n.User != ""} {
		if set {
			auth++
		}
	}
	if auth > 1 {
		bad("nats", "set only one of creds_file, nkey_file, user")
	}
	if n.Password != "" && n.User == "" {
		bad("nats.password", "set without nats.user")
	}
	for field, path := range map[string]string{"nats.creds_file": n.CredsFile, "nats.nkey_file": n.NKeyFile,
		"nats.tls.ca_file": n.TLS.CAFile, "nats.tls.cert_file": n.TLS.CertFile, "nats.tls.key_file": n.TLS.KeyFile} {
		if path != "" {
			if _, err := os.Stat(path); err != nil {
				bad(field, "%v", err)
			}
		}
	}
	if (n.TLS.CertFile == "") != (n.TLS.KeyFile == "") {
		bad("nats.tls", "cert_file and key_file go together")
	}
	if len(n.URLs) == 0 && !n.Disabled {
		if n.EmbeddedPort < -1 || n.EmbeddedPort > 65535 {
			bad("nats.embedded_port", "%d is not -1 (random) or a port", n.EmbeddedPort)
		}
		if net.ParseIP(n.EmbeddedHost) == nil && n.EmbeddedHost != "localhost" {
			bad("nats.embedded_host", "%q is not an IP address", n.EmbeddedHost)
		}
	}
	if n.ReconnectWait <= 0 {
		bad("nats.reconnect_wait", "%v is not positive", n.ReconnectWait)
	}
	if o.HTTP.Listen != "" {
		if _, _, err := net.SplitHostPort(o.HTTP.Listen); err != nil {
			bad("http.listen", "%v", err)
		}
	}
	q := o.Query
	if q.DefaultLimit < 1 {
		bad("query.default_limit", "%d is not positive", q.DefaultLimit)
	}
	if q.MaxLimit < q.DefaultLimit {
		bad("query.max_limit", "%d is below query.default_limit %d", q.MaxLimit, q.DefaultLimit)
	}
	if q.Timeout <= 0 {
		bad("query.timeout", "%v is not positive", q.Timeout)
	}
	if q.MaxConcurrent < 1 {
		bad("query.max_concurrent", "%d is not positive", q.MaxConcurrent)
	}
	if o.Alerts.Buffer < 1 {
		bad("alerts.buffer", "%d is not positive", o.Alerts.Buffer)
	}
	if o.Alerts.History < 0 {
		bad("alerts.history", "%d is negative", o.Alerts.History)
	}
	for i, f := range o.Filters {
		if f.Name == "" || f.Expr == "" {
			bad(fmt.Sprintf("filters[%d]", i), "name and expr are required")
		}
	}
	for i, a := range o.Aggregates {
		if a.Name == "" || a.Filter == "" || a.Func == "" {
			bad(fmt.Sprintf("aggregates[%d]", i), "name, filter and func are required")
		}
	}
	for i, t := range o.Triggers {
		if err := wire.ValidateToken("name", t.Name); err != nil {
			bad(fmt.Sprintf("triggers[%d].name", i), "%v", err)
		}
		if t.Condition == "" {
			bad(fmt.Sprintf("triggers[%d].condition", i), "required")
		}
		if t.PeriodMillis < 0 {
			bad(fmt.Sprintf("triggers[%d].period_ms", i), "%d is negative", t.PeriodMillis)
		}
	}
	if m := o.Mirror; m.Enabled {
		if c.Source != "afpacket" && c.Source != "dpdk" {
			bad("mirror.enabled", "needs capture.source afpacket or dpdk, not %q", c.Source)
		}
		if m.Bridge == "" {
			bad("mirror.bridge", "required when mirror.enabled")
		}
		if m.Name == "" {
			bad("mirror.name", "required when mirror.enabled")
		}
		if !m.SelectAll && len(m.SrcPorts) == 0 && len(m.DstPorts) == 0 && len(m.Flows) == 0 {
			bad("mirror", "select_all, src_ports, dst_ports or flows is required")
		}
		if !strings.Contains(m.DB, ":") {
			bad("mirror.db", "%q is not unix:PATH, tcp:HOST:PORT or ssl:HOST:PORT", m.DB)
		}
		if m.Snaplen != 0 && (m.Snaplen < 14 || m.Snaplen > 65535) {
			bad("mirror.snaplen", "%d is not 0 or in [14, 65535]", m.Snaplen)
		}
	}
	if o.HeartbeatInterval < 0 {
		bad("heartbeat_interval", "%v is negative", o.HeartbeatInterval)
	}
	if o.ShutdownTimeout <= 0 {
		bad("shutdown_timeout", "%v is not positive", o.ShutdownTimeout)
	}
	return errors.Join(errs...)
}
