// Command safe-run runs a service described by a TOML manifest as a
// hardened container, in the foreground, and exits with its status.
//
// This binary is the fast path of `safe-run SERVICE.toml`: it plans the
// service, starts the container and supervises it, all in one process.
// Everything else is safe-run-tools's, which safe-run replaces itself with,
// arguments unchanged: every other command (spec, check, import, export,
// audit, image, profile, doctor...), help, and a start whose image must
// come from a registry (safe-run-tools pulls it, then hands the prepared
// service back: safe-run supervise --job-fd N).
//
// The split keeps this binary small, and with it every container start:
// libcontainer re-executes it as the init of every container, initialising
// every package it links each time, and it stays resident for the
// service's life. The registry client, the command-line framework,
// exports and audit are linked only into safe-run-tools (see TestLean).
//
// updatemaxprocs=0: Go otherwise re-reads its cgroup's CPU limit every
// second (sysmon) to adjust GOMAXPROCS, waking an idle supervisor for
// nothing: the supervisor's own cgroup keeps its limit for its life.
//
//go:debug updatemaxprocs=0
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/safe-run/safe-run/host"
	"github.com/safe-run/safe-run/image"
	"github.com/safe-run/safe-run/internal/cli"
	"github.com/safe-run/safe-run/internal/handoff"
	"github.com/safe-run/safe-run/internal/rootless"
	"github.com/safe-run/safe-run/launcher"
	"github.com/safe-run/safe-run/network"
	"github.com/safe-run/safe-run/plan"
)

func main() {
	// libcontainer logs through logrus; what matters reaches safe-run as
	// errors, which it reports itself.
	logrus.SetOutput(io.Discard)
	args := os.Args[1:]
	path, f, start := runArgs(args)
	if fd, ok := handoff.FD(args); ok {
		os.Exit(superviseJob(fd))
	}
	if start {
		// First: a signal sent to a starting safe-run before it took
		// them ended it (SIGTERM, SIGHUP) or was lost (SIGUSR1). From
		// here on each waits for the service, or stops the start.
		signals := launcher.SubscribeSignalsNow(earlySignals)
		rootless.SignalsTaken(signals)
		os.Exit(runService(args, path, f, signals))
	}
	raiseEarlySignals()
	if len(args) == 2 && args[0] == launcher.NetworkCleanupCommand {
		// The janitor's last step after a safe-run of a bridge service
		// died: its lease now names a dead owner.
		cleanup := func() error { return network.Cleanup(args[1]) }
		var err error
		if os.Getenv(host.RootlessNetEnv) == host.RootlessNetShared {
			// A killed member of the user's shared network namespace:
			// it ends with its last member.
			err = rootless.Release(filepath.Dir(args[1]), cleanup)
		} else {
			err = cleanup()
		}
		if err != nil {
			os.Exit(cli.Fail(os.Stderr, err))
		}
		os.Exit(0)
	}
	if len(args) == 3 && args[0] == rootless.KeeperCommand {
		os.Exit(rootless.Keep(args[1:]))
	}
	os.Exit(execTools(args))
}

// runFlags are the flags of a start.
type runFlags struct {
	quiet bool // -q, --quiet: no start report
	debug bool // --debug: log everything, not only warnings
}

// runArgs recognises the starts this binary runs itself: `[run] [-q|--quiet]
// [--debug] PATH` in any order of the flags, where without `run` PATH must
// look like a file (a dot or a slash in it), never like a command name.
// Anything else, a mistyped command included, is safe-run-tools's to run or
// to explain.
func runArgs(args []string) (path string, f runFlags, ok bool) {
	explicit := len(args) > 0 && args[0] == "run"
	if explicit {
		args = args[1:]
	}
	var paths []string
	for _, a := range args {
		switch {
		case a == "-q" || a == "--quiet":
			f.quiet = true
		case a == "--debug":
			f.debug = true
		case strings.HasPrefix(a, "-"):
			return "", f, false
		default:
			paths = append(paths, a)
		}
	}
	if len(paths) != 1 || !explicit && !strings.ContainsAny(paths[0], "./") {
		return "", f, false
	}
	return paths[0], f, true
}

// runService plans the service at path and runs it in this process,
// signals subscribed to since the start of main: the first SIGINT or
// SIGTERM before the container exists ends the start, nothing of it
// left, with 128 + its number.
func runService(args []string, path string, f runFlags, signals *launcher.Signals) int {
	ctx, stop := signals.Context(context.Background())
	defer stop()
	log := cli.Logger(os.Stderr, f.debug)
	facts := host.Probe()
	dirs := cli.DefaultDirs()
	var report io.Writer
	if !f.quiet {
		report = os.Stderr
	}
	if code, entered, err := rootless.Enter(facts, args, path, dirs, report, log, signals); entered {
		if err != nil {
			return cli.Fail(os.Stderr, err)
		}
		return code
	}
	popts := plan.Options{Dirs: dirs, InitPath: cli.HelperPath("safe-run-init"), JanitorPath: cli.HelperPath("safe-run-janitor"), Progress: report, CheckPaths: launcher.CheckPaths, Logger: log}
	job, err := plan.Build(ctx, path, facts, popts)
	if errors.Is(err, image.ErrRegistryNeeded) {
		// Nothing is recorded before the image is resolved:
		// safe-run-tools starts over with the registry client.
		return execTools(args)
	}
	if err == nil {
		// Enforce claims a new service's ids with no lock (took: a write,
		// a link and two syncs; a recorded service's, a read and a sync).
		// lock_wait is the one lock it may take, once after an upgrade,
		// to move ids.json's records. The soak reads both (issue 19).
		began := time.Now()
		var wait time.Duration
		wait, err = launcher.EnforceWait(ctx, job, facts)
		log.Debug("ids allotted", "service", job.Name, "took", time.Since(began), "lock_wait", wait)
	}
	if err == nil {
		return supervise(ctx, job, f.quiet, log, signals)
	}
	if e := launcher.Stopped(ctx); e != nil {
		return stopped(path, e)
	}
	return cli.Fail(os.Stderr, err)
}

// stopped says that a signal ended the start of the service at path
// before its container existed, and returns the exit status.
func stopped(path string, e *launcher.StoppedError) int {
	fmt.Fprintf(os.Stderr, "safe-run: %s: %v\n", path, e)
	return 128 + int(e.Signal)
}

// superviseJob runs the service safe-run-tools planned and handed over.
func superviseJob(fd int) int {
	h, err := handoff.Read(fd)
	if err != nil {
		return cli.Fail(os.Stderr, err)
	}
	signals := launcher.SubscribeSignalsNow(earlySignals)
	ctx, stop := signals.Context(context.Background())
	defer stop()
	return supervise(ctx, h.Job, h.Quiet, cli.Logger(os.Stderr, h.Debug), signals)
}

func supervise(ctx context.Context, job *plan.Job, quiet bool, log *slog.Logger, signals *launcher.Signals) int {
	opts := cli.RunOptions(launcher.Stdio{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}, quiet, log)
	opts.Signals = signals
	code, err := launcher.Run(ctx, job, opts)
	if e := launcher.Stopped(ctx); err != nil && e != nil {
		fmt.Fprintf(os.Stderr, "safe-run: %s: %v\n", job.Name, e)
		return 128 + int(e.Signal)
	}
	if err != nil {
		return cli.Fail(os.Stderr, err)
	}
	return code
}

// execTools replaces this process with safe-run-tools, same arguments.
func execTools(args []string) int {
	path := cli.HelperPath("safe-run-tools")
	err := syscall.Exec(path, append([]string{"safe-run-tools"}, args...), os.Environ())
	fmt.Fprintf(os.Stderr, "safe-run: running %s: %v (install safe-run-tools beside safe-run)\n", path, err)
	return cli.ExitFailed
}
