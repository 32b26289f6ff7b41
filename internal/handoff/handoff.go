// Package handoff hands a planned job from safe-run-tools to safe-run,
// which runs it: safe-run-tools pulls the image and plans the service,
// then replaces itself with safe-run, the job in a memfd it inherits. The
// process keeps its pid (a systemd unit's main process stays the same)
// and its stdio.
package handoff

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/plan"
)

// Command is the first argument of safe-run when it is handed a job:
// safe-run supervise --job-fd N.
const Command = "supervise"

// Handoff is what crosses the exec: the job, versioned
// (plan.JobVersion), and how the command line asked for it to be run.
type Handoff struct {
	Job   *plan.Job
	Quiet bool // no start report
	Debug bool // log everything
}

// Exec replaces this process with the safe-run binary at path, which runs
// h's job (Read).
func Exec(h Handoff, path string) error {
	data, err := json.Marshal(h)
	if err != nil {
		return err
	}
	// Not close-on-exec: the supervisor inherits it.
	fd, err := unix.MemfdCreate("safe-run-job", unix.MFD_ALLOW_SEALING)
	if err != nil {
		return fmt.Errorf("handing the job to the supervisor: %w", err)
	}
	f := os.NewFile(uintptr(fd), "safe-run-job")
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("handing the job to the supervisor: %w", err)
	}
	argv := []string{"safe-run", Command, "--job-fd", strconv.Itoa(fd)}
	err = syscall.Exec(path, argv, os.Environ())
	return fmt.Errorf("handing the service to %s: %w (install safe-run beside safe-run-tools)", path, err)
}

// FD is the descriptor of the job safe-run was handed, when its arguments
// are those of Exec.
func FD(args []string) (fd int, ok bool) {
	if len(args) != 3 || args[0] != Command || args[1] != "--job-fd" {
		return 0, false
	}
	fd, err := strconv.Atoi(args[2])
	return fd, err == nil && fd > 2
}

// Read reads the job safe-run was handed in the memfd fd.
func Read(fd int) (*Handoff, error) {
	f := os.NewFile(uintptr(fd), "safe-run-job")
	defer f.Close()
	var h Handoff
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("reading the job: %w", err)
	}
	if err := json.NewDecoder(f).Decode(&h); err != nil {
		return nil, fmt.Errorf("reading the job: %w", err)
	}
	if h.Job == nil {
		return nil, errors.New("reading the job: there is none")
	}
	if err := h.Job.Check(); err != nil {
		return nil, fmt.Errorf("reading the job: %w", err)
	}
	return &h, nil
}
