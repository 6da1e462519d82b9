// Package cli implements confluoctl's sidecar commands: query, aggregate, alerts, tail, stats and
// filter|aggregate|trigger|index add/rm/ls. They talk to a sidecar over NATS request-reply
// (confluo.v1.host.<host>.<command>, default) or over its local HTTP API (--api), print tables for
// people and JSON with --json, and query results as pcap with --output pcap.
//
// Usage in a cobra root:
//
//	root.AddCommand(cli.Commands()...)
//
// Errors that came from the sidecar are *wire.Error values; the command prints
// "confluoctl: wire: not_found (1005): ..." and exits non-zero.
package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/confluo-go/confluo/pkg/wire"
)

// Environment variables that set the defaults of the connection flags.
const (
	EnvNATS = "CONFLUO_NATS" // --nats
	EnvHost = "CONFLUO_HOST" // --host
	EnvAPI  = "CONFLUO_API"  // --api
)

// conn holds the connection flags shared by every sidecar command.
type conn struct {
	natsURL  string
	host     string
	api      string
	creds    string
	user     string
	password string
	timeout  time.Duration
	jsonOut  bool
	multilog string
}

func (c *conn) register(cmd *cobra.Command) {
	f := cmd.PersistentFlags()
	f.StringVar(&c.natsURL, "nats", envOr(EnvNATS, "nats://127.0.0.1:4222"), "NATS server URL(s), comma-separated [$"+EnvNATS+"]")
	f.StringVar(&c.host, "host", envOr(EnvHost, defaultHost()), "the sidecar's host name [$"+EnvHost+"]")
	f.StringVar(&c.api, "api", os.Getenv(EnvAPI), "use the sidecar's HTTP API at this URL instead of NATS, e.g. http://127.0.0.1:7480 [$"+EnvAPI+"]")
	f.StringVar(&c.creds, "creds", "", "NATS credentials file")
	f.StringVar(&c.user, "user", "", "NATS user")
	f.StringVar(&c.password, "password", "", "NATS password")
	f.DurationVar(&c.timeout, "timeout", 30*time.Second, "request timeout")
	f.BoolVar(&c.jsonOut, "json", false, "print JSON instead of a table")
	f.StringVar(&c.multilog, "multilog", "", "multilog name (default: the sidecar's packet multilog)")
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func defaultHost() string {
	h, err := os.Hostname()
	if err != nil {
		return "localhost"
	}
	b := []byte(h)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			b[i] = '-'
		}
	}
	return string(b)
}

func (c *conn) natsOptions() []nats.Option {
	opts := []nats.Option{nats.Name("confluoctl"), nats.Timeout(c.timeout)}
	if c.creds != "" {
		opts = append(opts, nats.UserCredentials(c.creds))
	}
	if c.user != "" {
		opts = append(opts, nats.UserInfo(c.user, c.password))
	}
	return opts
}

// call sends one request and decodes the result into out.
func (c *conn) call(ctx context.Context, cmd wire.Command, req, out any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var data []byte
	if c.api != "" {
		hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(c.api, "/")+"/v1/"+string(cmd), bytes.NewReader(body))
		if err != nil {
			return err
		}
		hreq.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(hreq)
		if err != nil {
			return fmt.Errorf("sidecar HTTP API %s: %w", c.api, err)
		}
		defer resp.Body.Close()
		if data, err = io.ReadAll(io.LimitReader(resp.Body, 1<<30)); err != nil {
			return err
		}
	} else {
		subject, err := wire.CommandSubject(c.host, cmd)
		if err != nil {
			return fmt.Errorf("--host: %w", err)
		}
		nc, err := nats.Connect(c.natsURL, c.natsOptions()...)
		if err != nil {
			return fmt.Errorf("connect to NATS %s: %w", c.natsURL, err)
		}
		defer nc.Close()
		m, err := nc.RequestWithContext(ctx, subject, body)
		if err != nil {
			if err == nats.ErrNoResponders {
				return fmt.Errorf("no sidecar answers on %s (is it running with --host %s?)", subject, c.host)
			}
			return fmt.Errorf("%s: %w", subject, err)
		}
		data = m.Data
	}
	var r wire.Response
	if err := json.Unmarshal(data, &r); err != nil {
		return fmt.Errorf("malformed reply from the sidecar: %w", err)
	}
	if r.Error != nil {
		return r.Error
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(r.Result, out); err != nil {
		return fmt.Errorf("malformed %s result: %w", cmd, err)
	}
	return nil
}

// Commands returns the sidecar commands for confluoctl's root.
func Commands() []*cobra.Command {
	c := &conn{}
	cmds := []*cobra.Command{
		queryCommand(c), aggregateCommand(c), alertsCommand(c), tailCommand(c), statsCommand(c),
		filterCommand(c), triggerCommand(c), indexCommand(c),
	}
	for _, cmd := range cmds {
		c.register(cmd)
	}
	return cmds
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
