package launcher

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/apparmor"
)

// Job is one run as `safe-run run` hands it, as JSON, to
// safe-run-supervisor, which runs it: the spec, the host facts, and the
// options that can travel between processes.
type Job struct {
	Spec                 *specs.Spec
	Host                 Host
	Name                 string
	StateRoot, DataDir   string
	JanitorPath          string
	StopSignal           int
	StopTimeout          time.Duration
	AllowSensitiveMounts bool
	AppArmor             *apparmor.Profile
	Notes                []string
	Quiet                bool // no start report
}

// Options are the options of Run for the job, with the given stdio; the
// start report and seccomp denials go to stderr.
func (j *Job) Options(stdio Stdio) Options {
	o := Options{
		Name:                 j.Name,
		StateRoot:            j.StateRoot,
		JanitorPath:          j.JanitorPath,
		DataDir:              j.DataDir,
		StopSignal:           unix.Signal(j.StopSignal),
		StopTimeout:          j.StopTimeout,
		AllowSensitiveMounts: j.AllowSensitiveMounts,
		AppArmor:             j.AppArmor,
		Stdio:                stdio,
		Notes:                j.Notes,
		Violations:           stdio.Err,
	}
	if !j.Quiet {
		o.Report = stdio.Err
	}
	return o
}

// Exit codes of safe-run's own failures, as docker run's.
const (
	ExitFailed         = 125 // safe-run itself failed: bad manifest, host cannot enforce, usage
	ExitCannotInvoke   = 126 // the command exists but cannot be run
	ExitCommandMissing = 127 // the command does not exist
)

// ExitCode is the exit status for an error of Run's.
func ExitCode(err error) int {
	switch {
	case errors.Is(err, ErrCommandNotFound):
		return ExitCommandMissing
	case errors.Is(err, ErrCommandNotExecutable):
		return ExitCannotInvoke
	}
	return ExitFailed
}

// Supervise replaces this process with safe-run-supervisor at path, which
// runs job. The job travels in a memfd the supervisor inherits; the
// process keeps its pid, so a systemd unit's main process stays the same,
// and its stdio.
func Supervise(job *Job, path string) error {
	data, err := json.Marshal(job)
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
	argv := []string{"safe-run-supervisor", "--job-fd", strconv.Itoa(fd)}
	err = syscall.Exec(path, argv, os.Environ())
	return fmt.Errorf("starting the supervisor %s: %w (install safe-run-supervisor beside safe-run)", path, err)
}

// ReadJob reads the job safe-run-supervisor was handed: its arguments are
// --job-fd N.
func ReadJob(args []string) (*Job, error) {
	if len(args) != 2 || args[0] != "--job-fd" {
		return nil, errors.New("usage: safe-run-supervisor --job-fd N (safe-run run starts it; run safe-run instead)")
	}
	fd, err := strconv.Atoi(args[1])
	if err != nil {
		return nil, fmt.Errorf("--job-fd %q: %w", args[1], err)
	}
	f := os.NewFile(uintptr(fd), "safe-run-job")
	defer f.Close()
	var job Job
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("reading the job: %w", err)
	}
	if err := json.NewDecoder(f).Decode(&job); err != nil {
		return nil, fmt.Errorf("reading the job: %w", err)
	}
	if job.Spec == nil || job.Name == "" {
		return nil, errors.New("reading the job: it names no spec or service")
	}
	return &job, nil
}
