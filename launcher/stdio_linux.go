package launcher

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"time"

	"github.com/containerd/console"
	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"
)

// Stdio is the host side of the container's standard streams. safe-run
// always stands between them and the container: the container gets pipes or
// a pseudo-terminal that safe-run owns, never a host file descriptor, which
// could be a terminal (TIOCSTI), a file opened for safe-run, or a socket.
type Stdio struct {
	In       io.Reader
	Out, Err io.Writer
}

// streams connects a container process to Stdio and copies until the
// container's side is closed.
type streams struct {
	closeAfterStart []io.Closer // the container's ends, closed in safe-run once it has started
	copying         sync.WaitGroup
	restore         func() // puts the host terminal back
	resize          chan os.Signal
	consoleSocket   *os.File
}

// pipeStreams gives the process three pipes. Their container ends belong to
// the process user as mapped, so that the service can reopen /dev/stdout
// (many do, e.g. nginx's error_log /dev/stderr).
func pipeStreams(p *libcontainer.Process, stdio Stdio, uid, gid int) (*streams, error) {
	s := &streams{restore: func() {}}
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	for _, f := range []*os.File{inR, outW, errW} {
		if err := f.Chown(uid, gid); err != nil {
			return nil, fmt.Errorf("handing the service its stdio: %w", err)
		}
	}
	p.Stdin, p.Stdout, p.Stderr = inR, outW, errW
	s.closeAfterStart = []io.Closer{inR, outW, errW}
	if stdio.In != nil {
		go func() {
			_, _ = io.Copy(inW, stdio.In)
			inW.Close()
		}()
	} else {
		inW.Close()
	}
	s.copy(stdio.Out, outR)
	s.copy(stdio.Err, errR)
	return s, nil
}

func (s *streams) copy(dst io.Writer, src *os.File) {
	if dst == nil {
		dst = io.Discard
	}
	s.copying.Add(1)
	go func() {
		defer s.copying.Done()
		defer src.Close()
		_, _ = io.Copy(dst, src)
	}()
}

// ttyStreams asks libcontainer for a pseudo-terminal created inside the
// container's own devpts instance, and connects it to the host terminal
// in raw mode.
func ttyStreams(p *libcontainer.Process) (*streams, error) {
	parent, child, err := socketPair()
	if err != nil {
		return nil, err
	}
	p.ConsoleSocket = child
	return &streams{
		closeAfterStart: []io.Closer{child},
		consoleSocket:   parent,
		restore:         func() {},
	}, nil
}

// attachTTY receives the terminal's master side once the container runs.
func (s *streams) attachTTY(stdio Stdio, host console.Console) error {
	defer s.consoleSocket.Close()
	master, err := recvFD(s.consoleSocket)
	if err != nil {
		return fmt.Errorf("receiving the container's terminal: %w", err)
	}
	cons, err := console.ConsoleFromFile(master)
	if err != nil {
		return err
	}
	if err := host.SetRaw(); err != nil {
		return fmt.Errorf("setting the terminal to raw mode: %w", err)
	}
	s.restore = func() { _ = host.Reset() }
	_ = cons.ResizeFrom(host)
	s.resize = make(chan os.Signal, 1)
	signal.Notify(s.resize, unix.SIGWINCH)
	go func() {
		for range s.resize {
			_ = cons.ResizeFrom(host)
		}
	}()
	go func() { _, _ = io.Copy(cons, stdio.In) }()
	s.copying.Add(1)
	go func() {
		defer s.copying.Done()
		// EIO from the master is how a terminal says its last user left.
		_, _ = io.Copy(stdio.Out, cons)
	}()
	return nil
}

func (s *streams) started() {
	for _, c := range s.closeAfterStart {
		c.Close()
	}
}

// finish waits for the output the service left in the pipes, then puts the
// terminal back. A service's orphan could hold a pipe open; it is gone with
// the PID namespace, and the wait is bounded for when it is not.
func (s *streams) finish() {
	done := make(chan struct{})
	go func() {
		s.copying.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
	if s.resize != nil {
		signal.Stop(s.resize)
		close(s.resize)
	}
	s.restore()
}

func socketPair() (parent, child *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	return os.NewFile(uintptr(fds[0]), "console-parent"), os.NewFile(uintptr(fds[1]), "console-child"), nil
}

// recvFD receives one file descriptor sent with SCM_RIGHTS.
func recvFD(sock *os.File) (*os.File, error) {
	name := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := unix.Recvmsg(int(sock.Fd()), name, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return nil, err
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, errors.New("no file descriptor in the message")
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return nil, errors.New("no file descriptor in the message")
	}
	return os.NewFile(uintptr(fds[0]), string(name[:n])), nil
}
