//go:build !linux

package profiles

import (
	"errors"
	"io"
)

// WatchViolations needs Linux.
func WatchViolations(t Target, w io.Writer) (stop func(), err error) {
	return nil, errors.ErrUnsupported
}

// Watch needs Linux.
func (r *Recording) Watch(t Target, w io.Writer) (stop func(), err error) {
	return nil, errors.ErrUnsupported
}

// AuditEnabled needs Linux.
func AuditEnabled() (bool, error) { return false, errors.ErrUnsupported }
