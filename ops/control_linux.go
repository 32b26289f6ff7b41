package ops

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Server is a supervisor's control socket.
type Server struct {
	l     *net.UnixListener
	mu    sync.Mutex
	held  []net.Conn // stop requests' connections, closed with the server
	done  bool
	owner int
	// execs are the exec sessions not yet ended, closed with the
	// server; each leaves the set as it ends (execs may be many over a
	// service's life).
	execs map[*ExecSession]struct{}
}

// Serve listens on the control socket in dir, mode 0600, and passes each
// request of the user who owns this process (or of root) to handle; its
// error is the reply. Requests are read on goroutines of their own, each
// blocked in the kernel until one comes: an idle supervisor is never
// woken.
func Serve(dir string, handle func(Request) error) (*Server, error) {
	path := filepath.Join(dir, ControlFile)
	if err := CheckSocketPath(path); err != nil {
		return nil, fmt.Errorf("creating the control socket: %w", err)
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("creating the control socket: %w", err)
	}
	// The peer check below is the guard; the mode keeps everyone else
	// from connecting at all.
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("creating the control socket: %w", err)
	}
	s := &Server{l: l, owner: os.Geteuid()}
	go s.accept(handle)
	return s, nil
}

func (s *Server) accept(handle func(Request) error) {
	for {
		c, err := s.l.AcceptUnix()
		if err != nil {
			return
		}
		go s.serve(c, handle)
	}
}

func (s *Server) serve(c *net.UnixConn, handle func(Request) error) {
	hold := false
	defer func() {
		if !hold {
			c.Close()
		}
	}()
	uid, err := peerUID(c)
	if err != nil {
		return
	}
	answer := func(err error) {
		var r reply
		if err != nil {
			r.Error = err.Error()
		}
		data, _ := json.Marshal(r)
		_, _ = c.Write(append(data, '\n'))
	}
	// Read the request before any answer, a denial included: closing
	// before the client has written would fail its write (EPIPE) and
	// hide the denial behind "broken pipe".
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	// An exec's request carries files (SCM_RIGHTS): whoever takes them
	// over sets files to nil.
	line, rest, files, err := readLine(c, maxRequest)
	defer func() { closeFiles(files) }()
	if errors.Is(err, errTooLong) {
		answer(fmt.Errorf("%w (exec takes at most 1 MiB of arguments and environment: pass fewer or shorter ones, or a file through stdin)", err))
	}
	if err != nil {
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	if uid != 0 && uid != s.owner {
		data, _ := json.Marshal(reply{Denied: true, Error: fmt.Sprintf("%s did not start this service (uid %d did; or be root)", who(uid), outsideUID(s.owner))})
		_, _ = c.Write(append(data, '\n'))
		return
	}
	var req Request
	if err := json.Unmarshal(line, &req); err != nil {
		answer(fmt.Errorf("a request that is not JSON: %w", err))
		return
	}
	if req.Version != ControlVersion {
		answer(fmt.Errorf("a request of version %d, this supervisor takes version %d (install safe-run and safe-run-tools of one release)", req.Version, ControlVersion))
		return
	}
	req.UID = outsideUID(uid)
	if req.Op == OpExec {
		// The handler owns the session, and so the connection, from
		// here: it answers the start and the end.
		req.Session = &ExecSession{conn: c, Files: files, rest: rest}
		files = nil
	}
	err = handle(req)
	if err != nil && req.Session != nil {
		files = req.Session.Files
	}
	if err != nil || req.Op != OpExec {
		answer(err)
	}
	if err == nil && req.Op == OpStop {
		s.mu.Lock()
		if !s.done {
			s.held = append(s.held, c)
			hold = true
		}
		s.mu.Unlock()
	}
	if err == nil && req.Op == OpExec {
		hold = s.keep(req.Session)
	}
}

// keep holds an exec's session until it ends, or the server closes; it
// says false when either happened already (the connection is closed
// then, or to be).
func (s *Server) keep(e *ExecSession) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	if s.done || e.ended {
		return false
	}
	if s.execs == nil {
		s.execs = map[*ExecSession]struct{}{}
	}
	s.execs[e] = struct{}{}
	e.server = s
	return true
}

// forget lets an ended exec session go.
func (s *Server) forget(e *ExecSession) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.execs, e)
}

// maxRequest bounds a request line: an exec's arguments and environment
// fit, as half of what execve(2) takes on a default 8 MiB stack (ARG_MAX
// 2 MiB). Only the service's user and root may connect (the socket's
// mode), so it bounds what a caller of theirs makes the supervisor hold.
const maxRequest = 1 << 20

// Close stops serving, and closes the connections of stop requests and
// of the execs still running: their clients see the service gone.
func (s *Server) Close() {
	if s == nil {
		return
	}
	s.l.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done = true
	for _, c := range s.held {
		c.Close()
	}
	s.held = nil
	for e := range s.execs {
		e.conn.Close()
	}
	s.execs = nil
}

// outsideUID is uid of this process's user namespace as the namespace
// above sees it (/proc/self/uid_map): rootless, safe-run runs in a user
// namespace of its user's, where the user is uid 0, and the journal and
// the service's output should say who asked as the host knows them. In
// the host's namespace the map is the identity. A uid the map lacks stays
// as it is.
func outsideUID(uid int) int {
	data, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return uid
	}
	return mapID(string(data), uid)
}

// who names the peer uid as the host knows it. In a rootless
// supervisor's namespace every host uid it does not map, the host's root
// included, shows as the overflow uid: that one may be any of them.
func who(uid int) string {
	m, _ := os.ReadFile("/proc/self/uid_map")
	o, _ := os.ReadFile("/proc/sys/kernel/overflowuid")
	return whoIn(string(m), strings.TrimSpace(string(o)), uid)
}

func whoIn(uidMap, overflow string, uid int) string {
	out := mapID(uidMap, uid)
	if overflow != strconv.Itoa(uid) || out == uid {
		return fmt.Sprintf("uid %d", out)
	}
	return fmt.Sprintf("uid %d, or a uid this service's user namespace does not map (the host's root among them; all show as uid %d to it),", out, uid)
}

// mapID maps id through a uid_map's text ("inside outside count" lines).
func mapID(text string, id int) int {
	for _, line := range strings.Split(text, "\n") {
		var in, out, n int
		if _, err := fmt.Sscan(line, &in, &out, &n); err == nil && id >= in && id-in < n {
			return out + id - in
		}
	}
	return id
}

func peerUID(c *net.UnixConn) (int, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if cerr != nil {
		return 0, cerr
	}
	return int(cred.Uid), nil
}

// Send sends req to the service of s and returns its supervisor's answer.
// For a stop, it then waits, until ctx ends, for the supervisor to have
// stopped the service and cleaned up.
func Send(ctx context.Context, s *Status, req Request) error {
	req.Version = ControlVersion
	path := filepath.Join(s.StateDir, ControlFile)
	if err := CheckSocketPath(path); err != nil {
		return fmt.Errorf("%s: reaching its supervisor: %w", s.Name, err)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if errors.Is(err, unix.EACCES) {
			return fmt.Errorf("%s: %w: %w (only who started it, or root, may)", s.Name, ErrNotPermitted, err)
		}
		return fmt.Errorf("%s: reaching its supervisor: %w", s.Name, err)
	}
	defer c.Close()
	listener := listenerPID(c.(*net.UnixConn))
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	data, err := json.Marshal(req)
	if err != nil {
		return err
	}
	if _, err := c.Write(append(data, '\n')); err != nil {
		return fmt.Errorf("%s: %w", s.Name, err)
	}
	r := bufio.NewReader(c)
	line, err := r.ReadBytes('\n')
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", s.Name, ctx.Err())
		}
		return fmt.Errorf("%s: no answer from its supervisor: %w", s.Name, err)
	}
	var rep reply
	if err := json.Unmarshal(line, &rep); err != nil {
		return fmt.Errorf("%s: an answer that is not JSON: %w", s.Name, err)
	}
	if rep.Error != "" {
		if rep.Denied && hostRoot() {
			c.Close()
			return asRoot(ctx, s, listener, req, rep.Error)
		}
		if rep.Denied {
			return fmt.Errorf("%s: %w: %s", s.Name, ErrNotPermitted, rep.Error)
		}
		return fmt.Errorf("%s: %s", s.Name, rep.Error)
	}
	if req.Op != OpStop {
		return nil
	}
	// EOF once the supervisor has closed the server, the service gone
	// and cleaned up after; then the supervisor itself exits, releasing
	// the name for the next start.
	_, _ = io.Copy(io.Discard, r)
	if ctx.Err() == nil {
		waitExit(ctx, s.SupervisorPID)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%s: waiting for it to stop: %w", s.Name, ctx.Err())
	}
	return nil
}
