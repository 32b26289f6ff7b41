package network

import (
	"errors"
	"fmt"
	"net/netip"
	"syscall"
	"time"
)

const (
	// dialTimeout bounds the connection to the service: it is on a bridge
	// of this host, so anything slower is a service not listening yet.
	dialTimeout = 10 * time.Second
	// udpIdle ends a UDP session nobody used for that long (conntrack's
	// default for unreplied UDP is 30 s too).
	udpIdle = 30 * time.Second
	// udpMaxSessions bounds the sockets one UDP port may hold; past it the
	// least recently used session is ended.
	udpMaxSessions = 1024
	// tcpMaxConns bounds the live TCP connections of one service's ports
	// (each holds two sockets and, while it copies, two pipes): past it new
	// connections wait in the listen backlog, and a flood cannot take all
	// of the supervisor's file descriptors.
	tcpMaxConns = 4096
	// udpMaxDatagram is the largest UDP payload (65535 - 8 - 20).
	udpMaxDatagram = 65507
)

// Preserving the client's address: PublishPorts alone dials from the
// gateway, so a service sees the gateway as its client. The ways out:
//
//   - nftables DNAT of HostIP:HostPort to the service (docker's way, for
//     non-loopback HostIPs only, since DNAT of 127.0.0.1 needs
//     route_localnet) keeps the address, but the packets are then
//     forwarded, not delivered: they pass the FORWARD hook and never the
//     host's INPUT rules, which is exactly the ufw/firewalld bypass this
//     design avoids. safe-run would have to re-implement the host's INPUT
//     policy in its own table, or leave published ports open whatever the
//     host's firewall says. Rejected for that reason.
//   - A transparent dial (what go-mmproxy does) keeps both: the client
//     still connects to a socket of the host (INPUT applies), and the
//     forwarder's socket to the service gets IP_TRANSPARENT and binds to
//     the client's address before it connects, so the service sees the
//     real client. This is what Attach does (dialService, and the
//     mark rule and policy route in transparent_linux.go). Loopback
//     clients (127.0.0.0/8) keep the gateway as their address: 127.0.0.1
//     inside the service's netns is its own loopback.
//   - The PROXY protocol (v2) header in front of the stream: no kernel
//     state at all, but only for services that parse it, so only as an
//     opt-in per port.

func portName(p Port) string {
	return fmt.Sprintf("%s/%s", netip.AddrPortFrom(p.HostIP, p.HostPort), p.Proto)
}

func publishError(name string, err error) error {
	var msg string
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		msg = fmt.Sprintf("publishing %s: the address is in use by another program (stop it, or choose another host port in [network] ports)", name)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		msg = fmt.Sprintf("publishing %s: the host has no such address (choose one of the host's addresses, or none for 127.0.0.1, in [network] ports)", name)
	case errors.Is(err, syscall.EACCES):
		msg = fmt.Sprintf("publishing %s: permission denied for a port below net.ipv4.ip_unprivileged_port_start (run as root, or choose a host port above it in [network] ports)", name)
	default:
		return fmt.Errorf("publishing %s: %w", name, err)
	}
	return PortError{msg, err}
}

// PortError is why a published port could not be bound on the host, with
// the fix: the launcher puts it at its key of the manifest. errors.Is
// still sees the cause through it (a rootless caller words EACCES
// differently).
type PortError struct {
	msg   string
	cause error
}

func (e PortError) Error() string { return e.msg }
func (e PortError) Unwrap() error { return e.cause }
