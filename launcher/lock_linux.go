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
			if pid > 0 && unix.Kill(pid, 0) == nil && !dying(pid) {
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

// dying reports whether process pid is on its way out: a SIGKILL
// pending, or already exiting (PF_EXITING). A rootless safe-run's lock is
// held by the inner safe-run, which its Pdeathsig kills when the outer one
// is killed: a start at once after (a restart) found it still alive, and
// was refused as "already running" (the soak, issue 19). Such a holder is
// waited for, as a dead one's janitor is.
//
// Every thread is looked at, not the process's first only: a fatal signal
// is queued on each thread (complete_signal), and the thread that takes
// it off its queue shows neither the signal nor PF_EXITING until it
// reaches do_exit; on a host at load 20 that moment was long enough for a
// restart to be refused (the soak again). The others still show theirs.
func dying(pid int) bool {
	tasks, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	if err != nil {
		return true // gone meanwhile
	}
	for _, task := range tasks {
		if threadDying("/proc/" + strconv.Itoa(pid) + "/task/" + task.Name()) {
			return true
		}
	}
	return false
}

// threadDying reports whether the thread at dir (/proc/PID/task/TID) has
// a SIGKILL pending or is exiting; a thread gone meanwhile is.
func threadDying(dir string) bool {
	status, err := os.ReadFile(dir + "/status")
	if err != nil {
		return true
	}
	for _, line := range strings.Split(string(status), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "SigPnd" && k != "ShdPnd") {
			continue
		}
		if mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64); err == nil && mask&(1<<(unix.SIGKILL-1)) != 0 {
			return true
		}
	}
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return true
	}
	// Fields after the command name, which may hold spaces: state is
	// the first, flags the seventh.
	i := strings.LastIndexByte(string(stat), ')')
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 7 {
		return false
	}
	const pfExiting = 0x4 // include/linux/sched.h
	flags, err := strconv.ParseUint(f[6], 10, 64)
	return f[0] == "Z" || f[0] == "X" || (err == nil && flags&pfExiting != 0)
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
