package profiles

import (
	"fmt"
	"slices"

	"github.com/opencontainers/runtime-spec/specs-go"
)

// Rootless, the kernel's seccomp log is out of reach: reading it needs
// CAP_AUDIT_READ or CAP_SYSLOG in the host's user namespace. So the
// filter hands the calls it denies to safe-run as user notifications
// instead, and safe-run answers each as the filter would have, with its
// default errno, and reports it. libcontainer refuses SCMP_ACT_NOTIFY as
// the default action, so the calls are listed: every call of the filter's
// architectures that no rule names. Denials that depend on arguments
// (socket(AF_ALG), clone with CLONE_NEWUSER) are not reported rootless.
//
// The list costs runc init time on every start, as any rules do: about
// 8 ms of CPU for the default profile and 14 ms for a narrow recorded one
// on the test host (BenchmarkInitSeccomp). It buys the one report that
// explains why a service breaks under a profile recorded too narrowly.

// NotifyDenials returns a copy of s in which the calls its default action
// denies are SCMP_ACT_NOTIFY rules for the agent at listener, the socket
// libcontainer hands the notification descriptor to. WatchViolations,
// listening there, answers each with the errno the filter's default
// action returns, so the service sees what it would have seen, and
// reports it.
//
// When s cannot take the notifications it returns s unchanged and says
// why: an agent cannot kill or trap as a default action other than
// SCMP_ACT_ERRNO would, a profile may have an agent of its own, and runc
// init, which hands the descriptor over after loading the filter, must be
// allowed the calls that takes (handoffCalls).
func NotifyDenials(s *specs.LinuxSeccomp, listener string) (out *specs.LinuxSeccomp, why string) {
	switch {
	case s == nil:
		return s, ""
	case s.DefaultAction != specs.ActErrno:
		return s, fmt.Sprintf("its default action is %s, not SCMP_ACT_ERRNO", s.DefaultAction)
	case s.ListenerPath != "":
		return s, "it has a seccomp agent of its own"
	}
	if missing := notAllowed(s, handoffCalls); len(missing) > 0 {
		return s, fmt.Sprintf("it does not allow %s, which runc needs to hand notifications over", wordList(missing))
	}
	names := notifiable(s)
	if len(names) == 0 {
		return s, ""
	}
	out = clone(s)
	out.ListenerPath = listener
	out.Syscalls = append(out.Syscalls, specs.LinuxSyscall{Names: names, Action: specs.ActNotify})
	return out, ""
}

// DropNotifyDenials undoes NotifyDenials: s as it was before it got the
// notifications for the agent at listener, or s itself when it has no
// such agent (a profile with an agent of its own keeps it). The
// notifications serve one run on this host (a rootless run's denials);
// an export for another machine must not name this host's socket, which
// the engine there would fail to connect to.
func DropNotifyDenials(s *specs.LinuxSeccomp, listener string) *specs.LinuxSeccomp {
	if s == nil || listener == "" || s.ListenerPath != listener || len(s.Syscalls) == 0 || s.Syscalls[len(s.Syscalls)-1].Action != specs.ActNotify {
		return s
	}
	out := clone(s)
	out.ListenerPath = ""
	out.Syscalls = out.Syscalls[:len(out.Syscalls)-1]
	return out
}

// handoffCalls are what runc init calls between loading a filter that
// notifies and handing the notification descriptor to its parent, and
// waiting for it to be taken (syncParentSeccomp in runc v1.5.2), besides
// the Go runtime's calls (runtimeCalls): they must not be denied, or runc
// init fails; write must not notify either, or it waits for an agent that
// has no descriptor yet.
var handoffCalls = []string{"close", "read", "recvfrom", "write"}

// notAllowed returns the calls of names that s does not allow outright.
func notAllowed(s *specs.LinuxSeccomp, names []string) []string {
	allowed := map[string]bool{}
	for _, sc := range s.Syscalls {
		if sc.Action == specs.ActAllow && len(sc.Args) == 0 {
			for _, n := range sc.Names {
				allowed[n] = true
			}
		}
	}
	var out []string
	for _, n := range names {
		if !allowed[n] {
			out = append(out, n)
		}
	}
	return out
}

// notifiable returns the calls of s's architectures that s names in no
// rule: the ones its default action decides.
func notifiable(s *specs.LinuxSeccomp) []string {
	named := map[string]bool{}
	for _, sc := range s.Syscalls {
		for _, n := range sc.Names {
			named[n] = true
		}
	}
	var out []string
	for n := range syscallSet(s.Architectures...) {
		if !named[n] {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// clone copies s deeply enough that changing the copy's rules leaves s
// as it was.
func clone(s *specs.LinuxSeccomp) *specs.LinuxSeccomp {
	out := *s
	out.Architectures = slices.Clone(s.Architectures)
	out.Flags = slices.Clone(s.Flags)
	out.Syscalls = make([]specs.LinuxSyscall, len(s.Syscalls))
	for i, sc := range s.Syscalls {
		sc.Names = slices.Clone(sc.Names)
		sc.Args = slices.Clone(sc.Args)
		out.Syscalls[i] = sc
	}
	return &out
}

// defaultErrno is the errno s returns for a call no rule allows; EPERM
// for no filter (a watch of Landlock's or AppArmor's denials alone).
func defaultErrno(s *specs.LinuxSeccomp) uint {
	if s != nil && s.DefaultErrnoRet != nil {
		return *s.DefaultErrnoRet
	}
	return errnoEPERM
}
