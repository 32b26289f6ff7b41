package launcher

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"github.com/opencontainers/runc/libcontainer"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/ops"
	"github.com/safe-run/safe-run/plan"
)

// `safe-run exec NAME -- CMD` runs CMD in the running service with exactly
// the service's confinement, and never more. The request comes over the
// control socket (ops/exec_linux.go) to this supervisor, which owns the
// libcontainer container, and which starts CMD as libcontainer starts any
// process in a running container (runc exec's setns path), from the
// thread that holds the rootfs view: CMD joins every namespace of the
// service (user, mount, PID, network, IPC, UTS, cgroup) and its cgroup, so
// the limits count it, and gets the service's capabilities, no_new_privs,
// AppArmor profile and rlimits from the same spec the service got them
// from.
//
// The seccomp filter and the Landlock ruleset are the service's own: the
// program safe-run-init loaded (safe-run compiled it; the container's
// libcontainer configuration then holds none, see takeSeccomp) and the
// ruleset it applied are kept, and CMD's first program is safe-run-init
// again, in its exec mode (--exec-fd), which reads them on a pipe and
// applies them as the init did, then execs CMD. The alternative, a filter
// libcontainer compiles again for exec, would be a second filter that
// could differ from the first; and without one, the configuration's nil
// would have started CMD unfiltered. When libcontainer loads the filter
// itself (init = false, a notifying filter, new privileges allowed), the
// container's configuration still holds it, and libcontainer loads it for
// CMD too. exec refuses to start CMD when neither holds: a service with a
// filter never gets an unfiltered command.
//
// A terminal (-t) is a new one of the container's devpts, as tty = true
// makes it, whose master goes to the caller; without one, CMD's stdio are
// the caller's pipes, never another kind of descriptor.

// execer starts the exec'd commands of one run, on the run's thread.
type execer struct {
	container *libcontainer.Container
	spec      *specs.Spec
	host      plan.Placement
	opts      runOpts
	init      *initLink // nil: init = false, libcontainer's loads the filter
	running   sync.WaitGroup
}

// start starts req's command and answers its caller; what it runs as is
// said in the journal and on the service's output, as is its end.
func (e *execer) start(req ops.Request) {
	s, x := req.Session, req.Exec
	p, feed, err := e.process(x, s.Files)
	switch {
	case errors.Is(err, ErrCommandNotFound):
		s.FailCode(err, 127)
		return
	case errors.Is(err, ErrCommandNotExecutable):
		s.FailCode(err, 126)
		return
	case err != nil:
		s.Fail(err)
		return
	}
	var console *os.File
	if x.TTY {
		parent, child, err := socketPair()
		if err != nil {
			feed.Close()
			s.Fail(err)
			return
		}
		defer parent.Close()
		p.ConsoleSocket = child
		p.ConsoleWidth, p.ConsoleHeight = x.Cols, x.Rows
		console = parent
	}
	err = e.container.Run(p)
	if p.ConsoleSocket != nil {
		p.ConsoleSocket.Close()
	}
	feed.Close() // a write still under way ends (EPIPE) if the start failed
	closeFiles(s.Files)
	s.Files = nil
	if err != nil {
		s.Fail(fmt.Errorf("starting %s: %w", x.Args[0], err))
		return
	}
	var master *os.File
	if console != nil {
		if master, err = recvFD(console); err != nil {
			_ = p.Signal(unix.SIGKILL)
			_, _ = p.Wait()
			s.Fail(fmt.Errorf("receiving the command's terminal: %w", err))
			return
		}
		defer master.Close() // the caller has its own
	}
	pid, _ := p.Pid()
	name := commandName(x.Args[0])
	what := fmt.Sprintf("exec %s as %d:%d by uid %d (pid %d)", name, p.UID, p.GID, req.UID, pid)
	e.say(ops.EventExec, what, nil)
	if err := s.Started(pid, master); err != nil {
		_ = p.Signal(unix.SIGKILL)
	}
	s.Watch(func(sig unix.Signal) { _ = p.Signal(sig) }, func() { _ = p.Signal(unix.SIGKILL) })
	e.running.Go(func() {
		st, _ := p.Wait()
		code := 255
		if st != nil {
			code = st.ExitCode()
			if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				code = 128 + int(ws.Signal())
			}
		}
		// Said before the caller learns the code: once safe-run exec
		// has returned, the journal has the end.
		e.say(ops.EventExecEnd, fmt.Sprintf("exec %s (pid %d) exited with code %d", name, pid, code), &code)
		s.Exited(code)
	})
}

// commandName is the command as the service's output and journal show
// it: quoted when it holds what could pass for a line of their own.
func commandName(s string) string {
	if strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) {
		return strconv.Quote(s)
	}
	return s
}

// say records an exec's start or end as an event and a line of the
// service's output.
func (e *execer) say(kind, msg string, code *int) {
	e.opts.pub.event(kind, msg, code)
	if e.opts.Ending != nil {
		fmt.Fprintf(e.opts.Ending, "safe-run: %s: %s\n", e.opts.Name, msg)
	}
}

// process makes the command's process from the service's: its user
// unless x names one, its capabilities, no_new_privs, AppArmor profile
// and rlimits, its environment with x's over it; and, when safe-run-init
// loaded the service's filter and ruleset, safe-run-init first, fed them
// on the returned pipe.
func (e *execer) process(x *ops.ExecRequest, files []*os.File) (*libcontainer.Process, io.Closer, error) {
	if len(x.Args) == 0 || x.Args[0] == "" {
		return nil, nil, errors.New("no command to run")
	}
	sp := *e.spec.Process
	sp.Terminal = x.TTY
	add := x.Env
	if x.User != "" {
		u, home, err := plan.LookupUser(e.spec.Annotations[plan.AnnotationRootfs], x.User)
		if err != nil {
			return nil, nil, fmt.Errorf("-u %w", err)
		}
		if e.container.Config().RootlessEUID {
			u.AdditionalGids = nil // libcontainer cannot set them there
		}
		sp.User = u
		// The user's home, as the service's user has its own (plan's
		// environment); -e HOME=... comes after, and wins.
		add = append([]string{"HOME=" + home}, x.Env...)
	}
	if x.Cwd != "" {
		if !path.IsAbs(x.Cwd) {
			return nil, nil, fmt.Errorf("-w %s: use an absolute path in the container", x.Cwd)
		}
		if err := e.checkCwd(x.Cwd); err != nil {
			return nil, nil, err
		}
		sp.Cwd = x.Cwd
	}
	env, err := mergeEnv(sp.Env, add)
	if err != nil {
		return nil, nil, err
	}
	sp.Env = env
	feed, err := execFeed(e.spec.Linux.Seccomp != nil, e.container.Config().Seccomp != nil, e.opts.Landlock != nil, e.init)
	if err != nil {
		return nil, nil, err
	}
	if feed != nil {
		sp.Args = append([]string{plan.InitPath, "--exec-fd", "3", "--"}, x.Args...)
	} else {
		sp.Args = x.Args
		// libcontainer's init looks the command up itself, and says
		// only in words that it is not there: the codes of a missing
		// or unrunnable command come from the image beforehand, as
		// for the service (with init, safe-run-init gives them).
		probe := *e.spec
		probe.Process = &sp
		if err := preflightCommand(&probe); err != nil {
			return nil, nil, err
		}
	}
	p, err := newProcess(&sp)
	if err != nil {
		return nil, nil, err
	}
	p.Init = false
	if !x.TTY {
		if err := e.stdio(p, files); err != nil {
			return nil, nil, err
		}
	}
	var closer io.Closer = io.NopCloser(nil)
	if feed != nil {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, nil, err
		}
		go func() {
			_, _ = w.Write(feed)
			w.Close()
		}()
		p.ExtraFiles = append(p.ExtraFiles, r)
		closer = r
	}
	return p, closer, nil
}

// checkCwd refuses a working directory the service does not have,
// looked up in the service's root, through its mounts, as the command
// would see it: libcontainer said only that the chdir "set in
// config.json" failed.
func (e *execer) checkCwd(cwd string) error {
	st, err := e.container.State()
	if err != nil {
		return nil // the runtime's error, then
	}
	h, err := pathrs.OpenInRoot("/proc/"+strconv.Itoa(st.InitProcessPid)+"/root", cwd)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR) {
		return fmt.Errorf("-w %s: no such directory in the service (name one that exists there)", cwd)
	}
	if err != nil {
		return nil
	}
	defer h.Close()
	if fi, err := h.Stat(); err == nil && !fi.IsDir() {
		return fmt.Errorf("-w %s: not a directory in the service (name a directory)", cwd)
	}
	return nil
}

// execFeed decides how the command gets the service's seccomp filter and
// Landlock ruleset: what safe-run-init is fed for it, or nil when it runs
// without safe-run-init, libcontainer loading the filter that config
// holds. filtered: the service has a filter; configHolds: libcontainer's
// configuration still holds it (safe-run-init did not take it over);
// ruleset: the service has a Landlock ruleset; init: the service's
// safe-run-init's link, nil with init = false. It refuses every case
// where the command would get less than the service.
func execFeed(filtered, configHolds, ruleset bool, init *initLink) ([]byte, error) {
	taken := filtered && !configHolds
	if init == nil {
		switch {
		case taken:
			return nil, errors.New("the service's seccomp filter is not at hand: not running the command without it")
		case ruleset:
			return nil, errors.New("the service's Landlock ruleset needs safe-run-init to apply it (init = true): not running the command without it")
		}
		return nil, nil
	}
	<-init.fed
	if init.programErr != nil {
		return nil, fmt.Errorf("the service's seccomp program: %w", init.programErr)
	}
	if taken && !wholeProgram(init.program) {
		return nil, errors.New("the service's seccomp program is not at hand: not running the command without it")
	}
	if len(init.program) < 8 || len(init.landlock) < 4 {
		return nil, errors.New("the service's seccomp program or Landlock ruleset is not at hand: not running the command without them")
	}
	return append(slices.Clone(init.program), init.landlock...), nil
}

// stdio gives p the caller's pipes, owned by its user as mapped, as the
// service's are (pipeStreams): only pipes, whatever the caller sent.
func (e *execer) stdio(p *libcontainer.Process, files []*os.File) error {
	if len(files) != 3 {
		return fmt.Errorf("%d files for stdin, stdout and stderr, want 3", len(files))
	}
	uid, gid := int(e.host.IDs.UID)+p.UID, int(e.host.IDs.GID)+p.GID
	for _, f := range files {
		st, err := f.Stat()
		if err != nil {
			return err
		}
		if st.Mode()&fs.ModeNamedPipe == 0 {
			return fmt.Errorf("stdio of mode %s: only pipes are handed to the command", st.Mode())
		}
		if err := f.Chown(uid, gid); err != nil {
			return fmt.Errorf("handing the command its stdio: %w", err)
		}
	}
	p.Stdin, p.Stdout, p.Stderr = files[0], files[1], files[2]
	return nil
}

// wholeProgram says whether prog, as safe-run-init takes it, holds
// instructions.
func wholeProgram(prog []byte) bool {
	return len(prog) >= 8 && binary.NativeEndian.Uint32(prog[4:]) > 0
}

// wait waits, for a few seconds at most, for the commands to have ended:
// once the service's init has, they have been killed.
func (e *execer) wait() {
	done := make(chan struct{})
	go func() { e.running.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		e.opts.Logger.Warn("exec'd commands still running after the service ended")
	}
}

// mergeEnv sets each of add's K=V over env.
func mergeEnv(env, add []string) ([]string, error) {
	out := slices.Clone(env)
	for _, kv := range add {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("-e %q: use KEY=VALUE", kv)
		}
		out = slices.DeleteFunc(out, func(e string) bool { return strings.HasPrefix(e, k+"=") })
		out = append(out, kv)
	}
	return out, nil
}

func closeFiles(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}
