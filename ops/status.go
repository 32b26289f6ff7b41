package ops

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/safe-run/safe-run/internal/atomicfile"
	"github.com/safe-run/safe-run/internal/proc"
)

// StatusVersion is the version of Status's JSON, read by a safe-run-tools
// that may be of another release than the supervisor that wrote it.
const StatusVersion = 1

// File names in a service's state directory (plan.Placement.StateDir).
const (
	StatusFile  = "status.json"
	ControlFile = "control.sock"
)

// States of a service, as its status file says.
const (
	StateStarting = "starting"
	StateRunning  = "running"
	StateStopping = "stopping"
)

// Status is what a running supervisor publishes about its service, written
// whole at its start and on each change of state.
type Status struct {
	Version       int    `json:"version"`
	Name          string `json:"name"`
	State         string `json:"state"`
	SupervisorPID int    `json:"supervisor_pid"`
	// SupervisorStart is when the supervisor started (proc.Start):
	// a pid reused by another process is no supervisor.
	SupervisorStart uint64    `json:"supervisor_start"`
	InitPID         int       `json:"init_pid,omitempty"` // the container's first process, as the host sees it
	Started         time.Time `json:"started"`
	Image           string    `json:"image,omitempty"` // the rootfs the service runs
	ImageDigest     string    `json:"image_digest,omitempty"`
	UserNS          string    `json:"userns,omitempty"` // "0-65535 -> 100000-165535"
	Limits          Limits    `json:"limits"`
	Address         string    `json:"address,omitempty"` // on its bridge
	Bridge          string    `json:"bridge,omitempty"`
	Ports           []string  `json:"ports,omitempty"` // HOST_IP:HOST_PORT:CONTAINER_PORT/PROTO
	Manifest        string    `json:"manifest,omitempty"`
	ManifestSHA     string    `json:"manifest_sha256,omitempty"`
	// Unit is the systemd unit the supervisor runs under ("web.service"),
	// when systemd started it (SystemdUnit); "" otherwise.
	Unit string `json:"unit,omitempty"`
	// Cgroups are the service's cgroup directories: by controller on
	// cgroup v1, under "" on v2 (the unified hierarchy).
	Cgroups map[string]string `json:"cgroups,omitempty"`
	// Warnings counts the supervisor's warnings of each condition
	// (Warn*) since the start: what `safe-run metrics` exports.
	Warnings map[string]uint64 `json:"warnings,omitempty"`
	// StateDir is where this file and the control socket are; filled
	// in by Read, not written.
	StateDir string `json:"-"`
	// Dead: the supervisor that wrote this is gone (it was killed, the
	// janitor has not cleaned up yet); filled in by Read.
	Dead bool `json:"-"`
}

// Conditions the supervisor warns of while the service runs: limits that
// warn before they bite. Each warning is an event of kind EventWarning
// and counted in Status.Warnings.
const (
	WarnCPUThrottled = "cpu_throttled" // throttled in more than a quarter of the CFS periods of the last minute
	WarnMemoryHigh   = "memory_high"   // working set above 90% of the memory limit for 30 s
	WarnOOMKill      = "oom_kill"      // a process of it OOM-killed while the service goes on
	WarnPidsLimit    = "pids_limit"    // forks refused at the pids limit
)

// WarnConditions returns the Warn* conditions, in the order metrics list
// them. A function, not a variable: no caller can change the list for the
// others.
func WarnConditions() []string {
	return []string{WarnCPUThrottled, WarnMemoryHigh, WarnOOMKill, WarnPidsLimit}
}

// Limits are the service's cgroup limits; zero is none.
type Limits struct {
	Memory int64   `json:"memory,omitempty"` // bytes
	CPUs   float64 `json:"cpus,omitempty"`
	Pids   int64   `json:"pids,omitempty"`
}

// WriteStatus replaces the status file in dir with s, readable by its
// writer only (and root).
func WriteStatus(dir string, s *Status) error {
	s.Version = StatusVersion
	data, err := json.Marshal(s)
	if err != nil {
		return err
	}
	// Owner-only: it names the service's image, manifest, cgroups and
	// ports, none of another user's business (probe OPS #11).
	return atomicfile.Write(filepath.Join(dir, StatusFile), append(data, '\n'), 0o600)
}

// ReadStatus reads the status file of the service whose state directory
// is dir.
func ReadStatus(dir string) (*Status, error) {
	data, err := os.ReadFile(filepath.Join(dir, StatusFile))
	if err != nil {
		return nil, err
	}
	var s Status
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, StatusFile), err)
	}
	if s.Version != StatusVersion {
		return nil, fmt.Errorf("%s: status of version %d, this safe-run reads version %d (install safe-run and safe-run-tools of one release)", filepath.Join(dir, StatusFile), s.Version, StatusVersion)
	}
	s.StateDir = dir
	s.Dead = !proc.Alive(s.SupervisorPID, s.SupervisorStart)
	return &s, nil
}

// List reads the status of every service under stateRoot (plan.Dirs.State),
// sorted by name; a directory without a status file is no service's.
func List(stateRoot string) ([]*Status, error) {
	matches, err := filepath.Glob(filepath.Join(stateRoot, "*", StatusFile))
	if err != nil {
		return nil, err
	}
	var out []*Status
	var errs []error
	for _, m := range matches {
		s, err := ReadStatus(filepath.Dir(m))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue // the service ended meanwhile
		case err != nil:
			errs = append(errs, err)
			continue
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, errors.Join(errs...)
}

// Find returns the status of the named running services, in the order
// given; a name that runs nowhere is an error naming it.
func Find(stateRoot string, names []string) ([]*Status, error) {
	var out []*Status
	var errs []error
	for _, n := range names {
		if err := CheckName(n); err != nil {
			errs = append(errs, err)
			continue
		}
		s, err := ReadStatus(filepath.Join(stateRoot, n))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			errs = append(errs, fmt.Errorf("%s: %w in %s%s (see safe-run ps)", n, ErrNotRunning, stateRoot, runsElsewhere(n)))
		case errors.Is(err, fs.ErrPermission):
			// Its status file is its user's only.
			errs = append(errs, fmt.Errorf("%s: %w: %w (only who started it, or root, may)", n, ErrNotPermitted, err))
		case err != nil:
			errs = append(errs, err)
		case s.Dead:
			errs = append(errs, fmt.Errorf("%s: %w: %s", n, ErrNotRunning, crashed(s)))
		default:
			out = append(out, s)
		}
	}
	return out, errors.Join(errs...)
}

// crashed says what a service whose supervisor died left, and the fix:
// a start of it cleans up what a run of its name left (the container,
// its cgroups, mounts and state directory), and only a start can, under
// the name's lock; the janitor that would have did not run, or died too.
func crashed(s *Status) string {
	fix := "start it again, which cleans them up first"
	if s.Manifest != "" {
		fix = fmt.Sprintf("start it again (safe-run %s), which cleans them up first", s.Manifest)
	}
	procs := ""
	if n := cgroupProcs(s.Cgroups); n > 0 {
		procs = fmt.Sprintf(" (with %d process(es) of it still running in them)", n)
	}
	return fmt.Sprintf("its supervisor (pid %d) died, and left its container, cgroups%s and state directory %s: %s, then safe-run stop %s if it should not run", s.SupervisorPID, procs, s.StateDir, fix, s.Name)
}

// cgroupProcs counts the processes in the first of cgroups that lists
// them; 0 when none can be read.
func cgroupProcs(cgroups map[string]string) int {
	for _, k := range []string{"", "pids", "memory", "cpu"} {
		dir, ok := cgroups[k]
		if !ok {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if err != nil {
			continue
		}
		return len(strings.Fields(string(data)))
	}
	return 0
}

// runsElsewhere says where a service of that name runs when the state
// root has none: a root run's cgroup is at the top of its hierarchy,
// whatever state directory (SAFE_RUN_STATE_DIR) started it.
func runsElsewhere(name string) string {
	for _, dir := range []string{"/sys/fs/cgroup/pids/safe-run-" + name, "/sys/fs/cgroup/safe-run-" + name} {
		if n := cgroupProcs(map[string]string{"": dir}); n > 0 {
			return fmt.Sprintf(", but its cgroup %s has %d process(es): it runs from another state directory (SAFE_RUN_STATE_DIR) or as another user: run this there", dir, n)
		}
	}
	return ""
}

// ErrNotRunning: no supervisor runs a service of that name.
var ErrNotRunning = errors.New("no such running service")

// ErrBadName: a name no service can have (manifest's name rule).
var ErrBadName = errors.New("not a valid service name")

// CheckName refuses a name no manifest can give a service, before it is
// joined into a path under the state or journal directory: "../../x"
// would otherwise read /x/status.json and dial its socket. The rule is
// manifest's (validate.go: name), restated here since ops links only the
// standard library.
func CheckName(name string) error {
	ok := len(name) > 0 && len(name) <= 63
	for i := 0; ok && i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case i > 0 && (c == '_' || c == '.' || c == '-'):
		default:
			ok = false
		}
	}
	if !ok {
		return fmt.Errorf("%q: %w (a name is 1-63 lowercase letters, digits, '_', '.', '-', starting with a letter or digit, as the manifest's name; see safe-run ps)", name, ErrBadName)
	}
	return nil
}
