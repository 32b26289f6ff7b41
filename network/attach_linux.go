package network

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
)

// Attachment is one service connected to its bridge. Close undoes it.
type Attachment struct {
	Netns   string     // path of the bind-mounted netns file, for the spec's network namespace path
	Address netip.Addr // the service's address on its bridge
	Gateway netip.Addr // the bridge's host-side address (also the resolver's address)
	Bridge  string     // the bridge's network name ("" own → generated)
	Files   Files      // generated /etc files, bind-mounted read-only into the container
	Notes   []string   // for the start report ("ip_forward enabled for egress", ...)

	root    stateRoot
	lease   lease
	held    *heldLease   // the lease file, locked for as long as the lease is this process's
	bridge  *bridgeState // the bridge as attachLease found or made it (its leases not read)
	subnet  netip.Prefix // the bridge's; invalid: forwarders dial from the gateway
	log     *slog.Logger
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	stops   []func()
	denials *denialReader
	mu      sync.Mutex // guards lease.Egress against Close
	closed  bool
	// fwAdded: the batch of its firewall objects applied, so its map elements are its own to
	// delete (see detachTimed).
	fwAdded bool
}

// nameRE is compiled on first use, not at package init: safe-run is
// re-executed as the init of every container, bridge or not.
var nameRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`) })

// Attach makes the service's network namespace and connects it. Everything it made is undone by
// Close, or, after a crash, by the next Attach/Cleanup.
func Attach(ctx context.Context, opts Options) (*Attachment, error) {
	if !nameRE().MatchString(opts.Service) {
		return nil, fmt.Errorf("network: service name %q is not [a-z0-9][a-z0-9_.-]{0,62}", opts.Service)
	}
	if opts.Bridge != "" && !nameRE().MatchString(opts.Bridge) {
		return nil, fmt.Errorf("network.bridge: %q is not [a-z0-9][a-z0-9_.-]{0,62}", opts.Bridge)
	}
	if !filepath.IsAbs(opts.StateDir) {
		return nil, fmt.Errorf("network: state directory %q is not an absolute path", opts.StateDir)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	bridge := opts.Bridge
	if bridge == "" {
		bridge = ownBridge(opts.Service)
	}
	// The namespace is made first (or was, by the caller), beside the bookkeeping, and mounted
	// at its path only by connect (see Namespace). Unmounted, it ends with its file, and with
	// this process should it die first: no lease needs to name it yet.
	ns := opts.Namespace
	if ns == nil {
		ns = StartNamespace()
	}
	discard := ns.Discard

	spec := egressSpec{All: opts.Egress.All}
	for _, r := range opts.Egress.Rules {
		spec.Rules = append(spec.Rules, storedRule{Prefix: r.Prefix, Host: r.Host, Port: r.Port, Proto: r.Proto})
	}
	refresh, err := opts.resolveEgress(&spec) // before the lease: a slow resolver stalls only us
	if err != nil {
		log.Warn("egress hostname lookup failed; retrying", "err", err)
	}

	root := stateRoot{filepath.Clean(opts.StateDir)}
	if err := root.init(); err != nil {
		discard()
		return nil, err
	}
	if err := root.oldLayout(); err != nil {
		discard()
		return nil, err
	}
	// Dead owners' leases, before any lock: each is reclaimed under its own file's lock.
	reclaiming := time.Now()
	if err := reclaim(root, log); err != nil {
		log.Warn("reclaiming dead services' network", "err", err)
	}
	reclaimed := time.Now()
	a, tm, err := root.attachLease(bridge, opts, spec, log)
	if err != nil {
		discard()
		return nil, err
	}
	connecting := time.Now()
	// The kernel work, with no lock: other starts and stops on this root go on meanwhile.
	release, err := a.connect(spec, ns, opts.NamespaceReady)
	// Nothing here needs the nftables socket closed (see nftConn): its close may wait for the
	// kernel to free another transaction's deletions.
	go release()
	if err != nil {
		return nil, errors.Join(err, a.detach(true))
	}
	defer func() {
		// The soak reads lock_wait (issue 19): the root's lock's wait and the bridge's.
		log.Debug("network attached", "service", opts.Service, "bridge", bridge, "reclaiming", reclaimed.Sub(reclaiming),
			"root_wait", tm.rootWait, "bridge_wait", tm.bridgeWait, "made_bridge", tm.made,
			"locked", tm.held, "connecting", time.Since(connecting), "lock_wait", tm.waited)
	}()

	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a.cancel = cancel
	fail := func(err error) (*Attachment, error) {
		return nil, errors.Join(err, a.Close())
	}
	if refresh > 0 {
		a.wg.Add(1)
		go a.refreshEgress(bg, opts, refresh)
	}
	// The reader of denials, the resolver and the forwarders need nothing of each other: they
	// start at once.
	var started sync.WaitGroup
	var denials *denialReader
	var fw *forwarders
	var denialsErr, portsErr error
	if opts.Denials != nil { // egress "all" too: another bridge and the host stay denied
		started.Add(1)
		go func() {
			defer started.Done()
			denials, denialsErr = listenDenials(a.lease.LogGroup, opts.Service, opts.Denials)
		}()
	}
	if len(opts.Ports) > 0 {
		started.Add(1)
		go func() {
			defer started.Done()
			fw, portsErr = publishPorts(bg, opts.Ports, a.Address, log, udpIdle, a.subnet, opts.ListenFDs)
		}()
	}
	stopDNS, dnsErr := a.serveDNS(bg, opts, root, bridge, log)
	started.Wait()
	if denials != nil {
		a.denials = denials
		a.wg.Add(1)
		go denials.run(&a.wg)
	}
	if stopDNS != nil {
		a.stops = append(a.stops, stopDNS)
	}
	if fw != nil {
		a.stops = append(a.stops, fw.stop)
	}
	if err := errors.Join(denialsErr, dnsErr, portsErr); err != nil {
		return fail(err)
	}
	return a, nil
}

// serveDNS starts the bridge's resolver on the gateway (see ServeDNS).
func (a *Attachment) serveDNS(ctx context.Context, opts Options, root stateRoot, bridge string, log *slog.Logger) (stop func(), err error) {
	ups, err := Upstreams(opts.DNS)
	if err != nil {
		return nil, err
	}
	hostUps := ups
	if len(opts.DNS) > 0 {
		// Members with no dns of their own use the host's. A host with none
		// fails their queries, not this service's start.
		if hostUps, err = Upstreams(nil); err != nil {
			log.Warn("the host's DNS resolvers, for bridge members without [network] dns", "err", err)
		}
	}
	memberUps := func() (map[netip.Addr][]netip.AddrPort, error) {
		dns, err := memberDNS(root.dir, bridge)
		if err != nil {
			return nil, err
		}
		out := make(map[netip.Addr][]netip.AddrPort, len(dns))
		for a, d := range dns {
			if len(d) == 0 {
				out[a] = upstreamPorts(hostUps)
			} else {
				out[a] = upstreamPorts(d)
			}
		}
		return out, nil
	}
	stop, err = serveDNS(ctx, netip.AddrPortFrom(a.Gateway, 53), bridge, func() (map[string]netip.Addr, error) { return Members(root.dir, bridge) }, upstreamPorts(ups), log, memberUps)
	if err != nil {
		return nil, fmt.Errorf("DNS on %s: %w", a.Gateway, err)
	}
	return stop, nil
}

// connect is the kernel work of Attach, under no lock: the bridge's interface (made by
// whichever member comes first, or found), the namespace and its veth, the firewall, the /etc
// files. ready, if not nil, is called once the namespace and the files exist (see
// Options.NamespaceReady). release closes the nftables socket (see nftConn); it is never nil. On
// an error the caller detaches, which undoes whatever of it was made.
func (a *Attachment) connect(spec egressSpec, ns *Namespace, ready func()) (release func(), err error) {
	b, l, root := a.bridge, a.lease, a.root
	release = func() {}
	// Three independent parts at once: the namespace and its link; the firewall, which names
	// the interfaces and addresses but needs none of them to exist; the /etc files. Nothing runs
	// in the namespace until Attach has returned, so its link being up a moment before its
	// rules are in place lets nothing through.
	var wg sync.WaitGroup
	var linkErr, tableErr error
	var prerouting bool
	// The namespace first: the caller's container set-up waits for it (ready), not for the rest.
	nsMade := make(chan struct{})
	nsOK := false
	signal := sync.OnceFunc(func() { close(nsMade) })
	wg.Add(2)
	go func() {
		defer wg.Done()
		defer signal()
		linkErr = func() error {
			f, err := ns.take()
			if err != nil {
				return err
			}
			err = mountNetns(f, l.Netns)
			f.Close() // mounted, it stays
			if err != nil {
				return err
			}
			nsOK = true
			signal()
			master := 0
			if !b.Routed {
				var err error
				if master, err = ensureBridge(b); err != nil {
					return err
				}
			}
			return connect(b, &l, master)
		}()
	}()
	go func() {
		defer wg.Done()
		began := time.Now()
		var conns []*nftables.Conn
		release = func() {
			for _, c := range conns {
				_ = c.CloseLasting()
			}
		}
		open := func() (*nftables.Conn, error) {
			c, err := nftConn()
			if err == nil {
				conns = append(conns, c)
			}
			return c, err
		}
		// The service's own objects, in a batch of its own: no other start's write is
		// waited for (issue 19), only the kernel's commit of each batch in turn.
		tableErr = func() (err error) {
			added, pre, err := ensureTables(open, root, func(c *nftables.Conn) error { return addMember(c, root.fw(), b, l) })
			if prerouting = pre; err != nil || added {
				a.fwAdded = added
				return err
			}
			// The kernel refuses the batch while a previous holder of this address still
			// has its map elements (an element that exists with another verdict). A stop
			// deletes them before it drops its lease, and a reclaim before it drops a dead
			// owner's, so only a lease lost otherwise (a safe-run from before lease files,
			// killed between dropping its lease and deleting them; a hand) leaves them:
			// after a while, this start deletes them, as the holder of the address their
			// keys name (that holder's own deletion, if it only was slow, then leaves them
			// alone: runOwnOps).
			for delay := time.Millisecond; ; delay *= 2 {
				if delay == 64*time.Millisecond {
					release, err := runOps(addrElemOps(root.fw(), b, l))
					go release()
					if err != nil {
						a.log.Warn("deleting the firewall elements a previous holder of the address left", "address", l.Address, "err", err)
					}
				}
				c, err := open()
				if err != nil {
					return err
				}
				if err := addMember(c, root.fw(), b, l); err != nil {
					return fmt.Errorf("nftables: service %s's chains: %w", l.Service, err)
				}
				if err = c.Flush(); err == nil {
					a.fwAdded = true
					return nil
				}
				if delay > time.Second {
					return fmt.Errorf("nftables: service %s's chains in table ip %s: %w", l.Service, root.table(), err)
				}
				time.Sleep(delay)
			}
		}()
		a.log.Debug("network firewall added", "service", l.Service, "bridge", b.Name, "took", time.Since(began))
	}()
	filesErr := writeFiles(a.Files, b, l)
	<-nsMade
	if nsOK && filesErr == nil && ready != nil {
		ready()
	}
	var fwdErr error
	if !spec.All && len(spec.Rules) == 0 {
		// egress none: peers and DNS only, nothing is routed, so forwarding stays as it is.
	} else if note, err := enableForwarding(); err != nil {
		fwdErr = err
	} else if note != "" {
		a.Notes = append(a.Notes, note)
	}
	wg.Wait()
	if err := errors.Join(linkErr, tableErr, filesErr, fwdErr); err != nil {
		return release, err
	}
	// The rule and route are removed only with the last bridge, under the root's lock: while
	// this lease is there, no one removes them after this has made them.
	if err := ensureTransparent(root, prerouting); err != nil {
		// Another program's rule or table: published ports still work, from the gateway.
		a.log.Warn("published ports: the service will see the gateway as its clients' address", "err", err)
		a.Notes = append(a.Notes, "published ports: the service sees the gateway as the client ("+err.Error()+")")
	} else {
		a.subnet = b.Subnet
	}
	return release, nil
}

// freeAddress is the first address of b's subnet that is not the gateway, the broadcast or taken.
func freeAddress(b *bridgeState, taken map[netip.Addr]bool) (netip.Addr, error) {
	last := netip.PrefixFrom(b.Subnet.Addr(), b.Subnet.Bits())
	for a := b.Gateway.Next(); last.Contains(a); a = a.Next() {
		if !taken[a] && last.Contains(a.Next()) { // the last address is the broadcast
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("network: bridge %s (%s) has no free address left", b.Name, b.Subnet)
}

const forwardSysctl = "/proc/sys/net/ipv4/ip_forward"

// enableForwarding turns routing on for egress. It is never turned off again: other services,
// containers or VPNs on this host may rely on it by then, so the note says it stays on.
func enableForwarding() (string, error) {
	v, err := os.ReadFile(forwardSysctl)
	if err != nil {
		return "", fmt.Errorf("reading net.ipv4.ip_forward: %w", err)
	}
	if strings.TrimSpace(string(v)) == "1" {
		return "", nil
	}
	if err := os.WriteFile(forwardSysctl, []byte("1"), 0); err != nil {
		return "", fmt.Errorf("setting net.ipv4.ip_forward=1 for egress: %w", err)
	}
	return "net.ipv4.ip_forward set to 1 for egress (left on after exit: other users may rely on it)", nil
}

// writeFiles makes the /etc files the container sees. Peers are found through the bridge's DNS,
// not hosts, so that a member started later is found too.
func writeFiles(f Files, b *bridgeState, l lease) error {
	if err := os.MkdirAll(filepath.Dir(f.ResolvConf), 0o755); err != nil {
		return fmt.Errorf("network files: %w", err)
	}
	content := map[string]string{
		f.ResolvConf: fmt.Sprintf("nameserver %s\noptions ndots:0 timeout:2 attempts:2\n", b.Gateway),
		f.Hosts:      fmt.Sprintf("127.0.0.1\tlocalhost\n%s\t%s %s.%s\n", l.Address, l.Service, l.Service, b.Name),
		f.Hostname:   l.Service + "\n",
	}
	for path, c := range content {
		if err := os.WriteFile(path, []byte(c), 0o644); err != nil {
			return fmt.Errorf("network files: %w", err)
		}
	}
	return nil
}

func filesPath(root stateRoot, l lease) string {
	return filepath.Join(root.dir, filesDir, filepath.Base(l.Netns))
}

// Close stops the attachment's goroutines and removes its namespace, lease, rules and, when it was
// the last member, its bridge. It can be called more than once. Call it once the service's
// processes are gone (or going: they hold the namespace): the kernel then destroys the namespace
// and the veth pair with it, asynchronously, without Close waiting for that.
func (a *Attachment) Close() error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	a.closed = true
	a.mu.Unlock()
	began := time.Now()
	for _, stop := range a.stops {
		stop()
	}
	a.cancel()
	if a.denials != nil {
		a.denials.close()
	}
	a.wg.Wait()
	if a.denials != nil {
		a.denials.closeConn()
	}
	return a.detachTimed(false, began, time.Now())
}

// detach undoes the attachment's lease after a failed Attach: what connect made, whatever of it
// exists, the veth included (something may still sit in the namespace).
func (a *Attachment) detach(deleteVeth bool) error {
	now := time.Now()
	return a.detachTimed(deleteVeth, now, now)
}

// detachTimed undoes what the lease names while still holding it: the service's firewall objects
// (one batch), its namespace and files; then it drops the lease, and, if it was the last, deletes
// the bridge (and with the last bridge the tables). No lock is taken but by a last member, for the
// bridge's deletion. The lease goes last, so a crash at any point leaves a lease with a dead owner,
// which the next reclaim undoes by name; and no later holder of the address meets this one's
// map elements.
func (a *Attachment) detachTimed(deleteVeth bool, began, stopped time.Time) error {
	cl := &closes{}
	defer cl.later()
	if done, err := a.detachAlone(deleteVeth, cl); done {
		// Alone, its locks are taken without waiting (LOCK_NB).
		a.log.Debug("network detached", "service", a.lease.Service, "bridge", a.Bridge, "alone", true,
			"undoing", time.Since(stopped), "stopping", stopped.Sub(began), "lock_wait", time.Duration(0))
		return err
	}
	f := a.root.fw()
	var ops []nftOp
	if a.fwAdded {
		ops = memberElemOps(f, a.bridge, a.lease)
	}
	ops = append(ops, memberChainOps(f, a.lease)...) // its elements were never added otherwise
	// The namespace and files go beside the batch: they need nothing of each other, and the
	// sooner the batch commits, the less of the kernel's grace period is left for the process's
	// exit to wait out (see nftConn). Both are done before the lease goes.
	undone := make(chan error, 1)
	go func() { undone <- undoLease(a.root, a.lease, deleteVeth) }()
	release, ferr := runOwnOps(f, a.lease, ops)
	cl.add(release)
	undoing := time.Now()
	errs := []error{ferr, <-undone, a.held.drop()}
	dropped := time.Now()
	waited, err := a.root.tidy(a.Bridge, cl)
	errs = append(errs, err)
	a.log.Debug("network detached", "service", a.lease.Service, "bridge", a.Bridge,
		"firewall", undoing.Sub(stopped), "undoing", dropped.Sub(undoing), "tidying", time.Since(dropped),
		"stopping", stopped.Sub(began), "lock_wait", waited)
	return errors.Join(errs...)
}

// undoLease removes what one lease made, whatever of it exists. Once the namespace is unmounted
// and its processes are gone, the kernel destroys it, and the veth pair with it, on its own and
// asynchronously; deleting the host end here as well would wait out that destruction (20 ms or
// so) for nothing. Close knows its service's processes are gone (see Attachment.Close) and leaves
// the pair to the kernel (deleteVeth false); a failed Attach and the reclaiming of a dead owner's
// lease delete it, in case something still sits in the namespace.
func undoLease(root stateRoot, l lease, deleteVeth bool) error {
	errs := []error{removeNetns(l.Netns), os.RemoveAll(filesPath(root, l))}
	if deleteVeth {
		errs = append(errs, deleteLink(l.HostVeth))
	}
	return errors.Join(errs...)
}

// updateEgress stores new hostname addresses in the lease and rewrites the service's own chains,
// and nothing else, in one batch.
func (a *Attachment) updateEgress(spec egressSpec) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed || slices.EqualFunc(spec.Rules, a.lease.Egress.Rules, func(x, y storedRule) bool { return slices.Equal(x.Resolved, y.Resolved) }) {
		return nil
	}
	l := a.lease
	l.Egress = spec
	if err := a.held.rewrite(l); err != nil {
		return err
	}
	a.lease.Egress = spec
	// Under a.mu, which Close takes first: the chains are there until Close deletes them.
	c, err := nftConn()
	if err != nil {
		return err
	}
	defer func() { go func() { _ = c.CloseLasting() }() }() // nothing waits for the kernel to free the old rules
	f := a.root.fw()
	eg := &nftables.Chain{Name: egressChain(a.lease), Table: f.ip}
	host := &nftables.Chain{Name: hostChain(a.lease), Table: f.ip}
	c.FlushChain(eg)
	egressRules(c, f, eg, a.lease)
	c.FlushChain(host)
	hostRules(c, f.ip, host, a.lease)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: service %s's egress chains in table ip %s: %w", a.lease.Service, a.root.table(), err)
	}
	return nil
}
