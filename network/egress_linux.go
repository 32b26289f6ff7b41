package network

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/miekg/dns"
)

// TTL bounds for HOSTNAME egress entries: a zero TTL would spin, a day-long one would keep a
// moved service's old address open.
const (
	minRefresh = 5 * time.Second
	maxRefresh = time.Hour
	retryAfter = 30 * time.Second
)

// resolveEgress fills each HOSTNAME entry's addresses and returns when they should be looked up
// again (0: no hostname entries).
func (o *Options) resolveEgress(spec *egressSpec) (time.Duration, error) {
	var next time.Duration
	var errs []error
	for i := range spec.Rules {
		r := &spec.Rules[i]
		if r.Host == "" {
			continue
		}
		addrs, ttl, err := o.lookup(r.Host)
		if err != nil {
			// Keep what was resolved before: a resolver hiccup must not cut a working service off.
			errs = append(errs, fmt.Errorf("egress %s: %w", r.Host, err))
			ttl = retryAfter
		} else {
			r.Resolved = addrs
		}
		ttl = min(max(ttl, minRefresh), maxRefresh)
		if next == 0 || ttl < next {
			next = ttl
		}
	}
	return next, errors.Join(errs...)
}

func (o *Options) lookup(host string) ([]netip.Addr, time.Duration, error) {
	if o.resolve != nil {
		return o.resolve(host)
	}
	ups, err := Upstreams(o.DNS)
	if err != nil {
		return nil, 0, err
	}
	if len(ups) == 0 {
		return nil, 0, errors.New("no upstream resolver (set network.dns)")
	}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(host), dns.TypeA)
	c := &dns.Client{Timeout: 3 * time.Second}
	var last error
	for _, u := range ups {
		in, _, err := c.Exchange(m, net.JoinHostPort(u.String(), "53"))
		if err != nil {
			last = err
			continue
		}
		if in.Rcode != dns.RcodeSuccess {
			last = fmt.Errorf("%s answers %s", u, dns.RcodeToString[in.Rcode])
			continue
		}
		var addrs []netip.Addr
		ttl := maxRefresh
		for _, rr := range in.Answer {
			if a, ok := rr.(*dns.A); ok {
				if ad, ok := netip.AddrFromSlice(a.A.To4()); ok {
					addrs = append(addrs, ad)
					ttl = min(ttl, time.Duration(a.Hdr.Ttl)*time.Second)
				}
			}
		}
		if len(addrs) == 0 {
			last = fmt.Errorf("%s has no IPv4 address", host)
			continue
		}
		return addrs, ttl, nil
	}
	return nil, 0, last
}

// refreshEgress keeps the HOSTNAME entries current until ctx ends: at each TTL it resolves them
// again and, when an address changed, rewrites the lease and the service's own chains.
func (a *Attachment) refreshEgress(ctx context.Context, opts Options, every time.Duration) {
	defer a.wg.Done()
	t := time.NewTimer(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		spec := a.lease.Egress
		spec.Rules = append([]storedRule(nil), spec.Rules...)
		next, err := opts.resolveEgress(&spec)
		if err != nil {
			a.log.Warn("egress hostname lookup failed; keeping the addresses resolved before", "err", err)
		}
		if err := a.updateEgress(spec); err != nil {
			a.log.Warn("egress rules not updated", "err", err)
		}
		t.Reset(next)
	}
}
