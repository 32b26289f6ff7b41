package plan_test

import (
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
// network namespace the outer safe-run gives the inner one; what that
// needs and does not have, and a named bridge, refuse the run.
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
		{"named bridge", inner, "mode = \"bridge\"\nbridge = \"app\"", `network.bridge "app" without root: services share a named bridge only as root, since without root each run has a network namespace of its own (run it as root, or drop network.bridge so that the service gets a bridge of its own)`},
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
			if want := filepath.Join(dirs.State, "web", "net"); job.Network.StateDir != want {
				t.Errorf("network state in %s, want %s (it ends with the run)", job.Network.StateDir, want)
			}
			want := []network.Port{
				{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 8080, ContainerPort: 80, Proto: "tcp"},
				{HostIP: netip.IPv4Unspecified(), HostPort: 8443, ContainerPort: 443, Proto: "tcp"},
				{HostIP: netip.IPv4Unspecified(), HostPort: 5353, ContainerPort: 53, Proto: "udp"},
			}
			if !slices.Equal(job.Network.Ports, want) {
				t.Errorf("ports in the namespace %v, want %v", job.Network.Ports, want)
			}
		})
	}
}

func TestPastaPorts(t *testing.T) {
	lo, any := netip.MustParseAddr("127.0.0.1"), netip.IPv4Unspecified()
	for _, tc := range []struct {
		name  string
		ports []network.Port
		want  string
	}{
		{"none", nil, "-t none -u none -T none -U none"},
		{"loopback tcp", []network.Port{{HostIP: lo, HostPort: 8080, ContainerPort: 80, Proto: "tcp"}}, "-t 127.0.0.1/8080 -u none -T none -U none"},
		{"every address, both", []network.Port{{HostIP: any, HostPort: 8443, Proto: "tcp"}, {HostIP: netip.MustParseAddr("192.0.2.7"), HostPort: 53, Proto: "udp"}},
			"-t 8443 -u 192.0.2.7/53 -T none -U none"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := strings.Join(plan.PastaPorts(tc.ports), " "); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}
