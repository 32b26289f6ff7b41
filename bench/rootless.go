package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// rootlessBenchUser is the unprivileged user of the rootless network rows:
// the one launcher's rootless tests create, with subordinate ids.
const rootlessBenchUser = "safe-run-test"

// startRootlessPeer runs netpeer as rootlessBenchUser with both ports
// published on 127.0.0.1 and fills l.rlSink and l.rlEcho. What this host
// lacks for it (the user, pasta, /dev/net/tun) is returned as why, not as
// an error: the root rows still run.
func (e *env) startRootlessPeer(ctx context.Context, l *netLab) (why string, err error) {
	u, err := user.Lookup(rootlessBenchUser)
	if err != nil {
		return fmt.Sprintf("no user %s (go test ./launcher -run TestRootlessBridge creates it)", rootlessBenchUser), nil
	}
	if !subIDs(rootlessBenchUser) {
		return fmt.Sprintf("user %s has no subordinate ids in /etc/subuid", rootlessBenchUser), nil
	}
	if _, err := exec.LookPath("pasta"); err != nil {
		return "pasta is not installed", nil
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	undo, why := grantTun(uid)
	if why != "" {
		return why, nil
	}
	e.defer_(undo)
	home, err := e.dir("rootless")
	if err != nil {
		return "", err
	}
	for _, d := range []string{home, filepath.Join(home, "xdg"), filepath.Join(home, "data")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return "", err
		}
		if err := os.Chown(d, uid, gid); err != nil {
			return "", err
		}
	}
	sink, err := freePort()
	if err != nil {
		return "", err
	}
	echo, err := freePort()
	if err != nil {
		return "", err
	}
	lo := netip.MustParseAddr("127.0.0.1")
	name := "bench-net-rl"
	m := filepath.Join(home, name+".toml")
	text := fmt.Sprintf(`version = 1
name = %q

[image]
rootfs = %q

[process]
command = ["/bin/netpeer", "%d", "%d"]

[network]
mode = "bridge"
ports = ["127.0.0.1:%d:%d", "127.0.0.1:%d:%d"]

[resources]
memory = %q
cpus = %s
pids = %d

[insecure]
reason = "the bench's rootless network rows on a cgroup v1 host: limits cannot be delegated"
allow = ["no_resource_limits"]
`, name, l.rootfs, sinkPort, echoPort, sink, sinkPort, echo, echoPort, benchMemory, benchCPUs, benchPids)
	if err := os.WriteFile(m, []byte(text), 0o644); err != nil {
		return "", err
	}
	cmd := exec.Command(e.safeRun(), m)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + home, "XDG_RUNTIME_DIR=" + filepath.Join(home, "xdg"), "XDG_DATA_HOME=" + filepath.Join(home, "data")}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	cmd.Dir = home
	s, reported, err := startCmd(name, cmd)
	if err != nil {
		return "", err
	}
	if _, err := waitReport(ctx, s, reported); err != nil {
		return "", fmt.Errorf("rootless: %w", err)
	}
	e.defer_(s.stop)
	l.rlSink, l.rlEcho = netip.AddrPortFrom(lo, sink), netip.AddrPortFrom(lo, echo)
	return "", nil
}

// grantTun lets uid open /dev/net/tun, as pasta must, until undo, when
// the device's mode does not (0600 in some containers and sandboxes): an
// ACL entry for uid alone, removed by undo with the mode restored. As
// launcher's rootless tests do.
func grantTun(uid int) (undo func(), why string) {
	const tun = "/dev/net/tun"
	st, err := os.Stat(tun)
	if err != nil {
		return nil, fmt.Sprintf("pasta needs %s: %v", tun, err)
	}
	if st.Mode().Perm()&0o006 == 0o006 {
		return func() {}, ""
	}
	if n, _ := unix.Getxattr(tun, "system.posix_acl_access", nil); n > 0 {
		// Another program's, or a rootless test's that grants the same
		// user: usable as it is, never changed.
		buf := make([]byte, n)
		if n, err = unix.Getxattr(tun, "system.posix_acl_access", buf); err == nil && aclGrants(buf[:n], uid) {
			return func() {}, ""
		}
		return nil, fmt.Sprintf("%s already has an ACL, without %s: not changing it", tun, rootlessBenchUser)
	}
	const all = 0xffffffff
	acl := binary.LittleEndian.AppendUint32(nil, 2) // POSIX_ACL_XATTR_VERSION
	for _, e := range []struct {
		tag, perm uint16
		id        uint32
	}{{0x01, 6, all}, {0x02, 6, uint32(uid)}, {0x04, uint16(st.Mode().Perm()>>3) & 7, all}, {0x10, 6, all}, {0x20, uint16(st.Mode().Perm()) & 7, all}} {
		acl = binary.LittleEndian.AppendUint16(acl, e.tag)
		acl = binary.LittleEndian.AppendUint16(acl, e.perm)
		acl = binary.LittleEndian.AppendUint32(acl, e.id)
	}
	if err := unix.Setxattr(tun, "system.posix_acl_access", acl, 0); err != nil {
		return nil, fmt.Sprintf("%s is mode %04o and takes no ACL for %s: %v", tun, st.Mode().Perm(), rootlessBenchUser, err)
	}
	return func() {
		_ = unix.Removexattr(tun, "system.posix_acl_access")
		_ = os.Chmod(tun, st.Mode().Perm())
	}, ""
}

// aclGrants says whether the POSIX ACL xattr value acl gives uid read and
// write: a version word, then (tag, perm, id) entries of 2, 2 and 4 bytes.
func aclGrants(acl []byte, uid int) bool {
	if len(acl) < 4 {
		return false
	}
	for e := acl[4:]; len(e) >= 8; e = e[8:] {
		tag, perm, id := binary.LittleEndian.Uint16(e), binary.LittleEndian.Uint16(e[2:]), binary.LittleEndian.Uint32(e[4:])
		if tag == 0x02 && id == uint32(uid) && perm&6 == 6 { // ACL_USER
			return true
		}
	}
	return false
}
