package network

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// tcpLoop forwards every published TCP port of one forwarders: it accepts
// the clients, dials the service and splices both ways, for every
// connection, in one goroutine, over an epoll instance of its own.
//
// Why not a goroutine or two per connection on Go's poller (the forwarder
// before issue 16's second round): on the 2-core development VM, a
// paravirtualised one where system calls and context switches are dear,
// perf counted per connection of the bench's connect row 50 system calls
// and 16.5 context switches in the supervisor, of which only about 22
// calls were the connection's own work (accept, socket, options, bind,
// connect, splice, shutdown, close); the rest was the runtime handing
// goroutines between threads: futex wakeups of idle threads for each new
// goroutine and each one the poller readied, their epoll_pwait and
// nanosleep while they spun for work, and an epoll_ctl to add and another
// to remove each socket. Here a connection's events wake this one
// goroutine, which does the work itself: the sockets are added to the
// epoll set once (edge-triggered, so never modified) and leave it with
// their close: about 35 system calls (a third of them epoll_pwait, the
// poller's and the loop's) and 4.7 context switches per connection.
// docs/networking.md (The forwarder) has the counts and the bench.
//
// What it gives up: one thread per service does all of that service's
// forwarding, where goroutines spread over every core. A service whose
// published ports move more than a core's worth of splicing would need
// more loops, each with its own connections (not built: the supervisor
// runs one service, and its forwarding is a fraction of the service's own
// work).
//
// The loop does not block in epoll_wait: it parks in Go's poller on its
// epoll descriptor, readable while events are ready in it, and takes them
// without waiting (a blocking epoll_wait kept the goroutine in one long
// system call, whose processor sysmon took back every 10 ms, and each
// return then woke sysmon for a millisecond of polling; see
// rawsys_linux.go for the other half of that).
type tcpLoop struct {
	fw    *forwarders
	ep    int      // the epoll instance
	epf   *os.File // ep in Go's poller, where the loop waits
	wake  int      // an eventfd: stop's word to end
	lns   []*tcpListen
	conns map[int32]*tcpConn // by each of their two sockets
	gen   int32              // the last connection's number, to tell a stale event from a reused fd's
	live  int                // connections open, up to max
	max   int                // tcpMaxConns (the tests' fewer)
	full  bool               // the listeners are off: max reached
	pipes []splicePipe       // idle, empty pipes, up to pipePoolSize

	connecting map[*tcpConn]struct{} // connections whose dial has not completed yet
}

// tcpListen is one published TCP port: a listening socket of the loop's
// own (never in Go's poller, whose wakeups the loop avoids).
type tcpListen struct {
	fd     int
	target netip.AddrPort
	name   string // 127.0.0.1:8080/tcp, for logs
	// resume is when accepting starts again after an error such as EMFILE
	// (zero: it is not paused).
	resume time.Time
}

// tcpConn is one forwarded connection: the client's socket and the one to
// the service, and a direction each way.
type tcpConn struct {
	gen        int32
	ln         *tcpListen
	client     netip.AddrPort // for logs
	cli, srv   int
	up, down   half      // client to service, service to client
	connecting bool      // the dial has not completed
	deadline   time.Time // when connecting: the dial's end
}

// half is one direction of a connection: what src sends, spliced to dst
// through a pipe held only while data is in it.
type half struct {
	src, dst int
	p        splicePipe
	hasPipe  bool
	inPipe   int  // bytes read from src not yet written to dst
	done     bool // src's EOF, passed on to dst as a half-close
}

// A listener's events: edge-triggered too, so that every event of the
// loop's epoll instance makes it readable to Go's poller (the kernel
// re-queues a level-triggered item that is still ready without telling
// the poller), and accept takes connections until none is left.
const listenEvents = unix.EPOLLIN | unix.EPOLLET

// The two sockets' events: edge-triggered, so each arrival of data, room
// or a FIN is reported once, and a socket's interest never changes.
const connEvents = unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET

func newTCPLoop(fw *forwarders) (*tcpLoop, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(ep)
		return nil, os.NewSyscallError("eventfd", err)
	}
	l := &tcpLoop{fw: fw, ep: ep, wake: wake, max: tcpMaxConns, conns: make(map[int32]*tcpConn), connecting: make(map[*tcpConn]struct{})}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, wake, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Fd: int32(wake)}); err != nil {
		l.closeAll()
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	// Non-blocking, os.NewFile puts it in Go's poller: an epoll instance
	// is readable while events are ready in it.
	if err := unix.SetNonblock(ep, true); err != nil {
		l.closeAll()
		return nil, os.NewSyscallError("fcntl", err)
	}
	l.epf = os.NewFile(uintptr(ep), "epoll")
	return l, nil
}

// add takes the listening socket fd (non-blocking, owned by the loop from
// now on) for the port forwarded to target. It is called before run.
func (l *tcpLoop) add(fd int, target netip.AddrPort, name string) error {
	t := &tcpListen{fd: fd, target: target, name: name}
	l.lns = append(l.lns, t)
	if err := unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: listenEvents, Fd: int32(fd)}); err != nil {
		return fmt.Errorf("publishing %s: %w", name, os.NewSyscallError("epoll_ctl", err))
	}
	return nil
}

// stop asks run to end; run closes everything.
func (l *tcpLoop) stop() {
	_, _ = unix.Write(l.wake, []byte{1, 0, 0, 0, 0, 0, 0, 0})
}

// run forwards until stop. It parks in Go's poller until the loop's epoll
// instance has events, and takes them without waiting.
func (l *tcpLoop) run() {
	defer l.closeAll()
	rc, err := l.epf.SyscallConn()
	if err != nil {
		l.fw.log.Error("port: waiting for connections", "err", err)
		return
	}
	events := make([]unix.EpollEvent, 64)
	var deadline time.Time
	for {
		if next := l.next(); !next.Equal(deadline) {
			deadline = next
			_ = l.epf.SetReadDeadline(deadline)
		}
		stop := false
		err := rc.Read(func(uintptr) bool {
			stop = l.poll(events)
			return stop
		})
		switch {
		case stop:
			return
		case errors.Is(err, os.ErrDeadlineExceeded):
			l.expire()
		case err != nil:
			l.fw.log.Error("port: waiting for connections", "err", err)
			return
		}
	}
}

// poll handles every event ready now; true: stop asked the loop to end.
func (l *tcpLoop) poll(events []unix.EpollEvent) bool {
	for {
		n, err := rawEpollPoll(l.ep, events)
		if err != nil {
			l.fw.log.Error("port: waiting for connections", "err", os.NewSyscallError("epoll_pwait", err))
			return true
		}
		if n == 0 {
			return false
		}
		for _, ev := range events[:n] {
			switch {
			case ev.Fd == int32(l.wake):
				return true
			case ev.Pad == 0: // a listener's (connections count from 1)
				for _, t := range l.lns {
					if int32(t.fd) == ev.Fd {
						l.accept(t)
					}
				}
			default:
				c := l.conns[ev.Fd]
				if c == nil || c.gen != ev.Pad {
					continue // closed earlier in this batch
				}
				l.event(c, int(ev.Fd), ev.Events)
			}
		}
		l.expire()
		if n < len(events) {
			// Every item is edge-triggered: whatever becomes ready from
			// now on makes the instance readable again.
			return false
		}
	}
}

// next is when the loop must wake without an event: the first dial's
// deadline or a paused listener's resumption; zero: never.
func (l *tcpLoop) next() time.Time {
	var next time.Time
	for c := range l.connecting {
		if next.IsZero() || c.deadline.Before(next) {
			next = c.deadline
		}
	}
	for _, t := range l.lns {
		if !t.resume.IsZero() && (next.IsZero() || t.resume.Before(next)) {
			next = t.resume
		}
	}
	return next
}

// expire ends the dials past their deadline and resumes paused listeners.
func (l *tcpLoop) expire() {
	if len(l.connecting) == 0 && !l.paused() {
		return
	}
	now := time.Now()
	for c := range l.connecting {
		if now.After(c.deadline) {
			l.fail(c, fmt.Errorf("connect: no answer within %s", dialTimeout))
		}
	}
	for _, t := range l.lns {
		if !t.resume.IsZero() && !now.Before(t.resume) {
			t.resume = time.Time{}
			if !l.full {
				l.listening(t, true)
			}
		}
	}
}

func (l *tcpLoop) paused() bool {
	for _, t := range l.lns {
		if !t.resume.IsZero() {
			return true
		}
	}
	return false
}

// listening turns t's events on or off.
func (l *tcpLoop) listening(t *tcpListen, on bool) {
	var events uint32
	if on {
		// Edge-triggered: turned on, a listener with connections waiting
		// is ready at once (ep_modify polls it), so none is left behind.
		events = listenEvents
	}
	_ = rawEpollCtl(l.ep, unix.EPOLL_CTL_MOD, t.fd, &unix.EpollEvent{Events: events, Fd: int32(t.fd)})
}

// accept takes the connections waiting on t, until none is left (the
// listener is edge-triggered), the loop is full or t is paused.
func (l *tcpLoop) accept(t *tcpListen) {
	for !l.full && t.resume.IsZero() && l.accept1(t) {
	}
}

// accept1 takes one connection from t and dials the service for it;
// false when there was none to take.
func (l *tcpLoop) accept1(t *tcpListen) bool {
	fd, client, err := rawAccept4(t.fd)
	switch {
	case errors.Is(err, unix.EINTR) || errors.Is(err, unix.ECONNABORTED):
		return true
	case errors.Is(err, unix.EAGAIN):
		return false
	case err != nil:
		// EMFILE and the like: pause this port a while, as net/http does,
		// rather than spin on a connection it cannot take.
		l.fw.log.Warn("port: accepting", "port", t.name, "err", os.NewSyscallError("accept4", err))
		t.resume = time.Now().Add(100 * time.Millisecond)
		l.listening(t, false)
		return false
	}
	c := &tcpConn{ln: t, cli: fd, srv: -1, client: client}
	l.live++
	if l.live >= l.max {
		// Past the bound, new connections wait in the listen backlog.
		l.full = true
		for _, t := range l.lns {
			l.listening(t, false)
		}
	}
	l.gen++
	if l.gen <= 0 {
		l.gen = 1
	}
	c.gen = l.gen
	srv, connected, err := dialService(l.fw.sourceAddr(c.client.Addr()), t.target)
	if err != nil {
		l.fail(c, err)
		return true
	}
	c.srv = srv
	c.up = half{src: c.cli, dst: c.srv}
	c.down = half{src: c.srv, dst: c.cli}
	l.conns[int32(c.cli)], l.conns[int32(c.srv)] = c, c
	l.fw.trackConn(c)
	for _, fd := range []int{c.cli, c.srv} {
		if err := rawEpollCtl(l.ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: connEvents, Fd: int32(fd), Pad: c.gen}); err != nil {
			l.fail(c, os.NewSyscallError("epoll_ctl", err))
			return true
		}
	}
	if !connected {
		c.connecting = true
		c.deadline = time.Now().Add(dialTimeout)
		l.connecting[c] = struct{}{}
		return true
	}
	// The client's request is usually waiting already: it goes on now,
	// before the loop waits again.
	l.pumpBoth(c)
	return true
}

// event handles what epoll reported for fd, one of c's sockets.
func (l *tcpLoop) event(c *tcpConn, fd int, events uint32) {
	if c.connecting {
		if fd != c.srv {
			return // the client's data waits for the dial (pumped once it is done)
		}
		if events&(unix.EPOLLERR|unix.EPOLLHUP) != 0 {
			err := connectError(fd)
			if err == nil {
				err = errors.New("connect: the connection was closed")
			}
			l.fail(c, err)
			return
		}
		if events&unix.EPOLLOUT == 0 {
			return
		}
		c.connecting = false
		delete(l.connecting, c)
		l.pumpBoth(c)
		return
	}
	if events&unix.EPOLLERR != 0 {
		// A reset on one side: end both, so the other does not wait for a
		// peer that will never send.
		l.end(c)
		return
	}
	// Which direction can move: the one reading fd if it has something to
	// read (or its EOF), the one writing to fd if fd has room and data is
	// waiting for it.
	rd, wr := &c.up, &c.down
	if fd == c.srv {
		rd, wr = wr, rd
	}
	if events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP) != 0 && !rd.done {
		if l.pump(c, rd) {
			return
		}
	}
	if events&unix.EPOLLOUT != 0 && wr.inPipe > 0 {
		if l.pump(c, wr) {
			return
		}
	}
	l.maybeEnd(c)
}

func (l *tcpLoop) pumpBoth(c *tcpConn) {
	if l.pump(c, &c.up) || l.pump(c, &c.down) {
		return
	}
	l.maybeEnd(c)
}

// maybeEnd closes c once both directions have seen their EOF.
func (l *tcpLoop) maybeEnd(c *tcpConn) {
	if c.up.done && c.down.done {
		l.end(c)
	}
}

// pump moves what h's source has to its destination until either would
// block, and passes the source's EOF on as a half-close (shutdown
// SHUT_WR), so a client that sends its request and closes its write side
// still gets the whole answer. It returns true when it ended c: an error
// on either side (a reset, a closed socket) ends both.
func (l *tcpLoop) pump(c *tcpConn, h *half) bool {
	for !h.done {
		if h.inPipe > 0 {
			n, err := rawSplice(h.p.r, h.dst, h.inPipe)
			if errors.Is(err, unix.EAGAIN) {
				return false // dst's room is reported by its next EPOLLOUT
			}
			if err != nil {
				l.end(c)
				return true
			}
			h.inPipe -= n
			continue
		}
		if !h.hasPipe {
			p, err := l.getPipe()
			if err != nil {
				l.fw.log.Warn("port: forwarding", "port", c.ln.name, "client", c.client.String(), "err", err)
				l.end(c)
				return true
			}
			h.p, h.hasPipe = p, true
		}
		n, err := rawSplice(h.src, h.p.w, spliceMax)
		switch {
		case errors.Is(err, unix.EAGAIN):
			// Nothing to read: the pipe, empty, goes back to the pool
			// while the connection is idle.
			l.putPipe(h.p, true)
			h.hasPipe = false
			return false
		case err != nil:
			l.end(c)
			return true
		case n == 0:
			l.putPipe(h.p, true)
			h.hasPipe = false
			h.done = true
			other := &c.down
			if h == &c.down {
				other = &c.up
			}
			if other.done {
				// The other way is over too: close sends this FIN.
				return false
			}
			if err := rawShutdownWrite(h.dst); err != nil {
				l.end(c)
				return true
			}
			return false
		}
		h.inPipe = n
	}
	return false
}

// fail ends c, whose dial failed, with a warning (none while stopping).
func (l *tcpLoop) fail(c *tcpConn, err error) {
	if !l.fw.stopping() {
		l.fw.log.Warn("port: connecting to the service", "port", c.ln.name, "target", c.ln.target.String(), "client", c.client.String(), "err", err)
	}
	l.end(c)
}

// end closes c's sockets (which takes them out of the epoll set) and its
// pipes, and lets the listeners accept again below tcpMaxConns.
func (l *tcpLoop) end(c *tcpConn) {
	if c.connecting {
		delete(l.connecting, c)
		c.connecting = false
	}
	for _, h := range []*half{&c.up, &c.down} {
		if h.hasPipe {
			l.putPipe(h.p, h.inPipe == 0)
			h.hasPipe = false
		}
		h.done = true
	}
	l.fw.untrackConn(c)
	for _, fd := range []int{c.cli, c.srv} {
		if fd < 0 {
			continue
		}
		if l.conns[int32(fd)] == c {
			delete(l.conns, int32(fd))
		}
		rawClose(fd)
	}
	c.cli, c.srv = -1, -1
	l.live--
	if l.full && l.live < l.max {
		l.full = false
		for _, t := range l.lns {
			if t.resume.IsZero() {
				l.listening(t, true)
			}
		}
	}
}

// closeAll closes every connection, listener and pipe, and the loop's
// own descriptors.
func (l *tcpLoop) closeAll() {
	seen := map[*tcpConn]bool{}
	for _, c := range l.conns {
		if !seen[c] {
			seen[c] = true
			l.end(c)
		}
	}
	for c := range l.connecting {
		l.end(c)
	}
	for _, t := range l.lns {
		unix.Close(t.fd)
	}
	l.lns = nil
	for _, p := range l.pipes {
		unix.Close(p.r)
		unix.Close(p.w)
	}
	l.pipes = nil
	unix.Close(l.wake)
	if l.epf != nil {
		l.epf.Close()
	} else {
		unix.Close(l.ep)
	}
}

// getPipe takes an idle pipe, or makes one.
func (l *tcpLoop) getPipe() (splicePipe, error) {
	if n := len(l.pipes); n > 0 {
		p := l.pipes[n-1]
		l.pipes = l.pipes[:n-1]
		return p, nil
	}
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return splicePipe{}, os.NewSyscallError("pipe2", err)
	}
	// Best effort: past fs.pipe-max-size an unprivileged supervisor keeps
	// the default 64 KiB, and each splice moves less.
	_, _ = unix.FcntlInt(uintptr(fds[0]), unix.F_SETPIPE_SZ, spliceMax)
	return splicePipe{r: fds[0], w: fds[1]}, nil
}

// putPipe keeps an empty pipe for the next use, up to pipePoolSize, and
// closes the rest (a pipe with data left in it is never reused).
func (l *tcpLoop) putPipe(p splicePipe, empty bool) {
	if empty && len(l.pipes) < pipePoolSize {
		l.pipes = append(l.pipes, p)
		return
	}
	unix.Close(p.r)
	unix.Close(p.w)
}
