package network

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestGivenSockets: the forwarders accept on sockets another process bound
// (ListenPort, Options.ListenFDs), as the rootless inner safe-run does on
// the outer one's, and refuse a descriptor that is not the port's socket.
func TestGivenSockets(t *testing.T) {
	ip := testPorts(40)
	echoPort := tcpServer(t, ip(1), echo)
	srv, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip(1), 0)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := srv.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			srv.WriteToUDPAddrPort(append([]byte("udp:"), buf[:n]...), from)
		}
	}()
	udpPort := uint16(srv.LocalAddr().(*net.UDPAddr).Port)
	tcp := Port{HostIP: ip(2), HostPort: 8080, ContainerPort: echoPort, Proto: "tcp"}
	udp := Port{HostIP: ip(2), HostPort: 5353, ContainerPort: udpPort, Proto: "udp"}
	given := map[Port]int{}
	for _, p := range []Port{tcp, udp} {
		f, err := ListenPort(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		// What the inner safe-run gets: a descriptor of its own.
		fd, err := dupCloexec(int(f.Fd()))
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		given[p] = fd
	}
	// Bound once: a second bind of the same tuple fails as the host's
	// would, with the manifest's fix.
	if _, err := ListenPort(context.Background(), tcp); err == nil || !strings.Contains(err.Error(), "the address is in use by another program") {
		t.Errorf("a second ListenPort of %v: %v", tcp, err)
	}
	fw, err := publishPorts(context.Background(), []Port{tcp, udp}, ip(1), nil, udpIdle, netip.Prefix{}, given)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fw.stop)

	c := dialTCP(t, netip.AddrPortFrom(ip(2), 8080))
	fmt.Fprint(c, "hello")
	c.CloseWrite()
	buf := make([]byte, 64)
	n, _ := c.Read(buf)
	if string(buf[:n]) != "hello" {
		t.Errorf("tcp through the given socket: %q", buf[:n])
	}
	u, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip(2), 5353)))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	u.Write([]byte("ping"))
	u.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := u.Read(buf); err != nil || string(buf[:n]) != "udp:ping" {
		t.Errorf("udp through the given socket: %q, %v", buf[:n], err)
	}
	fw.stop()
	// The forwarders owned them: stopped, the tuple is free again.
	f, err := ListenPort(context.Background(), tcp)
	if err != nil {
		t.Fatalf("after stop: %v", err)
	}
	f.Close()

	t.Run("not the port's socket", func(t *testing.T) {
		other := Port{HostIP: ip(2), HostPort: 8081, ContainerPort: echoPort, Proto: "tcp"}
		f, err := ListenPort(context.Background(), other)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for _, tc := range []struct {
			port Port
			want string
		}{
			{udp, "publishing 127.54.40.2:5353/udp: fd %d is not a udp socket on port 5353"},
			{tcp, "publishing 127.54.40.2:8080/tcp: fd %d is not a tcp socket on port 8080"},
		} {
			fd, err := dupCloexec(int(f.Fd()))
			if err != nil {
				t.Fatal(err)
			}
			_, err = publishPorts(context.Background(), []Port{tc.port}, ip(1), nil, udpIdle, netip.Prefix{}, map[Port]int{tc.port: fd})
			if want := fmt.Sprintf(tc.want, fd); err == nil || err.Error() != want {
				t.Errorf("%v given fd %d of %v: %v, want %q", tc.port, fd, other, err, want)
			}
		}
	})
}

func dupCloexec(fd int) (int, error) { return unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0) }
