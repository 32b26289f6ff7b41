package guest

import (
	"errors"
	"fmt"
)

// ErrUnavailable matches (with errors.Is) every error that means this host
// lacks a piece the guest needs, as opposed to the guest or its script
// failing. Tests branch on it to skip with the error as the reason, or to
// fail when SAFE_RUN_REQUIRE_PRIV=1.
var ErrUnavailable = errors.New("guest unavailable on this host")

// MissingError names a missing host piece and the command that installs it.
type MissingError struct {
	What string // the missing program, file or package
	Why  string // what the guest needs it for
	Fix  string // a command that provides it
	Err  error  // the underlying lookup error, if any
}

func (e *MissingError) Error() string {
	msg := fmt.Sprintf("%s is missing (needed %s)", e.What, e.Why)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg + "; fix: " + e.Fix
}

func (e *MissingError) Unwrap() error { return e.Err }

func (e *MissingError) Is(target error) bool { return target == ErrUnavailable }
