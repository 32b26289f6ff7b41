//go:build !linux

package guest

import "errors"

func mkfifo(p string) error { return errors.ErrUnsupported }
