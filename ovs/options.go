package ovs

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Options configures a Controller. Build it with DefaultOptions and change
// what you need; New calls Validate and keeps a copy. A plain value; not
// safe for concurrent mutation.
type Options struct {
	// Endpoint is the OVSDB server: "unix:/path/db.sock", "tcp:host:port" or
	// "ssl:host:port". Default "unix:/var/run/openvswitch/db.sock".
	Endpoint string
	// TLS is the client configuration for an "ssl:" Endpoint; required then.
	TLS *tls.Config
	// OVSRunDir is ovs-vswitchd's run directory, where ovs-appctl and
	// ovs-ofctl find its control and bridge management sockets (it is passed
	// to them as OVS_RUNDIR). Default "/var/run/openvswitch".
	OVSRunDir string
	// VSwitchdNetNS is the network namespace ovs-vswitchd runs in (a path
	// such as /run/netns/ovs) when it is not the controller's own; the
	// controller enters it to bring internal spray ports up. Default "".
	VSwitchdNetNS string
	// VhostDir is the directory where dpdkvhostuserclient spray ports expect
	// their vhost-user server sockets (<VhostDir>/<port>.sock). Default
	// "/var/run/confluo/vhost".
	VhostDir string
	// CallTimeout bounds every single call to OVSDB, ovs-appctl and ovs-ofctl
	// when the caller's context has no earlier deadline. Default 5s.
	CallTimeout time.Duration
	// ResyncInterval is how often Run reconciles even without a change
	// notification. Default 10s.
	ResyncInterval time.Duration
	// MinBackoff and MaxBackoff bound the exponential backoff between
	// reconnection attempts. Defaults 100ms and 5s.
	MinBackoff, MaxBackoff time.Duration
	// Purge makes the controller run "ovs-appctl revalidator/purge" after it
	// changes a mirror, so that flows already cached in the datapath see the
	// change at once. Default true.
	Purge bool
	// AppctlPath and OfctlPath are the ovs-appctl and ovs-ofctl binaries.
	// Defaults "ovs-appctl" and "ovs-ofctl" (looked up in PATH).
	AppctlPath, OfctlPath string
	// Logger receives one record per change with what and why; nil discards.
	Logger *slog.Logger
	// Registerer receives the controller's metrics; nil registers nothing.
	Registerer prometheus.Registerer
}

// DefaultOptions returns the defaults documented on Options.
func DefaultOptions() Options {
	return Options{
		Endpoint:       "unix:/var/run/openvswitch/db.sock",
		OVSRunDir:      "/var/run/openvswitch",
		VhostDir:       "/var/run/confluo/vhost",
		CallTimeout:    5 * time.Second,
		ResyncInterval: 10 * time.Second,
		MinBackoff:     100 * time.Millisecond,
		MaxBackoff:     5 * time.Second,
		Purge:          true,
		AppctlPath:     "ovs-appctl",
		OfctlPath:      "ovs-ofctl",
	}
}

// ErrInvalidOptions is wrapped by Validate's errors.
var ErrInvalidOptions = errors.New("ovs: invalid options")

// Validate reports the first invalid option.
func (o Options) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidOptions, fmt.Sprintf(format, args...))
	}
	if _, _, err := splitEndpoint(o.Endpoint); err != nil {
		return bad("endpoint: %v", err)
	}
	if strings.HasPrefix(o.Endpoint, "ssl:") && o.TLS == nil {
		return bad("endpoint %q needs TLS", o.Endpoint)
	}
	if o.OVSRunDir == "" || !filepath.IsAbs(o.OVSRunDir) {
		return bad("OVSRunDir %q must be an absolute path", o.OVSRunDir)
	}
	if o.VhostDir == "" || !filepath.IsAbs(o.VhostDir) {
		return bad("VhostDir %q must be an absolute path", o.VhostDir)
	}
	if o.CallTimeout <= 0 {
		return bad("CallTimeout %v must be positive", o.CallTimeout)
	}
	if o.ResyncInterval <= 0 {
		return bad("ResyncInterval %v must be positive", o.ResyncInterval)
	}
	if o.MinBackoff <= 0 || o.MaxBackoff < o.MinBackoff {
		return bad("backoff %v..%v must be positive and ordered", o.MinBackoff, o.MaxBackoff)
	}
	if o.AppctlPath == "" || o.OfctlPath == "" {
		return bad("AppctlPath and OfctlPath must be set")
	}
	return nil
}

// splitEndpoint returns the network and address of an OVSDB endpoint.
func splitEndpoint(ep string) (network, address string, err error) {
	scheme, rest, ok := strings.Cut(ep, ":")
	if !ok || rest == "" {
		return "", "", fmt.Errorf("%q is not unix:PATH, tcp:HOST:PORT or ssl:HOST:PORT", ep)
	}
	switch scheme {
	case "unix":
		return "unix", rest, nil
	case "tcp", "ssl":
		if _, err := url.Parse(scheme + "://" + rest); err != nil {
			return "", "", fmt.Errorf("%q: %v", ep, err)
		}
		return "tcp", rest, nil
	}
	return "", "", fmt.Errorf("%q: unknown scheme %q (want unix, tcp or ssl)", ep, scheme)
}
