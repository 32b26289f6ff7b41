package network

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// PublishPorts forwards each published port to target (the service's
// address on its bridge): it listens on HostIP:HostPort on the host and,
// for every connection (TCP) or client address (UDP), opens its own to
// target:ContainerPort. It returns once every port is listening, or with
// the first error and nothing left open. stop (or the end of ctx) closes
// the listeners and every live connection and session.
//
// Why sockets and not docker's DNAT: the connections arrive at a socket
// of the host, so the host's INPUT firewall (ufw, firewalld) applies to
// published ports as to any other service of the host; 127.0.0.1 stays
// loopback-only with no route_localnet (CVE-2020-8558); and nothing in
// the nat table needs to be kept in step with the host's other rules.
// TCP is copied with splice(2) between the two sockets (fw.splice), so
// the data never enters user space.
//
// What the service sees as its client's address: the connection comes
// from the host, so the service sees the gateway (the host's address on
// its bridge) and an ephemeral port, never the real client. Attach's
// forwarders dial from the client's address instead (publishPorts with
// the bridge's subnet; see dialService, transparentDialer and
// transparent_linux.go).
//
// HostIP 0.0.0.0 (or ::) listens on every address, IPv4 and IPv6 (a
// dual-stack socket). UDP replies on such a wildcard socket are sent from
// the address the client sent to (IP_PKTINFO / IPV6_PKTINFO), not from
// whatever address the routing table would pick, which a client on a host
// with several addresses would drop.
func PublishPorts(ctx context.Context, ports []Port, target netip.Addr, log *slog.Logger) (stop func(), err error) {
	fw, err := publishPorts(ctx, ports, target, log, udpIdle, netip.Prefix{}, nil)
	if err != nil {
		return nil, err
	}
	return fw.stop, nil
}

// ListenPort opens the socket published port p listens on, as the
// forwarders would (a specific address in its own family, the unspecified
// one dual-stack), for a process that hands it to another: the rootless
// outer safe-run binds the ports of a service on a named bridge in the
// host's network namespace, where it runs, and the inner safe-run, in the
// user's shared namespace, forwards from them (Options.ListenFDs). A
// socket stays in the namespace it was made in, whoever holds it.
func ListenPort(ctx context.Context, p Port) (*os.File, error) {
	name := portName(p)
	network, addr, err := listenAddr(p)
	if err != nil {
		return nil, err
	}
	var lc net.ListenConfig
	var f *os.File
	switch p.Proto {
	case "tcp":
		ln, err := lc.Listen(ctx, network, addr)
		if err != nil {
			return nil, publishError(name, err)
		}
		defer ln.Close()
		f, err = ln.(*net.TCPListener).File()
		if err != nil {
			return nil, fmt.Errorf("publishing %s: %w", name, err)
		}
	default:
		pc, err := lc.ListenPacket(ctx, network, addr)
		if err != nil {
			return nil, publishError(name, err)
		}
		defer pc.Close()
		f, err = pc.(*net.UDPConn).File()
		if err != nil {
			return nil, fmt.Errorf("publishing %s: %w", name, err)
		}
	}
	return f, nil
}

// listenAddr is the network and address p listens on.
func listenAddr(p Port) (network, addr string, err error) {
	if !p.HostIP.IsValid() {
		return "", "", fmt.Errorf("publishing %s: no host address", portName(p))
	}
	if p.Proto != "tcp" && p.Proto != "udp" {
		return "", "", fmt.Errorf("publishing %s: protocol %q is neither tcp nor udp", portName(p), p.Proto)
	}
	network = p.Proto
	if !p.HostIP.IsUnspecified() {
		// A specific address: its own family only. The unspecified one
		// stays "tcp"/"udp", which Go opens dual-stack: every address.
		if p.HostIP.Unmap().Is4() {
			network += "4"
		} else {
			network += "6"
		}
	}
	return network, netip.AddrPortFrom(p.HostIP.Unmap(), p.HostPort).String(), nil
}

// checkGiven checks that fd, a socket ListenPort opened in another
// process, is p's: a socket of p's protocol bound to p's port, listening
// if TCP.
func checkGiven(p Port, fd int) error {
	name := portName(p)
	if fd < 0 {
		return fmt.Errorf("publishing %s: the outer safe-run's socket (fd %d) is not open", name, fd)
	}
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return fmt.Errorf("publishing %s: fd %d is no socket: %w", name, fd, err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return fmt.Errorf("publishing %s: fd %d: %w", name, fd, err)
	}
	port := -1
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		port = a.Port
	case *unix.SockaddrInet6:
		port = a.Port
	}
	want := unix.SOCK_STREAM
	if p.Proto == "udp" {
		want = unix.SOCK_DGRAM
	}
	listening := true
	if p.Proto == "tcp" {
		v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
		listening = err == nil && v == 1
	}
	if typ != want || port != int(p.HostPort) || !listening {
		return fmt.Errorf("publishing %s: fd %d is not a %s socket on port %d", name, fd, p.Proto, p.HostPort)
	}
	return nil
}

// givenPacketConn turns fd, a UDP socket ListenPort opened in another
// process, into p's packet conn, after checkGiven. The fd is consumed.
func givenPacketConn(p Port, fd int) (net.PacketConn, error) {
	name := portName(p)
	if err := checkGiven(p, fd); err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return nil, err
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	pc, err := net.FilePacketConn(f)
	if err != nil {
		return nil, fmt.Errorf("publishing %s: %w", name, err)
	}
	return pc, nil
}

// publishPorts is PublishPorts with the UDP idle time as a parameter, and
// the forwarders returned, for the tests. With a valid subnet (the
// bridge's), the forwarders dial the service from each client's own
// address (see dialService); the host must route the replies back to them
// (ensureTransparent).
//
// given are sockets already bound for some of the ports, by another
// process (ListenPort): fds this process owns, consumed here.
func publishPorts(ctx context.Context, ports []Port, target netip.Addr, log *slog.Logger, idle time.Duration, subnet netip.Prefix, given map[Port]int) (*forwarders, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if !target.IsValid() {
		return nil, errors.New("publishing ports: the service has no address")
	}
	fw := &forwarders{log: log, idle: idle, subnet: subnet, given: given, conns: make(map[*tcpConn]struct{})}
	fctx, cancel := context.WithCancel(ctx)
	fw.cancel = cancel
	for i, p := range ports {
		if err := fw.listen(fctx, p, target); err != nil {
			// The given sockets of the ports not reached are consumed too.
			for _, q := range ports[i+1:] {
				if fd, ok := given[q]; ok {
					unix.Close(fd)
				}
			}
			fw.stop()
			return nil, err
		}
	}
	fw.serve(fctx)
	go func() {
		<-fctx.Done()
		fw.stop()
	}()
	return fw, nil
}

// forwarders is everything PublishPorts opened, so stop closes it all.
type forwarders struct {
	log    *slog.Logger
	idle   time.Duration // a UDP session's
	subnet netip.Prefix  // the service's bridge; valid: dial from the client's address
	given  map[Port]int  // sockets bound by another process, by port (ListenPort)
	cancel context.CancelFunc

	tcp *tcpLoop // every TCP port's; nil without one
	udp []*udpForward

	mu      sync.Mutex
	closed  bool
	started bool                  // serve ran
	conns   map[*tcpConn]struct{} // live TCP connections, for the tests
	wg      sync.WaitGroup
	once    sync.Once
}

// tcpBufferSize is each forwarded TCP socket's receive and send buffer. Every byte crosses two
// connections in the supervisor, spliced in the kernel one pipe (1 MiB) at a time: with buffers
// this large both sides keep a splice's worth queued, and each wakeup of the forwarder moves as
// much as a splice can, where autotuning starts small and grows per connection. On the 2-core
// development VM, a 1 GiB transfer took the forwarder about a quarter less CPU time (bench,
// docs/networking.md). The kernel allocates a buffer's memory only as data is queued.
const tcpBufferSize = 4 << 20

// tcpListenerOptions sets, on a listening TCP socket fd, what its accepted connections inherit:
// the forwarder's buffers (tcpBuffers), TCP_NODELAY (as Go gives every TCP socket) and Go's
// keepalive settings, set here once instead of by five system calls on every connection
// (tcp_create_openreq_child copies the listener's). A listener made elsewhere and handed to the
// forwarders gets them because this is called on it.
func tcpListenerOptions(fd uintptr) error {
	tcpBuffers(fd)
	for _, o := range []struct{ level, opt, v int }{
		{unix.IPPROTO_TCP, unix.TCP_NODELAY, 1},
		{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
		{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 15},
		{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, 15},
		{unix.IPPROTO_TCP, unix.TCP_KEEPCNT, 9},
	} {
		if err := unix.SetsockoptInt(int(fd), o.level, o.opt, o.v); err != nil {
			return fmt.Errorf("setting the listener's options: %w", err)
		}
	}
	return nil
}

// tcpBuffers sets tcpBufferSize on the socket fd: past net.core.rmem_max and wmem_max when the
// supervisor may (root: SO_RCVBUFFORCE), else only where those allow it. A default host's
// maximum (208 KiB) is below what autotuning reaches, which is then left alone.
func tcpBuffers(fd uintptr) {
	plain := plainBuffers()
	for i, o := range [2]struct{ force, plain int }{{unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}, {unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}} {
		if rawSetsockoptInt(int(fd), unix.SOL_SOCKET, o.force, tcpBufferSize) != nil && plain[i] {
			_ = rawSetsockoptInt(int(fd), unix.SOL_SOCKET, o.plain, tcpBufferSize)
		}
	}
}

// plainBuffers says whether net.core.rmem_max and wmem_max allow tcpBufferSize.
var plainBuffers = sync.OnceValue(func() [2]bool {
	var ok [2]bool
	for i, f := range []string{"/proc/sys/net/core/rmem_max", "/proc/sys/net/core/wmem_max"} {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		v, err := strconv.Atoi(strings.TrimSpace(string(data)))
		ok[i] = err == nil && v >= tcpBufferSize
	}
	return ok
})

func (fw *forwarders) listen(ctx context.Context, p Port, target netip.Addr) error {
	name := portName(p)
	network, addr, err := listenAddr(p)
	if err != nil {
		return err
	}
	to := netip.AddrPortFrom(target, p.ContainerPort)
	fd, given := fw.given[p]
	var lc net.ListenConfig
	switch p.Proto {
	case "tcp":
		// Accepted connections inherit the listener's options (see
		// tcpListenerOptions).
		lc.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) { serr = tcpListenerOptions(fd) }); err != nil {
				return err
			}
			return serr
		}
		if given {
			err = checkGiven(p, fd)
			if err == nil {
				err = tcpListenerOptions(uintptr(fd))
			}
			if err == nil {
				err = unix.SetNonblock(fd, true)
			}
			if err != nil {
				unix.Close(fd)
				return err
			}
		} else {
			ln, err := lc.Listen(ctx, network, addr)
			if err != nil {
				return publishError(name, err)
			}
			// The loop's own descriptor, which Go's poller never sees (it
			// takes the listener out at Close): each connection would
			// otherwise wake the runtime's poller too.
			fd, err = dupSocket(ln.(*net.TCPListener))
			ln.Close()
			if err != nil {
				return fmt.Errorf("publishing %s: %w", name, err)
			}
		}
		if fw.tcp == nil {
			if fw.tcp, err = newTCPLoop(fw); err != nil {
				unix.Close(fd)
				return fmt.Errorf("publishing %s: %w", name, err)
			}
		}
		if err := fw.tcp.add(fd, to, name); err != nil {
			return err
		}
	case "udp":
		var pc net.PacketConn
		if given {
			pc, err = givenPacketConn(p, fd)
		} else if pc, err = lc.ListenPacket(ctx, network, addr); err != nil {
			err = publishError(name, err)
		}
		if err != nil {
			return err
		}
		u := &udpForward{
			pc: pc.(*net.UDPConn), target: to, name: name, log: fw.log, idle: fw.idle, fw: fw,
			sessions: make(map[netip.AddrPort]*udpSession),
		}
		if p.HostIP.IsUnspecified() {
			if err := u.trackDst(); err != nil {
				pc.Close()
				return fmt.Errorf("publishing %s: asking for the packets' destination addresses: %w", name, err)
			}
		}
		fw.udp = append(fw.udp, u)
	default:
		return fmt.Errorf("publishing %s: protocol %q is neither tcp nor udp", name, p.Proto)
	}
	return nil
}

// dupSocket is a duplicate of ln's socket, close-on-exec and
// non-blocking (a flag its original shares).
func dupSocket(ln *net.TCPListener) (int, error) {
	rc, err := ln.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var derr error
	if err := rc.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, os.NewSyscallError("fcntl", derr)
	}
	return fd, nil
}

func (fw *forwarders) serve(ctx context.Context) {
	fw.mu.Lock()
	fw.started = true
	fw.mu.Unlock()
	if fw.tcp != nil {
		fw.wg.Add(1)
		go func() {
			defer fw.wg.Done()
			fw.tcp.run()
		}()
	}
	for _, u := range fw.udp {
		fw.wg.Add(1)
		go func() {
			defer fw.wg.Done()
			u.run(ctx)
		}()
	}
}

// stop closes the listeners, then every live connection and session, and
// waits for the goroutines.
func (fw *forwarders) stop() {
	fw.once.Do(func() {
		fw.mu.Lock()
		fw.closed = true
		started := fw.started
		fw.mu.Unlock()
		fw.cancel()
		if fw.tcp != nil {
			if started {
				fw.tcp.stop() // run closes everything as it ends
			} else {
				fw.tcp.closeAll() // a port failed to open: run never ran
			}
		}
		for _, u := range fw.udp {
			u.close()
		}
		fw.wg.Wait()
	})
}

// stopping says whether stop has begun: a failed dial is then no news.
func (fw *forwarders) stopping() bool {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	return fw.closed
}

// trackConn and untrackConn keep the set of live connections the tests
// look into.
func (fw *forwarders) trackConn(c *tcpConn) {
	fw.mu.Lock()
	fw.conns[c] = struct{}{}
	fw.mu.Unlock()
}

func (fw *forwarders) untrackConn(c *tcpConn) {
	fw.mu.Lock()
	delete(fw.conns, c)
	fw.mu.Unlock()
}

// dialService opens the connection to the service at to for a client of
// the loop: from src (any port) when it is valid, with IP_TRANSPARENT so
// that the host binds an address that is not its own (it needs
// CAP_NET_ADMIN in the network namespace's user namespace: the root
// supervisor, or the rootless one in the namespace it owns), else from the
// address the route picks (the gateway). The socket gets the forwarder's
// buffers (tcpBuffers), TCP_NODELAY as Go gives every TCP socket, no
// keepalive (the service is on a bridge of this host, and stop closes its
// connections when it goes) and, from src, IP_BIND_ADDRESS_NO_PORT: the
// port is picked at connect, for the 4-tuple, not at bind, where the kernel
// searches for a port free for any peer. It returns the non-blocking
// socket and whether the connection is established already; if not, the
// loop waits for the socket's EPOLLOUT (or its error).
//
// A connect to a service on a bridge of this host has usually completed
// when the system call returns (the kernel runs the whole handshake in the
// sender's softirq, and the SYN-ACK queued on the socket while connect held
// it is processed as connect releases it), so one getpeername usually says
// it is done and the client's request goes on at once. Measured with
// timestamps in the forwarder under the bench's connect row (loaded 2-core
// VM): net.Dialer's dial took 125-150 µs (medians), the connect system call
// in it 70-85 µs (docs/networking.md, The forwarder).
func dialService(src netip.Addr, to netip.AddrPort) (fd int, connected bool, err error) {
	// Raw system calls, as the loop's (rawsys_linux.go).
	fd, err = rawSocketTCP4()
	if err != nil {
		return -1, false, os.NewSyscallError("socket", err)
	}
	tcpBuffers(uintptr(fd))
	err = rawSetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	if err == nil && src.IsValid() {
		if err = rawSetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_TRANSPARENT, 1); err != nil {
			err = fmt.Errorf("setting IP_TRANSPARENT to dial from the client's address %s: %w", src, err)
		} else {
			_ = rawSetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
			err = os.NewSyscallError("bind", rawBind4(fd, netip.AddrPortFrom(src, 0)))
		}
	}
	if err == nil {
		err = rawConnect4(fd, to)
		switch {
		case err == nil:
			connected = true
		case errors.Is(err, unix.EINPROGRESS):
			err = nil
			if rawConnected(fd) {
				connected = true
				break
			}
			// Not connected (yet): SO_ERROR says whether it failed.
			err = connectError(fd)
		default:
			err = os.NewSyscallError("connect", err)
		}
	}
	if err != nil {
		rawClose(fd)
		return -1, false, err
	}
	return fd, connected, nil
}

// splicePipe is a pipe that splice(2) moves a connection's data through.
type splicePipe struct{ r, w int }

// spliceMax is the most one splice(2) moves, and the size of its pipe
// (F_SETPIPE_SZ, as Go's own splice does): a wakeup moves as much as the
// socket buffers hold (tcpBufferSize).
const spliceMax = 1 << 20

// pipePoolSize bounds the idle pipes kept for new connections.
const pipePoolSize = 32

// udpForward relays one published UDP port. Each client address gets a
// session: a connected socket to the service, whose replies are sent back
// to the client from the listening socket (the address it sent to).
type udpForward struct {
	pc     *net.UDPConn
	target netip.AddrPort
	name   string
	log    *slog.Logger
	idle   time.Duration
	fw     *forwarders // for the source of sessions

	// family is the socket's (AF_INET or AF_INET6) on a wildcard address,
	// where each datagram's destination is read so the reply leaves from
	// it; 0 on a specific address.
	family int

	mu       sync.Mutex
	closed   bool
	sessions map[netip.AddrPort]*udpSession
	wg       sync.WaitGroup
}

type udpSession struct {
	client netip.AddrPort
	local  netip.Addr // the address the client sent to; invalid: the socket's own
	conn   *net.UDPConn
	last   time.Time // last datagram either way; under udpForward.mu
}

func (u *udpForward) run(ctx context.Context) {
	buf := make([]byte, udpMaxDatagram)
	oob := make([]byte, unix.CmsgSpace(unix.SizeofInet6Pktinfo)+unix.CmsgSpace(unix.SizeofInet4Pktinfo))
	for {
		n, client, local, err := u.read(buf, oob)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			u.log.Warn("port: reading", "port", u.name, "err", err)
			continue
		}
		s := u.session(ctx, client, local)
		if s == nil {
			continue
		}
		if _, err := s.conn.Write(buf[:n]); err != nil {
			// ECONNREFUSED from an earlier datagram's ICMP: the service is
			// not listening (yet). UDP may drop; the client retries.
			u.log.Debug("port: sending to the service", "port", u.name, "client", client.String(), "err", err)
		}
	}
}

// session returns client's session, opening one (and ending the least
// recently used if there are udpMaxSessions) when it has none.
func (u *udpForward) session(ctx context.Context, client netip.AddrPort, local netip.Addr) *udpSession {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return nil
	}
	now := time.Now()
	if s, ok := u.sessions[client]; ok {
		s.last = now
		return s
	}
	if len(u.sessions) >= udpMaxSessions {
		var oldest *udpSession
		for _, s := range u.sessions {
			if oldest == nil || s.last.Before(oldest.last) {
				oldest = s
			}
		}
		u.endLocked(oldest)
	}
	d := transparentDialer(u.fw.source(net.UDPAddrFromAddrPort(client)))
	c, err := d.DialContext(ctx, "udp4", u.target.String())
	if err != nil {
		u.log.Warn("port: opening a session to the service", "port", u.name, "target", u.target.String(), "err", err)
		return nil
	}
	s := &udpSession{client: client, local: local, conn: c.(*net.UDPConn), last: now}
	u.sessions[client] = s
	u.wg.Add(1)
	go u.replies(s)
	return s
}

// replies sends the service's datagrams for s back to its client until the
// session is idle for u.idle or ended.
func (u *udpForward) replies(s *udpSession) {
	defer u.wg.Done()
	buf := make([]byte, udpMaxDatagram)
	for {
		u.mu.Lock()
		deadline := s.last.Add(u.idle)
		u.mu.Unlock()
		_ = s.conn.SetReadDeadline(deadline)
		n, err := s.conn.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if errors.Is(err, syscall.ECONNREFUSED) {
				continue // the service was not listening for an earlier datagram
			}
			u.mu.Lock()
			idle := time.Since(s.last) >= u.idle
			if idle || !errors.Is(err, os.ErrDeadlineExceeded) {
				u.endLocked(s)
				u.mu.Unlock()
				return
			}
			u.mu.Unlock()
			continue // a datagram from the client moved the deadline on
		}
		u.mu.Lock()
		s.last = time.Now()
		u.mu.Unlock()
		if err := u.write(buf[:n], s); err != nil {
			u.log.Debug("port: replying", "port", u.name, "client", s.client.String(), "err", err)
		}
	}
}

// trackDst asks the kernel for each datagram's destination address. Go
// opens a wildcard "udp" socket as IPv6 dual-stack, where IPv4 datagrams
// come with an IPV6_PKTINFO of their v4-mapped destination, and Linux
// takes a v4-mapped IPV6_PKTINFO back on send (ip_cmsg_send); a host
// without IPv6 gets an IPv4 socket and IP_PKTINFO.
func (u *udpForward) trackDst() error {
	rc, err := u.pc.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		u.family, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
		if serr != nil {
			return
		}
		if u.family == unix.AF_INET6 {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1)
		} else {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
		}
	}); err != nil {
		return err
	}
	return serr
}

// read reads one datagram, its sender and, on a wildcard socket, the
// address it was sent to.
func (u *udpForward) read(buf, oob []byte) (n int, client netip.AddrPort, local netip.Addr, err error) {
	if u.family == 0 {
		n, client, err = u.pc.ReadFromUDPAddrPort(buf)
		return n, client, netip.Addr{}, err
	}
	n, oobn, _, client, err := u.pc.ReadMsgUDPAddrPort(buf, oob)
	if err != nil {
		return 0, client, local, err
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return n, client, local, nil // the socket's own address will do
	}
	for _, m := range msgs {
		switch {
		case m.Header.Level == unix.IPPROTO_IPV6 && m.Header.Type == unix.IPV6_PKTINFO && len(m.Data) >= unix.SizeofInet6Pktinfo:
			local = netip.AddrFrom16([16]byte(m.Data[:16])) // struct in6_pktinfo: ipi6_addr first
		case m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_PKTINFO && len(m.Data) >= unix.SizeofInet4Pktinfo:
			local = netip.AddrFrom4([4]byte(m.Data[8:12])) // struct in_pktinfo: ifindex, spec_dst, addr
		}
	}
	return n, client, local, nil
}

// write sends b to s's client from the address the client sent to.
func (u *udpForward) write(b []byte, s *udpSession) error {
	var oob []byte
	switch {
	case !s.local.IsValid():
	case u.family == unix.AF_INET6:
		oob = unix.PktInfo6(&unix.Inet6Pktinfo{Addr: s.local.As16()})
	case u.family == unix.AF_INET && s.local.Is4():
		oob = unix.PktInfo4(&unix.Inet4Pktinfo{Spec_dst: s.local.As4()})
	}
	_, _, err := u.pc.WriteMsgUDPAddrPort(b, oob, s.client)
	return err
}

// endLocked closes s and forgets it; u.mu is held.
func (u *udpForward) endLocked(s *udpSession) {
	if cur, ok := u.sessions[s.client]; ok && cur == s {
		delete(u.sessions, s.client)
	}
	s.conn.Close()
}

// open counts the sessions.
func (u *udpForward) open() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.sessions)
}

func (u *udpForward) close() {
	u.pc.Close()
	u.mu.Lock()
	u.closed = true
	for _, s := range u.sessions {
		u.endLocked(s)
	}
	u.mu.Unlock()
	u.wg.Wait()
}

// source is the address to dial the service from for client: the client's
// own, when the forwarders are transparent and the host can route the
// replies back; otherwise invalid, and the dial leaves from the gateway.
// The exceptions keep the gateway:
//   - a loopback client (127.0.0.0/8, ::1): the service's namespace has a
//     loopback of its own, and the host drops a packet from a bridge with a
//     loopback source as a martian;
//   - an IPv6 client of a dual-stack port: the service has IPv4 only;
//   - a client on the service's own bridge (a member dialling a published
//     host address): the service would answer it directly on the bridge,
//     past the forwarder.
func (fw *forwarders) source(client net.Addr) netip.Addr {
	var ap netip.AddrPort
	switch c := client.(type) {
	case *net.TCPAddr:
		ap = c.AddrPort()
	case *net.UDPAddr:
		ap = c.AddrPort()
	default:
		return netip.Addr{}
	}
	return fw.sourceAddr(ap.Addr())
}

// sourceAddr is source for the client's address.
func (fw *forwarders) sourceAddr(client netip.Addr) netip.Addr {
	if fw == nil || !fw.subnet.IsValid() {
		return netip.Addr{}
	}
	a := client.Unmap()
	if !a.Is4() || a.IsLoopback() || a.IsUnspecified() || a.IsMulticast() || fw.subnet.Contains(a) {
		return netip.Addr{}
	}
	return a
}

// transparentDialer is a UDP dialer that leaves from src (any port), with
// IP_TRANSPARENT so that the host binds an address that is not its own (as
// dialService does for TCP). An invalid src: a plain dialer, from the
// address the route picks (the gateway).
func transparentDialer(src netip.Addr) net.Dialer {
	if !src.IsValid() {
		return net.Dialer{}
	}
	return net.Dialer{
		LocalAddr: net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)),
		Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_TRANSPARENT, 1)
			}); err != nil {
				return err
			}
			if serr != nil {
				return fmt.Errorf("setting IP_TRANSPARENT to dial from the client's address %s: %w", src, serr)
			}
			return nil
		},
	}
}
