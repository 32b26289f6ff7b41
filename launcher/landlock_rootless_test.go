package launcher_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/safe-run/safe-run/internal/testenv"
	"github.com/safe-run/safe-run/landlock"
)

// The rootless counterparts of TestLandlockScopesAbstractSockets,
// TestLandlockScopesSignals and TestLandlockConnect: the same accesses,
// from a service an unprivileged user started, refused with Landlock on
// and reached with it off.

// TestLandlockRootlessAbstractSockets: rootless with the host's network,
// the service is in the user's own network namespace, the host's, where
// the abstract sockets of the user's session live (D-Bus's, an X
// server's). The listener is a process of the user's, on the host: no
// file permission guards an abstract socket, and the service runs as its
// root, which is the user on the host, so the peer credentials a session
// bus checks would name the user. Scoping (ABI 6) refuses the connect;
// with Landlock off it connects.
func TestLandlockRootlessAbstractSockets(t *testing.T) {
	setup(t)
	abi := testenv.RequireLandlock(t, 6)
	h := newRootlessHome(t, "rootless-llabstract")
	name := fmt.Sprintf("safe-run-test-llrl-%d", os.Getpid())
	listener := startAs(t, h.u, "listening @"+name+"\n", filepath.Join(env.rootfs, "bin", "confinement"), "-listen-abstract", name)
	for _, tc := range []struct {
		name, security, allow string
		want                  string
		code                  int
	}{
		{"llrl-abstract", "", `"host_network"`, "abstract @" + name + ": dial unix @" + name + ": connect: operation not permitted\n", 1},
		{"llrl-abstract-off", "[security]\nlandlock = \"off\"\n", `"host_network", "landlock_off"`, "abstract @" + name + ": connected\n", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := h.manifestAllowing(tc.name, fmt.Sprintf("[process]\ncommand = [\"/bin/confinement\", \"-connect-abstract\", %q]\nuser = \"0:0\"\n\n[network]\nmode = \"host\"\n\n%s", name, tc.security),
				"the test reaches an abstract socket of the user's", tc.allow)
			r := h.run(t, m)
			if r.code != tc.code || r.stdout != tc.want {
				t.Errorf("exit %d, want %d; got\n%swant\n%s%s", r.code, tc.code, r.stdout, tc.want, r.stderr)
			}
			assertRootlessReport(t, r.stderr, abi, tc.security == "")
			h.assertNothingLeft(t, tc.name)
		})
	}
	if err := listener.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("the user's listener: %v", err)
	}
}

// TestLandlockRootlessSignals: rootless, the service's root is the user
// on the host (the start report says so: "your uid, then your subordinate
// ids"), so with the host's PID namespace it may signal every process of
// the user's, outside the service: its shell, its editor, its ssh-agent.
// Nothing but Landlock's scoping (ABI 6) keeps it to its own: with
// Landlock off the signal is delivered.
func TestLandlockRootlessSignals(t *testing.T) {
	setup(t)
	abi := testenv.RequireLandlock(t, 6)
	h := newRootlessHome(t, "rootless-llsignal")
	sleeper := startAs(t, h.u, "", "sleep", "60")
	script := fmt.Sprintf("kill -0 %d 2>&1 && echo signalled || echo refused", sleeper.Process.Pid)
	for _, tc := range []struct{ name, security, allow, want string }{
		{"llrl-signal", "", `"host_pid"`, "sh: can't kill pid %d: Operation not permitted\nrefused\n"},
		{"llrl-signal-off", "[security]\nlandlock = \"off\"\n", `"host_pid", "landlock_off"`, "signalled\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := h.manifestAllowing(tc.name, fmt.Sprintf("[process]\ncommand = [\"/bin/sh\", \"-c\", %q]\nuser = \"0:0\"\n\n[namespaces]\npid = \"host\"\n\n%s", script, tc.security),
				"the test signals a process of the user's", tc.allow)
			r := h.run(t, m)
			want := tc.want
			if strings.Contains(want, "%d") {
				want = fmt.Sprintf(want, sleeper.Process.Pid)
			}
			if r.code != 0 || r.stdout != want {
				t.Errorf("exit %d; got\n%swant\n%s%s", r.code, r.stdout, want, r.stderr)
			}
			if ids := fmt.Sprintf("user namespace 0-65535 -> host ids %d, ", h.u.uid); !strings.Contains(r.stderr, ids) {
				t.Errorf("the start report does not map the service's root to the user (%q):\n%s", ids, r.stderr)
			}
			assertRootlessReport(t, r.stderr, abi, tc.security == "")
			h.assertNothingLeft(t, tc.name)
		})
	}
	if err := sleeper.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("the user's sleeper: %v", err)
	}
}

// TestLandlockRootlessConnect: rootless in bridge mode, pasta makes the
// service's outbound connections from the host's network namespace, so a
// test host on a veth of the host's (a namespace this test makes, as
// root) is reachable. With egress naming the test host's port, the
// ruleset lets the service connect to that port only (ABI 4): another
// port of the test host is refused at once with EACCES, in connect(2),
// before any packet leaves. With Landlock off, the same connect is
// stopped by the egress rules instead (never with EACCES). Traffic goes
// to the test host's address only.
func TestLandlockRootlessConnect(t *testing.T) {
	setup(t)
	abi := testenv.RequireLandlock(t, 4)
	testenv.RequireTool(t, "pasta")
	h := newRootlessHome(t, "rootless-llconnect")
	grantTun(t, h.u.uid)
	th := makeTestHost(t)
	script := fmt.Sprintf(`printf 'GET / HTTP/1.0\r\n\r\n' | timeout 3 nc %[1]s %[2]d 2>&1 | head -1
timeout 1 nc %[1]s %[3]d </dev/null 2>&1; echo end`, th.addr, th.port, th.port+1)
	// With Landlock on, the egress rules never see the connect: no
	// packet left for them to drop, so safe-run reports no egress
	// denial.
	egress := fmt.Sprintf("llrl-connect-off: egress denied %s:%d/tcp\n", th.addr, th.port+1)
	for _, tc := range []struct{ name, security, allow, want, stderr string }{
		{"llrl-connect", "", "", "nc: can't connect to remote host (" + th.addr + "): Permission denied\nend\n", ""},
		{"llrl-connect-off", "\n[security]\nlandlock = \"off\"\n", `"landlock_off"`, "end\n", egress},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := h.manifestAllowing(tc.name, fmt.Sprintf("[process]\ncommand = [\"/bin/sh\", \"-c\", %q]\n\n[network]\nmode = \"bridge\"\negress = [\"%s/32:%d\"]\n%s",
				script, th.addr, th.port, tc.security), "the test's control run", tc.allow)
			r := h.run(t, m)
			// The declared port first: the test host's web server; the
			// other refused with EACCES only with Landlock on.
			on := tc.security == ""
			if r.code != 0 || !strings.HasPrefix(r.stdout, "HTTP/1.") || !strings.HasSuffix(r.stdout, tc.want) ||
				!on && strings.Contains(r.stdout, "Permission denied") || on && strings.Contains(r.stderr, "egress denied") {
				t.Errorf("exit %d; got\n%q\nwant the test host's answer, then\n%q\n%s", r.code, r.stdout, tc.want, r.stderr)
			}
			if !strings.Contains(r.stderr, tc.stderr) {
				t.Errorf("the egress rules did not stop the connect (%q):\n%s", tc.stderr, r.stderr)
			}
			if summary := fmt.Sprintf("Landlock ABI %d (file system, no TCP bind, TCP connect restricted", min(abi, landlock.MaxABI)); on && !strings.Contains(r.stderr, summary) {
				t.Errorf("the start report does not say %q:\n%s", summary, r.stderr)
			}
			assertRootlessReport(t, r.stderr, abi, on)
			h.assertNothingLeft(t, tc.name)
		})
	}
}

// manifestAllowing is h.manifest with more [insecure] items allowed
// (allow, quoted and comma-separated, as TOML has them), and why.
func (h rootlessHome) manifestAllowing(name, body, reason, allow string) string {
	p := h.manifest(name, body)
	if allow == "" {
		return p
	}
	b, _ := os.ReadFile(p)
	i := bytes.Index(b, []byte("\n[insecure]\n"))
	b = append(b[:i], fmt.Sprintf("\n[insecure]\nreason = \"cgroup v1 host: limits cannot be delegated; %s\"\nallow = [\"no_resource_limits\", %s]\n", reason, allow)...)
	os.WriteFile(p, b, 0o644)
	return p
}

// run starts safe-run as the user on manifest m and waits for it.
func (h rootlessHome) run(t *testing.T, m string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := h.cmd(ctx, m)
	var out, errOut bytes.Buffer
	c.Stdout, c.Stderr = &out, &errOut
	err := c.Run()
	code := c.ProcessState.ExitCode()
	if err != nil && code < 0 {
		t.Fatalf("safe-run: %v\n%s", err, errOut.String())
	}
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

// assertNothingLeft is assertNothingLeft for a service of the user's:
// no safe-run of its run (the outer and the inner one name the manifest
// on their command lines), no state in the user's runtime directory, no
// container directory in its data, no mount of its home on the host.
// (No cgroup: this host's v1 controllers cannot be delegated.) Other
// processes of the user's are not counted: other tests' may run.
func (h rootlessHome) assertNothingLeft(t *testing.T, name string) {
	t.Helper()
	var left []string
	manifest := filepath.Join(h.dir, name+".toml")
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		left = nil
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			if args := testenv.Cmdline(e.Name()); args != "" && strings.Contains(args, manifest) {
				left = append(left, "process "+e.Name()+": "+args)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, p := range []string{filepath.Join(h.dir, "xdg", "safe-run", name), filepath.Join(h.dir, "xdg", "safe-run", name+".lock"),
		filepath.Join(h.dir, "data", "safe-run", "containers", name)} {
		if _, err := os.Lstat(p); err == nil {
			left = append(left, "file "+p)
		}
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(mounts), "\n") {
		if strings.Contains(line, h.dir) {
			left = append(left, "mount "+line)
		}
	}
	if len(left) > 0 {
		t.Errorf("left behind by %s:\n%s", name, strings.Join(left, "\n"))
	}
}

// assertRootlessReport checks what the start report of a rootless
// service says of Landlock: the ABI, scoping from ABI 6, and that its
// denials are EACCES only (rootless, the audit records are out of reach);
// or that it is off.
func assertRootlessReport(t *testing.T, stderr string, abi int, on bool) {
	t.Helper()
	if !on {
		if !strings.Contains(stderr, "Landlock OFF") {
			t.Errorf("the start report does not say Landlock is off:\n%s", stderr)
		}
		return
	}
	want := []string{fmt.Sprintf("Landlock ABI %d (", min(abi, landlock.MaxABI))}
	if abi >= 6 {
		want = append(want, "scoped signals and abstract sockets)")
	}
	if abi >= 7 {
		want = append(want, "Landlock denials surface as EACCES only: rootless, the kernel's audit records are out of reach\n")
	} else {
		want = append(want, fmt.Sprintf("Landlock denials surface as EACCES only: the kernel audits none at ABI %d (audit needs ABI 7)\n", abi))
	}
	for _, w := range want {
		if !strings.Contains(stderr, w) {
			t.Errorf("the start report does not say %q:\n%s", w, stderr)
		}
	}
	if strings.Contains(stderr, "landlock denied") {
		t.Errorf("a denial shown rootless:\n%s", stderr)
	}
}

// startAs starts a program on the host as user u, waits for it to write
// ready (when not empty), and ends it when the test does.
func startAs(t *testing.T, u userIDs, ready string, prog string, args ...string) *exec.Cmd {
	t.Helper()
	c := exec.Command(prog, args...)
	c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: u.uid, Gid: u.gid}}
	c.Dir = "/"
	out, err := c.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Process.Kill()
		c.Wait()
	})
	if ready == "" {
		return c
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if line != ready {
		t.Fatalf("%s: %q (%v), want %q", prog, line, err, ready)
	}
	return c
}
