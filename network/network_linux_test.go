package network

import (
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/safe-run/safe-run/internal/proc"
)

func TestDescribePacket(t *testing.T) {
	ipv4 := func(proto byte, tail ...byte) []byte {
		p := []byte{0x45, 0, 0, 40, 0, 0, 0, 0, 64, proto, 0, 0, 10, 89, 0, 2, 203, 0, 113, 7}
		return append(p, tail...)
	}
	for _, tc := range []struct {
		name string
		pkt  []byte
		want string
		ok   bool
	}{
		{"tcp", ipv4(6, 0xc0, 0x00, 0x11, 0x5c), "203.0.113.7:4444/tcp", true},
		{"udp", ipv4(17, 0xc0, 0x00, 0x00, 0x35), "203.0.113.7:53/udp", true},
		{"icmp", ipv4(1, 8, 0), "203.0.113.7/icmp", true},
		{"other protocol", ipv4(47), "203.0.113.7/proto-47", true},
		{"truncated", ipv4(6)[:12], "", false},
		{"ipv6", append([]byte{0x60}, make([]byte, 39)...), "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := describePacket(tc.pkt)
			if got != tc.want || ok != tc.ok {
				t.Errorf("describePacket = %q, %v; want %q, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestDenialRateLimit(t *testing.T) {
	var out strings.Builder
	d := &denialReader{service: "web", w: &out, last: map[string]time.Time{}}
	now := time.Unix(1000, 0)
	d.report("203.0.113.7:4444/tcp", now)
	d.report("203.0.113.7:4444/tcp", now.Add(time.Second)) // same place within denialEvery: dropped
	for i := range 10 {
		d.report(netip.AddrPortFrom(netip.MustParseAddr("203.0.113.8"), uint16(i+1)).String()+"/udp", now.Add(time.Second))
	}
	d.report("203.0.113.7:4444/tcp", now.Add(denialEvery+time.Second))
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if lines[0] != "web: egress denied 203.0.113.7:4444/tcp" {
		t.Errorf("first line %q", lines[0])
	}
	// 1 + denialBurstPerSec in the next second + 1 after denialEvery.
	if len(lines) != 2+denialBurstPerSec {
		t.Errorf("%d lines, want %d:\n%s", len(lines), 2+denialBurstPerSec, out.String())
	}
}

func TestFreeAddress(t *testing.T) {
	b := &bridgeState{Subnet: netip.MustParsePrefix("10.89.4.0/24"), Gateway: netip.MustParseAddr("10.89.4.1")}
	taken := map[netip.Addr]bool{}
	for i := 2; i <= 254; i++ {
		a, err := freeAddress(b, taken)
		if err != nil {
			t.Fatalf("address %d: %v", i, err)
		}
		if want := netip.AddrFrom4([4]byte{10, 89, 4, byte(i)}); a != want {
			t.Fatalf("got %s, want %s", a, want)
		}
		taken[a] = true
	}
	if a, err := freeAddress(b, taken); err == nil {
		t.Errorf("full bridge gave %s (the broadcast?)", a)
	}
	delete(taken, netip.MustParseAddr("10.89.4.2"))
	if a, _ := freeAddress(b, taken); a.String() != "10.89.4.2" {
		t.Errorf("freed address not reused: %s", a)
	}
}

func TestNames(t *testing.T) {
	if got := (stateRoot{DefaultStateDir}).table(); got != "safe_run" {
		t.Errorf("default table %q", got)
	}
	if got := (stateRoot{"/tmp/x"}).table(); got == "safe_run" || !strings.HasPrefix(got, "safe_run_") {
		t.Errorf("other root's table %q", got)
	}
	long := strings.Repeat("a", 63)
	if n := (stateRoot{DefaultStateDir}).bridgeIfname(long); len(n) > 15 {
		t.Errorf("bridge ifname %q longer than 15", n)
	}
}

func TestPidStart(t *testing.T) {
	self := lease{PID: os.Getpid(), Start: proc.Start(os.Getpid())}
	if self.Start == 0 || !self.alive() {
		t.Errorf("own process not alive: start %d", self.Start)
	}
	reused := self
	reused.Start++
	if reused.alive() {
		t.Error("a lease with another start time counts as alive (pid reuse)")
	}
	if (lease{PID: 0x3fffffff}).alive() {
		t.Error("a pid that does not exist counts as alive")
	}
}

func TestFreeSubnet(t *testing.T) {
	used := []netip.Prefix{netip.MustParsePrefix("10.89.0.0/24"), netip.MustParsePrefix("10.89.2.0/23")}
	got, err := freeSubnet(used)
	if err != nil {
		t.Fatal(err)
	}
	if !pool.Contains(got.Addr()) || got.Bits() != 24 {
		t.Fatalf("subnet %s is not a /24 of %s", got, pool)
	}
	for _, u := range used {
		if u.Overlaps(got) {
			t.Errorf("subnet %s overlaps %s, in use", got, u)
		}
	}
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		if r.Dst == nil {
			continue
		}
		if ones, _ := r.Dst.Mask.Size(); ones > 0 {
			if a, ok := netip.AddrFromSlice(r.Dst.IP.To4()); ok && netip.PrefixFrom(a, ones).Overlaps(got) {
				t.Errorf("subnet %s overlaps the host route %s", got, r.Dst)
			}
		}
	}
}
