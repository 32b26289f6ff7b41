package host

import (
	"fmt"
	"net"
	"net/netip"
)

// Addresses lists the addresses of this host's interfaces, where a port
// may be published. It is not part of Facts: only a service that
// publishes ports needs it, and a start without one should not pay for it.
func Addresses() ([]netip.Addr, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("listing the host's addresses: %w", err)
	}
	out := []netip.Addr{}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out, nil
}
