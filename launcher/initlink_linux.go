package launcher

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/plan"
)

// initLink is safe-run's line to safe-run-init: a socket pair whose
// container end is safe-run-init's only extra file (--control-fd).
//   - safe-run sends the seccomp program for safe-run-init to load (see
//     seccomp_linux.go), or an empty one when libcontainer loads the
//     filter itself.
//   - then the Landlock ruleset for safe-run-init to apply (see package
//     landlock, Ruleset.Encode), or the word that there is none.
//   - safe-run-init answers one byte once it takes signals. Until then
//     safe-run holds the service's: before, they would reach
//     libcontainer's init, which dies of most (exit status 2).
//   - safe-run keeps its end open while the service runs: when it closes,
//     safe-run was killed, and safe-run-init kills the service. The
//     janitor cleans up after both; it may have been killed too.
//
// With init = false under Landlock (plan.NoInitFlag) safe-run-init does
// not stay: it applies what it was sent and execs the service, and its
// end of the socket closes at that exec (close-on-exec). That closing is
// the word that the service takes its signals.
type initLink struct {
	own    *os.File      // safe-run's end, non-blocking
	peer   *os.File      // the container's end
	fed    chan struct{} // closed once the program is sent, or err set
	err    error
	ready  chan struct{} // closed once safe-run-init, or the service it became, takes signals
	noInit bool          // safe-run-init execs the service (plan.NoInitFlag)
	// hold, when set, keeps the ruleset from safe-run-init until
	// release: a recording marks the container's mounts first (see
	// accessWatch), a service with a network of its own waits for its
	// link and firewall (run.locked), and safe-run-init starts nothing
	// before its ruleset.
	hold    chan struct{}
	release func()
	// What safe-run-init got, kept for `safe-run exec` (exec_linux.go),
	// set before fed is closed: the seccomp program (empty: none, or
	// libcontainer loads config's), or why there is none; the Landlock
	// ruleset.
	program    []byte
	programErr error
	landlock   []byte
}

// newInitLink starts the link when the process starts with safe-run-init,
// taking config's seccomp filter over when it can; else it returns nil.
func newInitLink(spec *specs.Spec, config *configs.Config, opts runOpts) (*initLink, error) {
	if !startsWithInit(spec.Process.Args) {
		return nil, nil
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("a socket for safe-run-init: %w", err)
	}
	// Only safe-run's end: the container's stays blocking.
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return nil, err
	}
	l := &initLink{
		own:    os.NewFile(uintptr(fds[0]), "safe-run-init link"),
		peer:   os.NewFile(uintptr(fds[1]), "safe-run-init link, container end"),
		fed:    make(chan struct{}),
		ready:  make(chan struct{}),
		noInit: spec.Process.Args[1] == plan.NoInitFlag,
	}
	l.release = func() {}
	if opts.accesses != nil || opts.Network != nil {
		l.hold = make(chan struct{})
		l.release = sync.OnceFunc(func() { close(l.hold) })
	}
	sc := takeSeccomp(config)
	ll, err := opts.Landlock.Encode()
	if err != nil {
		l.own.Close()
		l.peer.Close()
		return nil, err
	}
	l.landlock = ll
	go func() {
		defer close(l.fed)
		if sc == nil {
			// An empty program: flags and count 0.
			l.program = binary.NativeEndian.AppendUint64(nil, 0)
		} else {
			l.program, l.programErr = seccompProgram(sc, opts)
		}
		if l.err = l.programErr; l.err == nil {
			_, l.err = l.own.Write(l.program)
		}
		if l.hold != nil {
			<-l.hold
		}
		if l.err == nil {
			_, l.err = l.own.Write(ll)
		}
	}()
	go func() {
		var b [1]byte
		n, err := l.own.Read(b[:])
		if n == 1 || l.noInit && errors.Is(err, io.EOF) {
			close(l.ready)
		}
	}()
	return l, nil
}

// startsWithInit says whether the process args start safe-run-init, as
// init or to exec the service (plan.NoInitFlag).
func startsWithInit(args []string) bool {
	return len(args) >= 3 && args[0] == plan.InitPath && len(plan.ServiceArgs(args)) < len(args)
}

// attach has the process's first program, safe-run-init, take the link,
// which the process inherits as its first extra file.
func (l *initLink) attach(p *libcontainer.Process) {
	p.ExtraFiles = append(p.ExtraFiles, l.peer)
	fd := 2 + len(p.ExtraFiles)
	p.Args = slices.Insert(slices.Clone(p.Args), 1, "--control-fd", strconv.Itoa(fd))
}

// sent closes safe-run's copy of the container's end, once the container
// has its own, and returns once the program is sent, with why not if it
// is not.
func (l *initLink) sent() error {
	l.release()
	l.peer.Close()
	<-l.fed
	return l.err
}

// started says the container runs, as pid: what holds the ruleset back
// (a recording's watch) starts now, and the ruleset goes.
func (l *initLink) started(pid int, spec *specs.Spec, opts runOpts) {
	if opts.accesses != nil {
		opts.accesses.start(pid, spec)
	}
	if l != nil {
		l.release()
	}
}

// close ends the link, once the service has ended.
func (l *initLink) close() { l.own.Close() }

// signalsTaken is closed once the container's first process takes
// signals as the service would: safe-run-init's word on the link, or its
// end closing at the service's exec (plan.NoInitFlag), else
// (init = false) the service's exec, seen as pid's name ceasing to be
// that of libcontainer's init. Nothing else tells when that exec
// happens; the watch polls for at most two seconds, about a millisecond
// in all on a start.
func (l *initLink) signalsTaken(pid int) <-chan struct{} {
	if l != nil {
		if l.noInit {
			// The container has its end by now: safe-run's copy
			// must not keep it open past the exec that closes it.
			l.peer.Close()
		}
		return l.ready
	}
	c := make(chan struct{})
	go func() {
		defer close(c)
		comm := fmt.Sprintf("/proc/%d/comm", pid)
		for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Microsecond) {
			if name, err := os.ReadFile(comm); err != nil || string(name) != libcontainerInitName {
				return
			}
		}
	}()
	return c
}

// libcontainerInitName is the name of libcontainer's init until it execs
// the service (nsexec.c).
const libcontainerInitName = "runc:[2:INIT]\n"
