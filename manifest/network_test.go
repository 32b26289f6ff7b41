package manifest

import (
	"net/netip"
	"reflect"
	"testing"
)

// bridged adds a [network] table in bridge mode; its first key after mode
// is on line 16.
func bridged(lines string) string { return with("\n[network]\nmode = \"bridge\"\n" + lines) }

func TestNetworkErrors(t *testing.T) {
	runErrCases(t, []errCase{
		{"all keys", bridged("bridge = \"app\"\nports = [\"8080:80\", \"0.0.0.0:8443:443/tcp\", \"127.0.0.1:53:53/udp\"]\negress = [\"10.0.0.0/8:5432/tcp\", \"192.0.2.7\", \"api.example.com:443\"]\ndns = [\"192.0.2.53\"]\n"), ""},
		{"egress all", bridged("egress = \"all\"\n"), ""},
		{"egress none", bridged("egress = \"none\"\n"), ""},
		{"egress none with mode none", with("\n[network]\negress = \"none\"\n"), ""},
		// ports
		{"port out of range", bridged("ports = [\"70000:80\"]\n"), `web.toml:16: network.ports[0]: "70000:80": port 70000 is out of range (use 1-65535)`},
		{"container port zero", bridged("ports = [\"8080:0\"]\n"), `web.toml:16: network.ports[0]: "8080:0": port 0 is out of range (use 1-65535)`},
		{"port not a number", bridged("ports = [\"web:80\"]\n"), `web.toml:16: network.ports[0]: "web:80": "web" is not a port number (use "[HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]", e.g. "8080:80" or "127.0.0.1:8443:443/tcp")`},
		{"same host port twice", bridged("ports = [\"8080:80\", \"127.0.0.1:8080:81\"]\n"), `web.toml:16: network.ports[1]: host port 8080/tcp on 127.0.0.1 is already published by network.ports[0] (give each mapping its own host port)`},
		{"every address overlaps loopback", bridged("ports = [\"8080:80\", \"0.0.0.0:8080:81/tcp\"]\n"), `web.toml:16: network.ports[1]: host port 8080/tcp on 0.0.0.0 overlaps network.ports[0] on 127.0.0.1 (0.0.0.0 is every address of the host: give each mapping its own host port)`},
		{"same port other protocol", bridged("ports = [\"53:53/udp\", \"53:53/tcp\"]\n"), ""},
		{"same port other addresses", bridged("ports = [\"192.0.2.1:80:80\", \"127.0.0.1:80:80\"]\n"), ""},
		{"bad host ip", bridged("ports = [\"1.2.3:80:80\"]\n"), `web.toml:16: network.ports[0]: "1.2.3:80:80": "1.2.3" is not an IP address (use "[HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]", e.g. "8080:80" or "127.0.0.1:8443:443/tcp")`},
		{"ipv6 host ip", bridged("ports = [\"[::1]:8080:80\"]\n"), `web.toml:16: network.ports[0]: "[::1]:8080:80": IPv6 is off inside the service's network (publish on an IPv4 address, e.g. "127.0.0.1:8080:80")`},
		{"ipv6 bare", bridged("ports = [\"::1:8080:80\"]\n"), `web.toml:16: network.ports[0]: "::1:8080:80": IPv6 is off inside the service's network (publish on an IPv4 address, e.g. "127.0.0.1:8080:80")`},
		{"port range", bridged("ports = [\"8000-8010:8000-8010\"]\n"), `web.toml:16: network.ports[0]: "8000-8010:8000-8010": port ranges are not supported (write one mapping per port, e.g. "8000:8000")`},
		{"random host port", bridged("ports = [\"127.0.0.1::80\"]\n"), `web.toml:16: network.ports[0]: "127.0.0.1::80" names no host port (a random one is not supported: name it, e.g. "127.0.0.1:8080:80")`},
		{"container port only", bridged("ports = [\"80\"]\n"), `web.toml:16: network.ports[0]: "80" names no host port (a random one is not supported: write "8080:80", host port first)`},
		{"sctp", bridged("ports = [\"9:9/sctp\"]\n"), `web.toml:16: network.ports[0]: "9:9/sctp": sctp is not supported (publish tcp or udp)`},
		{"bad protocol", bridged("ports = [\"9:9/icmp\"]\n"), `web.toml:16: network.ports[0]: "9:9/icmp": "icmp" is not a protocol (use /tcp, the default, or /udp)`},
		{"ports with mode host", with("\n[network]\nmode = \"host\"\nports = [\"8080:80\"]\n"), `web.toml:16: network.ports: with mode = "host" every port the service opens is on the host already (remove ports, or set mode = "bridge")`},
		{"ports with mode none", with("\n[network]\nmode = \"none\"\nports = [\"8080:80\"]\n"), `web.toml:16: network.ports: published ports need mode = "bridge" (set it, or remove ports)`},
		// bridge
		{"bridge not a name", bridged("bridge = \"My Net\"\n"), `web.toml:16: network.bridge: "My Net" is not a network name (use 1-31 lowercase letters, digits, '_', '.', '-', starting with a letter or digit, e.g. "app")`},
		{"bridge too long", bridged("bridge = \"a-network-name-longer-than-31-chars\"\n"), `web.toml:16: network.bridge: "a-network-name-longer-than-31-chars" is not a network name (use 1-31 lowercase letters, digits, '_', '.', '-', starting with a letter or digit, e.g. "app")`},
		{"bridge with mode none", with("\n[network]\nbridge = \"app\"\n"), `web.toml:15: network.bridge: applies only to mode = "bridge" (set mode = "bridge", or remove it)`},
		// egress
		{"egress neither", bridged("egress = [\"10.0.0.0/8\", \"not a host\"]\n"), `web.toml:16: network.egress[1]: "not a host" is neither a CIDR nor a HOSTNAME:PORT (use "CIDR[:PORT[/tcp|udp]]" or "HOSTNAME:PORT", e.g. "10.0.0.0/8", "192.0.2.10:5432/tcp" or "api.example.com:443")`},
		{"egress hostname without port", bridged("egress = [\"api.example.com\"]\n"), `web.toml:16: network.egress[0]: "api.example.com" names no port (a host name needs one: write "api.example.com:443")`},
		{"egress host bits", bridged("egress = [\"10.1.2.3/8\"]\n"), `web.toml:16: network.egress[0]: "10.1.2.3/8": 10.1.2.3/8 is not a network address (write 10.0.0.0/8)`},
		{"egress port out of range", bridged("egress = [\"10.0.0.0/8:0\"]\n"), `web.toml:16: network.egress[0]: "10.0.0.0/8:0": port 0 is out of range (use 1-65535)`},
		{"egress bad port", bridged("egress = [\"db:postgres\"]\n"), `web.toml:16: network.egress[0]: "db:postgres": "postgres" is not a port number (use "CIDR[:PORT[/tcp|udp]]" or "HOSTNAME:PORT", e.g. "10.0.0.0/8", "192.0.2.10:5432/tcp" or "api.example.com:443")`},
		{"egress bad protocol", bridged("egress = [\"10.0.0.0/8:53/icmp\"]\n"), `web.toml:16: network.egress[0]: "10.0.0.0/8:53/icmp": "icmp" is not a protocol (use /tcp or /udp, or neither for both)`},
		{"egress ipv6", bridged("egress = [\"2001:db8::/32\"]\n"), `web.toml:16: network.egress[0]: "2001:db8::/32": IPv6 is off inside the service's network (name IPv4 networks or host names)`},
		{"egress all in a list", bridged("egress = [\"all\"]\n"), `web.toml:16: network.egress[0]: "all" is a setting, not a destination (write egress = "all", not a list)`},
		{"egress bad word", bridged("egress = \"some\"\n"), `web.toml:16: network.egress: "some" is not an egress setting (use "none", "all", or a list such as ["10.0.0.0/8:5432/tcp", "api.example.com:443"]; a single destination is a list of one: ["some"])`},
		{"egress number", bridged("egress = 1\n"), `web.toml:16: network.egress: 1 is not an egress setting (use "none", "all", or a list such as ["10.0.0.0/8:5432/tcp", "api.example.com:443"])`},
		{"egress number in list", bridged("egress = [\"10.0.0.0/8\", 1]\n"), `web.toml:16: network.egress[1]: 1 must be a string (put it in double quotes)`},
		{"egress with mode host", with("\n[network]\nmode = \"host\"\negress = \"all\"\n\n[insecure]\nreason = \"r\"\nallow = [\"host_network\"]\n"), `web.toml:16: network.egress: applies only to mode = "bridge" (with mode = "host" the service shares the host's network: remove it, or set mode = "bridge")`},
		// dns
		{"dns not an address", bridged("dns = [\"dns.example\"]\n"), `web.toml:16: network.dns[0]: "dns.example" is not an IP address (name resolvers by address, e.g. "192.0.2.53")`},
		{"dns loopback", bridged("dns = [\"127.0.0.53\"]\n"), `web.toml:16: network.dns[0]: 127.0.0.53 is a loopback address, which the service's network cannot reach (name the upstream resolver itself, e.g. from /run/systemd/resolve/resolv.conf, or remove dns for the host's)`},
		{"dns ipv6", bridged("dns = [\"2001:db8::53\"]\n"), `web.toml:16: network.dns[0]: "2001:db8::53": IPv6 is off inside the service's network (name an IPv4 resolver)`},
		{"dns with mode none", with("\n[network]\ndns = [\"192.0.2.53\"]\n"), `web.toml:15: network.dns: applies only to mode = "bridge" (set mode = "bridge", or remove it)`},
		// all at once, sorted by line
		{"all at once", bridged("bridge = \"-x\"\nports = [\"99999:80\", \"8080:80\", \"8080:80\"]\negress = [\"nope nope\"]\ndns = [\"::1\"]\n"),
			"web.toml:16: network.bridge: \"-x\" is not a network name (use 1-31 lowercase letters, digits, '_', '.', '-', starting with a letter or digit, e.g. \"app\")\n" +
				"web.toml:17: network.ports[0]: \"99999:80\": port 99999 is out of range (use 1-65535)\n" +
				"web.toml:17: network.ports[2]: host port 8080/tcp on 127.0.0.1 is already published by network.ports[1] (give each mapping its own host port)\n" +
				"web.toml:18: network.egress[0]: \"nope nope\" is neither a CIDR nor a HOSTNAME:PORT (use \"CIDR[:PORT[/tcp|udp]]\" or \"HOSTNAME:PORT\", e.g. \"10.0.0.0/8\", \"192.0.2.10:5432/tcp\" or \"api.example.com:443\")\n" +
				"web.toml:19: network.dns[0]: \"::1\": IPv6 is off inside the service's network (name an IPv4 resolver)"},
	})
}

func TestNetworkParsed(t *testing.T) {
	s, err := Parse("web.toml", "/srv/web", []byte(bridged("bridge = \"app\"\nports = [\"8080:80\", \"0.0.0.0:5353:53/udp\"]\negress = [\"10.0.0.0/8:5432/tcp\", \"192.0.2.7\", \"API.example.com:443\"]\ndns = [\"192.0.2.53\"]\n")))
	if err != nil {
		t.Fatal(err)
	}
	n := s.Network
	wantPorts := []Port{
		{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 8080, ContainerPort: 80, Proto: "tcp"},
		{HostIP: netip.MustParseAddr("0.0.0.0"), HostPort: 5353, ContainerPort: 53, Proto: "udp"},
	}
	wantRules := []EgressRule{
		{Prefix: netip.MustParsePrefix("10.0.0.0/8"), Port: 5432, Proto: "tcp"},
		{Prefix: netip.MustParsePrefix("192.0.2.7/32")},
		{Host: "api.example.com", Port: 443},
	}
	if !reflect.DeepEqual(n.Published, wantPorts) {
		t.Errorf("Published = %v, want %v", n.Published, wantPorts)
	}
	if !reflect.DeepEqual(n.Egress.Rules, wantRules) {
		t.Errorf("Egress.Rules = %v, want %v", n.Egress.Rules, wantRules)
	}
	if want := []netip.Addr{netip.MustParseAddr("192.0.2.53")}; !reflect.DeepEqual(n.Resolvers, want) {
		t.Errorf("Resolvers = %v, want %v", n.Resolvers, want)
	}
	if n.Bridge != "app" || n.Egress.All || n.Egress.None() {
		t.Errorf("Bridge %q, Egress %+v", n.Bridge, n.Egress)
	}
	for i, want := range []string{"127.0.0.1:8080:80/tcp", "0.0.0.0:5353:53/udp"} {
		if got := n.Published[i].String(); got != want {
			t.Errorf("Published[%d].String() = %q, want %q", i, got, want)
		}
	}
	for i, want := range []string{"10.0.0.0/8:5432/tcp", "192.0.2.7", "api.example.com:443"} {
		if got := n.Egress.Rules[i].String(); got != want {
			t.Errorf("Egress.Rules[%d].String() = %q, want %q", i, got, want)
		}
	}
}

func TestCheckHostAddresses(t *testing.T) {
	s, err := Parse("web.toml", "/srv/web", []byte(bridged("ports = [\"8080:80\", \"0.0.0.0:8081:81\", \"192.0.2.1:8082:82\", \"198.51.100.1:8083:83\"]\n")))
	if err != nil {
		t.Fatal(err)
	}
	have := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::ffff:192.0.2.1")}
	err = s.CheckHostAddresses(have)
	want := `web.toml:16: network.ports[3]: 198.51.100.1 is not an address of this host (publish on one it has, on 127.0.0.1, or on 0.0.0.0 for every address)`
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
	if err := s.CheckHostAddresses(append(have, netip.MustParseAddr("198.51.100.1"))); err != nil {
		t.Errorf("all present: %v", err)
	}
}
