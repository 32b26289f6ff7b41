package launcher

// #include <stdlib.h>
// #include "seccomp_linux.h"
import "C"

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"time"
	"unsafe"

	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/seccomp"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/host"
	"github.com/safe-run/safe-run/internal/atomicfile"
)

// The container's seccomp filter is compiled by safe-run, once per
// content, and loaded by safe-run-init, not compiled inside every
// container by libcontainer's init. Compiling is libseccomp building the
// rules and its BPF, then runc's -ENOSYS patch, the largest single cost of
// a start. What the cgo here saves: 10.9 ms of every start for the default
// profile, against 0.16 ms to find and read the kept program
// (BenchmarkSeccompCompile against BenchmarkSeccompCached in
// cgo_bench_linux_test.go, December 2026, 2 shared EPYC cores). The
// program is kept in DataDir/seccomp under a hash of everything it depends
// on, and reaches safe-run-init on its socket (initLink); loading it is
// one system call. It is libcontainer's own program (see compileSeccomp),
// loaded with the same flags and before the service's first instruction,
// as before; only safe-run-init, which safe-run checked and mounts
// read-only, runs unfiltered for a moment longer. The capture depends on
// how libcontainer loads its filter today: TestCapturedMatchesLibcontainer
// fails if a runc upgrade changes what it captures, comparing its
// decisions on a table of calls and arguments with those of the filter
// libcontainer loads itself, the loader init = false without Landlock
// still uses.
//
// libcontainer keeps the job where safe-run-init cannot take it over: no
// safe-run-init (init = false without a Landlock ruleset), a filter that notifies an agent (libcontainer hands
// its listener over), and a service allowed new privileges (without
// no_new_privs, only a privileged process may load a filter).

// takeSeccomp takes config's filter out of config, for safe-run-init to
// load, when safe-run-init can; else it returns nil and leaves config
// alone.
func takeSeccomp(config *configs.Config) *configs.Seccomp {
	sc := config.Seccomp
	if sc == nil || !config.NoNewPrivileges || !captureSupported() ||
		slices.ContainsFunc(sc.Syscalls, func(s *configs.Syscall) bool { return s.Action == configs.Notify }) {
		return nil
	}
	config.Seccomp = nil
	return sc
}

// seccompProgram returns sc's program: the one kept in DataDir/seccomp,
// else compiled now and kept there.
func seccompProgram(sc *configs.Seccomp, opts runOpts) ([]byte, error) {
	file, err := seccompCacheFile(filepath.Join(opts.Dirs.Data, "seccomp"), sc)
	if err != nil {
		return nil, err
	}
	if kept, err := os.ReadFile(file); err == nil {
		if prog, ok := keptProgram(kept); ok {
			return prog, nil
		}
		// A disk, a hand or a bug changed it: what it holds would be
		// the filter of every service of this profile. Never loaded;
		// compiled again and replaced, and said (issue 19).
		opts.Logger.Warn("the kept seccomp filter is damaged (its checksum does not match); compiling it again and replacing it", "file", file)
	}
	prog, err := compileSeccomp(sc)
	if err != nil {
		return nil, fmt.Errorf("compiling the seccomp filter: %w", err)
	}
	sum := sha256.Sum256(prog)
	if err := atomicfile.Write(file, append(prog, sum[:]...), 0o600); err != nil {
		opts.Logger.Warn("keeping the compiled seccomp filter", "file", file, "err", err)
	}
	return prog, nil
}

// keptProgram returns the program of a kept file: the program, then its
// SHA-256. The shape alone (validProgram) let a flipped bit through to
// every later start.
func keptProgram(kept []byte) ([]byte, bool) {
	if len(kept) < sha256.Size {
		return nil, false
	}
	prog, sum := kept[:len(kept)-sha256.Size], kept[len(kept)-sha256.Size:]
	if got := sha256.Sum256(prog); string(got[:]) != string(sum) || !validProgram(prog) {
		return nil, false
	}
	return prog, true
}

// seccompCacheFile is where the program compiled from sc is kept: its name
// hashes sc and what else the program depends on (libseccomp, runc's
// patch, the kernel's seccomp features, the architecture). The directory
// is root's (the rootless user's own without root), as the image cache
// beside it, whose files the containers run.
func seccompCacheFile(dir string, sc *configs.Seccomp) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("seccomp cache: %w", err)
	}
	cfg, err := json.Marshal(sc)
	if err != nil {
		return "", err
	}
	kernel := host.Probe().Kernel
	runc := "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path == "github.com/opencontainers/runc" {
				runc = m.Version
			}
		}
	}
	major, minor, micro := seccomp.Version()
	h := sha256.New()
	fmt.Fprintf(h, "safe-run seccomp cache 2\n%s\nlibseccomp %d.%d.%d\nrunc %s\nkernel %s\n%s",
		runtime.GOARCH, major, minor, micro, runc, kernel, cfg)
	return filepath.Join(dir, hex.EncodeToString(h.Sum(nil))), nil
}

// validProgram says whether prog is whole, as compileSeccomp makes it.
func validProgram(prog []byte) bool {
	if len(prog) < 8 {
		return false
	}
	n := int(binary.NativeEndian.Uint32(prog[4:]))
	return n > 0 && n <= C.BPF_MAXINSNS && len(prog) == 8+8*n
}

// compileSeccomp returns the program libcontainer's init would load for
// cfg, with its header for safe-run-init (the SECCOMP_SET_MODE_FILTER
// flags, 0 for prctl(PR_SET_SECCOMP), then the instruction count, each a
// native 32-bit word).
//
// libcontainer exports no compiler, only seccomp.InitSeccomp, which builds
// the program and loads it into the calling thread. So compileSeccomp runs
// it on a thread of its own that first gets a filter of its own: the call
// that would load the program becomes a user notification, which a C
// thread answers (seccomp_linux.c) by copying the program and refusing the
// call. Nothing is loaded, and the thread, filter and all, ends with its
// goroutine.
func compileSeccomp(cfg *configs.Seccomp) ([]byte, error) {
	type result struct {
		prog []byte
		err  error
	}
	done := make(chan result, 1)
	go func() {
		// Never unlocked: the thread carries the capturing filter and
		// must not run anything else.
		runtime.LockOSThread()
		prog, err := captureSeccomp(cfg)
		done <- result{prog, err}
	}()
	r := <-done
	return r.prog, r.err
}

func captureSeccomp(cfg *configs.Seccomp) ([]byte, error) {
	// For this thread only, as its filter: both are per thread.
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("setting no_new_privs: %w", err)
	}
	listener, err := loadCaptureFilter()
	if err != nil {
		return nil, err
	}
	defer unix.Close(listener)
	cancelR, cancelW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer cancelR.Close()
	c := (*C.struct_safe_run_capture)(C.calloc(1, C.sizeof_struct_safe_run_capture))
	defer C.free(unsafe.Pointer(c))
	c.listener = C.int(listener)
	c.cancel = C.int(cancelR.Fd())
	c.answer_delay_us = C.uint(captureAnswerDelay.Microseconds())
	var t C.pthread_t
	if rc := C.safe_run_capture_start(c, &t); rc != 0 {
		cancelW.Close()
		return nil, fmt.Errorf("starting the capturing thread: %w", unix.Errno(rc))
	}
	// Every signal that reaches this thread while the load waits for its
	// answer withdraws the notification, and the kernel makes the call
	// again as a new one. The load is a raw system call that keeps its P,
	// so Go's scheduler sends its preemption signal every 10 ms: on a
	// slow machine (a guest under emulation) before every answer, and the
	// capture never ended. Signals stay pending here instead (the thread
	// ends with the capture); the process's own go to its other threads.
	if err := blockSignals(); err != nil {
		cancelW.Close()
		C.safe_run_capture_wait(t)
		return nil, err
	}
	_, loadErr := seccomp.InitSeccomp(cfg)
	cancelW.Close()
	C.safe_run_capture_wait(t)
	if c.err != 0 {
		if errno := unix.Errno(c.err); errno != unix.ECANCELED || loadErr == nil {
			return nil, fmt.Errorf("capturing the program: %w", errno)
		}
		return nil, loadErr // the set-up failed before it loaded anything
	}
	insns := unsafe.Slice((*byte)(unsafe.Pointer(&c.insns[0])), int(c.len)*int(unsafe.Sizeof(c.insns[0])))
	prog := binary.NativeEndian.AppendUint32(nil, uint32(c.flags))
	prog = binary.NativeEndian.AppendUint32(prog, uint32(c.len))
	return append(prog, insns...), nil
}

// captureAnswerDelay slows each answer of the capturing thread down, for
// tests only: a slow machine's answer, which signals could always beat.
var captureAnswerDelay time.Duration

// blockSignals blocks every signal that can be blocked on this thread.
func blockSignals() error {
	var all unix.Sigset_t
	for i := range all.Val {
		all.Val[i] = ^uint64(0)
	}
	if err := unix.PthreadSigmask(unix.SIG_BLOCK, &all, nil); err != nil {
		return fmt.Errorf("blocking signals on the capturing thread: %w", err)
	}
	return nil
}

// seccompActionsLogged are the seccomp actions the kernel logs, as
// package host read them.
func seccompActionsLogged() []string { return host.Probe().Seccomp.ActionsLogged }

// captureSupported says whether this kernel and architecture can run
// compileSeccomp: user notifications came with Linux 5.0.
func captureSupported() bool {
	_, ok := auditArch[runtime.GOARCH]
	return ok && host.Probe().Seccomp.Notify
}

// auditArch is the AUDIT_ARCH of each architecture safe-run is built for,
// all little-endian (captureFilter reads the low words of arguments).
var auditArch = map[string]uint32{"amd64": unix.AUDIT_ARCH_X86_64, "arm64": unix.AUDIT_ARCH_AARCH64}

// loadCaptureFilter loads, into this thread, a filter that notifies the
// calls that load a filter program, seccomp(SECCOMP_SET_MODE_FILTER, flags,
// prog) and prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, prog), and lets
// everything else through, libseccomp's probes with a NULL program
// included. It returns the notifications' listener.
func loadCaptureFilter() (int, error) {
	const (
		nr     = 0 // offsets in struct seccomp_data
		arch   = 4
		arg0   = 16
		arg1   = 24
		arg2   = 32 // low word; high word at 36
		check2 = 11 // instruction indexes
		allow  = 15
		notify = 16
	)
	skip := func(from, to int) uint8 { return uint8(to - from - 1) }
	insns, err := bpf.Assemble([]bpf.Instruction{
		/* 0 */ bpf.LoadAbsolute{Off: arch, Size: 4},
		/* 1 */ bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: auditArch[runtime.GOARCH], SkipTrue: skip(1, allow)},
		/* 2 */ bpf.LoadAbsolute{Off: nr, Size: 4},
		/* 3 */ bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: unix.SYS_SECCOMP, SkipTrue: skip(3, 6)},
		/* 4 */ bpf.LoadAbsolute{Off: arg0, Size: 4},
		/* 5 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.SECCOMP_SET_MODE_FILTER, SkipTrue: skip(5, check2), SkipFalse: skip(5, allow)},
		/* 6 */ bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: unix.SYS_PRCTL, SkipTrue: skip(6, allow)},
		/* 7 */ bpf.LoadAbsolute{Off: arg0, Size: 4},
		/* 8 */ bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: unix.PR_SET_SECCOMP, SkipTrue: skip(8, allow)},
		/* 9 */ bpf.LoadAbsolute{Off: arg1, Size: 4},
		/* 10 */ bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: unix.SECCOMP_MODE_FILTER, SkipTrue: skip(10, allow)},
		/* 11 */ bpf.LoadAbsolute{Off: arg2, Size: 4},
		/* 12 */ bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 0, SkipTrue: skip(12, notify)},
		/* 13 */ bpf.LoadAbsolute{Off: arg2 + 4, Size: 4},
		/* 14 */ bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 0, SkipTrue: skip(14, notify)},
		/* 15 */ bpf.RetConstant{Val: unix.SECCOMP_RET_ALLOW},
		/* 16 */ bpf.RetConstant{Val: unix.SECCOMP_RET_USER_NOTIF},
	})
	if err != nil {
		return -1, err
	}
	filter := make([]unix.SockFilter, len(insns))
	for i, in := range insns {
		filter[i] = unix.SockFilter{Code: in.Op, Jt: in.Jt, Jf: in.Jf, K: in.K}
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	fd, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_NEW_LISTENER, uintptr(unsafe.Pointer(&prog)))
	runtime.KeepAlive(filter)
	if errno != 0 {
		return -1, fmt.Errorf("loading the capturing filter: %w", errno)
	}
	return int(fd), nil
}
