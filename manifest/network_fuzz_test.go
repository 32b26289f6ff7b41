package manifest

import (
	"regexp"
	"strings"
	"testing"
)

// portSeeds and egressSeeds are the shapes the table tests and examples
// use, good and bad, the seed corpora of the fuzz targets below.
var portSeeds = []string{
	"8080:80", "8080:80/tcp", "53:53/udp", "127.0.0.1:8080:80", "0.0.0.0:5353:53/udp",
	"80", "127.0.0.1::80", "[::1]:8080:80", "8000-8010:8000-8010", "80/sctp",
	"", "http", "8080:", "a:80", "8080:80/icmp", "1:2:3:4", "[::1", "127.0.0.1:8080:80:1",
	"65535:65535", "0:80", "65536:80", "::1:80:80",
}

var egressSeeds = []string{
	"10.0.0.0/8", "192.0.2.10:5432/tcp", "api.example.com:443", "api.example.com:443/udp",
	"192.0.2.1", "10.0.0.1/8", "all", "none", "::1", "[::1]:80", "example.com",
	"1.2.3:80", "10.0.0.0/8:80-90", "host:0", "host:x", "Example.COM.:53/udp", "10.0.0.0/8:/tcp",
}

// FuzzParsePort: whatever ParsePort accepts, the JSON Schema's pattern
// accepts too (an editor must not flag a manifest safe-run loads), and
// its String reads back to the same port. make fuzz runs it for 15s;
// longer by hand:
//
//	go test ./manifest -run '^$' -fuzz FuzzParsePort -fuzztime 10m
func FuzzParsePort(f *testing.F) {
	for _, s := range portSeeds {
		f.Add(s)
	}
	re := regexp.MustCompile(portPattern)
	f.Fuzz(func(t *testing.T, text string) {
		p, err := ParsePort(text)
		if err != nil {
			if !strings.Contains(err.Error(), "(") {
				t.Errorf("%q: error without the way to write it: %v", text, err)
			}
			return
		}
		if !re.MatchString(text) {
			t.Errorf("%q: ParsePort accepts it, the schema's pattern does not", text)
		}
		if p.HostPort == 0 || p.ContainerPort == 0 || !p.HostIP.Is4() || (p.Proto != "tcp" && p.Proto != "udp") {
			t.Errorf("%q: loaded %+v", text, p)
		}
		again, err := ParsePort(p.String())
		if err != nil || again != p {
			t.Errorf("%q: String %q reads back as %+v, %v", text, p.String(), again, err)
		}
	})
}

// FuzzParseEgressRule: what ParseEgressRule accepts is a destination
// (an IPv4 network or a host name with a port), and its String reads back
// to the same rule.
//
//	go test ./manifest -run '^$' -fuzz FuzzParseEgressRule -fuzztime 10m
func FuzzParseEgressRule(f *testing.F) {
	for _, s := range egressSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		r, err := ParseEgressRule(text)
		if err != nil {
			if !strings.Contains(err.Error(), "(") {
				t.Errorf("%q: error without the way to write it: %v", text, err)
			}
			return
		}
		switch {
		case r.Prefix.IsValid() == (r.Host != ""):
			t.Errorf("%q: loaded %+v: not exactly one of a network and a host", text, r)
		case r.Prefix.IsValid() && (!r.Prefix.Addr().Is4() || r.Prefix.Masked() != r.Prefix):
			t.Errorf("%q: loaded the network %s", text, r.Prefix)
		case r.Host != "" && (r.Port == 0 || !validHostname(r.Host) || r.Host != strings.ToLower(r.Host) || strings.HasSuffix(r.Host, ".")):
			t.Errorf("%q: loaded the host %q port %d", text, r.Host, r.Port)
		case r.Proto != "" && (r.Port == 0 || (r.Proto != "tcp" && r.Proto != "udp")):
			t.Errorf("%q: loaded protocol %q, port %d", text, r.Proto, r.Port)
		}
		again, err := ParseEgressRule(r.String())
		if err != nil || again != r {
			t.Errorf("%q: String %q reads back as %+v, %v", text, r.String(), again, err)
		}
	})
}
