package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/safe-run/safe-run/internal/cli"
	"github.com/safe-run/safe-run/ops"
)

// The commands that operate running services: each reads what the
// supervisors publish under the state directory (package ops).

func psCommand(g *globals) *cobra.Command {
	var format string
	var all bool
	c := &cobra.Command{
		Use:   "ps [--format table|json] [-a]",
		Short: "List the running services",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			return ops.PS(g.stdout, cli.DefaultDirs().State, format, all)
		},
	}
	c.Flags().StringVar(&format, "format", ops.FormatTable, "table or json")
	c.Flags().BoolVarP(&all, "all", "a", false, "also services whose supervisor died (crashed), left for the janitor or the next start")
	return c
}

func stopCommand(g *globals) *cobra.Command {
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "stop [-t DURATION] NAME...",
		Short: "Stop running services as SIGTERM to their safe-run does, and wait for them to be gone",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if timeout < 0 {
				return fmt.Errorf("-t %s: a stop timeout cannot be negative", timeout)
			}
			return ops.Stop(cmd.Context(), cli.DefaultDirs().State, args, timeout)
		},
	}
	c.Flags().DurationVarP(&timeout, "time", "t", 0, "SIGKILL after this long (default: the manifest's stop_timeout)")
	return c
}

func killCommand(g *globals) *cobra.Command {
	var signal string
	c := &cobra.Command{
		Use:   "kill [-s SIGNAL] NAME...",
		Short: "Send a signal to running services (default SIGKILL)",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sig, err := ops.ParseSignal(signal)
			if err != nil {
				return fmt.Errorf("-s: %w", err)
			}
			return ops.Kill(cmd.Context(), cli.DefaultDirs().State, args, sig)
		},
	}
	c.Flags().StringVarP(&signal, "signal", "s", "KILL", "the signal, by name or number")
	return c
}

func eventsCommand(g *globals) *cobra.Command {
	var o ops.EventsOptions
	var since time.Duration
	c := &cobra.Command{
		Use:   "events [NAME...] [--since DURATION] [--format text|json] [-f]",
		Short: "Print the services' events: start, ready, exit, OOM kills, denials, stop requests",
		RunE: func(cmd *cobra.Command, args []string) error {
			if since < 0 {
				return fmt.Errorf("--since %s: use a positive duration (how far back)", since)
			}
			o.Names = args
			if since > 0 {
				o.Since = time.Now().Add(-since)
			}
			o.Warn = g.stderr
			return ops.Events(cmd.Context(), g.stdout, ops.JournalDir(cli.DefaultDirs().Data), o)
		},
	}
	c.Flags().DurationVar(&since, "since", 0, "only events of this long ago and later (default: all kept)")
	c.Flags().StringVar(&o.Format, "format", ops.FormatText, "text or json")
	c.Flags().BoolVarP(&o.Follow, "follow", "f", false, "go on printing new events as they come")
	return c
}

func statsCommand(g *globals) *cobra.Command {
	var o ops.StatsOptions
	var noStream bool
	c := &cobra.Command{
		Use:   "stats [NAME...] [--no-stream] [--format table|json]",
		Short: "Show the services' CPU, memory, pids, CPU throttling and OOM kills, from their cgroups",
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Names, o.Stream = args, !noStream
			return ops.ShowStats(cmd.Context(), g.stdout, cli.DefaultDirs().State, o)
		},
	}
	c.Flags().BoolVar(&noStream, "no-stream", false, "print one reading and exit")
	c.Flags().StringVar(&o.Format, "format", ops.FormatTable, "table or json")
	c.Flags().DurationVar(&o.Interval, "interval", time.Second, "time between the two samples of a reading")
	return c
}
