package flock

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestLock: an exclusive lock excludes another open file's until unlock,
// and the holder's thread runs at boostNice while it holds it (as root),
// and at its own priority again after.
func TestLock(t *testing.T) {
	p := filepath.Join(t.TempDir(), "lock")
	open := func() *os.File {
		f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	a, b := open(), open()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	nice := func() int {
		prio, err := unix.Getpriority(unix.PRIO_PROCESS, unix.Gettid())
		if err != nil {
			t.Fatal(err)
		}
		return 20 - prio
	}
	before := nice()
	unlock, err := Lock(a, unix.LOCK_EX)
	if err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 && nice() != boostNice {
		t.Errorf("holding the lock: nice %d, want %d", nice(), boostNice)
	}
	if err := unix.Flock(int(b.Fd()), unix.LOCK_EX|unix.LOCK_NB); err == nil {
		t.Fatal("a second exclusive lock was granted while the first was held")
	}
	got := make(chan time.Time, 1)
	go func() {
		u, err := Lock(b, unix.LOCK_SH)
		if err != nil {
			t.Error(err)
		}
		got <- time.Now()
		u()
	}()
	time.Sleep(20 * time.Millisecond)
	released := time.Now()
	unlock()
	if at := <-got; at.Before(released) {
		t.Error("the shared lock was granted before the exclusive one was released")
	}
	if nice() != before {
		t.Errorf("after unlock: nice %d, want %d", nice(), before)
	}
}
