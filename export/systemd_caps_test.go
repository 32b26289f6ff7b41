package export

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/safe-run/safe-run/internal/testenv"
)

// oldBoundingSet is the bounding set every exported unit had before it
// followed the manifest: bridge networking, denial logging, OOM victim
// names and image unpacking all failed under it.
var oldBoundingSet = []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SETGID", "CAP_SETUID", "CAP_SYS_ADMIN", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE"}

// capsEnv is what TestSystemdBoundingSet's scenarios share: the binaries,
// the image, and a directory that a container's mapped root may traverse.
type capsEnv struct {
	safeRun, rootfs, oci, dir, prefix string
}

// unitCaps is what a unit says of the capabilities safe-run runs with:
// its bounding set and whether it sets no_new_privs.
type unitCaps struct {
	bound []string
	nnp   bool
}

// exportUnit runs `safe-run export systemd` on manifest, as an operator
// does, and reads the unit's capabilities back from its text.
func (e *capsEnv) exportUnit(t *testing.T, manifest string) unitCaps {
	t.Helper()
	cmd := exec.Command(e.safeRun, "export", "systemd", manifest)
	// A scratch state: the export resolves the image, and must not
	// unpack it where the run will look.
	scratch := t.TempDir()
	cmd.Env = append(os.Environ(), "SAFE_RUN_STATE_DIR="+filepath.Join(scratch, "run"), "SAFE_RUN_DATA_DIR="+filepath.Join(scratch, "data"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("safe-run export systemd %s: %v\n%s", manifest, err, stderr.String())
	}
	var u unitCaps
	found := false
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "CapabilityBoundingSet="); ok {
			u.bound, found = strings.Fields(v), true
		}
		if line == "NoNewPrivileges=yes" {
			u.nnp = true
		}
	}
	if !found {
		t.Fatalf("the unit has no CapabilityBoundingSet=:\n%s", out)
	}
	return u
}

// setprivArgs runs safe-run as systemd runs the unit's main process as
// root: the bounding set, no inheritable or ambient capabilities (the
// unit sets neither), and no_new_privs where the unit asks.
func (u unitCaps) setprivArgs() []string {
	bs := "-all"
	for _, c := range u.bound {
		bs += ",+" + strings.ToLower(strings.TrimPrefix(c, "CAP_"))
	}
	args := []string{"--bounding-set", bs, "--inh-caps=-all", "--ambient-caps=-all"}
	if u.nnp {
		args = append(args, "--no-new-privs")
	}
	return args
}

// capsRun is one scenario's run: its own state and data directories, which
// its services share (a bridge, exec and stop find them there).
type capsRun struct {
	e    *capsEnv
	caps unitCaps
	env  []string
	dir  string
	bg   []*bgService
}

type bgService struct {
	cmd    *exec.Cmd
	stdout *testenv.Buffer
	stderr *testenv.Buffer
	done   chan struct{}
	err    error
}

func (e *capsEnv) newRun(t *testing.T, caps unitCaps) *capsRun {
	t.Helper()
	dir, err := os.MkdirTemp(e.dir, "run-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	r := &capsRun{e: e, caps: caps, dir: dir,
		env: append(os.Environ(), "SAFE_RUN_STATE_DIR="+filepath.Join(dir, "run"), "SAFE_RUN_DATA_DIR="+filepath.Join(dir, "data"))}
	t.Cleanup(r.stopAll)
	return r
}

// command is safe-run under the unit's capabilities.
func (r *capsRun) command(manifest string) *exec.Cmd {
	args := append(r.caps.setprivArgs(), "--", r.e.safeRun, manifest)
	cmd := exec.Command("setpriv", args...)
	cmd.Env = r.env
	return cmd
}

// run runs a service to its end: its exit code, stdout and stderr.
func (r *capsRun) run(t *testing.T, manifest string) (int, string, string) {
	t.Helper()
	cmd := r.command(manifest)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(90 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("%s has not ended after 90s:\n%s", manifest, stderr.String())
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

// start starts a service that runs until stopped.
func (r *capsRun) start(t *testing.T, manifest string) *bgService {
	t.Helper()
	s := &bgService{cmd: r.command(manifest), stdout: &testenv.Buffer{}, stderr: &testenv.Buffer{}, done: make(chan struct{})}
	s.cmd.Stdout, s.cmd.Stderr = s.stdout, s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.err = s.cmd.Wait(); close(s.done) }()
	r.bg = append(r.bg, s)
	return s
}

// stopAll stops what start started, as systemctl stop does (SIGTERM to
// safe-run), and kills what is left after 20s.
func (r *capsRun) stopAll() {
	for _, s := range r.bg {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, s := range r.bg {
		select {
		case <-s.done:
		case <-time.After(20 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	}
	r.bg = nil
}

// ended says whether s has ended, and its stderr.
func (s *bgService) ended() (bool, string) {
	select {
	case <-s.done:
		return true, s.stderr.String()
	default:
		return false, ""
	}
}

// waitFor waits until cond holds, or s ends, or 30s pass; it says whether
// cond held, and why not.
func (s *bgService) waitFor(cond func() bool) (bool, string) {
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if cond() {
			return true, ""
		}
		if done, stderr := s.ended(); done {
			return cond(), fmt.Sprintf("safe-run ended (%v):\n%s", s.err, stderr)
		}
	}
	return false, "not after 30s:\n" + s.stderr.String()
}

// manifest writes a manifest of the example image to the run's directory;
// body is everything after [image].
func (e *capsEnv) manifest(t *testing.T, name, image, body string) string {
	t.Helper()
	path := filepath.Join(e.dir, name+".toml")
	text := fmt.Sprintf("version = 1\nname = %q\n\n[image]\n%s\n\n%s", e.prefix+name, image, body)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// capsScenario is one use of safe-run whose needs the bounding set must
// meet. check returns "" when safe-run did what was asked, or what went
// wrong. oldFails: the bounding set of before could not do it.
type capsScenario struct {
	name     string
	manifest []string // written by TestSystemdBoundingSet; the unit is exported from the first
	oldFails bool
	check    func(t *testing.T, r *capsRun, manifests []string) string
}

// httpdOnBridge is the manifest text of a web service's pages (www, bound at /www) and its
// network: bridge, publishing ports.
func httpdOnBridge(www, bridge string, ports ...string) string {
	return fmt.Sprintf(`
[[mounts]]
type = "bind"
source = %q
target = "/www"

[network]
mode = "bridge"
bridge = %q
ports = ["%s"]
`, www, bridge, strings.Join(ports, `", "`))
}

const capsResources = `
[resources]
memory = "64M"
cpus = 0.5
pids = 64
`

// TestSystemdBoundingSet exports the unit of services that use each of
// safe-run's features, reads the unit's CapabilityBoundingSet, and runs
// the real binary under exactly that set (setpriv, as systemd would for
// the unit's root process): each must work. Under the bounding set units
// had before, those marked oldFails must not; that is what a probe found
// (bridge mode refused, denials and OOM victims not shown).
func TestSystemdBoundingSet(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.Long(t)
	testenv.RequireTool(t, "setpriv")
	dir, err := os.MkdirTemp("/var/lib", "safe-run-export-caps-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	e := &capsEnv{dir: dir, prefix: fmt.Sprintf("bs%d-", os.Getpid()%100000)}
	if bin := os.Getenv("SAFE_RUN_BIN"); bin != "" {
		e.safeRun = filepath.Join(bin, "safe-run")
	} else {
		e.safeRun = buildSafeRun(t, dir)
	}
	rootfs := exampleRootfs(t)
	e.rootfs = filepath.Join(dir, "rootfs")
	if out, err := exec.Command("cp", "-a", rootfs, e.rootfs).CombinedOutput(); err != nil {
		t.Fatalf("copying the rootfs: %v: %s", err, out)
	}
	e.oci = ociWithOwners(t, dir, rootfs)
	www := filepath.Join(dir, "www")
	if err := os.Mkdir(www, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(www, "index.html"), []byte("bounded\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	port := testenv.FreePort(t)
	th := newCapsTestHost(t)
	lanPort := testenv.FreePort(t)
	rootfsImage := fmt.Sprintf("rootfs = %q", e.rootfs)
	shell := func(script string) string {
		return fmt.Sprintf("[process]\ncommand = [\"/bin/sh\", \"-c\", %q]\nuser = \"1000:1000\"\nstop_timeout = \"2s\"\n", script)
	}
	// Bridges of the test's own, named apart from every other run's.
	bridge := fmt.Sprintf("bs%d", os.Getpid()%100000)

	scenarios := []capsScenario{{
		name:     "network none",
		manifest: []string{e.manifest(t, "none", rootfsImage, shell("/bin/confinement -json")+"\n[security]\nseccomp_log = false\n"+capsResources)},
		check: func(t *testing.T, r *capsRun, m []string) string {
			code, stdout, stderr := r.run(t, m[0])
			if code != 0 || !strings.Contains(stdout, `"CapEff"`) {
				return fmt.Sprintf("exit %d:\n%s%s", code, stdout, stderr)
			}
			return ""
		},
	}, {
		name:     "bridge with a published port",
		manifest: []string{e.manifest(t, "web", rootfsImage, shell("exec httpd -f -vv -p 80 -h /www")+capsResources+httpdOnBridge(www, bridge+"-web", fmt.Sprint(port, ":80"), fmt.Sprint(th.hostAddr, ":", lanPort, ":80")))},
		oldFails: true,
		check: func(t *testing.T, r *capsRun, m []string) string {
			s := r.start(t, m[0])
			body := ""
			ok, why := s.waitFor(func() bool {
				resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
				if err != nil {
					return false
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				body = string(b)
				return resp.StatusCode == http.StatusOK
			})
			if !ok || body != "bounded\n" {
				return fmt.Sprintf("no HTTP 200 from 127.0.0.1:%d (body %q): %s", port, body, why)
			}
			// A client that is not on the host's loopback: the forwarder
			// dials the service from the client's own address
			// (IP_TRANSPARENT, which CAP_NET_ADMIN allows without
			// CAP_NET_RAW), and httpd sees it.
			url := fmt.Sprintf("http://%s:%d/", th.hostAddr, lanPort)
			out, err := exec.Command("ip", "netns", "exec", th.name, "curl", "-sS", "--max-time", "10", url).CombinedOutput()
			if err != nil || string(out) != "bounded\n" {
				return fmt.Sprintf("GET %s from the test host %s: %v: %s\n%s", url, th.addr, err, out, s.stderr.String())
			}
			if ok, why := s.waitFor(func() bool { return strings.Contains(s.stderr.String(), ":"+th.addr.String()+"]:") }); !ok {
				return fmt.Sprintf("httpd did not see the client's own address %s: %s", th.addr, why)
			}
			return ""
		},
	}, {
		name: "two services on a named bridge resolve each other",
		manifest: []string{
			e.manifest(t, "a", rootfsImage, shell(fmt.Sprintf("httpd -p 80 -h /etc; until nslookup %sb >/dev/null 2>&1; do sleep 0.2; done; echo A-RESOLVED-B; exec sleep 600", e.prefix))+capsResources+fmt.Sprintf("\n[security]\nlandlock_bind = [80]\n\n[network]\nmode = \"bridge\"\nbridge = \"%s-ab\"\n", bridge)),
			e.manifest(t, "b", rootfsImage, shell(fmt.Sprintf("until wget -q -O /dev/null http://%sa/hostname; do sleep 0.2; done; echo B-GOT-A; exec sleep 600", e.prefix))+capsResources+fmt.Sprintf("\n[network]\nmode = \"bridge\"\nbridge = \"%s-ab\"\n", bridge)),
		},
		oldFails: true,
		check: func(t *testing.T, r *capsRun, m []string) string {
			a, b := r.start(t, m[0]), r.start(t, m[1])
			if ok, why := a.waitFor(func() bool { return strings.Contains(a.stdout.String(), "A-RESOLVED-B") }); !ok {
				return "a did not resolve b: " + why
			}
			if ok, why := b.waitFor(func() bool { return strings.Contains(b.stdout.String(), "B-GOT-A") }); !ok {
				return "b did not reach a by name: " + why
			}
			return ""
		},
	}, {
		name:     "seccomp_log shows a denial",
		manifest: []string{e.manifest(t, "slog", rootfsImage, shell("unshare -U true; echo done")+capsResources)},
		oldFails: true,
		check: func(t *testing.T, r *capsRun, m []string) string {
			code, _, stderr := r.run(t, m[0])
			if code != 0 || !strings.Contains(stderr, "seccomp denied unshare") || strings.Contains(stderr, "not shown") {
				return fmt.Sprintf("exit %d, no denial shown:\n%s", code, stderr)
			}
			// Landlock's denials are shown where the kernel's audit is
			// on, which only CAP_AUDIT_CONTROL may ask (AUDIT_GET).
			if strings.Contains(stderr, "asking the kernel whether its audit is on") {
				return "safe-run could not ask whether the kernel's audit is on:\n" + stderr
			}
			return ""
		},
	}, {
		name: "OOM victims named",
		// A subshell grows past the limit; the service goes on.
		manifest: []string{e.manifest(t, "oom", rootfsImage, shell(`(x=$(head -c 200000000 /dev/zero | tr '\0' a)); echo survived; sleep 1`)+`
[security]
seccomp_log = false

[resources]
memory = "16M"
cpus = 0.5
pids = 64
`)},
		oldFails: true,
		check: func(t *testing.T, r *capsRun, m []string) string {
			// The kernel prints its OOM summaries at most 10 in 5s,
			// host-wide: another test's hogs may take them all. Without
			// CAP_SYSLOG, /dev/kmsg cannot be read at all.
			tries := 3
			if !slices.Contains(r.caps.bound, "CAP_SYSLOG") {
				tries = 1
			}
			var stderr string
			for range tries {
				var code int
				code, _, stderr = r.run(t, m[0])
				if code == 0 && strings.Contains(stderr, "OOM-killed") && strings.Contains(stderr, "(host pid ") {
					return ""
				}
				time.Sleep(5 * time.Second)
			}
			return "the OOM-killed process is not named:\n" + stderr
		},
	}, {
		name: "OCI image unpacked",
		manifest: []string{e.manifest(t, "oci", fmt.Sprintf("oci = %q", e.oci+":latest"), `[process]
command = ["/bin/sh", "-c", "stat -c '%a %u:%g %n' /var/mail /home/app/f"]
`+capsResources)},
		oldFails: true,
		check: func(t *testing.T, r *capsRun, m []string) string {
			code, stdout, stderr := r.run(t, m[0])
			// The setgid bit of a directory of group mail, and a file
			// of the image's user, as the image has them.
			if want := "2775 0:8 /var/mail\n644 1000:1000 /home/app/f\n"; code != 0 || stdout != want {
				return fmt.Sprintf("exit %d, want %q:\n%s%s", code, want, stdout, stderr)
			}
			return ""
		},
	}, {
		name: "volume",
		manifest: []string{e.manifest(t, "vol", rootfsImage, shell("echo kept >/data/f && cat /data/f")+capsResources+`
[[mounts]]
type = "volume"
source = "data"
target = "/data"
`)},
		check: func(t *testing.T, r *capsRun, m []string) string {
			code, stdout, stderr := r.run(t, m[0])
			if code != 0 || stdout != "kept\n" {
				return fmt.Sprintf("exit %d:\n%s%s", code, stdout, stderr)
			}
			return ""
		},
	}, {
		name: "writable rootfs cleaned up",
		manifest: []string{e.manifest(t, "rw", rootfsImage, shell("echo w >/tmp/w && echo wrote")+capsResources+`
[security]
read_only_rootfs = false
seccomp_log = false

[insecure]
reason = "the test removes what the service wrote"
allow = ["writable_rootfs"]
`)},
		oldFails: true,
		check: func(t *testing.T, r *capsRun, m []string) string {
			code, stdout, stderr := r.run(t, m[0])
			if code != 0 || stdout != "wrote\n" || strings.Contains(stderr, "removing state") {
				return fmt.Sprintf("exit %d:\n%s%s", code, stdout, stderr)
			}
			return ""
		},
	}, {
		name: "a declared capability",
		// NET_BIND_SERVICE inside the service, with network none: the
		// unit's bounding set has no CAP_NET_BIND_SERVICE.
		manifest: []string{e.manifest(t, "cap", rootfsImage, shell("httpd -p 127.0.0.1:80 -h / && echo BOUND")+`
[security]
capabilities = ["NET_BIND_SERVICE"]
landlock_bind = [80]
seccomp_log = false
`+capsResources)},
		check: func(t *testing.T, r *capsRun, m []string) string {
			if slices.Contains(r.caps.bound, "CAP_NET_BIND_SERVICE") {
				return "the unit of a service with network none bounds CAP_NET_BIND_SERVICE: the check proves nothing"
			}
			code, stdout, stderr := r.run(t, m[0])
			if code != 0 || stdout != "BOUND\n" {
				return fmt.Sprintf("exit %d:\n%s%s", code, stdout, stderr)
			}
			return ""
		},
	}, {
		name:     "safe-run SIGKILLed, its janitor cleans up, the next start works",
		manifest: []string{e.manifest(t, "killed", rootfsImage, shell("exec httpd -f -p 80 -h /www")+capsResources+httpdOnBridge(www, bridge+"-k", fmt.Sprint(port, ":80")))},
		oldFails: true,
		check: func(t *testing.T, r *capsRun, m []string) string {
			serves := func() bool {
				resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
				if err != nil {
					return false
				}
				resp.Body.Close()
				return resp.StatusCode == http.StatusOK
			}
			s := r.start(t, m[0])
			if ok, why := s.waitFor(serves); !ok {
				return "the first start: " + why
			}
			// setpriv execs safe-run: the same process.
			_ = s.cmd.Process.Kill()
			<-s.done
			s = r.start(t, m[0])
			if ok, why := s.waitFor(serves); !ok {
				return "the start after a SIGKILL: " + why
			}
			return ""
		},
	}, {
		name:     "exec into the service, then stop",
		manifest: []string{e.manifest(t, "long", rootfsImage, shell("echo started; exec sleep 600")+"\n[security]\nseccomp_log = false\n"+capsResources)},
		check: func(t *testing.T, r *capsRun, m []string) string {
			s := r.start(t, m[0])
			if ok, why := s.waitFor(func() bool { return strings.Contains(s.stdout.String(), "started") }); !ok {
				return "not started: " + why
			}
			// The operator's commands, from outside the unit: the
			// supervisor under it does the work.
			name := e.prefix + "long"
			cmd := exec.Command(e.safeRun, "exec", name, "cat", "/proc/self/status")
			cmd.Env = r.env
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "\nUid:\t1000\t") {
				return fmt.Sprintf("safe-run exec: %v:\n%s\n%s", err, out, s.stderr.String())
			}
			cmd = exec.Command(e.safeRun, "stop", name)
			cmd.Env = r.env
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Sprintf("safe-run stop: %v:\n%s\n%s", err, out, s.stderr.String())
			}
			select {
			case <-s.done:
			case <-time.After(20 * time.Second):
				return "still running 20s after safe-run stop:\n" + s.stderr.String()
			}
			if code := s.cmd.ProcessState.ExitCode(); code != 128+int(syscall.SIGTERM) {
				return fmt.Sprintf("exit %d after safe-run stop, want %d:\n%s", code, 128+int(syscall.SIGTERM), s.stderr.String())
			}
			return ""
		},
	}}

	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			unit := e.exportUnit(t, sc.manifest[0])
			t.Logf("CapabilityBoundingSet=%s", strings.Join(unit.bound, " "))
			r := e.newRun(t, unit)
			why := sc.check(t, r, sc.manifest)
			r.stopAll() // before the next run takes its port and names
			if why != "" {
				t.Errorf("under the unit's bounding set: %s", why)
			}
			if left := e.leftCgroups(); len(left) > 0 {
				t.Errorf("cgroups left after the services ended: %v", left)
			}
			if !sc.oldFails {
				return
			}
			r = e.newRun(t, unitCaps{bound: oldBoundingSet, nnp: unit.nnp})
			why = sc.check(t, r, sc.manifest)
			r.stopAll()
			if why == "" {
				t.Errorf("works under the old bounding set too (%s): the scenario checks nothing the fix added", strings.Join(oldBoundingSet, " "))
			} else {
				t.Logf("under the old bounding set, as expected: %s", refusal(why))
			}
		})
	}
}

// capsTestHost is a network namespace of the test's, joined to the host by
// a veth pair in a /29 of 198.51.100.0/24 (TEST-NET-2, documentation
// only) that no address of the host is in yet: a client of a published
// port that is not on the host's loopback.
type capsTestHost struct {
	name           string
	hostAddr, addr netip.Addr
}

func newCapsTestHost(t *testing.T) *capsTestHost {
	t.Helper()
	testenv.RequireTool(t, "ip")
	testenv.RequireTool(t, "curl")
	tag := fmt.Sprintf("%06x", rand.Uint32()&0xffffff)
	h := &capsTestHost{name: "srcaps-" + tag}
	veth := "tc-" + tag
	used, err := exec.Command("ip", "-4", "-o", "addr").Output()
	if err != nil {
		t.Fatal(err)
	}
	// Below 198.51.100.192, where network's own tests put theirs.
	for _, i := range rand.Perm(24) {
		base := netip.AddrFrom4([4]byte{198, 51, 100, byte(8 * i)})
		if !addrIn(string(used), netip.PrefixFrom(base, 29)) {
			h.hostAddr, h.addr = base.Next(), base.Next().Next()
			break
		}
	}
	if !h.hostAddr.IsValid() {
		t.Fatal("every /29 of 198.51.100.0/24 is in use on this host")
	}
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	ip("netns", "add", h.name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", h.name).Run() })
	ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", h.name)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", veth).Run() })
	ip("addr", "add", h.hostAddr.String()+"/29", "dev", veth)
	ip("link", "set", veth, "up")
	ip("-n", h.name, "addr", "add", h.addr.String()+"/29", "dev", "eth0")
	ip("-n", h.name, "link", "set", "eth0", "up")
	ip("-n", h.name, "link", "set", "lo", "up")
	return h
}

// addrIn says whether `ip -4 -o addr` lists an address in p.
func addrIn(ipAddr string, p netip.Prefix) bool {
	for _, f := range strings.Fields(ipAddr) {
		a, err := netip.ParsePrefix(f)
		if err == nil && p.Contains(a.Addr()) {
			return true
		}
	}
	return false
}

// leftCgroups lists the test's services' cgroups still there after the
// cleanup had a second to run.
func (e *capsEnv) leftCgroups() []string {
	var left []string
	for range 10 {
		left, _ = filepath.Glob("/sys/fs/cgroup/*/safe-run-" + e.prefix + "*")
		v2, _ := filepath.Glob("/sys/fs/cgroup/safe-run-" + e.prefix + "*")
		if left = append(left, v2...); len(left) == 0 {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return left
}

// refusal is the line of a failure that says what was refused.
func refusal(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for _, w := range []string{"to its network", "removing state", "OOM-killed", "not shown", "not permitted"} {
		for _, l := range lines {
			if strings.Contains(l, w) {
				return strings.TrimSpace(l)
			}
		}
	}
	return lines[0]
}

// ociWithOwners packs rootfs into an OCI layout (example/mkoci) with what
// unpacking as root needs more than the old bounding set had for: a file
// of the image's user, and a setgid directory of a group root is not in.
func ociWithOwners(t *testing.T, dir, rootfs string) string {
	t.Helper()
	tree := filepath.Join(dir, "oci-rootfs")
	if out, err := exec.Command("cp", "-a", rootfs, tree).CombinedOutput(); err != nil {
		t.Fatalf("copying the rootfs: %v: %s", err, out)
	}
	for _, d := range []string{"home/app", "var/mail"} {
		if err := os.MkdirAll(filepath.Join(tree, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	f := filepath.Join(tree, "home/app/f")
	if err := os.WriteFile(f, []byte("data\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path     string
		uid, gid int
		mode     os.FileMode
	}{
		{filepath.Join(tree, "home/app"), 1000, 1000, 0o755},
		{f, 1000, 1000, 0o644},
		{filepath.Join(tree, "var/mail"), 0, 8, 0o775 | os.ModeSetgid},
	} {
		if err := os.Chown(c.path, c.uid, c.gid); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(c.path, c.mode); err != nil {
			t.Fatal(err)
		}
	}
	mkoci := filepath.Join(dir, "mkoci")
	if err := testenv.StaticGo(mkoci, "./example/mkoci"); err != nil {
		t.Fatal(err)
	}
	layout := filepath.Join(dir, "oci")
	if out, err := exec.Command(mkoci, "-entrypoint", "/bin/confinement", "-user", "1000:1000", tree, layout+":latest").CombinedOutput(); err != nil {
		t.Fatalf("mkoci: %v: %s", err, out)
	}
	return layout
}

// TestSystemdUnitBridge is the probe's case under a real systemd: a bridge
// service with a published port and its denials logged, started through
// the unit `safe-run export systemd` writes. With the bounding set units
// had before (a drop-in puts it back), safe-run cannot connect the
// service to its network; with the unit's own, the service answers and its
// denial is shown, and systemctl stop ends it cleanly.
func TestSystemdUnitBridge(t *testing.T) {
	testenv.RequireTool(t, "systemd-analyze")
	dir, err := os.MkdirTemp("/var/lib", "safe-run-export-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sd := startSystemd(t, dir)
	safeRun := buildSafeRun(t, dir)
	rootfs := filepath.Join(dir, "rootfs")
	if out, err := exec.Command("cp", "-a", exampleRootfs(t), rootfs).CombinedOutput(); err != nil {
		t.Fatalf("copying the rootfs: %v: %s", err, out)
	}
	www := filepath.Join(dir, "www")
	if err := os.Mkdir(www, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(www, "index.html"), []byte("unit\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	port := testenv.FreePort(t)
	id := os.Getpid() % 100000
	name := fmt.Sprintf("safe-run-export-br%d", id)
	manifestPath := filepath.Join(dir, "service.toml")
	// unshare is denied by the default seccomp profile, and logged.
	if err := os.WriteFile(manifestPath, []byte(fmt.Sprintf(`version = 1
name = %q

[image]
rootfs = "rootfs"

[process]
command = ["/bin/sh", "-c", "unshare -U true; exec httpd -f -p 80 -h /www"]
user = "1000:1000"
stop_timeout = "2s"
restart = "no"

[resources]
memory = "64M"
cpus = 0.5
pids = 64

[[mounts]]
type = "bind"
source = "www"
target = "/www"

[network]
mode = "bridge"
bridge = "bu%d"
ports = ["%d:80"]
`, name, id, port)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(safeRun, "export", "systemd", manifestPath).Output()
	if err != nil {
		t.Fatalf("safe-run export systemd: %v", err)
	}
	verifyUnit(t, name, out)
	units := filepath.Join(dir, "units")
	if err := os.WriteFile(filepath.Join(units, name+".service"), out, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(units, name+".service.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	stderr := filepath.Join(dir, "stderr")
	// Output to a file, as there is no journal here; a state directory
	// of the test's own under the unit's RuntimeDirectory, so that its
	// nftables table and bridge never meet another run's.
	dropIn := fmt.Sprintf("[Service]\nStandardOutput=file:%s\nStandardError=file:%s\nEnvironment=SAFE_RUN_STATE_DIR=/run/safe-run/test\n", filepath.Join(dir, "stdout"), stderr)
	start := func(t *testing.T, extra string) {
		t.Helper()
		_ = os.Remove(stderr)
		if err := os.WriteFile(filepath.Join(units, name+".service.d", "test.conf"), []byte(dropIn+extra), 0o644); err != nil {
			t.Fatal(err)
		}
		if b, err := sd.systemctl("daemon-reload").CombinedOutput(); err != nil {
			t.Fatalf("systemctl daemon-reload: %v: %s", err, b)
		}
		if b, err := sd.systemctl("start", "--no-block", name).CombinedOutput(); err != nil {
			t.Fatalf("systemctl start: %v: %s", err, b)
		}
	}
	get := func() (int, string) {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	t.Run("old bounding set", func(t *testing.T) {
		start(t, "CapabilityBoundingSet=\nCapabilityBoundingSet="+strings.Join(oldBoundingSet, " ")+"\n")
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			props := sd.show(t, name, "ActiveState", "ExecMainStatus")
			if props["ActiveState"] == "failed" || props["ActiveState"] == "inactive" {
				errText, _ := os.ReadFile(stderr)
				if props["ExecMainStatus"] != "125" || !strings.Contains(string(errText), "operation not permitted") {
					t.Errorf("under the old bounding set: %v\n%s", props, errText)
				} else {
					t.Logf("under the old bounding set, as the probe found: %s", refusal(string(errText)))
				}
				break
			}
			if code, _ := get(); code == http.StatusOK {
				t.Fatalf("the service answers under the old bounding set: the test checks nothing")
			}
			if time.Now().After(deadline) {
				t.Fatalf("the unit has not ended after 60s: %v", props)
			}
		}
		_ = sd.systemctl("reset-failed", name).Run()
	})

	t.Run("exported bounding set", func(t *testing.T) {
		start(t, "")
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			code, body := get()
			if code == http.StatusOK && body == "unit\n" {
				break
			}
			if time.Now().After(deadline) {
				errText, _ := os.ReadFile(stderr)
				status, _ := sd.systemctl("show", name, "-p", "ActiveState,Result,ExecMainStatus").CombinedOutput()
				t.Fatalf("no HTTP 200 from 127.0.0.1:%d after 60s (%d %q):\n%s\n%s", port, code, body, status, errText)
			}
		}
		if b, err := sd.systemctl("stop", name).CombinedOutput(); err != nil {
			t.Fatalf("systemctl stop: %v: %s", err, b)
		}
		props := sd.show(t, name, "ActiveState", "Result", "ExecMainStatus")
		errText, _ := os.ReadFile(stderr)
		if props["ActiveState"] != "inactive" || props["Result"] != "success" {
			t.Errorf("after systemctl stop: %v\n%s", props, errText)
		}
		// Read from /dev/kmsg here (CAP_SYSLOG): the kernel refuses its
		// audit socket to a process outside its initial PID namespace
		// (kernel/audit.c), and this systemd runs in one of the test's.
		// TestSystemdBoundingSet checks the audit socket itself.
		if !strings.Contains(string(errText), "seccomp denied unshare") || strings.Contains(string(errText), "not shown") {
			t.Errorf("the service's denial is not shown:\n%s", errText)
		}
	})
}
