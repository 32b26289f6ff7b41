package launcher

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// nameLock guards a service name: one safe-run per name at a time. The lock
// is an flock on STATE/NAME.lock, which the kernel releases however its
// holder exits; the file holds the holder's pid for the error message.
type nameLock struct {
	f    *os.File
	path string
}

// janitorWait bounds how long a start waits for the janitor of a crashed
// run, which holds the lock while it cleans up.
const janitorWait = 10 * time.Second

func lockName(stateRoot, name string) (*nameLock, error) {
	path := filepath.Join(stateRoot, name+".lock")
	deadline := time.Now().Add(janitorWait)
	for {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
		if err != nil {
			return nil, fmt.Errorf("locking %s: %w", name, err)
		}
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if errors.Is(err, unix.EWOULDBLOCK) {
			pid := readPid(f)
			f.Close()
			if pid > 0 && unix.Kill(pid, 0) == nil {
				return nil, fmt.Errorf("%w: %s is already running (safe-run pid %d); stop it first, or give this one another name", ErrAlreadyRunning, name, pid)
			}
			// The holder died; its janitor is cleaning up after it.
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("%w: %s is still locked by the clean-up of a run that died (lock %s)", ErrAlreadyRunning, name, path)
			}
			time.Sleep(20 * time.Millisecond)
			continue
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		// The previous holder may have removed the file between our open
		// and our lock; then we hold a lock nobody else can see.
		if !sameFile(f, path) {
			f.Close()
			continue
		}
		if err := f.Truncate(0); err == nil {
			_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
		}
		return &nameLock{f: f, path: path}, nil
	}
}

func readPid(f *os.File) int {
	buf := make([]byte, 32)
	n, _ := f.ReadAt(buf, 0)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(buf[:n])))
	return pid
}

func sameFile(f *os.File, path string) bool {
	a, err1 := f.Stat()
	b, err2 := os.Lstat(path)
	if err1 != nil || err2 != nil {
		return false
	}
	return os.SameFile(a, b)
}

// release removes the lock file while still holding the lock, so that the
// next start creates a fresh one.
func (l *nameLock) release(log *slog.Logger) {
	if err := os.Remove(l.path); err != nil {
		log.Warn("removing the name lock", "file", l.path, "err", err)
	}
	l.f.Close()
}
