package network

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/safe-run/safe-run/internal/testenv"
)

// The ports tests' traffic stays on loopback, each test in its own
// 127.54.N.0/24: .1 is the service ("target"), .2 the published address.

func testPorts(n byte) func(host byte) netip.Addr {
	return func(host byte) netip.Addr { return netip.AddrFrom4([4]byte{127, 54, n, host}) }
}

// tcpServer listens on addr:0 and runs handle for every connection.
func tcpServer(t testing.TB, addr netip.Addr, handle func(*net.TCPConn)) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c.(*net.TCPConn))
			}()
		}
	}()
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

// echo copies back what it reads, and half-closes at EOF.
func echo(c *net.TCPConn) {
	io.Copy(c, c)
	c.CloseWrite()
}

// answerAtEOF reads the whole request, then answers "got N bytes" and
// closes: it works only if the forwarder passes the client's half-close on
// and keeps the other direction open.
// It reads with a large buffer, as a server built for bulk data does (and
// iperf3): io.Discard would read 8 KiB at a time and measure its own
// syscalls more than the path.
func answerAtEOF(c *net.TCPConn) {
	buf := make([]byte, 256<<10)
	var n int64
	for {
		m, err := c.Read(buf)
		n += int64(m)
		if err != nil {
			break
		}
	}
	fmt.Fprintf(c, "got %d bytes", n)
}

func publish(t testing.TB, ports []Port, target netip.Addr) func() {
	t.Helper()
	stop, err := PublishPorts(context.Background(), ports, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return stop
}

func dialTCP(t testing.TB, addr netip.AddrPort) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr.String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return c.(*net.TCPConn)
}

func TestPublishTCP(t *testing.T) {
	ip := testPorts(1)
	echoPort := tcpServer(t, ip(1), echo)
	eofPort := tcpServer(t, ip(1), answerAtEOF)
	stop := publish(t, []Port{
		{HostIP: ip(2), HostPort: 8080, ContainerPort: echoPort, Proto: "tcp"},
		{HostIP: ip(2), HostPort: 8081, ContainerPort: eofPort, Proto: "tcp"},
	}, ip(1))
	echoAddr, eofAddr := netip.AddrPortFrom(ip(2), 8080), netip.AddrPortFrom(ip(2), 8081)

	t.Run("both ways", func(t *testing.T) {
		c := dialTCP(t, echoAddr)
		for _, msg := range []string{"hello", "again, longer this time"} {
			if _, err := io.WriteString(c, msg); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(c, got); err != nil {
				t.Fatal(err)
			}
			if string(got) != msg {
				t.Errorf("echo = %q, want %q", got, msg)
			}
		}
		// The client's half-close reaches the service, whose own EOF
		// comes back.
		c.CloseWrite()
		if rest, err := io.ReadAll(c); err != nil || len(rest) != 0 {
			t.Errorf("after half-close: %q, %v; want EOF", rest, err)
		}
	})

	t.Run("half-close", func(t *testing.T) {
		c := dialTCP(t, eofAddr)
		req := bytes.Repeat([]byte("x"), 300_000)
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
		if err := c.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(c)
		if err != nil {
			t.Fatal(err)
		}
		if want := "got 300000 bytes"; string(got) != want {
			t.Errorf("answer = %q, want %q", got, want)
		}
	})

	t.Run("concurrent clients", func(t *testing.T) {
		const clients, size = 16, 1 << 20
		var wg sync.WaitGroup
		errs := make(chan error, clients)
		for range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				data := make([]byte, size)
				rand.Read(data)
				c, err := net.DialTimeout("tcp", echoAddr.String(), 5*time.Second)
				if err != nil {
					errs <- err
					return
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(30 * time.Second))
				go func() {
					c.Write(data)
					c.(*net.TCPConn).CloseWrite()
				}()
				got, err := io.ReadAll(c)
				if err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(got, data) {
					errs <- fmt.Errorf("echo of %d random bytes came back as %d other bytes", size, len(got))
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})

	t.Run("service not listening", func(t *testing.T) {
		// A port whose service is gone: the client's connection is
		// accepted, then closed.
		ln, _ := net.Listen("tcp", netip.AddrPortFrom(ip(1), 0).String())
		port := uint16(ln.Addr().(*net.TCPAddr).Port)
		ln.Close()
		publish(t, []Port{{HostIP: ip(2), HostPort: 8082, ContainerPort: port, Proto: "tcp"}}, ip(1))
		c := dialTCP(t, netip.AddrPortFrom(ip(2), 8082))
		if got, _ := io.ReadAll(c); len(got) != 0 {
			t.Errorf("read %q from a port with no service", got)
		}
	})

	t.Run("stop closes", func(t *testing.T) {
		c := dialTCP(t, echoAddr)
		io.WriteString(c, "ping")
		buf := make([]byte, 4)
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatal(err)
		}
		stop()
		stop() // idempotent
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := c.Read(buf); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("a live connection survived stop: read %d, %v", n, err)
		}
		if c, err := net.DialTimeout("tcp", echoAddr.String(), time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts after stop", echoAddr)
		}
	})
}

func TestPublishUDP(t *testing.T) {
	ip := testPorts(2)
	srv, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip(1), 0)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	go func() {
		// Echo, prefixed with the source port, so each client can see it
		// has its own session.
		buf := make([]byte, 65536)
		for {
			n, from, err := srv.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			srv.WriteToUDPAddrPort(append([]byte(fmt.Sprintf("%d:", from.Port())), buf[:n]...), from)
		}
	}()
	srvPort := uint16(srv.LocalAddr().(*net.UDPAddr).Port)
	stop := publish(t, []Port{{HostIP: ip(2), HostPort: 5353, ContainerPort: srvPort, Proto: "udp"}}, ip(1))
	pub := netip.AddrPortFrom(ip(2), 5353)

	exchange := func(c *net.UDPConn, msg string) (string, error) {
		if _, err := c.Write([]byte(msg)); err != nil {
			return "", err
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 65536)
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return "", err
		}
		if from != pub {
			return "", fmt.Errorf("reply from %s, want %s", from, pub)
		}
		return string(buf[:n]), nil
	}
	dial := func() *net.UDPConn {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(pub))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}

	a, b := dial(), dial()
	sessionPort := map[*net.UDPConn]string{}
	for i := range 3 {
		for name, c := range map[string]*net.UDPConn{"a": a, "b": b} {
			msg := fmt.Sprintf("%s%d", name, i)
			got, err := exchange(c, msg)
			if err != nil {
				t.Fatalf("client %s: %v", name, err)
			}
			port, body, _ := bytes.Cut([]byte(got), []byte(":"))
			if string(body) != msg {
				t.Errorf("client %s: echo %q, want %q", name, body, msg)
			}
			if p, ok := sessionPort[c]; ok && p != string(port) {
				t.Errorf("client %s: session moved from port %s to %s", name, p, port)
			}
			sessionPort[c] = string(port)
		}
	}
	if sessionPort[a] == sessionPort[b] {
		t.Errorf("two clients share one session (port %s)", sessionPort[a])
	}
	big := string(bytes.Repeat([]byte("u"), 60000))
	if got, err := exchange(a, big); err != nil || len(got) != len(sessionPort[a])+1+len(big) {
		t.Errorf("a 60000-byte datagram: %d bytes back, %v", len(got), err)
	}

	stop()
	if _, err := exchange(a, "after stop"); err == nil {
		t.Errorf("the UDP port still relays after stop")
	}
}

// A UDP session idle for the idle time ends and its socket is closed;
// past udpMaxSessions the least recently used one is ended.
func TestUDPSessionsBounded(t *testing.T) {
	ip := testPorts(3)
	srv, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip(1), 0)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	srvPort := uint16(srv.LocalAddr().(*net.UDPAddr).Port)
	const idle = 2 * time.Second // longer than sending to all clients takes
	fw, err := publishPorts(context.Background(), []Port{{HostIP: ip(2), HostPort: 5353, ContainerPort: srvPort, Proto: "udp"}}, ip(1), nil, idle, netip.Prefix{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fw.stop)
	u := fw.udp[0]
	pub := net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip(2), 5353))
	// More clients than udpMaxSessions, each from its own port.
	// One at a time: UDP drops what overflows a socket's buffer. Each
	// client stays open till the end, so no two share a source port.
	const clients = udpMaxSessions + 10
	srv.SetReadDeadline(time.Now().Add(20 * time.Second))
	buf := make([]byte, 16)
	for i := range clients {
		c, err := net.DialUDP("udp", nil, pub)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("x"))
		if _, _, err := srv.ReadFromUDPAddrPort(buf); err != nil {
			t.Fatalf("datagram %d never reached the service: %v", i, err)
		}
	}
	if n := u.open(); n != udpMaxSessions {
		t.Errorf("%d UDP sessions open after %d clients, want %d", n, clients, udpMaxSessions)
	}
	deadline := time.Now().Add(idle + 5*time.Second)
	for u.open() > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := u.open(); n > 0 {
		t.Errorf("%d UDP sessions still open %s after they went idle", n, idle+5*time.Second)
	}
}

func TestPublishErrors(t *testing.T) {
	ip := testPorts(4)
	held, err := net.Listen("tcp", netip.AddrPortFrom(ip(2), 8080).String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { held.Close() })
	heldUDP, err := net.ListenPacket("udp", netip.AddrPortFrom(ip(2), 8080).String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { heldUDP.Close() })

	tests := []struct {
		name  string
		ports []Port
		err   string
	}{
		{"tcp in use", []Port{{HostIP: ip(2), HostPort: 8080, ContainerPort: 80, Proto: "tcp"}},
			"publishing 127.54.4.2:8080/tcp: the address is in use by another program (stop it, or choose another host port in [network] ports)"},
		{"udp in use", []Port{{HostIP: ip(2), HostPort: 8080, ContainerPort: 53, Proto: "udp"}},
			"publishing 127.54.4.2:8080/udp: the address is in use by another program (stop it, or choose another host port in [network] ports)"},
		{"second of two in use", []Port{
			{HostIP: ip(2), HostPort: 8081, ContainerPort: 80, Proto: "tcp"},
			{HostIP: ip(2), HostPort: 8080, ContainerPort: 80, Proto: "tcp"}},
			"publishing 127.54.4.2:8080/tcp: the address is in use by another program (stop it, or choose another host port in [network] ports)"},
		{"not an address of the host", []Port{{HostIP: netip.MustParseAddr("192.0.2.1"), HostPort: 8080, ContainerPort: 80, Proto: "tcp"}},
			"publishing 192.0.2.1:8080/tcp: the host has no such address (choose one of the host's addresses, or none for 127.0.0.1, in [network] ports)"},
		{"protocol", []Port{{HostIP: ip(2), HostPort: 8083, ContainerPort: 80, Proto: "sctp"}},
			"publishing 127.54.4.2:8083/sctp: protocol \"sctp\" is neither tcp nor udp"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stop, err := PublishPorts(context.Background(), tc.ports, ip(1), nil)
			if err == nil {
				stop()
				t.Fatalf("no error, want %s", tc.err)
			}
			if err.Error() != tc.err {
				t.Errorf("err = %s\nwant  %s", err, tc.err)
			}
		})
	}
	// The failed call left nothing open: 8081 is free again.
	ln, err := net.Listen("tcp", netip.AddrPortFrom(ip(2), 8081).String())
	if err != nil {
		t.Errorf("a failed PublishPorts left its first port open: %v", err)
	} else {
		ln.Close()
	}
}

// BenchmarkTCPThroughput sends b.N MiB to a sink, directly and through a
// published port; compare the two MB/s. For 1 GiB:
//
//	go test -run '^$' -bench TCPThroughput -benchtime 1024x ./network
//
// The sender and the sink are processes of their own (this test binary
// again, see TestThroughputHelper), as a client and a service are: in one
// process with the forwarder, the three would share one Go scheduler and
// measure its contention more than the path.
func BenchmarkTCPThroughput(b *testing.B) {
	ip := testPorts(5)
	publish(b, []Port{{HostIP: ip(2), HostPort: 8080, ContainerPort: 9000, Proto: "tcp"}}, ip(1))
	for _, bc := range []struct {
		name string
		addr netip.AddrPort
	}{
		{"direct", netip.AddrPortFrom(ip(1), 9000)},
		{"forwarded", netip.AddrPortFrom(ip(2), 8080)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(1 << 20)
			sink := helper(b, "sink", netip.AddrPortFrom(ip(1), 9000).String())
			var ready [6]byte
			if _, err := io.ReadFull(sink.out, ready[:]); err != nil || string(ready[:]) != "ready\n" {
				b.Fatalf("sink: %q, %v", ready, err)
			}
			b.ResetTimer()
			send := helper(b, "send", bc.addr.String(), fmt.Sprint(b.N<<20))
			got, err := io.ReadAll(send.out)
			send.cmd.Wait()
			b.StopTimer()
			if want := fmt.Sprintf("got %d bytes", b.N<<20); err != nil || string(got) != want {
				b.Fatalf("sender: %q, %v; want %q", got, err, want)
			}
			sink.cmd.Wait()
		})
	}
}

type helperProc struct {
	cmd *exec.Cmd
	out io.Reader
}

// helper runs this test binary as TestThroughputHelper with args.
func helper(b *testing.B, args ...string) helperProc {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestThroughputHelper$")
	cmd.Env = append(os.Environ(), "NETSVC_HELPER="+strings.Join(args, " "))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return helperProc{cmd, out}
}

// TestThroughputHelper is the sender or the sink of BenchmarkTCPThroughput
// when NETSVC_HELPER says so (os/exec's helper-process pattern), and skips
// otherwise.
//
//	sink ADDR: accept one connection on ADDR, read it to EOF with a large
//	  buffer (as iperf3 does), answer "got N bytes".
//	send ADDR N: send N bytes to ADDR, half-close, print the answer.
func TestThroughputHelper(t *testing.T) {
	args := strings.Fields(os.Getenv("NETSVC_HELPER"))
	if len(args) == 0 {
		t.Skip("the helper process of BenchmarkTCPThroughput, run by it with NETSVC_HELPER")
	}
	defer os.Exit(0) // no PASS line on the pipe
	switch args[0] {
	case "sink":
		ln, err := net.Listen("tcp", args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println("ready")
		c, err := ln.Accept()
		if err != nil {
			os.Exit(1)
		}
		answerAtEOF(c.(*net.TCPConn))
		c.Close()
	case "send":
		var n int
		fmt.Sscan(args[2], &n)
		c, err := net.Dial("tcp", args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		chunk := make([]byte, 1<<20)
		for sent := 0; sent < n; sent += len(chunk) {
			if _, err := c.Write(chunk[:min(len(chunk), n-sent)]); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
		}
		c.(*net.TCPConn).CloseWrite()
		answer, _ := io.ReadAll(c)
		os.Stdout.Write(answer)
	}
}

// testNetns makes a network namespace joined to the host by a veth pair:
// host side hostAddr/30, namespace side nsAddr/30, both in 10.253.N.0/30
// (a range nothing else here uses). Everything is removed at cleanup.
// It returns the namespace's path.
func testNetns(t *testing.T, n byte) (ns string, hostAddr, nsAddr netip.Addr) {
	t.Helper()
	testenv.RequireRoot(t)
	ipTool := testenv.RequireTool(t, "ip")
	name := fmt.Sprintf("nsv%d-%d", os.Getpid(), n)
	hostLink, nsLink := fmt.Sprintf("nsv%dh%d", os.Getpid()%100000, n), fmt.Sprintf("nsv%dn%d", os.Getpid()%100000, n)
	hostAddr, nsAddr = netip.AddrFrom4([4]byte{10, 253, n, 1}), netip.AddrFrom4([4]byte{10, 253, n, 2})
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(ipTool, args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", name)
	t.Cleanup(func() { exec.Command(ipTool, "netns", "del", name).Run() })
	run("link", "add", hostLink, "type", "veth", "peer", "name", nsLink, "netns", name)
	t.Cleanup(func() { exec.Command(ipTool, "link", "del", hostLink).Run() })
	run("addr", "add", hostAddr.String()+"/30", "dev", hostLink)
	run("link", "set", hostLink, "up")
	run("-n", name, "addr", "add", nsAddr.String()+"/30", "dev", nsLink)
	run("-n", name, "link", "set", nsLink, "up")
	run("-n", name, "link", "set", "lo", "up")
	return "/run/netns/" + name, hostAddr, nsAddr
}

// The real layout: the service in its own namespace behind a veth, the
// published port on the host's loopback. The service sees the host's
// address on the link as its client.
func TestPublishIntoNetns(t *testing.T) {
	ns, hostAddr, svcAddr := testNetns(t, 1)
	var ln net.Listener
	inNetnsT(t, ns, func() {
		var err error
		ln, err = net.Listen("tcp", netip.AddrPortFrom(svcAddr, 80).String())
		if err != nil {
			t.Error(err)
		}
	})
	if ln == nil {
		t.FailNow()
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				fmt.Fprintf(c, "you are %s\n", c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr())
			}()
		}
	}()
	ip := testPorts(6)
	publish(t, []Port{{HostIP: ip(2), HostPort: 8080, ContainerPort: 80, Proto: "tcp"}}, svcAddr)
	c := dialTCP(t, netip.AddrPortFrom(ip(2), 8080))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if want := "you are " + hostAddr.String() + "\n"; string(got) != want {
		t.Errorf("service said %q, want %q", got, want)
	}
}

// On a wildcard address, a UDP reply leaves from the address the client
// sent to: a connected client (as most are) drops datagrams from any
// other. Host port 0 (the kernel's choice), so the wildcard socket can
// collide with no test; it listens only while the test runs, and only
// loopback sends to it.
func TestPublishUDPWildcard(t *testing.T) {
	ip := testPorts(7)
	srv, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip(1), 0)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := srv.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			srv.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	srvPort := uint16(srv.LocalAddr().(*net.UDPAddr).Port)
	for _, any := range []netip.Addr{netip.IPv4Unspecified(), netip.IPv6Unspecified()} {
		t.Run(any.String(), func(t *testing.T) {
			fw, err := publishPorts(context.Background(), []Port{{HostIP: any, HostPort: 0, ContainerPort: srvPort, Proto: "udp"}}, ip(1), nil, udpIdle, netip.Prefix{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer fw.stop()
			port := uint16(fw.udp[0].pc.LocalAddr().(*net.UDPAddr).Port)
			// Two addresses that are not the one routing picks (127.0.0.1).
			for _, dst := range []netip.Addr{ip(9), ip(10)} {
				c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, port)))
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				c.Write([]byte("ping " + dst.String()))
				c.SetReadDeadline(time.Now().Add(3 * time.Second))
				buf := make([]byte, 64)
				n, err := c.Read(buf)
				if err != nil {
					t.Errorf("no reply from %s: %v", dst, err)
					continue
				}
				if got := string(buf[:n]); got != "ping "+dst.String() {
					t.Errorf("reply %q", got)
				}
			}
		})
	}
}
