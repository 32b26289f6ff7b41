package plan_test

import (
	"maps"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/safe-run/safe-run/host"
	"github.com/safe-run/safe-run/network"
	"github.com/safe-run/safe-run/plan"
)

// TestRootlessBridge: without root a service's own bridge is planned in a
// network namespace the outer safe-run gives the inner one, a named bridge
// in the user's shared one, with the sockets the outer one bound; what
// that needs and does not have refuses the run.
func TestRootlessBridge(t *testing.T) {
	waiver := "[insecure]\nreason = \"v1 laptop\"\nallow = [\"no_resource_limits\"]\n"
	ok := userOnV1
	ok.Pasta, ok.TunUsable = "/usr/bin/pasta", true
	inner := ok
	inner.UID, inner.EUID, inner.InnerIDs, inner.InnerNet = 0, 0, host.IDRangeSize, true
	noNet := inner
	noNet.InnerNet = false
	noPasta := ok
	noPasta.Pasta = ""
	noTun := ok
	noTun.TunUsable, noTun.TunProblem = false, "/dev/net/tun is mode 0600, owner uid 0: you cannot open it"
	shared := inner
	shared.InnerSharedNet = true
	shared.InnerPorts = map[string]int{"127.0.0.1:8080/tcp": 7, "0.0.0.0:8443/tcp": 8, "0.0.0.0:5353/udp": 9}
	sharedNoSocket := shared
	sharedNoSocket.InnerPorts = map[string]int{"127.0.0.1:8080/tcp": 7, "0.0.0.0:8443/tcp": 8}
	named := "mode = \"bridge\"\nbridge = \"app\""
	for _, tc := range []struct {
		name    string
		facts   host.Facts
		network string
		refused string // "" = runs
	}{
		{"own bridge, outside", ok, `mode = "bridge"`, ""},
		{"own bridge, inner with its namespace", inner, `mode = "bridge"`, ""},
		{"inner without a namespace", noNet, `mode = "bridge"`, "the outer safe-run gave this one no network namespace of its own"},
		{"no pasta", noPasta, `mode = "bridge"`, "needs pasta to connect the service's network to the host (as root: apt-get install passt)"},
		{"no tun", noTun, `mode = "bridge"`, "pasta needs /dev/net/tun: /dev/net/tun is mode 0600, owner uid 0: you cannot open it (as root: chmod 0666 /dev/net/tun, the kernel's default)"},
		{"named bridge, outside", ok, named, ""},
		{"named bridge, inner in the shared namespace", shared, named, ""},
		{"named bridge, inner with a namespace of its own", inner, named, `network.bridge "app" without root: the outer safe-run put this one in a namespace of its own, not in your shared one where named bridges live (start it as safe-run SERVICE.toml)`},
		{"own bridge, inner in the shared namespace", shared, `mode = "bridge"`, `the outer safe-run put this one in your shared namespace, which is for named bridges only`},
		{"named bridge, a socket missing", sharedNoSocket, named, "network.ports: the outer safe-run bound no socket for 0.0.0.0:5353/udp (start it as safe-run SERVICE.toml)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dirs := plan.Dirs{State: t.TempDir(), Data: t.TempDir()}
			p := writeService(t, "[network]\n"+tc.network+"\nports = [\"127.0.0.1:8080:80\", \"0.0.0.0:8443:443\", \"0.0.0.0:5353:53/udp\"]\n"+waiver)
			job, err := plan.Build(t.Context(), p, tc.facts, plan.Options{Dirs: dirs})
			if err != nil {
				t.Fatal(err)
			}
			got := job.Refused()
			if tc.refused == "" && got != nil || tc.refused != "" && (got == nil || !strings.Contains(got.Error(), tc.refused)) {
				t.Fatalf("Refused() = %v, want %q", got, tc.refused)
			}
			if tc.refused != "" {
				return
			}
			wantDir := filepath.Join(dirs.State, "web", "net") // ends with the run
			if job.Network.Bridge != "" {
				wantDir = filepath.Join(dirs.State, "net") // the user's, as root's /run/safe-run/net
			}
			if job.Network.StateDir != wantDir {
				t.Errorf("network state in %s, want %s", job.Network.StateDir, wantDir)
			}
			want := []network.Port{
				{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 8080, ContainerPort: 80, Proto: "tcp"},
				{HostIP: netip.IPv4Unspecified(), HostPort: 8443, ContainerPort: 443, Proto: "tcp"},
				{HostIP: netip.IPv4Unspecified(), HostPort: 5353, ContainerPort: 53, Proto: "udp"},
			}
			var wantFDs map[network.Port]int
			if tc.facts.InnerSharedNet {
				wantFDs = map[network.Port]int{want[0]: 7, want[1]: 8, want[2]: 9}
			}
			if !maps.Equal(job.Network.ListenFDs, wantFDs) {
				t.Errorf("sockets %v, want %v", job.Network.ListenFDs, wantFDs)
			}
			if !slices.Equal(job.Network.Ports, want) {
				t.Errorf("ports in the namespace %v, want %v", job.Network.Ports, want)
			}
		})
	}
}

func TestRootlessPorts(t *testing.T) {
	lo, any := netip.MustParseAddr("127.0.0.1"), netip.IPv4Unspecified()
	a, b := netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("198.51.100.9")
	for _, tc := range []struct {
		name  string
		ports []network.Port
		inN   []network.Port
		pasta string
	}{
		{"none", nil, nil, "-t none -u none -T none -U none"},
		{"loopback tcp", []network.Port{port(lo, 8080, 80, "tcp")}, []network.Port{port(lo, 8080, 80, "tcp")}, "-t 127.0.0.1/8080 -u none -T none -U none"},
		{"every address, both protocols",
			[]network.Port{port(any, 8443, 443, "tcp"), port(a, 53, 53, "udp")},
			[]network.Port{port(any, 8443, 443, "tcp"), port(any, 53, 53, "udp")},
			"-t 8443 -u 192.0.2.7/53 -T none -U none"},
		{"one port on two addresses (0.0.0.0 in the namespace overlaps 127.0.0.1)",
			[]network.Port{port(a, 80, 80, "tcp"), port(b, 80, 8080, "tcp"), port(lo, 40000, 9000, "tcp"), port(lo, 80, 81, "tcp")},
			[]network.Port{port(any, 80, 80, "tcp"), port(any, 40001, 8080, "tcp"), port(lo, 40000, 9000, "tcp"), port(lo, 40002, 81, "tcp")},
			"-t 192.0.2.7/80 -t 198.51.100.9/80:40001 -t 127.0.0.1/40000 -t 127.0.0.1/80:40002 -u none -T none -U none"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inN, pasta := plan.RootlessPorts(tc.ports)
			if got := strings.Join(pasta, " "); got != tc.pasta {
				t.Errorf("pasta got  %s\nwant %s", got, tc.pasta)
			}
			if !slices.Equal(inN, tc.inN) {
				t.Errorf("in the namespace %v, want %v", inN, tc.inN)
			}
		})
	}
}

func port(ip netip.Addr, host, container uint16, proto string) network.Port {
	return network.Port{HostIP: ip, HostPort: host, ContainerPort: container, Proto: proto}
}
