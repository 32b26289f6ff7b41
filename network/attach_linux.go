package network

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"

	"github.com/safe-run/safe-run/internal/proc"
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
	refresh, err := opts.resolveEgress(&spec) // before the lock: a slow resolver stalls only us
	if err != nil {
		log.Warn("egress hostname lookup failed; retrying", "err", err)
	}

	root := stateRoot{filepath.Clean(opts.StateDir)}
	if err := root.init(); err != nil {
		discard()
		return nil, err
	}
	rc := checkReclaim(root)
	began := time.Now()
	lk, err := root.lock()
	if err != nil {
		discard()
		return nil, err
	}
	locked := time.Now()
	a, snap, err := attachLocked(root, lk, rc, bridge, opts, spec, log)
	lk.unlock()
	unlocked := time.Now()
	if err != nil {
		discard()
		return nil, err
	}
	// The kernel work, outside the lock: other starts and stops on this root go on meanwhile.
	release, err := a.connect(snap, spec, ns, opts.NamespaceReady)
	// Nothing here needs the nftables socket closed (see nftConn): its close may wait for the
	// kernel to free another transaction's deletions.
	go release()
	if err != nil {
		return nil, errors.Join(err, a.detach(true))
	}
	defer func() {
		log.Debug("network attached", "service", opts.Service, "bridge", bridge, "locked", unlocked.Sub(locked), "connecting", time.Since(unlocked), "lock_wait", locked.Sub(began))
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
	if opts.Denials != nil && !spec.All {
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

// snapshot is what connect needs of the state as attachLocked left it.
type snapshot struct {
	bridge *bridgeState // the attachment's
}

// attachLocked is the bookkeeping of Attach, under the state lock lk: reclaim dead owners' leases,
// pick the subnet (for a new bridge), the address and the log group, and write the lease. The
// lease is on disk before anything it names is made (connect), so a crash from here on leaves a
// record for the next Attach or Cleanup to undo; and a bridge with a lease is never deleted (the
// last member deletes its bridge under the lock, only if it still has no lease), so connect may
// make or join the bridge's interface outside the lock.
func attachLocked(root stateRoot, lk *rootLock, rc reclaimCheck, bridge string, opts Options, spec egressSpec, log *slog.Logger) (*Attachment, snapshot, error) {
	bridges, err := root.bridgesSince(rc.bridges)
	if err != nil {
		return nil, snapshot{}, err
	}
	if err := reclaim(root, bridges, log, rc); err != nil {
		log.Warn("reclaiming dead services' network", "err", err)
	}
	pid := os.Getpid()
	// Unique to this start: a veth of the previous run of the service may still be on its way out
	// (the kernel destroys a namespace, and the pair, asynchronously once its last user is gone).
	hostVeth := "sv-" + shortHash(root.dir, bridge, opts.Service, strconv.Itoa(pid), time.Now().String())[:10]
	b := bridges[bridge]
	if b == nil {
		var used []netip.Prefix
		for _, o := range bridges {
			used = append(used, o.Subnet)
		}
		subnet, err := freeSubnet(used)
		if err != nil {
			return nil, snapshot{}, err
		}
		b = &bridgeState{Name: bridge, Ifname: root.bridgeIfname(bridge), Subnet: subnet, Gateway: subnet.Addr().Next()}
		if opts.Bridge == "" {
			// A bridge of its own has one member for good: a routed pair does what a bridge
			// would, and a bridge device costs tens of milliseconds to delete.
			b.Ifname, b.Routed = hostVeth, true
		}
		bridges[bridge] = b
	}
	for _, l := range b.Leases {
		if l.Service == opts.Service {
			return nil, snapshot{}, fmt.Errorf("network: service %s is already on bridge %s (pid %d); stop it first or rename one", opts.Service, bridge, l.PID)
		}
	}
	addr, err := freeAddress(b)
	if err != nil {
		return nil, snapshot{}, err
	}
	netnsPath, files := Paths(root.dir, opts.Service, bridge)
	l := lease{
		Service:  opts.Service,
		Address:  addr,
		PID:      pid,
		Start:    proc.Start(pid),
		Netns:    netnsPath,
		HostVeth: hostVeth,
		LogGroup: freeGroup(bridges),
		Egress:   spec,
		DNS:      opts.DNS,
	}
	b.Leases = append(b.Leases, l)
	if err := root.writeBridge(b); err != nil {
		return nil, snapshot{}, err
	}
	a := &Attachment{
		Netns: l.Netns, Address: addr, Gateway: b.Gateway, Bridge: bridge, Files: files,
		root: root, lease: l, log: log, cancel: func() {},
	}
	return a, snapshot{bridge: b}, nil
}

// connect is the kernel work of Attach, outside the state lock: the bridge's interface (made by
// whichever member comes first, or found), the namespace and its veth, the firewall, the /etc
// files. ready, if not nil, is called once the namespace and the files exist (see
// Options.NamespaceReady). release closes the nftables socket (see nftConn); it is never nil. On
// an error the caller detaches, which undoes whatever of it was made.
func (a *Attachment) connect(snap snapshot, spec egressSpec, ns *Namespace, ready func()) (release func(), err error) {
	b, l, root := snap.bridge, a.lease, a.root
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
			// The kernel refuses the batch while the previous holder of this address still
			// has its map elements (an element that exists with another verdict): that
			// holder deletes them just after releasing the state lock, so a moment later
			// it goes in. One killed in between leaves them for good: after a while, this
			// start deletes them, as the holder of the address their keys name (the
			// holder's own deletion, if it only was slow, then leaves them alone:
			// runOwnOps).
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
	// The rule and route are removed only under the lock, with the last bridge: while this
	// lease is there, no one removes them after this has made them.
	if err := ensureTransparent(root, prerouting); err != nil {
		// Another program's rule or table: published ports still work, from the gateway.
		a.log.Warn("published ports: the service will see the gateway as its clients' address", "err", err)
		a.Notes = append(a.Notes, "published ports: the service sees the gateway as the client ("+err.Error()+")")
	} else {
		a.subnet = b.Subnet
	}
	return release, nil
}

func freeAddress(b *bridgeState) (netip.Addr, error) {
	taken := map[netip.Addr]bool{b.Gateway: true}
	for _, l := range b.Leases {
		taken[l.Address] = true
	}
	last := netip.PrefixFrom(b.Subnet.Addr(), b.Subnet.Bits())
	for a := b.Gateway.Next(); last.Contains(a); a = a.Next() {
		if !taken[a] && last.Contains(a.Next()) { // the last address is the broadcast
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("network: bridge %s (%s) has no free address left", b.Name, b.Subnet)
}

// freeGroup picks an NFLOG group no lease of this root uses, at random in a high range so that
// another state root (or another program) picking groups is unlikely to meet it.
func freeGroup(bridges map[string]*bridgeState) uint16 {
	used := map[uint16]bool{}
	for _, b := range bridges {
		for _, l := range b.Leases {
			used[l.LogGroup] = true
		}
	}
	for {
		var buf [2]byte
		rand.Read(buf[:])
		g := 0x8000 | binary.BigEndian.Uint16(buf[:])
		if !used[g] {
			return g
		}
	}
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

// detachTimed drops the lease under the lock (and the bridge, if it was the last member, with its
// set elements, and the tables with the last bridge), then, outside it, removes its firewall
// objects, in one batch. Its address may be leased again as soon as the lock is released, and the
// next holder's map elements have the same keys: the kernel refuses the next holder's batch while
// these exist (it retries: connect), and this batch deletes them together with its own chains,
// so it applies only while those are there, that is, only to its own elements. The namespace and
// the files go meanwhile: they are the lease's alone while it exists (no other start of the
// service joins the bridge: attachLocked), and nothing here needs them. A crash before the lease
// is gone leaves a dead owner's lease, which the next reclaim undoes (whatever of it is left); a
// crash after it, a namespace and files no lease names, which the next reclaim removes, and
// objects that Cleanup sweeps.
func (a *Attachment) detachTimed(deleteVeth bool, began, stopped time.Time) error {
	undone := make(chan error, 1)
	go func() { undone <- undoLease(a.root, a.lease, deleteVeth) }()
	// Read before the lock; under it, only a file replaced since is read again.
	prev, _ := a.root.bridges()
	waiting := time.Now()
	lk, err := a.root.lock()
	if err != nil {
		return err
	}
	locked := time.Now()
	bridges, err := a.root.bridgesSince(prev)
	f := a.root.fw()
	tablesGone := false
	var ops []nftOp
	if err == nil {
		b := bridges[a.Bridge]
		bridgeGone := b != nil && !slices.ContainsFunc(b.Leases, func(o lease) bool { return !a.lease.same(o) })
		switch {
		case len(bridges) == 0 || bridgeGone && len(bridges) == 1:
			ops, tablesGone = tableOps(f), true
		case bridgeGone:
			// The bridge's elements go under the lock: its subnet may be the next bridge's.
			ops, tablesGone = append(append(memberElemOps(f, b, a.lease), memberChainOps(f, a.lease)...), bridgeElemOps(f, b)...), true
		}
		// The batch beside the state's writes (dropLease): the kernel frees what it deleted
		// after a grace period, which the process's exit waits out (see nftConn), so the
		// sooner it commits, the less of it is left to wait for.
		var oerr error
		var wg sync.WaitGroup
		if len(ops) > 0 {
			wg.Go(func() {
				var release func()
				release, oerr = runOps(ops)
				go release() // nothing here waits for the kernel to free what the batch deleted
			})
		}
		err = dropLease(a.root, bridges, a.Bridge, a.lease)
		wg.Wait()
		err = errors.Join(err, oerr)
		if !tablesGone && b != nil {
			if a.fwAdded {
				ops = append(memberElemOps(f, b, a.lease), memberChainOps(f, a.lease)...)
			} else {
				ops = memberChainOps(f, a.lease) // its elements were never added
			}
		}
	}
	lk.unlock()
	unlocked := time.Now()
	if err != nil {
		return errors.Join(err, <-undone)
	}
	errs := []error{<-undone}
	var serr error
	if !tablesGone && len(ops) > 0 {
		var release func()
		release, serr = runOwnOps(f, a.lease, ops)
		go release()
	}
	a.log.Debug("network detached", "service", a.lease.Service, "bridge", a.Bridge,
		"locked", unlocked.Sub(locked), "undoing", time.Since(unlocked),
		"stopping", stopped.Sub(began), "reading", waiting.Sub(stopped), "lock_wait", locked.Sub(waiting))
	return errors.Join(append(errs, serr)...)
}

// dropLease removes lease l from its bridge's state, under the lock; bridges is updated in place.
// The last member's leaving deletes the bridge (its interface and state file) and, with the last
// bridge of the root, the client-address routing (ensureTransparent), here under the lock, so
// that a joiner, whose lease is written under it, never joins a bridge on its way out.
func dropLease(root stateRoot, bridges map[string]*bridgeState, bridge string, l lease) error {
	b := bridges[bridge]
	if b == nil {
		return nil
	}
	b.Leases = slices.DeleteFunc(b.Leases, l.same)
	return errors.Join(saveOrDropBridge(root, bridges, b), dropTransparentIfLast(root, bridges))
}

// dropTransparentIfLast removes the client-address routing when no bridge is left; the caller
// holds the lock.
func dropTransparentIfLast(root stateRoot, bridges map[string]*bridgeState) error {
	if len(bridges) > 0 {
		return nil
	}
	return removeTransparent(root)
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

func saveOrDropBridge(root stateRoot, bridges map[string]*bridgeState, b *bridgeState) error {
	if len(b.Leases) > 0 {
		return root.writeBridge(b)
	}
	delete(bridges, b.Name)
	if b.Routed {
		// Its interface is its member's veth, which goes as undoLease says.
		return root.removeBridge(b.Name)
	}
	return errors.Join(deleteLink(b.Ifname), root.removeBridge(b.Name))
}

// updateEgress stores new hostname addresses in the lease and rewrites the service's own chains,
// and nothing else, in one batch.
func (a *Attachment) updateEgress(spec egressSpec) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed || slices.EqualFunc(spec.Rules, a.lease.Egress.Rules, func(x, y storedRule) bool { return slices.Equal(x.Resolved, y.Resolved) }) {
		return nil
	}
	lk, err := a.root.lock()
	if err != nil {
		return err
	}
	err = func() error {
		defer lk.unlock()
		bridges, err := a.root.bridges()
		if err != nil {
			return err
		}
		b := bridges[a.Bridge]
		if b == nil {
			return fmt.Errorf("bridge %s has no state file any more", a.Bridge)
		}
		for i := range b.Leases {
			if b.Leases[i].Service == a.lease.Service {
				b.Leases[i].Egress = spec
			}
		}
		return a.root.writeBridge(b)
	}()
	if err != nil {
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
	egressRules(c, f.ip, eg, a.lease)
	c.FlushChain(host)
	hostRules(c, f.ip, host, a.lease)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: service %s's egress chains in table ip %s: %w", a.lease.Service, a.root.table(), err)
	}
	return nil
}

// Cleanup reclaims what dead owners left under stateDir: their leases, veths, namespaces, files,
// rules, and bridges with no member left.
func Cleanup(stateDir string) error {
	root := stateRoot{filepath.Clean(stateDir)}
	if _, err := os.Stat(root.dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err := root.init(); err != nil {
		return err
	}
	lk, err := root.lock()
	if err != nil {
		return err
	}
	bridges, err := root.bridges()
	if err != nil {
		lk.unlock()
		return err
	}
	defer lk.unlock()
	rerr := errors.Join(reclaim(root, bridges, nil, reclaimCheck{}), dropTransparentIfLast(root, bridges))
	// With no bridge left, the tables go (and an older safe-run's inet table: see leftTables);
	// else the chains of leases no one holds any more (a detacher killed after dropping its
	// lease) go, with what jumps to them.
	f := root.fw()
	ops := append(tableOps(f), func(c *nftables.Conn) error {
		c.DelTable(&nftables.Table{Name: f.ip.Name, Family: nftables.TableFamilyINet})
		return nil
	})
	if len(bridges) > 0 {
		var err error
		if ops, err = sweepOps(f, bridges); err != nil {
			return errors.Join(rerr, err)
		}
	}
	release, err := runOps(ops)
	release()
	return errors.Join(rerr, err)
}

// reclaimCheck is what can be learnt of a reclaim before the lock: whether each lease's owner
// lives, and which namespaces and files there are, so that the lock is held for none of the
// /proc reads (a millisecond with 50 members, and many times that on a loaded host: issue 19).
// A lease or entry that appears after it is looked at under the lock, or left for the next
// reclaim; a dead owner stays dead, and one found alive that dies meanwhile is reclaimed next
// time, as it would be had it died a moment later.
type reclaimCheck struct {
	bridges map[string]*bridgeState // as read: what the lock's holder reads again only if replaced
	alive   map[leaseKey]bool       // by lease as read; absent: look under the lock
	entries map[string][]string     // netnsDir, filesDir -> names; nil: read under the lock
}

// leaseKey is what tells one lease from another of the same service: its owner.
type leaseKey struct {
	service string
	pid     int
	start   uint64
}

func (l lease) key() leaseKey { return leaseKey{l.Service, l.PID, l.Start} }

// same says whether o is l as a bridge's state holds it (dropLease).
func (l lease) same(o lease) bool { return o.Service == l.Service && o.Address == l.Address }

// checkReclaim reads the state without the lock (writes are atomic renames) and learns what it can.
func checkReclaim(root stateRoot) reclaimCheck {
	bridges, err := root.bridges()
	if err != nil {
		return reclaimCheck{}
	}
	rc := reclaimCheck{bridges: bridges, alive: map[leaseKey]bool{}}
	for _, b := range bridges {
		for _, l := range b.Leases {
			rc.alive[l.key()] = l.alive()
		}
	}
	rc.entries = map[string][]string{}
	for _, d := range []string{netnsDir, filesDir} {
		ents, _ := os.ReadDir(filepath.Join(root.dir, d))
		for _, e := range ents {
			rc.entries[d] = append(rc.entries[d], e.Name())
		}
	}
	return rc
}

// reclaim undoes every lease whose owner is dead (or whose pid was reused), drops bridges left
// without members, and removes netns mounts and files no lease names, and the temporary files of
// state writes a SIGKILL cut short. rc is what checkReclaim learnt before the lock (zero: look at
// everything here). The caller holds the lock. Undoing a dead owner's lease stays under the lock, unlike a live owner's
// Close: the next run of that service may be attaching, and its namespace has the same path.
func reclaim(root stateRoot, bridges map[string]*bridgeState, log *slog.Logger, rc reclaimCheck) error {
	var errs []error
	// atomicfile's temporary files: every writer holds the lock, so whatever is there now was a
	// killed writer's (the soak found them after safe-runs SIGKILLed mid-write, issue 19).
	stale, _ := filepath.Glob(filepath.Join(root.dir, bridgesDir, ".tmp-*"))
	for _, p := range stale {
		errs = append(errs, os.Remove(p))
	}
	keep := map[string]bool{}
	f := root.fw()
	var ops []nftOp
	for _, b := range bridges {
		before := len(b.Leases)
		live := b.Leases[:0]
		for _, l := range b.Leases {
			alive, checked := rc.alive[l.key()]
			if !checked {
				alive = l.alive()
			}
			if alive {
				live = append(live, l)
				keep[filepath.Base(l.Netns)] = true
				continue
			}
			if log != nil {
				log.Info("reclaiming network of a dead service", "service", l.Service, "bridge", b.Name, "pid", l.PID)
			}
			errs = append(errs, undoLease(root, l, true))
			// Its chains and elements, by name (the first batch's refusal of whatever is
			// not there, should it have died before its batch, is handled by runOps).
			ops = append(append(ops, memberElemOps(f, b, l)...), memberChainOps(f, l)...)
		}
		b.Leases = live
		if len(live) < before || len(live) == 0 {
			// Every start reclaims: a bridge it leaves as it was is not rewritten.
			errs = append(errs, saveOrDropBridge(root, bridges, b))
			if len(live) == 0 {
				ops = append(ops, bridgeElemOps(f, b)...)
			}
		}
	}
	if len(ops) > 0 {
		release, err := runOps(ops)
		go release()
		errs = append(errs, err)
	}
	for _, d := range []string{netnsDir, filesDir} {
		names := rc.entries[d]
		if rc.entries == nil {
			ents, _ := os.ReadDir(filepath.Join(root.dir, d))
			for _, e := range ents {
				names = append(names, e.Name())
			}
		}
		for _, n := range names {
			if keep[n] {
				continue
			}
			p := filepath.Join(root.dir, d, n)
			if d == netnsDir {
				errs = append(errs, removeNetns(p))
			} else {
				errs = append(errs, os.RemoveAll(p))
			}
		}
	}
	return errors.Join(errs...)
}
