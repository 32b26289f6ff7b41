package network

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// serveRemote answers every TCP connection and UDP datagram at addr, in the namespace at path, with
// the address the service sees as its client's, until the test ends.
func serveRemote(t *testing.T, path string, addr netip.AddrPort) {
	t.Helper()
	var ln net.Listener
	var pc net.PacketConn
	inNetnsT(t, path, func() {
		var err error
		if ln, err = net.Listen("tcp4", addr.String()); err != nil {
			t.Fatalf("listening on %s: %v", addr, err)
		}
		if pc, err = net.ListenPacket("udp4", addr.String()); err != nil {
			t.Fatalf("listening on %s/udp: %v", addr, err)
		}
	})
	t.Cleanup(func() { ln.Close(); pc.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte(netip.MustParseAddrPort(c.RemoteAddr().String()).Addr().String()))
			c.Close()
		}
	}()
	go func() {
		buf := make([]byte, 64)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo([]byte(netip.MustParseAddrPort(from.String()).Addr().String()), from)
		}
	}()
}

// seenAs connects from the namespace at path ("" = the host's) and returns the client address the
// service reports.
func seenAs(path, proto string, to netip.AddrPort) (netip.Addr, error) {
	var got netip.Addr
	f := func() error {
		c, err := net.DialTimeout(proto, to.String(), 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		if proto == "udp" {
			if _, err := c.Write([]byte("who")); err != nil {
				return err
			}
		}
		buf := make([]byte, 64)
		n, err := c.Read(buf)
		if err != nil {
			return err
		}
		got, err = netip.ParseAddr(string(buf[:n]))
		return err
	}
	var err error
	if path == "" {
		err = f()
	} else {
		err = inNetns(path, f)
	}
	return got, err
}

// freePorts returns n ports free for TCP and UDP on every address of the host right now.
func freePorts(t *testing.T, n int) []uint16 {
	t.Helper()
	var out []uint16
	for len(out) < n {
		ln, err := net.Listen("tcp4", "0.0.0.0:0")
		if err != nil {
			t.Fatal(err)
		}
		p := netip.MustParseAddrPort(ln.Addr().String()).Port()
		pc, err := net.ListenPacket("udp4", fmt.Sprintf("0.0.0.0:%d", p))
		ln.Close()
		if err != nil {
			continue
		}
		pc.Close()
		out = append(out, p)
	}
	return out
}

// ourRouting reports the root's policy rule and the routes of its table.
func ourRouting(t *testing.T, root stateRoot) (rules []netlink.Rule, routes []netlink.Route) {
	t.Helper()
	mark, table := root.transparent()
	all, err := netlink.RuleList(unix.AF_INET)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range all {
		if r.Mark == mark || r.Table == table {
			rules = append(rules, r)
		}
	}
	routes, err = netlink.RouteListFiltered(unix.AF_INET, &netlink.Route{Table: table}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	return rules, routes
}

// TestClientAddress: a client on another host (a test namespace behind a veth) that connects to a
// port published on the host's address is seen by the service with its own address, over TCP and
// UDP, on a bridge of the service's own (routed veth) and on a named one; a loopback client is seen
// as the gateway; the policy rule and route go with the last member.
func TestClientAddress(t *testing.T) {
	for _, tc := range []struct{ name, bridge, prefix string }{
		{"own bridge", "", "203.0.113.184/30"},
		{"named bridge", "app", "203.0.113.188/30"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := stateDir(t)
			root := stateRoot{dir}
			client := newTestHost(t, tc.prefix)
			ports := freePorts(t, 3)
			const svcPort = 8000
			a := attach(t, Options{Service: "web", Bridge: tc.bridge, StateDir: dir, Ports: []Port{
				{HostIP: client.hostSide, HostPort: ports[0], ContainerPort: svcPort, Proto: "tcp"},
				{HostIP: client.hostSide, HostPort: ports[0], ContainerPort: svcPort, Proto: "udp"},
				{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: ports[1], ContainerPort: svcPort, Proto: "tcp"},
				{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: ports[1], ContainerPort: svcPort, Proto: "udp"},
				{HostIP: netip.IPv4Unspecified(), HostPort: ports[2], ContainerPort: svcPort, Proto: "tcp"},
				{HostIP: netip.IPv4Unspecified(), HostPort: ports[2], ContainerPort: svcPort, Proto: "udp"},
			}})
			if len(a.Notes) > 0 {
				t.Logf("notes: %v", a.Notes)
			}
			serveRemote(t, a.Netns, netip.AddrPortFrom(a.Address, svcPort))

			for _, c := range []struct {
				name, from string
				to         netip.AddrPort
				want       netip.Addr
			}{
				{"remote tcp", client.netns, netip.AddrPortFrom(client.hostSide, ports[0]), client.addr},
				{"remote udp", client.netns, netip.AddrPortFrom(client.hostSide, ports[0]), client.addr},
				{"remote, wildcard port tcp", client.netns, netip.AddrPortFrom(client.hostSide, ports[2]), client.addr},
				{"remote, wildcard port udp", client.netns, netip.AddrPortFrom(client.hostSide, ports[2]), client.addr},
				{"loopback, wildcard port tcp", "", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ports[2]), a.Gateway},
				{"loopback tcp", "", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ports[1]), a.Gateway},
				{"loopback udp", "", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ports[1]), a.Gateway},
			} {
				proto := c.name[len(c.name)-3:]
				got, err := seenAs(c.from, proto, c.to)
				if err != nil {
					t.Errorf("%s: connecting to %s: %v", c.name, c.to, err)
					continue
				}
				if got != c.want {
					t.Errorf("%s: the service saw %s as its client, want %s", c.name, got, c.want)
				}
			}

			// The client's connection opens nothing for the service: with egress none it still
			// cannot reach the client's host on its own.
			back := serve(t, client.netns, netip.AddrPortFrom(client.addr, 0))
			if err := dial(a.Netns, "tcp", back); err == nil {
				t.Errorf("the service reached its client's host at %s with egress none", back)
			}

			rules, routes := ourRouting(t, root)
			if len(rules) != 1 || len(routes) != 1 {
				t.Errorf("while attached: %d rules and %d routes of the root, want 1 and 1: %v %v", len(rules), len(routes), rules, routes)
			}
			if err := a.Close(); err != nil {
				t.Fatal(err)
			}
			rules, routes = ourRouting(t, root)
			if len(rules) != 0 || len(routes) != 0 {
				t.Errorf("after the last member left: rules %v, routes %v", rules, routes)
			}
		})
	}
}

// TestTransparentCollision: a rule of another program on the root's table is left alone, and the
// service still gets its connections (from the gateway).
func TestTransparentCollision(t *testing.T) {
	dir := stateDir(t)
	root := stateRoot{dir}
	_, table := root.transparent()
	foreign := netlink.NewRule()
	foreign.Family = unix.AF_INET
	foreign.Priority = 31000
	foreign.Table = table
	foreign.Dst = &net.IPNet{IP: net.IPv4(203, 0, 113, 250).To4(), Mask: net.CIDRMask(32, 32)}
	if err := netlink.RuleAdd(foreign); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { netlink.RuleDel(foreign) })

	client := newTestHost(t, "203.0.113.244/30")
	ports := freePorts(t, 1)
	a := attach(t, Options{Service: "web", StateDir: dir, Ports: []Port{
		{HostIP: client.hostSide, HostPort: ports[0], ContainerPort: 8000, Proto: "tcp"},
	}})
	if len(a.Notes) == 0 {
		t.Errorf("no note says the service sees the gateway")
	}
	serveRemote(t, a.Netns, netip.AddrPortFrom(a.Address, 8000))
	got, err := seenAs(client.netns, "tcp", netip.AddrPortFrom(client.hostSide, ports[0]))
	if err != nil || got != a.Gateway {
		t.Errorf("seen as %s, %v; want the gateway %s", got, err, a.Gateway)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	rules, routes := ourRouting(t, root)
	if len(rules) != 1 || len(routes) != 0 {
		t.Errorf("after Close: rules %v (want only the foreign one), routes %v", rules, routes)
	}
}
