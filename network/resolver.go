package network

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

const (
	// memberTTL is the TTL of the answers for members: short, so a stopped
	// service stops resolving in seconds in clients that cache.
	memberTTL = 5
	// lookupCacheFor bounds how stale the member table may be. One lookup
	// reads the lease file under its lock; a burst of queries (a client
	// asking A and AAAA for every search domain) reads it once.
	lookupCacheFor = time.Second
	// lookupMinInterval bounds the lookups that queries from unknown
	// addresses force, so a flood of them cannot keep the lease file's
	// lock busy.
	lookupMinInterval = 100 * time.Millisecond
	// upstreamTimeout is how long one upstream has to answer before the
	// next is tried; the client's own resolver gives up after 5 s (glibc).
	upstreamTimeout = 2 * time.Second
	// warnEvery bounds the warnings about failing upstreams.
	warnEvery = 10 * time.Second
)

// resolver answers the queries of one bridge's members. Every member's
// supervisor runs one on the same address (SO_REUSEPORT), all answering
// from the same lease file, so it does not matter which gets a query.
type resolver struct {
	bridge    string // lower case, no dots at either end
	gateway   netip.Addr
	lookup    func() (map[string]netip.Addr, error)
	upstreams []netip.AddrPort
	log       *slog.Logger

	// memberUpstreams, when set, gives each member's own upstreams (its
	// [network] dns, else the host's), read with the member table: the
	// kernel spreads a member's queries over every member's resolver, and
	// each must forward them where that member said, not where its own
	// service said. nil: upstreams for everyone.
	memberUpstreams func() (map[netip.Addr][]netip.AddrPort, error)

	mu      sync.Mutex
	members map[string]netip.Addr // lower-cased names
	byAddr  map[netip.Addr]string
	ups     map[netip.Addr][]netip.AddrPort // from memberUpstreams
	fetched time.Time
	warned  time.Time // last warning about upstreams
}

func newResolver(gateway netip.Addr, bridge string, lookup func() (map[string]netip.Addr, error), upstreams []netip.AddrPort, log *slog.Logger) *resolver {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &resolver{
		bridge:    strings.ToLower(strings.Trim(bridge, ".")),
		gateway:   gateway.Unmap(),
		lookup:    lookup,
		upstreams: append([]netip.AddrPort(nil), upstreams...),
		log:       log,
	}
}

// table returns the member table, read at most once per lookupCacheFor,
// or, fresh, once per lookupMinInterval.
// A failed lookup keeps the last table (a lease file being rewritten must
// not make every name vanish) and is logged.
func (r *resolver) table(fresh bool) (map[string]netip.Addr, map[netip.Addr]string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	age := time.Since(r.fetched)
	if r.members != nil && (age < lookupCacheFor && !fresh || age < lookupMinInterval) {
		return r.members, r.byAddr
	}
	m, err := r.lookup()
	if err != nil {
		r.log.Warn("dns: reading the bridge's members", "bridge", r.bridge, "err", err)
		return r.members, r.byAddr
	}
	if r.memberUpstreams != nil {
		ups, err := r.memberUpstreams()
		if err != nil {
			r.log.Warn("dns: reading the bridge's members' upstreams", "bridge", r.bridge, "err", err)
			return r.members, r.byAddr
		}
		r.ups = make(map[netip.Addr][]netip.AddrPort, len(ups))
		for a, u := range ups {
			r.ups[a.Unmap()] = u
		}
	}
	r.members = make(map[string]netip.Addr, len(m))
	r.byAddr = make(map[netip.Addr]string, len(m))
	for name, a := range m {
		name = strings.ToLower(strings.Trim(name, "."))
		r.members[name] = a.Unmap()
		r.byAddr[a.Unmap()] = name
	}
	r.fetched = time.Now()
	return r.members, r.byAddr
}

// allowed says whether client may use the resolver: the bridge's live
// members, and the host itself through the gateway address (for
// debugging with dig). Anyone else — another bridge's member whose packet
// reached this address, a host on the LAN if the firewall lets it — is
// refused, so the resolver is never an open recursor.
func (r *resolver) allowed(client netip.Addr) bool {
	client = client.Unmap()
	if client == r.gateway {
		return true
	}
	_, byAddr := r.table(false)
	if _, ok := byAddr[client]; ok {
		return true
	}
	// A member started within the cache window: look again, once.
	_, byAddr = r.table(true)
	_, ok := byAddr[client]
	return ok
}

// serve answers one query; ctx ends with the server, so a stop does not
// wait for upstreams.
func (r *resolver) serve(ctx context.Context, w dns.ResponseWriter, req *dns.Msg) {
	resp := r.answer(ctx, clientAddr(w.RemoteAddr()), req)
	if resp == nil {
		return
	}
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		// An answer that came over TCP from upstream may be larger than
		// the client can take over UDP: cut it and set TC, so the client
		// retries over TCP.
		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = int(opt.UDPSize())
		}
		resp.Truncate(size)
	}
	if err := w.WriteMsg(resp); err != nil {
		r.log.Debug("dns: writing an answer", "client", w.RemoteAddr().String(), "err", err)
	}
}

func clientAddr(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.AddrPort().Addr()
	case *net.TCPAddr:
		return a.AddrPort().Addr()
	}
	return netip.Addr{}
}

// answer builds the reply to req from client.
func (r *resolver) answer(ctx context.Context, client netip.Addr, req *dns.Msg) *dns.Msg {
	if req.Response || req.Opcode != dns.OpcodeQuery || len(req.Question) != 1 {
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeFormatError)
		if req.Opcode != dns.OpcodeQuery {
			m.Rcode = dns.RcodeNotImplemented
		}
		return m
	}
	if !r.allowed(client) {
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeRefused)
		return m
	}
	q := req.Question[0]
	if q.Qclass == dns.ClassINET {
		if m := r.local(req, q); m != nil {
			return m
		}
	}
	return r.forward(ctx, r.upstreamsOf(client), req)
}

// upstreamsOf returns where client's queries go: its own upstreams when
// the bridge's members have their own, else the resolver's.
func (r *resolver) upstreamsOf(client netip.Addr) []netip.AddrPort {
	if r.memberUpstreams == nil {
		return r.upstreams
	}
	r.table(false)
	r.mu.Lock()
	defer r.mu.Unlock()
	if ups, ok := r.ups[client.Unmap()]; ok {
		return ups
	}
	// The host itself (dig on the gateway): this supervisor's own.
	return r.upstreams
}

// local answers q from the member table, or returns nil when the name is
// not the bridge's to answer.
func (r *resolver) local(req *dns.Msg, q dns.Question) *dns.Msg {
	name := strings.ToLower(dns.Fqdn(q.Name))
	members, byAddr := r.table(false)

	if q.Qtype == dns.TypePTR {
		if a, err := reverseAddr(name); err == nil {
			if member, ok := byAddr[a]; ok {
				m := authoritative(req, dns.RcodeSuccess)
				m.Answer = []dns.RR{&dns.PTR{
					Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: memberTTL},
					Ptr: dns.Fqdn(member + "." + r.bridge),
				}}
				return m
			}
		}
		return nil
	}

	label, ours := r.memberLabel(name, members)
	if !ours {
		return nil
	}
	a, ok := members[label]
	if !ok {
		if !strings.Contains(label, ".") && label == strings.TrimSuffix(name, ".") &&
			q.Qtype != dns.TypeA && q.Qtype != dns.TypeAAAA && q.Qtype != dns.TypeANY {
			// "com. NS" and the like: a top-level name, not a member.
			return nil
		}
		// Unknown names under .BRIDGE, and single-label names (which no
		// upstream can answer), stay here: a stopped service's name fails
		// at once and never leaks to the upstream resolver.
		return authoritative(req, dns.RcodeNameError)
	}
	m := authoritative(req, dns.RcodeSuccess)
	// AAAA and every other type: the name exists, with no such record
	// (NODATA); IPv6 is off on the bridge.
	if (q.Qtype == dns.TypeA || q.Qtype == dns.TypeANY) && a.Is4() {
		m.Answer = []dns.RR{&dns.A{
			Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: memberTTL},
			A:   net.IP(a.AsSlice()),
		}}
	}
	return m
}

// memberLabel splits a lower-cased FQDN into the member name it asks for.
// ours is true for a member's name (service names may have dots), any
// single label, and anything under BRIDGE.
func (r *resolver) memberLabel(name string, members map[string]netip.Addr) (label string, ours bool) {
	name = strings.TrimSuffix(name, ".")
	if name == "" {
		return "", false
	}
	if _, ok := members[name]; ok || !strings.Contains(name, ".") {
		return name, true
	}
	if r.bridge != "" {
		if rest, ok := strings.CutSuffix(name, "."+r.bridge); ok {
			return rest, true
		}
		if name == r.bridge {
			return "", true
		}
	}
	return "", false
}

func authoritative(req *dns.Msg, rcode int) *dns.Msg {
	m := new(dns.Msg)
	m.SetRcode(req, rcode)
	m.Authoritative = true
	m.RecursionAvailable = true
	return m
}

// warnNow rate-limits the warnings about upstreams: with the upstreams
// unreachable every query fails, and one line per warnEvery says so.
func (r *resolver) warnNow() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.warned) < warnEvery {
		return false
	}
	r.warned = time.Now()
	return true
}

// reverseAddr turns d.c.b.a.in-addr.arpa. into a.b.c.d.
func reverseAddr(name string) (netip.Addr, error) {
	rest, ok := strings.CutSuffix(name, ".in-addr.arpa.")
	if !ok {
		return netip.Addr{}, errors.New("not an in-addr.arpa name")
	}
	p := strings.Split(rest, ".")
	if len(p) != 4 {
		return netip.Addr{}, errors.New("not a full IPv4 reverse name")
	}
	return netip.ParseAddr(p[3] + "." + p[2] + "." + p[1] + "." + p[0])
}

// forward sends req to each upstream in turn, over UDP and again over TCP
// when the answer is truncated, and returns the first answer with the
// client's ID. None answering gives SERVFAIL.
func (r *resolver) forward(ctx context.Context, upstreams []netip.AddrPort, req *dns.Msg) *dns.Msg {
	var lastErr error
	for _, up := range upstreams {
		addr := up.String()
		resp, err := exchange(ctx, "udp", req, addr)
		if err == nil && resp.Truncated {
			resp, err = exchange(ctx, "tcp", req, addr)
		}
		if err != nil {
			lastErr = err
			continue
		}
		resp.Id = req.Id
		return resp
	}
	if lastErr == nil {
		lastErr = errors.New("no upstream resolver configured")
	}
	if r.warnNow() {
		r.log.Warn("dns: no upstream answered", "name", req.Question[0].Name, "upstreams", upstreams, "err", lastErr)
	}
	m := new(dns.Msg)
	m.SetRcode(req, dns.RcodeServerFailure)
	m.RecursionAvailable = true
	return m
}

func exchange(ctx context.Context, network string, req *dns.Msg, addr string) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, upstreamTimeout)
	defer cancel()
	c := &dns.Client{Net: network, Timeout: upstreamTimeout, UDPSize: dns.DefaultMsgSize}
	resp, _, err := c.ExchangeContext(ctx, req.Copy(), addr)
	if err != nil {
		return nil, fmt.Errorf("asking %s over %s: %w", addr, network, err)
	}
	return resp, nil
}

// The host's resolver files. systemdResolvConf lists the upstreams that
// systemd-resolved itself uses when /etc/resolv.conf points at its stub.
const (
	hostResolvConf    = "/etc/resolv.conf"
	systemdResolvConf = "/run/systemd/resolve/resolv.conf"
)

// Upstreams returns the resolvers the bridge's resolver forwards to:
// configured ([network] dns) when it is not empty, as given (the resolver
// runs on the host, so even a loopback address there is reachable), else
// the host's. A
// loopback nameserver in /etc/resolv.conf (systemd-resolved's 127.0.0.53,
// a local dnsmasq) is a stub whose own upstreams, when systemd-resolved
// runs, are in /run/systemd/resolve/resolv.conf; those replace it. When
// only loopback resolvers remain, it is an error that names the fix.
func Upstreams(configured []netip.Addr) ([]netip.Addr, error) {
	return upstreamsFrom(configured, hostResolvConf, systemdResolvConf)
}

func upstreamsFrom(configured []netip.Addr, resolvConf, stubConf string) ([]netip.Addr, error) {
	if len(configured) > 0 {
		return append([]netip.Addr(nil), configured...), nil
	}
	host, err := nameservers(resolvConf)
	if err != nil {
		return nil, fmt.Errorf("finding the host's DNS resolvers: %w (set [network] dns in the manifest)", err)
	}
	var out, stubs []netip.Addr
	for _, a := range host {
		if a.Unmap().IsLoopback() {
			stubs = append(stubs, a)
			continue
		}
		out = appendNew(out, a)
	}
	if len(stubs) > 0 {
		real, err := nameservers(stubConf)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("finding the upstreams of the loopback resolver %s: %w", stubs[0], err)
		}
		for _, a := range real {
			if !a.Unmap().IsLoopback() {
				out = appendNew(out, a)
			}
		}
	}
	if len(out) == 0 {
		if len(host) == 0 {
			return nil, fmt.Errorf("%s lists no nameserver, so the bridge's resolver has no upstream: set [network] dns = [\"IP\", ...] in the manifest", resolvConf)
		}
		return nil, fmt.Errorf("%s lists only loopback resolvers (%s) and %s gives none of their upstreams; the bridge's resolver cannot use a host-local stub: set [network] dns = [\"IP\", ...] in the manifest", resolvConf, joinAddrs(stubs), stubConf)
	}
	return out, nil
}

// nameservers reads the nameserver lines of a resolv.conf file.
func nameservers(path string) ([]netip.Addr, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	sc := bufio.NewScanner(bytes.NewReader(data))
	for line := 1; sc.Scan(); line++ {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		a, err := netip.ParseAddr(f[1])
		if err != nil {
			return nil, fmt.Errorf("%s:%d: nameserver %q is not an IP address", path, line, f[1])
		}
		out = append(out, a)
	}
	return out, sc.Err()
}

func appendNew(list []netip.Addr, a netip.Addr) []netip.Addr {
	for _, b := range list {
		if b == a {
			return list
		}
	}
	return append(list, a)
}

func joinAddrs(list []netip.Addr) string {
	s := make([]string, len(list))
	for i, a := range list {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}
