// Package flock takes the flock(2) locks that starts on a host may queue
// on (the network's, exclusive only to make a bridge; ids.json's, once,
// to move its records) with the waiting and holding thread's priority raised, so that a queue of starts
// moves at the speed of its holders' bookkeeping, not of the CPU they get.
package flock

import (
	"errors"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// Lock takes f's lock (how: unix.LOCK_EX or unix.LOCK_SH), retrying when
// a signal interrupts the wait. For LOCK_EX, the calling goroutine's
// thread runs boosted (Boost) from before the wait until unlock, which
// must be called on the same goroutine; unlock releases the lock, not f,
// and may be called more than once.
func Lock(f *os.File, how int) (unlock func(), err error) {
	restore := func() {}
	if how == unix.LOCK_EX {
		restore = Boost()
	}
	for {
		err = unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		restore()
		return nil, err
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
			restore()
		})
	}, nil
}
