package rootless

import (
	"errors"
	"net/netip"
	"syscall"
	"testing"

	"github.com/safe-run/safe-run/host"
	"github.com/safe-run/safe-run/network"
)

// TestPortError: a port below net.ipv4.ip_unprivileged_port_start, as
// package host read it, is refused with that value and the fix; 1024,
// the kernel's default, where it could not be read; other errors as
// they are.
func TestPortError(t *testing.T) {
	p := network.Port{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 80, ContainerPort: 80, Proto: "tcp"}
	for _, tc := range []struct {
		name  string
		start int
		err   error
		want  string
	}{
		{"read", 443, syscall.EACCES, "publishing 127.0.0.1:80/tcp: without root a host port below 443 (net.ipv4.ip_unprivileged_port_start) cannot be bound: choose a host port of 443 or more, or as root: sysctl net.ipv4.ip_unprivileged_port_start=80"},
		{"unreadable", -1, syscall.EACCES, "publishing 127.0.0.1:80/tcp: without root a host port below 1024 (net.ipv4.ip_unprivileged_port_start) cannot be bound: choose a host port of 1024 or more, or as root: sysctl net.ipv4.ip_unprivileged_port_start=80"},
		{"taken", 1024, errors.New("listen tcp 127.0.0.1:80: bind: address already in use"), "listen tcp 127.0.0.1:80: bind: address already in use"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := portError(host.Facts{UnprivilegedPortStart: tc.start}, p, tc.err); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}
