package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// env is what every benchmark shares: the binaries under test, one
// temporary directory for all state, and the clean-ups to run at the end.
type env struct {
	repo     string // the safe-run checkout: bin/, example/rootfs
	rootfs   string // example/rootfs, absolute
	tmp      string // mode 0711, so that mapped ids can traverse it
	runs     int
	warmup   int
	settle   time.Duration
	log      io.Writer
	cleanups []func()
}

func newEnv(repo string) (*env, error) {
	repo, err := filepath.Abs(repo)
	if err != nil {
		return nil, err
	}
	e := &env{repo: repo, rootfs: filepath.Join(repo, "example", "rootfs")}
	for _, p := range []string{e.safeRun(), filepath.Join(repo, "bin", "safe-run-init")} {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("%w (run make build first)", err)
		}
	}
	if _, err := os.Stat(filepath.Join(e.rootfs, "bin", "true")); err != nil {
		return nil, fmt.Errorf("the example rootfs: %w (run make example first)", err)
	}
	tmp, err := os.MkdirTemp("", "safe-run-bench.")
	if err != nil {
		return nil, err
	}
	e.tmp = tmp
	e.defer_(func() { removeAll(tmp) })
	if err := os.Chmod(tmp, 0o711); err != nil {
		return nil, err
	}
	return e, nil
}

func (e *env) safeRun() string { return filepath.Join(e.repo, "bin", "safe-run") }

func (e *env) logf(format string, args ...any) {
	if e.log != nil {
		fmt.Fprintf(e.log, "bench: "+format+"\n", args...)
	}
}

// defer_ registers a clean-up; they run last first.
func (e *env) defer_(f func()) { e.cleanups = append(e.cleanups, f) }

func (e *env) close() {
	for i := len(e.cleanups) - 1; i >= 0; i-- {
		e.cleanups[i]()
	}
	e.cleanups = nil
}

// dir creates a directory under the temporary root, traversable (0711).
func (e *env) dir(elem ...string) (string, error) {
	p := filepath.Join(append([]string{e.tmp}, elem...)...)
	if err := os.MkdirAll(p, 0o711); err != nil {
		return "", err
	}
	return p, os.Chmod(p, 0o711)
}

// removeAll removes dir after unmounting whatever is still mounted below
// it (a daemon that died before unmounting its layers).
func removeAll(dir string) {
	if data, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		var below []string
		for _, l := range strings.Split(string(data), "\n") {
			f := strings.Fields(l)
			if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
				below = append(below, f[4])
			}
		}
		for i := len(below) - 1; i >= 0; i-- {
			_ = unix.Unmount(below[i], unix.MNT_DETACH)
		}
	}
	_ = os.RemoveAll(dir)
}

// command runs name with args and returns its stdout; a failure carries
// the first line of stderr.
func command(ctx context.Context, stdin io.Reader, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = stdin
	return output(cmd)
}

// commandEnv is command with the environment envv and no stdin.
func commandEnv(ctx context.Context, envv []string, argv ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = envv
	return output(cmd)
}

func output(cmd *exec.Cmd) ([]byte, error) {
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.Bytes(), cmdError(cmd.Path, err, errb.Bytes())
	}
	return out.Bytes(), nil
}

func cmdError(name string, err error, stderr []byte) error {
	msg := strings.TrimSpace(string(stderr))
	if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
		msg = msg[i+1:] // runtimes print the cause last
	}
	if msg == "" {
		return fmt.Errorf("%s: %w", filepath.Base(name), err)
	}
	return fmt.Errorf("%s: %w: %s", filepath.Base(name), err, msg)
}

// timedRun returns a trial body that runs argv once with stdin and stdout
// on /dev/null (as a detached service has them), and fails on a non-zero
// exit.
func timedRun(envv []string, argv ...string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Env = envv
		var errb bytes.Buffer
		cmd.Stderr = &errb
		if err := cmd.Run(); err != nil {
			return cmdError(argv[0], err, errb.Bytes())
		}
		return nil
	}
}

// lookPath finds a runtime, or says it is not installed.
func lookPath(name string) (string, error) {
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s %w", name, errNotInstalled)
	}
	return p, nil
}

// version returns the first line of `name args...`.
func version(name string, args ...string) string {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return "unknown"
	}
	s := strings.TrimSpace(string(out))
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

// writeJSON writes v to path.
func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

// copyShifted copies the rootfs to dst with every owner shifted by base:
// what an idmapped mount shows a user namespace mapping 0 to base, as a
// plain directory for runtimes that cannot id-map a rootfs.
func copyShifted(ctx context.Context, src, dst string, base uint32) error {
	if _, err := command(ctx, nil, "cp", "-a", src, dst); err != nil {
		return err
	}
	return filepath.WalkDir(dst, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		// Lchown clears set-id bits; put them back on regular files.
		mode := st.Mode & 0o7777
		if err := unix.Lchown(p, int(base+st.Uid), int(base+st.Gid)); err != nil {
			return err
		}
		if d.Type().IsRegular() && mode&(unix.S_ISUID|unix.S_ISGID) != 0 {
			return unix.Chmod(p, mode)
		}
		return nil
	})
}

// nsThread runs functions on one OS thread that has a private mount
// namespace, so that the processes it starts see mounts the host does not.
// The thread is never unlocked: when stop ends its goroutine, Go retires the
// thread, and its namespace with it.
type nsThread struct {
	work chan func()
	done chan struct{}
}

func newNSThread(setup func() error) (*nsThread, error) {
	t := &nsThread{work: make(chan func()), done: make(chan struct{})}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer close(t.done)
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			errc <- fmt.Errorf("private mount namespace: %w", err)
			return
		}
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			errc <- fmt.Errorf("private mount namespace: %w", err)
			return
		}
		if err := setup(); err != nil {
			errc <- err
			return
		}
		errc <- nil
		for f := range t.work {
			f()
		}
	}()
	if err := <-errc; err != nil {
		<-t.done
		return nil, err
	}
	return t, nil
}

// do runs f on the thread and waits for it.
func (t *nsThread) do(f func()) {
	finished := make(chan struct{})
	t.work <- func() { f(); close(finished) }
	<-finished
}

func (t *nsThread) stop() {
	close(t.work)
	<-t.done
}
