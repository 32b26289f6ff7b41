package network

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"strconv"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Sysctls set inside every service's namespace. The namespace belongs to the initial user
// namespace, so the container cannot change them back.
var netnsSysctls = []struct{ key, value string }{
	// Ports below 1024 need no capability: the service binds :80 without NET_BIND_SERVICE.
	{"net/ipv4/ip_unprivileged_port_start", "0"},
	// IPv4 only: the egress rules and the isolation are written for IPv4.
	{"net/ipv6/conf/all/disable_ipv6", "1"},
	{"net/ipv6/conf/default/disable_ipv6", "1"},
}

// makeNetns creates a network namespace and bind-mounts it on path (created here).
func makeNetns(path string) error {
	ns, err := newNetns()
	if err != nil {
		return err
	}
	defer ns.Close()
	return mountNetns(ns, path)
}

// newNetns creates a network namespace with its sysctls set and lo up, and returns it open; it
// ends when the file is closed, unless mountNetns has bound it somewhere. It runs on a locked
// thread that returns to the host's namespace before it is unlocked. A thread left in the
// namespace would hold it, and the veth pair in it, for as long as the thread lives: Go ends a
// locked thread whose goroutine exits, except the main thread, which it parks for good instead.
func newNetns() (*os.File, error) {
	type result struct {
		ns  *os.File
		err error
	}
	res := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		self := "/proc/self/task/" + strconv.Itoa(unix.Gettid()) + "/ns/net"
		home, err := os.Open(self)
		if err != nil {
			runtime.UnlockOSThread()
			res <- result{nil, fmt.Errorf("netns of this thread: %w", err)}
			return
		}
		defer home.Close()
		ns, err := func() (*os.File, error) {
			if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
				return nil, fmt.Errorf("unshare netns: %w", err)
			}
			// /proc/sys/net shows the namespace of the thread that opens it.
			for _, s := range netnsSysctls {
				if err := os.WriteFile("/proc/sys/"+s.key, []byte(s.value), 0); err != nil {
					return nil, fmt.Errorf("netns sysctl %s: %w", s.key, err)
				}
			}
			lo, err := netlink.LinkByName("lo")
			if err != nil {
				return nil, fmt.Errorf("netns lo: %w", err)
			}
			if err := netlink.LinkSetUp(lo); err != nil {
				return nil, fmt.Errorf("netns lo up: %w", err)
			}
			ns, err := os.Open(self)
			if err != nil {
				return nil, fmt.Errorf("netns: %w", err)
			}
			return ns, nil
		}()
		if serr := unix.Setns(int(home.Fd()), unix.CLONE_NEWNET); serr != nil {
			// Stays locked: the thread ends (or is parked) with this goroutine rather
			// than carry the namespace into other code.
			if ns != nil {
				ns.Close()
			}
			res <- result{nil, errors.Join(err, fmt.Errorf("returning from the new netns: %w", serr))}
			return
		}
		runtime.UnlockOSThread()
		res <- result{ns, err}
	}()
	r := <-res
	return r.ns, r.err
}

// StartNamespace starts making a network namespace for Options.Namespace, in the background.
func StartNamespace() *Namespace {
	n := &Namespace{done: make(chan struct{})}
	go func() {
		defer close(n.done)
		n.ns, n.err = newNetns()
	}()
	return n
}

// mountNetns bind-mounts the namespace ns on path, which it creates.
func mountNetns(ns *os.File, path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL|unix.O_CLOEXEC, 0o400)
	if err != nil {
		return fmt.Errorf("netns file: %w", err)
	}
	f.Close()
	if err := unix.Mount("/proc/self/fd/"+strconv.Itoa(int(ns.Fd())), path, "", unix.MS_BIND, ""); err != nil {
		return errors.Join(fmt.Errorf("bind-mounting netns on %s: %w", path, err), removeNetns(path))
	}
	return nil
}

// removeNetns detaches the bind mount and deletes the file. The namespace itself, and the veth end
// in it, go when the last process in it exits.
func removeNetns(path string) error {
	err := unix.Unmount(path, unix.MNT_DETACH)
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmounting netns %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing netns %s: %w", path, err)
	}
	return nil
}
