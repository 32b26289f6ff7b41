// Package nsholder makes processes that only hold new namespaces open:
// the launcher's user namespace for an id-mapped rootfs, and the rootless
// keeper's shared user and network namespaces.
//
// Go reaches a process in new namespaces only through fork and exec of a
// whole program; a C clone that shares this process's memory (CLONE_VM: no
// page tables to copy) and runs on a stack of its own costs 0.18-0.46 ms
// per start against 2.0-2.7 ms for Go's fork and exec of sleep(1) in a new
// user namespace (BenchmarkUsernsHolder against BenchmarkUsernsExec in
// launcher/cgo_bench_linux_test.go, December 2026, 2 shared EPYC cores).
package nsholder

// #include <stdlib.h>
// int safe_run_ns_holder(int flags, void *stack_top);
import "C"

import (
	"errors"
	"unsafe"

	"golang.org/x/sys/unix"
)

// stackSize is each holder's stack: it only calls prctl, getppid and pause.
const stackSize = 64 << 10

// Holder is a child that waits, in the namespaces it was made with, until
// it is killed.
type Holder struct {
	PID   int
	stack unsafe.Pointer // freed by End, once the child is reaped
}

// Start makes a holder in new namespaces (flags: CLONE_NEW*). It dies
// with the calling OS thread: a caller that keeps it keeps its goroutine
// locked to the thread.
func Start(flags int) (*Holder, error) {
	stack := C.malloc(stackSize)
	if stack == nil {
		return nil, errors.New("no memory for a namespace holder's stack")
	}
	// The stack grows down: the child starts at its top, 16-byte aligned
	// as malloc's memory is.
	pid, err := C.safe_run_ns_holder(C.int(flags), unsafe.Add(stack, stackSize))
	if pid < 0 {
		C.free(stack)
		return nil, err
	}
	return &Holder{PID: int(pid), stack: stack}, nil
}

// End kills the holder, reaps it (unless someone else has) and frees its
// stack.
func (h *Holder) End() {
	_ = unix.Kill(h.PID, unix.SIGKILL)
	for {
		if _, err := unix.Wait4(h.PID, nil, 0, nil); !errors.Is(err, unix.EINTR) {
			break
		}
	}
	C.free(h.stack)
}
