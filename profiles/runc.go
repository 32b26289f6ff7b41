package profiles

import (
	"fmt"
	"slices"
	"strings"

	"github.com/opencontainers/runtime-spec/specs-go"
)

// How runc v1.5.2 turns a profile into libseccomp rules
// (libcontainer/seccomp/seccomp_linux.go), as far as checking a profile
// needs to know.

// effectiveAction names what runc makes of an action and errno, so that
// equal ones compare equal: a missing errno is EPERM, and SCMP_ACT_KILL is
// SCMP_ACT_KILL_THREAD.
func effectiveAction(a specs.LinuxSeccompAction, errno *uint) string {
	switch a {
	case specs.ActErrno, specs.ActTrace:
		e := uint(errnoEPERM)
		if errno != nil {
			e = *errno
		}
		return fmt.Sprintf("%s(%d)", a, e)
	case specs.ActKill:
		return string(specs.ActKillThread)
	}
	return string(a)
}

// ruleKeys returns the libseccomp rules runc makes of one call's
// arguments: one rule with all of them, or, if an argument is tested
// twice, one rule per test (runc's matchCall).
func ruleKeys(name string, args []specs.LinuxSeccompArg) []string {
	tests := make([]string, len(args))
	repeated := false
	for i, a := range args {
		tests[i] = fmt.Sprintf("%d %s %#x %#x", a.Index, a.Op, a.Value, a.ValueTwo)
		for _, b := range args[:i] {
			repeated = repeated || a.Index == b.Index
		}
	}
	if repeated {
		keys := make([]string, len(tests))
		for i, test := range tests {
			keys[i] = name + ": " + test
		}
		return keys
	}
	slices.Sort(tests)
	return []string{name + ": " + strings.Join(tests, ", ")}
}
