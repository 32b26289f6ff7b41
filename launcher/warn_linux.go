package launcher

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/ops"
)

// watchLimits watches the service's cgroups while it runs and warns, on w
// and as events, of the limits about to bite (limitWatch). It reads the
// cgroup files (a dozen preads, ops.Sampler) every warnTick while a limit
// is near and every warnIdleTick otherwise, and at once where the kernel
// says something changed: cgroup v2's memory.events and pids.events
// (inotify), v1's OOM notification (cgroup.event_control). An idle
// service's supervisor wakes for it once per warnIdleTick. The returned
// function stops it; a service without cgroup limits is not watched.
func watchLimits(name string, paths map[string]string, w io.Writer, pub *publisher) (stop func()) {
	sampler := ops.NewSampler(paths)
	if _, err := sampler.Read(); err != nil {
		sampler.Close()
		return func() {}
	}
	watch := newLimitWatch()
	memDir := paths["memory"]
	if memDir == "" {
		memDir = paths[""] // v2
	}
	// Named from the start on, each once: the kernel's log is read on
	// from the last one named.
	since := pub.started()
	watch.victims = func() []string {
		if since == 0 {
			return nil
		}
		var v []string
		v, since = oomVictims(memDir, since)
		return v
	}
	// Notified first, sampled after: what happens in between is in the
	// first sample, or notified.
	changed := make(chan struct{}, 1)
	var closers []io.Closer
	if dir, ok := paths[""]; ok && paths["memory"] == "" {
		if f, err := inotifyFiles(filepath.Join(dir, "memory.events"), filepath.Join(dir, "pids.events")); err == nil {
			closers = append(closers, f)
			go wakeOn(f, changed)
		}
	} else if ev, ctl, err := oomEventsV1(paths["memory"]); err == nil {
		closers = append(closers, ev, ctl)
		go wakeOn(ev, changed)
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTimer(0) // the first sample at once
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			case <-changed:
				// An OOM kill is told before the process is gone,
				// and may be of the service's init: let it end
				// first, so that the exit says it, not a warning.
				select {
				case <-done:
					return
				case <-time.After(scaled(500*time.Millisecond, scale())):
				}
			}
			s, err := sampler.Read()
			if err == nil {
				for _, warn := range watch.observe(s) {
					// Recorded first: whoever reads the line finds
					// the event (safe-run events) and the count.
					pub.warn(warn.condition, warn.message)
					if w != nil {
						fmt.Fprintf(w, "safe-run: %s: %s\n", name, warn.message)
					}
				}
			} // else the cgroup goes as the service ends
			t.Reset(watch.next())
		}
	}()
	return func() {
		close(done)
		<-finished
		sampler.Close()
		for _, c := range closers {
			c.Close()
		}
	}
}

// wakeOn sends on changed each time f (an inotify instance or an
// eventfd, non-blocking, read through Go's poller: no thread waits on it)
// becomes readable; it returns once f is closed. It reads at most twice a
// second: meanwhile the kernel merges what comes (a fork bomb at the pids
// limit changes pids.events thousands of times a second).
func wakeOn(f *os.File, changed chan<- struct{}) {
	buf := make([]byte, 4096)
	for {
		if _, err := f.Read(buf); err != nil {
			return
		}
		select {
		case changed <- struct{}{}:
		default:
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// inotifyFiles watches files for changes: cgroup v2 notifies a change of
// its *.events files to inotify (IN_MODIFY). A file the kernel lacks is
// left out.
func inotifyFiles(paths ...string) (*os.File, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, err
	}
	n := 0
	for _, p := range paths {
		if _, err := unix.InotifyAddWatch(fd, p, unix.IN_MODIFY); err == nil {
			n++
		}
	}
	if n == 0 {
		unix.Close(fd)
		return nil, os.ErrNotExist
	}
	return os.NewFile(uintptr(fd), "inotify"), nil
}

// oomEventsV1 asks cgroup v1's memory controller to notify an eventfd of
// every OOM in the cgroup at memDir (cgroup.event_control with
// memory.oom_control, as runc's notify_linux.go does). It returns the
// eventfd, and the control file, which must stay open as long.
func oomEventsV1(memDir string) (ev, ctl *os.File, err error) {
	if memDir == "" {
		return nil, nil, os.ErrNotExist
	}
	ctl, err = os.Open(filepath.Join(memDir, "memory.oom_control"))
	if err != nil {
		return nil, nil, err
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		ctl.Close()
		return nil, nil, err
	}
	ev = os.NewFile(uintptr(efd), "oom-eventfd")
	raw, err := ctl.SyscallConn()
	if err == nil {
		cerr := raw.Control(func(fd uintptr) {
			err = os.WriteFile(filepath.Join(memDir, "cgroup.event_control"), fmt.Appendf(nil, "%d %d", efd, fd), 0)
		})
		if cerr != nil {
			err = cerr
		}
	}
	if err != nil {
		ev.Close()
		ctl.Close()
		return nil, nil, err
	}
	return ev, ctl, nil
}
