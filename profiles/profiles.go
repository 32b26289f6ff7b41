package profiles

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"

	"github.com/opencontainers/runtime-spec/specs-go"
)

// Options selects and tailors a seccomp profile.
type Options struct {
	Profile      string   // "default", "strict", "unconfined" (returns nil, nil), or a path to a Docker-format JSON profile
	Dir          string   // base directory for a relative profile path (the manifest's directory)
	Capabilities []string // capabilities granted to the process, "CAP_NET_BIND_SERVICE" form
	Log          bool     // log denials: add SECCOMP_FILTER_FLAG_LOG to the filter flags
	Arch         string   // GOARCH: "amd64" or "arm64"

	// Kernel is the host's kernel release as uname -r prints it
	// ("6.1.0-18-amd64"). Only a custom profile with a minKernel condition
	// needs it; like Arch, it is a host fact the caller passes in.
	Kernel string
}

// Seccomp returns the seccomp section of the runtime spec that opts asks
// for, with every capability, architecture and kernel condition resolved.
// It returns nil, nil for "unconfined"; whether that is acknowledged in the
// manifest is the policy package's business.
func Seccomp(opts Options) (*specs.LinuxSeccomp, error) {
	switch opts.Profile {
	case "unconfined":
		return nil, nil
	case "":
		return nil, errors.New(`seccomp: no profile given (use "default", "strict", "unconfined" or the path of a Docker-format JSON profile)`)
	}
	t, err := lookupTarget(opts.Arch)
	if err != nil {
		return nil, err
	}
	if err := checkCapabilities(opts.Capabilities); err != nil {
		return nil, err
	}

	var s *specs.LinuxSeccomp
	switch opts.Profile {
	case "default":
		s = defaultProfile().resolve(t, opts.Capabilities)
	case "strict":
		s = strictProfile().resolve(t, opts.Capabilities)
	default:
		path := opts.Profile
		if !filepath.IsAbs(path) {
			path = filepath.Join(opts.Dir, path)
		}
		s, err = loadCustom(path, t, opts.Capabilities, opts.Kernel)
		if err != nil {
			return nil, err
		}
		// safe-run-init runs under the filter too: a profile without
		// what it needs would break the service's stop or end, not
		// confine it more (initcalls.go).
		s = withInitCalls(s, t)
	}
	if opts.Log && !slices.Contains(s.Flags, specs.LinuxSeccompFlagLog) {
		// runc passes the flag to seccomp(2), and the kernel logs the
		// filter's actions other than SCMP_ACT_ALLOW, as far as
		// /proc/sys/kernel/seccomp/actions_logged lets it (Linux 4.14,
		// "seccomp: Add SECCOMP_FILTER_FLAG_LOG"). A non-nil Flags also
		// keeps runc from adding SECCOMP_FILTER_FLAG_SPEC_ALLOW on its own
		// (specconv.SetupSeccomp), so the kernel's Speculative Store
		// Bypass policy for seccomp applies as it stands.
		s.Flags = append(s.Flags, specs.LinuxSeccompFlagLog)
	}
	return s, nil
}

// target is what one filter covers: the process's own ABI and, where the
// kernel runs them too, its 32-bit ABIs (Docker's subArchitectures, less
// x32; see compatArches).
type target struct {
	goarch string
	native specs.Arch
	compat []specs.Arch
}

func lookupTarget(goarch string) (target, error) {
	switch goarch {
	case "amd64":
		return target{goarch, specs.ArchX86_64, []specs.Arch{specs.ArchX86}}, nil
	case "arm64":
		return target{goarch, specs.ArchAARCH64, []specs.Arch{specs.ArchARM}}, nil
	case "":
		return target{}, errors.New("seccomp: no architecture given (set Options.Arch to runtime.GOARCH)")
	}
	return target{}, fmt.Errorf("seccomp: architecture %q is not supported (use amd64 or arm64)", goarch)
}

// arches lists the architectures of a filter for t, with or without the
// 32-bit ABIs.
func (t target) arches(compat bool) []specs.Arch {
	if !compat {
		return []specs.Arch{t.native}
	}
	return append([]specs.Arch{t.native}, t.compat...)
}

// checkCapabilities catches capabilities written without the CAP_ prefix,
// which would otherwise silently match no condition.
func checkCapabilities(caps []string) error {
	for _, c := range caps {
		if !isCapability(c) {
			if isCapability("CAP_" + c) {
				return fmt.Errorf("seccomp: capability %q must be given as %q", c, "CAP_"+c)
			}
			return fmt.Errorf("seccomp: %q is not a Linux capability", c)
		}
	}
	return nil
}

// isCapability reports whether name is a capability of Linux 6.x,
// <linux/capability.h>.
func isCapability(name string) bool {
	switch name {
	case "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER",
		"CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP",
		"CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
		"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
		"CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
		"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
		"CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD",
		"CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP",
		"CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
		"CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
		"CAP_CHECKPOINT_RESTORE":
		return true
	}
	return false
}
