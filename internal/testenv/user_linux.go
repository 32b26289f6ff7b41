package testenv

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// RootlessUser is the unprivileged user the rootless tests run safe-run
// as; EnsureUser creates it, with a range of subordinate ids, when it is
// missing.
const RootlessUser = "safe-run-test"

// EnsureUser creates the system user name, when missing, with the
// subordinate ids 300000-365535, and returns its uid and gid. It needs
// root.
func EnsureUser(t testing.TB, name string) (uid, gid uint32) {
	t.Helper()
	RequireRoot(t)
	if _, err := exec.Command("id", name).Output(); err != nil {
		if out, err := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name).CombinedOutput(); err != nil {
			t.Fatalf("useradd: %v: %s", err, out)
		}
	}
	subuid, err := os.ReadFile("/etc/subuid")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	if !strings.Contains(string(subuid), name+":") {
		if out, err := exec.Command("usermod", "--add-subuids", "300000-365535", "--add-subgids", "300000-365535", name).CombinedOutput(); err != nil {
			t.Fatalf("usermod: %v: %s", err, out)
		}
	}
	for _, f := range []struct {
		flag string
		dst  *uint32
	}{{"-u", &uid}, {"-g", &gid}} {
		out, err := exec.Command("id", f.flag, name).Output()
		if err != nil {
			t.Fatal(err)
		}
		n, err := strconv.ParseUint(strings.TrimSpace(string(out)), 10, 32)
		if err != nil {
			t.Fatalf("id %s %s: %q", f.flag, name, out)
		}
		*f.dst = uint32(n)
	}
	return uid, gid
}

// GrantTun lets uid open /dev/net/tun, as pasta must, for the test's
// duration, when the device's mode does not (0600 in some containers and
// sandboxes; the kernel's default is 0666): an ACL entry for uid alone,
// removed afterwards with the mode restored. An ACL that already grants
// uid (another test's, running beside this one) is used as it is.
//
// Tests of other processes grant it at the same time (go test runs the
// packages in parallel: launcher's and soak's rootless tests): each holds
// a shared lock on tunLock while it needs the grant, and only the last
// one out, which gets the lock exclusive, takes the ACL away. A test that
// took the ACL away under another one's feet failed it at random, its
// pasta refused /dev/net/tun halfway through.
func GrantTun(t testing.TB, uid uint32) {
	t.Helper()
	const tun = "/dev/net/tun"
	if st, err := os.Stat(tun); err != nil {
		Skip(t, "needs %s: %v", tun, err)
	} else if st.Mode().Perm()&0o006 == 0o006 {
		return
	}
	lock, err := os.OpenFile(tunLock, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatalf("the lock of %s's grant: %v", tun, err)
	}
	// Waits while the last holder takes the ACL away.
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_SH); err != nil {
		lock.Close()
		t.Fatalf("the lock of %s's grant: %v", tun, err)
	}
	t.Cleanup(func() {
		defer lock.Close()
		// Converting the lock may lose it to a waiting holder, which
		// keeps the ACL then: only an exclusive one removes it.
		if unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
			return
		}
		if err := revokeTun(tun); err != nil {
			t.Errorf("taking the ACL of %s away: %v", tun, err)
		}
	})
	st, err := os.Stat(tun)
	if err != nil {
		t.Fatal(err)
	}
	const all = 0xffffffff
	userEntry := aclEntry(aclUser, 6, uid)
	old := make([]byte, 256)
	if n, _ := unix.Getxattr(tun, "system.posix_acl_access", old); n > 0 {
		if bytes.Contains(old[:n], userEntry) {
			return
		}
		t.Fatalf("%s already has an ACL, without uid %d: not changing it", tun, uid)
	}
	mode := st.Mode().Perm()
	acl := binary.LittleEndian.AppendUint32(nil, 2) // POSIX_ACL_XATTR_VERSION
	acl = append(acl, aclEntry(aclUserObj, uint16(mode>>6)&7, all)...)
	acl = append(acl, userEntry...)
	acl = append(acl, aclEntry(aclGroupObj, uint16(mode>>3)&7, all)...)
	acl = append(acl, aclEntry(aclMask, 6, all)...)
	acl = append(acl, aclEntry(aclOther, uint16(mode)&7, all)...)
	if err := unix.Setxattr(tun, "system.posix_acl_access", acl, 0); err != nil {
		Skip(t, "%s is mode %04o and takes no ACL for the test user: %v", tun, mode, err)
	}
}

// tunLock is GrantTun's lock, shared by the test processes of a host.
const tunLock = "/run/lock/safe-run-test-tun.lock"

// The tags of POSIX ACL entries (linux/posix_acl.h).
const (
	aclUserObj  = 0x01
	aclUser     = 0x02
	aclGroupObj = 0x04
	aclMask     = 0x10
	aclOther    = 0x20
)

func aclEntry(tag, perm uint16, id uint32) []byte {
	b := binary.LittleEndian.AppendUint16(nil, tag)
	b = binary.LittleEndian.AppendUint16(b, perm)
	return binary.LittleEndian.AppendUint32(b, id)
}

// revokeTun takes GrantTun's ACL away from tun and gives it back the mode
// it had before, which the ACL keeps (while an ACL has a mask, the mode's
// group bits are the mask's): whoever set it, this process or another.
func revokeTun(tun string) error {
	b := make([]byte, 256)
	n, err := unix.Getxattr(tun, "system.posix_acl_access", b)
	if errors.Is(err, unix.ENODATA) {
		return nil
	}
	if err != nil {
		return err
	}
	var mode os.FileMode
	for e := b[4:n]; len(e) >= 8; e = e[8:] {
		perm := os.FileMode(binary.LittleEndian.Uint16(e[2:]) & 7)
		switch binary.LittleEndian.Uint16(e) {
		case aclUserObj:
			mode |= perm << 6
		case aclGroupObj:
			mode |= perm << 3
		case aclOther:
			mode |= perm
		}
	}
	if err := unix.Removexattr(tun, "system.posix_acl_access"); err != nil && !errors.Is(err, unix.ENODATA) {
		return err
	}
	return os.Chmod(tun, mode)
}

// UserProcesses are the live processes of uid: not zombies, nor exiting.
func UserProcesses(uid uint32) []string {
	var pids []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		st, err := os.Stat("/proc/" + e.Name())
		if err != nil || st.Sys().(*syscall.Stat_t).Uid != uid {
			continue
		}
		stat, _ := os.ReadFile("/proc/" + e.Name() + "/stat")
		if i := bytes.LastIndexByte(stat, ')'); i > 0 && len(stat) > i+2 && stat[i+2] == 'Z' {
			continue
		}
		// An empty command line is a process on its way out, its memory
		// already gone (a user's process is never a kernel thread): not
		// left behind (a CI run counted one of the soak's, which runs as
		// the same user beside the launcher's tests).
		if cmd, err := os.ReadFile("/proc/" + e.Name() + "/cmdline"); err != nil || len(cmd) == 0 {
			continue
		}
		pids = append(pids, e.Name())
	}
	return pids
}

// Cmdline is process pid's command line, its arguments joined by spaces.
func Cmdline(pid string) string {
	b, _ := os.ReadFile("/proc/" + pid + "/cmdline")
	return strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
}
