package launcher

import (
	"encoding/binary"
	"errors"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/specconv"
	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/profiles"
)

func defaultSeccomp(t *testing.T) *configs.Seccomp {
	t.Helper()
	s, err := profiles.Seccomp(profiles.Options{Profile: "default", Arch: runtime.GOARCH, Log: true})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := specconv.SetupSeccomp(s)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// onFilteredThread loads prog as safe-run-init does, on a thread of its
// own that ends with the call, and runs f there.
func onFilteredThread(t *testing.T, prog []byte, f func()) {
	t.Helper()
	errc := make(chan error)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread keeps the filter
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			errc <- err
			return
		}
		flags := binary.NativeEndian.Uint32(prog)
		insns := prog[8:]
		fprog := unix.SockFprog{Len: uint16(len(insns) / 8), Filter: (*unix.SockFilter)(unsafe.Pointer(&insns[0]))}
		if _, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, uintptr(flags), uintptr(unsafe.Pointer(&fprog))); errno != 0 {
			errc <- errno
			return
		}
		f()
		errc <- nil
	}()
	if err := <-errc; err != nil {
		t.Fatalf("loading the compiled filter: %v", err)
	}
}

// TestCompileSeccomp checks that the program captured from libcontainer
// is whole and filters as libcontainer's does: denials, runc's
// -ENOSYS for calls newer than the profile, the log flag.
func TestCompileSeccomp(t *testing.T) {
	if !captureSupported() {
		t.Skip("this kernel has no seccomp user notification (Linux 5.0)")
	}
	cfg := defaultSeccomp(t)
	prog, err := compileSeccomp(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !validProgram(prog) {
		t.Fatalf("program of %d bytes is not whole", len(prog))
	}
	if flags := binary.NativeEndian.Uint32(prog); flags&unix.SECCOMP_FILTER_FLAG_LOG == 0 {
		t.Errorf("flags %#x: want SECCOMP_FILTER_FLAG_LOG (seccomp_log)", flags)
	}
	var status string
	var keyctl, newer, getpid unix.Errno
	onFilteredThread(t, prog, func() {
		b, _ := os.ReadFile("/proc/thread-self/status")
		status = string(b)
		_, _, keyctl = unix.Syscall(unix.SYS_KEYCTL, unix.KEYCTL_GET_KEYRING_ID, 0, 0)
		_, _, newer = unix.Syscall(1000, 0, 0, 0) // past the last call the profile names
		_, _, getpid = unix.Syscall(unix.SYS_GETPID, 0, 0, 0)
	})
	if !strings.Contains(status, "\nSeccomp:\t2\n") {
		t.Errorf("the thread is not in seccomp filter mode:\n%s", status)
	}
	if keyctl != unix.EPERM || newer != unix.ENOSYS || getpid != 0 {
		t.Errorf("keyctl %v, syscall 1000 %v, getpid %v: want EPERM (denied), ENOSYS (runc's stub), success", keyctl, newer, getpid)
	}
	// The capturing thread is gone with its filter: this one has none.
	if b, _ := os.ReadFile("/proc/thread-self/status"); !strings.Contains(string(b), "\nSeccomp:\t0\n") {
		t.Errorf("a filter leaked onto the test's thread")
	}
}

// TestCompileSeccompOneProc: the load that is captured keeps its
// scheduler slot while it waits, so the answer must come from outside Go's
// scheduler (seccomp_linux.c): with GOMAXPROCS=1 a goroutine never could.
func TestCompileSeccompOneProc(t *testing.T) {
	if !captureSupported() {
		t.Skip("this kernel has no seccomp user notification (Linux 5.0)")
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	if _, err := compileSeccomp(defaultSeccomp(t)); err != nil {
		t.Fatal(err)
	}
}

// TestCompileSeccompRefused: a configuration libcontainer refuses before
// it loads anything gets libcontainer's error, and the capture ends.
func TestCompileSeccompRefused(t *testing.T) {
	if !captureSupported() {
		t.Skip("this kernel has no seccomp user notification (Linux 5.0)")
	}
	_, err := compileSeccomp(&configs.Seccomp{DefaultAction: configs.Notify})
	if err == nil || errors.Is(err, unix.ECANCELED) || !strings.Contains(err.Error(), "default action") {
		t.Fatalf("err = %v, want libcontainer's refusal of a notifying default action", err)
	}
}

// TestCompileSeccompSlowAnswer: a slow answer still ends the capture. The
// load that is captured waits in a raw system call, so Go's scheduler
// signals its thread every 10 ms to preempt it; each signal withdraws the
// notification being answered. Without the signals blocked there, the
// capture never ended on a slow machine (CI's QEMU guest).
func TestCompileSeccompSlowAnswer(t *testing.T) {
	if !captureSupported() {
		t.Skip("this kernel has no seccomp user notification (Linux 5.0)")
	}
	cfg := defaultSeccomp(t)
	defer func(d time.Duration) { captureAnswerDelay = d }(captureAnswerDelay)
	captureAnswerDelay = 50 * time.Millisecond
	done := make(chan error, 1)
	go func() {
		_, err := compileSeccomp(cfg)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("compileSeccomp did not end: signals withdrew every notification before its answer")
	}
}
