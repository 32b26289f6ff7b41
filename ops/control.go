package ops

import (
	"errors"
	"fmt"
	"time"
)

// ControlVersion is the version of the control socket's requests.
const ControlVersion = 1

// Request is one request on a service's control socket: one JSON line.
type Request struct {
	Version int    `json:"version"`
	Op      string `json:"op"` // "stop" | "kill"
	// Timeout overrides the manifest's stop_timeout for a stop; zero
	// keeps it.
	Timeout time.Duration `json:"timeout,omitempty"`
	Signal  int           `json:"signal,omitempty"` // kill: the signal to send the service
	// UID is who asked, from the socket's peer credentials: filled in
	// by the server, never trusted from the request.
	UID int `json:"-"`
	// Exec is what to run for an exec.
	Exec *ExecRequest `json:"exec,omitempty"`
	// Session is an exec's line back to its caller, with the files the
	// caller passed: filled in by the server for an exec, whose
	// handler then owns it (answers, and closes it).
	Session *ExecSession `json:"-"`
}

// ExecRequest is a command to run in a running service, as `safe-run
// exec` asks for it.
type ExecRequest struct {
	Args []string `json:"args"`
	User string   `json:"user,omitempty"` // NAME or UID[:GID] in the container; "": the service's
	Cwd  string   `json:"cwd,omitempty"`  // in the container; "": the service's
	Env  []string `json:"env,omitempty"`  // K=V, over the service's
	// TTY: a new pseudo-terminal of the container's, whose master the
	// supervisor hands back; else the request carries the three
	// container ends of pipes (SCM_RIGHTS) for stdin, stdout, stderr.
	TTY  bool   `json:"tty,omitempty"`
	Rows uint16 `json:"rows,omitempty"` // the terminal's size
	Cols uint16 `json:"cols,omitempty"`
}

// Control operations.
const (
	OpStop = "stop"
	OpKill = "kill"
	OpExec = "exec"
)

// reply is the supervisor's answer, one JSON line; for a stop, the
// connection then stays open until the supervisor exits, so that the
// client can wait for the service to be gone, and cleaned up after.
type reply struct {
	Error  string `json:"error,omitempty"`
	Denied bool   `json:"denied,omitempty"` // the error is ErrNotPermitted
	// An exec's answers: first its pid once it runs (with the
	// terminal's master, for a TTY), then its exit code.
	PID  int  `json:"pid,omitempty"`
	Code *int `json:"code,omitempty"`
}

// ErrNotPermitted: the caller is neither root nor who started the service.
var ErrNotPermitted = errors.New("not permitted")

// MaxSocketPath is the longest path a unix socket may have: sun_path is
// 108 bytes, its NUL included (unix(7)).
const MaxSocketPath = 107

// CheckSocketPath refuses a unix socket's path the kernel would refuse
// with a bare EINVAL, saying how to make it shorter. Where the state
// directory is chosen (plan), calling it on the longest socket under it
// refuses the start up front.
func CheckSocketPath(path string) error {
	if len(path) <= MaxSocketPath {
		return nil
	}
	return fmt.Errorf("%s: %w: %d bytes, more than the %d a unix socket's path may have (use a shorter state directory, SAFE_RUN_STATE_DIR, or XDG_RUNTIME_DIR rootless; or a shorter service name)", path, ErrSocketPath, len(path), MaxSocketPath)
}

// ErrSocketPath: a unix socket's path too long for the kernel.
var ErrSocketPath = errors.New("a socket path too long")
