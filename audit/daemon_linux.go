package audit

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/policy"
)

// probeDaemon finds the daemon's exposure on this host: its socket and who
// may use it, and the TCP ports the daemon process listens on. It returns
// notes for what it could not find out.
func probeDaemon(ctx context.Context, c *Client, d *policy.Daemon) []string {
	if c.socket == "" {
		// Reached over TCP: that listener is the exposure we can see.
		u, _ := url.Parse(c.base)
		l := policy.Listener{Addr: u.Host, TLS: c.TLS, ClientAuth: c.TLS}
		if c.TLS {
			l.ClientAuth = !answersWithoutClientCert(ctx, u.Host)
		}
		d.Listeners = append(d.Listeners, l)
		return []string{"the engine was reached over TCP: its unix socket and other listeners are not visible from here (run audit on the engine's host)"}
	}
	var notes []string
	sock, err := socketInfo(c.socket)
	if err != nil {
		notes = append(notes, err.Error())
	} else {
		d.Socket = sock
	}
	pid, err := peerPID(ctx, c.socket)
	if err != nil {
		return append(notes, fmt.Sprintf("finding the daemon's process: %v (its TCP listeners were not checked)", err))
	}
	addrs, err := listeningTCP(pid)
	if err != nil {
		return append(notes, fmt.Sprintf("listing the TCP ports of dockerd (pid %d): %v (run audit as root)", pid, err))
	}
	for _, a := range addrs {
		d.Listeners = append(d.Listeners, probeListener(ctx, a))
	}
	return notes
}

// socketInfo stats the socket and names its owner, group and the group's
// members.
func socketInfo(path string) (*policy.Socket, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("checking the docker socket: %w", err)
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return nil, errors.New("checking the docker socket: no ownership information")
	}
	users, groups := readIDs("/etc/passwd"), readGroups("/etc/group")
	s := &policy.Socket{
		Path:  path,
		Mode:  uint32(st.Mode().Perm()),
		Owner: nameOr(users, sys.Uid),
		Group: strconv.FormatUint(uint64(sys.Gid), 10),
	}
	if g, ok := groups[sys.Gid]; ok {
		s.Group = g.name
		s.Members = append(s.Members, g.members...)
	}
	// Users whose primary group it is are members too.
	for _, u := range users {
		if u.gid == sys.Gid && !slices.Contains(s.Members, u.name) {
			s.Members = append(s.Members, u.name)
		}
	}
	// root is root anyway; listing it would make every host a finding.
	s.Members = slices.DeleteFunc(s.Members, func(m string) bool { return m == "root" || m == "" })
	slices.Sort(s.Members)
	return s, nil
}

type passwdEntry struct {
	name     string
	uid, gid uint32
}

func readIDs(path string) []passwdEntry {
	var out []passwdEntry
	eachLine(path, func(f []string) {
		if len(f) >= 4 {
			uid, err1 := strconv.ParseUint(f[2], 10, 32)
			gid, err2 := strconv.ParseUint(f[3], 10, 32)
			if err1 == nil && err2 == nil {
				out = append(out, passwdEntry{f[0], uint32(uid), uint32(gid)})
			}
		}
	})
	return out
}

type groupEntry struct {
	name    string
	members []string
}

func readGroups(path string) map[uint32]groupEntry {
	out := map[uint32]groupEntry{}
	eachLine(path, func(f []string) {
		if len(f) >= 4 {
			if gid, err := strconv.ParseUint(f[2], 10, 32); err == nil {
				var m []string
				if f[3] != "" {
					m = strings.Split(f[3], ",")
				}
				out[uint32(gid)] = groupEntry{f[0], m}
			}
		}
	})
	return out
}

func eachLine(path string, fn func([]string)) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := sc.Text(); l != "" && !strings.HasPrefix(l, "#") {
			fn(strings.Split(l, ":"))
		}
	}
}

func nameOr(users []passwdEntry, uid uint32) string {
	for _, u := range users {
		if u.uid == uid {
			return u.name
		}
	}
	return strconv.FormatUint(uint64(uid), 10)
}

// peerPID is the pid of the process serving the unix socket: the kernel
// records the credentials of a socket's peer (SO_PEERCRED), which cannot
// be spoofed the way a pidfile can be stale.
func peerPID(ctx context.Context, socket string) (int, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	raw, err := conn.(*net.UnixConn).SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		cred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if serr != nil {
		return 0, serr
	}
	if cred.Pid == 0 {
		return 0, errors.New("the socket's peer is in another PID namespace")
	}
	return int(cred.Pid), nil
}

// listeningTCP lists the TCP addresses process pid listens on: the
// listening sockets of its network namespace (/proc/PID/net/tcp{,6}) whose
// inodes are among its open files.
func listeningTCP(pid int) ([]string, error) {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return nil, err
	}
	own := map[string]bool{}
	for _, fd := range fds {
		link, err := os.Readlink(filepath.Join(fmt.Sprintf("/proc/%d/fd", pid), fd.Name()))
		if err == nil && strings.HasPrefix(link, "socket:[") {
			own[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
		}
	}
	var out []string
	for _, file := range []string{"tcp", "tcp6"} {
		eachField(fmt.Sprintf("/proc/%d/net/%s", pid, file), func(f []string) {
			// sl local_address rem_address st ... inode (field 9)
			if len(f) < 10 || f[3] != "0A" || !own[f[9]] {
				return
			}
			if a, ok := decodeAddr(f[1]); ok {
				out = append(out, a)
			}
		})
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

func eachField(path string, fn func([]string)) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fn(strings.Fields(sc.Text()))
	}
}

// decodeAddr reads /proc/net/tcp's hex address: 0100007F:5CDE is
// 127.0.0.1:23774 (the IP in host byte order, little-endian here).
func decodeAddr(s string) (string, bool) {
	ipHex, portHex, ok := strings.Cut(s, ":")
	if !ok {
		return "", false
	}
	port, err := strconv.ParseUint(portHex, 16, 16)
	if err != nil {
		return "", false
	}
	raw := make([]byte, len(ipHex)/2)
	for i := range raw {
		b, err := strconv.ParseUint(ipHex[2*i:2*i+2], 16, 8)
		if err != nil {
			return "", false
		}
		raw[i] = byte(b)
	}
	// Each 32-bit word is in host (little-endian) order.
	for w := 0; w+4 <= len(raw); w += 4 {
		raw[w], raw[w+1], raw[w+2], raw[w+3] = raw[w+3], raw[w+2], raw[w+1], raw[w]
	}
	return net.JoinHostPort(net.IP(raw).String(), strconv.FormatUint(port, 10)), true
}

// probeListener asks the listener at addr for /_ping: in plain HTTP, then
// in TLS without a client certificate. An answer either way means anyone
// who reaches the port controls the daemon. Only this host's addresses are
// probed (a wildcard listener through loopback).
func probeListener(ctx context.Context, addr string) policy.Listener {
	host, port, _ := net.SplitHostPort(addr)
	target := addr
	switch host {
	case "0.0.0.0":
		target = net.JoinHostPort("127.0.0.1", port)
	case "::":
		target = net.JoinHostPort("::1", port)
	}
	l := policy.Listener{Addr: addr}
	client := &http.Client{Timeout: 3 * time.Second}
	if pingOK(ctx, client, "http://"+target) {
		return l
	}
	l.TLS = true
	l.ClientAuth = !answersWithoutClientCert(ctx, target)
	return l
}

func answersWithoutClientCert(ctx context.Context, target string) bool {
	client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{
		// Only asking whether the port answers without a client
		// certificate; the server's identity does not matter for that.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec
	}}
	return pingOK(ctx, client, "https://"+target)
}

func pingOK(ctx context.Context, client *http.Client, base string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/_ping", nil)
	if err != nil {
		return false
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64))
	return resp.StatusCode == http.StatusOK && strings.TrimSpace(string(body)) == "OK"
}
