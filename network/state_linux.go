package network

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/internal/atomicfile"
	"github.com/safe-run/safe-run/internal/flock"
	"github.com/safe-run/safe-run/internal/proc"
)

// The state root's layout (issue 19: no attach or detach waits for another member's):
//
//	lock                       the root's lock: taken shared by an attach while it makes or joins
//	                           its bridge and claims its lease, exclusive by whoever deletes the
//	                           tables with the last bridge, and by Cleanup
//	subnets/10.89.X.0          a bridge's subnet, claimed by making this symlink (to the bridge's name)
//	bridges/NAME/lock          the bridge's lock: shared by a joiner while it claims its lease,
//	                           exclusive by the bridge's creator and by whoever deletes it
//	bridges/NAME/bridge.json   its interface, subnet and gateway, written once, by its creator
//	bridges/NAME/leases/ADDR   one member's lease, claimed by link(2) of a fully written file;
//	                           its owner holds the file's flock for as long as it lives
//
// An address is claimed by the link, which fails if another has it: no lock. A lease whose flock
// can be taken has a dead owner, and whoever takes it reclaims it while holding it, so two
// reclaimers never undo one lease. The locks serialise only the making and deleting of a bridge
// (and of the tables, with the first and last bridge); see docs/networking.md, Locks.
const (
	lockFile   = "lock"
	bridgeJSON = "bridge.json"
	leasesDir  = "leases"
	subnetsDir = "subnets"
)

// pool is where bridge subnets come from, one /24 each.
var pool = netip.MustParsePrefix("10.89.0.0/16")

type stateRoot struct{ dir string }

func (s stateRoot) bridgeDir(name string) string { return filepath.Join(s.dir, bridgesDir, name) }
func (s stateRoot) bridgeFile(name string) string {
	return filepath.Join(s.bridgeDir(name), bridgeJSON)
}
func (s stateRoot) leasesDir(name string) string { return filepath.Join(s.bridgeDir(name), leasesDir) }
func (s stateRoot) leaseFile(name string, a netip.Addr) string {
	return filepath.Join(s.leasesDir(name), a.String())
}
func (s stateRoot) subnetClaim(p netip.Prefix) string {
	return filepath.Join(s.dir, subnetsDir, p.Addr().String())
}

// tag is what makes this root's kernel objects its own: the nft table name and the hash salt of
// interface names.
func (s stateRoot) table() string {
	if filepath.Clean(s.dir) == DefaultStateDir {
		return "safe_run"
	}
	return "safe_run_" + shortHash(filepath.Clean(s.dir))[:8]
}

func shortHash(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(h[:])
}

// bridgeIfname derives the bridge's interface name: Linux allows 15 bytes, network names 63, so it
// is a hash and the name lives in the state file.
func (s stateRoot) bridgeIfname(name string) string {
	return "sr-" + shortHash(filepath.Clean(s.dir), name)[:10]
}

// logGroup is the NFLOG group of the lease of address a: derived from the address, which is the
// root's alone (its subnets are claimed), so no two leases of a root share one and none is
// allotted. The default root's are 0x8000 and up for its first 128 subnets (other programs
// tend to use low groups); another root's are shifted by a hash of its path, so that two roots
// (parallel tests) rarely meet.
func (s stateRoot) logGroup(a netip.Addr) uint16 {
	b := a.As4()
	salt := uint16(0x8000)
	if filepath.Clean(s.dir) != DefaultStateDir {
		h := sha256.Sum256([]byte("nflog\x00" + filepath.Clean(s.dir)))
		salt = binary.BigEndian.Uint16(h[:2])
	}
	return binary.BigEndian.Uint16(b[2:]) ^ salt
}

func (s stateRoot) init() error {
	for _, d := range []string{s.dir, filepath.Join(s.dir, bridgesDir), filepath.Join(s.dir, netnsDir), filepath.Join(s.dir, filesDir), filepath.Join(s.dir, subnetsDir)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("network state: %w", err)
		}
	}
	return nil
}

// oldLayout refuses a root an older safe-run wrote (one JSON file per bridge, bridges/NAME.json):
// its leases are not where this one looks, so it would hand their addresses out again.
func (s stateRoot) oldLayout() error {
	old, _ := filepath.Glob(filepath.Join(s.dir, bridgesDir, "*.json"))
	if len(old) == 0 {
		return nil
	}
	return fmt.Errorf("network state %s was written by an older safe-run (%s): stop the services on its bridges, then run `safe-run network-cleanup %s`, which removes it", s.dir, old[0], s.dir)
}

// heldLock is a held flock.
type heldLock struct {
	f       *os.File
	how     int
	release func()
}

func (l *heldLock) unlock() {
	l.release()
	l.f.Close()
}

// lockPath takes path's flock (how: LOCK_SH or LOCK_EX, with LOCK_NB: busy is nil, nil). A
// bridge's deleter removes its lock file while holding it, so a lock taken on a file that is no
// longer path's is let go and taken again; create makes the file (and whoever makes it must have
// made its directory); without it, a missing file is nil, nil. flock, not a pid file: the kernel
// drops it when a SIGKILLed owner's descriptors close. An exclusive lock must be released on the
// goroutine that took it: its thread runs boosted meanwhile (internal/flock).
func lockPath(path string, how int, create bool) (*heldLock, error) {
	flags := os.O_RDWR | unix.O_CLOEXEC
	if create {
		flags |= os.O_CREATE
	}
	for {
		f, err := os.OpenFile(path, flags, 0o600)
		if !create && errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("network state lock: %w", err)
		}
		release, err := flock.Lock(f, how)
		if how&unix.LOCK_NB != 0 && errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, nil
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("network state lock %s: %w", path, err)
		}
		if sameFile(f, path) {
			return &heldLock{f: f, how: how, release: release}, nil
		}
		release()
		f.Close()
		if !create {
			return nil, nil
		}
	}
}

// sameFile reports whether path still names the file f has open.
func sameFile(f *os.File, path string) bool {
	a, err := f.Stat()
	if err != nil {
		return false
	}
	b, err := os.Lstat(path)
	return err == nil && os.SameFile(a, b)
}

// lockRoot takes the root's lock (see the layout above).
func (s stateRoot) lockRoot(how int) (*heldLock, error) {
	return lockPath(filepath.Join(s.dir, lockFile), how, true)
}

// lockBridge takes bridge name's lock, making its directory (and so the bridge's place) if need be.
func (s stateRoot) lockBridge(name string, how int) (*heldLock, error) {
	for {
		if err := os.MkdirAll(s.bridgeDir(name), 0o700); err != nil {
			return nil, fmt.Errorf("network state: %w", err)
		}
		lk, err := lockPath(filepath.Join(s.bridgeDir(name), lockFile), how, true)
		if errors.Is(err, fs.ErrNotExist) {
			continue // its deleter removed the directory between the two
		}
		return lk, err
	}
}

// bridgeNames lists the bridges that have a directory.
func (s stateRoot) bridgeNames() ([]string, error) {
	return listDir(filepath.Join(s.dir, bridgesDir), fs.DirEntry.IsDir)
}

// listDir lists the entries of dir that keep takes, dot files (temporary ones) left out; none if
// dir is not there.
func listDir(dir string, keep func(fs.DirEntry) bool) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("network state: %w", err)
	}
	var out []string
	for _, e := range ents {
		if keep(e) && !strings.HasPrefix(e.Name(), ".") {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// bridges reads every bridge's state with its leases.
func (s stateRoot) bridges() (map[string]*bridgeState, error) {
	names, err := s.bridgeNames()
	if err != nil {
		return nil, err
	}
	out := map[string]*bridgeState{}
	for _, name := range names {
		b, err := s.readBridge(name)
		if err != nil {
			return nil, err
		}
		if b == nil {
			continue
		}
		if b.Leases, err = s.readLeases(b); err != nil {
			return nil, err
		}
		out[name] = b
	}
	return out, nil
}

// readBridge reads a bridge's state file, without its leases; nil, nil when the bridge has none.
func (s stateRoot) readBridge(name string) (*bridgeState, error) {
	data, err := os.ReadFile(s.bridgeFile(name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("network state: %w", err)
	}
	var b bridgeState
	if err := json.Unmarshal(data, &b); err != nil {
		return nil, fmt.Errorf("network state %s: %w (%s)", s.bridgeFile(name), err, s.corruptFix(name))
	}
	if err := s.checkBridge(name, &b); err != nil {
		return nil, fmt.Errorf("network state %s: %w (%s)", s.bridgeFile(name), err, s.corruptFix(name))
	}
	return &b, nil
}

// leaseNames lists the addresses leased on bridge name (temporary files left out).
func (s stateRoot) leaseNames(name string) ([]string, error) {
	return listDir(s.leasesDir(name), func(fs.DirEntry) bool { return true })
}

// readLeases reads b's leases; a lease that went meanwhile is left out.
func (s stateRoot) readLeases(b *bridgeState) ([]lease, error) {
	names, err := s.leaseNames(b.Name)
	if err != nil {
		return nil, err
	}
	var out []lease
	for _, n := range names {
		data, err := os.ReadFile(filepath.Join(s.leasesDir(b.Name), n))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("network state: %w", err)
		}
		l, err := s.parseLease(b, n, data)
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, nil
}

// parseLease reads lease file name of bridge b.
func (s stateRoot) parseLease(b *bridgeState, name string, data []byte) (lease, error) {
	var l lease
	path := filepath.Join(s.leasesDir(b.Name), name)
	if err := json.Unmarshal(data, &l); err != nil {
		return lease{}, fmt.Errorf("network state %s: %w (%s)", path, err, s.corruptLeaseFix(path))
	}
	if err := s.checkLease(b, name, l); err != nil {
		return lease{}, fmt.Errorf("network state %s: %w (%s)", path, err, s.corruptLeaseFix(path))
	}
	return l, nil
}

// corruptFix is what to do about a bridge state file that cannot be
// trusted: nothing reads it again until it is gone.
func (s stateRoot) corruptFix(name string) string {
	return fmt.Sprintf("corrupt or edited by hand: stop the services on bridge %s, then delete its directory %s and what it names: its interfaces (ip link) and namespaces under %s",
		name, s.bridgeDir(name), filepath.Join(s.dir, netnsDir))
}

func (s stateRoot) corruptLeaseFix(path string) string {
	return fmt.Sprintf("corrupt or edited by hand: stop the service it is of, then delete the file and what it names: its interface (ip link) and namespace under %s",
		filepath.Join(s.dir, netnsDir))
}

// checkBridge refuses a state file that parses but cannot be what Attach
// wrote: a disk, a crash on a file system that lost the rename's order,
// or a hand. Every name in it is one Cleanup deletes (an interface) and
// every address one a service is given, so a file naming the host's eth0,
// or a subnet that is not its own, is never acted on.
func (s stateRoot) checkBridge(name string, b *bridgeState) error {
	switch {
	case b.Name != name:
		return fmt.Errorf("it is the state of bridge %q, not of %q", b.Name, name)
	case !b.Routed && b.Ifname != s.bridgeIfname(name):
		return fmt.Errorf("interface %q is not bridge %s's (%s)", b.Ifname, name, s.bridgeIfname(name))
	case b.Routed && !vethName(b.Ifname):
		return fmt.Errorf("interface %q is not a veth safe-run names", b.Ifname)
	case !b.Subnet.IsValid() || !b.Subnet.Addr().Is4() || b.Subnet.Bits() != 24 || b.Subnet.Masked() != b.Subnet || !pool.Contains(b.Subnet.Addr()):
		return fmt.Errorf("subnet %s is not a /24 of %s", b.Subnet, pool)
	case b.Gateway != b.Subnet.Addr().Next():
		return fmt.Errorf("gateway %s is not the first address of %s", b.Gateway, b.Subnet)
	}
	// Two bridges on one subnet would give two services one address.
	if owner, err := os.Readlink(s.subnetClaim(b.Subnet)); err != nil || owner != name {
		if err != nil {
			owner = "no bridge's"
		} else {
			owner = "bridge " + owner + "'s"
		}
		return fmt.Errorf("subnet %s is %s (%s)", b.Subnet, owner, s.subnetClaim(b.Subnet))
	}
	return nil
}

// checkLease refuses a lease file that parses but cannot be what Attach wrote (see checkBridge).
func (s stateRoot) checkLease(b *bridgeState, file string, l lease) error {
	netns, _ := Paths(s.dir, l.Service, b.Name)
	switch {
	case !nameRE().MatchString(l.Service):
		return fmt.Errorf("service %q is no service name", l.Service)
	case l.Address.String() != file:
		return fmt.Errorf("address %s is not its file's", l.Address)
	case !b.Subnet.Contains(l.Address) || l.Address == b.Gateway || l.Address == b.Subnet.Addr() || !b.Subnet.Contains(l.Address.Next()):
		return fmt.Errorf("address %s of service %s is no member's address in %s", l.Address, l.Service, b.Subnet)
	case filepath.Clean(l.Netns) != netns:
		return fmt.Errorf("network namespace %q is not service %s's (%s)", l.Netns, l.Service, netns)
	case !vethName(l.HostVeth):
		return fmt.Errorf("interface %q is not a veth safe-run names", l.HostVeth)
	}
	return nil
}

// vethName reports whether n is a host veth name Attach makes: "sv-" and
// 10 hex digits.
func vethName(n string) bool {
	h, ok := strings.CutPrefix(n, "sv-")
	if !ok || len(h) != 10 {
		return false
	}
	_, err := hex.DecodeString(h)
	return err == nil
}

// writeBridge writes a new bridge's state file, by rename, so that a reader sees all of it or
// nothing. It is written once: its leases are files of their own.
func (s stateRoot) writeBridge(b *bridgeState) error {
	data, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Replace(s.bridgeFile(b.Name), data, 0o600); err != nil {
		return fmt.Errorf("network state: %w", err)
	}
	return nil
}

// claimSubnet claims a free /24 of the pool for bridge name: the first the host's routes and
// other bridges leave, made its own by the symlink, which fails if another bridge's start made
// it first (then the next one is tried). The caller holds the bridge's lock, exclusive, and found
// no state file: a claim naming the bridge was left by a maker killed before it wrote one, and is
// removed (else its bridge's deletion, which removes the claim its state file names, leaves it).
func (s stateRoot) claimSubnet(name string) (netip.Prefix, error) {
	var used []netip.Prefix
	ents, _ := os.ReadDir(filepath.Join(s.dir, subnetsDir))
	for _, e := range ents {
		a, err := netip.ParseAddr(e.Name())
		if err != nil {
			continue
		}
		p := netip.PrefixFrom(a, 24)
		if owner, _ := os.Readlink(s.subnetClaim(p)); owner == name {
			if err := os.Remove(s.subnetClaim(p)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return netip.Prefix{}, fmt.Errorf("network state: %w", err)
			}
			continue
		}
		used = append(used, p)
	}
	for {
		p, err := freeSubnet(used)
		if err != nil {
			return netip.Prefix{}, err
		}
		err = os.Symlink(name, s.subnetClaim(p))
		if err == nil {
			return p, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return netip.Prefix{}, fmt.Errorf("network state: %w", err)
		}
		used = append(used, p)
	}
}

// heldLease is a lease file its owner holds the flock of: while it does, no one reclaims it.
type heldLease struct {
	f    *os.File
	path string
}

// claimLease leases the first free address of b to l, whose Address and LogGroup it sets: the
// lease is written to a temporary file, locked, then linked to its address's name, which fails
// if another start has the address (then the next is tried). The caller holds b's lock (shared)
// so that b is not deleted meanwhile; the returned file's flock is the lease's life.
func (s stateRoot) claimLease(b *bridgeState, l *lease) (*heldLease, error) {
	dir := s.leasesDir(b.Name)
	tmp, err := os.CreateTemp(dir, ".tmp-")
	if err != nil {
		return nil, fmt.Errorf("network state: %w", err)
	}
	defer os.Remove(tmp.Name())
	// Not flock.Lock: the lock outlives this goroutine, and is never waited for.
	if err := unix.Flock(int(tmp.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("network state %s: %w", tmp.Name(), err)
	}
	names, err := s.leaseNames(b.Name)
	if err != nil {
		tmp.Close()
		return nil, err
	}
	taken := map[netip.Addr]bool{}
	for _, n := range names {
		if a, err := netip.ParseAddr(n); err == nil {
			taken[a] = true
		}
	}
	for {
		a, err := freeAddress(b, taken)
		if err != nil {
			tmp.Close()
			return nil, err
		}
		l.Address, l.LogGroup = a, s.logGroup(a)
		data, err := json.Marshal(l)
		if err == nil {
			err = tmp.Truncate(0)
		}
		if err == nil {
			_, err = tmp.WriteAt(data, 0)
		}
		if err != nil {
			tmp.Close()
			return nil, fmt.Errorf("network state %s: %w", tmp.Name(), err)
		}
		path := s.leaseFile(b.Name, a)
		err = os.Link(tmp.Name(), path)
		if err == nil {
			return &heldLease{f: tmp, path: path}, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			tmp.Close()
			return nil, fmt.Errorf("network state: %w", err)
		}
		taken[a] = true
	}
}

// rewrite replaces the held lease's content with l's: a new file, locked before it is renamed
// over the old one, so that the lease is never without its owner's lock.
func (h *heldLease) rewrite(l lease) error {
	data, err := json.Marshal(l)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(h.path), ".tmp-")
	if err != nil {
		return fmt.Errorf("network state: %w", err)
	}
	err = unix.Flock(int(tmp.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	if err == nil {
		_, err = tmp.Write(data)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), h.path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		tmp.Close()
		return fmt.Errorf("network state %s: %w", h.path, err)
	}
	h.f.Close()
	h.f = tmp
	return nil
}

// drop removes the lease file and lets its lock go: the lease's end. Only a file that is still
// its own is removed (a test may have removed it, and the address be another's by now).
func (h *heldLease) drop() error {
	var err error
	if sameFile(h.f, h.path) {
		if err = os.Remove(h.path); errors.Is(err, fs.ErrNotExist) {
			err = nil
		}
	}
	h.f.Close()
	if err != nil {
		return fmt.Errorf("network state: %w", err)
	}
	return nil
}

// takeLease takes the lease file at path if its owner is dead, that is, if its flock is free (or,
// wait, once it is: a reclaimer holds it): nil, nil when it is held, or gone.
func takeLease(path string, wait bool) (*heldLease, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("network state: %w", err)
	}
	how := unix.LOCK_EX | unix.LOCK_NB
	if wait {
		how = unix.LOCK_EX
	}
	for {
		err = unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil || !sameFile(f, path) {
		f.Close()
		if err != nil && !errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("network state %s: %w", path, err)
		}
		return nil, nil
	}
	return &heldLease{f: f, path: path}, nil
}

// read reads the held lease.
func (h *heldLease) read(s stateRoot, b *bridgeState) (lease, error) {
	data, err := io.ReadAll(io.NewSectionReader(h.f, 0, 1<<20))
	if err != nil {
		return lease{}, fmt.Errorf("network state %s: %w", h.path, err)
	}
	return s.parseLease(b, filepath.Base(h.path), data)
}

// alive reports whether the lease's owner still runs: same pid, same start time. The lease
// file's flock says the same to whoever may reclaim it; a reader that only looks (the resolver)
// asks /proc instead, so as never to hold a lock a reclaimer would find taken.
func (l lease) alive() bool {
	return l.Start != 0 && proc.Alive(l.PID, l.Start)
}

// Members lists the live members of a bridge: service name -> address. The resolver calls it for
// each query; it reads the lease files without a lock (each is written whole before it is
// linked or renamed into place) so an Attach never stalls DNS.
func Members(stateDir, bridge string) (map[string]netip.Addr, error) {
	return liveLeases(stateDir, bridge, func(l lease) (string, netip.Addr) { return l.Service, l.Address })
}

// memberDNS returns the live members' [network] dns by address (empty: the host's).
func memberDNS(stateDir, bridge string) (map[netip.Addr][]netip.Addr, error) {
	return liveLeases(stateDir, bridge, func(l lease) (netip.Addr, []netip.Addr) { return l.Address, l.DNS })
}

func liveLeases[K comparable, V any](stateDir, bridge string, kv func(lease) (K, V)) (map[K]V, error) {
	root := stateRoot{stateDir}
	b, err := root.readBridge(bridge)
	if err != nil || b == nil {
		return map[K]V{}, err
	}
	leases, err := root.readLeases(b)
	if err != nil {
		return nil, err
	}
	out := make(map[K]V, len(leases))
	for _, l := range leases {
		if l.alive() {
			k, v := kv(l)
			out[k] = v
		}
	}
	return out, nil
}
