package launcher

import "errors"

// Conditions callers branch on; cmd/safe-run maps them to exit codes.
var (
	// ErrAlreadyRunning: another safe-run holds the service's name.
	ErrAlreadyRunning = errors.New("already running")
	// ErrCommandNotFound: the command does not exist in the container (127).
	ErrCommandNotFound = errors.New("command not found")
	// ErrCommandNotExecutable: the command exists but cannot be run (126).
	ErrCommandNotExecutable = errors.New("command cannot be executed")
)
