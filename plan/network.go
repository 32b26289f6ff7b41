package plan

import (
	"fmt"
	"net/netip"
	"path/filepath"

	"github.com/safe-run/safe-run/host"

	"github.com/safe-run/safe-run/manifest"
	"github.com/safe-run/safe-run/network"
)

// NetworkOptions is what the launcher hands network.Attach for a service
// in bridge mode, nil for none and host: the manifest's parsed [network],
// under safe-run's network state in dirs.
func NetworkOptions(s *manifest.Service, dirs Dirs) *network.Options {
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
// the inner one in a network namespace N where it is root and connects the
// service as root does on the host (internal/rootless); pasta connects N
// to the host.
//
// A bridge of the service's own: N is this run's own, and all it holds
// ends with the run, so the state lives under the service's state
// directory. pasta forwards each published port from the host to the same
// port in N, where the service's forwarders listen: on N's loopback for a
// loopback host address (pasta hands local connections to the namespace's
// loopback), on every address of N otherwise (connections from other
// hosts arrive on N's own address).
//
// A named bridge: N is the user's, shared by all their runs on named
// bridges and kept by a holder process (podman's rootless-netns), so that
// members of one bridge meet there; the state is the user's network state
// (NetworkDir), as root's is /run/safe-run/net. A running pasta takes no
// new ports, so the outer safe-run binds each published port on the host
// itself and hands the socket over (host.Facts.InnerPorts), and the
// forwarders accept on those.
func (j *Job) rootlessNetwork(f host.Facts) {
	o := j.Network
	switch {
	case f.InnerIDs > 0 && !f.InnerNet:
		j.refused = append(j.refused, fmt.Errorf(`%w: network.mode "bridge" without root: the outer safe-run gave this one no network namespace of its own (start it as safe-run SERVICE.toml)`, host.ErrCannotEnforce))
		return
	case f.InnerIDs > 0 && o.Bridge != "" && !f.InnerSharedNet:
		j.refused = append(j.refused, fmt.Errorf(`%w: network.bridge %q without root: the outer safe-run put this one in a namespace of its own, not in your shared one where named bridges live (start it as safe-run SERVICE.toml)`, host.ErrCannotEnforce, o.Bridge))
		return
	case f.InnerIDs > 0 && o.Bridge == "" && f.InnerSharedNet:
		j.refused = append(j.refused, fmt.Errorf(`%w: network.mode "bridge" without root: the outer safe-run put this one in your shared namespace, which is for named bridges only (start it as safe-run SERVICE.toml)`, host.ErrCannotEnforce))
		return
	case f.InnerIDs == 0 && f.Pasta == "":
		j.refused = append(j.refused, fmt.Errorf(`%w: network.mode "bridge" without root needs pasta to connect the service's network to the host (as root: apt-get install passt)`, host.ErrCannotEnforce))
	case f.InnerIDs == 0 && !f.TunUsable:
		j.refused = append(j.refused, fmt.Errorf(`%w: network.mode "bridge" without root: pasta needs %s: %s (as root: chmod 0666 %s, the kernel's default)`, host.ErrCannotEnforce, host.TunDevice, f.TunProblem, host.TunDevice))
	}
	if o.Bridge == "" {
		o.StateDir = filepath.Join(j.Placement.StateDir, "net")
		o.Ports, _ = RootlessPorts(o.Ports)
		return
	}
	if f.InnerIDs == 0 {
		return // planned outside (safe-run spec): the sockets come at the start
	}
	for _, p := range o.Ports {
		fd, ok := f.InnerPorts[RootlessPortKey(p)]
		if !ok {
			j.refused = append(j.refused, fmt.Errorf(`%w: network.ports: the outer safe-run bound no socket for %s (start it as safe-run SERVICE.toml)`, host.ErrCannotEnforce, RootlessPortKey(p)))
			continue
		}
		if o.ListenFDs == nil {
			o.ListenFDs = map[network.Port]int{}
		}
		o.ListenFDs[p] = fd
	}
}

// RootlessPortKey names a published port in host.RootlessPortsEnv:
// HOSTIP:PORT/PROTO.
func RootlessPortKey(p network.Port) string {
	return fmt.Sprintf("%s/%s", netip.AddrPortFrom(p.HostIP, p.HostPort), p.Proto)
}

// RootlessPorts maps a rootless service's published ports into its
// network namespace N, and gives pasta's options to forward them there:
// each declared (address, port, protocol) and nothing else, none from N to
// the host. In N a port listens on loopback for a loopback host address
// (pasta hands local connections to N's loopback), on every address
// otherwise (connections from other hosts arrive on N's own address), on
// the host port unless another port of the same protocol has it in N
// (two host addresses, one port): then on a free port from
// firstTranslated up, which pasta translates to. The outer safe-run
// (pasta) and the inner one (the forwarders) both call it.
func RootlessPorts(ports []network.Port) (inN []network.Port, pasta []string) {
	type key struct {
		port  uint16
		proto string
	}
	declared := map[key]bool{}
	for _, p := range ports {
		declared[key{p.HostPort, p.Proto}] = true
	}
	used := map[key]bool{}
	next := uint16(firstTranslated)
	var tcp, udp []string
	for _, p := range ports {
		q := p
		if !p.HostIP.IsLoopback() {
			q.HostIP = netip.IPv4Unspecified()
		}
		if used[key{q.HostPort, q.Proto}] {
			for used[key{next, q.Proto}] || declared[key{next, q.Proto}] {
				next++
			}
			q.HostPort = next
		}
		used[key{q.HostPort, q.Proto}] = true
		inN = append(inN, q)
		spec := fmt.Sprint(p.HostPort)
		if !p.HostIP.IsUnspecified() {
			spec = p.HostIP.String() + "/" + spec
		}
		if q.HostPort != p.HostPort {
			spec += fmt.Sprintf(":%d", q.HostPort)
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
	return inN, append(append(tcp, udp...), "-T", "none", "-U", "none")
}

// firstTranslated is where RootlessPorts looks for a free port in N.
const firstTranslated = 40000
