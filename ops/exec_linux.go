package ops

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// `safe-run exec` asks the service's supervisor, over the control socket,
// to start the command: the supervisor owns the container, and starts the
// command the way it started the service (launcher/exec_linux.go), so the
// command gets the service's confinement and never more. The socket's
// peer check (root, or who started the service) decides who may.
//
// The conversation, one JSON line each way at a time:
//   - the caller sends the request; without a terminal, with the
//     container's ends of three pipes of its own (SCM_RIGHTS) for stdin,
//     stdout and stderr: the command never gets one of the caller's own
//     descriptors (its terminal, a file, a socket), only pipes, as the
//     service's stdio are (launcher.Stdio).
//   - the supervisor answers the pid once the command runs (with a TTY,
//     the master of the container's new terminal), or an error.
//   - the caller may send signals for the command ({"signal": N}); when
//     it hangs up before the end, the command is killed.
//   - the supervisor sends the command's exit code and hangs up.

// ExecSession is the supervisor's side of one exec's connection.
type ExecSession struct {
	// Files are the container's ends of the caller's pipes, for the
	// command's stdin, stdout and stderr; none for a TTY. The handler
	// closes them once the command has its own.
	Files []*os.File
	conn  *net.UnixConn
	rest  []byte // read past the request
	mu    sync.Mutex
	ended bool
	// server holds the session until it ends (Server.keep); nil before,
	// and when it was never held.
	server *Server
}

// execMessage is what the caller sends after its request.
type execMessage struct {
	Signal int `json:"signal"`
}

// Started tells the caller the command runs as pid (in the container's
// PID namespace, as seen by the supervisor), handing it the terminal's
// master when there is one. The session keeps no copy of master.
func (s *ExecSession) Started(pid int, master *os.File) error {
	data, _ := json.Marshal(reply{PID: pid})
	var oob []byte
	if master != nil {
		oob = unix.UnixRights(int(master.Fd()))
	}
	_, _, err := s.conn.WriteMsgUnix(append(data, '\n'), oob, nil)
	return err
}

// Watch reads the caller's messages until the connection ends, passing on
// each signal; gone is called when the caller hung up (or the server
// closed) before the end was sent.
func (s *ExecSession) Watch(signal func(unix.Signal), gone func()) {
	go func() {
		r := io.MultiReader(bytes.NewReader(s.rest), io.LimitReader(s.conn, 1<<20))
		dec := json.NewDecoder(r)
		for {
			var m execMessage
			if err := dec.Decode(&m); err != nil {
				break
			}
			if m.Signal > 0 && m.Signal <= 64 {
				signal(unix.Signal(m.Signal))
			}
		}
		s.mu.Lock()
		ended := s.ended
		s.mu.Unlock()
		if !ended {
			gone()
		}
	}()
}

// Exited sends the command's exit code and ends the session.
func (s *ExecSession) Exited(code int) {
	s.end(reply{Code: &code})
}

// Fail sends why the command did not start, and ends the session.
func (s *ExecSession) Fail(err error) {
	closeFiles(s.Files)
	s.Files = nil
	s.end(reply{Error: err.Error()})
}

// FailCode is Fail with the exit code the caller exits with: 127 for a
// command that is not there, 126 for one that cannot run.
func (s *ExecSession) FailCode(err error, code int) {
	closeFiles(s.Files)
	s.Files = nil
	s.end(reply{Error: err.Error(), Code: &code})
}

func (s *ExecSession) end(r reply) {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	s.ended = true
	server := s.server
	s.mu.Unlock()
	data, _ := json.Marshal(r)
	_, _ = s.conn.Write(append(data, '\n'))
	s.conn.Close()
	if server != nil {
		server.forget(s)
	}
}

// readLine reads one line from c, at most max bytes, with the files sent
// along with it; rest is what was read past the line.
func readLine(c *net.UnixConn, max int) (line, rest []byte, files []*os.File, err error) {
	buf := make([]byte, 0, 4096)
	oob := make([]byte, unix.CmsgSpace(3*4))
	for {
		i := bytes.IndexByte(buf, '\n')
		if i >= 0 && i < max {
			return buf[:i+1], buf[i+1:], files, nil
		}
		if len(buf) >= max {
			return nil, nil, files, fmt.Errorf("%w: more than %d bytes", errTooLong, max)
		}
		if cap(buf)-len(buf) < 4096 {
			buf = append(buf, make([]byte, 4096)...)[:len(buf)]
		}
		n, oobn, _, _, rerr := c.ReadMsgUnix(buf[len(buf):cap(buf)], oob)
		buf = buf[:len(buf)+n]
		if oobn > 0 {
			files = append(files, parseRights(oob[:oobn])...)
		}
		if rerr != nil {
			return nil, nil, files, rerr
		}
		if n == 0 {
			return nil, nil, files, io.ErrUnexpectedEOF
		}
	}
}

// errTooLong: a request longer than any should be.
var errTooLong = errors.New("a request too long")

// parseRights returns the files of SCM_RIGHTS messages (close-on-exec:
// ReadMsgUnix asks for MSG_CMSG_CLOEXEC).
func parseRights(oob []byte) []*os.File {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var out []*os.File
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			out = append(out, os.NewFile(uintptr(fd), "passed"))
		}
	}
	return out
}

func closeFiles(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// ExecOptions are what `safe-run exec` runs, and where its streams go.
type ExecOptions struct {
	ExecRequest
	Stdin          io.Reader // with TTY, a terminal (*os.File)
	Stdout, Stderr io.Writer
	// Signals are forwarded to the command; the second SIGINT or
	// SIGTERM hangs up instead, which kills it. nil: none.
	Signals <-chan os.Signal
}

// ErrNoTerminal: exec -t from something that is not a terminal.
var ErrNoTerminal = errors.New("stdin is not a terminal")

// Exec runs a command in the running service name (under stateRoot) and
// returns its exit code. When ctx ends, the command is killed. An error
// with a code other than 0 is the command's failure to run (127: not
// found, 126: cannot run), to be said and exited with.
func Exec(ctx context.Context, stateRoot, name string, o ExecOptions) (int, error) {
	if len(o.Args) == 0 {
		return 0, errors.New("no command to run (safe-run exec NAME -- COMMAND [ARG...])")
	}
	list, err := Find(stateRoot, []string{name})
	if err != nil {
		return 0, err
	}
	st := list[0]
	var term *os.File
	if o.TTY {
		f, ok := o.Stdin.(*os.File)
		if ok {
			if ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ); err == nil {
				term, o.Rows, o.Cols = f, ws.Row, ws.Col
			}
		}
		if term == nil {
			return 0, fmt.Errorf("-t: %w (leave out -t, or run from a terminal)", ErrNoTerminal)
		}
	}
	path := filepath.Join(st.StateDir, ControlFile)
	if err := CheckSocketPath(path); err != nil {
		return 0, fmt.Errorf("%s: reaching its supervisor: %w", name, err)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if errors.Is(err, unix.EACCES) {
			return 0, fmt.Errorf("%s: %w: %w (only who started it, or root, may)", name, ErrNotPermitted, err)
		}
		return 0, fmt.Errorf("%s: reaching its supervisor: %w", name, err)
	}
	c := conn.(*net.UnixConn)
	defer c.Close()
	listener := listenerPID(c)
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()

	var out sync.WaitGroup // the command's output, copied until it ends
	req := Request{Version: ControlVersion, Op: OpExec, Exec: &o.ExecRequest}
	data, err := json.Marshal(req)
	if err != nil {
		return 0, err
	}
	var theirs []*os.File
	if !o.TTY {
		p, err := newPipes(o.Stdin, o.Stdout, o.Stderr, &out)
		if err != nil {
			return 0, err
		}
		theirs = p
	}
	var oob []byte
	if len(theirs) > 0 {
		oob = unix.UnixRights(int(theirs[0].Fd()), int(theirs[1].Fd()), int(theirs[2].Fd()))
	}
	msg := append(data, '\n')
	n, _, err := c.WriteMsgUnix(msg, oob, nil)
	var werr error
	if err == nil && n < len(msg) {
		// One sendmsg takes what the socket's buffer holds (a few
		// hundred KiB); the files went with its first byte. A failed
		// write may be the supervisor's refusal of a request too long,
		// said before it hung up: the answer is read first.
		_, werr = c.Write(msg[n:])
	}
	// Only the command holds them now: its end closing is the output's.
	closeFiles(theirs)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}

	line, rest, files, err := readLine(c, maxRequest)
	if err != nil && werr != nil {
		closeFiles(files)
		return 0, fmt.Errorf("%s: %w", name, werr)
	}
	if err != nil {
		closeFiles(files)
		if ctx.Err() != nil {
			return 0, fmt.Errorf("%s: %w", name, ctx.Err())
		}
		return 0, fmt.Errorf("%s: no answer from its supervisor: %w", name, err)
	}
	var rep reply
	if err := json.Unmarshal(line, &rep); err != nil {
		closeFiles(files)
		return 0, fmt.Errorf("%s: an answer that is not JSON: %w", name, err)
	}
	if rep.Error != "" {
		closeFiles(files)
		if rep.Denied && hostRoot() {
			return 0, asRoot(ctx, st, listener, req, rep.Error)
		}
		if rep.Denied {
			return 0, fmt.Errorf("%s: %w: %s", name, ErrNotPermitted, rep.Error)
		}
		code := 0
		if rep.Code != nil {
			code = *rep.Code
		}
		return code, fmt.Errorf("%s: exec: %s", name, rep.Error)
	}
	if o.TTY {
		if len(files) != 1 {
			closeFiles(files)
			return 0, fmt.Errorf("%s: the supervisor sent no terminal", name)
		}
		restore, err := attachTerminal(term, files[0], o.Stdin, o.Stdout, &out)
		if err != nil {
			return 0, err
		}
		defer restore()
	} else {
		closeFiles(files)
	}
	if o.Signals != nil {
		go forwardSignals(c, o.Signals)
	}

	dec := json.NewDecoder(io.MultiReader(bytes.NewReader(rest), c))
	rep = reply{}
	if err := dec.Decode(&rep); err != nil || rep.Code == nil {
		if ctx.Err() != nil {
			return 0, fmt.Errorf("%s: %w", name, ctx.Err())
		}
		if rep.Error != "" {
			return 0, fmt.Errorf("%s: exec: %s", name, rep.Error)
		}
		return 0, fmt.Errorf("%s: the supervisor went away before the command ended (the service ended?)", name)
	}
	// What the command wrote last is in the pipes; a child it left
	// behind may hold them open, hence the bound.
	done := make(chan struct{})
	go func() { out.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
	return *rep.Code, nil
}

// newPipes makes the command's three pipes, copies between them and the
// caller's streams, and returns the container's ends.
func newPipes(stdin io.Reader, stdout, stderr io.Writer, out *sync.WaitGroup) ([]*os.File, error) {
	var ours, theirs []*os.File
	for i := range 3 {
		r, w, err := os.Pipe()
		if err != nil {
			closeFiles(ours)
			closeFiles(theirs)
			return nil, err
		}
		if i == 0 {
			ours, theirs = append(ours, w), append(theirs, r)
		} else {
			ours, theirs = append(ours, r), append(theirs, w)
		}
	}
	if stdin != nil {
		go func() {
			_, _ = io.Copy(ours[0], stdin)
			ours[0].Close()
		}()
	} else {
		ours[0].Close()
	}
	for i, w := range []io.Writer{stdout, stderr} {
		if w == nil {
			w = io.Discard
		}
		out.Go(func() {
			defer ours[i+1].Close()
			_, _ = io.Copy(w, ours[i+1])
		})
	}
	return theirs, nil
}

// attachTerminal puts the caller's terminal in raw mode and copies between
// it and master, following its size; restore puts it back.
func attachTerminal(term, master *os.File, in io.Reader, stdout io.Writer, out *sync.WaitGroup) (func(), error) {
	fd := int(term.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		master.Close()
		return nil, fmt.Errorf("-t: reading the terminal's settings: %w", err)
	}
	raw := *old
	// cfmakeraw(3)
	raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	raw.Oflag &^= unix.OPOST
	raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	raw.Cflag &^= unix.CSIZE | unix.PARENB
	raw.Cflag |= unix.CS8
	raw.Cc[unix.VMIN], raw.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &raw); err != nil {
		master.Close()
		return nil, fmt.Errorf("-t: setting the terminal to raw mode: %w", err)
	}
	resize := make(chan os.Signal, 1)
	signal.Notify(resize, unix.SIGWINCH)
	go func() {
		for range resize {
			if ws, err := unix.IoctlGetWinsize(fd, unix.TIOCGWINSZ); err == nil {
				_ = unix.IoctlSetWinsize(int(master.Fd()), unix.TIOCSWINSZ, ws)
			}
		}
	}()
	go func() { _, _ = io.Copy(master, in) }()
	out.Go(func() {
		// EIO from the master is how a terminal says its last user
		// left.
		_, _ = io.Copy(stdout, master)
	})
	return func() {
		signal.Stop(resize)
		close(resize)
		_ = unix.IoctlSetTermios(fd, unix.TCSETS, old)
	}, nil
}

// forwardSignals sends the caller's signals on to the command; the second
// SIGINT or SIGTERM hangs up, which kills it.
func forwardSignals(c *net.UnixConn, signals <-chan os.Signal) {
	stops := 0
	for sig := range signals {
		n, ok := sig.(unix.Signal)
		if !ok {
			continue
		}
		if n == unix.SIGINT || n == unix.SIGTERM {
			if stops++; stops > 1 {
				c.Close()
				return
			}
		}
		data, _ := json.Marshal(execMessage{Signal: int(n)})
		if _, err := c.Write(append(data, '\n')); err != nil {
			return
		}
	}
}
