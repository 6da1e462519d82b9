// Package cli provides the "confluoctl mirror" commands: enable, disable,
// status and list mirrors on the local Open vSwitch through ovs.Controller.
//
//	confluoctl mirror enable  --bridge br0 --name m1 --src-port vm1 --snaplen 128
//	confluoctl mirror enable  --bridge br0 --name web --flow tcp,tp_dst=443
//	confluoctl mirror status  --bridge br0 --name m1 --json
//	confluoctl mirror list
//	confluoctl mirror disable --bridge br0 --name m1
//
// Output is a human table by default and JSON with --json. On failure the
// command prints the error (and with --json also {"error": ..., "exit_code": N}
// on stdout) and main exits with ExitCode(err):
//
//	0 success
//	1 any other failure (OVSDB transaction error, ...)
//	2 bad usage: invalid flags, spec, snaplen out of range, bad flow match
//	3 Open vSwitch not running: no OVSDB server on the endpoint, connection
//	  lost mid-call, or ovs-vswitchd not reachable (the OVSDB change may be
//	  committed; it applies when ovs-vswitchd runs)
//	4 permission denied on the OVSDB socket
//	5 bridge, port or mirror not found
//	6 conflict with state Confluo-Go does not manage: the name is used by an
//	  unmanaged mirror, or (--flow) the bridge has foreign OpenFlow rules
//
// The commands are one-shot: they apply a change and exit. Keeping mirrors
// reconciled is the sidecar daemon's job (ovs.Controller.Run).
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/confluo-go/confluo/ovs"
)

// Exit codes; see the package documentation.
const (
	ExitOK         = 0
	ExitFailure    = 1
	ExitUsage      = 2
	ExitNotRunning = 3
	ExitPermission = 4
	ExitNotFound   = 5
	ExitConflict   = 6
)

// ExitCode maps an error returned by the mirror commands to the process exit code.
func ExitCode(err error) int {
	var usage *usageError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &usage),
		errors.Is(err, ovs.ErrInvalidSpec), errors.Is(err, ovs.ErrSnaplen), errors.Is(err, ovs.ErrNoSelection),
		errors.Is(err, ovs.ErrInvalidFlow), errors.Is(err, ovs.ErrOutputIsSource), errors.Is(err, ovs.ErrInvalidOptions):
		return ExitUsage
	case errors.Is(err, ovs.ErrPermission):
		return ExitPermission
	case errors.Is(err, ovs.ErrNotRunning), errors.Is(err, ovs.ErrNotConnected), errors.Is(err, ovs.ErrVSwitchd):
		return ExitNotRunning
	case errors.Is(err, ovs.ErrBridgeNotFound), errors.Is(err, ovs.ErrPortNotFound), errors.Is(err, ovs.ErrMirrorNotFound):
		return ExitNotFound
	case errors.Is(err, ovs.ErrUnmanaged), errors.Is(err, ovs.ErrFlowSelection):
		return ExitConflict
	}
	return ExitFailure
}

// usageError marks errors in the command line itself.
type usageError struct{ msg string }

func (e *usageError) Error() string { return "usage: " + e.msg }

// Hint returns a line telling a person what to do about err, or "".
func Hint(err error) string {
	switch ExitCode(err) {
	case ExitNotRunning:
		if errors.Is(err, ovs.ErrVSwitchd) {
			return "hint: start ovs-vswitchd or point --ovs-rundir at its run directory"
		}
		return "hint: start Open vSwitch (systemctl start openvswitch-switch) or point --db at its OVSDB socket"
	case ExitPermission:
		return "hint: run as root (sudo) or as a member of the openvswitch group"
	case ExitNotFound:
		return "hint: check names with 'ovs-vsctl show' and 'confluoctl mirror list'"
	case ExitConflict:
		if errors.Is(err, ovs.ErrFlowSelection) {
			return "hint: --flow needs a bridge whose only OpenFlow rule is the default NORMAL one; select by port or VLAN instead"
		}
		return "hint: pick another --name; confluoctl never edits mirrors it did not create"
	}
	return ""
}

// flags shared by every mirror subcommand.
type globalFlags struct {
	db       string
	rundir   string
	vhostDir string
	netns    string
	timeout  time.Duration
	jsonOut  bool
	verbose  bool
	noPurge  bool
}

// NewMirrorCommand returns the "mirror" command with its subcommands.
func NewMirrorCommand() *cobra.Command {
	defaults := ovs.DefaultOptions()
	g := &globalFlags{}
	cmd := &cobra.Command{
		Use:   "mirror",
		Short: "Enable, disable and inspect Open vSwitch mirrors feeding Confluo",
		Long: "Programs Open vSwitch mirrors through OVSDB. A mirror copies the selected packets\n" +
			"(all, by source/destination port, VLAN or OpenFlow match) to a spray port, truncated\n" +
			"to --snaplen bytes. Exit codes: 0 ok, 1 failure, 2 usage, 3 OVS not running,\n" +
			"4 permission denied, 5 not found, 6 conflict with unmanaged state (mirror name, OpenFlow rules).",
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return &usageError{fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())}
			}
			return cmd.Help()
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err.Error()} })
	pf := cmd.PersistentFlags()
	pf.StringVar(&g.db, "db", defaults.Endpoint, "OVSDB endpoint (unix:PATH or tcp:HOST:PORT)")
	pf.StringVar(&g.rundir, "ovs-rundir", defaults.OVSRunDir, "ovs-vswitchd run directory (for ovs-appctl/ovs-ofctl)")
	pf.StringVar(&g.vhostDir, "vhost-dir", defaults.VhostDir, "directory of vhost-user sockets for DPDK spray ports")
	pf.StringVar(&g.netns, "vswitchd-netns", "", "network namespace path ovs-vswitchd runs in, if not this one")
	pf.DurationVar(&g.timeout, "timeout", 10*time.Second, "deadline for the whole command")
	pf.BoolVar(&g.jsonOut, "json", false, "print JSON instead of tables")
	pf.BoolVarP(&g.verbose, "verbose", "v", false, "log every change to stderr")
	pf.BoolVar(&g.noPurge, "no-purge", false, "do not run revalidator/purge after a change")
	cmd.AddCommand(newEnableCommand(g), newDisableCommand(g), newStatusCommand(g), newListCommand(g))
	return cmd
}

// connect builds a controller from the flags and connects it.
func (g *globalFlags) connect(ctx context.Context, stderr io.Writer) (*ovs.Controller, error) {
	o := ovs.DefaultOptions()
	o.Endpoint = g.db
	o.OVSRunDir = g.rundir
	o.VhostDir = g.vhostDir
	o.VSwitchdNetNS = g.netns
	o.CallTimeout = max(g.timeout/2, time.Second)
	o.Purge = !g.noPurge
	level := slog.LevelWarn
	if g.verbose {
		level = slog.LevelInfo
	}
	o.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	c, err := ovs.New(o)
	if err != nil {
		return nil, err
	}
	if err := c.Connect(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// run wraps a subcommand body with the deadline, the connection and error output.
func (g *globalFlags) run(cmd *cobra.Command, body func(ctx context.Context, c *ovs.Controller) error) error {
	ctx, cancel := context.WithTimeout(cmd.Context(), g.timeout)
	defer cancel()
	err := func() error {
		c, err := g.connect(ctx, cmd.ErrOrStderr())
		if err != nil {
			return err
		}
		defer c.Close()
		return body(ctx, c)
	}()
	if err != nil && g.jsonOut {
		_ = writeJSON(cmd.OutOrStdout(), map[string]any{"error": err.Error(), "exit_code": ExitCode(err)})
	}
	return err
}

func bridgeNameFlags(cmd *cobra.Command, bridge, name *string) {
	cmd.Flags().StringVarP(bridge, "bridge", "b", "", "bridge name (required)")
	cmd.Flags().StringVarP(name, "name", "n", "", "mirror name (required)")
}

func requireBridgeName(bridge, name string) error {
	if bridge == "" || name == "" {
		return &usageError{"--bridge and --name are required"}
	}
	return nil
}

func newEnableCommand(g *globalFlags) *cobra.Command {
	var spec ovs.MirrorSpec
	var vlans []string
	cmd := &cobra.Command{
		Use:   "enable --bridge BR --name NAME (--select-all | --src-port P | --dst-port P | --flow MATCH)...",
		Short: "Create or update a mirror (idempotent)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireBridgeName(spec.Bridge, spec.Name); err != nil {
				return err
			}
			for _, v := range vlans {
				n, err := strconv.Atoi(strings.TrimSpace(v))
				if err != nil {
					return &usageError{fmt.Sprintf("--vlan %q is not a number", v)}
				}
				spec.VLANs = append(spec.VLANs, n)
			}
			if err := spec.Normalize().Validate(); err != nil {
				return err
			}
			return g.run(cmd, func(ctx context.Context, c *ovs.Controller) error {
				res, err := c.EnsureMirror(ctx, spec)
				if err != nil {
					return err
				}
				st, err := c.MirrorStatus(ctx, spec.Bridge, spec.Name)
				if err != nil {
					return err
				}
				if g.jsonOut {
					return writeJSON(cmd.OutOrStdout(), map[string]any{"result": res, "mirror": st})
				}
				fmt.Fprintf(cmd.OutOrStdout(), "mirror %s on %s: %s\n", spec.Name, spec.Bridge, res.Change)
				for _, r := range res.Reasons {
					fmt.Fprintf(cmd.OutOrStdout(), "  %s\n", r)
				}
				return writeTable(cmd.OutOrStdout(), []ovs.MirrorStatus{st})
			})
		},
	}
	bridgeNameFlags(cmd, &spec.Bridge, &spec.Name)
	f := cmd.Flags()
	f.BoolVar(&spec.SelectAll, "select-all", false, "mirror every packet on the bridge")
	f.StringSliceVar(&spec.SrcPorts, "src-port", nil, "mirror packets received on this port (repeatable)")
	f.StringSliceVar(&spec.DstPorts, "dst-port", nil, "mirror packets sent out of this port (repeatable)")
	f.StringSliceVar(&vlans, "vlan", nil, "only these VLANs (repeatable, narrows the port selection)")
	f.IntVar(&spec.Snaplen, "snaplen", 0, "truncate copies to this many bytes (14..65535; 0 = whole packets)")
	f.StringVar(&spec.Output, "output", "", "spray port (default cf-<bridge>, created if missing)")
	f.StringArrayVar(&spec.Flows, "flow", nil, "OpenFlow match selecting packets, e.g. tcp,tp_dst=443 (repeatable)")
	return cmd
}

func newDisableCommand(g *globalFlags) *cobra.Command {
	var bridge, name string
	var ignoreMissing bool
	cmd := &cobra.Command{
		Use:   "disable --bridge BR --name NAME",
		Short: "Remove a mirror created by Confluo-Go",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireBridgeName(bridge, name); err != nil {
				return err
			}
			return g.run(cmd, func(ctx context.Context, c *ovs.Controller) error {
				res, err := c.RemoveMirror(ctx, bridge, name)
				if errors.Is(err, ovs.ErrMirrorNotFound) && ignoreMissing {
					res, err = ovs.Result{Change: ovs.Unchanged, Reasons: []string{"mirror not found"}}, nil
				}
				if err != nil {
					return err
				}
				if g.jsonOut {
					return writeJSON(cmd.OutOrStdout(), map[string]any{"result": res})
				}
				fmt.Fprintf(cmd.OutOrStdout(), "mirror %s on %s: %s\n", name, bridge, res.Change)
				return nil
			})
		},
	}
	bridgeNameFlags(cmd, &bridge, &name)
	cmd.Flags().BoolVar(&ignoreMissing, "ignore-missing", false, "succeed if the mirror does not exist")
	return cmd
}

func newStatusCommand(g *globalFlags) *cobra.Command {
	var bridge, name string
	cmd := &cobra.Command{
		Use:   "status --bridge BR --name NAME",
		Short: "Show one mirror with its statistics and spray port state",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireBridgeName(bridge, name); err != nil {
				return err
			}
			return g.run(cmd, func(ctx context.Context, c *ovs.Controller) error {
				st, err := c.MirrorStatus(ctx, bridge, name)
				if err != nil {
					return err
				}
				if g.jsonOut {
					return writeJSON(cmd.OutOrStdout(), st)
				}
				return writeStatus(cmd.OutOrStdout(), st)
			})
		},
	}
	bridgeNameFlags(cmd, &bridge, &name)
	return cmd
}

func newListCommand(g *globalFlags) *cobra.Command {
	var bridge string
	var managedOnly bool
	cmd := &cobra.Command{
		Use:   "list [--bridge BR] [--managed]",
		Short: "List mirrors on every bridge (managed and not)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.run(cmd, func(ctx context.Context, c *ovs.Controller) error {
				all, err := c.ListMirrors(ctx)
				if err != nil {
					return err
				}
				out := []ovs.MirrorStatus{}
				for _, m := range all {
					if (bridge == "" || m.Spec.Bridge == bridge) && (!managedOnly || m.Managed) {
						out = append(out, m)
					}
				}
				if g.jsonOut {
					return writeJSON(cmd.OutOrStdout(), out)
				}
				return writeTable(cmd.OutOrStdout(), out)
			})
		},
	}
	cmd.Flags().StringVarP(&bridge, "bridge", "b", "", "only this bridge")
	cmd.Flags().BoolVar(&managedOnly, "managed", false, "only mirrors created by Confluo-Go")
	return cmd
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// selection renders a spec's selection compactly.
func selection(s ovs.MirrorSpec) string {
	var parts []string
	if s.SelectAll {
		parts = append(parts, "all")
	}
	if len(s.SrcPorts) > 0 {
		parts = append(parts, "src="+strings.Join(s.SrcPorts, ","))
	}
	if len(s.DstPorts) > 0 {
		parts = append(parts, "dst="+strings.Join(s.DstPorts, ","))
	}
	if len(s.VLANs) > 0 {
		vs := make([]string, len(s.VLANs))
		for i, v := range s.VLANs {
			vs[i] = strconv.Itoa(v)
		}
		parts = append(parts, "vlan="+strings.Join(vs, ","))
	}
	for _, f := range s.Flows {
		parts = append(parts, "flow="+f)
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func count(v int64) string {
	if v < 0 {
		return "-"
	}
	return strconv.FormatInt(v, 10)
}

func snaplen(v int) string {
	if v == 0 {
		return "full"
	}
	return strconv.Itoa(v)
}

func writeTable(w io.Writer, ms []ovs.MirrorStatus) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BRIDGE\tMIRROR\tMANAGED\tSELECT\tSNAPLEN\tOUTPUT\tOUTPUT STATE\tTX PACKETS\tTX BYTES")
	for _, m := range ms {
		state := orDash(m.Spray.LinkState)
		if m.Spray.Error != "" {
			state = "error: " + m.Spray.Error
		}
		fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\t%s\t%s\t%s\t%s\n", m.Spec.Bridge, m.Spec.Name, yesNo(m.Managed),
			selection(m.Spec), snaplen(m.Spec.Snaplen), orDash(m.Spec.Output), state, count(m.TxPackets), count(m.TxBytes))
	}
	return tw.Flush()
}

func writeStatus(w io.Writer, m ovs.MirrorStatus) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	rows := [][2]string{
		{"bridge", m.Spec.Bridge},
		{"mirror", m.Spec.Name},
		{"uuid", m.UUID},
		{"managed", yesNo(m.Managed)},
		{"select", selection(m.Spec)},
		{"snaplen", snaplen(m.Spec.Snaplen)},
		{"tx packets", count(m.TxPackets)},
		{"tx bytes", count(m.TxBytes)},
		{"output port", orDash(m.Spray.Name)},
		{"output type", orDash(m.Spray.Type)},
		{"output ofport", strconv.Itoa(m.Spray.OFPort)},
		{"output admin/link", orDash(m.Spray.AdminState) + "/" + orDash(m.Spray.LinkState)},
		{"output error", orDash(m.Spray.Error)},
	}
	if m.Spray.VhostServerPath != "" {
		rows = append(rows, [2]string{"vhost-server-path", m.Spray.VhostServerPath})
	}
	for _, r := range rows {
		fmt.Fprintf(tw, "%s:\t%s\n", r[0], r[1])
	}
	return tw.Flush()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// noArgs rejects positional arguments as a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return &usageError{fmt.Sprintf("%s takes no arguments, got %q", cmd.CommandPath(), args)}
	}
	return nil
}
