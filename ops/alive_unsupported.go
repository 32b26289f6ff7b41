//go:build !linux

package ops

import "errors"

// ProcessStart is when process pid started; unknown here.
func ProcessStart(pid int) (uint64, error) { return 0, errors.ErrUnsupported }

func alive(pid int, start uint64) bool { return false }
