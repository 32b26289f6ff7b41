package plan

import (
	"path/filepath"

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
