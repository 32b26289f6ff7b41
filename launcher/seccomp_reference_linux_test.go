package launcher

import (
	"errors"
	"fmt"
	"runtime"
	"testing"
	"unsafe"

	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/seccomp"
	"github.com/opencontainers/runc/libcontainer/specconv"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/profiles"
)

// probe is one system call with its arguments, chosen so that running it
// for real on a filtered thread is harmless whether the filter lets it
// through (bad fds, NULL pointers, invalid flags: it fails in the kernel,
// or creates one fd that is closed) or refuses it.
type probe struct {
	name string
	nr   uintptr
	args [6]uintptr
}

// probes span what the profiles decide: calls always allowed, always
// refused, allowed by a capability, allowed for some argument values only
// (personality, socket, clone), runc's -ENOSYS for calls newer than the
// profile, and numbers no kernel has.
var probes = []probe{
	{"getpid", unix.SYS_GETPID, [6]uintptr{}},
	{"read bad fd", unix.SYS_READ, [6]uintptr{^uintptr(0), 0, 0}},
	{"ioctl TIOCSTI bad fd", unix.SYS_IOCTL, [6]uintptr{^uintptr(0), unix.TIOCSTI, 0}},
	{"keyctl", unix.SYS_KEYCTL, [6]uintptr{unix.KEYCTL_GET_KEYRING_ID, 0, 0}},
	{"personality query", unix.SYS_PERSONALITY, [6]uintptr{0xffffffff}},
	{"personality 0x1234", unix.SYS_PERSONALITY, [6]uintptr{0x1234}},
	{"mount NULL", unix.SYS_MOUNT, [6]uintptr{0, 0, 0, 0, 0}},
	{"umount2 NULL", unix.SYS_UMOUNT2, [6]uintptr{0, 0}},
	{"reboot bad magic", unix.SYS_REBOOT, [6]uintptr{0, 0, 0, 0}},
	{"setns bad fd", unix.SYS_SETNS, [6]uintptr{^uintptr(0), 0}},
	{"unshare userns", unix.SYS_UNSHARE, [6]uintptr{unix.CLONE_NEWUSER}},
	{"unshare none", unix.SYS_UNSHARE, [6]uintptr{0}},
	{"clone3 NULL", unix.SYS_CLONE3, [6]uintptr{0, 0}},
	{"bpf bad cmd", unix.SYS_BPF, [6]uintptr{^uintptr(0), 0, 0}},
	{"perf_event_open NULL", unix.SYS_PERF_EVENT_OPEN, [6]uintptr{0, 0, 0, ^uintptr(0), 0}},
	{"open_by_handle_at bad fd", unix.SYS_OPEN_BY_HANDLE_AT, [6]uintptr{^uintptr(0), 0, 0}},
	{"ptrace bad request", unix.SYS_PTRACE, [6]uintptr{^uintptr(0), 0, 0, 0}},
	{"kexec_load", unix.SYS_KEXEC_LOAD, [6]uintptr{0, 0, 0, ^uintptr(0)}},
	{"init_module NULL", unix.SYS_INIT_MODULE, [6]uintptr{0, 0, 0}},
	{"socket inet", unix.SYS_SOCKET, [6]uintptr{unix.AF_INET, unix.SOCK_DGRAM | unix.SOCK_CLOEXEC, 0}},
	{"socket netlink audit", unix.SYS_SOCKET, [6]uintptr{unix.AF_NETLINK, unix.SOCK_RAW | unix.SOCK_CLOEXEC, unix.NETLINK_AUDIT}},
	{"socket vsock", unix.SYS_SOCKET, [6]uintptr{unix.AF_VSOCK, unix.SOCK_STREAM | unix.SOCK_CLOEXEC, 0}},
	{"syslog read bad len", unix.SYS_SYSLOG, [6]uintptr{2, 0, ^uintptr(0)}},
	{"set_mempolicy bad mode", unix.SYS_SET_MEMPOLICY, [6]uintptr{^uintptr(0), 0, 0}},
	{"fsopen NULL", unix.SYS_FSOPEN, [6]uintptr{0, 0}},
	{"open_tree bad fd", unix.SYS_OPEN_TREE, [6]uintptr{^uintptr(0), 0, 0}},
	{"io_uring_setup NULL", unix.SYS_IO_URING_SETUP, [6]uintptr{0, 0}},
	{"number 460", 460, [6]uintptr{}},
	{"number 1000", 1000, [6]uintptr{}},
}

// decisions runs every probe on the calling thread and says what each
// returned: "ok" or the errno's name.
func decisions() []string {
	out := make([]string, len(probes))
	for i, p := range probes {
		r, _, errno := unix.Syscall6(p.nr, p.args[0], p.args[1], p.args[2], p.args[3], p.args[4], p.args[5])
		if errno != 0 {
			out[i] = unix.ErrnoName(errno)
			continue
		}
		out[i] = "ok"
		if p.nr == unix.SYS_SOCKET {
			unix.Close(int(r))
		}
	}
	return out
}

// onThread runs load then decisions on a thread of its own that ends with
// them (its filter with it).
func onThread(load func() error) ([]string, error) {
	type result struct {
		d   []string
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread keeps the filter
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			done <- result{nil, err}
			return
		}
		if err := load(); err != nil {
			done <- result{nil, err}
			return
		}
		done <- result{decisions(), nil}
	}()
	r := <-done
	return r.d, r.err
}

// TestCapturedMatchesLibcontainer keeps compileSeccomp honest: the program
// it captures from libcontainer must decide every probe as the filter
// libcontainer loads itself (seccomp.InitSeccomp, the path init = false
// still takes) does, for each built-in profile with and without
// capabilities. The capture depends on how libcontainer loads its filter
// today (one seccomp(2) or prctl(2) call with the final program); if a
// runc upgrade changes that, this fails, and takeSeccomp must go (or
// follow) before the upgrade lands.
func TestCapturedMatchesLibcontainer(t *testing.T) {
	if !captureSupported() {
		t.Skip("this kernel has no seccomp user notification (Linux 5.0)")
	}
	for _, tc := range []struct {
		profile string
		caps    []string
		log     bool
	}{
		{"default", nil, false},
		{"default", nil, true},
		{"default", []string{"CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_SYSLOG", "CAP_SYS_BOOT", "CAP_SYS_MODULE"}, false},
		{"strict", nil, false},
	} {
		t.Run(fmt.Sprintf("%s %v log=%v", tc.profile, tc.caps, tc.log), func(t *testing.T) {
			s, err := profiles.Seccomp(profiles.Options{Profile: tc.profile, Capabilities: tc.caps, Log: tc.log, Arch: runtime.GOARCH})
			if err != nil {
				t.Fatal(err)
			}
			cfg := seccompConfig(t, s)
			prog, err := compileSeccomp(cfg)
			if err != nil {
				t.Fatal(err)
			}
			captured, err := onThread(func() error { return loadProgram(prog) })
			if err != nil {
				t.Fatalf("loading the captured program: %v", err)
			}
			reference, err := onThread(func() error {
				_, err := seccomp.InitSeccomp(seccompConfig(t, s))
				return err
			})
			if err != nil {
				t.Fatalf("libcontainer loading its own filter: %v", err)
			}
			differ := 0
			for i, p := range probes {
				if captured[i] != reference[i] {
					differ++
					t.Errorf("%s: the captured program says %s, libcontainer's own filter %s", p.name, captured[i], reference[i])
				}
			}
			if differ > 0 {
				t.Errorf("the program compileSeccomp captures is not the one libcontainer loads: has runc changed how it loads seccomp? Drop takeSeccomp or follow the change")
			}
			// The table must tell filters apart, or it proves nothing.
			if !containsString(reference, "ok") || !containsString(reference, "EPERM") {
				t.Errorf("the probes got %v: want both calls let through and calls refused", reference)
			}
		})
	}
}

// TestNoInitKeepsLibcontainerLoader: without safe-run-init (init = false)
// nothing takes the filter: libcontainer compiles and loads it as always,
// the reference the capture is checked against.
func TestNoInitKeepsLibcontainerLoader(t *testing.T) {
	s, err := profiles.Seccomp(profiles.Options{Profile: "default", Arch: runtime.GOARCH})
	if err != nil {
		t.Fatal(err)
	}
	cfg := seccompConfig(t, s)
	config := &configs.Config{Seccomp: cfg, NoNewPrivileges: true}
	spec := &specs.Spec{Process: &specs.Process{Args: []string{"/bin/server", "--port", "80"}}}
	link, err := newInitLink(spec, config, runOpts{})
	if err != nil || link != nil {
		t.Fatalf("newInitLink = %v, %v: want no link without safe-run-init", link, err)
	}
	if config.Seccomp != cfg {
		t.Fatal("the filter was taken from libcontainer's config without safe-run-init to load it")
	}
}

func seccompConfig(t *testing.T, s *specs.LinuxSeccomp) *configs.Seccomp {
	t.Helper()
	cfg, err := specconv.SetupSeccomp(s)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// loadProgram loads a program as compileSeccomp returns it (flags, count,
// instructions), as safe-run-init does.
func loadProgram(prog []byte) error {
	if !validProgram(prog) {
		return errors.New("not a whole program")
	}
	flags := uint32(prog[0]) | uint32(prog[1])<<8 | uint32(prog[2])<<16 | uint32(prog[3])<<24
	insns := prog[8:]
	fprog := unix.SockFprog{Len: uint16(len(insns) / 8), Filter: (*unix.SockFilter)(unsafe.Pointer(&insns[0]))}
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, uintptr(flags), uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(insns)
	if errno != 0 {
		return errno
	}
	return nil
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
