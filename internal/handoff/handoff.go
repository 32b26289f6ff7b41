package launcher

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/apparmor"
	"github.com/safe-run/safe-run/manifest"
)

// Job is one run as safe-run-tools hands it, as JSON, to safe-run, which
// runs it: the spec, the host facts, and the options that can travel
// between processes.
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
		Ending:               stdio.Err,
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

// Fail prints err as safe-run reports its own failures (each manifest error
// on its own line, FILE:LINE first) and returns the exit status for it.
func Fail(w io.Writer, err error) int {
	if fields := manifest.FieldErrors(err); len(fields) > 0 {
		for _, f := range fields {
			fmt.Fprintln(w, f)
		}
	} else {
		fmt.Fprintf(w, "safe-run: %v\n", err)
	}
	return ExitCode(err)
}

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

// Supervise replaces this process with the safe-run binary at path, which
// runs job (ReadJob). The job travels in a memfd it inherits; the process
// keeps its pid, so a systemd unit's main process stays the same, and its
// stdio.
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
	argv := []string{"safe-run", SuperviseCommand, "--job-fd", strconv.Itoa(fd)}
	err = syscall.Exec(path, argv, os.Environ())
	return fmt.Errorf("handing the service to %s: %w (install safe-run beside safe-run-tools)", path, err)
}

// SuperviseCommand is the first argument of safe-run when it is handed a
// job: safe-run supervise --job-fd N.
const SuperviseCommand = "supervise"

// JobFD is the descriptor of the job safe-run was handed, when its
// arguments are those of Supervise.
func JobFD(args []string) (fd int, ok bool) {
	if len(args) != 3 || args[0] != SuperviseCommand || args[1] != "--job-fd" {
		return 0, false
	}
	fd, err := strconv.Atoi(args[2])
	return fd, err == nil && fd > 2
}

// ReadJob reads the job safe-run was handed in the memfd fd.
func ReadJob(fd int) (*Job, error) {
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
