package flock

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// boostNice is the nice value of a thread waiting for or holding a lock.
const boostNice = -10

// Boost raises the calling thread's priority until restore, which must
// run on the same goroutine. Every start on a host takes these locks in
// turn: with 50 starts on 2 cores, each holder, at its ordinary priority,
// waited for the CPU behind the 49 others' setup many times over for a
// millisecond of bookkeeping (issue 19: 20-60 ms a section, up to seconds
// of waiting for the last), and a waiter handed the lock waited for the
// CPU before it could run. A boosted thread runs first, and only for the
// bookkeeping. Without CAP_SYS_NICE (rootless) nothing changes.
func Boost() (restore func()) {
	runtime.LockOSThread()
	tid := unix.Gettid()
	// The system call's value is 20 - nice (getpriority(2), "C
	// library/kernel differences").
	prio, err := unix.Getpriority(unix.PRIO_PROCESS, tid)
	if err != nil || 20-prio <= boostNice || unix.Setpriority(unix.PRIO_PROCESS, tid, boostNice) != nil {
		return runtime.UnlockOSThread
	}
	return func() {
		_ = unix.Setpriority(unix.PRIO_PROCESS, tid, 20-prio)
		runtime.UnlockOSThread()
	}
}
