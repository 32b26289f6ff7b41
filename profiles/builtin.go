package profiles

import (
	"maps"
	"slices"

	"github.com/opencontainers/runtime-spec/specs-go"
)

// errnoEPERM and errnoENOSYS as amd64 and arm64 number them
// (<asm-generic/errno-base.h>, <asm-generic/errno.h>).
const (
	errnoEPERM  = 1
	errnoENOSYS = 38
)

// builtin is a profile written in Go: a table of rules, resolved against
// the process's capabilities and architecture when the spec is built.
type builtin struct {
	// compat also covers the target's 32-bit ABIs (i386 on amd64, arm on
	// arm64), as Docker's default profile does. Without it a 32-bit
	// system call gets libseccomp's bad-architecture action, which kills
	// the thread: runc gives no way to choose another.
	//
	// Docker's profile covers x32 too; safe-run's does not, so an x32
	// call is killed. The x32 ABI is not built into the kernels of most
	// distributions, or is off unless booted with syscall.x32=y (Debian),
	// and x32 programs are all but extinct, while its section of the
	// filter cost runc init about 18 ms of CPU on every start, half of
	// its time in seccomp: libseccomp takes time that grows faster than
	// the program's length to generate it (BenchmarkInitSeccomp).
	compat bool
	rules  []rule
}

// rule is one line of a built-in profile. The zero action allows the calls.
type rule struct {
	names  []string
	action specs.LinuxSeccompAction
	errno  uint                    // returned with SCMP_ACT_ERRNO
	args   []specs.LinuxSeccompArg // all must hold; runc splits rules that test one argument twice

	ifCaps     []string // only if the process holds all of these
	unlessCaps []string // only if it holds none of these
	arches     []string // only on these GOARCH values
}

// allow is a rule that allows names unconditionally.
func allow(names ...string) rule { return rule{names: names} }

// applies reports whether r is part of the profile for t and caps.
func (r rule) applies(t target, caps []string) bool {
	if len(r.arches) > 0 && !slices.Contains(r.arches, t.goarch) {
		return false
	}
	for _, c := range r.ifCaps {
		if !slices.Contains(caps, c) {
			return false
		}
	}
	for _, c := range r.unlessCaps {
		if slices.Contains(caps, c) {
			return false
		}
	}
	return true
}

func (r rule) allowsAll() bool {
	return (r.action == "" || r.action == specs.ActAllow) && len(r.args) == 0
}

// resolve returns the OCI form of b for t and caps. All unconditionally
// allowed calls become one sorted rule, which keeps the golden files
// reviewable; the other rules follow in table order, with the rules that
// allow one call for single values of an argument merged into fewer
// (mergeValueTests). Names the filter's
// architectures do not have are dropped, as runc would ignore them.
func (b builtin) resolve(t target, caps []string) *specs.LinuxSeccomp {
	arches := t.arches(b.compat)
	known := syscallSet(arches...)

	allowed := map[string]bool{}
	for _, r := range b.rules {
		if r.allowsAll() && r.applies(t, caps) {
			for _, n := range r.names {
				if known[n] {
					allowed[n] = true
				}
			}
		}
	}

	eperm := uint(errnoEPERM)
	s := &specs.LinuxSeccomp{
		DefaultAction:   specs.ActErrno,
		DefaultErrnoRet: &eperm,
		Architectures:   arches,
		Syscalls: []specs.LinuxSyscall{{
			Names:  slices.Sorted(maps.Keys(allowed)),
			Action: specs.ActAllow,
		}},
	}
	for _, r := range b.rules {
		if r.allowsAll() || !r.applies(t, caps) {
			continue
		}
		action := r.action
		if action == "" {
			action = specs.ActAllow
		}
		var names []string
		for _, n := range r.names {
			// A conditional allow adds nothing to a call that is
			// allowed outright.
			if known[n] && !(action == specs.ActAllow && allowed[n]) {
				names = append(names, n)
			}
		}
		if len(names) == 0 {
			continue
		}
		sc := specs.LinuxSyscall{Names: names, Action: action, Args: slices.Clone(r.args)}
		if action == specs.ActErrno {
			errno := r.errno
			sc.ErrnoRet = &errno
		}
		s.Syscalls = append(s.Syscalls, sc)
	}
	s.Syscalls = mergeValueTests(s.Syscalls)
	return s
}

// argEq, argLt and argMasked build the argument tests the tables use.
func argEq(index uint, value uint64) specs.LinuxSeccompArg {
	return specs.LinuxSeccompArg{Index: index, Value: value, Op: specs.OpEqualTo}
}

func argLt(index uint, value uint64) specs.LinuxSeccompArg {
	return specs.LinuxSeccompArg{Index: index, Value: value, Op: specs.OpLessThan}
}

// argMasked holds when arg&mask == value.
func argMasked(index uint, mask, value uint64) specs.LinuxSeccompArg {
	return specs.LinuxSeccompArg{Index: index, Value: mask, ValueTwo: value, Op: specs.OpMaskedEqual}
}
