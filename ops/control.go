package ops

import (
	"errors"
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
}

// Control operations.
const (
	OpStop = "stop"
	OpKill = "kill"
)

// reply is the supervisor's answer, one JSON line; for a stop, the
// connection then stays open until the supervisor exits, so that the
// client can wait for the service to be gone, and cleaned up after.
type reply struct {
	Error  string `json:"error,omitempty"`
	Denied bool   `json:"denied,omitempty"` // the error is ErrNotPermitted
}

// ErrNotPermitted: the caller is neither root nor who started the service.
var ErrNotPermitted = errors.New("not permitted")
