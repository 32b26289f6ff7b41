// Package cli is what safe-run's two binaries share around a run: exit
// codes and how a failure is printed, where the helper binaries and the
// directories are, the logger, and the launcher's options for a run in the
// foreground.
package cli

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/safe-run/safe-run/internal/printable"
	"github.com/safe-run/safe-run/launcher"
	"github.com/safe-run/safe-run/manifest"
)

// Exit codes of safe-run's own failures, as docker run's.
const (
	ExitFailed         = 125 // safe-run itself failed: bad manifest, host cannot enforce, usage
	ExitCannotInvoke   = 126 // the command exists but cannot be run
	ExitCommandMissing = 127 // the command does not exist
)

// Fail prints err as safe-run reports its own failures (each manifest error
// on its own line, FILE:LINE first) and returns the exit status for it.
func Fail(w io.Writer, err error) int {
	if fields := manifest.FieldErrors(err); len(fields) > 0 {
		for _, f := range fields {
			fmt.Fprintln(w, printable.Lines(f.Error()))
		}
	} else {
		fmt.Fprintf(w, "safe-run: %s\n", printable.Lines(err.Error()))
	}
	return ExitCode(err)
}

// ExitCode is the exit status for an error of a run.
func ExitCode(err error) int {
	switch {
	case errors.Is(err, launcher.ErrCommandNotFound):
		return ExitCommandMissing
	case errors.Is(err, launcher.ErrCommandNotExecutable):
		return ExitCannotInvoke
	}
	return ExitFailed
}

// HelperPath finds a binary safe-run ships (safe-run, safe-run-tools,
// safe-run-init, safe-run-janitor) beside the running one, or in the lib
// directory of a packaged install.
func HelperPath(name string) string {
	exe, err := os.Executable()
	if err != nil {
		return name
	}
	dir := filepath.Dir(exe)
	for _, p := range []string{
		filepath.Join(dir, name),
		filepath.Join(dir, "..", "lib", "safe-run", name),
	} {
		if _, err := os.Stat(p); err == nil {
			return filepath.Clean(p)
		}
	}
	return filepath.Join(dir, name)
}

// Logger is safe-run's logger: text on w, warnings and errors only (what
// went wrong without failing the command: a clean-up, a cache write), or
// everything with debug.
func Logger(w io.Writer, debug bool) *slog.Logger {
	level := slog.LevelWarn
	if debug {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// RunOptions are the launcher's options for a run in the foreground on
// stdio: the start report (unless quiet), seccomp denials and the line
// saying why the service ended go to stderr, with the log.
func RunOptions(stdio launcher.Stdio, quiet bool, log *slog.Logger) launcher.Options {
	o := launcher.Options{Stdio: stdio, Violations: stdio.Err, Ending: stdio.Err, Logger: log}
	if !quiet {
		o.Report = stdio.Err
	}
	return o
}
