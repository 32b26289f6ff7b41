package plan

import (
	"fmt"
	"net/netip"
	"path/filepath"

	"github.com/safe-run/safe-run/host"

	"github.com/safe-run/safe-run/manifest"
	"github.com/safe-run/safe-run/network"
)

// networkOptions is what the launcher hands network.Attach for a service
// in bridge mode, nil for none and host: the manifest's parsed [network],
// under safe-run's network state in dirs.
func networkOptions(s *manifest.Service, dirs Dirs) *network.Options {
	if s.Network.Mode != manifest.NetworkBridge {
		return nil
	}
	o := &network.Options{
		Service:  s.Name,
		Bridge:   s.Network.Bridge,
		Egress:   network.Egress{All: s.Network.Egress.All},
		DNS:      s.Network.Resolvers,
		StateDir: NetworkDir(dirs),
	}
	for _, p := range s.Network.Published {
		o.Ports = append(o.Ports, network.Port(p))
	}
	for _, r := range s.Network.Egress.Rules {
		o.Egress.Rules = append(o.Egress.Rules, network.EgressRule(r))
	}
	return o
}

// NetworkDir is safe-run's network state (bridges, leases, namespaces)
// under its state directory.
func NetworkDir(dirs Dirs) string { return filepath.Join(dirs.State, "net") }

// rootlessNetwork plans bridge mode without root. The outer safe-run puts
// the inner one in a network namespace of its own, N, which pasta connects
// to the host (internal/rootless): in N the inner safe-run is root and
// connects the service's own bridge as root does on the host, with its
// state under the service's state directory, since N and all it holds end
// with the run. pasta forwards each published port from the host to the
// same port in N, where the service's forwarders listen: on N's loopback
// for a loopback host address (pasta hands local connections to the
// namespace's loopback), on every address of N otherwise (connections
// from other hosts arrive on N's own address).
//
// A named bridge is refused: its members would have to share one network
// namespace across the user's runs (podman's rootless-netns, kept by a
// pause process), which this release does not have.
func (j *Job) rootlessNetwork(f host.Facts) {
	o := j.Network
	if o.Bridge != "" {
		j.refused = append(j.refused, fmt.Errorf(`%w: network.bridge %q without root: services share a named bridge only as root, since without root each run has a network namespace of its own (run it as root, or drop network.bridge so that the service gets a bridge of its own)`, host.ErrCannotEnforce, o.Bridge))
		return
	}
	switch {
	case f.InnerIDs > 0 && !f.InnerNet:
		j.refused = append(j.refused, fmt.Errorf(`%w: network.mode "bridge" without root: the outer safe-run gave this one no network namespace of its own (start it as safe-run SERVICE.toml)`, host.ErrCannotEnforce))
	case f.InnerIDs == 0 && f.Pasta == "":
		j.refused = append(j.refused, fmt.Errorf(`%w: network.mode "bridge" without root needs pasta to connect the service's network to the host (as root: apt-get install passt)`, host.ErrCannotEnforce))
	case f.InnerIDs == 0 && !f.TunUsable:
		j.refused = append(j.refused, fmt.Errorf(`%w: network.mode "bridge" without root: pasta needs %s: %s (as root: chmod 0666 %s, the kernel's default)`, host.ErrCannotEnforce, host.TunDevice, f.TunProblem, host.TunDevice))
	}
	o.StateDir = filepath.Join(j.Placement.StateDir, "net")
	for i, p := range o.Ports {
		if !p.HostIP.IsLoopback() {
			o.Ports[i].HostIP = netip.IPv4Unspecified()
		}
	}
}

// PastaPorts are pasta's options forwarding the published ports of a
// rootless service from the host to its network namespace, where
// rootlessNetwork has them listen: each declared (address, port,
// protocol) and nothing else, none from the namespace to the host.
func PastaPorts(ports []network.Port) []string {
	var tcp, udp []string
	for _, p := range ports {
		spec := fmt.Sprint(p.HostPort)
		if !p.HostIP.IsUnspecified() {
			spec = p.HostIP.String() + "/" + spec
		}
		if p.Proto == "udp" {
			udp = append(udp, "-u", spec)
		} else {
			tcp = append(tcp, "-t", spec)
		}
	}
	if tcp == nil {
		tcp = []string{"-t", "none"}
	}
	if udp == nil {
		// Without it pasta forwards UDP on every TCP port too.
		udp = []string{"-u", "none"}
	}
	return append(append(tcp, udp...), "-T", "none", "-U", "none")
}
