package network

import (
	"crypto/sha256"
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
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/internal/atomicfile"
	"github.com/safe-run/safe-run/internal/flock"
	"github.com/safe-run/safe-run/internal/proc"
)

// lockFile is the state root's flock: every change to bridges and leases holds it (a service's
// firewall chains are written outside it: nft_linux.go).
const lockFile = "lock"

// pool is where bridge subnets come from, one /24 each.
var pool = netip.MustParsePrefix("10.89.0.0/16")

type stateRoot struct{ dir string }

func (s stateRoot) bridgeFile(name string) string {
	return filepath.Join(s.dir, bridgesDir, name+".json")
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

func (s stateRoot) init() error {
	for _, d := range []string{s.dir, filepath.Join(s.dir, bridgesDir), filepath.Join(s.dir, netnsDir), filepath.Join(s.dir, filesDir)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("network state: %w", err)
		}
	}
	return nil
}

// rootLock is a held flock on the state root's lock file.
type rootLock struct {
	f       *os.File
	release func()
}

// lock takes the state root's exclusive lock; unlock releases it. flock, not a pid file: the
// kernel drops it when a SIGKILLed owner's descriptors close. The caller must unlock on the
// same goroutine: the thread runs boosted meanwhile (internal/flock).
func (s stateRoot) lock() (*rootLock, error) {
	return s.flock(filepath.Join(s.dir, lockFile), unix.LOCK_EX)
}

func (s stateRoot) flock(path string, how int) (*rootLock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("network state lock: %w", err)
	}
	release, err := flock.Lock(f, how)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("network state lock %s: %w", f.Name(), err)
	}
	return &rootLock{f: f, release: release}, nil
}

func (l *rootLock) unlock() {
	l.release()
	l.f.Close()
}

// bridges reads every bridge state file.
func (s stateRoot) bridges() (map[string]*bridgeState, error) { return s.bridgesSince(nil) }

// bridgesSince reads every bridge state file, reusing prev's copy of one not replaced since prev
// was read (same inode, change time and size: every write is a new file renamed over the old).
// The lock is then held for a stat per bridge, not for parsing 50 leases again (issue 19).
func (s stateRoot) bridgesSince(prev map[string]*bridgeState) (map[string]*bridgeState, error) {
	ents, err := os.ReadDir(filepath.Join(s.dir, bridgesDir))
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]*bridgeState{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("network state: %w", err)
	}
	out := map[string]*bridgeState{}
	subnets := map[netip.Prefix]string{}
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		var b *bridgeState
		if p := prev[name]; p != nil {
			if fi, err := os.Stat(s.bridgeFile(name)); err == nil && idOf(fi) == p.file {
				b = p
			}
		}
		if b == nil {
			if b, err = s.readBridge(name); err != nil {
				return nil, err
			}
		}
		if b == nil {
			continue
		}
		// Two bridges on one subnet would give two services one address.
		if other, dup := subnets[b.Subnet]; dup {
			return nil, fmt.Errorf("network state %s: subnet %s is bridge %s's too (%s)", s.bridgeFile(name), b.Subnet, other, s.corruptFix(name))
		}
		subnets[b.Subnet] = name
		out[name] = b
	}
	return out, nil
}

func idOf(fi fs.FileInfo) fileID {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}
	}
	return fileID{ino: st.Ino, size: uint64(st.Size), ctime: st.Ctim.Nano()}
}

// readBridge returns nil, nil when the bridge has no state file.
func (s stateRoot) readBridge(name string) (*bridgeState, error) {
	f, err := os.Open(s.bridgeFile(name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("network state: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("network state: %w", err)
	}
	data, err := io.ReadAll(f)
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
	b.file = idOf(fi)
	return &b, nil
}

// corruptFix is what to do about a bridge state file that cannot be
// trusted: nothing reads it again until it is gone.
func (s stateRoot) corruptFix(name string) string {
	return fmt.Sprintf("corrupt or edited by hand: stop the services on bridge %s, then delete the file and what it names: its interfaces (ip link) and namespaces under %s",
		name, filepath.Join(s.dir, netnsDir))
}

// checkBridge refuses a state file that parses but cannot be what Attach
// wrote: a disk, a crash on a file system that lost the rename's order,
// or a hand. Every name in it is one Cleanup deletes (an interface, a
// bind-mounted namespace) and every address one a service is given, so a
// file naming the host's eth0, a path outside the state root or an
// address twice is never acted on.
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
	addrs, services := map[netip.Addr]string{}, map[string]bool{}
	for i, l := range b.Leases {
		netns, _ := Paths(s.dir, l.Service, name)
		switch {
		case l.Service == "" || services[l.Service]:
			return fmt.Errorf("leases[%d]: service %q is empty or leased twice", i, l.Service)
		case !b.Subnet.Contains(l.Address) || l.Address == b.Gateway || !b.Subnet.Contains(l.Address.Next()):
			return fmt.Errorf("leases[%d]: address %s of service %s is no member's address in %s", i, l.Address, l.Service, b.Subnet)
		case addrs[l.Address] != "":
			return fmt.Errorf("leases[%d]: address %s is leased to both %s and %s", i, l.Address, addrs[l.Address], l.Service)
		case filepath.Clean(l.Netns) != netns:
			return fmt.Errorf("leases[%d]: network namespace %q is not service %s's (%s)", i, l.Netns, l.Service, netns)
		case !vethName(l.HostVeth):
			return fmt.Errorf("leases[%d]: interface %q is not a veth safe-run names", i, l.HostVeth)
		}
		addrs[l.Address], services[l.Service] = l.Service, true
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

// writeBridge replaces the file by rename, so a reader without the lock (Members, for every DNS
// query) sees the old or the new file, never half of one.
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

func (s stateRoot) removeBridge(name string) error {
	if err := os.Remove(s.bridgeFile(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("network state: %w", err)
	}
	return nil
}

// alive reports whether the lease's owner still runs: same pid, same start time.
func (l lease) alive() bool {
	return l.Start != 0 && proc.Alive(l.PID, l.Start)
}

// Members lists the live members of a bridge: service name -> address. The resolver calls it for
// each query; it reads the state file without the lock (writes are atomic renames) so a long
// Attach never stalls DNS.
func Members(stateDir, bridge string) (map[string]netip.Addr, error) {
	return liveLeases(stateDir, bridge, func(l lease) (string, netip.Addr) { return l.Service, l.Address })
}

// memberDNS returns the live members' [network] dns by address (empty: the host's).
func memberDNS(stateDir, bridge string) (map[netip.Addr][]netip.Addr, error) {
	return liveLeases(stateDir, bridge, func(l lease) (netip.Addr, []netip.Addr) { return l.Address, l.DNS })
}

func liveLeases[K comparable, V any](stateDir, bridge string, kv func(lease) (K, V)) (map[K]V, error) {
	b, err := stateRoot{stateDir}.readBridge(bridge)
	if err != nil || b == nil {
		return map[K]V{}, err
	}
	out := make(map[K]V, len(b.Leases))
	for _, l := range b.Leases {
		if l.alive() {
			k, v := kv(l)
			out[k] = v
		}
	}
	return out, nil
}
