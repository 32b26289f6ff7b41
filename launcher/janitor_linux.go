package launcher

import (
	"os"
	"os/exec"
	"syscall"
	"time"
)

// janitor is a small process that outlives safe-run to clean up after it.
// The container dies with safe-run (parent-death signal), but an empty
// cgroup and the state directory need someone alive to remove them; a
// SIGKILLed safe-run cannot. The janitor waits on a pipe: a byte means
// safe-run cleaned up itself, end-of-file means safe-run died. It runs
// safe-run-init's janitor mode (a static binary of about 1 MiB resident)
// and holds the name lock while it works, so the next start waits for it.
type janitor struct {
	w   *os.File
	cmd *exec.Cmd
}

func startJanitor(path string, lock *nameLock, cgroupDirs, removeDirs []string) (*janitor, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	args := []string{"--lock", lock.path}
	for _, d := range cgroupDirs {
		args = append(args, "--cgroup", d)
	}
	for _, d := range removeDirs {
		args = append(args, "--remove", d)
	}
	cmd := exec.Command(path, args...)
	cmd.ExtraFiles = []*os.File{r, lock.f}
	// Its own session: ^C on safe-run's terminal must not reach it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return nil, err
	}
	return &janitor{w: w, cmd: cmd}, nil
}

// dismiss tells the janitor that safe-run cleaned up itself.
func (j *janitor) dismiss() {
	_, _ = j.w.Write([]byte{1})
	j.w.Close()
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
