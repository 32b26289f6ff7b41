//go:build linux

// Command sysprobe makes the system calls named on its command line and
// prints, one line each, what they returned: "mount: EPERM", "getpid: ok".
// The integration tests run it under each seccomp profile. Each probe is
// chosen so that the kernel's own answer, in a container without
// capabilities, differs from the filter's: mount of an empty path is
// ENOENT, setns of a bad descriptor EBADF, clone3 with no arguments
// EINVAL, where the filter says EPERM or ENOSYS. Probes that change
// anything change only the probe's own process.
package main

import (
	"fmt"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

var probes = map[string]func() error{
	"getpid": func() error { return raw(unix.SYS_GETPID, 0, 0, 0) },
	"uname": func() error {
		var u unix.Utsname
		return unix.Uname(&u)
	},
	// unshare(0) does nothing, but is still unshare.
	"unshare": func() error { return raw(unix.SYS_UNSHARE, 0, 0, 0) },
	"mount": func() error {
		empty := []byte{0}
		return raw6(unix.SYS_MOUNT, uintptr(unsafe.Pointer(&empty[0])), uintptr(unsafe.Pointer(&empty[0])), uintptr(unsafe.Pointer(&empty[0])), 0, 0, 0)
	},
	"setns":          func() error { return raw(unix.SYS_SETNS, ^uintptr(0), 0, 0) },
	"ptrace-traceme": func() error { return raw(unix.SYS_PTRACE, unix.PTRACE_TRACEME, 0, 0) },
	"clone3":         func() error { return raw(unix.SYS_CLONE3, 0, 0, 0) },
	"socket-inet":    func() error { return socket(unix.AF_INET, unix.SOCK_DGRAM) },
	"socket-unix":    func() error { return socket(unix.AF_UNIX, unix.SOCK_STREAM) },
	"socket-alg":     func() error { return socket(unix.AF_ALG, unix.SOCK_SEQPACKET) },
	"socket-vsock":   func() error { return socket(unix.AF_VSOCK, unix.SOCK_STREAM) },
	// 0xffffffff only asks for the current persona.
	"personality-query": func() error { return raw(unix.SYS_PERSONALITY, 0xffffffff, 0, 0) },
	// READ_IMPLIES_EXEC makes every readable mapping executable: the
	// default profile refuses it; the kernel would not.
	"personality-exec": func() error {
		err := raw(unix.SYS_PERSONALITY, 0x0400000, 0, 0)
		if err == nil {
			raw(unix.SYS_PERSONALITY, 0, 0, 0)
		}
		return err
	},
	"io_uring_setup": func() error { return raw(unix.SYS_IO_URING_SETUP, 1, 0, 0) },
	// Asks to be traced by its parent, the container's init, then takes
	// a signal: a traced process stops at it, and its tracer must see
	// the stop for what it is (the Go runtime's own SIGURG does the same
	// at random).
	"traced-signal": func() error {
		if err := raw(unix.SYS_PTRACE, unix.PTRACE_TRACEME, 0, 0); err != nil {
			return err
		}
		return unix.Kill(os.Getpid(), unix.SIGURG)
	},
	"keyctl": func() error { return raw(unix.SYS_KEYCTL, unix.KEYCTL_GET_KEYRING_ID, ^uintptr(2), 0) }, // KEY_SPEC_PROCESS_KEYRING
	"mlock": func() error {
		b := make([]byte, 4096)
		err := unix.Mlock(b)
		if err == nil {
			unix.Munlock(b)
		}
		return err
	},
	"shmget": func() error {
		id, err := unix.SysvShmGet(unix.IPC_PRIVATE, 4096, unix.IPC_CREAT|0o600)
		if err == nil {
			unix.SysvShmCtl(id, unix.IPC_RMID, nil)
		}
		return err
	},
	// TIOCSTI on a pipe: ENOTTY from the kernel, EPERM from a filter
	// that checks ioctl requests.
	"ioctl-tiocsti": func() error {
		c := byte('x')
		return raw(unix.SYS_IOCTL, 0, unix.TIOCSTI, uintptr(unsafe.Pointer(&c)))
	},
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: sysprobe PROBE...")
		os.Exit(2)
	}
	for _, name := range os.Args[1:] {
		probe, ok := probes[name]
		if !ok {
			fmt.Fprintf(os.Stderr, "sysprobe: no probe %q\n", name)
			os.Exit(2)
		}
		result := "ok"
		if err := probe(); err != nil {
			result = err.Error()
			if e, ok := err.(syscall.Errno); ok {
				result = unix.ErrnoName(e)
			}
		}
		fmt.Printf("%s: %s\n", name, result)
	}
}

func raw(nr, a1, a2, a3 uintptr) error {
	return raw6(nr, a1, a2, a3, 0, 0, 0)
}

func raw6(nr, a1, a2, a3, a4, a5, a6 uintptr) error {
	_, _, e := unix.RawSyscall6(nr, a1, a2, a3, a4, a5, a6)
	if e != 0 {
		return e
	}
	return nil
}

func socket(family, typ int) error {
	fd, err := unix.Socket(family, typ, 0)
	if err == nil {
		unix.Close(fd)
	}
	return err
}
