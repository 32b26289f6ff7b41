// Package network connects a service to a bridge network as root: its own network namespace made and
// owned by safe-run (so the container's capabilities never apply to it), a veth pair to a bridge, an
// address leased by a file of its own, and safe-run's nftables table, which isolates bridges from each other
// and from the host and enforces each service's egress. It sits beside launcher: plan converts the
// manifest's [network] into Options, launcher joins the namespace at Attachment.Netns.
//
// State lives under Options.StateDir: a directory per bridge (its subnet, and a file per lease,
// claimed without a lock), the netns bind mounts, the generated /etc files (state_linux.go). The
// kernel objects are made after the lease. The nftables tables hold a fixed skeleton of sets and verdict maps; each
// service adds its own chains and map elements in a batch of its own and deletes them at Close,
// and reclaim deletes a dead owner's by name (see nft_linux.go).
package network

import (
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// DefaultStateDir is safe-run's network state root as root. Its nftables tables are `ip safe_run`,
// `ip6 safe_run` and `bridge safe_run`; any other state root (tests) gets tables of its own, named
// after a hash of the path, so that two roots never rewrite each other's rules.
const DefaultStateDir = "/run/safe-run/net"

// Port is one published port: HostIP:HostPort on the host forwarded to ContainerPort in the service.
type Port struct {
	HostIP        netip.Addr // 127.0.0.1 when the manifest gives none; 0.0.0.0 = every address
	HostPort      uint16
	ContainerPort uint16
	Proto         string // "tcp" | "udp"
}

// EgressRule is one entry of a service's egress list.
type EgressRule struct {
	Prefix netip.Prefix // set for a CIDR entry
	Host   string       // set for a HOSTNAME:PORT entry (resolved by safe-run)
	Port   uint16       // 0 = any port
	Proto  string       // "" = tcp and udp
}

// Egress is what a service may reach outside its bridge. All false and no rules = "none".
type Egress struct {
	All   bool
	Rules []EgressRule
}

// None reports whether nothing may leave the bridge.
func (e Egress) None() bool { return !e.All && len(e.Rules) == 0 }

// Options is everything Attach needs; plan fills it from the manifest.
type Options struct {
	Service  string       // service name (DNS name on the bridge)
	Bridge   string       // named network; "" = the service's own
	Ports    []Port       // published ports
	Egress   Egress       // what may leave the bridge
	DNS      []netip.Addr // upstream resolvers; empty = the host's (never a loopback stub)
	StateDir string       // safe-run's network state root, e.g. DefaultStateDir
	Logger   *slog.Logger `json:"-"` // nil: discard
	Denials  io.Writer    `json:"-"` // egress denials as they happen; nil: none
	// ListenFDs are sockets another process bound for some of Ports (ListenPort), by port: the
	// forwarders accept on them instead of binding. Rootless, on a named bridge, the outer
	// safe-run binds them in the host's network namespace; this process owns the fds.
	ListenFDs map[Port]int `json:"-"`
	// NamespaceReady, if set, is called once during Attach, as soon as the service's namespace is
	// mounted at its Paths path and its /etc files are written, before its link, firewall,
	// resolver and ports are made: the caller may start the container's own set-up in the
	// namespace meanwhile (its processes join it by that path), as long as nothing of the
	// service runs before Attach has returned without an error. It is not called if Attach fails
	// first.
	NamespaceReady func() `json:"-"`
	// Namespace, if set, is the service's namespace, made ahead (StartNamespace); Attach takes
	// it. Else Attach makes one itself.
	Namespace *Namespace `json:"-"`

	// resolve looks a HOSTNAME egress entry up; nil: ask the upstreams. Tests set it, since they
	// may send no query off the machine.
	resolve func(host string) ([]netip.Addr, time.Duration, error)
}

// Namespace is a network namespace being made ahead of Attach (StartNamespace), for
// Options.Namespace: the namespace needs nothing of the service's state, and it is the slowest of
// the kernel work a container waits for (a millisecond or more). Until Attach mounts it at its
// path, it is open only in this process: it ends with it, or with Discard.
type Namespace struct {
	done  chan struct{} // closed once ns or err is set
	ns    *os.File
	err   error
	mu    sync.Mutex
	taken bool
}

// take waits for the namespace and hands it over once; the caller closes it.
func (n *Namespace) take() (*os.File, error) {
	<-n.done
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.taken {
		return nil, errors.New("network namespace: taken twice")
	}
	n.taken = true
	return n.ns, n.err
}

// Discard lets the namespace go unless Attach took it; it does not wait. nil: nothing.
func (n *Namespace) Discard() {
	if n == nil {
		return
	}
	go func() {
		<-n.done
		n.mu.Lock()
		defer n.mu.Unlock()
		if !n.taken && n.ns != nil {
			n.ns.Close()
		}
		n.taken = true
	}()
}

// Files are the generated /etc files, host paths, bind-mounted read-only into the container.
type Files struct{ ResolvConf, Hosts, Hostname string }

// State directory layout, below Options.StateDir.
const (
	bridgesDir = "bridges" // one directory per bridge: its state, its leases (state_linux.go)
	netnsDir   = "netns"   // bind-mounted network namespaces, one per attachment
	filesDir   = "files"   // generated /etc files per attachment
)

// Paths are where Attach puts the service's namespace and its generated files: known before it
// runs, so that the spec can name them and `safe-run spec` shows them.
func Paths(stateDir, service, bridge string) (netns string, files Files) {
	if bridge == "" {
		bridge = ownBridge(service)
	}
	name := service + "@" + bridge
	dir := filepath.Join(stateDir, filesDir, name)
	return filepath.Join(stateDir, netnsDir, name), Files{
		ResolvConf: filepath.Join(dir, "resolv.conf"),
		Hosts:      filepath.Join(dir, "hosts"),
		Hostname:   filepath.Join(dir, "hostname"),
	}
}

// ownBridge names the bridge of a service that joins none: "_" cannot start a manifest name, so
// it never meets a named one.
func ownBridge(service string) string { return "_" + service }

// lease is one service's lease file on its bridge. Everything Cleanup needs to undo the
// attachment after its owner died is here, written before the object it names is made.
type lease struct {
	Service  string     `json:"service"`
	Address  netip.Addr `json:"address"`
	PID      int        `json:"pid"`
	Start    uint64     `json:"start"` // the owner's start time in clock ticks (/proc/PID/stat field 22): a reused pid differs
	Netns    string     `json:"netns"`
	HostVeth string     `json:"host_veth"`
	LogGroup uint16     `json:"log_group"` // NFLOG group of its denials
	Egress   egressSpec `json:"egress"`
	// DNS is the service's [network] dns (empty: the host's). Every member's resolver forwards
	// this member's queries there, whichever of them the kernel hands a query to.
	DNS []netip.Addr `json:"dns,omitempty"`
}

// egressSpec is Egress as stored, with each HOSTNAME entry's current addresses, so that whoever
// rebuilds the table writes the same rules as the owner would.
type egressSpec struct {
	All   bool         `json:"all,omitempty"`
	Rules []storedRule `json:"rules,omitempty"`
}

type storedRule struct {
	Prefix   netip.Prefix `json:"prefix,omitzero"`
	Host     string       `json:"host,omitempty"`
	Port     uint16       `json:"port,omitempty"`
	Proto    string       `json:"proto,omitempty"`
	Resolved []netip.Addr `json:"resolved,omitempty"`
}

// bridgeState is one bridge's state file, with its leases as read. A service's bridge of its own is no bridge device: its one
// member is connected by a routed veth pair, whose host end holds the gateway address and is the
// Ifname the rules match (Routed); a named bridge is a Linux bridge its members' veths are ports of.
type bridgeState struct {
	Name    string       `json:"name"`             // the network's name
	Ifname  string       `json:"ifname"`           // the Linux interface (at most 15 bytes)
	Routed  bool         `json:"routed,omitempty"` // Ifname is the one member's host veth, not a bridge
	Subnet  netip.Prefix `json:"subnet"`
	Gateway netip.Addr   `json:"gateway"`
	Leases  []lease      `json:"-"` // read from the bridge's lease files, one per member
}
