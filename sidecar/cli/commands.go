package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/confluo-go/confluo/pkg/pcapio"
	"github.com/confluo-go/confluo/pkg/schema"
	"github.com/confluo-go/confluo/pkg/wire"
)

// timeFlags are --from/--to in any wire.Time text form.
type timeFlags struct{ from, to string }

func (t *timeFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&t.from, "from", "", "start of the range: ns, RFC 3339, now, or -5m (default: unbounded)")
	cmd.Flags().StringVar(&t.to, "to", "", "end of the range, exclusive (default: unbounded)")
}

func (t *timeFlags) parse() (from, to wire.Time, err error) {
	now := time.Now()
	if from, err = wire.ParseTime(t.from, now); err != nil {
		return 0, 0, fmt.Errorf("--from: %w", err)
	}
	if to, err = wire.ParseTime(t.to, now); err != nil {
		return 0, 0, fmt.Errorf("--to: %w", err)
	}
	return from, to, nil
}

// defaultColumns are shown by query when --columns is not given and the schema has them.
var defaultColumns = []string{"timestamp", "src_ip", "dst_ip", "src_ip6", "dst_ip6", "ip_proto", "src_port", "dst_port", "frame_len", "tcp_flags"}

func queryCommand(c *conn) *cobra.Command {
	var (
		tf      timeFlags
		filter  string
		limit   int
		columns string
		all     bool
		output  string
		outFile string
	)
	cmd := &cobra.Command{
		Use:   "query [EXPR]",
		Short: "Query a sidecar's records matching an expression (or a named --filter) in a time range",
		Example: `  confluoctl query 'src_ip == 10.0.0.1 && dst_port == 80' --from -5m --limit 20
  confluoctl query 'ip_proto == udp' --columns timestamp,src_ip,dst_port --json
  confluoctl query 'tcp_flags == 2' --all --output pcap -o syns.pcap`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			from, to, err := tf.parse()
			if err != nil {
				return err
			}
			req := wire.QueryRequest{MultiLog: c.multilog, Filter: filter, From: from, To: to, Limit: limit}
			if len(args) == 1 {
				req.Expr = args[0]
			}
			switch output {
			case "table", "json", "pcap":
			default:
				return fmt.Errorf("--output %q is not table, json or pcap", output)
			}
			if c.jsonOut {
				output = "json"
			}
			if output == "pcap" {
				req.Raw = true
			} else if columns != "" {
				req.Columns = strings.Split(columns, ",")
			}
			var w io.Writer = cmd.OutOrStdout()
			if outFile != "" {
				f, err := os.Create(outFile)
				if err != nil {
					return err
				}
				defer f.Close()
				bw := bufio.NewWriter(f)
				defer bw.Flush()
				w = bw
			}
			var (
				exporter *pcapio.Exporter
				table    *tabwriter.Writer
				shown    []int
				total    int
				last     *wire.QueryReply
			)
			for {
				var reply wire.QueryReply
				if err := c.call(cmd.Context(), wire.CmdQuery, req, &reply); err != nil {
					return err
				}
				last = &reply
				total += reply.Count
				switch output {
				case "json":
					if err := printJSON(w, &reply); err != nil {
						return err
					}
				case "pcap":
					if exporter == nil {
						s, err := schema.Parse(reply.Schema)
						if err != nil {
							return fmt.Errorf("the sidecar's schema: %w", err)
						}
						if exporter, err = pcapio.NewExporter(w, s, pcapio.ExportOptions{}); err != nil {
							return err
						}
					}
					for _, rec := range reply.Raw {
						if err := exporter.Write(rec); err != nil {
							return err
						}
					}
				default:
					if table == nil {
						table = tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
						shown = pickColumns(reply.Columns, reply.Rows, columns != "")
						var head []string
						for _, i := range shown {
							head = append(head, strings.ToUpper(reply.Columns[i].Name))
						}
						fmt.Fprintln(table, strings.Join(head, "\t"))
					}
					for _, row := range reply.Rows {
						var cells []string
						for _, i := range shown {
							cells = append(cells, formatCell(reply.Columns[i], row[i]))
						}
						fmt.Fprintln(table, strings.Join(cells, "\t"))
					}
				}
				if !all || reply.NextCursor == "" {
					break
				}
				req.Cursor = reply.NextCursor
			}
			if table != nil {
				table.Flush()
			}
			if output != "json" && last != nil {
				more := ""
				if last.Truncated {
					more = fmt.Sprintf(" (truncated: %s; --all pages through everything)", last.Reason)
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "%d records at version %d, completeness %.4f%s\n", total, last.Version, last.Completeness.Ratio, more)
			}
			return nil
		},
	}
	tf.register(cmd)
	cmd.Flags().StringVar(&filter, "filter", "", "query a named filter instead of an expression")
	cmd.Flags().IntVar(&limit, "limit", 0, "rows per page (default: the sidecar's default limit)")
	cmd.Flags().StringVar(&columns, "columns", "", "comma-separated columns to show")
	cmd.Flags().BoolVar(&all, "all", false, "follow cursors until every matching record is returned")
	cmd.Flags().StringVar(&output, "output", "table", "table, json or pcap")
	cmd.Flags().StringVarP(&outFile, "out", "o", "", "write to this file instead of stdout")
	return cmd
}

// pickColumns chooses the columns of a table: all when the user chose them, else the usual
// flow columns the schema has, leaving out IPv4 or IPv6 address columns that are empty in every
// row of the first page (all columns when the schema has none of them).
func pickColumns(cols []wire.ColumnInfo, rows [][]any, chosen bool) []int {
	var out []int
	if !chosen {
		for _, name := range defaultColumns {
			for i, c := range cols {
				if c.Name == name && !emptyAddress(c, i, rows) {
					out = append(out, i)
				}
			}
		}
	}
	if len(out) == 0 {
		for i := range cols {
			out = append(out, i)
		}
	}
	return out
}

func emptyAddress(c wire.ColumnInfo, i int, rows [][]any) bool {
	if c.Type != "IPV4" && c.Type != "IPV6" || len(rows) == 0 {
		return false
	}
	for _, r := range rows {
		if v, _ := r[i].(string); v != "0.0.0.0" && v != "::" {
			return false
		}
	}
	return true
}

func formatCell(c wire.ColumnInfo, v any) string {
	if c.Name == "timestamp" {
		if f, ok := v.(float64); ok {
			return time.Unix(0, int64(f)).UTC().Format("15:04:05.000000000")
		}
	}
	switch x := v.(type) {
	case float64:
		if x == float64(int64(x)) {
			return fmt.Sprintf("%d", int64(x))
		}
		return fmt.Sprintf("%g", x)
	case nil:
		return "-"
	}
	return fmt.Sprint(v)
}

func aggregateCommand(c *conn) *cobra.Command {
	var (
		tf     timeFlags
		filter string
		name   string
	)
	cmd := &cobra.Command{
		Use:   "aggregate FUNC [EXPR] | aggregate add|rm|ls",
		Short: "Compute an aggregate (SUM, MIN, MAX, COUNT, AVG) over a range, or manage installed aggregates",
		Example: `  confluoctl aggregate 'SUM(frame_len)' 'dst_port == 443' --from -1m
  confluoctl aggregate --name syn_count
  confluoctl aggregate add syn_count --filter syns 'COUNT(*)'`,
		Args: cobra.RangeArgs(0, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			from, to, err := tf.parse()
			if err != nil {
				return err
			}
			req := wire.AggregateRequest{MultiLog: c.multilog, Name: name, Filter: filter, From: from, To: to}
			if len(args) > 0 {
				req.Func = args[0]
			}
			if len(args) > 1 {
				req.Expr = args[1]
			}
			if req.Func == "" && req.Name == "" {
				return fmt.Errorf("give a function like 'COUNT(*)' or --name of an installed aggregate")
			}
			var reply wire.AggregateReply
			if err := c.call(cmd.Context(), wire.CmdAggregate, req, &reply); err != nil {
				return err
			}
			if c.jsonOut {
				return printJSON(cmd.OutOrStdout(), &reply)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s = %s  (%d records, version %d, completeness %.4f)\n",
				reply.Func, formatCell(wire.ColumnInfo{}, reply.Value), reply.Count, reply.Version, reply.Completeness.Ratio)
			return nil
		},
	}
	tf.register(cmd)
	cmd.Flags().StringVar(&filter, "filter", "", "aggregate over a named filter instead of an expression")
	cmd.Flags().StringVar(&name, "name", "", "read an installed aggregate")

	var addFilter string
	add := &cobra.Command{
		Use:   "add NAME FUNC --filter FILTER",
		Short: "Install a named aggregate over a named filter",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.change(cmd, wire.CmdAggregateAdd, wire.AggregateSpec{MultiLog: c.multilog, Name: args[0], Func: args[1], Filter: addFilter})
		},
	}
	add.Flags().StringVar(&addFilter, "filter", "", "the filter whose records are aggregated (required)")
	_ = add.MarkFlagRequired("filter")
	cmd.AddCommand(add, removeCommand(c, wire.CmdAggregateRemove, "aggregate"),
		listCommand(c, wire.CmdAggregateList, "aggregates", func(w *tabwriter.Writer, data json.RawMessage) error {
			var l wire.AggregateList
			if err := json.Unmarshal(data, &l); err != nil {
				return err
			}
			fmt.Fprintln(w, "NAME\tFILTER\tFUNC")
			for _, a := range l.Aggregates {
				fmt.Fprintf(w, "%s\t%s\t%s\n", a.Name, a.Filter, a.Func)
			}
			return nil
		}))
	return cmd
}

// change runs an add or rm command and prints its ack.
func (c *conn) change(cmd *cobra.Command, command wire.Command, req any) error {
	var ack wire.Ack
	if err := c.call(cmd.Context(), command, req, &ack); err != nil {
		return err
	}
	if c.jsonOut {
		return printJSON(cmd.OutOrStdout(), &ack)
	}
	fmt.Fprintln(cmd.OutOrStdout(), ack.Message)
	return nil
}

func removeCommand(c *conn, command wire.Command, what string) *cobra.Command {
	return &cobra.Command{
		Use:   "rm NAME",
		Short: "Remove a " + what,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.change(cmd, command, wire.NameRequest{MultiLog: c.multilog, Name: args[0]})
		},
	}
}

func listCommand(c *conn, command wire.Command, what string, table func(*tabwriter.Writer, json.RawMessage) error) *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List " + what,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var raw json.RawMessage
			if err := c.call(cmd.Context(), command, wire.NameRequest{MultiLog: c.multilog}, &raw); err != nil {
				return err
			}
			if c.jsonOut {
				var v any
				_ = json.Unmarshal(raw, &v)
				return printJSON(cmd.OutOrStdout(), v)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			if err := table(w, raw); err != nil {
				return err
			}
			return w.Flush()
		},
	}
}

func filterCommand(c *conn) *cobra.Command {
	cmd := &cobra.Command{Use: "filter", Short: "Manage named filters"}
	cmd.AddCommand(&cobra.Command{
		Use:   "add NAME EXPR",
		Short: "Install a named filter",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.change(cmd, wire.CmdFilterAdd, wire.FilterSpec{MultiLog: c.multilog, Name: args[0], Expr: args[1]})
		},
	}, removeCommand(c, wire.CmdFilterRemove, "filter"),
		listCommand(c, wire.CmdFilterList, "filters", func(w *tabwriter.Writer, data json.RawMessage) error {
			var l wire.FilterList
			if err := json.Unmarshal(data, &l); err != nil {
				return err
			}
			fmt.Fprintln(w, "NAME\tEXPR")
			for _, f := range l.Filters {
				fmt.Fprintf(w, "%s\t%s\n", f.Name, f.Expr)
			}
			return nil
		}))
	return cmd
}

func triggerCommand(c *conn) *cobra.Command {
	cmd := &cobra.Command{Use: "trigger", Short: "Manage triggers (alerts when an aggregate crosses a threshold)"}
	var period time.Duration
	add := &cobra.Command{
		Use:     "add NAME CONDITION",
		Short:   "Install a trigger: CONDITION is 'AGGREGATE OP THRESHOLD'",
		Example: `  confluoctl trigger add synflood 'syn_count >= 100' --period 100ms`,
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.change(cmd, wire.CmdTriggerAdd, wire.TriggerSpec{MultiLog: c.multilog, Name: args[0], Condition: args[1],
				PeriodMillis: int(period / time.Millisecond)})
		},
	}
	add.Flags().DurationVar(&period, "period", time.Second, "window the aggregate is computed over")
	cmd.AddCommand(add, removeCommand(c, wire.CmdTriggerRemove, "trigger"),
		listCommand(c, wire.CmdTriggerList, "triggers", func(w *tabwriter.Writer, data json.RawMessage) error {
			var l wire.TriggerList
			if err := json.Unmarshal(data, &l); err != nil {
				return err
			}
			fmt.Fprintln(w, "NAME\tCONDITION\tPERIOD")
			for _, t := range l.Triggers {
				fmt.Fprintf(w, "%s\t%s\t%v\n", t.Name, t.Condition, time.Duration(t.PeriodMillis)*time.Millisecond)
			}
			return nil
		}))
	return cmd
}

func indexCommand(c *conn) *cobra.Command {
	cmd := &cobra.Command{Use: "index", Short: "Manage column indexes"}
	cmd.AddCommand(&cobra.Command{
		Use:   "add COLUMN",
		Short: "Index a column (covers existing records too)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.change(cmd, wire.CmdIndexAdd, wire.IndexSpec{MultiLog: c.multilog, Column: args[0]})
		},
	}, removeCommand(c, wire.CmdIndexRemove, "index"),
		listCommand(c, wire.CmdIndexList, "indexes", func(w *tabwriter.Writer, data json.RawMessage) error {
			var l wire.IndexList
			if err := json.Unmarshal(data, &l); err != nil {
				return err
			}
			fmt.Fprintln(w, "COLUMN")
			for _, col := range l.Columns {
				fmt.Fprintln(w, col)
			}
			return nil
		}))
	return cmd
}

func alertsCommand(c *conn) *cobra.Command {
	var (
		tf      timeFlags
		trigger string
		limit   int
	)
	cmd := &cobra.Command{
		Use:   "alerts",
		Short: "List the alerts a sidecar raised",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			from, to, err := tf.parse()
			if err != nil {
				return err
			}
			var reply wire.AlertsReply
			if err := c.call(cmd.Context(), wire.CmdAlerts, wire.AlertsRequest{MultiLog: c.multilog, Trigger: trigger,
				From: from, To: to, Limit: limit}, &reply); err != nil {
				return err
			}
			if c.jsonOut {
				return printJSON(cmd.OutOrStdout(), &reply)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintln(w, "SEQ\tTRIGGER\tWINDOW START\tWINDOW\tVALUE\tCONDITION")
			for _, a := range reply.Alerts {
				fmt.Fprintf(w, "%d\t%s\t%s\t%v\t%g\t%s\n", a.Seq, a.Trigger, a.WindowStart.Format(time.RFC3339Nano),
					a.WindowEnd.Sub(a.WindowStart), a.Value, a.Condition)
			}
			return w.Flush()
		},
	}
	tf.register(cmd)
	cmd.Flags().StringVar(&trigger, "trigger", "", "only this trigger's alerts")
	cmd.Flags().IntVar(&limit, "limit", 0, "at most this many alerts")
	return cmd
}

// FormatAlert is the one-line form tail prints.
func FormatAlert(a *wire.Alert) string {
	return fmt.Sprintf("ALERT %s/%s #%d  %s = %g %s %g  window %s +%v  (completeness %.4f)",
		a.Host, a.Trigger, a.Seq, a.Aggregate, a.Value, a.Op, a.Threshold,
		a.WindowStart.Format(time.RFC3339Nano), a.WindowEnd.Sub(a.WindowStart), a.Completeness.Ratio)
}

func tailCommand(c *conn) *cobra.Command {
	var (
		allHosts bool
		count    int
	)
	cmd := &cobra.Command{
		Use:   "tail",
		Short: "Print alerts live as the sidecar publishes them on NATS",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			host := c.host
			if allHosts {
				host = ""
			} else if err := wire.ValidateToken("host", host); err != nil {
				return fmt.Errorf("--host: %w", err)
			}
			nc, err := nats.Connect(c.natsURL, append(c.natsOptions(), nats.MaxReconnects(-1))...)
			if err != nil {
				return fmt.Errorf("connect to NATS %s: %w", c.natsURL, err)
			}
			defer nc.Close()
			ch := make(chan *nats.Msg, 1024)
			sub, err := nc.ChanSubscribe(wire.AlertsWildcard(host), ch)
			if err != nil {
				return err
			}
			defer sub.Unsubscribe()
			if err := nc.Flush(); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "listening on %s\n", wire.AlertsWildcard(host))
			return tail(cmd.Context(), ch, cmd.OutOrStdout(), c.jsonOut, count)
		},
	}
	cmd.Flags().BoolVar(&allHosts, "all-hosts", false, "alerts of every host")
	cmd.Flags().IntVar(&count, "count", 0, "exit after this many alerts (0: run until interrupted)")
	return cmd
}

func tail(ctx context.Context, ch <-chan *nats.Msg, w io.Writer, jsonOut bool, count int) error {
	seen := map[string]uint64{} // host -> highest seq: delivery is at least once
	n := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-ch:
			var a wire.Alert
			if err := json.Unmarshal(m.Data, &a); err != nil {
				fmt.Fprintf(w, "malformed alert on %s: %v\n", m.Subject, err)
				continue
			}
			if a.Seq != 0 && a.Seq <= seen[a.Host] {
				continue
			}
			seen[a.Host] = a.Seq
			if jsonOut {
				fmt.Fprintln(w, string(m.Data))
			} else {
				fmt.Fprintln(w, FormatAlert(&a))
			}
			if f, ok := w.(interface{ Flush() error }); ok {
				_ = f.Flush()
			}
			if n++; count > 0 && n >= count {
				return nil
			}
		}
	}
}

func statsCommand(c *conn) *cobra.Command {
	return &cobra.Command{
		Use:   "stats",
		Short: "Show a sidecar's capture, store, query and NATS counters",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var st wire.Stats
			if err := c.call(cmd.Context(), wire.CmdStats, nil, &st); err != nil {
				return err
			}
			if c.jsonOut {
				return printJSON(cmd.OutOrStdout(), &st)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintf(w, "host\t%s (version %s, up since %s)\n", st.Host, st.Version, st.Started.Format(time.RFC3339))
			fmt.Fprintf(w, "capture\t%s: received %d, stored %d, done %v\n", st.Capture.Source, st.Capture.Received, st.Capture.Stored, st.Capture.Done)
			for reason, n := range st.Capture.Dropped {
				fmt.Fprintf(w, "  dropped\t%s: %d\n", reason, n)
			}
			for _, ml := range st.MultiLogs {
				fmt.Fprintf(w, "multilog\t%s: %d records\n", ml.Name, ml.Records)
			}
			fmt.Fprintf(w, "queries\ttotal %d, failed %d, rejected %d, running %d\n", st.Queries.Total, st.Queries.Failed, st.Queries.Rejected, st.Queries.Running)
			fmt.Fprintf(w, "nats\t%s connected=%v embedded=%v; alerts published %d, buffered %d, dropped %d\n", st.NATS.URL,
				st.NATS.Connected, st.NATS.Embedded, st.NATS.AlertsPublished, st.NATS.AlertsBuffered, st.NATS.AlertsDropped)
			return w.Flush()
		},
	}
}
