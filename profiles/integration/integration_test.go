// Package integration_test runs real containers through the safe-run
// binary, as root, to show what each seccomp profile allows and blocks,
// that denials show on safe-run's stderr, and that a recorded profile
// lets the recorded workload run and breaks, visibly, without a call it
// needs. The rootless tests run safe-run as the unprivileged user
// safe-run-test, with subordinate ids.
package integration_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/safe-run/safe-run/internal/testenv"
)

// env is built once: the binaries, and a root filesystem with busybox,
// the probes and the loop.
var env struct {
	once   sync.Once
	err    error
	dir    string // 0711, like every directory the containers' ids must cross
	bin    string
	rootfs string
	suffix string // keeps service names, and so cgroups, apart from other runs on the host
}

func TestMain(m *testing.M) {
	code := m.Run()
	if env.dir != "" {
		os.RemoveAll(env.dir)
	}
	os.Exit(code)
}

func setup(t testing.TB) {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.Long(t)
	env.once.Do(func() { env.err = build() })
	if env.err != nil {
		t.Fatal(env.err)
	}
}

func build() error {
	dir, err := os.MkdirTemp("", "safe-run-seccomp-")
	if err != nil {
		return err
	}
	env.dir = dir
	env.suffix = strconv.Itoa(os.Getpid() % 100000)
	if err := os.Chmod(dir, 0o711); err != nil {
		return err
	}
	bins, err := testenv.Build(dir)
	if err != nil {
		return err
	}
	env.bin = bins.SafeRun
	if env.rootfs, err = testenv.ExampleRootfs(dir); err != nil {
		return err
	}
	probes := []string{"sysprobe", "loop"}
	if runtime.GOARCH == "amd64" {
		probes = append(probes, "abiprobe")
	}
	for _, p := range probes {
		if err := testenv.StaticGo(filepath.Join(env.rootfs, "bin", p), "./profiles/testdata/"+p); err != nil {
			return err
		}
	}
	// Readable by a rootless user's container too, where the rootfs is
	// not id-mapped.
	return os.Chmod(env.rootfs, 0o755)
}

type result struct {
	code           int
	stdout, stderr string
}

// service writes a manifest into a directory of its own and returns its
// path. profile is the seccomp setting; extra is more TOML.
func service(t testing.TB, name, profile string, command []string, extra string) string {
	t.Helper()
	dir := filepath.Join(env.dir, "services", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd, _ := json.Marshal(command)
	text := fmt.Sprintf(`version = 1
name = %q

[image]
rootfs = %q

[process]
command = %s

[security]
seccomp = %q

[resources]
memory = "64M"
cpus = 1.0
pids = 64
%s
`, name+"-"+env.suffix, env.rootfs, cmd, profile, extra)
	if profile == "unconfined" {
		text += "\n[insecure]\nreason = \"the integration test compares profiles with none\"\nallow = [\"seccomp_unconfined\"]\n"
	}
	p := filepath.Join(dir, "service.toml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// safeRun runs the safe-run binary with args, as root or, with as set,
// as that user, and waits for it.
func safeRun(t testing.TB, as *user.User, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	state, data := filepath.Join(env.dir, "state"), filepath.Join(env.dir, "data")
	var c *exec.Cmd
	if as == nil {
		c = exec.CommandContext(ctx, env.bin, args...)
	} else {
		state, data = filepath.Join(env.dir, "rootless", "state"), filepath.Join(env.dir, "rootless", "data")
		c = exec.CommandContext(ctx, "runuser", append([]string{"-u", as.Username, "--", env.bin}, args...)...)
	}
	c.Env = append(os.Environ(), "SAFE_RUN_STATE_DIR="+state, "SAFE_RUN_DATA_DIR="+data, "HOME="+env.dir)
	var out, errOut bytes.Buffer
	c.Stdin, c.Stdout, c.Stderr = strings.NewReader(""), &out, &errOut
	err := c.Run()
	code := c.ProcessState.ExitCode()
	if err != nil && code < 0 {
		t.Fatalf("safe-run %s: %v\n%s", strings.Join(args, " "), err, errOut.String())
	}
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

// probes and what each profile makes of them in a container without
// capabilities; "" is whatever the kernel says. See testdata/sysprobe.
var probes = []struct {
	name                         string
	unconfined, default_, strict string
}{
	{"getpid", "ok", "ok", "ok"},
	{"uname", "ok", "ok", "ok"},
	{"unshare", "ok", "EPERM", "EPERM"},
	{"mount", "ENOENT", "EPERM", "EPERM"},
	{"setns", "EBADF", "EPERM", "EPERM"},
	{"ptrace-traceme", "ok", "ok", "EPERM"},
	{"clone3", "EINVAL", "ENOSYS", "ENOSYS"}, // glibc then uses clone
	{"socket-inet", "ok", "ok", "ok"},
	{"socket-unix", "ok", "ok", "ok"},
	{"socket-alg", "", "EPERM", "EPERM"},
	{"socket-vsock", "", "EPERM", "EPERM"},
	{"personality-query", "ok", "ok", "EPERM"},
	{"personality-exec", "ok", "EPERM", "EPERM"},
	{"io_uring_setup", "", "EPERM", "EPERM"},
	{"keyctl", "", "EPERM", "EPERM"},
	{"mlock", "ok", "ok", "EPERM"},
	{"shmget", "ok", "ok", "EPERM"},
	{"ioctl-tiocsti", "ENOTTY", "ENOTTY", "EPERM"},
}

func probeNames() []string {
	var names []string
	for _, p := range probes {
		names = append(names, p.name)
	}
	return names
}

// probeResults parses sysprobe's output.
func probeResults(t testing.TB, out string) map[string]string {
	t.Helper()
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		name, res, ok := strings.Cut(line, ": ")
		if !ok {
			t.Fatalf("sysprobe printed %q", line)
		}
		got[name] = res
	}
	return got
}

// denied matches the violation line for call by sysprobe.
func denied(call, comm string) *regexp.Regexp {
	return regexp.MustCompile(`(?m)^safe-run: [a-z0-9-]+: seccomp denied ` + call + ` \(syscall \d+\) (host )?pid \d+ \(` + comm + `\)$`)
}

func TestProfilesAllowAndBlock(t *testing.T) {
	setup(t)
	for _, profile := range []string{"unconfined", "default", "strict"} {
		t.Run(profile, func(t *testing.T) {
			m := service(t, "scprobe-"+profile, profile, append([]string{"/bin/sysprobe"}, probeNames()...), "")
			r := safeRun(t, nil, m)
			if r.code != 0 {
				t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
			}
			got := probeResults(t, r.stdout)
			for _, p := range probes {
				want := map[string]string{"unconfined": p.unconfined, "default": p.default_, "strict": p.strict}[profile]
				if want != "" && got[p.name] != want {
					t.Errorf("%s: %s, want %s", p.name, got[p.name], want)
				}
				// Every EPERM the filter returned is on stderr; the
				// kernel's own errors, and clone3's ENOSYS, are not.
				call := strings.Split(p.name, "-")[0]
				if call == "ioctl" || call == "ptrace" || call == "personality" || call == "socket" {
					continue // shared by probes with other outcomes; below
				}
				shown := denied(call, "sysprobe").MatchString(r.stderr)
				if wantShown := want == "EPERM"; shown != wantShown {
					t.Errorf("%s: violation shown %v, want %v\n%s", p.name, shown, wantShown, r.stderr)
				}
			}
			for call, shown := range map[string]bool{
				"socket":      profile != "unconfined",
				"personality": profile != "unconfined",
				"ptrace":      profile == "strict",
				"ioctl":       profile == "strict",
				"clone3":      false, // ENOSYS: the expected probe for a newer call
			} {
				if denied(call, "sysprobe").MatchString(r.stderr) != shown {
					t.Errorf("violation for %s shown: %v, want %v\n%s", call, !shown, shown, r.stderr)
				}
			}
		})
	}
}

// TestTracedServiceKeepsRunning: a service that asks to be traced
// (PTRACE_TRACEME) makes the container's init its tracer, and every signal
// it then takes stops it and is reported to the init. The init let the
// first such stop pass as the service's exit (status 23, SIGURG, under
// load, from the Go runtime's preemption); it must let the service go on.
func TestTracedServiceKeepsRunning(t *testing.T) {
	setup(t)
	m := service(t, "sctraced", "default", []string{"/bin/sysprobe", "traced-signal", "getpid"}, "")
	r := safeRun(t, nil, m)
	if r.code != 0 || r.stdout != "traced-signal: ok\ngetpid: ok\n" {
		t.Errorf("exit %d, stdout %q, want both probes ok\n%s", r.code, r.stdout, r.stderr)
	}
}

// TestThirtyTwoBitABIs: the default profile lets i386 programs run, as
// Docker's does; the strict one, covering the native ABI only, kills a
// thread that makes an i386 call. Neither covers x32, which the kernels
// of most distributions do not even run.
func TestThirtyTwoBitABIs(t *testing.T) {
	setup(t)
	if runtime.GOARCH != "amd64" {
		t.Skipf("the probe makes i386 and x32 calls, which only amd64 has (GOARCH %s)", runtime.GOARCH)
	}
	// Some kernels do not run i386 calls at all (this one's hypervisor,
	// PVM, faults on int $0x80): the probe says so outside any filter, and
	// inside the container the call faults the same, before seccomp sees it.
	hostI386, err := exec.Command(filepath.Join(env.rootfs, "bin", "abiprobe"), "i386").Output()
	if err != nil {
		t.Fatalf("abiprobe i386 on the host: %v", err)
	}
	const noI386 = "i386 getpid: not run by this kernel"
	cases := []struct {
		profile, i386, x32 string
	}{
		{"default", "i386 getpid: pid ", "x32 getpid: no answer, the thread was killed"},
		{"strict", "i386 getpid: no answer, the thread was killed", "x32 getpid: no answer, the thread was killed"},
	}
	if strings.HasPrefix(string(hostI386), noI386) {
		t.Logf("only x32 is checked: this kernel does not run i386 calls, even unconfined (%s)", strings.TrimSpace(string(hostI386)))
		for i := range cases {
			cases[i].i386 = noI386
		}
	}
	for _, tc := range cases {
		t.Run(tc.profile, func(t *testing.T) {
			m := service(t, "scabi-"+tc.profile, tc.profile, []string{"/bin/sh", "-c", "abiprobe i386; abiprobe x32"}, "")
			r := safeRun(t, nil, m)
			if r.code != 0 || !strings.Contains(r.stdout, tc.i386) || !strings.Contains(r.stdout, tc.x32) {
				t.Fatalf("exit %d, stdout:\n%s\nwant %q and %q\n%s", r.code, r.stdout, tc.i386, tc.x32, r.stderr)
			}
			if !regexp.MustCompile(`seccomp denied getpid \(x32 syscall 39\) (host )?pid \d+ \(exe\): thread killed \(SIGSYS\)`).MatchString(r.stderr) {
				t.Errorf("the killed x32 call is not shown:\n%s", r.stderr)
			}
		})
	}
}

func TestViolationsRateLimited(t *testing.T) {
	setup(t)
	m := service(t, "scflood", "default", []string{"/bin/sh", "-c", "i=0; while [ $i -lt 30 ]; do unshare -U true 2>/dev/null; i=$((i+1)); done; echo done"}, "")
	r := safeRun(t, nil, m)
	if r.code != 0 || r.stdout != "done\n" {
		t.Fatalf("exit %d %q\n%s", r.code, r.stdout, r.stderr)
	}
	lines := denied("unshare", "unshare").FindAllString(r.stderr, -1)
	summaries := regexp.MustCompile(`seccomp denied unshare \(syscall \d+\): (\d+) more suppressed`).FindAllStringSubmatch(r.stderr, -1)
	suppressed := 0
	for _, s := range summaries {
		n, _ := strconv.Atoi(s[1])
		suppressed += n
	}
	if len(lines)+suppressed != 30 || len(lines) > 5*(len(summaries)+1) {
		t.Errorf("%d lines and %d suppressed in %d summaries, want 30 denials, at most 5 lines a second:\n%s", len(lines), suppressed, len(summaries), r.stderr)
	}
}

// recordWorkload is what the recorded service does: a shell script
// around the probe, all of it allowed by the default profile.
var recordWorkload = []string{"/bin/sh", "-c", "sysprobe getpid uname socket-inet mlock shmget; ls / >/dev/null; echo done"}

// recordEnforceBreak records the workload as user as (nil for root),
// enforces the recorded profile, and then the profile less mlock.
func recordEnforceBreak(t *testing.T, as *user.User, name, extra string) {
	m := service(t, name, "default", recordWorkload, extra)
	dir := filepath.Dir(m)
	if as != nil {
		chown(t, dir, as)
	}
	rec := safeRun(t, as, "profile", "record", m, "-o", filepath.Join(dir, "recorded.json"))
	if rec.code != 0 || !strings.Contains(rec.stdout, "done") {
		t.Fatalf("record: exit %d\n%s\n%s", rec.code, rec.stdout, rec.stderr)
	}
	if !regexp.MustCompile(`recorded \d+ system calls in .*recorded.json; enforce them with seccomp = "recorded.json"`).MatchString(rec.stderr) {
		t.Errorf("record did not say what it wrote:\n%s", rec.stderr)
	}
	data, err := os.ReadFile(filepath.Join(dir, "recorded.json"))
	if err != nil {
		t.Fatal(err)
	}
	var profile struct {
		Syscalls []struct {
			Names    []string `json:"names"`
			Action   string   `json:"action"`
			ErrnoRet *int     `json:"errnoRet"`
		} `json:"syscalls"`
	}
	if err := json.Unmarshal(data, &profile); err != nil {
		t.Fatal(err)
	}
	allowed := profile.Syscalls[0].Names
	for _, n := range []string{"mlock", "shmget", "execve", "getdents64", "wait4"} {
		if !slices.Contains(allowed, n) {
			t.Errorf("the recorded profile does not allow %s, which the workload or runc init uses: %v", n, allowed)
		}
	}
	for _, n := range []string{"unshare", "mount", "ptrace", "clone3", "io_uring_setup", "keyctl"} {
		if slices.Contains(allowed, n) {
			t.Errorf("the recorded profile allows %s, which nothing used", n)
		}
	}

	// The recorded profile is narrower than the default one, and adds
	// nothing to it.
	diff := safeRun(t, nil, "profile", "diff", "default", filepath.Join(dir, "recorded.json"))
	removed := regexp.MustCompile(`(?m)^- `).FindAllString(diff.stdout, -1)
	if diff.code != 0 || !strings.Contains(diff.stdout, "\n- mlock2: SCMP_ACT_ALLOW\n") || len(removed) < 100 ||
		regexp.MustCompile(`(?m)^[+~] `).MatchString(diff.stdout) {
		t.Errorf("profile diff default recorded.json: exit %d, want only removals, mlock2 among them:\n%s%s", diff.code, diff.stdout, diff.stderr)
	}

	enforce := func(profileFile string) result {
		m := service(t, name, profileFile, recordWorkload, extra)
		if as != nil {
			chown(t, filepath.Dir(m), as)
		}
		return safeRun(t, as, m)
	}
	ok := enforce("recorded.json")
	if ok.code != 0 || ok.stdout != rec.stdout || strings.Contains(ok.stderr, "seccomp denied") {
		t.Errorf("under the recorded profile: exit %d, stdout:\n%s\nwant what the recording printed:\n%s\nstderr:\n%s", ok.code, ok.stdout, rec.stdout, ok.stderr)
	}

	// Without mlock the workload breaks, and says why.
	var broken map[string]any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber() // 64-bit values must survive
	if err := dec.Decode(&broken); err != nil {
		t.Fatal(err)
	}
	rules := broken["syscalls"].([]any)
	first := rules[0].(map[string]any)
	first["names"] = slices.DeleteFunc(first["names"].([]any), func(n any) bool { return n == "mlock" })
	out, _ := json.MarshalIndent(broken, "", "\t")
	if err := os.WriteFile(filepath.Join(dir, "broken.json"), out, 0o644); err != nil {
		t.Fatal(err)
	}
	bad := enforce("broken.json")
	if !strings.Contains(bad.stdout, "mlock: EPERM") || !denied("mlock", "sysprobe").MatchString(bad.stderr) {
		t.Errorf("without mlock: exit %d, stdout:\n%s\nstderr:\n%s\nwant mlock: EPERM and the denial on stderr", bad.code, bad.stdout, bad.stderr)
	}
}

func TestRecordEnforceBreak(t *testing.T) {
	setup(t)
	recordEnforceBreak(t, nil, "screcord", "")
}

// TestRecordDuration: a service that does not exit is stopped at the end
// of --duration, and its profile written; that it then dies of the stop
// signal is no failure.
func TestRecordDuration(t *testing.T) {
	setup(t)
	m := service(t, "scduration", "strict", []string{"/bin/sh", "-c", "sysprobe getpid; exec sleep 60"}, "")
	out := filepath.Join(filepath.Dir(m), "long.json")
	start := time.Now()
	r := safeRun(t, nil, "profile", "record", m, "-o", out, "--duration", "1s")
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("recording took %v, want it stopped after 1s", took)
	}
	if r.code != 0 || strings.Contains(r.stderr, "exited with code") || !strings.Contains(r.stderr, "recorded ") {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(out); err != nil {
		t.Error(err)
	}
	// The recording's base was strict: the profile has nothing strict
	// denies.
	diff := safeRun(t, nil, "profile", "diff", "strict", out)
	if regexp.MustCompile(`(?m)^[+~] `).MatchString(diff.stdout) {
		t.Errorf("the profile recorded under strict allows more than strict:\n%s", diff.stdout)
	}
}

// rootlessUser is the unprivileged user the rootless tests run safe-run
// as, with a range of subordinate ids; like the launcher's rootless test,
// the test creates it when it is missing.
func rootlessUser(t *testing.T) *user.User {
	t.Helper()
	setup(t)
	testenv.RequireTool(t, "runuser")
	testenv.RequireTool(t, "newuidmap")
	const name = "safe-run-test"
	if _, err := user.Lookup(name); err != nil {
		if out, err := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name).CombinedOutput(); err != nil {
			t.Fatalf("useradd: %v: %s", err, out)
		}
	}
	subuid, _ := os.ReadFile("/etc/subuid")
	if !strings.Contains(string(subuid), name+":") {
		if out, err := exec.Command("usermod", "--add-subuids", "300000-365535", "--add-subgids", "300000-365535", name).CombinedOutput(); err != nil {
			t.Fatalf("usermod: %v: %s", err, out)
		}
	}
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"rootless", "rootless/state", "rootless/data"} {
		p := filepath.Join(env.dir, d)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		chown(t, p, u)
	}
	return u
}

func chown(t *testing.T, path string, u *user.User) {
	t.Helper()
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
}

// rootlessExtra waives the limits, which a rootless user can only have
// with a delegated cgroup v2 subtree.
const rootlessExtra = "\n[insecure]\nreason = \"the test host does not delegate cgroups to the test user\"\nallow = [\"no_resource_limits\"]\n"

// TestRootlessViolations: without root the kernel's seccomp log is out of
// reach, and the calls the filter denies by its default action come as
// notifications, which safe-run answers with the filter's own EPERM.
// Denials that depend on arguments (socket, personality) are not shown.
func TestRootlessViolations(t *testing.T) {
	u := rootlessUser(t)
	m := service(t, "scrlprobe", "default", append([]string{"/bin/sysprobe"}, probeNames()...), rootlessExtra)
	r := safeRun(t, u, m)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	got := probeResults(t, r.stdout)
	for _, p := range probes {
		if p.default_ != "" && got[p.name] != p.default_ {
			t.Errorf("%s: %s, want %s (as root)", p.name, got[p.name], p.default_)
		}
	}
	if denied("clone3", "sysprobe").MatchString(r.stderr) {
		t.Errorf("clone3's ENOSYS is shown as a denial:\n%s", r.stderr)
	}
	for _, call := range []string{"unshare", "mount", "setns", "io_uring_setup", "keyctl"} {
		// The process waits for safe-run's answer: its PID is always
		// known.
		if !regexp.MustCompile(`(?m)^safe-run: [a-z0-9-]+: seccomp denied ` + call + ` \(syscall \d+\) pid \d+ \(sysprobe\)$`).MatchString(r.stderr) {
			t.Errorf("the denial of %s is not shown:\n%s", call, r.stderr)
		}
	}
}

func TestRootlessRecordEnforceBreak(t *testing.T) {
	u := rootlessUser(t)
	recordEnforceBreak(t, u, "scrlrecord", rootlessExtra)
}

// BenchmarkSyscallLoop runs testdata/loop, getpid and read alternately,
// in a container under each profile, and reports the CPU time of a call
// and each profile's overhead: over no filter, and over a filter that
// allows everything, which is the kernel's own cost of having a filter
// at all (the seccomp entry path every call then takes). make bench runs
// it:
//
//	go test -tags seccomp -run '^$' -bench SyscallLoop -benchtime 3x ./profiles/integration
func BenchmarkSyscallLoop(b *testing.B) {
	setup(b)
	dir := filepath.Join(env.dir, "services")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	allowAll := filepath.Join(dir, "allow-all.json")
	if err := os.WriteFile(allowAll, []byte(`{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": []}`+"\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	nsPerCall := map[string]float64{}
	profiles := []string{"unconfined", allowAll, "strict", "default"}
	label := func(p string) string {
		if p == allowAll {
			return "allow-all"
		}
		return p
	}
	for range b.N {
		// Interleaved, and the fastest run counts: the machine may be
		// busy with other work.
		for _, profile := range profiles {
			m := service(b, "scloop-"+label(profile), profile, []string{"/bin/loop", "-n", "2000000", "-rounds", "5"}, "")
			r := safeRun(b, nil, "-q", m)
			var ns float64
			if _, err := fmt.Sscanf(r.stdout, "loop: %f ns/call", &ns); err != nil || r.code != 0 {
				b.Fatalf("%s: exit %d, %q: %v\n%s", label(profile), r.code, r.stdout, err, r.stderr)
			}
			if prev, ok := nsPerCall[label(profile)]; !ok || ns < prev {
				nsPerCall[label(profile)] = ns
			}
		}
	}
	none, floor := nsPerCall["unconfined"], nsPerCall["allow-all"]
	for _, p := range profiles {
		b.ReportMetric(nsPerCall[label(p)], label(p)+"-ns/call")
	}
	for _, p := range []string{"allow-all", "strict", "default"} {
		ns := nsPerCall[p]
		b.ReportMetric(100*(ns/none-1), p+"-over-none-%")
		fmt.Printf("seccomp %-9s %6.1f ns/call: %+5.1f%% over no filter (%.1f ns/call), %+5.1f%% over a filter that allows everything (%.1f ns/call)\n",
			p, ns, 100*(ns/none-1), none, 100*(ns/floor-1), floor)
	}
}

// TestInitKeepsItsCalls: safe-run-init runs under the service's filter.
// A custom profile of read, write and execve only left the init spinning
// at its exit (exit_group and exit refused); a profile recorded from a
// run that ended by itself lacked kill, so each stop waited for
// stop_timeout and ended in SIGKILL (FS probe #2). Every custom profile
// now gets the init's calls.
func TestInitKeepsItsCalls(t *testing.T) {
	setup(t)
	t.Run("min", func(t *testing.T) {
		// The service itself fails to start under so little (the
		// loader's mprotect is refused): the init must report that and
		// exit.
		m := service(t, "scinitmin", "min.json", []string{"/bin/true"}, "")
		min := `{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read","write","execve"],"action":"SCMP_ACT_ALLOW"}]}`
		if err := os.WriteFile(filepath.Join(filepath.Dir(m), "min.json"), []byte(min), 0o644); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		r := safeRun(t, nil, m)
		if r.code == 0 || r.code > 127 || time.Since(start) > 20*time.Second || denied("exit(_group)?", "init").MatchString(r.stderr) {
			t.Errorf("exit %d after %v, want the service's failure at once and no denial of the init's exit\n%s", r.code, time.Since(start), r.stderr)
		}
	})
	t.Run("recorded-stop", func(t *testing.T) {
		m := service(t, "scinitrec", "default", []string{"/bin/sleep", "1"}, "")
		dir := filepath.Dir(m)
		rec := safeRun(t, nil, "profile", "record", m, "-o", filepath.Join(dir, "rec.json"))
		if rec.code != 0 {
			t.Fatalf("record: exit %d\n%s", rec.code, rec.stderr)
		}
		data, err := os.ReadFile(filepath.Join(dir, "rec.json"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(data), `"kill"`) || !strings.Contains(string(data), `"wait4"`) {
			t.Errorf("the recorded profile lacks the init's kill or wait4:\n%s", data)
		}
		// A profile recorded before: without kill. It is given back at
		// load.
		old := regexp.MustCompile(`\s*"kill",`).ReplaceAll(data, nil)
		if err := os.WriteFile(filepath.Join(dir, "old.json"), old, 0o644); err != nil {
			t.Fatal(err)
		}
		stopQuickly(t, nil, "scinitrec", old, "")
		// Recorded as root, run rootless, where libcontainer loads the
		// filter and runc init runs under it: it failed at runc's
		// fstatfs, then at the init's Landlock calls.
		stopQuickly(t, rootlessUser(t), "scinitrecrl", old, rootlessExtra)
	})
}

// stopQuickly runs sleep 60 under profile as, stops it, and wants the
// stop well under its stop_timeout, by SIGTERM.
func stopQuickly(t *testing.T, as *user.User, name string, profile []byte, extra string) {
	t.Helper()
	m := service(t, name, "old.json", []string{"/bin/sleep", "60"}, extra)
	if err := os.WriteFile(filepath.Join(filepath.Dir(m), "old.json"), profile, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(m, bytes.Replace(must(os.ReadFile(m)), []byte("[security]"), []byte("stop_timeout = \"10s\"\n\n[security]"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	if as != nil {
		chown(t, filepath.Dir(m), as)
	}
	done := make(chan result, 1)
	go func() { done <- safeRun(t, as, m) }()
	full := name + "-" + env.suffix
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(safeRun(t, as, "ps").stdout, full) {
		if time.Now().After(deadline) {
			r := <-done
			t.Fatalf("%s did not show in ps: exit %d\n%s", full, r.code, r.stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // past the start, into the sleep
	start := time.Now()
	if s := safeRun(t, as, "stop", full); s.code != 0 {
		t.Errorf("stop: exit %d\n%s", s.code, s.stderr)
	}
	r := <-done
	if took := time.Since(start); took > 5*time.Second || r.code != 143 || strings.Contains(r.stderr, "seccomp denied") {
		t.Errorf("stop took %v, exit %d; want well under stop_timeout (10s), 143 (SIGTERM), no denial\n%s", took, r.code, r.stderr)
	}
}

func must(data []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return data
}

// TestLandlockExecOnBind: a program on a read-only bind cannot be run
// (Landlock grants execute on the image's own files only), and the 126
// says that it is Landlock and what to do, not just "Permission denied"
// (FS probe #7). Here rather than in the launcher's tests because the
// message is safe-run-init's, which these tests build and run.
func TestLandlockExecOnBind(t *testing.T) {
	setup(t)
	bin := filepath.Join(env.dir, "services", "bindbin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(env.rootfs, "bin", "sysprobe"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "tool"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	m := service(t, "scllbind", "default", []string{"/probe/tool", "getpid"}, fmt.Sprintf("\n[[mounts]]\ntype = \"bind\"\nsource = %q\ntarget = \"/probe\"\n", bin))
	r := safeRun(t, nil, m)
	const want = `safe-run-init: cannot run /probe/tool: Landlock denied execute: only the image's own files may be run, not those of a bind, volume or secret, nor of a tmpfs without exec (copy the program into the image, or mount a tmpfs with options = ["exec"] and put it there)`
	if r.code != 126 || !strings.Contains(r.stderr, want) {
		t.Errorf("exit %d, want 126 and\n%s\n%s", r.code, want, r.stderr)
	}
	// A program of the image's own is run as before.
	m = service(t, "scllbind", "default", []string{"/bin/sysprobe", "getpid"}, fmt.Sprintf("\n[[mounts]]\ntype = \"bind\"\nsource = %q\ntarget = \"/probe\"\n", bin))
	if r := safeRun(t, nil, m); r.code != 0 || r.stdout != "getpid: ok\n" {
		t.Errorf("the image's own program: exit %d, stdout %q\n%s", r.code, r.stdout, r.stderr)
	}
}
