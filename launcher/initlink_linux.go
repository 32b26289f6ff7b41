package launcher

import (
	"encoding/binary"
	"fmt"
	"os"
	"slices"
	"strconv"
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
type initLink struct {
	own   *os.File      // safe-run's end, non-blocking
	peer  *os.File      // the container's end
	fed   chan struct{} // closed once the program is sent, or err set
	err   error
	ready chan struct{} // closed once safe-run-init takes signals
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
		own:   os.NewFile(uintptr(fds[0]), "safe-run-init link"),
		peer:  os.NewFile(uintptr(fds[1]), "safe-run-init link, container end"),
		fed:   make(chan struct{}),
		ready: make(chan struct{}),
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
		if l.err == nil {
			_, l.err = l.own.Write(ll)
		}
	}()
	go func() {
		var b [1]byte
		if n, _ := l.own.Read(b[:]); n == 1 {
			close(l.ready)
		}
	}()
	return l, nil
}

// startsWithInit says whether the process args start safe-run-init.
func startsWithInit(args []string) bool {
	return len(args) >= 3 && args[0] == plan.InitPath && args[1] == "--"
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
	l.peer.Close()
	<-l.fed
	return l.err
}

// close ends the link, once the service has ended.
func (l *initLink) close() { l.own.Close() }

// signalsTaken is closed once the container's first process takes
// signals as the service would: safe-run-init's word on the link, else
// (init = false) the service's exec, seen as pid's name ceasing to be
// that of libcontainer's init. Nothing else tells when that exec
// happens; the watch polls for at most two seconds, about a millisecond
// in all on a start.
func (l *initLink) signalsTaken(pid int) <-chan struct{} {
	if l != nil {
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
