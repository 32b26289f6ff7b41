package network

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/safe-run/safe-run/internal/testenv"
)

// The tests' traffic stays on loopback. Each test takes its own
// 127.53.N.0/24 so parallel tests (and other helpers' tests) never share an
// address.

func TestResolverAnswer(t *testing.T) {
	gw := netip.MustParseAddr("10.89.0.1")
	web := netip.MustParseAddr("10.89.0.2")
	db := netip.MustParseAddr("10.89.0.3")
	lookup := func() (map[string]netip.Addr, error) {
		return map[string]netip.Addr{"web": web, "DB": db, "api.v2": netip.MustParseAddr("10.89.0.4")}, nil
	}
	// No upstream: whatever would be forwarded comes back SERVFAIL, which
	// tells forwarding apart from a local answer.
	r := newResolver(gw, "App", lookup, nil, nil)
	stranger := netip.MustParseAddr("10.89.7.7")

	tests := []struct {
		name   string
		client netip.Addr
		q      string
		qtype  uint16
		rcode  int
		answer string // the answer's data, "" for none
	}{
		{"member", web, "db", dns.TypeA, dns.RcodeSuccess, "10.89.0.3"},
		{"member fqdn", web, "db.", dns.TypeA, dns.RcodeSuccess, "10.89.0.3"},
		{"member case", web, "Db.", dns.TypeA, dns.RcodeSuccess, "10.89.0.3"},
		{"member.bridge", web, "db.app", dns.TypeA, dns.RcodeSuccess, "10.89.0.3"},
		{"member.bridge fqdn case", web, "WEB.APP.", dns.TypeA, dns.RcodeSuccess, "10.89.0.2"},
		{"member with a dot", web, "api.v2.", dns.TypeA, dns.RcodeSuccess, "10.89.0.4"},
		{"member with a dot.bridge", web, "API.v2.app.", dns.TypeA, dns.RcodeSuccess, "10.89.0.4"},
		{"aaaa is empty", web, "db.app.", dns.TypeAAAA, dns.RcodeSuccess, ""},
		{"mx is empty", web, "db.app.", dns.TypeMX, dns.RcodeSuccess, ""},
		{"unknown under bridge", web, "cache.app.", dns.TypeA, dns.RcodeNameError, ""},
		{"deeper under bridge", web, "x.db.app.", dns.TypeA, dns.RcodeNameError, ""},
		{"unknown single label", web, "cache.", dns.TypeA, dns.RcodeNameError, ""},
		{"unknown single label aaaa", web, "cache", dns.TypeAAAA, dns.RcodeNameError, ""},
		{"tld NS goes upstream", web, "com.", dns.TypeNS, dns.RcodeServerFailure, ""},
		{"other names go upstream", web, "example.org.", dns.TypeA, dns.RcodeServerFailure, ""},
		{"ptr of a member", web, "3.0.89.10.in-addr.arpa.", dns.TypePTR, dns.RcodeSuccess, "db.app."},
		{"ptr of others goes upstream", web, "9.0.89.10.in-addr.arpa.", dns.TypePTR, dns.RcodeServerFailure, ""},
		{"the host through the gateway", gw, "web", dns.TypeA, dns.RcodeSuccess, "10.89.0.2"},
		{"not on the bridge", stranger, "web", dns.TypeA, dns.RcodeRefused, ""},
		{"no recursion for strangers", stranger, "example.org.", dns.TypeA, dns.RcodeRefused, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := new(dns.Msg)
			req.SetQuestion(tc.q, tc.qtype)
			req.Id = 4242
			resp := r.answer(context.Background(), tc.client, req)
			if resp.Id != 4242 {
				t.Errorf("id = %d, want 4242", resp.Id)
			}
			if resp.Rcode != tc.rcode {
				t.Fatalf("rcode = %s, want %s", dns.RcodeToString[resp.Rcode], dns.RcodeToString[tc.rcode])
			}
			if len(resp.Question) != 1 || resp.Question[0].Name != tc.q {
				t.Errorf("question = %v, want %q kept as asked", resp.Question, tc.q)
			}
			got := answerData(resp)
			if got != tc.answer {
				t.Errorf("answer = %q, want %q", got, tc.answer)
			}
			if tc.answer != "" && resp.Answer[0].Header().Ttl != memberTTL {
				t.Errorf("ttl = %d, want %d", resp.Answer[0].Header().Ttl, memberTTL)
			}
		})
	}
}

func answerData(m *dns.Msg) string {
	var s []string
	for _, rr := range m.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			s = append(s, rr.A.String())
		case *dns.PTR:
			s = append(s, rr.Ptr)
		case *dns.TXT:
			s = append(s, strings.Join(rr.Txt, ""))
		default:
			s = append(s, rr.String())
		}
	}
	return strings.Join(s, ",")
}

// fakeUpstream serves the zone example.test on addr (UDP and TCP): A for
// www.example.test, 40 TXT records for big.example.test (too many for 512
// bytes), NXDOMAIN for the rest. It truncates UDP answers as a real
// server does.
func fakeUpstream(t *testing.T, addr netip.AddrPort) {
	t.Helper()
	h := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		m.Authoritative = true
		q := req.Question[0]
		switch strings.ToLower(q.Name) {
		case "www.example.test.":
			m.Answer = append(m.Answer, &dns.A{
				Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300},
				A:   net.ParseIP("192.0.2.80"),
			})
		case "big.example.test.":
			for i := range 40 {
				m.Answer = append(m.Answer, &dns.TXT{
					Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 300},
					Txt: []string{strings.Repeat(string(rune('a'+i%26)), 30)},
				})
			}
		default:
			m.Rcode = dns.RcodeNameError
		}
		if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
			size := dns.MinMsgSize
			if o := req.IsEdns0(); o != nil {
				size = int(o.UDPSize())
			}
			m.Truncate(size)
		}
		_ = w.WriteMsg(m)
	})
	for _, network := range []string{"udp", "tcp"} {
		started := make(chan struct{})
		s := &dns.Server{Addr: addr.String(), Net: network, Handler: h, NotifyStartedFunc: func() { close(started) }}
		errc := make(chan error, 1)
		go func() { errc <- s.ListenAndServe() }()
		select {
		case <-started:
		case err := <-errc:
			t.Fatalf("fake upstream on %s/%s: %v", addr, network, err)
		}
		t.Cleanup(func() { _ = s.Shutdown() })
	}
}

// query asks server over network from the local address from (a member's).
func query(t *testing.T, network string, from netip.Addr, server netip.AddrPort, name string, qtype uint16, edns bool) *dns.Msg {
	t.Helper()
	var local net.Addr
	if network == "udp" {
		local = &net.UDPAddr{IP: from.AsSlice()}
	} else {
		local = &net.TCPAddr{IP: from.AsSlice()}
	}
	c := &dns.Client{Net: network, Dialer: &net.Dialer{LocalAddr: local}, Timeout: upstreamTimeout * 3}
	req := new(dns.Msg)
	req.SetQuestion(name, qtype)
	if edns {
		req.SetEdns0(4096, false)
	}
	resp, _, err := c.Exchange(req, server.String())
	if err != nil {
		t.Fatalf("asking %s for %s over %s: %v", server, name, network, err)
	}
	if resp.Id != req.Id {
		t.Fatalf("reply id %d, want %d", resp.Id, req.Id)
	}
	return resp
}

// testNet returns a.b.c.host in the test's own 127.53.N.0/24.
func testNet(n byte) func(host byte) netip.Addr {
	return func(host byte) netip.Addr { return netip.AddrFrom4([4]byte{127, 53, n, host}) }
}

func TestServeDNSOverTheWire(t *testing.T) {
	ip := testNet(1)
	gw, up := netip.AddrPortFrom(ip(1), 5300), netip.AddrPortFrom(ip(2), 5300)
	web, stranger := ip(11), ip(99)
	fakeUpstream(t, up)
	lookup := func() (map[string]netip.Addr, error) {
		return map[string]netip.Addr{"web": web, "db": ip(12)}, nil
	}
	stop, err := serveDNS(context.Background(), gw, "app", lookup, []netip.AddrPort{up}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)

	tests := []struct {
		network, name string
		qtype         uint16
		edns          bool
		from          netip.Addr
		rcode         int
		answer        string
		truncated     bool
	}{
		{"udp", "db.", dns.TypeA, false, web, dns.RcodeSuccess, "127.53.1.12", false},
		{"tcp", "db.app.", dns.TypeA, false, web, dns.RcodeSuccess, "127.53.1.12", false},
		{"udp", "nope.app.", dns.TypeA, false, web, dns.RcodeNameError, "", false},
		{"udp", "www.example.test.", dns.TypeA, false, web, dns.RcodeSuccess, "192.0.2.80", false},
		{"tcp", "WWW.example.test.", dns.TypeA, false, web, dns.RcodeSuccess, "192.0.2.80", false},
		{"udp", "missing.example.test.", dns.TypeA, false, web, dns.RcodeNameError, "", false},
		// Upstream truncates over UDP; the resolver asks again over TCP and
		// gives the whole answer to a TCP client or an EDNS one, TC to a
		// plain UDP one (which then retries over TCP).
		{"tcp", "big.example.test.", dns.TypeTXT, false, web, dns.RcodeSuccess, "40 records", false},
		{"udp", "big.example.test.", dns.TypeTXT, true, web, dns.RcodeSuccess, "40 records", false},
		{"udp", "big.example.test.", dns.TypeTXT, false, web, dns.RcodeSuccess, "", true},
		{"udp", "www.example.test.", dns.TypeA, false, stranger, dns.RcodeRefused, "", false},
		{"tcp", "web.", dns.TypeA, false, stranger, dns.RcodeRefused, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.network+" "+tc.name+" from "+tc.from.String(), func(t *testing.T) {
			resp := query(t, tc.network, tc.from, gw, tc.name, tc.qtype, tc.edns)
			if resp.Rcode != tc.rcode {
				t.Fatalf("rcode = %s, want %s", dns.RcodeToString[resp.Rcode], dns.RcodeToString[tc.rcode])
			}
			got := answerData(resp)
			if tc.qtype == dns.TypeTXT && len(resp.Answer) > 0 {
				got = strconv.Itoa(len(resp.Answer)) + " records"
			}
			if tc.truncated {
				if !resp.Truncated {
					t.Errorf("TC not set on an answer too big for plain UDP (%d records)", len(resp.Answer))
				}
				return
			}
			if got != tc.answer {
				t.Errorf("answer = %q, want %q", got, tc.answer)
			}
		})
	}
}

// Every member's supervisor serves the same gateway address; one stopping
// leaves the others answering.
func TestServeDNSSharedAddress(t *testing.T) {
	ip := testNet(2)
	gw, up := netip.AddrPortFrom(ip(1), 5300), netip.AddrPortFrom(ip(2), 5300)
	web := ip(11)
	fakeUpstream(t, up)
	lookup := func() (map[string]netip.Addr, error) { return map[string]netip.Addr{"web": web}, nil }

	stopA, err := serveDNS(context.Background(), gw, "app", lookup, []netip.AddrPort{up}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopA)
	ctxB, cancelB := context.WithCancel(context.Background())
	stopB, err := serveDNS(ctxB, gw, "app", lookup, []netip.AddrPort{up}, nil, nil)
	if err != nil {
		t.Fatalf("a second resolver on the same address: %v", err)
	}
	t.Cleanup(stopB)

	ask := func(when string) {
		t.Helper()
		// Many source ports, so the kernel's SO_REUSEPORT hash reaches
		// every socket in the group.
		for i := range 20 {
			network := []string{"udp", "tcp"}[i%2]
			resp := query(t, network, web, gw, "web.app.", dns.TypeA, false)
			if got := answerData(resp); got != web.String() {
				t.Fatalf("%s: %s answer = %q (rcode %s), want %s", when, network, got, dns.RcodeToString[resp.Rcode], web)
			}
			resp = query(t, network, web, gw, "www.example.test.", dns.TypeA, false)
			if got := answerData(resp); got != "192.0.2.80" {
				t.Fatalf("%s: forwarded %s answer = %q, want 192.0.2.80", when, network, got)
			}
		}
	}
	ask("both running")
	stopA()
	stopA() // idempotent
	ask("after the first stopped")
	cancelB() // ctx ends the second
	// The cancel is seen asynchronously; stopB waits for it.
	stopB()
	c := &dns.Client{Net: "tcp", Timeout: upstreamTimeout}
	req := new(dns.Msg)
	req.SetQuestion("web.", dns.TypeA)
	if _, _, err := c.Exchange(req, gw.String()); err == nil {
		t.Errorf("a resolver still answers after both stopped")
	}
}

// ServeDNS itself, on the real port 53 of a loopback address.
func TestServeDNSPort53(t *testing.T) {
	testenv.RequireRoot(t) // port 53
	ip := testNet(3)
	stop, err := ServeDNS(context.Background(), ip(1), "app", func() (map[string]netip.Addr, error) {
		return map[string]netip.Addr{"web": ip(11)}, nil
	}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	resp := query(t, "udp", ip(11), netip.AddrPortFrom(ip(1), 53), "web.app.", dns.TypeA, false)
	if got := answerData(resp); got != ip(11).String() {
		t.Errorf("answer = %q, want %s", got, ip(11))
	}
}

func TestServeDNSInUse(t *testing.T) {
	ip := testNet(4)
	addr := netip.AddrPortFrom(ip(1), 5300)
	// A foreign socket without SO_REUSEPORT holds the address.
	pc, err := net.ListenPacket("udp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	_, err = serveDNS(context.Background(), addr, "app", func() (map[string]netip.Addr, error) { return nil, nil }, nil, nil, nil)
	want := "serving the bridge's DNS on 127.53.4.1:5300/udp: the address is in use by a program that is not safe-run (stop it, or make it listen on other addresses than 127.53.4.1)"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %s", err, want)
	}
}

func TestUpstreams(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	plain := write("plain", "# generated\nsearch lan\nnameserver 192.0.2.53\nnameserver 2001:db8::53\noptions edns0\n")
	stub := write("stub", "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n")
	resolved := write("resolved", "nameserver 192.0.2.1\nnameserver 192.0.2.2\n")
	mixed := write("mixed", "nameserver 127.0.0.1\nnameserver 192.0.2.9\n")
	loopOnly := write("loop", "nameserver 127.0.0.1\nnameserver ::1\n")
	empty := write("empty", "search lan\n")
	bad := write("bad", "nameserver 192.0.2.1\nnameserver dns.example\n")
	missing := filepath.Join(dir, "missing")

	tests := []struct {
		name              string
		configured        []netip.Addr
		resolvConf, stubs string
		want              string
		err               string
	}{
		{"configured wins", []netip.Addr{netip.MustParseAddr("198.51.100.1")}, stub, missing, "198.51.100.1", ""},
		{"host's resolvers", nil, plain, missing, "192.0.2.53, 2001:db8::53", ""},
		{"systemd-resolved stub", nil, stub, resolved, "192.0.2.1, 192.0.2.2", ""},
		{"loopback dropped, real kept", nil, mixed, missing, "192.0.2.9", ""},
		{"stub file without upstreams", nil, stub, loopOnly, "", stub + " lists only loopback resolvers (127.0.0.53) and " + loopOnly + " gives none of their upstreams; the bridge's resolver cannot use a host-local stub: set [network] dns = [\"IP\", ...] in the manifest"},
		{"only loopback", nil, loopOnly, missing, "", loopOnly + " lists only loopback resolvers (127.0.0.1, ::1) and " + missing + " gives none of their upstreams; the bridge's resolver cannot use a host-local stub: set [network] dns = [\"IP\", ...] in the manifest"},
		{"no nameserver", nil, empty, missing, "", empty + " lists no nameserver, so the bridge's resolver has no upstream: set [network] dns = [\"IP\", ...] in the manifest"},
		{"no resolv.conf", nil, missing, missing, "", "finding the host's DNS resolvers: open " + missing + ": no such file or directory (set [network] dns in the manifest)"},
		{"bad line", nil, bad, missing, "", "finding the host's DNS resolvers: " + bad + ":2: nameserver \"dns.example\" is not an IP address (set [network] dns in the manifest)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := upstreamsFrom(tc.configured, tc.resolvConf, tc.stubs)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("err = %v\nwant  %s", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s := joinAddrs(got); s != tc.want {
				t.Errorf("upstreams = %s, want %s", s, tc.want)
			}
		})
	}
}

// The real layout: a member in its own namespace asks the gateway (the
// host's address on its link) on port 53; member names come from lookup,
// the rest from the upstream (a fake one on loopback).
func TestServeDNSFromNetns(t *testing.T) {
	ns, gw, member := testNetns(t, 2)
	ip := testNet(5)
	fakeUpstream(t, netip.AddrPortFrom(ip(2), 53))
	stop, err := ServeDNS(context.Background(), gw, "app", func() (map[string]netip.Addr, error) {
		return map[string]netip.Addr{"web": member, "db": netip.MustParseAddr("10.253.2.3")}, nil
	}, []netip.Addr{ip(2)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)

	tests := []struct{ network, name, want string }{
		{"udp", "db.", "10.253.2.3"},
		{"tcp", "web.app.", member.String()},
		{"udp", "www.example.test.", "192.0.2.80"},
		{"tcp", "www.example.test.", "192.0.2.80"},
	}
	for _, tc := range tests {
		var resp *dns.Msg
		var err error
		inNetnsT(t, ns, func() {
			c := &dns.Client{Net: tc.network, Timeout: 3 * upstreamTimeout}
			req := new(dns.Msg)
			req.SetQuestion(tc.name, dns.TypeA)
			resp, _, err = c.Exchange(req, netip.AddrPortFrom(gw, 53).String())
		})
		if err != nil {
			t.Errorf("%s %s from the namespace: %v", tc.network, tc.name, err)
			continue
		}
		if got := answerData(resp); got != tc.want {
			t.Errorf("%s %s: %q (rcode %s), want %s", tc.network, tc.name, got, dns.RcodeToString[resp.Rcode], tc.want)
		}
	}
}

// TestResolverMemberUpstreams: each member's queries go to its own upstreams, whichever member's
// resolver the kernel hands them to; the host (on the gateway) gets the resolver's own. Found by
// example/network_test.go, "dns per service on a shared bridge": a member with [network] dns got
// a third of its answers from another member's upstream.
func TestResolverMemberUpstreams(t *testing.T) {
	n := testNet(61)
	gw, a, b := n(1), n(2), n(3)
	upA, upB, own := netip.AddrPortFrom(n(10), 53), netip.AddrPortFrom(n(11), 53), netip.AddrPortFrom(n(12), 53)
	lookup := func() (map[string]netip.Addr, error) { return map[string]netip.Addr{"a": a, "b": b}, nil }
	r := newResolver(gw, "app", lookup, []netip.AddrPort{own}, nil)
	r.memberUpstreams = func() (map[netip.Addr][]netip.AddrPort, error) {
		return map[netip.Addr][]netip.AddrPort{a: {upA}, b: {upB}}, nil
	}
	for _, tc := range []struct {
		client netip.Addr
		want   netip.AddrPort
	}{{a, upA}, {b, upB}, {gw, own}} {
		if got := r.upstreamsOf(tc.client); len(got) != 1 || got[0] != tc.want {
			t.Errorf("upstreams of %s: %v, want [%s]", tc.client, got, tc.want)
		}
	}
	r.memberUpstreams = nil
	if got := r.upstreamsOf(a); len(got) != 1 || got[0] != own {
		t.Errorf("without member upstreams, upstreams of %s: %v, want [%s]", a, got, own)
	}
}
