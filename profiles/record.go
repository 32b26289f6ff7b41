package profiles

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/opencontainers/runtime-spec/specs-go"
)

// Recording a profile: the service runs under a variant of its own
// profile (the base) that still denies what the base denies, but reports
// every call the base allows, and the recorded profile is the base cut
// down to the calls that were reported. It can only be as wide as the
// base: recording under "default" gives a subset of Docker's profile.
//
// As root the variant turns the base's SCMP_ACT_ALLOW rules into
// SCMP_ACT_LOG, which allows and logs, and the kernel's audit records say
// which calls were made. Rootless, where those records are out of reach,
// they become SCMP_ACT_NOTIFY, and safe-run, as the seccomp agent, lets
// each call continue (SECCOMP_USER_NOTIF_FLAG_CONTINUE) and notes it.
// Either way a call is reported each time it is made, so a service runs
// slower while it is recorded, not once its profile is enforced.

// runtimeCalls are allowed without being reported, and are part of every
// recorded profile. runc init is a Go program: between loading the filter
// and executing the service, the Go runtime may make these calls on its
// thread or not, depending on timing (waiting on a futex, growing the
// heap, being preempted by a signal, starting a thread), so one recording
// may not see them and the next start would fail without them. Rootless,
// they must not wait for a notification either, since the agent receives
// the notification descriptor only after runc init has written it to its
// parent, which is also why write is here: libcontainer refuses
// SCMP_ACT_NOTIFY on write. What runc init does for certain after loading
// the filter (closing its pipes, reopening the exec fifo, closing
// descriptors, changing user without no_new_privileges, execve) is
// recorded like the service's own calls. handoffCalls are here too, so
// that a profile recorded as root runs rootless with seccomp_log, where
// runc hands the notification descriptor over.
var runtimeCalls = []string{
	"clone", "close", "exit", "exit_group", "futex", "getpid", "gettid",
	"madvise", "mmap", "munmap", "nanosleep", "read", "recvfrom",
	"rt_sigprocmask", "rt_sigreturn", "sched_yield", "sigaltstack",
	"tgkill", "write",
}

// runcInitCalls are what runc init calls after libcontainer has loaded
// the filter itself, which it does rootless (where the filter notifies:
// the descriptor goes through runc) and with init = false and no
// Landlock: closing its pipes, reopening the exec fifo through a checked
// /proc handle, closing descriptors, execve; without no_new_privileges,
// changing user (see strict.go). A recording as root never sees them,
// as safe-run-init loads the filter there after runc init is gone, so a
// profile recorded as root failed rootless ("seccomp denied fstatfs ...
// runc:[2:INIT]"). They are part of every recorded profile.
var runcInitCalls = []string{
	"capget", "capset", "chdir", "close", "close_range", "execve", "fcntl",
	"fstat", "fstatfs", "getcwd", "getdents64", "newfstatat", "openat",
	"openat2", "prctl", "setgid", "setgroups", "setuid", "statx", "write",
}

// RecordOptions say how a recording gets its reports.
type RecordOptions struct {
	Arch string // GOARCH, as for Options
	// Listener is the socket where libcontainer hands over the
	// notification descriptor: set, the recording uses notifications
	// (rootless); empty, the kernel's audit records (root).
	Listener string
}

// Recording is one recording of a service's system calls: the profile
// the service runs under while it is recorded (Spec), what was seen, and
// the recorded profile (Profile).
type Recording struct {
	arch     target
	base     *specs.LinuxSeccomp // the service's own profile, resolved; never nil
	spec     *specs.LinuxSeccomp
	notify   bool
	reported map[string]bool // calls the variant reports and lets through

	mu   sync.Mutex
	used map[string]bool
	lost error // why the reports may be incomplete
}

// NewRecording prepares a recording under base, the service's resolved
// profile (nil for unconfined, which records every call).
func NewRecording(base *specs.LinuxSeccomp, opts RecordOptions) (*Recording, error) {
	t, err := lookupTarget(opts.Arch)
	if err != nil {
		return nil, err
	}
	if base == nil {
		// Unconfined: every call is allowed, except that clone3 keeps
		// returning ENOSYS, as in every recorded profile (see Profile).
		eperm := uint(errnoEPERM)
		base = &specs.LinuxSeccomp{
			DefaultAction:   specs.ActAllow,
			DefaultErrnoRet: &eperm,
			Architectures:   t.arches(true),
			Syscalls:        []specs.LinuxSyscall{clone3ENOSYS()},
		}
	}
	if base.ListenerPath != "" {
		return nil, errors.New("recording: the profile has its own seccomp agent (listenerPath), and a recording needs to be the agent itself: record with another profile")
	}
	r := &Recording{arch: t, base: clone(base), notify: opts.Listener != "", reported: map[string]bool{}, used: map[string]bool{}}
	r.spec = r.variant(opts.Listener)
	if r.notify {
		if missing := notAllowed(r.spec, handoffCalls); len(missing) > 0 {
			return nil, fmt.Errorf("recording without root: the profile does not allow %s, which runc needs to hand the notifications over (allow them, or record as root)", wordList(missing))
		}
	}
	return r, nil
}

// clone3ENOSYS is the rule every built-in profile has: clone3 passes its
// flags in memory, where seccomp cannot check them for namespaces, so it
// returns ENOSYS and glibc falls back to clone, which the filter checks.
func clone3ENOSYS() specs.LinuxSyscall {
	enosys := uint(errnoENOSYS)
	return specs.LinuxSyscall{Names: []string{"clone3"}, Action: specs.ActErrno, ErrnoRet: &enosys}
}

// withoutClone3 returns rules without clone3, which recordings give its
// own rule, and without the rules left empty.
func withoutClone3(rules []specs.LinuxSyscall) []specs.LinuxSyscall {
	var out []specs.LinuxSyscall
	for _, sc := range rules {
		sc.Names = slices.DeleteFunc(slices.Clone(sc.Names), func(n string) bool { return n == "clone3" })
		if len(sc.Names) > 0 {
			out = append(out, sc)
		}
	}
	return out
}

// allows reports whether an action lets the call happen.
func allows(a specs.LinuxSeccompAction) bool {
	return a == specs.ActAllow || a == specs.ActLog
}

// variant builds the profile the service is recorded under.
func (r *Recording) variant(listener string) *specs.LinuxSeccomp {
	s := clone(r.base)
	s.Flags = slices.DeleteFunc(s.Flags, func(f specs.LinuxSeccompFlag) bool { return f == specs.LinuxSeccompFlagLog })
	s.Flags = append(s.Flags, specs.LinuxSeccompFlagLog) // denials show as they would when enforced
	report := specs.ActLog
	if r.notify {
		report = specs.ActNotify
		s.ListenerPath = listener
	}

	named := map[string]bool{"clone3": true}
	var rules []specs.LinuxSyscall
	for _, sc := range withoutClone3(s.Syscalls) {
		for _, n := range sc.Names {
			named[n] = true
		}
		if !allows(sc.Action) {
			rules = append(rules, sc)
			continue
		}
		// The runtime's calls keep their rule; the others are
		// reported, with the same argument tests.
		keep, watch := sc, sc
		keep.Names, watch.Names = nil, nil
		for _, n := range sc.Names {
			if slices.Contains(runtimeCalls, n) {
				keep.Names = append(keep.Names, n)
			} else {
				watch.Names = append(watch.Names, n)
				r.reported[n] = true
			}
		}
		if len(keep.Names) > 0 {
			rules = append(rules, keep)
		}
		if len(watch.Names) > 0 {
			watch.Action = report
			rules = append(rules, watch)
		}
	}
	if allows(s.DefaultAction) {
		// A profile that allows what it does not name: the runtime's
		// calls are allowed outright, and the rest reported, by the
		// default action as root, one rule each rootless (notification
		// cannot be the default action).
		var unnamed, runtime []string
		for _, n := range slices.Sorted(maps.Keys(syscallSet(s.Architectures...))) {
			switch {
			case named[n]:
			case slices.Contains(runtimeCalls, n):
				runtime = append(runtime, n)
			default:
				unnamed = append(unnamed, n)
				r.reported[n] = true
			}
		}
		rules = append(rules, specs.LinuxSyscall{Names: runtime, Action: specs.ActAllow})
		if r.notify {
			rules = append(rules, specs.LinuxSyscall{Names: unnamed, Action: specs.ActNotify})
		} else {
			s.DefaultAction, s.DefaultErrnoRet = specs.ActLog, nil
		}
	}
	if syscallSet(s.Architectures...)["clone3"] {
		rules = append(rules, clone3ENOSYS())
	}
	s.Syscalls = rules
	if r.notify {
		// Denials are reported too, as they are when the service runs
		// rootless with seccomp_log (NotifyDenials).
		if s.DefaultAction == specs.ActErrno {
			if names := notifiable(s); len(names) > 0 {
				s.Syscalls = append(s.Syscalls, specs.LinuxSyscall{Names: names, Action: specs.ActNotify})
			}
		}
	}
	return s
}

// Spec is the profile the service runs under while it is recorded.
func (r *Recording) Spec() *specs.LinuxSeccomp { return r.spec }

// saw notes that the service made call name; it reports whether the call
// is one the base allows, which the agent then lets continue.
func (r *Recording) saw(name string) bool {
	if !r.reported[name] {
		return false
	}
	r.mu.Lock()
	r.used[name] = true
	r.mu.Unlock()
	return true
}

// incomplete notes that reports may have been lost.
func (r *Recording) incomplete(err error) {
	r.mu.Lock()
	if r.lost == nil {
		r.lost = err
	}
	r.mu.Unlock()
}

// Used returns the calls the service was seen to make, sorted.
func (r *Recording) Used() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Sorted(maps.Keys(r.used))
}

// Profile returns the recorded profile: the base's rules for the calls
// the service made and for runtimeCalls, every rule of the base that
// denies, and nothing else. Calls the base allows outright come first, in
// one sorted rule. clone3 returns ENOSYS whatever the base says, so that
// glibc falls back to clone as it will when the profile is enforced. The
// profile has no flags: seccomp_log in the manifest adds the log flag.
func (r *Recording) Profile() (*specs.LinuxSeccomp, error) {
	r.mu.Lock()
	lost := r.lost
	used := maps.Clone(r.used)
	r.mu.Unlock()
	if lost != nil {
		return nil, fmt.Errorf("the recording is incomplete, so the profile could deny what the service needs: %w", lost)
	}
	for _, n := range runtimeCalls {
		used[n] = true
	}
	// safe-run-init's calls, such as kill for a stop, which a recording
	// that ended by itself never saw (initcalls.go).
	for _, n := range InitCalls(r.arch.goarch) {
		used[n] = true
	}
	for _, n := range runcInitCalls {
		used[n] = true
	}
	delete(used, "clone3")

	b := r.base
	eperm := uint(errnoEPERM)
	out := &specs.LinuxSeccomp{
		DefaultAction:   b.DefaultAction,
		DefaultErrnoRet: b.DefaultErrnoRet,
		Architectures:   slices.Clone(b.Architectures),
	}
	if allows(b.DefaultAction) {
		out.DefaultAction, out.DefaultErrnoRet = specs.ActErrno, &eperm
	}
	known := syscallSet(b.Architectures...)
	outright := map[string]bool{}
	var rest []specs.LinuxSyscall
	named := map[string]bool{}
	for _, sc := range withoutClone3(b.Syscalls) {
		for _, n := range sc.Names {
			named[n] = true
		}
		if !allows(sc.Action) {
			rest = append(rest, sc)
			continue
		}
		keep := sc
		keep.Names = nil
		for _, n := range sc.Names {
			if used[n] {
				keep.Names = append(keep.Names, n)
			}
		}
		switch {
		case len(keep.Names) == 0:
		case keep.Action == specs.ActAllow && len(keep.Args) == 0:
			for _, n := range keep.Names {
				outright[n] = true
			}
		default:
			rest = append(rest, keep)
		}
	}
	if allows(b.DefaultAction) {
		for n := range used {
			if !named[n] && known[n] {
				outright[n] = true
			}
		}
	}
	// A conditional allow adds nothing to a call allowed outright.
	for i := range rest {
		if rest[i].Action == specs.ActAllow {
			rest[i].Names = slices.DeleteFunc(rest[i].Names, func(n string) bool { return outright[n] })
		}
	}
	rest = slices.DeleteFunc(rest, func(sc specs.LinuxSyscall) bool { return len(sc.Names) == 0 })
	out.Syscalls = append([]specs.LinuxSyscall{{Names: slices.Sorted(maps.Keys(outright)), Action: specs.ActAllow}}, rest...)
	if known["clone3"] {
		out.Syscalls = append(out.Syscalls, clone3ENOSYS())
	}
	return out, nil
}
