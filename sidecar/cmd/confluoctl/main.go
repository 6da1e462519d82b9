// Command confluoctl is the Confluo-Go admin CLI. Subcommands:
//
//	confluoctl mirror enable|disable|status|list   (package ovs/cli)
//	confluoctl query|aggregate|alerts|tail|stats|filter|trigger|index   (package sidecar/cli)
//	confluoctl fleet ...   (package coordinator/cli)
//
// Exit codes are documented per command group (see ovs/cli).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	fleetcli "github.com/confluo-go/confluo/coordinator/cli"
	"github.com/confluo-go/confluo/ovs/cli"
	sidecarcli "github.com/confluo-go/confluo/sidecar/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := &cobra.Command{
		Use:           "confluoctl",
		Short:         "Administer Confluo-Go on this host",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(cli.NewMirrorCommand())
	root.AddCommand(sidecarcli.Commands()...) // query, aggregate, alerts, tail, stats, filter, trigger, index
	root.AddCommand(fleetcli.NewFleetCommand())
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "confluoctl: %v\n", err)
		if hint := cli.Hint(err); hint != "" {
			fmt.Fprintln(os.Stderr, hint)
		}
		stop()
		os.Exit(cli.ExitCode(err))
	}
}
