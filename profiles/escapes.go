package profiles

import (
	"slices"

	"github.com/opencontainers/runtime-spec/specs-go"
)

// escapeCalls are the calls that reach past the container when the
// kernel lets them through: new namespaces (a user namespace gives its
// creator every capability inside it, and with them the kernel code
// behind those), mounts, BPF programs, the kernel keyring, another
// process's memory, kernel images and modules, file handles that open
// any file of a file system (the "shocker" escape), raw I/O ports, host
// clocks, swap, and io_uring, whose history of kernel bugs made Docker
// refuse it. The default profile refuses each of them without a
// capability; a custom profile that lets one through is, for policy, no
// filter at all (Escapes, policy SR012).
var escapeCalls = []string{
	"unshare", "setns", "clone3",
	"mount", "umount", "umount2", "mount_setattr", "move_mount", "open_tree",
	"fsopen", "fsconfig", "fsmount", "fspick", "pivot_root", "chroot",
	"bpf", "perf_event_open", "userfaultfd",
	"keyctl", "add_key", "request_key",
	"ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
	"kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
	"open_by_handle_at", "iopl", "ioperm",
	"reboot", "swapon", "swapoff", "acct", "quotactl", "quotactl_fd", "syslog",
	"settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
	"io_uring_setup", "io_uring_enter", "io_uring_register",
}

// Escapes lists what s, a resolved custom profile, lets through that
// the default profile with the same capabilities refuses as an escape
// (escapeCalls, and clone with namespace flags), and first
// "defaultAction SCMP_ACT_ALLOW" (or SCMP_ACT_LOG) when s allows what it
// does not name: such a profile is a list of refusals, and every call it
// forgets, or the kernel adds later, goes through. An empty list: s
// confines at least as the default profile does where it counts. caps
// and goarch are as in Options.
func Escapes(s *specs.LinuxSeccomp, caps []string, goarch string) []string {
	if s == nil {
		return nil
	}
	t, err := lookupTarget(goarch)
	if err != nil {
		return nil
	}
	def := defaultProfile().resolve(t, caps)
	var out []string
	if allows(s.DefaultAction) {
		out = append(out, "defaultAction "+string(s.DefaultAction))
	}
	for _, n := range escapeCalls {
		if mayAllow(s, n) && !mayAllow(def, n) {
			out = append(out, n)
		}
	}
	if namespaceClone(s) && !namespaceClone(def) {
		out = append(out, "clone with namespace flags (CLONE_NEW*)")
	}
	return out
}

// mayAllow reports whether s lets call n through for some arguments: a
// rule allows it, or the default action does and no rule refuses it
// whatever its arguments.
func mayAllow(s *specs.LinuxSeccomp, n string) bool {
	refused := false
	for _, sc := range s.Syscalls {
		if !slices.Contains(sc.Names, n) {
			continue
		}
		if allows(sc.Action) {
			return true
		}
		refused = refused || len(sc.Args) == 0
	}
	return allows(s.DefaultAction) && !refused
}

// namespaceClone reports whether s may let clone through with a
// CLONE_NEW* flag: a rule allows clone without a test that its flags
// (argument 0 on amd64 and arm64) hold none of them, or the default
// action allows it and no rule refuses it outright.
func namespaceClone(s *specs.LinuxSeccomp) bool {
	refused := false
	for _, sc := range s.Syscalls {
		if !slices.Contains(sc.Names, "clone") {
			continue
		}
		if !allows(sc.Action) {
			refused = refused || len(sc.Args) == 0
			continue
		}
		if !slices.ContainsFunc(sc.Args, noNamespaceFlags) {
			return true
		}
	}
	return allows(s.DefaultAction) && !refused
}

// noNamespaceFlags reports whether a allows clone only without any
// CLONE_NEW* flag.
func noNamespaceFlags(a specs.LinuxSeccompArg) bool {
	return a.Index == 0 && a.Op == specs.OpMaskedEqual &&
		a.Value&cloneNamespaces == cloneNamespaces && a.ValueTwo&cloneNamespaces == 0
}
