// Command safe-run-init is the minimal init that safe-run runs as PID 1 of a
// container when the manifest says init = true (the default).
//
// A service started as PID 1 gets no default signal handling from the
// kernel: a shell script ignores SIGTERM and is only ever stopped by
// SIGKILL, and nobody reaps the zombies of its orphaned children. This init
// starts the service as its only child, forwards every signal it receives to
// it, reaps every zombie, and exits with the service's status (128+N when the
// service was killed by signal N).
//
// It is built static (CGO_ENABLED=0), mounted read-only into the container
// (never the safe-run binary itself), and marks itself non-dumpable so the
// service can neither read its memory nor ptrace it.
//
// Usage: safe-run-init -- COMMAND [ARG...]
//
// The same binary is safe-run's janitor (see janitor.go): static and small,
// it is cheap to keep alive beside a service.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) > 0 && args[0] == "janitor" {
		return janitor(args[1:])
	}
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "safe-run-init: usage: safe-run-init -- COMMAND [ARG...]")
		return 125
	}
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		fmt.Fprintf(os.Stderr, "safe-run-init: making itself non-dumpable: %v\n", err)
		return 125
	}
	// Subscribe before starting the child so that no signal sent between
	// the fork and the subscription is lost. SIGCHLD wakes the reaper.
	signals := make(chan os.Signal, 32)
	signal.Notify(signals)

	path, err := exec.LookPath(args[0])
	if err != nil {
		return failed(args[0], err)
	}
	child, err := os.StartProcess(path, args, &os.ProcAttr{
		Env:   os.Environ(),
		Files: []*os.File{os.Stdin, os.Stdout, os.Stderr},
		// The service leads its own process group and takes the terminal,
		// if there is one, so that ^C reaches it as it would outside.
		Sys: &syscall.SysProcAttr{Setpgid: true, Foreground: isTerminal(0), Ctty: 0},
	})
	if err != nil {
		return failed(args[0], err)
	}
	for sig := range signals {
		if sig == unix.SIGURG {
			continue // the Go runtime's own preemption signal
		}
		if sig != unix.SIGCHLD {
			// To the child only: the service decides what its own
			// children get, as it would outside a container.
			_ = child.Signal(sig)
			continue
		}
		if status, done := reap(child.Pid); done {
			return status
		}
	}
	return 0
}

// reap collects every exited child; it reports the service's status once
// the service itself has exited.
func reap(service int) (status int, done bool) {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err != nil || pid <= 0 {
			return 0, false
		}
		if pid != service {
			continue
		}
		if ws.Signaled() {
			return 128 + int(ws.Signal()), true
		}
		return ws.ExitStatus(), true
	}
}

func isTerminal(fd int) bool {
	_, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	return err == nil
}

// failed reports a command that could not be started with docker's codes:
// 127 when it does not exist, 126 when it cannot be executed.
func failed(name string, err error) int {
	fmt.Fprintf(os.Stderr, "safe-run-init: cannot run %s: %v\n", name, err)
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
		return 127
	}
	return 126
}
