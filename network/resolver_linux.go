package network

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// ServeDNS serves the bridge's resolver on gateway:53, UDP and TCP, until
// stop is called or ctx ends. It answers A for NAME and NAME.BRIDGE from
// lookup (netcore's Members, read at most once a second), NXDOMAIN for
// other names under .BRIDGE and for unknown single-label names, an empty
// answer for AAAA (IPv6 is off on the bridge), PTR for members'
// addresses, and forwards everything else to upstreams (see Upstreams).
// Only the bridge's members and the host itself are answered; anyone else
// gets REFUSED.
//
// Every member's supervisor calls it with the same gateway: the sockets
// are bound with SO_REUSEPORT, so they share the address (the kernel
// spreads queries over them) and the resolver lives as long as any member
// runs, with no process of its own. SO_REUSEPORT shares a port only
// between sockets of the same effective uid, so a foreign program on
// gateway:53 is still a bind error.
func ServeDNS(ctx context.Context, gateway netip.Addr, bridge string, lookup func() (map[string]netip.Addr, error), upstreams []netip.Addr, log *slog.Logger) (stop func(), err error) {
	ups := make([]netip.AddrPort, len(upstreams))
	for i, a := range upstreams {
		ups[i] = netip.AddrPortFrom(a, 53)
	}
	return serveDNS(ctx, netip.AddrPortFrom(gateway, 53), bridge, lookup, ups, log, nil)
}

// upstreamPorts gives each address port 53.
func upstreamPorts(addrs []netip.Addr) []netip.AddrPort {
	ups := make([]netip.AddrPort, len(addrs))
	for i, a := range addrs {
		ups[i] = netip.AddrPortFrom(a, 53)
	}
	return ups
}

// serveDNS is ServeDNS on any ports, for the tests.
// memberUpstreams, when not nil, gives each member's own upstreams (see
// resolver.memberUpstreams).
func serveDNS(ctx context.Context, addr netip.AddrPort, bridge string, lookup func() (map[string]netip.Addr, error), upstreams []netip.AddrPort, log *slog.Logger, memberUpstreams func() (map[netip.Addr][]netip.AddrPort, error)) (stop func(), err error) {
	if !addr.Addr().IsValid() {
		return nil, errors.New("serving DNS: no gateway address")
	}
	if lookup == nil {
		return nil, errors.New("serving DNS: no member lookup")
	}
	r := newResolver(addr.Addr(), bridge, lookup, upstreams, log)
	r.memberUpstreams = memberUpstreams

	lc := net.ListenConfig{Control: reusePort}
	pc, err := lc.ListenPacket(ctx, "udp", addr.String())
	if err != nil {
		return nil, dnsBindError(addr, "udp", err)
	}
	ln, err := lc.Listen(ctx, "tcp", addr.String())
	if err != nil {
		pc.Close()
		return nil, dnsBindError(addr, "tcp", err)
	}

	sctx, cancel := context.WithCancel(ctx)
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) { r.serve(sctx, w, req) })
	var started sync.WaitGroup
	started.Add(2)
	udpStarted, tcpStarted := sync.OnceFunc(started.Done), sync.OnceFunc(started.Done)
	servers := []*dns.Server{
		{PacketConn: pc, Handler: handler, NotifyStartedFunc: udpStarted},
		{Listener: ln, Handler: handler, NotifyStartedFunc: tcpStarted,
			// A member holding TCP connections open must not hold a slot
			// forever.
			IdleTimeout: func() time.Duration { return 10 * time.Second }},
	}
	var done sync.WaitGroup
	for i, s := range servers {
		notified := []func(){udpStarted, tcpStarted}[i]
		done.Add(1)
		go func() {
			defer done.Done()
			if err := s.ActivateAndServe(); err != nil {
				r.log.Warn("dns: server stopped", "addr", addr.String(), "err", err)
			}
			notified() // it may have failed before notifying; let the waiter go
		}()
	}
	// Shutdown before the servers started fails ("server not started")
	// and leaves them running: wait for both.
	started.Wait()

	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			sd, sdCancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer sdCancel()
			for _, s := range servers {
				_ = s.ShutdownContext(sd) // "not started" only if serving already failed
			}
			pc.Close()
			ln.Close()
			done.Wait()
		})
	}
	go func() {
		<-sctx.Done()
		stop()
	}()
	return stop, nil
}

// reusePort sets SO_REUSEPORT before bind: every member's supervisor binds
// the same gateway:53.
func reusePort(network, address string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("setting SO_REUSEPORT: %w", serr)
	}
	return nil
}

func dnsBindError(addr netip.AddrPort, proto string, err error) error {
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return fmt.Errorf("serving the bridge's DNS on %s/%s: the address is in use by a program that is not safe-run (stop it, or make it listen on other addresses than %s)", addr, proto, addr.Addr())
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return fmt.Errorf("serving the bridge's DNS on %s/%s: %s is not an address of this host (the bridge's gateway address is missing)", addr, proto, addr.Addr())
	}
	return fmt.Errorf("serving the bridge's DNS on %s/%s: %w", addr, proto, err)
}
