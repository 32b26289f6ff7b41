package network

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/miekg/dns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/safe-run/safe-run/internal/testenv"
)

// childEnv makes the test binary an owner that attaches and waits to be killed (TestCleanupDeadOwner);
// childBridgeEnv names its bridge ("" for one of its own).
const (
	childEnv       = "SAFE_RUN_NETWORK_TEST_CHILD"
	childBridgeEnv = "SAFE_RUN_NETWORK_TEST_CHILD_BRIDGE"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		a, err := Attach(context.Background(), Options{Service: "victim", Bridge: os.Getenv(childBridgeEnv), StateDir: dir, Egress: Egress{All: true}})
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("attached", a.Address)
		time.Sleep(time.Minute)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// stateDir is a state root of the test's own: its own nft table, its own interface names.
func stateDir(t *testing.T) string {
	t.Helper()
	testenv.RequireRoot(t)
	dir := t.TempDir()
	t.Cleanup(func() {
		if err := Cleanup(dir); err != nil {
			t.Errorf("Cleanup: %v", err)
		}
		assertNothingLeft(t, dir)
	})
	return dir
}

func attach(t *testing.T, opts Options) *Attachment {
	t.Helper()
	a, err := Attach(context.Background(), opts)
	if err != nil {
		t.Fatalf("Attach %s: %v", opts.Service, err)
	}
	// Cleanups run last first: the veth is looked for once Close has run.
	t.Cleanup(func() { waitLinkGone(t, a.lease.HostVeth) })
	t.Cleanup(func() {
		if err := a.Close(); err != nil {
			t.Errorf("Close %s: %v", opts.Service, err)
		}
	})
	return a
}

// linkGoneWithin bounds the kernel's asynchronous destruction of a namespace no process holds (and
// of the veth pair in it): milliseconds on an idle host, more on a loaded one, never this much.
const linkGoneWithin = 10 * time.Second

// waitLinkGone fails the test unless the host interface name disappears within linkGoneWithin.
func waitLinkGone(t *testing.T, name string) {
	t.Helper()
	deadline := time.Now().Add(linkGoneWithin)
	for {
		_, err := netlink.LinkByName(name)
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return
		}
		if err != nil {
			t.Errorf("looking for %s: %v", name, err)
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("left behind: link %s, %s after its namespace was released", name, linkGoneWithin)
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// inNetns runs f on a thread in the namespace at path, as code inside the container would. The
// thread returns to its namespace before it is unlocked: one that stayed would hold the namespace
// (and the veth in it) for the rest of the test binary's life, were it the main thread, which Go
// parks rather than ends.
func inNetns(path string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		home, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer home.Close()
		ns, err := netns.GetFromPath(path)
		if err != nil {
			errc <- err
			return
		}
		err = func() error {
			defer ns.Close()
			if err := netns.Set(ns); err != nil {
				return err
			}
			return f()
		}()
		if netns.Set(home) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// dial connects from the namespace at path ("" = the host's) and reads the greeting; nil means
// reached.
func dial(path, proto string, to netip.AddrPort) error {
	run := func(f func() error) error { return inNetns(path, f) }
	if path == "" {
		run = func(f func() error) error { return f() }
	}
	return run(func() error {
		c, err := net.DialTimeout(proto, to.String(), time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(time.Second))
		if proto == "udp" {
			if _, err := c.Write([]byte("ping")); err != nil {
				return err
			}
		}
		buf := make([]byte, 16)
		n, err := c.Read(buf)
		if err != nil {
			return err
		}
		if string(buf[:n]) != "hello" {
			return fmt.Errorf("read %q", buf[:n])
		}
		return nil
	})
}

// serve answers "hello" on TCP and UDP at addr, with sockets made in the namespace at path
// ("" = the host's), until the test ends.
func serve(t *testing.T, path string, addr netip.AddrPort) netip.AddrPort {
	t.Helper()
	var ln net.Listener
	var pc net.PacketConn
	mk := func() error {
		var err error
		if ln, err = net.Listen("tcp", addr.String()); err != nil {
			return err
		}
		if addr.Port() == 0 {
			addr = netip.MustParseAddrPort(ln.Addr().String())
		}
		pc, err = net.ListenPacket("udp", addr.String())
		return err
	}
	var err error
	if path == "" {
		err = mk()
	} else {
		err = inNetns(path, mk)
	}
	if err != nil {
		t.Fatalf("listening on %s: %v", addr, err)
	}
	t.Cleanup(func() { ln.Close(); pc.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("hello"))
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
			pc.WriteTo([]byte("hello"), from)
		}
	}()
	return addr
}

// testHost is a stand-in for a host on the internet: a namespace of the test's own behind a veth
// from the host, on a documentation prefix, so no test packet can leave the machine.
type testHost struct {
	netns    string
	addr     netip.Addr // the test host's
	hostSide netip.Addr // the host's end of the veth: a host address that is not the gateway
}

func newTestHost(t *testing.T, prefix string) testHost {
	t.Helper()
	p := netip.MustParsePrefix(prefix)
	hostSide := p.Addr().Next()
	far := hostSide.Next()
	dir := t.TempDir()
	path := filepath.Join(dir, "inet")
	if err := makeNetns(path); err != nil {
		t.Fatal(err)
	}
	name := "ti-" + shortHash(dir)[:10]
	t.Cleanup(func() {
		deleteLink(name)
		removeNetns(path)
	})
	ns, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: "tp" + name[2:], PeerNamespace: netlink.NsFd(ns)}); err != nil {
		t.Fatal(err)
	}
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.AddrAdd(l, &netlink.Addr{IPNet: ipnet(netip.PrefixFrom(hostSide, p.Bits()))}); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	peer, err := h.LinkByName("tp" + name[2:])
	if err != nil {
		t.Fatal(err)
	}
	if err := h.AddrAdd(peer, &netlink.Addr{IPNet: ipnet(netip.PrefixFrom(far, p.Bits()))}); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(peer); err != nil {
		t.Fatal(err)
	}
	return testHost{netns: path, addr: far, hostSide: hostSide}
}

// assertNothingLeft checks that no kernel object or state entry of the root remains.
func assertNothingLeft(t *testing.T, dir string) {
	t.Helper()
	root := stateRoot{filepath.Clean(dir)}
	for _, d := range []string{bridgesDir, netnsDir, filesDir, subnetsDir} {
		ents, _ := os.ReadDir(filepath.Join(dir, d))
		for _, e := range ents {
			t.Errorf("left behind: %s/%s", d, e.Name())
		}
	}
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	for fam, name := range map[nftables.TableFamily]string{nftables.TableFamilyIPv4: "ip", nftables.TableFamilyIPv6: "ip6",
		nftables.TableFamilyBridge: "bridge", nftables.TableFamilyINet: "inet"} {
		if tab, err := c.ListTableOfFamily(root.table(), fam); err == nil && tab != nil {
			t.Errorf("left behind: nft table %s %s", name, root.table())
		}
	}
	if rules, routes := ourRouting(t, root); len(rules) > 0 || len(routes) > 0 {
		t.Errorf("left behind: ip rules %v, routes %v", rules, routes)
	}
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if n := l.Attrs().Name; strings.HasPrefix(n, "sr-") || strings.HasPrefix(n, "sv-") {
			// Other roots (parallel tests) have their own; only ours are ours.
			if owned(root, n) {
				t.Errorf("left behind: link %s", n)
			}
		}
	}
}

// owned tells this root's bridge interfaces from other roots'; veths are checked through leases,
// which are gone, so a veth is only suspicious if it sits on none of the bridges.
func owned(root stateRoot, ifname string) bool {
	for _, n := range testBridgeNames {
		if root.bridgeIfname(n) == ifname {
			return true
		}
	}
	return false
}

var testBridgeNames = []string{"app", "other", "crash", "conc", "_web", "_a", "_b", "_c", "_none", "_all", "_list", "_host"}

// syncBuffer is an io.Writer safe for the denial reader's goroutine and the test's.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor polls until cond holds or two seconds pass.
func waitFor(cond func() bool) bool {
	for range 40 {
		if cond() {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return cond()
}

// inNetnsT runs f on a thread in the namespace ns and fails the test if it
// cannot enter it. Sockets f makes stay in ns when used from other
// goroutines.
func inNetnsT(t *testing.T, ns string, f func()) {
	t.Helper()
	if err := inNetns(ns, func() error { f(); return nil }); err != nil {
		t.Fatalf("entering %s: %v", ns, err)
	}
}

// lookupA asks server, from the namespace at path, for name's A record:
// the address, 0.0.0.0 for an answer without one (NXDOMAIN), or an error
// when nothing answers.
func lookupA(path, proto string, server netip.Addr, name string) (netip.Addr, error) {
	var got netip.Addr
	err := inNetns(path, func() error {
		c := &dns.Client{Net: proto, Timeout: time.Second}
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		r, _, err := c.Exchange(m, netip.AddrPortFrom(server, 53).String())
		if err != nil {
			return err
		}
		got = netip.IPv4Unspecified()
		for _, rr := range r.Answer {
			if a, ok := rr.(*dns.A); ok {
				got, _ = netip.AddrFromSlice(a.A.To4())
			}
		}
		return nil
	})
	return got, err
}
