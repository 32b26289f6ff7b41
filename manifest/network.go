package manifest

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Network selects the network namespace and, in bridge mode, what reaches
// the service and what it reaches. Load parses the strings as written into
// Published, Egress.Rules and Resolvers, so later stages never parse them
// again.
type Network struct {
	Mode   string   `toml:"mode"`
	Bridge string   `toml:"bridge"` // bridge mode: the named network joined; "" = one of its own
	Ports  []string `toml:"ports"`  // as written: [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]
	Egress Egress   `toml:"egress"`
	DNS    []string `toml:"dns"` // as written: IP addresses of upstream resolvers

	// Filled in by Load from the keys above.
	Published []Port       `toml:"-"` // Ports, parsed, in order
	Resolvers []netip.Addr `toml:"-"` // DNS, parsed; empty = the host's
}

// Port is one published port, parsed.
type Port struct {
	HostIP        netip.Addr // 127.0.0.1 when the manifest names none; 0.0.0.0 = every address
	HostPort      uint16
	ContainerPort uint16
	Proto         string // "tcp" (the default) or "udp"
}

// String writes the port as the manifest does, host IP and protocol always
// given: "127.0.0.1:8080:80/tcp".
func (p Port) String() string {
	return fmt.Sprintf("%s:%d:%d/%s", p.HostIP, p.HostPort, p.ContainerPort, p.Proto)
}

// Egress is [network] egress: "none" (the default: only peers on the
// same bridge and DNS), "all", or a list of the destinations allowed. In
// TOML it is a string or an array of strings.
type Egress struct {
	All     bool
	Entries []string     // the list as written; empty with All false = "none"
	Rules   []EgressRule // Entries, parsed by Load
}

// EgressRule is one allowed destination, parsed.
type EgressRule struct {
	Prefix netip.Prefix // set for a CIDR entry (a bare IP is a /32)
	Host   string       // set for a HOSTNAME:PORT entry, resolved by safe-run
	Port   uint16       // 0 = any port
	Proto  string       // "" = tcp and udp
}

// String writes the rule as the manifest does.
func (r EgressRule) String() string {
	s := r.Host
	if r.Prefix.IsValid() {
		s = r.Prefix.String()
		if r.Prefix.IsSingleIP() {
			s = r.Prefix.Addr().String()
		}
	}
	if r.Port != 0 {
		s += ":" + strconv.Itoa(int(r.Port))
	}
	if r.Proto != "" {
		s += "/" + r.Proto
	}
	return s
}

// Egress settings written as a string.
const (
	EgressNone = "none"
	EgressAll  = "all"
)

// None reports whether the service reaches only its bridge's peers and DNS.
func (e Egress) None() bool { return !e.All && len(e.Entries) == 0 }

// String is "none", "all" or the entries joined by ", ".
func (e Egress) String() string {
	switch {
	case e.All:
		return EgressAll
	case len(e.Entries) == 0:
		return EgressNone
	}
	return strings.Join(e.Entries, ", ")
}

const egressUse = `use "none", "all", or a list such as ["10.0.0.0/8:5432/tcp", "api.example.com:443"]`

// UnmarshalTOML takes the TOML value as BurntSushi/toml decodes it: a
// string ("none" or "all") or an array of strings. The entries are checked
// by Load, each at its own key.
func (e *Egress) UnmarshalTOML(data any) error {
	switch d := data.(type) {
	case string:
		switch d {
		case EgressNone:
			*e = Egress{}
		case EgressAll:
			*e = Egress{All: true}
		default:
			return fmt.Errorf("%q is not an egress setting (%s; a single destination is a list of one: [%q])", d, egressUse, d)
		}
		return nil
	case []any:
		entries := make([]string, 0, len(d))
		for i, item := range d {
			s, ok := item.(string)
			if !ok {
				return &entryError{i, describe(item) + " must be a string (put it in double quotes)"}
			}
			entries = append(entries, s)
		}
		*e = Egress{Entries: entries}
		return nil
	}
	return fmt.Errorf("%s is not an egress setting (%s)", describe(data), egressUse)
}

// entryError is a problem with one entry of a list a value's
// UnmarshalTOML decodes: decodeValue reports it at the entry's key.
type entryError struct {
	index int
	msg   string
}

func (e *entryError) Error() string { return e.msg }

// bridgePattern: the bridge's name is also a DNS name's last label
// (NAME.BRIDGE) and part of names on the host, hence short and lower case.
var bridgePattern = compileLater(`^[a-z0-9][a-z0-9_.-]*$`)

const maxBridgeName = 31

func validateNetwork(s *Service, fe *fieldErrors) {
	n := &s.Network
	switch n.Mode {
	case NetworkNone, NetworkHost, NetworkBridge:
	default:
		fe.add("network.mode", `%q is not a network mode (use "none", "bridge", or "host" with [insecure] allow = ["host_network"])`, n.Mode)
	}
	if n.Mode != NetworkBridge {
		// What only a bridge gives. Written with another mode it would
		// be silently meaningless: with none nothing is reachable, with
		// host everything is.
		why := `set mode = "bridge", or remove it`
		if n.Mode == NetworkHost {
			why = `with mode = "host" the service shares the host's network: remove it, or set mode = "bridge"`
		}
		if n.Bridge != "" {
			fe.add("network.bridge", "applies only to mode = \"bridge\" (%s)", why)
		}
		if len(n.Ports) > 0 {
			if n.Mode == NetworkHost {
				fe.add("network.ports", `with mode = "host" every port the service opens is on the host already (remove ports, or set mode = "bridge")`)
			} else {
				fe.add("network.ports", `published ports need mode = "bridge" (set it, or remove ports)`)
			}
		}
		if !n.Egress.None() {
			fe.add("network.egress", "applies only to mode = \"bridge\" (%s)", why)
		}
		if len(n.DNS) > 0 {
			fe.add("network.dns", "applies only to mode = \"bridge\" (%s)", why)
		}
	}
	if n.Bridge != "" && (len(n.Bridge) > maxBridgeName || !bridgePattern().MatchString(n.Bridge)) {
		fe.add("network.bridge", "%q is not a network name (use 1-%d lowercase letters, digits, '_', '.', '-', starting with a letter or digit, e.g. \"app\")", n.Bridge, maxBridgeName)
	}
	n.Published = nil
	var at []int // index in Ports of each of Published
	for i, text := range n.Ports {
		p, err := ParsePort(text)
		if err != nil {
			fe.add(indexPath("network.ports", i), "%v", err)
			continue
		}
		for j, q := range n.Published {
			if q.HostPort != p.HostPort || q.Proto != p.Proto {
				continue
			}
			if q.HostIP == p.HostIP {
				fe.add(indexPath("network.ports", i), "host port %d/%s on %s is already published by network.ports[%d] (give each mapping its own host port)", p.HostPort, p.Proto, p.HostIP, at[j])
				break
			}
			if q.HostIP.IsUnspecified() || p.HostIP.IsUnspecified() {
				fe.add(indexPath("network.ports", i), "host port %d/%s on %s overlaps network.ports[%d] on %s (0.0.0.0 is every address of the host: give each mapping its own host port)", p.HostPort, p.Proto, p.HostIP, at[j], q.HostIP)
				break
			}
		}
		n.Published = append(n.Published, p)
		at = append(at, i)
	}
	n.Egress.Rules = nil
	for i, text := range n.Egress.Entries {
		r, err := ParseEgressRule(text)
		if err != nil {
			fe.add(indexPath("network.egress", i), "%v", err)
			continue
		}
		n.Egress.Rules = append(n.Egress.Rules, r)
	}
	n.Resolvers = nil
	for i, text := range n.DNS {
		a, err := parseResolver(text)
		if err != nil {
			fe.add(indexPath("network.dns", i), "%v", err)
			continue
		}
		n.Resolvers = append(n.Resolvers, a)
	}
	for _, ns := range []struct{ key, mode string }{{"pid", s.Namespaces.PID}, {"ipc", s.Namespaces.IPC}, {"uts", s.Namespaces.UTS}} {
		if ns.mode != "" && ns.mode != "private" && ns.mode != "host" {
			fe.add("namespaces."+ns.key, `%q is not a namespace mode (use "private", the default, or "host" with [insecure])`, ns.mode)
		}
	}
}

// loopback is the host address a port is published on when the manifest
// names none: docker's default, every address, is what check warns about.
var loopback = netip.AddrFrom4([4]byte{127, 0, 0, 1})

// portPattern is the shape ParsePort accepts, for the JSON Schema (ranges
// of numbers and addresses are the loader's). Not compiled here: package
// init runs on every container start.
const portPattern = `^([0-9]{1,3}(\.[0-9]{1,3}){3}:)?[0-9]{1,5}:[0-9]{1,5}(/(tcp|udp))?$`

const portUse = `use "[HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]", e.g. "8080:80" or "127.0.0.1:8443:443/tcp"`

// noIPv6 is the answer to any IPv6 address: the service's network
// namespace has IPv6 turned off.
const noIPv6 = "IPv6 is off inside the service's network"

// ParsePort parses a published port, [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp].
// What docker's -p also takes and safe-run does not run is refused with the
// way to write it: ranges, a random host port, sctp, IPv6.
func ParsePort(text string) (Port, error) {
	body, proto, hasProto := strings.Cut(text, "/")
	switch {
	case !hasProto:
		proto = "tcp"
	case proto == "tcp" || proto == "udp":
	case proto == "sctp":
		return Port{}, fmt.Errorf("%q: sctp is not supported (publish tcp or udp)", text)
	default:
		return Port{}, fmt.Errorf("%q: %q is not a protocol (use /tcp, the default, or /udp)", text, proto)
	}
	if strings.HasPrefix(body, "[") || strings.Count(body, ":") > 2 {
		return Port{}, fmt.Errorf("%q: %s (publish on an IPv4 address, e.g. \"127.0.0.1:8080:80\")", text, noIPv6)
	}
	parts := strings.Split(body, ":")
	p := Port{HostIP: loopback, Proto: proto}
	switch len(parts) {
	case 1:
		if !digits(body) {
			return Port{}, fmt.Errorf("%q is not a port mapping (%s)", text, portUse)
		}
		return Port{}, fmt.Errorf("%q names no host port (a random one is not supported: write \"8080:%s\", host port first)", text, body)
	case 3:
		a, err := netip.ParseAddr(parts[0])
		switch {
		case err != nil:
			return Port{}, fmt.Errorf("%q: %q is not an IP address (%s)", text, parts[0], portUse)
		case a.Is6():
			return Port{}, fmt.Errorf("%q: %s (publish on an IPv4 address, e.g. \"127.0.0.1:8080:80\")", text, noIPv6)
		}
		p.HostIP = a
		parts = parts[1:]
	}
	if parts[0] == "" {
		return Port{}, fmt.Errorf("%q names no host port (a random one is not supported: name it, e.g. \"%s:8080:%s\")", text, p.HostIP, parts[1])
	}
	for i, part := range parts {
		if lo, hi, isRange := strings.Cut(part, "-"); isRange && digits(lo) && digits(hi) {
			return Port{}, fmt.Errorf("%q: port ranges are not supported (write one mapping per port, e.g. \"%s:%s\")", text, lo, lo)
		}
		n, err := parsePortNumber(part)
		if err != nil {
			return Port{}, fmt.Errorf("%q: %w", text, err)
		}
		if i == 0 {
			p.HostPort = n
		} else {
			p.ContainerPort = n
		}
	}
	return p, nil
}

func parsePortNumber(s string) (uint16, error) {
	if !digits(s) {
		return 0, fmt.Errorf("%q is not a port number (%s)", s, portUse)
	}
	// Zeros in front of a port change nothing but the schema's pattern
	// ({1,5} digits), which an editor checks: a number it flags must not
	// load (found by FuzzParsePort).
	if len(s) > 5 {
		return 0, fmt.Errorf("port %s has more digits than a port number (use 1-65535 without leading zeros)", s)
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %s is out of range (use 1-65535)", s)
	}
	return uint16(n), nil
}

const egressEntryUse = `use "CIDR[:PORT[/tcp|udp]]" or "HOSTNAME:PORT", e.g. "10.0.0.0/8", "192.0.2.10:5432/tcp" or "api.example.com:443"`

// ParseEgressRule parses one entry of an egress list:
// CIDR[:PORT[/PROTO]] (a bare IP is a /32) or HOSTNAME:PORT[/PROTO].
func ParseEgressRule(text string) (EgressRule, error) {
	switch text {
	case EgressAll, EgressNone:
		return EgressRule{}, fmt.Errorf("%q is a setting, not a destination (write egress = %q, not a list)", text, text)
	}
	if strings.HasPrefix(text, "[") || strings.Count(text, ":") > 1 {
		return EgressRule{}, fmt.Errorf("%q: %s (name IPv4 networks or host names)", text, noIPv6)
	}
	dest, port, hasPort := strings.Cut(text, ":")
	var r EgressRule
	if hasPort {
		num, proto, hasProto := strings.Cut(port, "/")
		if hasProto {
			if proto != "tcp" && proto != "udp" {
				return EgressRule{}, fmt.Errorf("%q: %q is not a protocol (use /tcp or /udp, or neither for both)", text, proto)
			}
			r.Proto = proto
		}
		if lo, hi, isRange := strings.Cut(num, "-"); isRange && digits(lo) && digits(hi) {
			return EgressRule{}, fmt.Errorf("%q: port ranges are not supported (list each port, or leave the port out for all)", text)
		}
		n, err := parsePortNumber(num)
		if err != nil {
			if !digits(num) {
				return EgressRule{}, fmt.Errorf("%q: %q is not a port number (%s)", text, num, egressEntryUse)
			}
			return EgressRule{}, fmt.Errorf("%q: %w", text, err)
		}
		r.Port = n
	}
	if pfx, err := netip.ParsePrefix(dest); err == nil {
		if pfx.Addr().Is6() {
			return EgressRule{}, fmt.Errorf("%q: %s (name IPv4 networks or host names)", text, noIPv6)
		}
		if pfx.Masked() != pfx {
			return EgressRule{}, fmt.Errorf("%q: %s is not a network address (write %s)", text, dest, pfx.Masked())
		}
		r.Prefix = pfx
		return r, nil
	}
	if a, err := netip.ParseAddr(dest); err == nil {
		if a.Is6() {
			return EgressRule{}, fmt.Errorf("%q: %s (name IPv4 networks or host names)", text, noIPv6)
		}
		r.Prefix = netip.PrefixFrom(a, 32)
		return r, nil
	}
	if !validHostname(dest) {
		return EgressRule{}, fmt.Errorf("%q is neither a CIDR nor a HOSTNAME:PORT (%s)", text, egressEntryUse)
	}
	if !hasPort {
		return EgressRule{}, fmt.Errorf("%q names no port (a host name needs one: write \"%s:443\")", text, dest)
	}
	r.Host = strings.ToLower(strings.TrimSuffix(dest, "."))
	return r, nil
}

// validHostname reports whether h is a DNS name of letters, digits and
// '-' labels, one of them not all digits (1.2.3 is a bad address, not a
// name).
func validHostname(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	letter := false
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			switch {
			case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
				letter = true
			case c >= '0' && c <= '9', c == '-':
			case c == '_':
				letter = true // _service labels, as SRV names use
			default:
				return false
			}
		}
	}
	return letter
}

// parseResolver parses one [network] dns entry.
func parseResolver(text string) (netip.Addr, error) {
	a, err := netip.ParseAddr(text)
	switch {
	case err != nil:
		return netip.Addr{}, fmt.Errorf("%q is not an IP address (name resolvers by address, e.g. \"192.0.2.53\")", text)
	case a.Is6():
		return netip.Addr{}, fmt.Errorf("%q: %s (name an IPv4 resolver)", text, noIPv6)
	case a.IsLoopback():
		return netip.Addr{}, fmt.Errorf("%s is a loopback address, which the service's network cannot reach (name the upstream resolver itself, e.g. from /run/systemd/resolve/resolv.conf, or remove dns for the host's)", text)
	case a.IsUnspecified() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return netip.Addr{}, fmt.Errorf("%s is not a resolver's address (name a resolver, e.g. \"192.0.2.53\")", text)
	}
	return a, nil
}

// OnHost reports whether the host can bind the port's address: 0.0.0.0
// and loopback always, another address only when have (the host's
// addresses, a host fact the caller probes) holds it.
func (p Port) OnHost(have []netip.Addr) bool {
	return p.HostIP.IsUnspecified() || p.HostIP.IsLoopback() ||
		slices.ContainsFunc(have, func(h netip.Addr) bool { return h.Unmap() == p.HostIP })
}

// CheckHostAddresses refuses a published port whose host IP the host does
// not have: binding it would fail at start, or, worse, succeed later on an
// address added for something else. have is the host's addresses, probed
// by the caller: the manifest stays pure.
func (s *Service) CheckHostAddresses(have []netip.Addr) error {
	var errs []error
	for i, p := range s.Network.Published {
		if !p.OnHost(have) {
			// Published follows Ports one to one once Load has succeeded.
			errs = append(errs, s.Errorf(indexPath("network.ports", i), "%s", HostAddressMissing(p)))
		}
	}
	return Merge(errs...)
}

// HostAddressMissing says what is wrong with a port whose address the
// host does not have, and the fix.
func HostAddressMissing(p Port) string {
	return fmt.Sprintf("%s is not an address of this host (publish on one it has, on 127.0.0.1, or on 0.0.0.0 for every address)", p.HostIP)
}
