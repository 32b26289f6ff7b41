package profiles

import (
	"fmt"
	"path/filepath"
	"slices"

	"github.com/opencontainers/runtime-spec/specs-go"
)

// initCalls are the system calls safe-run-init (cmd/safe-run-init) makes
// after it has loaded the service's filter: the init runs under the
// service's profile, since it loads the filter before it forks. Without
// them it cannot tell safe-run it takes signals (fcntl, getpid, write),
// start the service (fork, gettid: musl asks after a fork; setpgid, rt_sigprocmask, execve), forward a
// stop signal (rt_sigtimedwait, kill), reap (wait4), notice safe-run gone
// (read), report why the service did not start (writev: musl's stdio), or
// exit (exit_group, and exit, which musl's _Exit tries forever after a
// refused exit_group: a profile without both left the init spinning in
// the kernel). Where libcontainer loads the filter (rootless, where it
// notifies), the init applies the Landlock ruleset under it too: it opens
// each rule's path (open, openat, fstat, newfstatat) and makes the three
// Landlock calls, which can only narrow what the service may do. A
// custom profile that leaves one out does not confine the service more;
// it breaks the service's start, stop or end, so every custom and every
// recorded profile allows them (InitCalls).
//
// Not here: ptrace (the init detaches a service that asked to be traced,
// which a profile refusing ptrace never lets it ask), ioctl (the init
// hands a terminal over when there is one; refused, isatty says no and
// nothing is lost but job control), clone (fork on arm64: initClone).
var initCalls = []string{
	"close", "execve", "exit", "exit_group", "fcntl", "fstat", "getpid", "gettid", "kill",
	"landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self",
	"newfstatat", "openat", "read", "rt_sigprocmask", "rt_sigreturn", "rt_sigtimedwait",
	"setpgid", "wait4", "write", "writev",
}

// InitCalls returns the system calls every custom or recorded profile is
// given for safe-run-init, sorted: they are allowed whatever the profile
// says. goarch is the process's GOARCH: fork and open are among them
// where the architecture has them (musl uses them), clone without
// namespace flags where it has no fork.
func InitCalls(goarch string) []string {
	out := slices.Clone(initCalls)
	if goarch == "arm64" {
		out = append(out, "clone")
	} else {
		out = append(out, "fork", "open") // musl's open is open(2) where there is one
	}
	slices.Sort(out)
	return out
}

// withInitCalls returns s allowing initCalls outright. The calls it does
// not allow outright already lose every rule of s (an unconditional
// allow decides them for every argument, and libseccomp refuses two rules
// with different actions on the same call) and get one rule that allows
// them; a profile that allows them all is returned as it is. On arm64,
// where musl forks with clone(SIGCHLD, 0), clone is allowed without
// namespace flags unless the profile has a rule for clone of its own.
func withInitCalls(s *specs.LinuxSeccomp, t target) *specs.LinuxSeccomp {
	var missing []string
	for _, n := range InitCalls(t.goarch) {
		if n != "clone" && !allowedOutright(s, n) {
			missing = append(missing, n)
		}
	}
	addClone := t.goarch == "arm64" && !allows(s.DefaultAction) && !slices.ContainsFunc(s.Syscalls, func(sc specs.LinuxSyscall) bool {
		return slices.Contains(sc.Names, "clone")
	})
	if len(missing) == 0 && !addClone {
		return s
	}
	out := clone(s)
	var rules []specs.LinuxSyscall
	for _, sc := range out.Syscalls {
		sc.Names = slices.DeleteFunc(slices.Clone(sc.Names), func(n string) bool { return slices.Contains(missing, n) })
		if len(sc.Names) > 0 {
			rules = append(rules, sc)
		}
	}
	var first []specs.LinuxSyscall
	if len(missing) > 0 {
		first = append(first, specs.LinuxSyscall{Names: missing, Action: specs.ActAllow})
	}
	if addClone {
		first = append(first, specs.LinuxSyscall{
			Names: []string{"clone"}, Action: specs.ActAllow,
			Args: []specs.LinuxSeccompArg{argMasked(0, cloneNamespaces, 0)},
		})
	}
	out.Syscalls = append(first, rules...)
	return out
}

// allowedOutright reports whether s lets call n through whatever its
// arguments: no rule naming it denies or tests arguments, and it is
// allowed by a rule or by the default action.
func allowedOutright(s *specs.LinuxSeccomp, n string) bool {
	named := false
	for _, sc := range s.Syscalls {
		if !slices.Contains(sc.Names, n) {
			continue
		}
		if !allows(sc.Action) || len(sc.Args) > 0 {
			return false
		}
		named = true
	}
	return named || allows(s.DefaultAction)
}

// InitCallsNote is the start report's line about a custom profile that
// did not allow what safe-run-init needs, and now does (withInitCalls):
// "" for a built-in profile, for unconfined, and for a custom profile
// that allowed it all. Seccomp's own errors are its business: here they
// give "".
func InitCallsNote(opts Options) string {
	switch opts.Profile {
	case "", "default", "strict", "unconfined":
		return ""
	}
	t, err := lookupTarget(opts.Arch)
	if err != nil {
		return ""
	}
	path := opts.Profile
	if !filepath.IsAbs(path) {
		path = filepath.Join(opts.Dir, path)
	}
	s, err := loadCustom(path, t, opts.Capabilities, opts.Kernel)
	if err != nil {
		return ""
	}
	var added []string
	for _, n := range InitCalls(t.goarch) {
		if n != "clone" && !allowedOutright(s, n) {
			added = append(added, n)
		}
	}
	if len(added) == 0 {
		return ""
	}
	return fmt.Sprintf("seccomp: %s did not allow %s, which safe-run-init needs (it runs under the service's filter): allowed", opts.Profile, wordList(added))
}
