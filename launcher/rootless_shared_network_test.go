package launcher_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/safe-run/safe-run/internal/testenv"
)

// TestRootlessNamedBridge runs services of one unprivileged user on named
// bridges: every run joins the user's shared user and network namespace,
// held by a keeper process and connected to the host by one pasta, and
// all of it goes with the last member. Test traffic goes only to the
// host's loopback and to a test host in a namespace this test makes.
func TestRootlessNamedBridge(t *testing.T) {
	setup(t)
	testenv.RequireTool(t, "pasta")
	h := newRootlessHome(t, "rootless-named")
	u, home := h.u, h.dir
	grantTun(t, u.uid)
	os.MkdirAll(filepath.Join(home, "www"), 0o700)
	os.Chown(filepath.Join(home, "www"), int(u.uid), int(u.gid))
	os.WriteFile(filepath.Join(home, "www", "index.html"), []byte("hello from a named bridge\n"), 0o644)
	testHost := makeTestHost(t)
	xdg := filepath.Join(home, "xdg", "safe-run")
	// ours are the user's processes of this test's home and binary:
	// other tests may run as the same user meanwhile. (A service's own
	// processes go with the safe-run that names them.)
	ours := func() []string {
		var out []string
		for _, pid := range userProcesses(u.uid) {
			if args, _ := os.ReadFile("/proc/" + pid + "/cmdline"); strings.Contains(string(args), home) || strings.Contains(string(args), env.bin) {
				out = append(out, pid)
			}
		}
		return out
	}

	// startWeb starts a web server on bridge, publishing port 80 on
	// addr:port (and not its second server, on 81); its stderr has the
	// start report and, from httpd -v, each request's client address.
	// served waits until the port answers.
	startWeb := func(t *testing.T, name, bridge, addr string, port int) (*exec.Cmd, *testenv.Buffer) {
		t.Helper()
		p := h.manifest(name, fmt.Sprintf(`[process]
command = ["/bin/sh", "-c", "httpd -p 81 -h /www; exec httpd -f -v -p 80 -h /www"]
[[mounts]]
type = "bind"
source = "www"
target = "/www"
[network]
mode = "bridge"
bridge = %q
ports = ["%s:%d:80"]`, bridge, addr, port))
		c := h.cmd(context.Background(), p)
		stderr := &testenv.Buffer{}
		c.Stderr = stderr
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			c.Process.Kill()
			c.Wait()
		})
		return c, stderr
	}
	served := func(t *testing.T, addr string, port int, stderr *testenv.Buffer) {
		t.Helper()
		url := fmt.Sprintf("http://%s:%d/", addr, port)
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if body, err := fetchFrom(testHost, addr, url); err == nil {
				if body != "hello from a named bridge\n" {
					t.Fatalf("served %q", body)
				}
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the published port %s never answered:\n%s", url, stderr.String())
			}
		}
	}
	web := func(t *testing.T, name, bridge, addr string, port int) (*exec.Cmd, *testenv.Buffer) {
		t.Helper()
		c, stderr := startWeb(t, name, bridge, addr, port)
		served(t, addr, port, stderr)
		return c, stderr
	}
	addressOf := func(t *testing.T, report *testenv.Buffer) string {
		t.Helper()
		m := regexp.MustCompile(`network: bridge \S+, address (\d+\.\d+\.\d+\.\d+)`).FindStringSubmatch(report.String())
		if m == nil {
			t.Fatalf("no address in the start report:\n%s", report.String())
		}
		return m[1]
	}
	// probe runs a one-shot service on bridge that reports, for each
	// name, whether it resolves and serves HTTP on 80 ("NAME ADDR yes",
	// "NAME ADDR no", "NAME unresolved"), and for each address whether
	// it serves ("ADDR yes|no"). busybox's nc takes no names in this
	// rootfs (static NSS): nslookup asks the bridge's resolver.
	probe := func(t *testing.T, name, bridge string, names, addrs []string) string {
		t.Helper()
		script := `try() { if printf 'GET / HTTP/1.0\r\n\r\n' | timeout 3 nc $1 80 2>/dev/null | grep -q '^HTTP/1'; then echo yes; else echo no; fi; }
`
		for _, n := range names {
			script += fmt.Sprintf(`a=$(nslookup %s 2>/dev/null | awk '/^Name:/ {n=1} n && /^Address/ {print $NF; exit}')
if [ -n "$a" ]; then echo "%s $a $(try $a)"; else echo "%s unresolved"; fi
`, n, n, n)
		}
		for _, a := range addrs {
			script += fmt.Sprintf("echo \"%s $(try %s)\"\n", a, a)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		c := h.cmd(ctx, "-q", h.manifest(name, fmt.Sprintf("[process]\ncommand = [\"/bin/sh\", \"-c\", %q]\n[network]\nmode = \"bridge\"\nbridge = %q", script, bridge)))
		stderr := &testenv.Buffer{}
		c.Stderr = stderr
		out, err := c.Output()
		if err != nil {
			t.Fatalf("%s: %v\n%s%s", name, err, out, stderr.String())
		}
		return string(out)
	}
	nothingLeft := func(t *testing.T) {
		t.Helper()
		var left []string
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if left = ours(); len(left) == 0 {
				break
			}
		}
		for _, pid := range left {
			args, _ := os.ReadFile("/proc/" + pid + "/cmdline")
			t.Errorf("process %s of %s left: %s", pid, rootlessUser, strings.ReplaceAll(string(args), "\x00", " "))
		}
		entries, _ := os.ReadDir(xdg)
		for _, e := range entries {
			t.Errorf("left in XDG_RUNTIME_DIR/safe-run: %s", e.Name())
		}
	}
	pastas := func() []string {
		var out []string
		for _, pid := range ours() {
			if args, _ := os.ReadFile("/proc/" + pid + "/cmdline"); strings.Contains(string(args), "--config-net") {
				out = append(out, strings.ReplaceAll(string(args), "\x00", " "))
			}
		}
		return out
	}
	// leases are the services with a lease on bridge: one file each (network/state_linux.go).
	leases := func(bridge string) []string {
		files, _ := filepath.Glob(filepath.Join(xdg, "net", "bridges", bridge, "leases", "[0-9]*"))
		var out []string
		for _, f := range files {
			var l struct{ Service string }
			data, _ := os.ReadFile(f)
			json.Unmarshal(data, &l)
			out = append(out, l.Service)
		}
		return out
	}

	t.Run("members reach each other by name, other bridges cannot", func(t *testing.T) {
		port := testenv.FreePort(t)
		a, aLog := web(t, "rlnb-a", "rlnb-one", testHost.hostAddr, port)
		aAddr := addressOf(t, aLog)
		lo := testenv.FreePort(t)
		_, bLog := web(t, "rlnb-b", "rlnb-one", "127.0.0.1", lo)
		bAddr := addressOf(t, bLog)
		// The inner safe-run alone holds a published port's socket: not
		// the janitor, not the service, not the outer safe-run.
		if got := listeners(t, lo); len(got) != 1 || !strings.HasPrefix(got[0], env.bin+" ") {
			t.Errorf("processes holding the socket of 127.0.0.1:%d: %q, want the inner safe-run's only", lo, got)
		}
		// One pasta for both, forwarding nothing but N's own traffic.
		if p := pastas(); len(p) != 1 || !strings.Contains(p[0], "-t none -u none -T none -U none") || !strings.Contains(p[0], "--no-map-gw") {
			t.Errorf("pasta processes: %q, want one that forwards no port", p)
		}
		got := probe(t, "rlnb-c", "rlnb-one", []string{"rlnb-a", "rlnb-a.rlnb-one", "rlnb-b"}, nil)
		want := fmt.Sprintf("rlnb-a %s yes\nrlnb-a.rlnb-one %s yes\nrlnb-b %s yes\n", aAddr, aAddr, bAddr)
		if got != want {
			t.Errorf("a member of the bridge: got\n%swant\n%s", got, want)
		}
		got = probe(t, "rlnb-d", "rlnb-two", []string{"rlnb-a"}, []string{aAddr, bAddr})
		want = fmt.Sprintf("rlnb-a unresolved\n%s no\n%s no\n", aAddr, bAddr)
		if got != want {
			t.Errorf("a service on another bridge: got\n%swant\n%s", got, want)
		}

		// The published port from another host: the service sees its
		// address (the forwarder in N dials from it), and nothing
		// undeclared is reachable.
		seen := false
		for deadline := time.Now().Add(5 * time.Second); !seen && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			for _, line := range strings.Split(aLog.String(), "\n") {
				seen = seen || strings.HasPrefix(line, "[::ffff:"+testHost.addr+"]:") || strings.HasPrefix(line, testHost.addr+":")
			}
		}
		if !seen {
			t.Errorf("the service's log names no request from the test host %s:\n%s", testHost.addr, aLog.String())
		}
		for _, addr := range []string{fmt.Sprintf("127.0.0.1:%d", port), fmt.Sprintf("%s:%d", testHost.hostAddr, port+1), fmt.Sprintf("127.0.0.1:%d", lo+1)} {
			if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				c.Close()
				t.Errorf("%s is reachable: no port declares it", addr)
			}
		}

		// A member stops: its name goes with it.
		a.Process.Signal(syscall.SIGTERM)
		if err := a.Wait(); exitCode(err) != 143 {
			t.Errorf("SIGTERM: %v, want exit 143", err)
		}
		got = probe(t, "rlnb-c", "rlnb-one", []string{"rlnb-a", "rlnb-b"}, nil)
		if want := fmt.Sprintf("rlnb-a unresolved\nrlnb-b %s yes\n", bAddr); got != want {
			t.Errorf("after rlnb-a stopped: got\n%swant\n%s", got, want)
		}
	})
	nothingLeft(t)

	t.Run("egress", func(t *testing.T) {
		// Enforced in N, by the table of the safe-run that is root there:
		// the test host only as listed, never the gateway (the host's
		// loopback services behind it).
		lo, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer lo.Close()
		loPort := lo.Addr().(*net.TCPAddr).Port
		go func() {
			for {
				c, err := lo.Accept()
				if err != nil {
					return
				}
				c.Write([]byte("HTTP/1.0 200 OK\r\n\r\nhost loopback\n"))
				c.Close()
			}
		}()
		script := fmt.Sprintf(`try() { if printf 'GET / HTTP/1.0\r\n\r\n' | timeout 3 nc $2 $3 2>/dev/null | grep -q '^HTTP/1'; then echo "$1 yes"; else echo "$1 no"; fi; }
gw=$(ip route | awk '/^default/ {print $3}')
try testhost %s %d &
try gateway $gw %d &
wait`, testHost.addr, testHost.port, loPort)
		for _, tc := range []struct{ egress, want string }{
			{`"none"`, "gateway no\ntesthost no\n"},
			{fmt.Sprintf(`["%s/32:%d"]`, testHost.addr, testHost.port), "gateway no\ntesthost yes\n"},
		} {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			c := h.cmd(ctx, "-q", h.manifest("rlnb-egress", fmt.Sprintf("[process]\ncommand = [\"/bin/sh\", \"-c\", %q]\n[network]\nmode = \"bridge\"\nbridge = \"rlnb-one\"\negress = %s", script, tc.egress)))
			stderr := &testenv.Buffer{}
			c.Stderr = stderr
			out, err := c.Output()
			cancel()
			lines := strings.SplitAfter(string(out), "\n")
			slices.Sort(lines)
			if got := strings.Join(lines, ""); err != nil || got != tc.want {
				t.Errorf("egress %s: %v: got\n%swant\n%s%s", tc.egress, err, got, tc.want, stderr.String())
			}
		}
	})
	nothingLeft(t)

	t.Run("SIGKILL of one member", func(t *testing.T) {
		a, _ := web(t, "rlnb-a", "rlnb-one", "127.0.0.1", testenv.FreePort(t))
		lo := testenv.FreePort(t)
		_, bLog := web(t, "rlnb-b", "rlnb-one", "127.0.0.1", lo)
		bAddr := addressOf(t, bLog)
		a.Process.Signal(syscall.SIGKILL)
		a.Wait()
		// Its janitor reclaims its lease.
		var left []string
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if left = leases("rlnb-one"); len(left) == 1 {
				break
			}
		}
		if len(left) != 1 || left[0] != "rlnb-b" {
			t.Errorf("leases after rlnb-a's safe-run was killed: %v, want rlnb-b's only", left)
		}
		// The survivor still serves, by name and on its port.
		if got, want := probe(t, "rlnb-c", "rlnb-one", []string{"rlnb-b"}, nil), fmt.Sprintf("rlnb-b %s yes\n", bAddr); got != want {
			t.Errorf("the survivor by name: got\n%swant\n%s", got, want)
		}
		if body, err := get(fmt.Sprintf("http://127.0.0.1:%d/", lo)); err != nil || body != "hello from a named bridge\n" {
			t.Errorf("the survivor's published port: %v, %q", err, body)
		}
	})
	nothingLeft(t)

	t.Run("SIGKILL of all, then a start", func(t *testing.T) {
		a, _ := web(t, "rlnb-a", "rlnb-one", "127.0.0.1", testenv.FreePort(t))
		b, _ := web(t, "rlnb-b", "rlnb-two", "127.0.0.1", testenv.FreePort(t))
		a.Process.Signal(syscall.SIGKILL)
		b.Process.Signal(syscall.SIGKILL)
		a.Wait()
		b.Wait()
		// The janitors reclaim the leases, and the last one ends the
		// shared namespace.
		nothingLeft(t)
		lo := testenv.FreePort(t)
		c, cLog := web(t, "rlnb-a", "rlnb-one", "127.0.0.1", lo)
		if got, want := probe(t, "rlnb-c", "rlnb-one", []string{"rlnb-a"}, nil), fmt.Sprintf("rlnb-a %s yes\n", addressOf(t, cLog)); got != want {
			t.Errorf("after a restart: got\n%swant\n%s", got, want)
		}
		c.Process.Signal(syscall.SIGTERM)
		c.Wait()
	})
	nothingLeft(t)

	t.Run("started at once", func(t *testing.T) {
		// One keeper for both: the second waits for the first's.
		ports := []int{testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t)}
		var cs []*exec.Cmd
		var logs []*testenv.Buffer
		for i, bridge := range []string{"rlnb-one", "rlnb-one", "rlnb-two"} {
			c, log := startWeb(t, fmt.Sprintf("rlnb-%c", 'a'+i), bridge, "127.0.0.1", ports[i])
			cs, logs = append(cs, c), append(logs, log)
		}
		for i := range cs {
			served(t, "127.0.0.1", ports[i], logs[i])
		}
		if p := pastas(); len(p) != 1 {
			t.Errorf("pasta processes: %q, want one", p)
		}
		for _, c := range cs {
			c.Process.Signal(syscall.SIGTERM)
		}
		for _, c := range cs {
			c.Wait()
		}
	})
	nothingLeft(t)

	t.Run("keeper killed", func(t *testing.T) {
		// Its members lose their network; the next start finds it dead
		// and starts another.
		a, _ := web(t, "rlnb-a", "rlnb-one", "127.0.0.1", testenv.FreePort(t))
		var hold struct{ Keeper, Pause int }
		data, err := os.ReadFile(filepath.Join(xdg, "rootless-netns", "holder.json"))
		if err == nil {
			err = json.Unmarshal(data, &hold)
		}
		if err != nil || hold.Keeper == 0 {
			t.Fatalf("holder.json: %v: %s", err, data)
		}
		syscall.Kill(hold.Keeper, syscall.SIGKILL)
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if len(pastas()) == 0 {
				break
			}
		}
		if p := pastas(); len(p) != 0 {
			t.Fatalf("pasta outlives the keeper: %q", p)
		}
		lo := testenv.FreePort(t)
		b, bLog := web(t, "rlnb-b", "rlnb-two", "127.0.0.1", lo)
		if got, want := probe(t, "rlnb-c", "rlnb-two", []string{"rlnb-b"}, nil), fmt.Sprintf("rlnb-b %s yes\n", addressOf(t, bLog)); got != want {
			t.Errorf("in the new namespace: got\n%swant\n%s", got, want)
		}
		if !strings.Contains(bLog.String(), "keeper died") {
			t.Errorf("the start does not say the old keeper died:\n%s", bLog.String())
		}
		for _, c := range []*exec.Cmd{a, b} {
			c.Process.Signal(syscall.SIGTERM)
			c.Wait()
		}
	})
	nothingLeft(t)

	t.Run("state removed under the keeper", func(t *testing.T) {
		// As at logout: nothing would end the keeper, so it ends itself.
		a, _ := web(t, "rlnb-a", "rlnb-one", "127.0.0.1", testenv.FreePort(t))
		os.Remove(filepath.Join(xdg, "rootless-netns", "holder.json"))
		for deadline := time.Now().Add(10 * time.Second); len(pastas()) > 0 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		}
		if p := pastas(); len(p) != 0 {
			t.Errorf("the keeper's pasta outlives holder.json: %q", p)
		}
		a.Process.Signal(syscall.SIGTERM)
		a.Wait()
	})
	nothingLeft(t)

	t.Run("a port taken", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		p := h.manifest("rlnb-taken", fmt.Sprintf("[process]\ncommand = [\"/bin/true\"]\n[network]\nmode = \"bridge\"\nbridge = \"rlnb-one\"\nports = [\"%s:80\"]", ln.Addr()))
		out, err := h.cmd(context.Background(), p).CombinedOutput()
		if code := exitCode(err); code != 125 || !strings.Contains(string(out), "network.ports: publishing "+ln.Addr().String()+"/tcp: the address is in use") {
			t.Errorf("exit %d:\n%s", code, out)
		}
		// A network of its own: pasta binds the port, and the start
		// tries it first.
		p = h.manifest("rlnb-taken-own", fmt.Sprintf("[process]\ncommand = [\"/bin/true\"]\n[network]\nmode = \"bridge\"\nports = [\"%s:80\"]", ln.Addr()))
		out, err = h.cmd(context.Background(), p).CombinedOutput()
		if code := exitCode(err); code != 125 || !strings.Contains(string(out), p+":") || !strings.Contains(string(out), "network.ports: publishing "+ln.Addr().String()+"/tcp: the address is in use") {
			t.Errorf("a network of its own: exit %d:\n%s", code, out)
		}
		p = h.manifest("rlnb-low", "[process]\ncommand = [\"/bin/true\"]\n[network]\nmode = \"bridge\"\nbridge = \"rlnb-one\"\nports = [\"127.0.0.1:1:80\"]")
		out, err = h.cmd(context.Background(), p).CombinedOutput()
		if code := exitCode(err); code != 125 || !strings.Contains(string(out), "network.ports: publishing 127.0.0.1:1/tcp: without root a host port below") {
			t.Errorf("exit %d:\n%s", code, out)
		}
	})
	nothingLeft(t)
}

// fetchFrom gets url from the test host when addr is the host's address
// facing it, from the host otherwise.
func fetchFrom(th testHost, addr, url string) (string, error) {
	if addr != th.hostAddr {
		return get(url)
	}
	out, err := exec.Command("ip", "netns", "exec", th.ns, "curl", "-sS", "-m", "2", url).Output()
	return string(out), err
}

// listeners are the command lines of the processes that hold the socket
// listening on TCP port, in the host's network namespace.
func listeners(t *testing.T, port int) []string {
	t.Helper()
	// thread-self, not /proc/net (the main thread's): a test goroutine
	// that entered a test network namespace on a locked thread and ended
	// there (serveDNS) may have been the main thread, which the runtime
	// then keeps in that namespace.
	data, err := os.ReadFile("/proc/thread-self/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	inode := ""
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		// local_address is HEXADDR:HEXPORT; st 0A is LISTEN; inode is field 10.
		if len(f) > 9 && strings.HasSuffix(f[1], fmt.Sprintf(":%04X", port)) && f[3] == "0A" {
			inode = f[9]
		}
	}
	if inode == "" {
		t.Fatalf("nothing listens on port %d", port)
	}
	var out []string
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		fds, _ := os.ReadDir("/proc/" + p.Name() + "/fd")
		for _, fd := range fds {
			if l, _ := os.Readlink("/proc/" + p.Name() + "/fd/" + fd.Name()); l == "socket:["+inode+"]" {
				args, _ := os.ReadFile("/proc/" + p.Name() + "/cmdline")
				out = append(out, strings.ReplaceAll(string(args), "\x00", " "))
				break
			}
		}
	}
	return out
}
