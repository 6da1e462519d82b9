// Package cli is confluoctl's "fleet" command tree: it talks to confluo-coordinator over NATS
// request-reply (confluo.v1.coordinator.<op>).
//
//	confluoctl fleet status   [--selector k=v,...]
//	confluoctl fleet rollout  (--file config.yaml | --revision N) [--selector k=v] [--waves 10,50,100]
//	                          [--max-failures 0.1] [--ack-timeout 30s] [--wait]
//	confluoctl fleet rollback [--rollout r7] [--wait]
//	confluoctl fleet history  [--limit 20]
//	confluoctl fleet snapshot [--selector k=v]          (take a distributed atomic snapshot)
//	confluoctl fleet snapshots [--limit 20]
//	confluoctl fleet query    (--expr E | --aggregate 'SUM(len)' | --alerts) [--from -5m] [--to now]
//	                          [--limit 100] [--snapshot ID] [--selector k=v]
//
// Output is a table, or JSON with -o json. Add it to a root command with
// root.AddCommand(cli.NewFleetCommand()).
package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/confluo-go/confluo/coordinator"
	"github.com/confluo-go/confluo/pkg/wire"
)

// ErrUsage is wrapped by errors about flags.
var ErrUsage = errors.New("fleet: bad usage")

type globals struct {
	url     string
	nats    coordinator.NATSOptions
	timeout time.Duration
	output  string
}

// NewFleetCommand returns the "fleet" command with its subcommands.
func NewFleetCommand() *cobra.Command {
	g := &globals{}
	cmd := &cobra.Command{
		Use:   "fleet",
		Short: "Fleet status, configuration rollout, snapshots and network-wide queries (via confluo-coordinator)",
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&g.url, "nats-url", envOr("CONFLUO_NATS_URL", nats.DefaultURL), "NATS server URL(s), comma-separated")
	pf.StringVar(&g.nats.CredsFile, "nats-creds", "", "NATS credentials file")
	pf.StringVar(&g.nats.User, "nats-user", "", "NATS user")
	pf.StringVar(&g.nats.Password, "nats-password", "", "NATS password")
	pf.StringVar(&g.nats.CAFile, "nats-ca", "", "CA file for NATS TLS")
	pf.StringVar(&g.nats.CertFile, "nats-cert", "", "client certificate for NATS TLS")
	pf.StringVar(&g.nats.KeyFile, "nats-key", "", "client key for NATS TLS")
	pf.DurationVar(&g.timeout, "timeout", 60*time.Second, "time limit of one request")
	pf.StringVarP(&g.output, "output", "o", "table", "output: table or json")
	cmd.AddCommand(statusCmd(g), rolloutCmd(g), rollbackCmd(g), historyCmd(g), snapshotCmd(g), snapshotsCmd(g), queryCmd(g))
	return cmd
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// call sends one request to the coordinator and decodes the result into out.
func (g *globals) call(op wire.CoordinatorOp, req, out any) error {
	if g.output != "table" && g.output != "json" {
		return fmt.Errorf("%w: --output %q (table or json)", ErrUsage, g.output)
	}
	nc, err := coordinator.Connect(g.url, g.nats, "confluoctl")
	if err != nil {
		return err
	}
	defer nc.Close()
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	msg, err := nc.Request(wire.CoordinatorSubject(op), body, g.timeout)
	if errors.Is(err, nats.ErrNoResponders) {
		return fmt.Errorf("fleet: no coordinator is listening on %s", wire.CoordinatorSubject(op))
	}
	if err != nil {
		return fmt.Errorf("fleet: %s: %w", op, err)
	}
	var resp wire.Response
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return fmt.Errorf("fleet: %s: malformed reply: %w", op, err)
	}
	if resp.Error != nil {
		return resp.Error
	}
	return json.Unmarshal(resp.Result, out)
}

func (g *globals) printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// parseSelector parses "k=v,k2=v2".
func parseSelector(s string) (map[string]string, error) {
	if s == "" {
		return nil, nil
	}
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("%w: selector %q: want key=value[,key=value]", ErrUsage, kv)
		}
		out[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return out, nil
}

func parseWaves(s string) ([]int, error) {
	if s == "" {
		return nil, nil
	}
	var out []int
	for _, p := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(p, "%")))
		if err != nil {
			return nil, fmt.Errorf("%w: waves %q: %v", ErrUsage, s, err)
		}
		out = append(out, n)
	}
	return out, nil
}

func statusCmd(g *globals) *cobra.Command {
	var sel string
	c := &cobra.Command{
		Use:   "status",
		Short: "Hosts (up/down, labels, config revision) and the rollout in progress",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := parseSelector(sel)
			if err != nil {
				return err
			}
			var st wire.FleetStatus
			if err := g.call(wire.CoordStatus, wire.StatusRequest{Selector: s}, &st); err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if g.output == "json" {
				return g.printJSON(w, st)
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "HOST\tSTATE\tREVISION\tASSIGNED\tLAST SEEN\tRECORDS\tLABELS\tERROR")
			for _, h := range st.Hosts {
				state := "up"
				if !h.Up {
					state = fmt.Sprintf("down (%d missed)", h.Missed)
				}
				errText := ""
				if h.ConfigError != nil {
					errText = h.ConfigError.Description
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%d\t%s\t%s\n", h.Host, state, h.ConfigRevision, h.Assigned,
					h.LastSeen.Format(time.RFC3339), h.Records, labels(h.Labels), errText)
			}
			_ = tw.Flush()
			fmt.Fprintf(w, "%d up, %d down, latest revision %d\n", st.Up, st.Down, st.LatestRevision)
			if st.Rollout != nil {
				printRollout(w, st.Rollout)
			}
			return nil
		},
	}
	c.Flags().StringVar(&sel, "selector", "", "label selector key=value[,key=value]")
	return c
}

func labels(m map[string]string) string {
	var parts []string
	for k, v := range m {
		parts = append(parts, k+"="+v)
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

func printRollout(w io.Writer, r *wire.RolloutState) {
	fmt.Fprintf(w, "%s %s: revision %d, state %s", r.Kind, r.ID, r.Revision, r.State)
	if r.RollbackOf != "" {
		fmt.Fprintf(w, " (rolls back %s)", r.RollbackOf)
	}
	if r.Reason != "" {
		fmt.Fprintf(w, ": %s", r.Reason)
	}
	fmt.Fprintln(w)
	for i, wv := range r.Waves {
		acked := 0
		for _, h := range wv.Hosts {
			if h.Acked {
				acked++
			}
		}
		mark := " "
		if i == r.CurrentWave && r.State == wire.RolloutRunning {
			mark = ">"
		}
		fmt.Fprintf(w, " %s wave %d (%d%%): %d hosts, %d acked, %d failed\n", mark, i+1, wv.Percent, len(wv.Hosts), acked, wv.Failed)
		for _, h := range wv.Hosts {
			if h.Error != nil {
				fmt.Fprintf(w, "     %s: %s\n", h.Host, h.Error.Description)
			}
		}
	}
}

func (g *globals) waitRollout(cmd *cobra.Command, id string) (*wire.RolloutState, error) {
	for {
		var st wire.FleetStatus
		if err := g.call(wire.CoordStatus, wire.StatusRequest{}, &st); err != nil {
			return nil, err
		}
		if st.Rollout != nil && st.Rollout.ID == id && st.Rollout.State != wire.RolloutRunning {
			return st.Rollout, nil
		}
		select {
		case <-cmd.Context().Done():
			return nil, cmd.Context().Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func rolloutCmd(g *globals) *cobra.Command {
	var (
		file, sel, waves string
		rev              uint64
		maxFail          float64
		ackTimeout       time.Duration
		wait             bool
	)
	c := &cobra.Command{
		Use:   "rollout",
		Short: "Store a configuration (YAML/JSON file) and roll it out in waves, or roll out an existing revision",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := wire.RolloutRequest{Revision: rev, MaxFailureRatio: maxFail, AckTimeoutMillis: ackTimeout.Milliseconds()}
			var err error
			if req.Selector, err = parseSelector(sel); err != nil {
				return err
			}
			if req.Waves, err = parseWaves(waves); err != nil {
				return err
			}
			switch {
			case file != "" && rev != 0:
				return fmt.Errorf("%w: give --file or --revision, not both", ErrUsage)
			case file != "":
				cfg, err := loadConfig(file)
				if err != nil {
					return err
				}
				req.Config = cfg
			case rev == 0:
				return fmt.Errorf("%w: give --file or --revision", ErrUsage)
			}
			var st wire.RolloutState
			if err := g.call(wire.CoordRollout, req, &st); err != nil {
				return err
			}
			out := &st
			if wait {
				if out, err = g.waitRollout(cmd, st.ID); err != nil {
					return err
				}
			}
			if g.output == "json" {
				return g.printJSON(cmd.OutOrStdout(), out)
			}
			printRollout(cmd.OutOrStdout(), out)
			if wait && out.State != wire.RolloutDone {
				return fmt.Errorf("fleet: rollout %s ended %s", out.ID, out.State)
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVarP(&file, "file", "f", "", "configuration file (YAML or JSON: schemas, filters, aggregates, triggers, indexes)")
	f.Uint64Var(&rev, "revision", 0, "an already stored revision")
	f.StringVar(&sel, "selector", "", "label selector key=value[,key=value]")
	f.StringVar(&waves, "waves", "", "cumulative percentages, e.g. 10,50,100 (default: the coordinator's)")
	f.Float64Var(&maxFail, "max-failures", 0, "fraction of a wave that may fail before the rollout halts")
	f.DurationVar(&ackTimeout, "ack-timeout", 0, "how long a wave waits for acks (default: the coordinator's)")
	f.BoolVar(&wait, "wait", false, "wait until the rollout finishes")
	return c
}

// loadConfig reads a FleetConfig from YAML or JSON (JSON is YAML). Unknown keys are errors.
func loadConfig(path string) (*wire.FleetConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var cfg wire.FleetConfig
	trim := strings.TrimSpace(string(data))
	if strings.HasPrefix(trim, "{") {
		dec := json.NewDecoder(strings.NewReader(trim))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&cfg); err != nil {
			return nil, fmt.Errorf("fleet: %s: %w", path, err)
		}
		return &cfg, nil
	}
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("fleet: %s: %w", path, err)
	}
	return &cfg, nil
}

func rollbackCmd(g *globals) *cobra.Command {
	var (
		id   string
		wait bool
	)
	c := &cobra.Command{
		Use:   "rollback",
		Short: "Return the hosts of a rollout (default: the latest) to their previous revisions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var st wire.RolloutState
			if err := g.call(wire.CoordRollback, wire.RollbackRequest{Rollout: id}, &st); err != nil {
				return err
			}
			out := &st
			if wait {
				var err error
				if out, err = g.waitRollout(cmd, st.ID); err != nil {
					return err
				}
			}
			if g.output == "json" {
				return g.printJSON(cmd.OutOrStdout(), out)
			}
			printRollout(cmd.OutOrStdout(), out)
			return nil
		},
	}
	c.Flags().StringVar(&id, "rollout", "", "rollout id (default: the latest rollout)")
	c.Flags().BoolVar(&wait, "wait", false, "wait until the rollback finishes")
	return c
}

func historyCmd(g *globals) *cobra.Command {
	var limit int
	c := &cobra.Command{
		Use:   "history",
		Short: "Rollouts and configuration revisions, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var h wire.History
			if err := g.call(wire.CoordHistory, wire.HistoryRequest{Limit: limit}, &h); err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if g.output == "json" {
				return g.printJSON(w, h)
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ROLLOUT\tKIND\tREVISION\tSTATE\tWAVES\tCREATED\tREASON")
			for _, r := range h.Rollouts {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d/%d\t%s\t%s\n", r.ID, r.Kind, r.Revision, r.State, min(r.CurrentWave, len(r.Waves)),
					len(r.Waves), r.Created.Format(time.RFC3339), r.Reason)
			}
			fmt.Fprintln(tw, "\nREVISION\tCREATED\tFILTERS\tAGGREGATES\tTRIGGERS\tCOMMENT")
			for _, c := range h.Revisions {
				fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%d\t%s\n", c.Revision, c.Created.Format(time.RFC3339), len(c.Filters),
					len(c.Aggregates), len(c.Triggers), c.Comment)
			}
			return tw.Flush()
		},
	}
	c.Flags().IntVar(&limit, "limit", 20, "entries of each kind")
	return c
}

func snapshotCmd(g *globals) *cobra.Command {
	var sel string
	c := &cobra.Command{
		Use:   "snapshot",
		Short: "Take a distributed atomic snapshot of the selected hosts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := parseSelector(sel)
			if err != nil {
				return err
			}
			var rec wire.SnapshotRecord
			if err := g.call(wire.CoordSnapshot, wire.SnapshotRequest{Selector: s}, &rec); err != nil {
				return err
			}
			if g.output == "json" {
				return g.printJSON(cmd.OutOrStdout(), rec)
			}
			printSnapshots(cmd.OutOrStdout(), []wire.SnapshotRecord{rec})
			return nil
		},
	}
	c.Flags().StringVar(&sel, "selector", "", "label selector key=value[,key=value]")
	return c
}

func printSnapshots(w io.Writer, recs []wire.SnapshotRecord) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SNAPSHOT\tSTARTED\tHOSTS\tCOMPLETE\tCUT TIME\tFROZEN\tMISSING")
	for _, r := range recs {
		fmt.Fprintf(tw, "%d\t%s\t%d\t%v\t%s\t%v\t%s\n", r.ID, r.Started.Format(time.RFC3339Nano), len(r.Hosts), r.Complete,
			time.Unix(0, r.CutTime).UTC().Format(time.RFC3339Nano), time.Duration(r.FrozenMicros)*time.Microsecond,
			strings.Join(r.Missing, ","))
	}
	_ = tw.Flush()
}

func snapshotsCmd(g *globals) *cobra.Command {
	var limit int
	c := &cobra.Command{
		Use:   "snapshots",
		Short: "Snapshot history, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var l wire.SnapshotList
			if err := g.call(wire.CoordSnapshots, wire.HistoryRequest{Limit: limit}, &l); err != nil {
				return err
			}
			if g.output == "json" {
				return g.printJSON(cmd.OutOrStdout(), l)
			}
			printSnapshots(cmd.OutOrStdout(), l.Snapshots)
			return nil
		},
	}
	c.Flags().IntVar(&limit, "limit", 20, "snapshots to list")
	return c
}

func queryCmd(g *globals) *cobra.Command {
	var (
		expr, agg, sel, from, to, multilog string
		alerts                             bool
		limit                              int
		snap                               uint64
	)
	c := &cobra.Command{
		Use:   "query",
		Short: "Network-wide query: records in time order, a merged aggregate, or alerts across hosts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			now := time.Now()
			f, err := wire.ParseTime(from, now)
			if err != nil {
				return fmt.Errorf("%w: --from: %v", ErrUsage, err)
			}
			t, err := wire.ParseTime(to, now)
			if err != nil {
				return fmt.Errorf("%w: --to: %v", ErrUsage, err)
			}
			req := wire.FleetQueryRequest{Snapshot: snap}
			if req.Selector, err = parseSelector(sel); err != nil {
				return err
			}
			switch {
			case alerts && agg != "":
				return fmt.Errorf("%w: --alerts and --aggregate exclude each other", ErrUsage)
			case alerts:
				req.Alerts = &wire.AlertsRequest{MultiLog: multilog, From: f, To: t, Limit: limit}
			case agg != "":
				req.Aggregate = &wire.AggregateRequest{MultiLog: multilog, Func: agg, Expr: expr, From: f, To: t}
			default:
				req.Query = &wire.QueryRequest{MultiLog: multilog, Expr: expr, From: f, To: t, Limit: limit}
			}
			var r wire.FleetQueryReply
			if err := g.call(wire.CoordQuery, req, &r); err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if g.output == "json" {
				return g.printJSON(w, r)
			}
			switch {
			case r.Aggregate != nil:
				fmt.Fprintf(w, "%s = %v over %d records\n", r.Aggregate.Func, r.Aggregate.Value, r.Aggregate.Count)
			case req.Alerts != nil:
				for _, a := range r.Alerts {
					fmt.Fprintf(w, "%s %s %s %s: %v %s %v\n", a.WindowStart.Format(time.RFC3339Nano), a.Host, a.MultiLog, a.Trigger, a.Value, a.Op, a.Threshold)
				}
			default:
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprint(tw, "HOST")
				for _, col := range r.Columns {
					fmt.Fprint(tw, "\t", strings.ToUpper(col.Name))
				}
				fmt.Fprintln(tw)
				for i, row := range r.Rows {
					fmt.Fprint(tw, r.RowHosts[i])
					for _, v := range row {
						fmt.Fprint(tw, "\t", v)
					}
					fmt.Fprintln(tw)
				}
				_ = tw.Flush()
			}
			fmt.Fprintf(w, "consistency: %s; %d of %d hosts answered", r.Consistency, len(r.Answered), len(r.Hosts))
			if len(r.Missing) > 0 {
				fmt.Fprintf(w, "; missing: %s", strings.Join(r.Missing, ", "))
			}
			for h, e := range r.Errors {
				fmt.Fprintf(w, "; %s: %s", h, e.Description)
			}
			fmt.Fprintln(w)
			return nil
		},
	}
	fl := c.Flags()
	fl.StringVar(&expr, "expr", "", "filter expression")
	fl.StringVar(&agg, "aggregate", "", "aggregate: SUM(col), MIN(col), MAX(col), AVG(col), COUNT(*)")
	fl.BoolVar(&alerts, "alerts", false, "list alerts across hosts")
	fl.StringVar(&sel, "selector", "", "label selector key=value[,key=value]")
	fl.StringVar(&from, "from", "", "start: ns, RFC 3339, now or -5m")
	fl.StringVar(&to, "to", "", "end (exclusive)")
	fl.StringVar(&multilog, "multilog", "", "multilog (default: the sidecar's packets)")
	fl.IntVar(&limit, "limit", 100, "global row limit")
	fl.Uint64Var(&snap, "snapshot", 0, "pin to a snapshot id")
	return c
}
