package testenv

import (
	"testing"

	"golang.org/x/sys/unix"
)

// RequireLandlock needs a kernel with Landlock at abi or later, and
// returns the kernel's ABI.
func RequireLandlock(t testing.TB, abi int) int {
	t.Helper()
	// landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)
	v, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, 1)
	if errno != 0 {
		Skip(t, "needs Landlock (this kernel: %v)", errno)
	}
	if int(v) < abi {
		Skip(t, "needs Landlock ABI %d (this kernel has %d)", abi, v)
	}
	return int(v)
}
