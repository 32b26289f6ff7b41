package network

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/internal/proc"
)

// attachTiming is what attachLease waited for (the root's lock, the bridge's) and held.
type attachTiming struct {
	waited, rootWait, bridgeWait, held time.Duration
	made                               bool // the bridge was made by this start
}

// attachLease is the bookkeeping of Attach: the bridge found (or made, by the first member:
// its subnet claimed, its state file written) and the lease claimed. It holds the root's lock
// shared and the bridge's lock shared (exclusive only to make the bridge) for that and no more,
// so attaches wait for no other attach, only for a bridge being made or deleted. The lease is on
// disk before anything it names is made (connect), so a crash from here on leaves a record for
// the next reclaim to undo; and a bridge with a lease is never deleted (its last member deletes
// it under its lock, only if it still has no lease), so connect may make or join the bridge's
// interface with no lock.
func (s stateRoot) attachLease(bridge string, opts Options, spec egressSpec, log *slog.Logger) (*Attachment, attachTiming, error) {
	var tm attachTiming
	pid := os.Getpid()
	// Unique to this start: a veth of the previous run of the service may still be on its way out
	// (the kernel destroys a namespace, and the pair, asynchronously once its last user is gone).
	hostVeth := "sv-" + shortHash(s.dir, bridge, opts.Service, strconv.Itoa(pid), time.Now().String())[:10]
	netnsPath, files := Paths(s.dir, opts.Service, bridge)
	l := lease{
		Service:  opts.Service,
		PID:      pid,
		Start:    proc.Start(pid),
		Netns:    netnsPath,
		HostVeth: hostVeth,
		Egress:   spec,
		DNS:      opts.DNS,
	}
	began := time.Now()
	// Shared: only the deleter of the tables (with the last bridge) excludes attaches, so that
	// none is between making its bridge and claiming its lease meanwhile.
	rlk, err := s.lockRoot(unix.LOCK_SH)
	if err != nil {
		return nil, tm, err
	}
	locked := time.Now()
	b, blk, waited, err := s.joinBridge(bridge, opts.Bridge == "", hostVeth, log)
	tm.rootWait, tm.bridgeWait = locked.Sub(began), waited
	tm.waited = tm.rootWait + tm.bridgeWait
	tm.made = blk != nil && blk.how&unix.LOCK_EX != 0
	var held *heldLease
	if err == nil {
		held, err = s.claimLease(b, &l)
		blk.unlock()
	}
	rlk.unlock()
	tm.held = time.Since(locked) - waited
	if err != nil {
		_, terr := s.tidy(bridge, nil)
		return nil, tm, errors.Join(err, terr)
	}
	a := &Attachment{
		Netns: l.Netns, Address: l.Address, Gateway: b.Gateway, Bridge: bridge, Files: files,
		root: s, lease: l, held: held, bridge: b, log: log, cancel: func() {},
	}
	// Another lease of this service on the bridge: its owner is alive (then this start is
	// refused: they would share a namespace path), or dead and not yet reclaimed. Two starts of
	// one name at once (which the launcher's name lock prevents) both see the other and both
	// fail, or one does: never both succeed.
	if err := s.evictService(b, l, log); err != nil {
		return nil, tm, errors.Join(err, held.drop(), func() error { _, err := s.tidy(bridge, nil); return err }())
	}
	return a, tm, nil
}

// joinBridge returns bridge name's state with its lock held (shared, or exclusive when this
// start made the bridge), and how long it waited for the lock. A bridge of its own (own) is made
// anew for each start: it is routed through its one member's veth.
func (s stateRoot) joinBridge(name string, own bool, hostVeth string, log *slog.Logger) (*bridgeState, *heldLock, time.Duration, error) {
	var waited time.Duration
	lock := func(how int) (*heldLock, error) {
		t := time.Now()
		lk, err := s.lockBridge(name, how)
		waited += time.Since(t)
		return lk, err
	}
	for {
		lk, err := lock(unix.LOCK_SH)
		if err != nil {
			return nil, nil, waited, err
		}
		b, err := s.readBridge(name)
		if err != nil {
			lk.unlock()
			return nil, nil, waited, err
		}
		if b != nil && !b.Routed {
			return b, lk, waited, nil
		}
		lk.unlock()
		// Made by the first member, under the bridge's lock, exclusive: of two first
		// members, the second finds it made, and joins it as any other does, shared, so
		// that the members that came early do not claim their leases one at a time.
		if lk, err = lock(unix.LOCK_EX); err != nil {
			return nil, nil, waited, err
		}
		b, err = s.readBridge(name)
		if err == nil && b != nil && !b.Routed {
			lk.unlock()
			continue
		}
		if err == nil && b != nil {
			// A bridge of its own left by a previous run: its member is alive (already on
			// it), or dead and not yet reclaimed, which is done here. Deleting it removes the
			// lock file held here too, so the new one (routed through this start's veth) is
			// made under a lock taken anew: made under this one, its stop would find no lock
			// file to delete it under, and leave it.
			if err = s.evictAll(b, log); err == nil {
				_, err = s.deleteBridgeLocked(name, nil)
			}
			lk.unlock()
			if err != nil {
				return nil, nil, waited, err
			}
			continue
		}
		if err == nil {
			b, err = s.makeBridge(name, own, hostVeth)
		}
		if err != nil {
			lk.unlock()
			return nil, nil, waited, err
		}
		return b, lk, waited, nil
	}
}

// makeBridge writes a new bridge's state: its subnet claimed first, so that a crash leaves at
// most a claim no bridge names, which Cleanup removes. The caller holds its lock, exclusive.
func (s stateRoot) makeBridge(name string, own bool, hostVeth string) (*bridgeState, error) {
	if err := os.MkdirAll(s.leasesDir(name), 0o700); err != nil {
		return nil, fmt.Errorf("network state: %w", err)
	}
	subnet, err := s.claimSubnet(name)
	if err != nil {
		return nil, err
	}
	b := &bridgeState{Name: name, Ifname: s.bridgeIfname(name), Subnet: subnet, Gateway: subnet.Addr().Next()}
	if own {
		// A bridge of its own has one member for good: a routed pair does what a bridge
		// would, and a bridge device costs tens of milliseconds to delete.
		b.Ifname, b.Routed = hostVeth, true
	}
	if err := s.writeBridge(b); err != nil {
		os.Remove(s.subnetClaim(subnet))
		return nil, err
	}
	return b, nil
}

// evictService makes sure no other lease of l's service is on bridge b: a dead owner's is
// reclaimed; a live one's refuses this start.
func (s stateRoot) evictService(b *bridgeState, l lease, log *slog.Logger) error {
	names, err := s.leaseNames(b.Name)
	if err != nil {
		return err
	}
	for _, n := range names {
		if n == l.Address.String() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(s.leasesDir(b.Name), n))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("network state: %w", err)
		}
		o, err := s.parseLease(b, n, data)
		if err != nil {
			return err
		}
		if o.Service == l.Service {
			if err := s.evict(b, n, log); err != nil {
				return err
			}
		}
	}
	return nil
}

// evictAll makes sure no lease of b has a live owner, reclaiming dead ones'.
func (s stateRoot) evictAll(b *bridgeState, log *slog.Logger) error {
	names, err := s.leaseNames(b.Name)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := s.evict(b, n, log); err != nil {
			return err
		}
	}
	return nil
}

// evict reclaims lease file name of bridge b if its owner is dead, waiting for another reclaimer
// that has it; a live owner's is an error: the service is already on the bridge.
func (s stateRoot) evict(b *bridgeState, name string, log *slog.Logger) error {
	path := filepath.Join(s.leasesDir(b.Name), name)
	h, err := takeLease(path, false)
	if err != nil {
		return err
	}
	if h == nil {
		data, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("network state: %w", err)
		}
		o, err := s.parseLease(b, name, data)
		if err != nil {
			return err
		}
		if o.alive() {
			return fmt.Errorf("network: service %s is already on bridge %s (pid %d); stop it first or rename one", o.Service, b.Name, o.PID)
		}
		// Its owner is dead: another start or Cleanup is reclaiming it. Its namespace has
		// this start's path: wait until it is gone.
		if h, err = takeLease(path, true); err != nil || h == nil {
			return err
		}
	}
	return s.reclaimHeld(b, h, log)
}

// reclaimHeld undoes a dead owner's lease, which the caller has taken (takeLease): what it names,
// by name, then the lease file.
func (s stateRoot) reclaimHeld(b *bridgeState, h *heldLease, log *slog.Logger) error {
	l, err := h.read(s, b)
	if err != nil {
		h.f.Close()
		return err
	}
	if log != nil {
		log.Info("reclaiming network of a dead service", "service", l.Service, "bridge", b.Name, "pid", l.PID)
	}
	f := s.fw()
	// Its chains and elements, by name (whatever of them it never made is skipped: runOps).
	release, ferr := runOps(append(memberElemOps(f, b, l), memberChainOps(f, l)...))
	go release()
	return errors.Join(ferr, undoLease(s, l, true), h.drop())
}

// reclaim undoes every lease under the root whose owner is dead (its file's flock is free), and
// deletes the bridges it leaves without members. It takes no lock but the leases' own, each only
// if free: a live owner's is never waited for.
func reclaim(root stateRoot, log *slog.Logger) error {
	names, err := root.bridgeNames()
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range names {
		if _, err := os.Lstat(root.bridgeFile(name)); err != nil {
			// Being made right now, most likely; else a maker died before its state file
			// (Cleanup's, under the root's lock).
			continue
		}
		leases, err := root.leaseNames(name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var b *bridgeState
		reclaimed := 0
		for _, n := range leases {
			h, err := takeLease(filepath.Join(root.leasesDir(name), n), false)
			if err != nil || h == nil {
				errs = append(errs, err)
				continue
			}
			if b == nil {
				if b, err = root.readBridge(name); err != nil || b == nil {
					h.f.Close()
					errs = append(errs, err)
					break
				}
			}
			err = root.reclaimHeld(b, h, log)
			errs = append(errs, err)
			if err == nil {
				reclaimed++
			}
		}
		switch {
		case reclaimed > 0 && reclaimed == len(leases):
			_, err := root.tidy(name, nil)
			errs = append(errs, err)
		case len(leases) == 0:
			// A last member that died before deleting it, or one that is deleting it, or
			// (most often) a bridge being made or joined right now: not waited for.
			errs = append(errs, root.tidyNow(name, nil))
		}
	}
	return errors.Join(errs...)
}

// tidy deletes bridge name if it has no lease, and then the tables if it was the last bridge;
// it returns how long it waited for the locks. Only then is a lock waited for: the bridge's,
// exclusive, which excludes a joiner between its finding the bridge and its lease, and the
// root's, which excludes an attach between its making a bridge and its lease.
func (s stateRoot) tidy(name string, cl *closes) (time.Duration, error) {
	if names, err := s.leaseNames(name); err != nil || len(names) > 0 {
		return 0, err
	}
	began := time.Now()
	lk, err := lockUnless(filepath.Join(s.bridgeDir(name), lockFile), func() bool {
		names, _ := s.leaseNames(name)
		return len(names) > 0
	})
	waited := time.Since(began)
	if err != nil || lk == nil {
		return waited, err // joined meanwhile, or gone: its deleter deletes the tables if need be
	}
	gone, err := s.deleteBridgeLocked(name, cl)
	lk.unlock()
	if err != nil || !gone {
		return waited, err
	}
	w, err := s.dropTablesIfLast(cl)
	return waited + w, err
}

// lockUnless takes path's lock exclusive for a deletion, or gives up (nil, nil) once moot says
// the deletion is moot, or once path is gone. It polls rather than waits: Linux's flock has no
// writer preference, so a blocked exclusive waiter stays blocked while shared holders (attaches)
// keep overlapping, and a stop would not end; but every shared holder is an attach that leaves
// with a lease (or deletes what it made itself), which makes the deletion moot, so polling ends
// as soon as the first of them is through.
func lockUnless(path string, moot func() bool) (*heldLock, error) {
	for delay := 100 * time.Microsecond; ; delay = min(2*delay, 5*time.Millisecond) {
		lk, err := lockPath(path, unix.LOCK_EX|unix.LOCK_NB, false)
		if err != nil || lk != nil {
			return lk, err
		}
		if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) || moot() {
			return nil, nil
		}
		time.Sleep(delay)
	}
}

// tidyNow is tidy if the bridge's lock is free, and nothing otherwise: its holder is making it
// or joining it (and will have a lease), or deleting it.
func (s stateRoot) tidyNow(name string, cl *closes) error {
	lk, err := lockPath(filepath.Join(s.bridgeDir(name), lockFile), unix.LOCK_EX|unix.LOCK_NB, false)
	if err != nil || lk == nil {
		return err
	}
	gone, err := s.deleteBridgeLocked(name, cl)
	lk.unlock()
	if err != nil || !gone {
		return err
	}
	_, err = s.dropTablesIfLast(cl)
	return err
}

// deleteBridgeLocked deletes bridge name, unless it has a lease: its set elements (before its
// subnet may be another bridge's), its interface, its state file, then its subnet claim and its
// directory; gone says whether there was a bridge (a state file). The caller holds its lock,
// exclusive.
func (s stateRoot) deleteBridgeLocked(name string, cl *closes) (gone bool, err error) {
	return s.deleteBridgeWith(name, func(b *bridgeState) error {
		release, err := runOps(bridgeElemOps(s.fw(), b))
		cl.add(release)
		return err
	})
}

// deleteBridgeWith is deleteBridgeLocked with elems deleting the bridge's set elements (nothing to
// do once the tables are gone: detachAlone).
func (s stateRoot) deleteBridgeWith(name string, elems func(*bridgeState) error) (gone bool, err error) {
	if names, err := s.leaseNames(name); err != nil || len(names) > 0 {
		return false, err
	}
	b, err := s.readBridge(name)
	if err != nil {
		return false, err // corrupt: left to the operator, as its error says
	}
	var errs []error
	if b != nil {
		errs = append(errs, elems(b))
		if !b.Routed {
			// A routed one's interface is its member's veth, which goes as undoLease says.
			errs = append(errs, deleteLink(b.Ifname))
		}
		if err := os.Remove(s.bridgeFile(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("network state: %w", err))
		}
		if owner, _ := os.Readlink(s.subnetClaim(b.Subnet)); owner == name {
			errs = append(errs, os.Remove(s.subnetClaim(b.Subnet)))
		}
	}
	// Temporary files of claims, and of the state file: none is being written (a claimer holds
	// the lock shared, the state file's writer exclusive); one here was left by a SIGKILL.
	errs = append(errs, os.RemoveAll(s.leasesDir(name)))
	stale, _ := filepath.Glob(filepath.Join(s.bridgeDir(name), ".tmp-*"))
	for _, p := range stale {
		errs = append(errs, os.Remove(p))
	}
	// The lock file last: a waiter for it finds it gone, and looks again (lockPath).
	if err := os.Remove(filepath.Join(s.bridgeDir(name), lockFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	_ = os.Remove(s.bridgeDir(name)) // a joiner may have made its lock file in it again
	return b != nil, errors.Join(errs...)
}

// detachAlone is the stop of the root's only lease, on its only bridge, if it gets the root's and
// the bridge's locks at once without waiting (else an attach is on its way, and the caller stops
// the usual way: done false). Deleting the tables then deletes the member's chains and map
// elements and the bridge's set elements with them: one nftables transaction instead of three in
// turn, whose destroy work (an RCU grace period each, and conntrack's hooks unregistered with the
// tables) the process's exit waits out: 6 ms more at a lone bridge service's exit
// (docs/networking.md, Where a bridge start's time goes). A crash on the way leaves a dead
// owner's lease, undone by name as any other (what it names is gone or goes).
func (a *Attachment) detachAlone(deleteVeth bool, cl *closes) (done bool, err error) {
	s := a.root
	alone := func() bool {
		bridges, _ := s.bridgeNames()
		leases, _ := s.leaseNames(a.Bridge)
		return len(bridges) == 1 && bridges[0] == a.Bridge && len(leases) == 1
	}
	if !alone() {
		return false, nil
	}
	rlk, err := lockPath(filepath.Join(s.dir, lockFile), unix.LOCK_EX|unix.LOCK_NB, false)
	if err != nil || rlk == nil {
		return false, nil
	}
	defer rlk.unlock()
	blk, err := lockPath(filepath.Join(s.bridgeDir(a.Bridge), lockFile), unix.LOCK_EX|unix.LOCK_NB, false)
	if err != nil || blk == nil {
		return false, nil
	}
	defer blk.unlock()
	if !alone() {
		return false, nil
	}
	undone := make(chan error, 1)
	go func() { undone <- undoLease(s, a.lease, deleteVeth) }()
	routed := make(chan error, 1)
	go func() { routed <- removeTransparent(s) }()
	release, ferr := runOps(tableOps(s.fw()))
	cl.add(release)
	errs := []error{ferr, <-undone, <-routed, a.held.drop()}
	_, err = s.deleteBridgeWith(a.Bridge, func(*bridgeState) error { return nil })
	return true, errors.Join(append(errs, err)...)
}

// dropTablesIfLast deletes the root's tables and client-address routing if no bridge is left.
// It takes the root's lock, exclusive, which every attach takes shared from before it finds or
// makes its bridge until its lease is claimed; it gives up once a bridge is there again
// (lockUnless: that bridge's last member comes here in its turn).
func (s stateRoot) dropTablesIfLast(cl *closes) (time.Duration, error) {
	if s.anyBridge() {
		return 0, nil
	}
	began := time.Now()
	lk, err := lockUnless(filepath.Join(s.dir, lockFile), s.anyBridge)
	waited := time.Since(began)
	if err != nil || lk == nil {
		return waited, err
	}
	defer lk.unlock()
	return waited, s.dropTablesLocked(cl)
}

func (s stateRoot) anyBridge() bool {
	names, _ := s.bridgeNames()
	for _, n := range names {
		if _, err := os.Lstat(s.bridgeFile(n)); err == nil {
			return true
		}
	}
	return false
}

// dropTablesLocked deletes the tables and the routing when no bridge is left; the caller holds
// the root's lock, exclusive.
func (s stateRoot) dropTablesLocked(cl *closes) error {
	if s.anyBridge() {
		return nil
	}
	// The routing beside the batch.
	routed := make(chan error, 1)
	go func() { routed <- removeTransparent(s) }()
	release, err := runOps(tableOps(s.fw()))
	cl.add(release)
	return errors.Join(err, <-routed)
}

// Cleanup reclaims what dead owners left under stateDir: their leases, veths, namespaces, files,
// rules, bridges with no member left, and what a crash cut short (a subnet claimed for a bridge
// never written, a lease's temporary file, chains no lease names). It waits for the root's lock,
// exclusive: no attach is then between making or finding its bridge and claiming its lease. A
// root an older safe-run wrote is undone here, once its services are stopped.
func Cleanup(stateDir string) error {
	root := stateRoot{filepath.Clean(stateDir)}
	if _, err := os.Stat(root.dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err := root.init(); err != nil {
		return err
	}
	if root.oldLayout() != nil {
		if err := root.cleanupOld(); err != nil {
			return err
		}
	}
	errs := []error{reclaim(root, nil)}
	lk, err := root.lockRoot(unix.LOCK_EX)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	defer lk.unlock()
	names, err := root.bridgeNames()
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, name := range names {
		// Temporary files of claims and rewrites cut short (a live writer holds its lock).
		tmps, _ := filepath.Glob(filepath.Join(root.leasesDir(name), ".tmp-*"))
		for _, p := range tmps {
			if h, _ := takeLease(p, false); h != nil {
				errs = append(errs, h.drop())
			}
		}
		if leases, _ := root.leaseNames(name); len(leases) == 0 {
			blk, err := root.lockBridge(name, unix.LOCK_EX)
			if err == nil {
				_, err = root.deleteBridgeLocked(name, nil)
				blk.unlock()
			}
			errs = append(errs, err)
		}
	}
	errs = append(errs, root.sweepSubnets())
	bridges, err := root.bridges()
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	errs = append(errs, root.sweepNetns(bridges))
	// With no bridge left, the tables go, and an older safe-run's inet table (see leftTables);
	// else the chains of leases no one holds any more (what a safe-run from before leases were
	// files left) go, with what jumps to them.
	if len(bridges) == 0 {
		release, err := runOps([]nftOp{func(c *nftables.Conn) error {
			c.DelTable(&nftables.Table{Name: root.table(), Family: nftables.TableFamilyINet})
			return nil
		}})
		release()
		return errors.Join(append(errs, err, root.dropTablesLocked(nil))...)
	}
	ops, err := sweepOps(root.fw(), bridges)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	release, err := runOps(ops)
	release()
	return errors.Join(append(errs, err)...)
}

// sweepSubnets removes subnet claims that no bridge's state names: its maker died between the
// two. The caller holds the root's lock, exclusive: no bridge is being made.
func (s stateRoot) sweepSubnets() error {
	ents, _ := os.ReadDir(filepath.Join(s.dir, subnetsDir))
	var errs []error
	for _, e := range ents {
		p := filepath.Join(s.dir, subnetsDir, e.Name())
		owner, err := os.Readlink(p)
		if err != nil || !nameRE().MatchString(strings.TrimPrefix(owner, "_")) {
			continue // not one safe-run makes: left alone
		}
		// The owner's lock: its deleter may be between its state file and this claim.
		lk, err := lockPath(filepath.Join(s.bridgeDir(owner), lockFile), unix.LOCK_EX, false)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		b, err := s.readBridge(owner)
		if err == nil && (b == nil || s.subnetClaim(b.Subnet) != p) {
			if err = os.Remove(p); errors.Is(err, fs.ErrNotExist) {
				err = nil
			}
		}
		errs = append(errs, err)
		if lk != nil {
			lk.unlock()
		}
	}
	return errors.Join(errs...)
}

// sweepNetns removes the namespaces and files no lease names (each is named SERVICE@BRIDGE).
// The caller holds the root's lock, exclusive: every lease claimed is in bridges, and a namespace
// is made only once its lease is.
func (s stateRoot) sweepNetns(bridges map[string]*bridgeState) error {
	keep := map[string]bool{}
	for _, b := range bridges {
		for _, l := range b.Leases {
			keep[filepath.Base(l.Netns)] = true
		}
	}
	var errs []error
	for _, d := range []string{netnsDir, filesDir} {
		ents, _ := os.ReadDir(filepath.Join(s.dir, d))
		for _, e := range ents {
			if keep[e.Name()] {
				continue
			}
			p := filepath.Join(s.dir, d, e.Name())
			if d == netnsDir {
				errs = append(errs, removeNetns(p))
			} else {
				errs = append(errs, os.RemoveAll(p))
			}
		}
	}
	return errors.Join(errs...)
}

// oldBridgeState is a bridge state file of a safe-run from before lease files: the bridge's
// leases were in it.
type oldBridgeState struct {
	bridgeState
	Leases []lease `json:"leases"`
}

// cleanupOld undoes a root an older safe-run wrote (bridges/NAME.json), once no lease in it has a
// live owner: what its leases name, its bridges' interfaces, its files. Its tables go with the
// rest of Cleanup, when no bridge is left.
func (s stateRoot) cleanupOld() error {
	old, _ := filepath.Glob(filepath.Join(s.dir, bridgesDir, "*.json"))
	var errs []error
	for _, p := range old {
		data, err := os.ReadFile(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("network state: %w", err))
			continue
		}
		var b oldBridgeState
		if err := json.Unmarshal(data, &b); err != nil {
			errs = append(errs, fmt.Errorf("network state %s (an older safe-run's): %w (delete the file and what it names: its interfaces (ip link) and namespaces under %s)", p, err, filepath.Join(s.dir, netnsDir)))
			continue
		}
		live := false
		for _, l := range b.Leases {
			if l.alive() {
				errs = append(errs, fmt.Errorf("network state %s (an older safe-run's): service %s (pid %d) still runs on bridge %s: stop it, then run `safe-run network-cleanup %s` again", p, l.Service, l.PID, b.Name, s.dir))
				live = true
			}
		}
		if live {
			continue
		}
		for _, l := range b.Leases {
			errs = append(errs, undoLease(s, l, true))
		}
		if !b.Routed && strings.HasPrefix(b.Ifname, "sr-") {
			errs = append(errs, deleteLink(b.Ifname))
		}
		errs = append(errs, os.Remove(p))
	}
	stale, _ := filepath.Glob(filepath.Join(s.dir, bridgesDir, ".tmp-*"))
	for _, p := range stale {
		errs = append(errs, os.Remove(p))
	}
	return errors.Join(errs...)
}
