package network

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestCorruptBridgeState: a bridge state file or a lease file that does
// not parse, or parses into what Attach never writes, is refused by every
// reader with the file and the fix, and left where it is for the
// operator: never acted on (its interfaces and namespaces are what
// Cleanup deletes), never silently replaced.
func TestCorruptBridgeState(t *testing.T) {
	dir := t.TempDir()
	root := stateRoot{dir}
	if err := root.init(); err != nil {
		t.Fatal(err)
	}
	netns, _ := Paths(dir, "web", "shop")
	subnet := netip.MustParsePrefix("10.89.3.0/24")
	good := func() *bridgeState {
		return &bridgeState{
			Name: "shop", Ifname: root.bridgeIfname("shop"),
			Subnet: subnet, Gateway: netip.MustParseAddr("10.89.3.1"),
		}
	}
	goodLease := func() lease {
		return lease{Service: "web", Address: netip.MustParseAddr("10.89.3.2"), PID: 1, Netns: netns, HostVeth: "sv-0123456789"}
	}
	if err := os.MkdirAll(root.leasesDir("shop"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("shop", root.subnetClaim(subnet)); err != nil {
		t.Fatal(err)
	}
	file := root.bridgeFile("shop")
	leaseFile := root.leaseFile("shop", netip.MustParseAddr("10.89.3.2"))
	fix := "(corrupt or edited by hand: stop the services on bridge shop, then delete its directory " + root.bridgeDir("shop") + " and what it names: its interfaces (ip link) and namespaces under " + filepath.Join(dir, netnsDir) + ")"
	leaseFix := "(corrupt or edited by hand: stop the service it is of, then delete the file and what it names: its interface (ip link) and namespace under " + filepath.Join(dir, netnsDir) + ")"
	write := func(t *testing.T, path string, v any, raw string) {
		t.Helper()
		data := []byte(raw)
		if v != nil {
			var err error
			if data, err = json.Marshal(v); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	check := func(t *testing.T, path, want string) {
		t.Helper()
		before, _ := os.ReadFile(path)
		if _, err := root.bridges(); err == nil || err.Error() != want {
			t.Errorf("bridges: %v\nwant %s", err, want)
		}
		if _, err := Members(dir, "shop"); err == nil || err.Error() != want {
			t.Errorf("Members: %v\nwant %s", err, want)
		}
		// Cleanup reclaims a lease with a dead owner (pid 1's start time differs), but not one
		// it cannot read: nothing it names is touched.
		if err := Cleanup(dir); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Cleanup: %v\nwant %s", err, want)
		}
		if after, _ := os.ReadFile(path); string(after) != string(before) {
			t.Errorf("the file changed: %q -> %q", before, after)
		}
	}
	for _, tc := range []struct {
		name string
		edit func(b *bridgeState) // nil: raw is the file
		raw  string
		want string // after "network state FILE: ", before the fix
	}{
		{name: "truncated", raw: `{"name": "shop", "ifn`, want: "unexpected end of JSON input"},
		{name: "empty", raw: ``, want: "unexpected end of JSON input"},
		{name: "zeros", raw: "\x00\x00\x00\x00", want: "invalid character '\\x00' looking for beginning of value"},
		{name: "null", raw: `null`, want: `it is the state of bridge "", not of "shop"`},
		{name: "other bridge's", edit: func(b *bridgeState) { b.Name = "other" }, want: `it is the state of bridge "other", not of "shop"`},
		{name: "host interface", edit: func(b *bridgeState) { b.Ifname = "eth0" }, want: `interface "eth0" is not bridge shop's (` + root.bridgeIfname("shop") + ")"},
		{name: "routed host interface", edit: func(b *bridgeState) { b.Routed, b.Ifname = true, "lo" }, want: `interface "lo" is not a veth safe-run names`},
		{name: "subnet outside the pool", edit: func(b *bridgeState) { b.Subnet = netip.MustParsePrefix("192.168.1.0/24") }, want: "subnet 192.168.1.0/24 is not a /24 of 10.89.0.0/16"},
		{name: "no subnet", edit: func(b *bridgeState) { b.Subnet = netip.Prefix{} }, want: "subnet invalid Prefix is not a /24 of 10.89.0.0/16"},
		{name: "gateway", edit: func(b *bridgeState) { b.Gateway = netip.MustParseAddr("10.89.3.7") }, want: "gateway 10.89.3.7 is not the first address of 10.89.3.0/24"},
		// Two bridges on one subnet would give two services one address.
		{name: "another bridge's subnet", edit: func(b *bridgeState) {
			b.Subnet, b.Gateway = netip.MustParsePrefix("10.89.4.0/24"), netip.MustParseAddr("10.89.4.1")
			os.Symlink("cafe", root.subnetClaim(b.Subnet))
		}, want: "subnet 10.89.4.0/24 is bridge cafe's (" + root.subnetClaim(netip.MustParsePrefix("10.89.4.0/24")) + ")"},
		{name: "unclaimed subnet", edit: func(b *bridgeState) {
			b.Subnet, b.Gateway = netip.MustParsePrefix("10.89.5.0/24"), netip.MustParseAddr("10.89.5.1")
		}, want: "subnet 10.89.5.0/24 is no bridge's (" + root.subnetClaim(netip.MustParsePrefix("10.89.5.0/24")) + ")"},
	} {
		t.Run("bridge "+tc.name, func(t *testing.T) {
			var v any
			if tc.edit != nil {
				b := good()
				tc.edit(b)
				v = b
			}
			write(t, file, v, tc.raw)
			write(t, leaseFile, goodLease(), "")
			check(t, file, "network state "+file+": "+tc.want+" "+fix)
		})
	}
	write(t, file, good(), "")
	for _, tc := range []struct {
		name string
		edit func(l *lease) // nil: raw is the file
		raw  string
		want string // after "network state FILE: ", before the fix
	}{
		{name: "truncated", raw: `{"service": "web", "addr`, want: "unexpected end of JSON input"},
		{name: "empty", raw: ``, want: "unexpected end of JSON input"},
		{name: "null", raw: `null`, want: `service "" is no service name`},
		{name: "another address", edit: func(l *lease) { l.Address = netip.MustParseAddr("10.89.3.3") }, want: "address 10.89.3.3 is not its file's"},
		{name: "service name", edit: func(l *lease) { l.Service = "../web" }, want: `service "../web" is no service name`},
		{name: "namespace outside the state root", edit: func(l *lease) { l.Netns = "/run/netns/host" }, want: `network namespace "/run/netns/host" is not service web's (` + netns + ")"},
		{name: "host veth", edit: func(l *lease) { l.HostVeth = "eth0" }, want: `interface "eth0" is not a veth safe-run names`},
	} {
		t.Run("lease "+tc.name, func(t *testing.T) {
			var v any
			if tc.edit != nil {
				l := goodLease()
				tc.edit(&l)
				v = l
			}
			write(t, leaseFile, v, tc.raw)
			check(t, leaseFile, "network state "+leaseFile+": "+tc.want+" "+leaseFix)
		})
	}
	for _, tc := range []struct{ name, addr string }{{"outside the subnet", "10.89.4.2"}, {"broadcast", "10.89.3.255"}, {"gateway", "10.89.3.1"}} {
		t.Run("lease address "+tc.name, func(t *testing.T) {
			os.Remove(leaseFile)
			l := goodLease()
			l.Address = netip.MustParseAddr(tc.addr)
			p := root.leaseFile("shop", l.Address)
			write(t, p, l, "")
			t.Cleanup(func() { os.Remove(p) })
			check(t, p, "network state "+p+": address "+tc.addr+" of service web is no member's address in 10.89.3.0/24 "+leaseFix)
		})
	}
	t.Run("good", func(t *testing.T) {
		write(t, leaseFile, goodLease(), "")
		b, err := root.bridges()
		if err != nil || len(b["shop"].Leases) != 1 || b["shop"].Leases[0].Service != "web" {
			t.Fatalf("bridges: %+v, %v", b, err)
		}
	})
	if ents, _ := os.ReadDir(root.leasesDir("shop")); len(ents) != 1 || ents[0].Name() != "10.89.3.2" {
		t.Errorf("leases dir holds %v, want 10.89.3.2 only", ents)
	}
}

// TestOldLayout: a state root an older safe-run wrote (one file per bridge) is refused by Attach
// with the fix, and network-cleanup (Cleanup) removes it once its services are gone.
func TestOldLayout(t *testing.T) {
	dir := stateDir(t)
	root := stateRoot{dir}
	if err := root.init(); err != nil {
		t.Fatal(err)
	}
	netns, _ := Paths(dir, "web", "shop")
	old := filepath.Join(dir, bridgesDir, "shop.json")
	data := `{"name": "shop", "ifname": "` + root.bridgeIfname("shop") + `", "subnet": "10.89.3.0/24", "gateway": "10.89.3.1",
	  "leases": [{"service": "web", "address": "10.89.3.2", "pid": 1073741823, "start": 1, "netns": "` + netns + `", "host_veth": "sv-0123456789"}]}`
	if err := os.WriteFile(old, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	want := "network state " + dir + " was written by an older safe-run (" + old + "): stop the services on its bridges, then run `safe-run network-cleanup " + dir + "`, which removes it"
	if _, err := Attach(t.Context(), Options{Service: "web", Bridge: "shop", StateDir: dir}); err == nil || err.Error() != want {
		t.Errorf("Attach: %v\nwant %s", err, want)
	}
	if err := Cleanup(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(old); err == nil {
		t.Errorf("%s left after Cleanup", old)
	}
	a := attach(t, Options{Service: "web", Bridge: "shop", StateDir: dir})
	if m, err := Members(dir, "shop"); err != nil || m["web"] != a.Address {
		t.Errorf("Members = %v, %v", m, err)
	}
}

// TestLockUnless: a deletion's exclusive lock is taken once shared holders are gone, and given up
// (nil, no error) once the deletion is moot or the lock file is gone, however long shared
// holders keep holding it (flock lets them in ahead of an exclusive waiter).
func TestLockUnless(t *testing.T) {
	for _, tc := range []struct {
		name     string
		holdFor  time.Duration // a shared holder's hold; 0: none
		mootIn   time.Duration // moot after; 0: never
		remove   bool          // the lock file goes after 20 ms
		wantLock bool
	}{
		{name: "free", wantLock: true},
		{name: "shared holder leaves", holdFor: 30 * time.Millisecond, wantLock: true},
		{name: "moot while held", holdFor: time.Hour, mootIn: 30 * time.Millisecond},
		{name: "gone while held", holdFor: time.Hour, remove: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "lock")
			if err := os.WriteFile(path, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			if tc.holdFor > 0 {
				sh, err := lockPath(path, unix.LOCK_SH, false)
				if err != nil || sh == nil {
					t.Fatal(sh, err)
				}
				timer := time.AfterFunc(tc.holdFor, func() { sh.unlock() })
				t.Cleanup(func() {
					if timer.Stop() {
						sh.unlock()
					}
				})
			}
			if tc.remove {
				time.AfterFunc(20*time.Millisecond, func() { os.Remove(path) })
			}
			began := time.Now()
			lk, err := lockUnless(path, func() bool { return tc.mootIn > 0 && time.Since(began) > tc.mootIn })
			if err != nil {
				t.Fatal(err)
			}
			if (lk != nil) != tc.wantLock {
				t.Errorf("lock taken: %v, want %v", lk != nil, tc.wantLock)
			}
			if lk != nil {
				lk.unlock()
			}
			if took := time.Since(began); took > 5*time.Second {
				t.Errorf("took %s", took)
			}
		})
	}
}
