package network

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestForwardedSockets: both sockets of a forwarded connection get the
// forwarder's buffers; the client's has Go's keepalive settings, inherited
// from the listener rather than set on each connection, and the service's
// none (stop closes it when the service goes).
func TestForwardedSockets(t *testing.T) {
	ip := testPorts(8)
	port := tcpServer(t, ip(1), echo)
	fw, err := publishPorts(context.Background(), []Port{{HostIP: ip(2), HostPort: 8080, ContainerPort: port, Proto: "tcp"}}, ip(1), nil, udpIdle, netip.Prefix{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fw.stop)
	c := dialTCP(t, netip.AddrPortFrom(ip(2), 8080))
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err) // the forwarder has both sockets now
	}
	// The sockets stay open while the client holds its end.
	fw.mu.Lock()
	var fds []int
	for c := range fw.conns {
		fds = append(fds, c.cli, c.srv)
	}
	fw.mu.Unlock()
	if len(fds) != 2 {
		t.Fatalf("%d forwarded sockets, want 2", len(fds))
	}
	for _, fd := range fds {
		sa, _ := unix.Getsockname(fd)
		a, ok := sa.(*unix.SockaddrInet4)
		if !ok {
			t.Fatalf("a forwarded socket's address: %#v", sa)
		}
		client := a.Port == 8080
		side := map[bool]string{true: "client's", false: "service's"}[client]
		want := []struct {
			name       string
			level, opt int
			min, max   int
		}{
			// The kernel doubles what it is given, for its bookkeeping.
			{"SO_RCVBUF", unix.SOL_SOCKET, unix.SO_RCVBUF, 2 * tcpBufferSize, 2 * tcpBufferSize},
			{"SO_SNDBUF", unix.SOL_SOCKET, unix.SO_SNDBUF, 2 * tcpBufferSize, 2 * tcpBufferSize},
			{"TCP_NODELAY", unix.IPPROTO_TCP, unix.TCP_NODELAY, 1, 1},
		}
		if client {
			want = append(want, []struct {
				name       string
				level, opt int
				min, max   int
			}{
				{"SO_KEEPALIVE", unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1, 1},
				{"TCP_KEEPIDLE", unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 15, 15},
				{"TCP_KEEPINTVL", unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, 15, 15},
				{"TCP_KEEPCNT", unix.IPPROTO_TCP, unix.TCP_KEEPCNT, 9, 9},
			}...)
		} else {
			want = append(want, struct {
				name       string
				level, opt int
				min, max   int
			}{"SO_KEEPALIVE", unix.SOL_SOCKET, unix.SO_KEEPALIVE, 0, 0})
		}
		for _, w := range want {
			var v int
			var gerr error
			v, gerr = unix.GetsockoptInt(fd, w.level, w.opt)
			if gerr != nil || v < w.min || v > w.max {
				t.Errorf("the %s socket: %s = %d (%v), want %d", side, w.name, v, gerr, w.min)
			}
		}
	}
}

// TestForwardedBound: past the loop's bound of live connections, a new
// one waits in the listen backlog, unforwarded, and goes on as soon as a
// live one ends (the listener, turned back on, is ready at once with the
// connection queued while it was off).
func TestForwardedBound(t *testing.T) {
	ip := testPorts(9)
	port := tcpServer(t, ip(1), echo)
	ctx, cancel := context.WithCancel(context.Background())
	fw := &forwarders{log: slog.New(slog.DiscardHandler), idle: udpIdle, conns: make(map[*tcpConn]struct{}), cancel: cancel}
	if err := fw.listen(ctx, Port{HostIP: ip(2), HostPort: 8080, ContainerPort: port, Proto: "tcp"}, ip(1)); err != nil {
		t.Fatal(err)
	}
	fw.tcp.max = 2 // before the loop runs
	fw.serve(ctx)
	t.Cleanup(fw.stop)
	addr := netip.AddrPortFrom(ip(2), 8080)

	roundTrip := func(c *net.TCPConn, msg string) error {
		if _, err := io.WriteString(c, msg); err != nil {
			return err
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil {
			return err
		}
		if string(got) != msg {
			return fmt.Errorf("echo = %q, want %q", got, msg)
		}
		return nil
	}
	c1, c2 := dialTCP(t, addr), dialTCP(t, addr)
	for _, c := range []*net.TCPConn{c1, c2} {
		if err := roundTrip(c, "live"); err != nil {
			t.Fatal(err)
		}
	}
	// The third completes its handshake in the kernel's backlog, but the
	// forwarder does not take it while two are live.
	c3 := dialTCP(t, addr)
	io.WriteString(c3, "queued")
	c3.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := c3.Read(make([]byte, 16)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a connection past the bound was forwarded: read %d, %v", n, err)
	}
	c1.Close()
	c3.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, len("queued"))
	if _, err := io.ReadFull(c3, got); err != nil || string(got) != "queued" {
		t.Fatalf("once a live connection ended, the queued one: %q, %v", got, err)
	}
	if err := roundTrip(c2, "still"); err != nil {
		t.Fatal(err)
	}
}
