// Command safe-run runs a service described by a TOML manifest as a
// hardened container, in the foreground, and exits with its status.
//
// This binary is the fast path of `safe-run SERVICE.toml`: it prepares the
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
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/image"
	"github.com/safe-run/safe-run/launcher"
	"github.com/safe-run/safe-run/plan"
)

func main() {
	// libcontainer logs through logrus; what matters reaches safe-run as
	// errors, which it reports itself.
	logrus.SetOutput(io.Discard)
	args := os.Args[1:]
	if fd, ok := launcher.JobFD(args); ok {
		os.Exit(superviseJob(fd))
	}
	if path, quiet, ok := runArgs(args); ok {
		os.Exit(runService(args, path, quiet))
	}
	os.Exit(execTools(args))
}

// runArgs recognises the starts this binary runs itself: `[run] [-q|--quiet]
// PATH` in any order of the flag, where without `run` PATH must look like a
// file (a dot or a slash in it), never like a command name. Anything else,
// a mistyped command included, is safe-run-tools's to run or to explain.
func runArgs(args []string) (path string, quiet, ok bool) {
	explicit := len(args) > 0 && args[0] == "run"
	if explicit {
		args = args[1:]
	}
	var paths []string
	for _, a := range args {
		switch {
		case a == "-q" || a == "--quiet":
			quiet = true
		case strings.HasPrefix(a, "-"):
			return "", false, false
		default:
			paths = append(paths, a)
		}
	}
	if len(paths) != 1 || !explicit && !strings.ContainsAny(paths[0], "./") {
		return "", false, false
	}
	return paths[0], quiet, true
}

// runService prepares the service at path and runs it in this process.
func runService(args []string, path string, quiet bool) int {
	ctx, stop := signal.NotifyContext(context.Background(), unix.SIGINT, unix.SIGTERM)
	defer stop()
	dirs := launcher.DefaultDirs()
	if launcher.MustEnterRootless() {
		var report io.Writer
		if !quiet {
			report = os.Stderr
		}
		code, err := launcher.RunRootless(args, dirs, report)
		if err != nil {
			return launcher.Fail(os.Stderr, err)
		}
		return code
	}
	// Subscribing takes milliseconds of hand-offs: done while preparing.
	signals := launcher.SubscribeSignals()
	popts := plan.Options{Dirs: dirs, InitPath: launcher.HelperPath("safe-run-init"), Allocate: true}
	if !quiet {
		popts.Progress = os.Stderr
	}
	p, err := plan.Prepare(ctx, path, popts)
	if errors.Is(err, image.ErrRegistryNeeded) {
		// Nothing is recorded before the image is resolved:
		// safe-run-tools starts over with the registry client.
		return execTools(args)
	}
	if err != nil {
		return launcher.Fail(os.Stderr, err)
	}
	return supervise(ctx, p.Job(dirs, launcher.HelperPath("safe-run-janitor"), quiet), signals)
}

// superviseJob runs the service safe-run-tools prepared and handed over.
func superviseJob(fd int) int {
	job, err := launcher.ReadJob(fd)
	if err != nil {
		return launcher.Fail(os.Stderr, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), unix.SIGINT, unix.SIGTERM)
	defer stop()
	return supervise(ctx, job, nil)
}

func supervise(ctx context.Context, job *launcher.Job, signals *launcher.Signals) int {
	opts := job.Options(launcher.Stdio{In: os.Stdin, Out: os.Stdout, Err: os.Stderr})
	opts.Signals = signals
	code, err := launcher.Run(ctx, job.Spec, job.Host, opts)
	if err != nil {
		return launcher.Fail(os.Stderr, err)
	}
	return code
}

// execTools replaces this process with safe-run-tools, same arguments.
func execTools(args []string) int {
	path := launcher.HelperPath("safe-run-tools")
	err := syscall.Exec(path, append([]string{"safe-run-tools"}, args...), os.Environ())
	fmt.Fprintf(os.Stderr, "safe-run: running %s: %v (install safe-run-tools beside safe-run)\n", path, err)
	return launcher.ExitFailed
}
