package launcher_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/vishvananda/netns"

	"github.com/safe-run/safe-run/internal/testenv"
)

// TestRootlessBridge runs bridge-mode services as an unprivileged user:
// each gets a network namespace of the inner safe-run's, connected to the
// host by pasta. Test traffic goes only to the host's loopback and to a
// test host in a network namespace this test makes as root.
func TestRootlessBridge(t *testing.T) {
	setup(t)
	testenv.RequireTool(t, "pasta")
	h := newRootlessHome(t, "rootless-net")
	u, home := h.u, h.dir
	grantTun(t, u.uid)
	os.MkdirAll(filepath.Join(home, "www"), 0o700)
	os.Chown(filepath.Join(home, "www"), int(u.uid), int(u.gid))
	os.WriteFile(filepath.Join(home, "www", "index.html"), []byte("hello from a rootless bridge\n"), 0o644)
	asUser := h.cmd
	write := h.manifest
	var serveOn func(t *testing.T, name, addr string, port int) (*exec.Cmd, *testenv.Buffer)
	// serve starts a web service publishing port 80 on 127.0.0.1:port
	// (not its second server, on 81) and waits until it answers.
	serve := func(t *testing.T, name string, port int) *exec.Cmd {
		t.Helper()
		c, _ := serveOn(t, name, "127.0.0.1", port)
		return c
	}
	// serveOn publishes on addr; the service's output (its start report,
	// and the client address of each request: httpd -v) is returned.
	serveOn = func(t *testing.T, name, addr string, port int) (*exec.Cmd, *testenv.Buffer) {
		t.Helper()
		p := write(name, fmt.Sprintf(`[process]
command = ["/bin/sh", "-c", "httpd -p 81 -h /www; exec httpd -f -v -p 80 -h /www"]
[[mounts]]
type = "bind"
source = "www"
target = "/www"
[network]
mode = "bridge"
ports = ["%s:%d:80"]`, addr, port))
		c := asUser(context.Background(), "-q", p)
		stderr := &testenv.Buffer{}
		c.Stderr = stderr
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			c.Process.Kill()
			c.Wait()
		})
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if body, err := get(fmt.Sprintf("http://%s:%d/", addr, port)); err == nil {
				if body != "hello from a rootless bridge\n" {
					t.Fatalf("served %q", body)
				}
				return c, stderr
			}
			if time.Now().After(deadline) {
				c.Process.Kill()
				c.Wait()
				t.Fatalf("the published port never answered:\n%s", stderr.String())
			}
		}
	}
	// pastaArgs are the arguments of the user's running pasta processes.
	// pastaArgs are the command lines of the pastas below the process
	// root: the soak's rootless services run as the same user, at the
	// same time when packages are tested in parallel.
	pastaArgs := func(root int) []string {
		var out []string
		for _, pid := range userProcesses(u.uid) {
			if !descends(pid, root) {
				continue
			}
			if args, _ := os.ReadFile("/proc/" + pid + "/cmdline"); strings.Contains(string(args), "--config-net") {
				out = append(out, strings.ReplaceAll(string(args), "\x00", " "))
			}
		}
		return out
	}
	nothingLeft := func(t *testing.T) {
		t.Helper()
		var left []string
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if left = userProcesses(u.uid); len(left) == 0 {
				break
			}
		}
		for _, pid := range left {
			args, _ := os.ReadFile("/proc/" + pid + "/cmdline")
			t.Errorf("process %s of %s left: %s", pid, rootlessUser, strings.ReplaceAll(string(args), "\x00", " "))
		}
		entries, _ := os.ReadDir(filepath.Join(home, "xdg", "safe-run"))
		for _, e := range entries {
			t.Errorf("left in XDG_RUNTIME_DIR/safe-run: %s", e.Name())
		}
	}

	t.Run("published port only", func(t *testing.T) {
		port := testenv.FreePort(t)
		c := serve(t, "rlnet-web", port)
		args := pastaArgs(c.Process.Pid)
		if len(args) != 1 {
			t.Fatalf("pasta processes: %q, want one", args)
		}
		for _, want := range []string{fmt.Sprintf("-t 127.0.0.1/%d ", port), "-u none", "-T none -U none", "--no-map-gw", "--ipv4-only"} {
			if !strings.Contains(args[0], want) {
				t.Errorf("pasta %s: no %q", args[0], want)
			}
		}
		// The service listens on 81 too: nothing publishes it.
		if conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port+1), time.Second); err == nil {
			conn.Close()
			t.Errorf("an undeclared port is reachable")
		}
		c.Process.Signal(syscall.SIGTERM)
		if err := c.Wait(); exitCode(err) != 143 {
			t.Errorf("SIGTERM: %v, want exit 143", err)
		}
		nothingLeft(t)
	})

	t.Run("killed with the outer safe-run", func(t *testing.T) {
		c := serve(t, "rlnet-kill", testenv.FreePort(t))
		c.Process.Signal(syscall.SIGKILL)
		c.Wait()
		nothingLeft(t)
	})

	// A test host in a namespace of this test's, and a listener on the
	// host's loopback the service must never reach.
	testHost := makeTestHost(t)
	lo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lo.Close()
	var reached = make(chan string, 16)
	go func() {
		for {
			c, err := lo.Accept()
			if err != nil {
				return
			}
			reached <- c.RemoteAddr().String()
			c.Write([]byte("HTTP/1.0 200 OK\r\n\r\nhost loopback\n"))
			c.Close()
		}
	}()
	loPort := lo.Addr().(*net.TCPAddr).Port

	t.Run("published on a host address, from another host", func(t *testing.T) {
		// pasta carries connections from other hosts through its
		// tap link to the namespace's own address, not its loopback.
		port := testenv.FreePort(t)
		c, log := serveOn(t, "rlnet-remote", testHost.hostAddr, port)
		out, err := exec.Command("ip", "netns", "exec", testHost.ns, "curl", "-sS", "-m", "5", fmt.Sprintf("http://%s:%d/", testHost.hostAddr, port)).CombinedOutput()
		if err != nil || string(out) != "hello from a rootless bridge\n" {
			t.Errorf("from the test host: %v: %s", err, out)
		}
		// The service sees the test host's own address, not N's gateway:
		// the forwarder in N dials from it (IP_TRANSPARENT). httpd -v
		// logs each request as "ADDR:PORT: response:200", the address
		// dual-stack ([::ffff:a.b.c.d]).
		seen := false
		for deadline := time.Now().Add(5 * time.Second); !seen && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			for _, line := range strings.Split(log.String(), "\n") {
				seen = seen || strings.HasPrefix(line, "[::ffff:"+testHost.addr+"]:") || strings.HasPrefix(line, testHost.addr+":")
			}
		}
		if !seen {
			t.Errorf("the service's log names no request from the test host %s:\n%s", testHost.addr, log.String())
		}
		c.Process.Signal(syscall.SIGTERM)
		c.Wait()
		nothingLeft(t)
	})
	// busybox's wget crashes in the example rootfs (static NSS): nc.
	script := fmt.Sprintf(`try() { if printf 'GET / HTTP/1.0\r\n\r\n' | timeout 3 nc $2 $3 2>/dev/null | grep -q '^HTTP/1'; then echo "$1 yes"; else echo "$1 no"; fi; }
gw=$(ip route | awk '/^default/ {print $3}')
try testhost %s %d
try gateway $gw %d
try own-loopback 127.0.0.1 %d`, testHost.addr, testHost.port, loPort, loPort)
	for _, tc := range []struct {
		egress string
		want   string
		// The try of the gateway reaches the table, which reports it: with "all", where Landlock
		// leaves connect alone (with "none" and a list it refuses the port before any packet).
		gatewayDenied bool
	}{
		{`"none"`, "testhost no\ngateway no\nown-loopback no\n", false},
		{`"all"`, "testhost yes\ngateway no\nown-loopback no\n", true},
		{fmt.Sprintf(`["%s/32:%d"]`, testHost.addr, testHost.port), "testhost yes\ngateway no\nown-loopback no\n", false},
	} {
		t.Run("egress "+tc.egress, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			body := fmt.Sprintf("[process]\ncommand = [\"/bin/sh\", \"-c\", %q]\n[network]\nmode = \"bridge\"\negress = %s", script, tc.egress)
			c := asUser(ctx, "-q", write("rlnet-egress", body))
			var stderr bytes.Buffer
			c.Stderr = &stderr
			out, err := c.Output()
			if err != nil || string(out) != tc.want {
				t.Errorf("%v: got\n%swant\n%s%s", err, out, tc.want, stderr.String())
			}
			denied := regexp.MustCompile(fmt.Sprintf(`(?m)^rlnet-egress: egress denied [0-9.]+:%d/tcp$`, loPort)).MatchString(stderr.String())
			if denied != tc.gatewayDenied {
				t.Errorf("a denial of the gateway's port %d reported: %v, want %v; stderr:\n%s", loPort, denied, tc.gatewayDenied, stderr.String())
			}
			nothingLeft(t)
		})
	}
	select {
	case from := <-reached:
		t.Errorf("a service reached the host's loopback (from %s)", from)
	default:
	}

	t.Run("DNS through the bridge's resolver", func(t *testing.T) {
		// The resolver in the inner safe-run's namespace forwards
		// through pasta to the upstream, here the test host's.
		upstream := serveDNS(t, testHost.ns, testHost.addr, "rootless.test.", "198.18.255.77")
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		body := fmt.Sprintf("[process]\ncommand = [\"/bin/sh\", \"-c\", \"nslookup rootless.test\"]\n[network]\nmode = \"bridge\"\ndns = [%q]", testHost.addr)
		c := asUser(ctx, "-q", write("rlnet-dns", body))
		var stderr bytes.Buffer
		c.Stderr = &stderr
		out, err := c.Output()
		if err != nil || !strings.Contains(string(out), "198.18.255.77") {
			t.Errorf("%v:\n%s%s", err, out, stderr.String())
		}
		if upstream.Load() == 0 {
			t.Error("the upstream got no query")
		}
		nothingLeft(t)
	})

	t.Run("named bridge", func(t *testing.T) {
		// It joins the user's shared namespace, whose keeper and pasta
		// end with it (TestRootlessNamedBridge has the rest).
		out, err := asUser(context.Background(), "-q", write("rlnet-named", "[process]\ncommand = [\"/bin/true\"]\n[network]\nmode = \"bridge\"\nbridge = \"app\"")).CombinedOutput()
		if err != nil {
			t.Errorf("%v:\n%s", err, out)
		}
		nothingLeft(t)
	})
}

func grantTun(t *testing.T, uid uint32) { testenv.GrantTun(t, uid) }

func userProcesses(uid uint32) []string { return testenv.UserProcesses(uid) }

func get(url string) (string, error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

type testHost struct {
	ns       string // its network namespace
	addr     string // its address
	port     int    // its web server's port
	hostAddr string // the host's address on the link to it
}

// makeTestHost makes a network namespace with a web server, reached from
// the host over a veth pair on a /30 of 198.18.0.0/15 (benchmarking
// addresses, never routed), named uniquely for this test run.
func makeTestHost(t *testing.T) testHost {
	t.Helper()
	var b [2]byte
	rand.Read(b[:])
	id := fmt.Sprintf("%04x", binary.BigEndian.Uint16(b[:]))
	ns, hostIf, nsIf := "srt-rlnet-"+id, "srtrl"+id+"h", "srtrl"+id+"n"
	third, fourth := int(b[0]), int(b[1]&0xfc)
	hostAddr := fmt.Sprintf("198.18.%d.%d", third, fourth+1)
	nsAddr := fmt.Sprintf("198.18.%d.%d", third, fourth+2)
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	ip("netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "delete", ns).Run() })
	ip("link", "add", hostIf, "type", "veth", "peer", "name", nsIf, "netns", ns)
	t.Cleanup(func() { exec.Command("ip", "link", "delete", hostIf).Run() })
	ip("addr", "add", hostAddr+"/30", "dev", hostIf)
	ip("link", "set", hostIf, "up")
	ip("-n", ns, "addr", "add", nsAddr+"/30", "dev", nsIf)
	ip("-n", ns, "link", "set", nsIf, "up")
	ip("-n", ns, "link", "set", "lo", "up")
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "index.html"), []byte("test host\n"), 0o644)
	const port = 8000
	srv := exec.Command("ip", "netns", "exec", ns, filepath.Join(env.rootfs, "bin", "busybox"), "httpd", "-f", "-p", strconv.Itoa(port), "-h", dir)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Process.Kill()
		srv.Wait()
	})
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := get(fmt.Sprintf("http://%s:%d/", nsAddr, port)); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the test host does not answer")
		}
	}
	return testHost{ns: ns, addr: nsAddr, port: port, hostAddr: hostAddr}
}

// serveDNS answers name with addr (A), from addr:53 in the network
// namespace ns, until the test ends; the count is of the queries it got.
func serveDNS(t *testing.T, ns, listen, name, addr string) *atomic.Int64 {
	t.Helper()
	type result struct {
		pc  net.PacketConn
		err error
	}
	got := make(chan result, 1)
	go func() {
		// The thread ends in ns: never unlocked, it dies with this
		// goroutine. The socket stays in ns.
		runtime.LockOSThread()
		h, err := netns.GetFromName(ns)
		if err == nil {
			err = netns.Set(h)
			h.Close()
		}
		if err != nil {
			got <- result{nil, err}
			return
		}
		pc, err := net.ListenPacket("udp4", listen+":53")
		got <- result{pc, err}
	}()
	r := <-got
	if r.err != nil {
		t.Fatalf("DNS server in %s: %v", ns, r.err)
	}
	var queries atomic.Int64
	srv := &dns.Server{PacketConn: r.pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		queries.Add(1)
		m := new(dns.Msg)
		m.SetReply(q)
		if len(q.Question) == 1 && q.Question[0].Name == name && q.Question[0].Qtype == dns.TypeA {
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.ParseIP(addr)})
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return &queries
}

// descends says whether process pid is below process root.
func descends(pid string, root int) bool {
	for range 64 {
		data, err := os.ReadFile("/proc/" + pid + "/stat")
		if err != nil {
			return false
		}
		// The fields after the command's ")": state, then the parent.
		f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
		if len(f) < 2 || f[1] == "0" {
			return false
		}
		if f[1] == strconv.Itoa(root) {
			return true
		}
		pid = f[1]
	}
	return false
}
