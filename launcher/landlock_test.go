package launcher_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/internal/testenv"
	"github.com/safe-run/safe-run/landlock"
	"github.com/safe-run/safe-run/ops"
	"github.com/safe-run/safe-run/plan"
	"github.com/safe-run/safe-run/profiles"
)

// TestLandlock runs a service under its generated ruleset and checks from
// inside what it denies; the same script with landlock = "off" shows that
// Landlock, not the mounts, is what denies it.
func TestLandlock(t *testing.T) {
	setup(t)
	abi := testenv.RequireLandlock(t, 4)
	const script = `
touch /var/x 2>/dev/null && echo parent-writable
touch /var/up/x && echo bind-writable
cp /bin/busybox /data/true && /data/true 2>/dev/null && echo volume-exec
cp /bin/busybox /tmp/true && /tmp/true 2>/dev/null && echo noexec-tmpfs-ran
cp /bin/busybox /xt/true && /xt/true && echo exec-tmpfs-ran
echo x >/dev/null && echo devnull-ok
nc -l -p 8080 2>/dev/null & sleep 0.2
nc -l -p 9999 2>/dev/null & sleep 0.2
netstat -ltn | grep -o ':[0-9]* ' | sort
kill %1 %2 2>/dev/null
true
`
	mounts := func(name string) string {
		up := filepath.Join(env.dir, "manifests", name, "up")
		if err := os.MkdirAll(up, 0o777); err != nil {
			t.Fatal(err)
		}
		os.Chmod(up, 0o777)
		return `
[[mounts]]
type = "volume"
source = "` + name + `-data"
target = "/data"

[[mounts]]
type = "tmpfs"
target = "/tmp"

[[mounts]]
type = "tmpfs"
target = "/xt"
options = ["exec"]

[[mounts]]
type = "bind"
source = "up"
target = "/var/up"
read_only = false
`
	}
	// The volume is mounted exec: only Landlock keeps what was written
	// there from running. /tmp is noexec as well; /xt asks for exec, which
	// the ruleset grants.
	on := shell(t, "llon", script, "[security]\nlandlock_bind = [8080]\n"+mounts("llon"))
	if on.code != 0 {
		t.Fatalf("exit %d\n%s\n%s", on.code, on.stdout, on.stderr)
	}
	for _, want := range []string{"bind-writable", "exec-tmpfs-ran", "devnull-ok", ":8080 "} {
		if !strings.Contains(on.stdout, want) {
			t.Errorf("Landlock on: %q missing:\n%s\n%s", want, on.stdout, on.stderr)
		}
	}
	for _, bad := range []string{"parent-writable", "volume-exec", "noexec-tmpfs-ran", ":9999 "} {
		if strings.Contains(on.stdout, bad) {
			t.Errorf("Landlock on: %q:\n%s", bad, on.stdout)
		}
	}
	if want := fmt.Sprintf("Landlock ABI %d (file system, TCP bind 8080, TCP connect restricted", min(abi, landlock.MaxABI)); !strings.Contains(on.stderr, want) {
		t.Errorf("the start report does not say %q:\n%s", want, on.stderr)
	}
	// What a denial is here: the report says when it is no more than
	// an EACCES to the service.
	audited, err := profiles.AuditEnabled()
	if err != nil {
		t.Fatal(err)
	}
	eacces := map[bool]string{true: fmt.Sprintf("Landlock denials surface as EACCES only: the kernel audits none at ABI %d (audit needs ABI 7)\n", abi),
		false: "Landlock denials surface as EACCES only: the kernel's audit is off (auditd, or auditctl -e 1, turns it on)\n"}[abi < 7]
	if shown := abi >= 7 && audited; strings.Contains(on.stderr, eacces) == shown || shown && strings.Contains(on.stderr, "EACCES only") {
		t.Errorf("kernel audit on: %v; the start report does not say (or says when it should not) %q:\n%s", audited, eacces, on.stderr)
	}
	assertNothingLeft(t, "llon")

	off := shell(t, "lloff", script, "[security]\nlandlock = \"off\"\n\n[insecure]\nreason = \"the test's control run\"\nallow = [\"landlock_off\"]\n"+mounts("lloff"))
	for _, want := range []string{"bind-writable", "volume-exec", ":8080 ", ":9999 "} {
		if !strings.Contains(off.stdout, want) {
			t.Errorf("Landlock off: %q missing:\n%s\n%s", want, off.stdout, off.stderr)
		}
	}
	if !strings.Contains(off.stderr, "Landlock OFF") {
		t.Errorf("the start report does not say Landlock is off:\n%s", off.stderr)
	}
	assertNothingLeft(t, "lloff")
	t.Logf("kernel Landlock ABI %d", abi)
}

// TestLandlockWithoutInit: with init = false safe-run-init applies the
// ruleset and execs the service in its own place, which stays PID 1. The
// container's /dev is a writable tmpfs that the ruleset only lets be read:
// a file made there is refused with EACCES (not EROFS: only Landlock
// refuses it), and made with Landlock off.
func TestLandlockWithoutInit(t *testing.T) {
	setup(t)
	abi := testenv.RequireLandlock(t, 1)
	const script = `
echo pid $$
touch /dev/x 2>&1 && echo dev-writable
touch /var/up/x && echo bind-writable
cp /bin/busybox /data/true && /data/true 2>/dev/null && echo volume-exec
trap 'echo got TERM; exit 3' TERM
echo waiting
while :; do sleep 0.05; done
`
	mounts := func(name string) string {
		up := filepath.Join(env.dir, "manifests", name, "up")
		if err := os.MkdirAll(up, 0o777); err != nil {
			t.Fatal(err)
		}
		os.Chmod(up, 0o777)
		return "init = false\n\n[[mounts]]\ntype = \"volume\"\nsource = \"" + name + "-data\"\ntarget = \"/data\"\n\n" +
			"[[mounts]]\ntype = \"bind\"\nsource = \"up\"\ntarget = \"/var/up\"\nread_only = false\n"
	}
	for _, tc := range []struct {
		name, extra  string
		want, unwant []string
		report       string
	}{
		{"llnoinit", "", []string{"pid 1\n", "touch: /dev/x: Permission denied", "bind-writable", "got TERM"}, []string{"dev-writable", "volume-exec"},
			fmt.Sprintf("Landlock ABI %d (file system", min(abi, landlock.MaxABI))},
		{"llnoinit-off", "\n[security]\nlandlock = \"off\"\n\n[insecure]\nreason = \"the test's control run\"\nallow = [\"landlock_off\"]\n",
			[]string{"pid 1\n", "dev-writable", "bind-writable", "volume-exec", "got TERM"}, nil, "Landlock OFF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runSignalled(t, manifestFor(t, tc.name, fmt.Sprintf("[process]\ncommand = [\"/bin/sh\", \"-c\", %q]\n%s%s", script, mounts(tc.name), tc.extra)), "waiting\n", syscall.SIGTERM)
			if r.code != 3 {
				t.Errorf("exit %d, want 3 (the service's own, after its TERM trap)", r.code)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stdout, w) {
					t.Errorf("%q missing:\n%s\n%s", w, r.stdout, r.stderr)
				}
			}
			for _, bad := range tc.unwant {
				if strings.Contains(r.stdout, bad) {
					t.Errorf("%q:\n%s", bad, r.stdout)
				}
			}
			if !strings.Contains(r.stderr, tc.report) || strings.Contains(r.stderr, "/dev/init") {
				t.Errorf("the start report does not say %q, or names safe-run-init:\n%s", tc.report, r.stderr)
			}
			assertNothingLeft(t, tc.name)
		})
	}
}

// TestInitAppliesLandlock runs safe-run-init on the host with a ruleset
// that grants reading and running everywhere and nothing else: a write
// is denied; a ruleset cut short starts nothing.
func TestInitAppliesLandlock(t *testing.T) {
	setup(t)
	abi := testenv.RequireLandlock(t, 1)
	dir := t.TempDir()
	r := &landlock.Ruleset{ABI: abi, HandledFS: landlock.FSRights(abi),
		Paths: []landlock.PathRule{{Path: "/", Access: landlock.FSReadFile | landlock.FSReadDir | landlock.FSExecute}}}
	ll, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		sent []byte
		code int
	}{
		{"none", noLandlock, 0},
		{"whole", ll, 1},
		{"cut short", ll[:len(ll)-3], 125},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sent := append(make([]byte, 8), tc.sent...)
			c, own, out := initLink(t, sent, sh, "-c", "echo x > "+filepath.Join(dir, tc.name)+" || exit 1")
			if tc.code == 125 {
				own.Close()
			}
			_ = c.Wait()
			own.Close()
			if code := c.ProcessState.ExitCode(); code != tc.code {
				t.Errorf("exit %d, want %d: %s", code, tc.code, out)
			}
		})
	}
}

// TestLandlockScopesAbstractSockets: with the host's network, a service
// could reach the abstract unix sockets of host processes (an X server,
// D-Bus, systemd's), which no file permission guards. Landlock's scoping
// (ABI 6) refuses every one made outside the service; with Landlock off,
// the same connect succeeds.
func TestLandlockScopesAbstractSockets(t *testing.T) {
	setup(t)
	abi := testenv.RequireLandlock(t, 6)
	if abi >= 7 {
		testenv.EnableAudit(t) // and the denial is shown
	}
	name := fmt.Sprintf("safe-run-test-ll-%d", os.Getpid())
	ln, err := net.Listen("unix", "@"+name)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	body := func(insecure string) string {
		return fmt.Sprintf("[process]\ncommand = [\"/bin/confinement\", \"-connect-abstract\", %q]\n\n[network]\nmode = \"host\"\n\n%s\n[insecure]\nreason = \"the test reaches an abstract socket of the host\"\nallow = [%s]\n",
			name, map[bool]string{true: "[security]\nlandlock = \"off\"\n"}[insecure != ""], `"host_network"`+insecure)
	}
	on := run(t, manifestFor(t, "llabstract", body("")), "")
	if on.code == 0 || !strings.Contains(on.stdout, "operation not permitted") {
		t.Errorf("Landlock on: exit %d, want a refused connect:\n%s\n%s", on.code, on.stdout, on.stderr)
	}
	if shown := "safe-run: llabstract: landlock denied abstract-unix-socket @" + name + "\n"; abi >= 7 && !strings.Contains(on.stderr, shown) {
		t.Errorf("%q not shown:\n%s", shown, on.stderr)
	}
	assertNothingLeft(t, "llabstract")
	off := run(t, manifestFor(t, "llabstract-off", body(`, "landlock_off"`)), "")
	if off.code != 0 || !strings.Contains(off.stdout, "connected") {
		t.Errorf("Landlock off (the control): exit %d, want connected:\n%s\n%s", off.code, off.stdout, off.stderr)
	}
	assertNothingLeft(t, "llabstract-off")
}

// TestLandlockScopesSignals: with the host's PID namespace, a service can
// see the host's processes, and signal those of its own host uid. A
// process of that uid outside the service stands in for one: Landlock's
// scoping (ABI 6) refuses the signal; with Landlock off, the same signal
// is delivered. The service's ids are allocated once per name, so the
// first run learns them from the start report.
func TestLandlockScopesSignals(t *testing.T) {
	setup(t)
	abi := testenv.RequireLandlock(t, 6)
	if abi >= 7 {
		testenv.EnableAudit(t) // and the denial is shown
	}
	const name = "llsignal"
	write := func(script, security, allow string) string {
		return manifestFor(t, name, fmt.Sprintf("[process]\ncommand = [\"/bin/sh\", \"-c\", %q]\nuser = \"0:0\"\n\n%s\n[namespaces]\npid = \"host\"\n\n[insecure]\nreason = \"the test signals a host process\"\nallow = [\"host_pid\"%s]\n",
			script, security, allow))
	}
	first := run(t, write("true", "", ""), "")
	m := regexp.MustCompile(`user namespace 0-65535 -> (\d+)-`).FindStringSubmatch(first.stderr)
	if first.code != 0 || m == nil {
		t.Fatalf("exit %d, no host ids in the start report:\n%s", first.code, first.stderr)
	}
	uid, _ := strconv.Atoi(m[1])
	sleeper := exec.Command("sleep", "60")
	sleeper.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sleeper.Process.Kill(); sleeper.Wait() }()
	script := fmt.Sprintf("kill -0 %d && echo signalled || echo refused", sleeper.Process.Pid)

	on := run(t, write(script, "", ""), "")
	if on.code != 0 || !strings.Contains(on.stdout, "refused") {
		t.Errorf("Landlock on: exit %d, want the signal refused:\n%s\n%s", on.code, on.stdout, on.stderr)
	}
	if shown := fmt.Sprintf("safe-run: %s: landlock denied signal host pid %d (sleep)\n", name, sleeper.Process.Pid); abi >= 7 && !strings.Contains(on.stderr, shown) {
		t.Errorf("%q not shown:\n%s", shown, on.stderr)
	}
	off := run(t, write(script, "[security]\nlandlock = \"off\"\n", `, "landlock_off"`), "")
	if off.code != 0 || !strings.Contains(off.stdout, "signalled") {
		t.Errorf("Landlock off (the control): exit %d, want the signal delivered:\n%s\n%s", off.code, off.stdout, off.stderr)
	}
	assertNothingLeft(t, name)
}

// BenchmarkInitLandlock is what applying a ruleset costs safe-run-init:
// the example service's ruleset (its image, /tmp, the devices) against
// none, safe-run-init starting /bin/true on the host each time.
func BenchmarkInitLandlock(b *testing.B) {
	setup(b)
	abi := testenv.RequireLandlock(b, 1)
	rules := &landlock.Ruleset{ABI: abi, HandledFS: landlock.FSRights(abi)}
	for _, p := range []string{"/", "/bin", "/etc", "/run", "/var", "/tmp", "/dev/shm", "/dev/pts",
		"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty", "/dev/ptmx"} {
		rules.Paths = append(rules.Paths, landlock.PathRule{Path: p, Access: landlock.FSReadFile})
	}
	rules.Paths[0].Access |= landlock.FSExecute // the host's /bin/true
	ll, err := rules.Encode()
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		sent []byte
	}{{"off", noLandlock}, {"on", ll}} {
		b.Run(bc.name, func(b *testing.B) {
			sent := append(make([]byte, 8), bc.sent...)
			for b.Loop() {
				c, own, out := initLink(b, sent, "/bin/true")
				if err := c.Wait(); err != nil {
					b.Fatalf("%v: %s", err, out)
				}
				own.Close()
			}
		})
	}
}

// runSignalled starts safe-run on a manifest, sends it sig once the
// service has written mark, and waits for it: the signal reaches the
// service only once it takes signals.
func runSignalled(t *testing.T, manifest, mark string, sig syscall.Signal) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := safeRun(t, ctx, manifest)
	var out, errOut bytes.Buffer
	pr, pw := io.Pipe()
	c.Stdout, c.Stderr = io.MultiWriter(&out, pw), &errOut
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.Wait(); pw.Close() }()
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		if sc.Text()+"\n" == mark {
			c.Process.Signal(sig)
			break
		}
	}
	io.Copy(io.Discard, pr)
	code := c.ProcessState.ExitCode()
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

// TestRecordLandlockDenials: `profile record` runs the service without its
// ruleset and ends with what the ruleset would deny of what it did: a
// file written in /dev, a program dropped on a volume and run, an
// undeclared TCP port listened on; not the declared port, nor a write to
// the writable bind. Without the ruleset all of them succeed.
func TestRecordLandlockDenials(t *testing.T) {
	setup(t)
	abi := testenv.RequireLandlock(t, 4)
	const script = `
touch /dev/x && echo dev-writable
touch /var/up/x && echo bind-writable
cp /bin/busybox /data/true && /data/true && echo volume-exec
nc -l -p 8080 2>/dev/null & nc -l -p 9999 2>/dev/null & sleep 0.3
kill %1 %2
echo done
`
	up := filepath.Join(env.dir, "manifests", "llrecord", "up")
	if err := os.MkdirAll(up, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(up, 0o777)
	m := manifestFor(t, "llrecord", fmt.Sprintf("[process]\ncommand = [\"/bin/sh\", \"-c\", %q]\n\n[security]\nlandlock_bind = [8080]\n\n"+
		"[[mounts]]\ntype = \"volume\"\nsource = \"llrecord-data\"\ntarget = \"/data\"\n\n[[mounts]]\ntype = \"bind\"\nsource = \"up\"\ntarget = \"/var/up\"\nread_only = false\n", script))
	// The kernel's audit on changes nothing but the note (see
	// unrecordedAccesses): the run without the ruleset makes no denial
	// for it to audit.
	for _, audit := range []bool{false, true} {
		t.Run(map[bool]string{false: "audit as the host has it", true: "audit on"}[audit], func(t *testing.T) {
			if audit {
				testenv.RequireLandlock(t, 7)
				testenv.EnableAudit(t)
			}
			r := tools(t, "profile", "record", m, "-o", filepath.Join(filepath.Dir(m), "recorded.json"))
			if r.code != 0 {
				t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
			}
			for _, want := range []string{"dev-writable", "bind-writable", "volume-exec", "done"} {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("recording without the ruleset: %q missing:\n%s\n%s", want, r.stdout, r.stderr)
				}
			}
			note := "Landlock: not recorded (Landlock has no mode that only reports): directories made or removed, renames and links, device ioctls, TCP connects, abstract sockets, signals; a run with the ruleset "
			on, err := profiles.AuditEnabled()
			switch {
			case err != nil:
				t.Fatal(err)
			case abi < 7:
				note += "refuses those it denies with EACCES"
			case on:
				note += "shows those it denies (the kernel's audit is on)\n"
			default:
				note += "shows those it denies where the kernel's audit is on (auditd, or auditctl -e 1)\n"
			}
			for _, want := range []string{"Landlock not enforced while recording", note,
				"Landlock would deny write-file /dev/x\n",
				"Landlock would deny execute /data/true\n", "Landlock would deny bind-tcp port 9999\n"} {
				if !strings.Contains(r.stderr, want) {
					t.Errorf("%q missing:\n%s", want, r.stderr)
				}
			}
			for _, bad := range []string{"port 8080", "/var/up", "Landlock ABI", "landlock denied"} {
				if strings.Contains(r.stderr, bad) {
					t.Errorf("%q:\n%s", bad, r.stderr)
				}
			}
			assertNothingLeft(t, "llrecord")
		})
	}
}

// TestLandlockConnect: in bridge mode with egress naming the test host's
// port, the ruleset lets the service connect to that port only (ABI 4).
// A connect to another port of the test host fails at once with EACCES,
// Landlock's refusal, before any packet leaves: with Landlock off, the
// same connect is dropped by the egress firewall instead, and times out.
func TestLandlockConnect(t *testing.T) {
	setup(t)
	testenv.RequireLandlock(t, 4)
	th := makeTestHost(t)
	script := fmt.Sprintf(`printf 'GET / HTTP/1.0\r\n\r\n' | timeout 3 nc %[1]s %[2]d 2>&1 | head -1
timeout 1 nc %[1]s %[3]d </dev/null 2>&1; echo end`, th.addr, th.port, th.port+1)
	body := func(security string) string {
		return fmt.Sprintf("[process]\ncommand = [\"/bin/sh\", \"-c\", %q]\n\n[network]\nmode = \"bridge\"\negress = [\"%s/32:%d\"]\n%s",
			script, th.addr, th.port, security)
	}
	on := run(t, manifestFor(t, "llconnect", body("")), "")
	if on.code != 0 || !strings.Contains(on.stdout, "HTTP/1") || !strings.Contains(on.stdout, "Permission denied") {
		t.Errorf("Landlock on: exit %d, want the declared port reached and the other refused with EACCES:\n%s\n%s", on.code, on.stdout, on.stderr)
	}
	assertNothingLeft(t, "llconnect")
	off := run(t, manifestFor(t, "llconnect-off", body("\n[security]\nlandlock = \"off\"\n\n[insecure]\nreason = \"the test's control run\"\nallow = [\"landlock_off\"]\n")), "")
	if off.code != 0 || !strings.Contains(off.stdout, "HTTP/1") || strings.Contains(off.stdout, "Permission denied") {
		t.Errorf("Landlock off (the control): exit %d, want the other port refused, but not with EACCES:\n%s\n%s", off.code, off.stdout, off.stderr)
	}
	assertNothingLeft(t, "llconnect-off")
}

// TestLandlockRootless: without root the ruleset is applied all the same,
// by safe-run-init as init and, with init = false, before it execs the
// service: a file made in the container's /dev is refused with EACCES,
// and so are running a program dropped on a volume (mounted exec),
// listening on a port not declared and connecting to one (ABI 4).
func TestLandlockRootless(t *testing.T) {
	setup(t)
	abi := testenv.RequireLandlock(t, 1)
	h := newRootlessHome(t, "rootless-landlock")
	// A port not declared: listening on it, and connecting to another
	// on loopback (nothing listens there: ECONNREFUSED without Landlock).
	const script = `echo pid $$; touch /dev/x 2>&1; cp /bin/busybox /data/true && /data/true 2>&1
nc -l -p 9999 2>/dev/null & sleep 0.2; netstat -ltn | grep -q ':9999 ' && echo bound || echo not-bound; kill %1 2>/dev/null
nc 127.0.0.1 9998 </dev/null 2>&1; echo done`
	denied := "touch: /dev/x: Permission denied\n/bin/sh: /data/true: Permission denied\nnot-bound\nnc: can't connect to remote host (127.0.0.1): Permission denied\ndone\n"
	if abi < 4 {
		denied = "touch: /dev/x: Permission denied\n/bin/sh: /data/true: Permission denied\nbound\nnc: can't connect to remote host (127.0.0.1): Connection refused\ndone\n"
	}
	for _, tc := range []struct{ name, extra, pid, want string }{
		{"llrl-init", "", "", denied},
		{"llrl-noinit", "init = false\n", "pid 1\n", denied}, // the service, not an init
		// The control: the mounts and the network alone allow all.
		{"llrl-off", "\n[security]\nlandlock = \"off\"\n", "", "\nbound\nnc: can't connect to remote host (127.0.0.1): Connection refused\ndone\n"},
	} {
		tc.extra += "\n[[mounts]]\ntype = \"volume\"\nsource = \"" + tc.name + "-data\"\ntarget = \"/data\"\n"
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			m := h.manifest(tc.name, fmt.Sprintf("[process]\ncommand = [\"/bin/sh\", \"-c\", %q]\n%s", script, tc.extra))
			if tc.want != denied {
				// rootlessWaiver's [insecure], with landlock_off.
				b, _ := os.ReadFile(m)
				os.WriteFile(m, bytes.Replace(b, []byte(`allow = ["no_resource_limits"]`), []byte(`allow = ["no_resource_limits", "landlock_off"]`), 1), 0o644)
			}
			c := h.cmd(ctx, m)
			var out, errOut bytes.Buffer
			c.Stdout, c.Stderr = &out, &errOut
			err := c.Run()
			if err != nil || !strings.HasSuffix(out.String(), tc.want) || !strings.HasPrefix(out.String(), tc.pid) || tc.want != denied && strings.Contains(out.String(), "Permission denied") {
				t.Errorf("%v: got\n%swant\n%s%s", err, out.String(), tc.want, errOut.String())
			}
			if tc.want != denied {
				if !strings.Contains(errOut.String(), "Landlock OFF") {
					t.Errorf("the start report does not say Landlock is off:\n%s", errOut.String())
				}
				return
			}
			if report := fmt.Sprintf("Landlock ABI %d (", min(abi, landlock.MaxABI)); !strings.Contains(errOut.String(), report) {
				t.Errorf("the start report does not say %q:\n%s", report, errOut.String())
			}
			// Rootless, safe-run cannot read the audit records, whatever
			// the kernel audits.
			eacces := "Landlock denials surface as EACCES only: rootless, the kernel's audit records are out of reach\n"
			if abi < 7 {
				eacces = fmt.Sprintf("Landlock denials surface as EACCES only: the kernel audits none at ABI %d (audit needs ABI 7)\n", abi)
			}
			if !strings.Contains(errOut.String(), eacces) {
				t.Errorf("the start report does not say %q:\n%s", eacces, errOut.String())
			}
		})
	}
}

// TestInitNoInitExecs runs safe-run-init --no-init on the host: it
// applies the ruleset (a write is denied) and becomes the service, with
// the same pid; it writes nothing on the socket, whose end closes at the
// exec, the word that the service takes signals.
func TestInitNoInitExecs(t *testing.T) {
	setup(t)
	abi := testenv.RequireLandlock(t, 1)
	r := &landlock.Ruleset{ABI: abi, HandledFS: landlock.FSRights(abi),
		Paths: []landlock.PathRule{{Path: "/", Access: landlock.FSReadFile | landlock.FSReadDir | landlock.FSExecute}}}
	ll, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	own, peer := os.NewFile(uintptr(fds[0]), "own"), os.NewFile(uintptr(fds[1]), "peer")
	defer own.Close()
	if _, err := own.Write(append(make([]byte, 8), ll...)); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "x")
	c := exec.Command(env.init, "--control-fd", "3", plan.NoInitFlag, "--", "/bin/sh", "-c", "echo $$; echo x > "+file+" || exit 7")
	c.ExtraFiles = []*os.File{peer}
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	peer.Close()
	rest, _ := io.ReadAll(own)
	c.Wait()
	if code := c.ProcessState.ExitCode(); code != 7 || !strings.HasPrefix(out.String(), strconv.Itoa(c.Process.Pid)+"\n") {
		t.Errorf("exit %d, want 7 (the write denied), from the shell as pid %d:\n%s", code, c.Process.Pid, out.String())
	}
	if len(rest) != 0 {
		t.Errorf("safe-run-init wrote %q on the socket", rest)
	}
}

// TestLandlockDenialsShown: where the kernel audits Landlock's denials
// (ABI 7, its audit on), safe-run shows the service's on its stderr, as
// seccomp's: one line per right and object, at most five a second for
// each right, the rest summed up; and journals them as landlock events.
// This host's audit is off, as safe-run leaves it (README, "Landlock
// denials"): the test turns it on for its run, and back off.
func TestLandlockDenialsShown(t *testing.T) {
	setup(t)
	testenv.RequireLandlock(t, 7)
	testenv.EnableAudit(t)
	const n = 1000
	// The flood last: it overflows the kernel's audit backlog, and
	// what follows it closely is lost with it (which safe-run says).
	script := fmt.Sprintf(`
cp /bin/busybox /data/true && /data/true 2>/dev/null
nc -l -p 9999 2>/dev/null & sleep 0.2; kill %%1
nc 127.0.0.1 9998 </dev/null 2>/dev/null
i=0; while [ $i -lt %d ]; do echo x 2>/dev/null >/dev/x; i=$((i+1)); done
true
`, n)
	since := time.Now()
	r := shell(t, "llaudit", script, "[[mounts]]\ntype = \"volume\"\nsource = \"llaudit-data\"\ntarget = \"/data\"\n")
	if r.code != 0 {
		t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	assertNothingLeft(t, "llaudit")
	if strings.Contains(r.stderr, "EACCES only") {
		t.Errorf("the start report says denials are not shown:\n%s", r.stderr)
	}
	for _, want := range []string{
		"safe-run: llaudit: landlock denied execute /data/true\n",
		"safe-run: llaudit: landlock denied bind-tcp port 9999\n",
		"safe-run: llaudit: landlock denied connect-tcp port 9998\n",
	} {
		if strings.Count(r.stderr, want) != 1 {
			t.Errorf("%q not shown once:\n%s", want, r.stderr)
		}
	}
	// The n denials of the loop: a few lines, the rest summed up, and
	// what the kernel lost (Landlock audits with GFP_ATOMIC: past the
	// audit backlog, 64 records by default, it drops them).
	shown := strings.Count(r.stderr, "safe-run: llaudit: landlock denied make-reg in /dev\n")
	suppressed, lost := 0, 0
	for _, m := range regexp.MustCompile(`landlock denied make-reg: (\d+) more suppressed\n`).FindAllStringSubmatch(r.stderr, -1) {
		k, _ := strconv.Atoi(m[1])
		suppressed += k
	}
	if m := regexp.MustCompile(`the kernel lost (\d+) audit records`).FindStringSubmatch(r.stderr); m != nil {
		lost, _ = strconv.Atoi(m[1])
	}
	if shown == 0 || shown > 20 || suppressed == 0 || shown+suppressed > n || shown+suppressed+lost < n {
		t.Errorf("%d denials: %d lines shown, %d suppressed, %d audit records lost:\n%s", n, shown, suppressed, lost, r.stderr)
	}
	t.Logf("%d denials: %d lines shown, %d suppressed, %d audit records lost", n, shown, suppressed, lost)

	evs, err := ops.ReadEvents(ops.JournalDir(env.dataDir), []string{"llaudit"}, since)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, e := range evs {
		if strings.HasPrefix(e.Message, "landlock denied ") {
			kinds[e.Kind]++
		}
	}
	if want := shown + 3 + len(regexp.MustCompile(`landlock denied [^\n]*more suppressed`).FindAllString(r.stderr, -1)); kinds[ops.EventLandlock] != want || len(kinds) != 1 {
		t.Errorf("journal: %v landlock lines by kind, want %d of kind %q", kinds, want, ops.EventLandlock)
	}
}
