package network

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCorruptBridgeState: a bridge state file that does not parse, or
// parses into what Attach never writes, is refused by every reader with
// the file and the fix, and left where it is for the operator: never
// acted on (its interfaces and namespaces are what Cleanup deletes),
// never silently replaced.
func TestCorruptBridgeState(t *testing.T) {
	dir := t.TempDir()
	root := stateRoot{dir}
	if err := root.init(); err != nil {
		t.Fatal(err)
	}
	netns, _ := Paths(dir, "web", "shop")
	good := func() *bridgeState {
		return &bridgeState{
			Name: "shop", Ifname: root.bridgeIfname("shop"),
			Subnet: netip.MustParsePrefix("10.89.3.0/24"), Gateway: netip.MustParseAddr("10.89.3.1"),
			Leases: []lease{{Service: "web", Address: netip.MustParseAddr("10.89.3.2"), PID: 1, Netns: netns, HostVeth: "sv-0123456789"}},
		}
	}
	file := root.bridgeFile("shop")
	fix := "(corrupt or edited by hand: stop the services on bridge shop, then delete the file and what it names: its interfaces (ip link) and namespaces under " + filepath.Join(dir, netnsDir) + ")"
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
		{name: "address outside the subnet", edit: func(b *bridgeState) { b.Leases[0].Address = netip.MustParseAddr("10.89.4.2") }, want: "leases[0]: address 10.89.4.2 of service web is no member's address in 10.89.3.0/24"},
		{name: "broadcast address", edit: func(b *bridgeState) { b.Leases[0].Address = netip.MustParseAddr("10.89.3.255") }, want: "leases[0]: address 10.89.3.255 of service web is no member's address in 10.89.3.0/24"},
		{name: "address twice", edit: func(b *bridgeState) {
			l := b.Leases[0]
			l.Service, l.Netns = "db", filepath.Join(dir, netnsDir, "db@shop")
			b.Leases = append(b.Leases, l)
		}, want: "leases[1]: address 10.89.3.2 is leased to both web and db"},
		{name: "service twice", edit: func(b *bridgeState) {
			l := b.Leases[0]
			l.Address = netip.MustParseAddr("10.89.3.3")
			b.Leases = append(b.Leases, l)
		}, want: `leases[1]: service "web" is empty or leased twice`},
		{name: "namespace outside the state root", edit: func(b *bridgeState) { b.Leases[0].Netns = "/run/netns/host" }, want: `leases[0]: network namespace "/run/netns/host" is not service web's (` + netns + ")"},
		{name: "host veth", edit: func(b *bridgeState) { b.Leases[0].HostVeth = "eth0" }, want: `leases[0]: interface "eth0" is not a veth safe-run names`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.edit == nil {
				if err := os.WriteFile(file, []byte(tc.raw), 0o600); err != nil {
					t.Fatal(err)
				}
			} else {
				b := good()
				tc.edit(b)
				data, err := json.Marshal(b)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(file, data, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			before, _ := os.ReadFile(file)
			want := "network state " + file + ": " + tc.want + " " + fix
			if _, err := root.readBridge("shop"); err == nil || err.Error() != want {
				t.Errorf("readBridge: %v\nwant %s", err, want)
			}
			if _, err := root.bridges(); err == nil || err.Error() != want {
				t.Errorf("bridges: %v\nwant %s", err, want)
			}
			if _, err := Members(dir, "shop"); err == nil || err.Error() != want {
				t.Errorf("Members: %v\nwant %s", err, want)
			}
			if after, _ := os.ReadFile(file); string(after) != string(before) {
				t.Errorf("the file changed: %q -> %q", before, after)
			}
		})
	}
	t.Run("good", func(t *testing.T) {
		if err := root.writeBridge(good()); err != nil {
			t.Fatal(err)
		}
		if b, err := root.readBridge("shop"); err != nil || b.Leases[0].Service != "web" {
			t.Fatalf("readBridge: %+v, %v", b, err)
		}
	})
	t.Run("two bridges on one subnet", func(t *testing.T) {
		b := good()
		b.Name, b.Ifname, b.Leases = "cafe", root.bridgeIfname("cafe"), nil
		if err := root.writeBridge(b); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { root.removeBridge("cafe") })
		_, err := root.bridges()
		// The directory is read in name order: cafe, then shop.
		want := "network state " + file + ": subnet 10.89.3.0/24 is bridge cafe's too " + fix
		if err == nil || err.Error() != want {
			t.Errorf("bridges: %v\nwant %s", err, want)
		}
	})
	if ents, _ := os.ReadDir(filepath.Join(dir, bridgesDir)); len(ents) != 1 || strings.HasPrefix(ents[0].Name(), ".tmp") {
		t.Errorf("bridges dir holds %v, want shop.json only", ents)
	}
}
