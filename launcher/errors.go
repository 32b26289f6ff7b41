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
	// ErrNoSubIDs: the host has no user namespace range for services.
	ErrNoSubIDs = errors.New("no subordinate ids for services")
	// ErrHostCannotEnforce: the host lacks what the manifest requires
	// (cgroup controllers, AppArmor) and [insecure] does not waive it.
	ErrHostCannotEnforce = errors.New("host cannot enforce the manifest")
)
