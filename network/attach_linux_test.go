package network

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/safe-run/safe-run/internal/testenv"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestAttachNamespace(t *testing.T) {
	dir := stateDir(t)
	a := attach(t, Options{Service: "web", StateDir: dir})
	if a.Bridge != "_web" || !a.Address.IsValid() || a.Gateway.Next() != a.Address {
		t.Fatalf("attachment: bridge %q address %s gateway %s", a.Bridge, a.Address, a.Gateway)
	}
	if !pool.Contains(a.Address) {
		t.Errorf("address %s outside %s", a.Address, pool)
	}
	// A bridge of its own is a routed veth pair: no bridge device, the gateway on the host end.
	if _, err := netlink.LinkByName(stateRoot{dir}.bridgeIfname("_web")); err == nil {
		t.Errorf("a bridge device for a bridge of its own")
	}
	host, err := netlink.LinkByName(a.lease.HostVeth)
	if err != nil {
		t.Fatal(err)
	}
	if host.Type() != "veth" || host.Attrs().MasterIndex != 0 || host.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("host end %s: type %s, master %d, flags %v; want an up veth on no bridge", a.lease.HostVeth, host.Type(), host.Attrs().MasterIndex, host.Attrs().Flags)
	}
	if addrs, err := netlink.AddrList(host, netlink.FAMILY_ALL); err != nil || len(addrs) != 1 || addrs[0].IPNet.String() != netip.PrefixFrom(a.Gateway, 24).String() {
		t.Errorf("host end addresses %v (%v), want only %s/24", addrs, err, a.Gateway)
	}
	err = inNetns(a.Netns, func() error {
		for key, want := range map[string]string{
			"net/ipv4/ip_unprivileged_port_start": "0",
			"net/ipv6/conf/all/disable_ipv6":      "1",
			"net/ipv6/conf/default/disable_ipv6":  "1",
		} {
			v, err := os.ReadFile("/proc/sys/" + key)
			if err != nil {
				return err
			}
			if strings.TrimSpace(string(v)) != want {
				return fmt.Errorf("%s = %s, want %s", key, v, want)
			}
		}
		eth0, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		addrs, err := netlink.AddrList(eth0, netlink.FAMILY_V4)
		if err != nil || len(addrs) != 1 || addrs[0].IPNet.String() != netip.PrefixFrom(a.Address, 24).String() {
			return fmt.Errorf("eth0 addresses %v (%w), want %s/24", addrs, err, a.Address)
		}
		routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(routes, func(r netlink.Route) bool {
			return (r.Dst == nil || r.Dst.String() == "0.0.0.0/0") && r.Gw.String() == a.Gateway.String()
		}) {
			return fmt.Errorf("no default route via %s in %v", a.Gateway, routes)
		}
		lo, err := netlink.LinkByName("lo")
		if err != nil || lo.Attrs().Flags&(1<<0) == 0 {
			return fmt.Errorf("lo not up (%w)", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		a.Files.ResolvConf: "nameserver " + a.Gateway.String() + "\n",
		a.Files.Hosts:      "127.0.0.1\tlocalhost\n" + a.Address.String() + "\tweb web._web\n",
		a.Files.Hostname:   "web\n",
	} {
		got, err := os.ReadFile(path)
		if err != nil || !strings.HasPrefix(string(got), want) {
			t.Errorf("%s = %q (%v), want it to start with %q", path, got, err, want)
		}
	}
	m, err := Members(dir, "_web")
	if err != nil || len(m) != 1 || m["web"] != a.Address {
		t.Errorf("Members = %v, %v", m, err)
	}
	if _, err := Attach(t.Context(), Options{Service: "web", StateDir: dir}); err == nil || !strings.Contains(err.Error(), "already on bridge") {
		t.Errorf("second Attach of web: %v, want already on bridge", err)
	}
}

// The bridge's resolver answers its members on the gateway, over UDP and
// TCP, and nobody on another bridge.
func TestBridgeDNS(t *testing.T) {
	dir := stateDir(t)
	a := attach(t, Options{Service: "a", Bridge: "app", StateDir: dir})
	b := attach(t, Options{Service: "b", Bridge: "app", StateDir: dir})
	c := attach(t, Options{Service: "c", Bridge: "other", StateDir: dir, Egress: Egress{All: true}})
	for _, tc := range []struct {
		name, from, proto, query string
		server                   netip.Addr
		want                     netip.Addr // invalid: no answer at all
	}{
		{"peer by name, udp", b.Netns, "udp", "a.", a.Gateway, a.Address},
		{"peer by name.bridge, tcp", b.Netns, "tcp", "a.app.", a.Gateway, a.Address},
		{"another bridge's resolver", c.Netns, "udp", "a.app.", a.Gateway, netip.Addr{}},
		{"another bridge's member through its own resolver", c.Netns, "udp", "a.app.", c.Gateway, netip.IPv4Unspecified()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := lookupA(tc.from, tc.proto, tc.server, tc.query)
			switch {
			case !tc.want.IsValid() && err == nil:
				t.Errorf("%s answered %s, want no answer", tc.server, got)
			case tc.want.IsValid() && err != nil:
				t.Errorf("asking %s for %s: %v", tc.server, tc.query, err)
			case tc.want.IsValid() && got != tc.want:
				t.Errorf("%s resolves to %s, want %s", tc.query, got, tc.want)
			}
		})
	}
}

func TestIsolation(t *testing.T) {
	dir := stateDir(t)
	var denials syncBuffer
	a := attach(t, Options{Service: "a", Bridge: "app", StateDir: dir, Denials: &denials})
	b := attach(t, Options{Service: "b", Bridge: "app", StateDir: dir, Denials: &denials})
	// c may go anywhere: its egress must still not reach another bridge. It also turns forwarding
	// on, without which routing alone would keep the bridges apart and prove nothing.
	c := attach(t, Options{Service: "c", Bridge: "other", StateDir: dir, Egress: Egress{All: true}, Denials: &denials})
	if a.Gateway != b.Gateway || a.Gateway == c.Gateway {
		t.Fatalf("gateways: a %s b %s c %s", a.Gateway, b.Gateway, c.Gateway)
	}
	svc := serve(t, a.Netns, netip.AddrPortFrom(a.Address, 7000))
	serve(t, c.Netns, netip.AddrPortFrom(c.Address, 7001))
	loopback := serve(t, "", netip.MustParseAddrPort("127.0.0.1:0"))
	onGateway := serve(t, "", netip.AddrPortFrom(a.Gateway, 0))

	for _, tc := range []struct {
		name  string
		from  string
		proto string
		to    netip.AddrPort
		ok    bool
	}{
		{"peer on the same bridge", b.Netns, "tcp", svc, true},
		{"peer on the same bridge, udp", b.Netns, "udp", svc, true},
		{"service on another bridge", c.Netns, "tcp", svc, false},
		{"service on another bridge, udp", c.Netns, "udp", svc, false},
		{"back from the other bridge's side", b.Netns, "tcp", netip.AddrPortFrom(c.Address, 7001), false},
		{"host loopback service", b.Netns, "tcp", loopback, false},
		{"host loopback service's port on the gateway", b.Netns, "tcp", netip.AddrPortFrom(b.Gateway, loopback.Port()), false},
		{"gateway, non-DNS port", b.Netns, "tcp", onGateway, false},
		{"gateway, non-DNS port, udp", b.Netns, "udp", onGateway, false},
		{"another bridge's gateway", c.Netns, "tcp", onGateway, false},
		{"the host to a service (published ports' forwarders)", "", "tcp", svc, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := dial(tc.from, tc.proto, tc.to)
			if tc.ok && err != nil {
				t.Errorf("%s %s: %v, want reached", tc.proto, tc.to, err)
			}
			if !tc.ok && err == nil {
				t.Errorf("%s %s reached, want blocked", tc.proto, tc.to)
			}
		})
	}

	// Each blocked connection is reported as its sender's denial: to another bridge (whatever
	// its egress says) and to the host. The one to the namespace's own loopback never left it.
	for _, want := range []string{
		fmt.Sprintf("c: egress denied %s/tcp\n", svc),
		fmt.Sprintf("c: egress denied %s/udp\n", svc),
		fmt.Sprintf("b: egress denied %s:7001/tcp\n", c.Address),
		fmt.Sprintf("b: egress denied %s:%d/tcp\n", b.Gateway, loopback.Port()),
		fmt.Sprintf("b: egress denied %s/tcp\n", onGateway),
		fmt.Sprintf("b: egress denied %s/udp\n", onGateway),
		fmt.Sprintf("c: egress denied %s/tcp\n", onGateway),
	} {
		if !waitFor(func() bool { return strings.Contains(denials.String(), want) }) {
			t.Errorf("denials %q lack %q", denials.String(), want)
		}
	}
	if strings.Contains(denials.String(), "a: ") {
		t.Errorf("denials of a, which sent nothing: %q", denials.String())
	}
}

func TestEgress(t *testing.T) {
	testenv.Long(t)
	dir := stateDir(t)
	inet := newTestHost(t, "198.51.100.200/30")
	open := serve(t, inet.netns, netip.AddrPortFrom(inet.addr, 8080))
	closed := serve(t, inet.netns, netip.AddrPortFrom(inet.addr, 4444))

	var resolveMu sync.Mutex
	resolved := netip.MustParseAddr("192.0.2.99") // never dialled: only the rule is looked at
	var denials syncBuffer
	mk := func(name string, e Egress) *Attachment {
		return attach(t, Options{Service: name, StateDir: dir, Egress: e, Denials: &denials,
			resolve: func(host string) ([]netip.Addr, time.Duration, error) {
				if host != "inet.test" {
					return nil, 0, fmt.Errorf("unknown %s", host)
				}
				resolveMu.Lock()
				defer resolveMu.Unlock()
				return []netip.Addr{resolved}, time.Second, nil
			}})
	}
	// "all" first: it turns forwarding on, without which "none" would be denied by the routing
	// code before the rules saw (and reported) it.
	all := mk("all", Egress{All: true})
	if fwd, _ := os.ReadFile(forwardSysctl); strings.TrimSpace(string(fwd)) != "1" {
		t.Fatalf("ip_forward = %s after an egress=all attach", fwd)
	}
	t.Logf("notes: %q", all.Notes)
	none := mk("none", Egress{})
	list := mk("list", Egress{Rules: []EgressRule{
		{Prefix: netip.PrefixFrom(inet.addr, 32), Port: 8080, Proto: "tcp"},
		{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Port: 9999},
	}})
	// A host address named by an entry is open to that service only; 0.0.0.0/0 names none.
	onHost := serve(t, "", netip.AddrPortFrom(inet.hostSide, 0))
	onHost9999 := serve(t, "", netip.AddrPortFrom(inet.hostSide, 9999))
	named := mk("named", Egress{Rules: []EgressRule{{Prefix: netip.PrefixFrom(inet.hostSide, 32), Port: onHost.Port(), Proto: "tcp"}}})
	host := mk("host", Egress{Rules: []EgressRule{{Host: "inet.test", Port: 8080}}})

	for _, tc := range []struct {
		name  string
		a     *Attachment
		proto string
		to    netip.AddrPort
		ok    bool
	}{
		{"all: open port", all, "tcp", open, true},
		{"all: other port", all, "tcp", closed, true},
		{"all: udp", all, "udp", closed, true},
		{"none", none, "tcp", open, false},
		{"none: udp", none, "udp", open, false},
		{"list: allowed port", list, "tcp", open, true},
		{"list: allowed port, other protocol", list, "udp", open, false},
		{"list: other port", list, "tcp", closed, false},
		{"hostname resolved elsewhere", host, "tcp", open, false},
		{"host address named by an entry", named, "tcp", onHost, true},
		{"host address, other port", named, "tcp", onHost9999, false},
		{"host address not named (0.0.0.0/0:9999)", list, "tcp", onHost9999, false},
		{"host address named by another service's entry", none, "tcp", onHost, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := dial(tc.a.Netns, tc.proto, tc.to)
			if tc.ok && err != nil {
				t.Errorf("%s %s: %v, want reached", tc.proto, tc.to, err)
			}
			if !tc.ok && err == nil {
				t.Errorf("%s %s reached, want blocked", tc.proto, tc.to)
			}
		})
	}

	for _, want := range []string{
		"none: egress denied 198.51.100.202:8080/tcp\n",
		"none: egress denied 198.51.100.202:8080/udp\n",
		"list: egress denied 198.51.100.202:4444/tcp\n",
		"list: egress denied 198.51.100.202:8080/udp\n",
		"host: egress denied 198.51.100.202:8080/tcp\n",
		// Host addresses no entry of the service's names.
		fmt.Sprintf("list: egress denied %s/tcp\n", onHost9999),
		fmt.Sprintf("named: egress denied %s/tcp\n", onHost9999),
		fmt.Sprintf("none: egress denied %s/tcp\n", onHost),
	} {
		if !waitFor(func() bool { return strings.Contains(denials.String(), want) }) {
			t.Errorf("denials %q lack %q", denials.String(), want)
		}
	}
	t.Logf("denials:\n%s", denials.String())
	if strings.Contains(denials.String(), "all:") {
		t.Errorf("denials for egress=all: %q", denials.String())
	}
	// Rate limit: a second SYN to the same place within denialEvery is not reported again.
	if n := strings.Count(denials.String(), "list: egress denied 198.51.100.202:4444/tcp"); n != 1 {
		t.Errorf("denial reported %d times, want once: %q", n, denials.String())
	}

	// The hostname now resolves to the test host: the refresh (TTL clamped to minRefresh) opens it.
	resolveMu.Lock()
	resolved = inet.addr
	resolveMu.Unlock()
	deadline := time.Now().Add(minRefresh + 5*time.Second)
	for dial(host.Netns, "tcp", open) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("hostname rule not refreshed to %s within %s", inet.addr, minRefresh+5*time.Second)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err := dial(host.Netns, "tcp", closed); err == nil {
		t.Errorf("hostname rule for port 8080 lets 4444 through")
	}
}

func TestConcurrentAttach(t *testing.T) {
	dir := stateDir(t)
	const n = 8
	var wg sync.WaitGroup
	atts := make([]*Attachment, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			atts[i], errs[i] = Attach(t.Context(), Options{Service: fmt.Sprintf("s%d", i), Bridge: "conc", StateDir: dir})
		}()
	}
	wg.Wait()
	seen := map[netip.Addr]string{}
	for i, a := range atts {
		if errs[i] != nil {
			t.Fatalf("Attach s%d: %v", i, errs[i])
		}
		t.Cleanup(func() { a.Close() })
		if other, dup := seen[a.Address]; dup {
			t.Errorf("s%d and %s both got %s", i, other, a.Address)
		}
		seen[a.Address] = fmt.Sprintf("s%d", i)
	}
	m, err := Members(dir, "conc")
	if err != nil || len(m) != n {
		t.Errorf("Members = %v (%v), want %d", m, err, n)
	}
}

func TestCloseLeavesNothing(t *testing.T) {
	dir := stateDir(t)
	a := attach(t, Options{Service: "a", Bridge: "app", StateDir: dir, Egress: Egress{All: true}})
	b := attach(t, Options{Service: "b", Bridge: "app", StateDir: dir})
	root := stateRoot{dir}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := os.Stat(a.Netns); err == nil {
		t.Errorf("netns %s left after Close", a.Netns)
	}
	if _, err := netlink.LinkByName(root.bridgeIfname("app")); err != nil {
		t.Errorf("bridge removed while b is on it: %v", err)
	}
	if m, _ := Members(dir, "app"); len(m) != 1 || m["b"] != b.Address {
		t.Errorf("Members after a left = %v", m)
	}
	c, _ := nftables.New()
	if tab, err := c.ListTableOfFamily(root.table(), nftables.TableFamilyIPv4); err != nil || tab == nil {
		t.Errorf("table removed while b runs: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	assertNothingLeft(t, dir)
	// Close leaves the pairs to the kernel, which destroys them with the namespaces.
	waitLinkGone(t, a.lease.HostVeth)
	waitLinkGone(t, b.lease.HostVeth)
}

// A service restarted at once, while the kernel may still be destroying its previous namespace and
// veth, gets a veth of another name and works, on a bridge of its own and on a named one.
func TestRestartAtOnce(t *testing.T) {
	dir := stateDir(t)
	for _, bridge := range []string{"", "app"} {
		t.Run("bridge "+bridge, func(t *testing.T) {
			opts := Options{Service: "web", Bridge: bridge, StateDir: dir}
			first, err := Attach(t.Context(), opts)
			if err != nil {
				t.Fatal(err)
			}
			if err := first.Close(); err != nil {
				t.Fatal(err)
			}
			second := attach(t, opts)
			if second.lease.HostVeth == first.lease.HostVeth {
				t.Errorf("restart reuses veth name %s", second.lease.HostVeth)
			}
			to := serve(t, second.Netns, netip.AddrPortFrom(second.Address, 7000))
			if err := dial("", "tcp", to); err != nil {
				t.Errorf("restarted service unreachable at %s: %v", to, err)
			}
			waitLinkGone(t, first.lease.HostVeth)
		})
	}
}

// killedOwner starts a process that attaches "victim" to bridge (one of its own if "") and
// SIGKILLs it, so that it leaves all it made behind.
func killedOwner(t *testing.T, dir, bridge string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+dir, childBridgeEnv+"="+bridge)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if !strings.HasPrefix(line, "attached ") {
		t.Fatalf("child: %q", line)
	}
	if bridge == "" {
		bridge = ownBridge("victim")
	}
	b, err := stateRoot{dir}.readBridge(bridge)
	if err != nil || b == nil {
		t.Fatalf("no bridge state to reclaim: %v", err)
	}
	if _, err := netlink.LinkByName(b.Ifname); err != nil {
		t.Fatalf("no leftovers to reclaim (bridge: %v)", err)
	}
	ents, _ := os.ReadDir(filepath.Join(dir, netnsDir))
	if len(ents) != 1 {
		t.Fatalf("netns dir holds %d entries, want the dead owner's one", len(ents))
	}
	if m, _ := Members(dir, bridge); len(m) != 0 {
		t.Errorf("dead owner still listed: %v", m)
	}
}

func TestCleanupDeadOwner(t *testing.T) {
	dir := stateDir(t)
	killedOwner(t, dir, "crash")
	// And a lease claim it was killed in the middle of.
	if err := os.WriteFile(filepath.Join(stateRoot{dir}.leasesDir("crash"), ".tmp-123"), []byte(`{"service":`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Cleanup(dir); err != nil {
		t.Fatal(err)
	}
	assertNothingLeft(t, dir)
}

func TestAttachReclaimsDeadOwner(t *testing.T) {
	dir := stateDir(t)
	killedOwner(t, dir, "crash")
	a := attach(t, Options{Service: "victim", Bridge: "crash", StateDir: dir})
	ents, _ := os.ReadDir(filepath.Join(dir, netnsDir))
	if len(ents) != 1 || filepath.Join(dir, netnsDir, ents[0].Name()) != a.Netns {
		t.Errorf("netns dir holds %v, want only %s", ents, a.Netns)
	}
	b, err := stateRoot{dir}.bridges()
	if err != nil || len(b["crash"].Leases) != 1 || b["crash"].Leases[0].PID != os.Getpid() {
		t.Errorf("leases after reclaiming: %+v (%v)", b, err)
	}
	// The dead owner's chains and map elements went by name (its address is the victim's now).
	assertTableMatchesLeases(t, stateRoot{dir}, "after reclaiming")
}

// TestOwnBridgeRemadeAfterDeadOwner: a start finds its bridge of its own left by a killed run
// while another reclaimer (the janitor's network-cleanup) holds the dead owner's lease, so that
// its own reclaim passes it by; it deletes that bridge, makes its own, and its stop deletes that:
// nothing is left.
func TestOwnBridgeRemadeAfterDeadOwner(t *testing.T) {
	dir := stateDir(t)
	root := stateRoot{dir}
	killedOwner(t, dir, "")
	bridge := ownBridge("victim")
	names, err := root.leaseNames(bridge)
	if err != nil || len(names) != 1 {
		t.Fatalf("the dead owner's leases: %v (%v)", names, err)
	}
	h, err := takeLease(filepath.Join(root.leasesDir(bridge), names[0]), false)
	if err != nil || h == nil {
		t.Fatalf("taking the dead owner's lease: %v", err)
	}
	other := make(chan error, 1)
	go func() {
		time.Sleep(200 * time.Millisecond) // the start below is waiting for the lease by then
		b, err := root.readBridge(bridge)
		if err == nil {
			err = root.reclaimHeld(b, h, nil)
		}
		_, terr := root.tidy(bridge, nil)
		other <- errors.Join(err, terr)
	}()
	attachCloseLeavesNothing(t, dir, "victim")
	if err := <-other; err != nil {
		t.Errorf("the other reclaimer: %v", err)
	}
}

// attachCloseLeavesNothing attaches service to a bridge of its own, closes, and finds nothing
// left under dir for a Cleanup to take.
func attachCloseLeavesNothing(t *testing.T, dir, service string) {
	t.Helper()
	a, err := Attach(t.Context(), Options{Service: service, StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	assertNothingLeft(t, dir)
}

// TestStaleStateTemporary: a SIGKILL while the first member wrote a bridge's state file leaves its
// temporary file; the bridge's deletion by its next last member takes it.
func TestStaleStateTemporary(t *testing.T) {
	dir := stateDir(t)
	root := stateRoot{dir}
	bridge := ownBridge("web")
	if err := os.MkdirAll(root.bridgeDir(bridge), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root.bridgeDir(bridge), ".tmp-bridge.json123"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	attachCloseLeavesNothing(t, dir, "web")
}

// TestStaleSubnetClaim: a SIGKILL between a first member's subnet claim and its state file leaves
// the claim; the next first member of the bridge takes it back, and nothing is left after it.
func TestStaleSubnetClaim(t *testing.T) {
	dir := stateDir(t)
	root := stateRoot{dir}
	if err := root.init(); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(ownBridge("web"), root.subnetClaim(netip.MustParsePrefix("10.89.0.0/24"))); err != nil {
		t.Fatal(err)
	}
	attachCloseLeavesNothing(t, dir, "web")
}

// TestOtherLayout: beside the tables of a safe-run whose skeleton has another layout, whose member
// chains would not stop egress "all" at another bridge under this skeleton (layoutChain), a start
// refuses with the fix and leaves nothing.
func TestOtherLayout(t *testing.T) {
	dir := stateDir(t)
	root := stateRoot{dir}
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	old := c.AddTable(&nftables.Table{Name: root.table(), Family: nftables.TableFamilyIPv4})
	c.AddChain(&nftables.Chain{Name: "layout-3", Table: old})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.DelTable(old); _ = c.Flush() })
	_, err = Attach(t.Context(), Options{Service: "web", StateDir: dir})
	want := fmt.Sprintf("nftables table ip %s has the layout-3 rules of another version of safe-run, which this one does not mix with its own (%s): stop the services on its bridges (safe-run ps), then start again; if none runs, `safe-run network-cleanup` on its state directory deletes the table", root.table(), layoutChain)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Attach beside another layout: %v\nwant %s", err, want)
	}
	// With no bridge of the root's left, the refused start, its last member, deleted the tables:
	// the next start goes in.
	assertNothingLeft(t, dir)
	attachCloseLeavesNothing(t, dir, "web")
}

// TestAttachReplacesOrphansOfItsAddress: a stop killed after dropping its lease leaves map
// elements with the keys of the next lease of its address, which the kernel will not replace;
// that next start deletes them and goes in. The rest (its chains, its port's element) is the
// janitor's Cleanup's.
func TestAttachReplacesOrphansOfItsAddress(t *testing.T) {
	dir := stateDir(t)
	root := stateRoot{dir}
	gone := attach(t, Options{Service: "gone", Bridge: "reuse", StateDir: dir})
	attach(t, Options{Service: "stays", Bridge: "reuse", StateDir: dir})
	killedStop(t, root, "reuse", gone)
	next := attach(t, Options{Service: "next", Bridge: "reuse", StateDir: dir})
	if next.Address != gone.Address {
		t.Fatalf("the next start got %s, not the killed stop's %s: the test tests nothing", next.Address, gone.Address)
	}
	if err := Cleanup(dir); err != nil {
		t.Fatal(err)
	}
	assertTableMatchesLeases(t, root, "after the next start and a Cleanup")
}

// killedStop removes a's lease file and nothing else: what a safe-run from before lease files
// left when killed between dropping its lease and deleting its firewall objects (a stop now
// deletes them first), or a lease file lost some other way.
func killedStop(t *testing.T, root stateRoot, bridge string, a *Attachment) {
	t.Helper()
	if err := os.Remove(root.leaseFile(bridge, a.Address)); err != nil {
		t.Fatal(err)
	}
}

// TestCleanupSweepsOrphans: a stop killed after dropping its lease, before deleting its chains
// and map elements, leaves them with no lease naming them; Cleanup deletes them, and nothing of
// the member that stays.
func TestCleanupSweepsOrphans(t *testing.T) {
	dir := stateDir(t)
	root := stateRoot{dir}
	gone := attach(t, Options{Service: "gone", Bridge: "sweep", StateDir: dir})
	attach(t, Options{Service: "stays", Bridge: "sweep", StateDir: dir})
	killedStop(t, root, "sweep", gone)
	if err := Cleanup(dir); err != nil {
		t.Fatal(err)
	}
	assertTableMatchesLeases(t, root, "after Cleanup")
}

// TestBridgeMACStays: the bridge's MAC address, which members learn for the gateway, is the same
// from its first member to its last, whoever joins or leaves. A Linux bridge left to itself takes
// its lowest port's MAC and changes it as ports come and go; the members' ARP entries then name a
// MAC nobody answers, and their DNS stops until the entries are probed again (found by
// example/network_test.go, "resolver outlives its first member").
func TestBridgeMACStays(t *testing.T) {
	dir := stateDir(t)
	ifname := stateRoot{dir}.bridgeIfname("mac")
	mac := func(when string) string {
		t.Helper()
		l, err := netlink.LinkByName(ifname)
		if err != nil {
			t.Fatalf("bridge %s %s: %v", ifname, when, err)
		}
		return l.Attrs().HardwareAddr.String()
	}
	a, err := Attach(t.Context(), Options{Service: "first", Bridge: "mac", StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	want := mac("with its first member")
	attach(t, Options{Service: "second", Bridge: "mac", StateDir: dir})
	if got := mac("after a second member joined"); got != want {
		t.Errorf("bridge %s changed its MAC from %s to %s when a second member joined", ifname, want, got)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if got := mac("after its first member left"); got != want {
		t.Errorf("bridge %s changed its MAC from %s to %s when its first member left", ifname, want, got)
	}
}

// TestDenialBeforeClose: a denial in a service's last moment is reported, not lost with the
// NFLOG socket at Close. The kernel batched up to 100 log messages and sent them a second later
// (found by example/network_test.go, "denials rate-limited", which lost them now and then); and
// Close read for 5 ms, where a read of what is queued, without waiting, is enough.
func TestDenialBeforeClose(t *testing.T) {
	dir := stateDir(t)
	inet := newTestHost(t, "198.51.100.204/30")
	// egress=all turns forwarding on, without which the routing code, not the rules, denies.
	attach(t, Options{Service: "fwd", StateDir: dir, Egress: Egress{All: true}})
	for _, tc := range []struct {
		service string
		wait    time.Duration // between the denied packet and Close
	}{
		{"brief", 200 * time.Millisecond}, // well within the kernel's old one-second batch
		{"at-once", 0},                    // nothing but the socket's queue
	} {
		t.Run(tc.service, func(t *testing.T) {
			var denials syncBuffer
			a, err := Attach(t.Context(), Options{Service: tc.service, StateDir: dir, Denials: &denials})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { a.Close() })
			to := netip.AddrPortFrom(inet.addr, 5353)
			inNetnsT(t, a.Netns, func() {
				c, err := net.Dial("udp4", to.String())
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				if _, err := c.Write([]byte("x")); err != nil {
					t.Fatal(err)
				}
			})
			time.Sleep(tc.wait)
			if err := a.Close(); err != nil {
				t.Fatal(err)
			}
			if want := tc.service + ": egress denied " + to.String() + "/udp\n"; denials.String() != want {
				t.Errorf("denials after Close: %q, want %q", denials.String(), want)
			}
		})
	}
}

// TestAttachWaitsForNoMember: while another start holds the root's and a bridge's locks as a
// joiner does (shared, between finding the bridge and claiming its lease), a third member
// attaches to that bridge and a member that is not the last detaches, neither waiting for it;
// only the last member's deletion of the bridge waits, and gives up once a lease is there
// (issue 19).
func TestAttachWaitsForNoMember(t *testing.T) {
	dir := stateDir(t)
	root := stateRoot{dir}
	first := attach(t, Options{Service: "first", Bridge: "app", StateDir: dir})
	rlk, err := root.lockRoot(unix.LOCK_SH)
	if err != nil {
		t.Fatal(err)
	}
	blk, err := root.lockBridge("app", unix.LOCK_SH)
	if err != nil {
		rlk.unlock()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	var second *Attachment
	go func() {
		var err error
		second, err = Attach(t.Context(), Options{Service: "second", Bridge: "app", StateDir: dir})
		if err == nil {
			err = first.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Error(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("an attach and a detach waited for another member's shared locks")
	}
	if second == nil {
		blk.unlock()
		rlk.unlock()
		return
	}
	// The last member's stop waits to delete the bridge while a joiner holds its lock, and
	// gives up once that joiner has its lease.
	closed := make(chan error, 1)
	go func() { closed <- second.Close() }()
	select {
	case err := <-closed:
		t.Errorf("the last member's stop returned (%v) while a joiner held the bridge's lock", err)
	case <-time.After(300 * time.Millisecond):
	}
	third := attach(t, Options{Service: "third", Bridge: "app", StateDir: dir})
	select {
	case err := <-closed:
		if err != nil {
			t.Error(err)
		}
	case <-time.After(20 * time.Second):
		t.Error("the last member's stop did not give up deleting the bridge once a lease was there")
	}
	blk.unlock()
	rlk.unlock()
	if m, err := Members(dir, "app"); err != nil || len(m) != 1 || m["third"] != third.Address {
		t.Errorf("Members = %v, %v; want third only", m, err)
	}
	waitLinkGone(t, second.lease.HostVeth)
}

// TestOlderInetTable: an inet table of the root's name is an older safe-run's (its rules would drop
// this one's members on a bridge they share): a start refuses to go on beside it and says how to
// remove it, Cleanup removes it once no bridge is left, and a start then works.
func TestOlderInetTable(t *testing.T) {
	dir := stateDir(t)
	root := stateRoot{dir}
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	old := &nftables.Table{Name: root.table(), Family: nftables.TableFamilyINet}
	c.AddTable(old)
	c.AddChain(&nftables.Chain{Name: "layout-2", Table: old})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.DelTable(old)
		_ = c.Flush() // gone already unless the test failed
	})
	_, err = Attach(context.Background(), Options{Service: "new", StateDir: dir})
	want := "nftables table inet " + root.table() + " was written by an older safe-run: stop the services on its bridges, then run `safe-run network-cleanup` on its state directory, which deletes it"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Attach beside an older inet table: %v, want an error with %q", err, want)
	}
	if err := Cleanup(dir); err != nil {
		t.Fatal(err)
	}
	if tab, err := c.ListTableOfFamily(root.table(), nftables.TableFamilyINet); err == nil && tab != nil {
		t.Fatalf("Cleanup left the older inet table %s", root.table())
	}
	a := attach(t, Options{Service: "new", StateDir: dir})
	if !a.Address.IsValid() {
		t.Errorf("Attach after Cleanup: no address")
	}
}
