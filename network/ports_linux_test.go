package network

import (
	"context"
	"io"
	"net/netip"
	"testing"

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
