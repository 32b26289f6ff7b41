//go:build linux && cgo && seccomp

package profiles

import libseccomp "github.com/seccomp/libseccomp-golang"

// syscallName names call nr of an AUDIT_ARCH_* ABI, as the libseccomp
// that built the filter names it; "" for a number it does not know. runc
// returns ENOSYS for calls newer than the newest the filter names, so
// those are calls no profile could have allowed.
func syscallName(arch uint32, nr int) string {
	var a libseccomp.ScmpArch
	switch {
	case arch == auditArchX86_64 && nr&x32SyscallBit != 0:
		a = libseccomp.ArchX32
	case arch == auditArchX86_64:
		a = libseccomp.ArchAMD64
	case arch == auditArchI386:
		a = libseccomp.ArchX86
	case arch == auditArchAArch64:
		a = libseccomp.ArchARM64
	case arch == auditArchARM:
		a = libseccomp.ArchARM
	default:
		return ""
	}
	name, err := libseccomp.ScmpSyscall(nr).GetNameByArch(a)
	if err != nil {
		return ""
	}
	return name
}

// namesKnown says whether syscallName can name calls in this build.
const namesKnown = true
