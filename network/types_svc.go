package network

import "net/netip"

// netcore's network.go defines Port; delete this file at merge.

// Port is one published port: HostIP:HostPort on the host forwarded to the
// service's ContainerPort.
type Port struct {
	HostIP        netip.Addr // 127.0.0.1 when the manifest gives none; 0.0.0.0 = every address
	HostPort      uint16
	ContainerPort uint16
	Proto         string // "tcp" | "udp"
}
