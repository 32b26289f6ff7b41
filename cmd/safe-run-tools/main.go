// Command safe-run-tools is safe-run's command line: every command but the
// plain start of a service, which safe-run runs itself and hands over the
// rest to this binary, arguments unchanged. Users call safe-run; this
// binary sits beside it (see cmd/safe-run for why there are two).
//
// Its run command is the start of a service whose image must come from a
// registry: it pulls the image, prepares the service and hands it to
// safe-run, which runs and supervises it.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/internal/cli"
)

func main() {
	// libcontainer logs through logrus, as lines of its own on stderr;
	// what matters reaches safe-run as errors, which it reports itself.
	logrus.SetOutput(io.Discard)
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// exitStatus carries the container's own exit status out of a command.
type exitStatus int

func (e exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// globals are the flags every subcommand shares.
type globals struct {
	args   []string // as given, for the rootless re-execution
	quiet  bool
	debug  bool
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), unix.SIGINT, unix.SIGTERM)
	defer stop()
	g := &globals{args: args, stdin: stdin, stdout: stdout, stderr: stderr}
	root := rootCommand(g)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	return exitCode(err, stderr)
}

func rootCommand(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "safe-run [flags] SERVICE.toml",
		Short: "Run a service from a TOML manifest as a hardened container",
		Long: `safe-run runs the service a manifest describes as a container that is
hardened by default: its own user namespace, a read-only root filesystem, no
capabilities but the declared ones, no_new_privs, a seccomp filter, cgroup
limits, and a private network with only loopback. It stays in the foreground,
forwards signals, and exits with the service's exit code.

Anything looser than that must be named in the manifest's [insecure] table,
with a reason.`,
		Example: `  safe-run web.toml                  run the service (same as: safe-run run web.toml)
  safe-run spec web.toml             print the OCI runtime spec it would run
  ExecStart=/usr/bin/safe-run /etc/safe-run/web.toml   in a systemd unit`,
		Args:          serviceArg,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runService(cmd.Context(), g, args[0])
		},
	}
	root.PersistentFlags().BoolVarP(&g.quiet, "quiet", "q", false, "no start report on stderr")
	root.PersistentFlags().BoolVar(&g.debug, "debug", false, "log everything on stderr, not only warnings")
	root.AddCommand(runCommand(g), specCommand(g), checkCommand(g), importCommand(g), auditCommand(g),
		exportCommand(g), imageCommand(g), profileCommand(g), doctorCommand(g), appArmorCommand(g), landlockCommand(g), schemaCommand(g), versionCommand(g),
		psCommand(g), stopCommand(g), killCommand(g), eventsCommand(g), statsCommand(g), execCommand(g), metricsCommand(g))
	refuseUnknownSubcommands(root)
	root.CompletionOptions.HiddenDefaultCmd = true
	root.SuggestionsMinimumDistance = 2
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fmt.Errorf("%w (see %s --help)", err, c.CommandPath())
	})
	return root
}

// serviceArg takes the root command's one SERVICE.toml, and tells a
// mistyped subcommand from a manifest.
func serviceArg(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return exactArgs(1)(cmd, args)
	}
	// A word that is no file and does not look like one (no dot, no
	// slash) was meant as a command: "reading manifest: open bogus" or
	// "too many arguments" would send the user looking for a file.
	a := args[0]
	if _, err := os.Stat(a); errors.Is(err, fs.ErrNotExist) && !strings.ContainsAny(a, "./") {
		hint := "see safe-run --help for the commands"
		if h, ok := dockerVerbs[a]; ok {
			hint = h
		} else if s := cmd.SuggestionsFor(a); len(s) > 0 {
			hint = "did you mean " + s[0] + "?"
		}
		if len(args) == 1 {
			return fmt.Errorf("%q is not a command, nor a file (%s; a manifest is a path, such as ./%s.toml)", a, hint, a)
		}
		return fmt.Errorf("unknown command %q (%s)", a, hint)
	}
	return exactArgs(1)(cmd, args)
}

// dockerVerbs say what to do instead of the docker commands safe-run has
// no counterpart of.
var dockerVerbs = map[string]string{
	"logs":    "a service's output goes where its safe-run's does: its terminal, or journalctl -u UNIT under systemd; safe-run events NAME lists its starts, stops and warnings",
	"restart": "safe-run stop NAME, then start it again: safe-run SERVICE.toml (under systemd: systemctl restart UNIT)",
	"start":   "start a service with safe-run SERVICE.toml",
	"run":     "start a service with safe-run SERVICE.toml; safe-run import turns a docker run line into one",
	"rm":      "a stopped service leaves nothing to remove; its volumes are under the data directory's volumes/",
}

// exactArgs is cobra.ExactArgs with the usage line in the error.
func exactArgs(n int) cobra.PositionalArgs { return argsBetween(n, n) }

// minArgs is cobra.MinimumNArgs with the usage line in the error.
func minArgs(n int) cobra.PositionalArgs { return argsBetween(n, -1) }

// argsBetween takes min to max positional arguments (max < 0: no bound).
func argsBetween(min, max int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) < min:
			return fmt.Errorf("missing arguments (usage: %s; see %s --help)", cmd.UseLine(), cmd.CommandPath())
		case max >= 0 && len(args) > max:
			want := strconv.Itoa(max)
			if min < max {
				want = "at most " + want
			}
			return fmt.Errorf("too many arguments: %d, want %s (usage: %s)", len(args), want, cmd.UseLine())
		}
		return nil
	}
}

// refuseUnknownSubcommands makes each command that only groups others
// (safe-run image, profile, apparmor) fail on an argument that names none
// of them, where cobra would print the help and exit 0.
func refuseUnknownSubcommands(cmd *cobra.Command) {
	for _, c := range cmd.Commands() {
		refuseUnknownSubcommands(c)
	}
	if !cmd.HasParent() || !cmd.HasSubCommands() || cmd.Runnable() {
		return
	}
	cmd.SuggestionsMinimumDistance = 2
	cmd.Args = func(c *cobra.Command, args []string) error {
		if len(args) == 0 {
			return nil
		}
		hint := "see " + c.CommandPath() + " --help"
		if s := c.SuggestionsFor(args[0]); len(s) > 0 {
			hint = "did you mean " + s[0] + "?"
		}
		return fmt.Errorf("unknown command %q for %q (%s)", args[0], c.CommandPath(), hint)
	}
	cmd.RunE = func(c *cobra.Command, _ []string) error { return c.Help() }
}

// exitCode prints err and turns it into safe-run's exit status.
func exitCode(err error, stderr io.Writer) int {
	var status exitStatus
	switch {
	case err == nil:
		return 0
	case errors.As(err, &status):
		return int(status)
	}
	return cli.Fail(stderr, err)
}

// log is the logger of the command line's flags, on stderr.
func (g *globals) log() *slog.Logger { return cli.Logger(g.stderr, g.debug) }

// report is where a start's notes and progress go: stderr, unless quiet.
func (g *globals) report() io.Writer {
	if g.quiet {
		return nil
	}
	return g.stderr
}
