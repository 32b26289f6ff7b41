package launcher

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// janitor is a small process that outlives safe-run to clean up after it.
// safe-run-init kills the service when safe-run dies (initLink), but the
// container's cgroups and the state directory need someone alive to
// remove them, and the processes of an init = false container someone to
// kill them; a SIGKILLed safe-run cannot. The janitor reads a pipe: first the
// container's cgroup directories ("c" PATH NUL each), which safe-run sends
// once it knows them and before they exist; then "d" if safe-run cleaned
// up itself, or end-of-file if it died. It runs safe-run-janitor (a static
// C program, well under 1 MiB resident) and holds the name lock while it
// works, so the next start waits for it.
type janitor struct {
	w       *os.File
	cmd     *exec.Cmd
	started chan struct{} // closed once the start is done, err set
	err     error
}

// startJanitor starts the janitor in the background: its fork and exec
// overlap the rest of the set-up. The container must not start before
// running says it runs.
//
// ownMounts starts it in a mount namespace of its own, a copy of this
// one's: mounts made here later are not in its way. then is what it runs
// last after a safe-run that died (see safe-run-janitor.c), nil for
// nothing.
func startJanitor(path string, lock *nameLock, removes []string, then []string, ownMounts bool) (*janitor, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	args := []string{"--lock", lock.path}
	for _, d := range removes {
		args = append(args, "--remove", d)
	}
	for i, a := range then {
		flag := "--then-arg"
		if i == 0 {
			flag = "--then"
		}
		args = append(args, flag, a)
	}
	cmd := exec.Command(path, args...)
	cmd.ExtraFiles = []*os.File{r, lock.f}
	// Its own session: ^C on safe-run's terminal must not reach it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if ownMounts {
		cmd.SysProcAttr.Cloneflags = syscall.CLONE_NEWNS
	}
	j := &janitor{w: w, cmd: cmd, started: make(chan struct{})}
	go func() {
		defer close(j.started)
		defer r.Close()
		if j.err = cmd.Start(); j.err != nil {
			j.err = fmt.Errorf("starting the janitor: %w (install safe-run-janitor beside safe-run)", j.err)
		}
	}()
	return j, nil
}

// watchCgroups tells the janitor the container's cgroups, which it
// removes too should safe-run die. A pipe write of a few hundred bytes: it
// never waits. A janitor that could not start says so.
func (j *janitor) watchCgroups(dirs []string) error {
	var b []byte
	for _, d := range dirs {
		b = append(append(append(b, 'c'), d...), 0)
	}
	if _, err := j.w.Write(b); err != nil {
		if serr := j.running(); serr != nil {
			return serr
		}
		return fmt.Errorf("telling the janitor the container's cgroups: %w", err)
	}
	return nil
}

// running waits for the janitor's start and says whether it failed.
func (j *janitor) running() error {
	<-j.started
	return j.err
}

// dismiss tells the janitor that safe-run cleaned up itself. It must come
// before the name lock is released: a janitor that saw safe-run die after
// that could clean up after the next run of the same name.
func (j *janitor) dismiss(log *slog.Logger) {
	if j.running() != nil {
		j.w.Close()
		return
	}
	if _, err := j.w.Write([]byte{'d'}); err != nil {
		// It then cleans up after safe-run, which has already.
		log.Debug("dismissing the janitor", "err", err)
	}
	j.w.Close()
}

// reap waits, a second at most, for the dismissed janitor to exit.
func (j *janitor) reap() {
	if j.running() != nil {
		return
	}
	done := make(chan struct{})
	go func() {
		_ = j.cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(time.Second):
	}
}
