package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spf13/cobra"

	"github.com/safe-run/safe-run/internal/cli"
	"github.com/safe-run/safe-run/manifest"
	"github.com/safe-run/safe-run/ops"
	"github.com/safe-run/safe-run/ops/metrics"
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
		Short: "Print the services' events: start, ready, exit, OOM kills, denials, stop requests, execs",
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
		Short: "Show the services' CPU, memory, network and block I/O, pids, CPU throttling and OOM kills",
		Long: `Show the services' CPU, memory, network and block I/O, pids, CPU throttling
and OOM kills, from their cgroups and network namespaces. On a terminal the
table is redrawn every --interval, as docker stats does; to a pipe or file
each reading follows the last; --no-stream prints one reading.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Names, o.Stream, o.Terminal = args, !noStream, isTerminal(g.stdout)
			return ops.ShowStats(cmd.Context(), g.stdout, cli.DefaultDirs().State, o)
		},
	}
	c.Flags().BoolVar(&noStream, "no-stream", false, "print one reading and exit")
	c.Flags().StringVar(&o.Format, "format", ops.FormatTable, "table or json")
	c.Flags().DurationVar(&o.Interval, "interval", time.Second, "time between the two samples of a reading")
	return c
}

func execCommand(g *globals) *cobra.Command {
	var x ops.ExecRequest
	c := &cobra.Command{
		Use:   "exec [-t] [-u USER] [-w DIR] [-e K=V]... NAME -- COMMAND [ARG...]",
		Short: "Run a command in a running service, with exactly its confinement",
		Long: `exec runs a command inside a running service: in its namespaces and cgroup,
as its user (or -u), with its capabilities, no_new_privs, seccomp filter,
Landlock ruleset, AppArmor profile and rlimits, never more. Only who started
the service, or root, may. The exit status is the command's.`,
		Args: minArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, argv := args[0], args[1:]
			if dash := cmd.ArgsLenAtDash(); dash > 1 {
				return fmt.Errorf("%s before --: one NAME, then the command after -- (usage: %s)", strings.Join(args[1:dash], " "), cmd.UseLine())
			}
			if len(argv) == 0 {
				return fmt.Errorf("no command (usage: %s)", cmd.UseLine())
			}
			if x.User != "" {
				// The rules of the manifest's process.user: ":1000" must
				// not run as uid 0, nor "0:0:0" as anything.
				if p := manifest.UserProblems(x.User); len(p) > 0 {
					return fmt.Errorf("-u: %s (or leave out -u for the service's own user)", strings.Join(p, "; "))
				}
			}
			if err := ops.CheckName(name); err != nil {
				return err
			}
			x.Args = argv
			if term := os.Getenv("TERM"); x.TTY && term != "" {
				// The terminal's type, as docker exec -t passes it;
				// -e TERM=... comes after, and wins.
				x.Env = append([]string{"TERM=" + term}, x.Env...)
			}
			// Signals go to the command, not to this process's
			// context: a ^C is the command's to take.
			sigs := make(chan os.Signal, 8)
			signal.Notify(sigs, unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2)
			defer signal.Stop(sigs)
			code, err := ops.Exec(context.WithoutCancel(cmd.Context()), cli.DefaultDirs().State, name,
				ops.ExecOptions{ExecRequest: x, Stdin: g.stdin, Stdout: g.stdout, Stderr: g.stderr, Signals: sigs})
			if err != nil && code != 0 {
				fmt.Fprintf(g.stderr, "safe-run: %v\n", err)
				return exitStatus(code)
			}
			if err != nil {
				return err
			}
			if code != 0 {
				return exitStatus(code)
			}
			return nil
		},
	}
	// Flags go before --; what follows is the command's, flags and all
	// (without --, a flag of the command's is taken for one of exec's).
	c.Flags().BoolVarP(&x.TTY, "tty", "t", false, "a new terminal of the container's (the caller's must be one)")
	c.Flags().StringVarP(&x.User, "user", "u", "", "NAME or UID[:GID] in the container (default: the service's user)")
	c.Flags().StringVarP(&x.Cwd, "workdir", "w", "", "working directory in the container (default: the service's)")
	c.Flags().StringArrayVarP(&x.Env, "env", "e", nil, "KEY=VALUE over the service's environment (repeatable)")
	return c
}

// isTerminal: w is a terminal, where stats redraws in place.
func isTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

func metricsCommand(g *globals) *cobra.Command {
	var listen, textfile string
	var anyHost bool
	var every time.Duration
	c := &cobra.Command{
		Use:   "metrics [--listen ADDR|unix:PATH] [--textfile DIR [--every DURATION]]",
		Short: "Print the running services' metrics for Prometheus, serve them, or write them for node_exporter",
		Long: `Print the running services' metrics (CPU, throttling, memory, OOM kills, pids,
network and block I/O, seccomp denials, the supervisors' warnings, and
starts) in Prometheus's text format, labelled by service and manifest
digest. safe_run_starts_total counts the start events of the service's
name in its journal, this run's included (restarts are one less); the
journal is rotated at 1 MiB and keeps one rotated file, which bounds what
it counts. Its unit label is the systemd unit safe-run runs under, if any.

--listen serves them at /metrics on a loopback address (127.0.0.1:9464) or a
unix socket (unix:/run/safe-run/metrics.sock) until interrupted; another
address is refused unless --listen-any-host: the metrics name every service,
with no authentication. --textfile DIR writes DIR/safe-run.prom at once for
node_exporter's textfile collector, once or --every DURATION.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			dirs := cli.DefaultDirs()
			reg := metrics.Registry(&metrics.Collector{StateRoot: dirs.State, JournalDir: ops.JournalDir(dirs.Data)})
			if every < 0 {
				return fmt.Errorf("--every %s: use a positive duration", every)
			}
			if every > 0 && textfile == "" {
				return fmt.Errorf("--every %s: how often to write --textfile DIR, which is missing (add --textfile DIR, or leave out --every)", every)
			}
			ctx := cmd.Context()
			errs := make(chan error, 2)
			running := 0
			if listen != "" {
				l, err := metrics.Listen(listen, anyHost)
				if err != nil {
					return err
				}
				running++
				go func() { errs <- metrics.Serve(ctx, l, reg) }()
			}
			if textfile != "" {
				if err := metrics.WriteTextfile(textfile, reg); err != nil {
					return fmt.Errorf("--textfile: %w", err)
				}
				if every > 0 {
					running++
					go func() {
						t := time.NewTicker(every)
						defer t.Stop()
						for {
							select {
							case <-ctx.Done():
								errs <- nil
								return
							case <-t.C:
								if err := metrics.WriteTextfile(textfile, reg); err != nil {
									errs <- fmt.Errorf("--textfile: %w", err)
									return
								}
							}
						}
					}()
				}
			}
			if listen == "" && textfile == "" {
				return metrics.Write(g.stdout, reg)
			}
			for ; running > 0; running-- {
				if err := <-errs; err != nil {
					return err
				}
			}
			return nil
		},
	}
	c.Flags().StringVar(&listen, "listen", "", "serve /metrics on this loopback HOST:PORT, or unix:PATH")
	c.Flags().BoolVar(&anyHost, "listen-any-host", false, "allow --listen on an address other hosts can reach (the metrics have no authentication)")
	c.Flags().StringVar(&textfile, "textfile", "", "write DIR/safe-run.prom for node_exporter's textfile collector")
	c.Flags().DurationVar(&every, "every", 0, "with --textfile: write it again this often until interrupted")
	return c
}
