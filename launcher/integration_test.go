package launcher_test

// Integration tests: real containers, started through the safe-run binary as
// a user would, as root on this host. They check from inside the container
// (the example's confinement probe, or busybox) and from the host (cgroups,
// mounts, state left behind).

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/internal/testenv"
)

// env is what every integration test shares: the binaries and an example
// rootfs built once, and state and data directories of its own.
var env struct {
	once              sync.Once
	err               error
	dir               string
	bin, init         string
	rootfs            string
	stateDir, dataDir string
}

func TestMain(m *testing.M) {
	code := m.Run()
	if env.dir != "" {
		os.RemoveAll(env.dir)
	}
	os.Exit(code)
}

// setup builds safe-run, safe-run-init and the example rootfs once.
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
	dir, err := os.MkdirTemp("", "safe-run-it-")
	if err != nil {
		return err
	}
	env.dir = dir
	// Every component must be traversable by the container's mapped root.
	if err := os.Chmod(dir, 0o711); err != nil {
		return err
	}
	bins, err := testenv.Build(dir)
	if err != nil {
		return err
	}
	env.bin, env.init = bins.SafeRun, bins.Init
	if env.rootfs, err = testenv.ExampleRootfs(dir); err != nil {
		return err
	}
	env.stateDir, env.dataDir = filepath.Join(dir, "state"), filepath.Join(dir, "data")
	for _, d := range []string{env.stateDir, env.dataDir} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return err
		}
	}
	return nil
}

type result struct {
	code           int
	stdout, stderr string
}

// manifestFor writes a manifest for service name with the example rootfs
// and the given extra TOML, into a directory of its own.
func manifestFor(t *testing.T, name, body string) string {
	t.Helper()
	dir := filepath.Join(env.dir, "manifests", name)
	if err := os.MkdirAll(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	text := fmt.Sprintf("version = 1\nname = %q\n\n[image]\nrootfs = %q\n\n%s\n", name, env.rootfs, body)
	if !strings.Contains(body, "[resources]") {
		text += "\n[resources]\nmemory = \"64M\"\ncpus = 1.0\npids = 64\n"
	}
	p := filepath.Join(dir, "service.toml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func safeRun(t *testing.T, ctx context.Context, args ...string) *exec.Cmd {
	c := exec.CommandContext(ctx, env.bin, args...)
	c.Env = append(os.Environ(), "SAFE_RUN_STATE_DIR="+env.stateDir, "SAFE_RUN_DATA_DIR="+env.dataDir)
	return c
}

// run starts safe-run on a manifest and waits for it.
func run(t *testing.T, manifest string, stdin string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := safeRun(t, ctx, manifest)
	var out, errOut bytes.Buffer
	c.Stdin, c.Stdout, c.Stderr = strings.NewReader(stdin), &out, &errOut
	err := c.Run()
	code := c.ProcessState.ExitCode()
	if err != nil && code < 0 {
		t.Fatalf("safe-run: %v\n%s", err, errOut.String())
	}
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

// probe runs the example's confinement probe as the service.
func probe(t *testing.T, name, body string) map[string]any {
	t.Helper()
	r := run(t, manifestFor(t, name, "[process]\ncommand = [\"/bin/confinement\", \"-json\"]\n"+body), "")
	if r.code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	var p map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil {
		t.Fatalf("probe output: %v\n%s", err, r.stdout)
	}
	assertNothingLeft(t, name)
	return p
}

// shell runs a busybox script as the service and returns the result.
func shell(t *testing.T, name, script, extra string) result {
	t.Helper()
	body := fmt.Sprintf("[process]\ncommand = [\"/bin/sh\", \"-c\", %q]\n%s", script, extra)
	return run(t, manifestFor(t, name, body), "")
}

// assertNothingLeft checks the host for anything of service name: a cgroup
// in any hierarchy, a mount, a state directory.
func assertNothingLeft(t *testing.T, name string) {
	t.Helper()
	var left []string
	_ = filepath.WalkDir("/sys/fs/cgroup", func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		if d.Name() == "safe-run-"+name {
			left = append(left, "cgroup "+p)
			return filepath.SkipDir
		}
		if strings.Count(p, "/") > 7 {
			return filepath.SkipDir
		}
		return nil
	})
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(mounts), "\n") {
		if strings.Contains(line, env.stateDir) {
			left = append(left, "mount "+line)
		}
	}
	for _, p := range []string{filepath.Join(env.stateDir, name), filepath.Join(env.stateDir, name+".lock"), filepath.Join(env.dataDir, "containers", name)} {
		if _, err := os.Lstat(p); err == nil {
			left = append(left, "file "+p)
		}
	}
	// Its id range's lock (idRangeLocks), which names its holder.
	locks, _ := filepath.Glob("/run/safe-run-ids/*")
	for _, l := range locks {
		if b, _ := os.ReadFile(l); string(b) == name+"\n" {
			left = append(left, "id range lock "+l)
		}
	}
	if len(left) > 0 {
		t.Errorf("left behind by %s:\n%s", name, strings.Join(left, "\n"))
	}
}

// TestWritableRootfs: read_only_rootfs = false runs on a data directory that has never had one
// (its containers/ is made then), the service's writes land in its own upper layer, never in the
// image, and the layer goes with the run.
func TestWritableRootfs(t *testing.T) {
	setup(t)
	data := t.TempDir()
	if err := os.Chmod(data, 0o711); err != nil {
		t.Fatal(err)
	}
	m := manifestFor(t, "writable", "[process]\ncommand = [\"/bin/sh\", \"-c\", \"echo written > /newfile && cat /newfile\"]\n"+
		"[security]\nread_only_rootfs = false\n[insecure]\nreason = \"the test\"\nallow = [\"writable_rootfs\"]\n")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := safeRun(t, ctx, m)
	c.Env = append(c.Env, "SAFE_RUN_DATA_DIR="+data)
	var stderr bytes.Buffer
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil || string(out) != "written\n" {
		t.Fatalf("%v: stdout %q\n%s", err, out, stderr.String())
	}
	if _, err := os.Lstat(filepath.Join(env.rootfs, "newfile")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the service's write reached the image: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(data, "containers", "writable")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("its upper layer is left: %v", err)
	}
	assertNothingLeft(t, "writable")
}

func TestConfinementProbe(t *testing.T) {
	setup(t)
	p := probe(t, "probe", `user = "1000:1000"`)
	want := map[string]any{
		"UID": 1000.0, "GID": 1000.0,
		"CapEff": "0000000000000000", "CapPrm": "0000000000000000", "CapBnd": "0000000000000000",
		"CapInh": "0000000000000000", "CapAmb": "0000000000000000",
		"NoNewPrivs": "1", "Seccomp": "2", "RootWritable": false, "Hostname": "probe",
		"MemoryLimit": "67108864", "PidsLimit": "64", "CPUQuota": "5000 5000", // cpus = 1 in plan.CPUQuota's 5 ms period
		// safe-run-init loads the seccomp filter (seccomp_linux.go).
		"PID1": "/dev/init --control-fd 3 -- /bin/confinement -json",
	}
	for k, v := range want {
		if p[k] != v {
			t.Errorf("%s = %v, want %v", k, p[k], v)
		}
	}
	if m := p["UIDMap"].(string); m == "0 0 4294967295" || !strings.HasPrefix(m, "0 ") || !strings.HasSuffix(m, " 65536") {
		t.Errorf("uid_map %q: want container 0..65535 mapped onto an unprivileged host range", m)
	}
	if ifs := fmt.Sprint(p["Interfaces"]); ifs != "[lo]" {
		t.Errorf("network interfaces %s, want only lo", ifs)
	}
}

func TestDeclaredCapabilityOnly(t *testing.T) {
	setup(t)
	const netBindService = 1 << 10
	for _, tc := range []struct{ name, user string }{{"capsroot", "0:0"}, {"capsuser", "1000:1000"}} {
		t.Run(tc.user, func(t *testing.T) {
			p := probe(t, tc.name, fmt.Sprintf("user = %q\n[security]\ncapabilities = [\"NET_BIND_SERVICE\"]\n", tc.user))
			want := fmt.Sprintf("%016x", netBindService)
			for _, k := range []string{"CapEff", "CapPrm", "CapBnd"} {
				if p[k] != want {
					t.Errorf("%s = %v, want %s (NET_BIND_SERVICE only)", k, p[k], want)
				}
			}
			// Inheritable stays empty for root (CVE-2022-29162); a
			// non-root user needs the declared set inheritable for ambient.
			wantInh := "0000000000000000"
			if tc.user != "0:0" {
				wantInh = want
			}
			if p["CapInh"] != wantInh {
				t.Errorf("CapInh = %v, want %s", p["CapInh"], wantInh)
			}
		})
	}
}

func TestExitCodes(t *testing.T) {
	setup(t)
	for _, tc := range []struct {
		name, command string
		code          int
		stderr        string
	}{
		{"exit3", `["/bin/sh", "-c", "exit 3"]`, 3, "safe-run: exit3: exited with code 3"},
		{"notfound", `["/bin/nope"]`, 127, "command not found: /bin/nope is not in the image"},
		{"notexec", `["/etc/passwd"]`, 126, "command cannot be executed: /etc/passwd is not executable"},
		{"dir", `["/bin"]`, 126, "command cannot be executed: /bin is a directory in the image"},
		{"selfkill", `["/bin/sh", "-c", "kill -SEGV $$"]`, 139, "killed by SIGSEGV"},
		{"rtkill", `["/bin/sh", "-c", "kill -35 $$"]`, 163, "killed by SIGRTMIN+1 (exit code 163)"},
		// The start report says what a limit cannot do here.
		{"bigcpus", `["/bin/true"]` + "\n[resources]\nmemory = \"64M\"\ncpus = 1000.0", 0, "cpus 1000 is more than this host's"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, manifestFor(t, tc.name, "[process]\ncommand = "+tc.command+"\n"), "")
			if r.code != tc.code || !strings.Contains(r.stderr, tc.stderr) {
				t.Errorf("exit %d, stderr:\n%s\nwant exit %d and %q", r.code, r.stderr, tc.code, tc.stderr)
			}
			assertNothingLeft(t, tc.name)
		})
	}
}

// TestSeccompCompiledOnce: the first start compiles the filter and keeps
// it in DataDir/seccomp; a damaged copy is compiled again, never loaded.
func TestSeccompCompiledOnce(t *testing.T) {
	setup(t)
	kept := func() (whole, all int) {
		files, _ := filepath.Glob(filepath.Join(env.dataDir, "seccomp", "*"))
		for _, f := range files {
			// Whole: a header of flags and count, count instructions,
			// then their SHA-256.
			if b, err := os.ReadFile(f); err == nil && len(b) > 8 && len(b) == 8+8*int(binary.NativeEndian.Uint32(b[4:]))+sha256.Size {
				whole++
			}
		}
		return whole, len(files)
	}
	if p := probe(t, "sccache", ""); p["Seccomp"] != "2" {
		t.Fatalf("Seccomp = %v, want 2", p["Seccomp"])
	}
	whole, all := kept()
	if whole == 0 || whole != all {
		t.Fatalf("%d whole programs kept of %d files, want at least one and all whole", whole, all)
	}
	files, _ := filepath.Glob(filepath.Join(env.dataDir, "seccomp", "*"))
	for _, f := range files {
		if err := os.Truncate(f, 100); err != nil {
			t.Fatal(err)
		}
	}
	if p := probe(t, "sccache", ""); p["Seccomp"] != "2" {
		t.Fatalf("after damage: Seccomp = %v, want 2", p["Seccomp"])
	}
	if whole, _ := kept(); whole == 0 {
		t.Errorf("the damaged program was not compiled again")
	}
}

// janitorOf is the pid of the janitor safe-run (pid) started.
func janitorOf(t *testing.T, pid int) int {
	t.Helper()
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, f := range tasks {
		for _, child := range strings.Fields(string(mustRead(t, f))) {
			if comm, _ := os.ReadFile("/proc/" + child + "/comm"); strings.HasPrefix(string(comm), "safe-run-jan") {
				janitor, _ := strconv.Atoi(child)
				return janitor
			}
		}
	}
	t.Fatal("no janitor among safe-run's children")
	return 0
}

// uniqueSleep is a sleep command line no other process on the host has
// (other tests, other suites run beside this one): pgrep looks at them all.
func uniqueSleep(seconds int) string { return fmt.Sprintf("sleep %d.%d", seconds, os.Getpid()) }

// survivors returns what pgrep -f pattern still finds after up to 5 s:
// processes that outlived what should have ended them.
func survivors(pattern string) []byte {
	var out []byte
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if out, _ = exec.Command("pgrep", "-f", pattern).Output(); len(out) == 0 {
			break
		}
	}
	return out
}

// waitUnlocked waits up to 60 s (a loaded host's deadline; it is
// usually milliseconds) for the janitor to release name's lock, its last
// act.
func waitUnlocked(name string) {
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(env.stateDir, name+".lock")); err != nil {
			return
		}
	}
}

// initLink starts safe-run-init on the host as the container's first
// program, with sent on its control socket, and returns safe-run's end.
func initLink(t testing.TB, sent []byte, args ...string) (*exec.Cmd, *os.File, *bytes.Buffer) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	own, peer := os.NewFile(uintptr(fds[0]), "own"), os.NewFile(uintptr(fds[1]), "peer")
	defer peer.Close()
	if _, err := own.Write(sent); err != nil {
		t.Fatal(err)
	}
	c := exec.Command(env.init, append([]string{"--control-fd", "3", "--"}, args...)...)
	c.ExtraFiles = []*os.File{peer}
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	return c, own, &out
}

// noLandlock is the word to safe-run-init that no Landlock ruleset
// follows the seccomp program.
var noLandlock = []byte{0, 0, 0, 0}

// TestInitLoadsOnlyWholeFilters runs safe-run-init on the host with the
// program the last start kept: whole, it filters the command; cut short or
// missing, the command never runs; empty (libcontainer loaded the filter),
// the command runs as it is.
func TestInitLoadsOnlyWholeFilters(t *testing.T) {
	setup(t)
	probe(t, "scinit", "")
	files, _ := filepath.Glob(filepath.Join(env.dataDir, "seccomp", "*"))
	if len(files) == 0 {
		t.Fatal("no compiled program kept")
	}
	prog, err := os.ReadFile(files[0])
	if err != nil || len(prog) < sha256.Size {
		t.Fatal(err)
	}
	prog = prog[:len(prog)-sha256.Size] // the kept file's checksum
	for _, tc := range []struct {
		name string
		sent []byte
		code int
		out  string
	}{
		{"whole", append(slices.Clone(prog), noLandlock...), 0, "Seccomp:\t2\n"},
		{"cut short", prog[:len(prog)-8], 125, ""},
		{"nothing", nil, 125, ""},
		{"empty", make([]byte, 8+len(noLandlock)), 0, "Seccomp:\t0\n"},
		{"no Landlock word", prog, 125, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, own, out := initLink(t, tc.sent, "grep", "^Seccomp:", "/proc/self/status")
			if tc.code != 0 {
				own.Close() // safe-run-init waits for the rest: none comes
			}
			_ = c.Wait()
			own.Close()
			if code := c.ProcessState.ExitCode(); code != tc.code || (tc.code == 0 && !strings.HasSuffix(out.String(), tc.out)) {
				t.Errorf("exit %d, output %q, want %d and %q", code, out.String(), tc.code, tc.out)
			}
		})
	}
}

// TestInitEndsWithSafeRun: safe-run-init says when it takes signals, and
// kills the service once safe-run's end of the socket closes, as when
// safe-run is killed.
func TestInitEndsWithSafeRun(t *testing.T) {
	setup(t)
	c, own, out := initLink(t, make([]byte, 8+len(noLandlock)), "sleep", "30")
	buf := make([]byte, 1)
	if _, err := io.ReadFull(own, buf); err != nil || buf[0] != 'r' {
		t.Fatalf("safe-run-init did not say it takes signals: %q %v %s", buf, err, out)
	}
	start := time.Now()
	own.Close()
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		c.Process.Kill()
		<-done
		t.Fatal("the service outlived safe-run's end of the socket")
	}
	if code := c.ProcessState.ExitCode(); code != 137 {
		t.Errorf("exit %d, want 137 (killed with the service)\n%s", code, out)
	}
	t.Logf("ended %v after the socket closed", time.Since(start))
}

// TestMissingJanitor: without safe-run-janitor beside it, safe-run starts
// nothing, says what to install, and leaves nothing behind.
func TestMissingJanitor(t *testing.T) {
	setup(t)
	dir := filepath.Join(env.dir, "nojanitor")
	if err := os.MkdirAll(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	for _, bin := range []string{env.bin, env.init} {
		data, err := os.ReadFile(bin)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(bin)), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	c := exec.Command(filepath.Join(dir, "safe-run"), manifestFor(t, "nojanitor", "[process]\ncommand = [\"/bin/echo\", \"ran\"]\n"))
	c.Env = append(os.Environ(), "SAFE_RUN_STATE_DIR="+env.stateDir, "SAFE_RUN_DATA_DIR="+env.dataDir)
	out, _ := c.CombinedOutput()
	if code := c.ProcessState.ExitCode(); code != 125 || strings.Contains(string(out), "ran\n") || !strings.Contains(string(out), "install safe-run-janitor beside safe-run") {
		t.Errorf("exit %d, want 125 and the janitor's absence explained:\n%s", code, out)
	}
	assertNothingLeft(t, "nojanitor")
}

func TestOnlyStdioReachesTheService(t *testing.T) {
	setup(t)
	// CVE-2024-21626 leaked a host fd into the container. ls opens the
	// directory itself as fd 3; anything else is a leak.
	r := shell(t, "fds", "ls /proc/self/fd", "")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "0\n1\n2\n3" {
		t.Errorf("fds in the container:\n%s (exit %d, %s)", r.stdout, r.code, r.stderr)
	}
}

func TestStdinAndOutput(t *testing.T) {
	setup(t)
	r := run(t, manifestFor(t, "cat", "[process]\ncommand = [\"/bin/sh\", \"-c\", \"cat; echo err >&2; echo out >/dev/stdout\"]\n"), "hello\n")
	if r.code != 0 || r.stdout != "hello\nout\n" || !strings.Contains(r.stderr, "err\n") {
		t.Errorf("exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
}

func TestReadOnlyRootAndWritableMounts(t *testing.T) {
	setup(t)
	r := shell(t, "writes", `
touch /x 2>/dev/null && echo root-writable
touch /tmp/x && echo tmp-ok
touch /data/x && echo volume-ok
touch /cfg/x 2>/dev/null && echo bind-writable
cat /cfg/hello
mount | grep -E ' /(tmp|data|cfg) ' | sed 's/ (.*//;s/^[^ ]* on //'
grep -E ' /(tmp|data|cfg) ' /proc/mounts | awk '{print $2, $4}'
`, `
[[mounts]]
type = "tmpfs"
target = "/tmp"
size = "8M"

[[mounts]]
type = "volume"
source = "writes-data"
target = "/data"

[[mounts]]
type = "bind"
source = "cfg"
target = "/cfg"
`)
	if r.code != 0 {
		// The bind source does not exist yet: this run must fail cleanly.
		if !strings.Contains(r.stderr, "cfg") {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
	}
	assertNothingLeft(t, "writes")
	cfg := filepath.Join(env.dir, "manifests", "writes", "cfg")
	os.MkdirAll(cfg, 0o755)
	os.WriteFile(filepath.Join(cfg, "hello"), []byte("from the host\n"), 0o644)
	r = run(t, filepath.Join(env.dir, "manifests", "writes", "service.toml"), "")
	out := r.stdout
	for _, want := range []string{"tmp-ok", "volume-ok", "from the host"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s\n%s", want, out, r.stderr)
		}
	}
	for _, bad := range []string{"root-writable", "bind-writable"} {
		if strings.Contains(out, bad) {
			t.Errorf("%s:\n%s", bad, out)
		}
	}
	for _, re := range []string{`/tmp rw,nosuid,nodev,noexec`, `/data rw,nosuid,nodev`, `/cfg ro,nosuid,nodev`} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("mount options: want %q in:\n%s", re, out)
		}
	}
	// The volume persists, owned by the process user as mapped.
	st, err := os.Stat(filepath.Join(env.dataDir, "volumes", "writes-data", "x"))
	if err != nil {
		t.Fatalf("volume file: %v", err)
	}
	if uid := st.Sys().(*syscall.Stat_t).Uid; uid < 1<<30 {
		t.Errorf("volume file owned by host uid %d, want one in safe-run's range", uid)
	}
	assertNothingLeft(t, "writes")
}

func TestSecrets(t *testing.T) {
	setup(t)
	dir := filepath.Join(env.dir, "manifests", "secrets")
	os.MkdirAll(dir, 0o711)
	os.WriteFile(filepath.Join(dir, "db.txt"), []byte("hunter2"), 0o600)
	r := shell(t, "secrets", `
cat /run/secrets/db; echo
stat -c '%a %u:%g %n' /run/secrets /run/secrets/db
touch /run/secrets/x 2>/dev/null && echo secrets-writable
grep ' /run/secrets ' /proc/mounts | awk '{print $3, $4}'
`, "user = \"1000:1000\"\n[secrets]\ndb = { file = \"db.txt\" }\n")
	for _, want := range []string{"hunter2", "500 1000:1000 /run/secrets", "400 1000:1000 /run/secrets/db", "tmpfs ro,nosuid,nodev,noexec"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("missing %q in:\n%s\n%s", want, r.stdout, r.stderr)
		}
	}
	if strings.Contains(r.stdout, "secrets-writable") {
		t.Error("the secrets tmpfs is writable")
	}
	assertNothingLeft(t, "secrets")
}

func TestSensitiveBindRefusedThroughSymlink(t *testing.T) {
	setup(t)
	dir := filepath.Join(env.dir, "manifests", "symlinked")
	os.MkdirAll(dir, 0o711)
	os.Remove(filepath.Join(dir, "innocent"))
	if err := os.Symlink("/etc", filepath.Join(dir, "innocent")); err != nil {
		t.Fatal(err)
	}
	r := shell(t, "symlinked", "true", "[[mounts]]\ntype = \"bind\"\nsource = \"innocent\"\ntarget = \"/cfg\"\n[secrets]\nkey = { file = \"missing.key\" }\n")
	// Both refused at once, each at its line, before the start records
	// anything: not even the service's id range.
	for _, want := range []string{
		`symlinked/service.toml:\d+: mounts\[0\]\.source: \S+/innocent is refused \(through a symlink, it is /etc\): the host's configuration \[SR005 sensitive-mount\] \(bind only the files the service needs, or use a volume, or acknowledge it: \[insecure\] allow = \["sensitive_mounts"\] with a reason\)`,
		`symlinked/service.toml:\d+: secrets\.key\.file: \S+/missing.key does not exist \(create it, or correct the path\)`,
	} {
		if r.code != 125 || !regexp.MustCompile(want).MatchString(r.stderr) {
			t.Errorf("exit %d, stderr lacks %s:\n%s", r.code, want, r.stderr)
		}
	}
	if _, err := os.Stat(filepath.Join(env.dataDir, "ids", "services", "symlinked")); err == nil {
		t.Error("a refused start recorded an id range")
	}
	assertNothingLeft(t, "symlinked")
}

func TestSymlinksResolveInsideTheRoot(t *testing.T) {
	setup(t)
	// An image that plants symlinks pointing out of its root, as a mount
	// target and as the workdir (CVE-2021-30465 class): both resolve inside
	// the container root, and the host is not touched.
	rootfs := filepath.Join(env.dir, "rootfs-evil")
	os.RemoveAll(rootfs)
	if out, err := exec.Command("cp", "-a", env.rootfs, rootfs).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	escape := filepath.Join(env.dir, "escape-target")
	for link, target := range map[string]string{"evil": "../../../../../../.." + escape, "evilwd": "/../../../tmp"} {
		if err := os.Symlink(target, filepath.Join(rootfs, link)); err != nil {
			t.Fatal(err)
		}
	}
	manifest := manifestFor(t, "evil", `[process]
command = ["/bin/sh", "-c", "touch /evil/x && echo wrote; pwd -P"]
workdir = "/evilwd"

[[mounts]]
type = "tmpfs"
target = "/evil"
`)
	text, _ := os.ReadFile(manifest)
	os.WriteFile(manifest, []byte(strings.Replace(string(text), env.rootfs, rootfs, 1)), 0o644)
	r := run(t, manifest, "")
	if r.code != 0 || r.stdout != "wrote\n/tmp\n" {
		t.Errorf("exit %d stdout %q stderr %s", r.code, r.stdout, r.stderr)
	}
	if _, err := os.Lstat(escape); err == nil {
		t.Errorf("a mount target resolved outside the container root: %s exists", escape)
	}
	assertNothingLeft(t, "evil")
}

func TestCgroupFilesNotWritable(t *testing.T) {
	setup(t)
	// CVE-2022-0492: release_agent. The cgroup file system is read-only
	// and the cgroup namespace private.
	r := shell(t, "cgroupro", `
for f in /sys/fs/cgroup/*/release_agent /sys/fs/cgroup/release_agent; do [ -e "$f" ] && (echo x > "$f") 2>/dev/null && echo "writable $f"; done
cat /proc/self/cgroup
`, "")
	if strings.Contains(r.stdout, "writable") {
		t.Errorf("cgroup file writable:\n%s", r.stdout)
	}
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		if !strings.HasSuffix(line, ":/") {
			t.Errorf("cgroup namespace not private: %q", line)
		}
	}
}

func TestSafeRunBinaryNotReachable(t *testing.T) {
	setup(t)
	// CVE-2019-5736: the service must not reach the runtime binary, and
	// PID 1 is safe-run-init, non-dumpable, so its /proc/1/exe is closed.
	r := shell(t, "noexe", `
readlink /proc/1/exe 2>&1
grep -c safe-run /proc/self/mountinfo
ls /proc/1/root 2>&1 | head -1
`, "")
	if !strings.Contains(r.stdout, "Permission denied") {
		t.Errorf("PID 1's exe readable from the service:\n%s", r.stdout)
	}
	if strings.Contains(r.stdout, env.bin) {
		t.Errorf("safe-run binary visible:\n%s", r.stdout)
	}
}

func TestOOMKilledIsReported(t *testing.T) {
	setup(t)
	r := shell(t, "hog", `x=$(head -c 200000000 /dev/zero | tr '\0' x); echo survived`, "[resources]\nmemory = \"32M\"\ncpus = 1.0\n")
	if r.code != 137 || !strings.Contains(r.stderr, "OOM-killed (memory limit 32M") {
		t.Errorf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
	assertNothingLeft(t, "hog")
	// A child killed, the service itself going on to a clean end: its
	// code, and a line that says what happened on the way.
	// The child raises its OOM score so that the kernel never takes the
	// parent shell instead (as TestWarnings' warnoom).
	r = shell(t, "childhog", `(echo 1000 >/proc/self/oom_score_adj && x=$(head -c 200000000 /dev/zero | tr '\0' x)); echo survived`,
		"[resources]\nmemory = \"32M\"\ncpus = 1.0\n\n[security]\nlandlock = \"off\"\n\n[insecure]\nreason = \"the hog raises its OOM score in /proc, which the ruleset keeps read-only\"\nallow = [\"landlock_off\"]\n")
	if r.code != 0 || r.stdout != "survived\n" || !strings.Contains(r.stderr, "exited with code 0, but the kernel OOM-killed a process of it (memory limit 32M") {
		t.Errorf("exit %d, stdout %q, stderr:\n%s", r.code, r.stdout, r.stderr)
	}
	assertNothingLeft(t, "childhog")
}

func TestForkBombHitsPidsLimit(t *testing.T) {
	setup(t)
	// The bomb runs in a child shell, which dies when fork fails; the
	// count uses only builtins, which need no fork.
	r := shell(t, "forks", `
sh -c 'i=0; while [ $i -lt 100 ]; do sleep 5 & i=$((i+1)); done' 2>/dev/null
set -- /proc/[0-9]*
echo started $#
`, "[resources]\nmemory = \"64M\"\ncpus = 1.0\npids = 20\n")
	var n int
	fmt.Sscanf(strings.TrimSpace(r.stdout), "started %d", &n)
	t.Logf("processes in the container after the fork bomb: %d", n)
	if n == 0 || n > 20 {
		t.Errorf("processes in the container: %d, want at most the pids limit 20\n%s\n%s", n, r.stdout, r.stderr)
	}
	assertNothingLeft(t, "forks")
}

func TestStopSignalAndTimeout(t *testing.T) {
	setup(t)
	for _, tc := range []struct {
		name, init, timeout string
		signals             int // SIGTERMs sent
		code                int
		stderr              string
		within              time.Duration
	}{
		// With init, a shell script gets SIGTERM as an ordinary process
		// and stops at once.
		{"stopinit", "true", "1s", 1, 143, "stopped with SIGTERM (exit code 143)", 1500 * time.Millisecond},
		// As PID 1 the shell ignores SIGTERM: killed after stop_timeout.
		{"stopnoinit", "false", "1s", 1, 137, "killed with SIGKILL: it did not stop within 1s of SIGTERM", 3 * time.Second},
		// A second SIGTERM kills at once, and the reason says so. -q
		// drops the start report, never the reason.
		{"stoptwice", "false", "100s", 2, 137, "killed with SIGKILL: safe-run got a second SIGTERM", 3 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := manifestFor(t, tc.name, fmt.Sprintf("[process]\ncommand = [\"/bin/sh\", \"-c\", \"echo up; while true; do sleep 0.1; done\"]\ninit = %s\nstop_timeout = %q\n", tc.init, tc.timeout))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			c := safeRun(t, ctx, "-q", m)
			var errOut bytes.Buffer
			c.Stderr = &errOut
			out, _ := c.StdoutPipe()
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 3)
			if _, err := out.Read(buf); err != nil {
				t.Fatalf("service did not start: %v %s", err, errOut.String())
			}
			start := time.Now()
			for range tc.signals {
				c.Process.Signal(syscall.SIGTERM)
				time.Sleep(100 * time.Millisecond)
			}
			c.Wait()
			took := time.Since(start)
			if code := c.ProcessState.ExitCode(); code != tc.code || !strings.Contains(errOut.String(), tc.stderr) {
				t.Errorf("exit %d, stderr:\n%s\nwant %d and %q", code, errOut.String(), tc.code, tc.stderr)
			}
			if took > tc.within {
				t.Errorf("stopping took %v, want under %v", took, tc.within)
			}
			if strings.Contains(errOut.String(), "starting") {
				t.Errorf("-q kept the start report:\n%s", errOut.String())
			}
			assertNothingLeft(t, tc.name)
		})
	}
}

func TestZombiesAreReaped(t *testing.T) {
	setup(t)
	// Orphans are re-parented to PID 1, which must reap them.
	r := shell(t, "zombies", `
for i in 1 2 3 4 5; do sh -c 'sleep 0.1 & exit 0'; done
sleep 0.5
ps -o stat,comm | grep -c '^Z' || true
`, "")
	if strings.TrimSpace(r.stdout) != "0" {
		t.Errorf("zombies left: %q (%s)", r.stdout, r.stderr)
	}
}

func TestSecondStartRefusedAndCrashCleanedUp(t *testing.T) {
	setup(t)
	m := manifestFor(t, "twice", "[process]\ncommand = [\"/bin/sh\", \"-c\", \"echo up; "+uniqueSleep(30)+"\"]\n")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	first := startUp(t, ctx, m)
	second := run(t, m, "")
	if second.code != 125 || !strings.Contains(second.stderr, fmt.Sprintf("twice is already running (safe-run pid %d)", first.Process.Pid)) {
		t.Errorf("second start: exit %d, stderr:\n%s", second.code, second.stderr)
	}
	// From another state directory its name lock is another, but the cgroup is the same: that
	// start took the running service for a dead run's leftovers and SIGKILLed it.
	elsewhere := safeRun(t, ctx, m)
	elsewhere.Env = append(elsewhere.Env, "SAFE_RUN_STATE_DIR="+t.TempDir())
	var stderr bytes.Buffer
	elsewhere.Stderr = &stderr
	err := elsewhere.Run()
	if want := "a service of this name is running: twice, whose cgroup /sys/fs/cgroup/"; elsewhere.ProcessState.ExitCode() != 125 || !strings.Contains(stderr.String(), want) {
		t.Errorf("a start from another state directory: %v, stderr:\n%s\nwant %q", err, stderr.String(), want)
	}
	// A start that kills waits for the cgroup to be empty: the service would be gone by now.
	if len(survivors(uniqueSleep(30))) == 0 {
		t.Fatalf("the first run's service is gone after a start from another state directory")
	}
	// A stop from another state directory finds no status there, and says where it runs.
	stop := safeRun(t, ctx, "stop", "twice")
	stop.Env = append(stop.Env, "SAFE_RUN_STATE_DIR="+t.TempDir())
	if out, _ := stop.CombinedOutput(); stop.ProcessState.ExitCode() != 125 || !regexp.MustCompile(`twice: no such running service in \S+, but its cgroup /sys/fs/cgroup/\S*safe-run-twice has \d process\(es\): it runs from another state directory \(SAFE_RUN_STATE_DIR\) or as another user: run this there`).Match(out) {
		t.Errorf("a stop from another state directory: exit %d, %s", stop.ProcessState.ExitCode(), out)
	}
	// SIGKILL safe-run: the container dies with it, and the janitor
	// removes everything.
	first.Process.Signal(syscall.SIGKILL)
	first.Wait()
	waitUnlocked("twice")
	// The kernel tears the container's PID namespace down on its own
	// time: a process still exiting when the janitor is done is not one
	// that outlived safe-run.
	if survivors := survivors(uniqueSleep(30)); len(survivors) > 0 {
		t.Errorf("container processes outlived a SIGKILLed safe-run: %s", survivors)
	}
	assertNothingLeft(t, "twice")
	m = manifestFor(t, "twice", "[process]\ncommand = [\"/bin/echo\", \"again\"]\n")
	if r := run(t, m, ""); r.code != 0 || r.stdout != "again\n" {
		t.Errorf("start after crash: exit %d %s %s", r.code, r.stdout, r.stderr)
	}
	assertNothingLeft(t, "twice")
}

// startUp starts safe-run -q on manifest m, whose service prints "up", and returns once it has;
// env is added to safe-run's environment.
func startUp(t *testing.T, ctx context.Context, m string, env ...string) *exec.Cmd {
	t.Helper()
	c := safeRun(t, ctx, "-q", m)
	c.Env = append(c.Env, env...)
	out, _ := c.StdoutPipe()
	c.Stderr = os.Stderr
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := out.Read(make([]byte, 3)); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestPartlyRemovedCgroupCleanedUp: safe-run and its janitor SIGKILLed at once (systemd's
// KillMode=mixed at a unit's stop), then the run's cgroup removed in the hierarchy its lock is in
// (systemd removes a stopped unit's cgroups in the hierarchies it manages): the next start
// removes what is left in the others and runs. It failed opening the removed one.
func TestPartlyRemovedCgroupCleanedUp(t *testing.T) {
	setup(t)
	m := manifestFor(t, "partly", "[process]\ncommand = [\"/bin/sh\", \"-c\", \"echo up; "+uniqueSleep(32)+"\"]\n")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := startUp(t, ctx, m)
	unix.Kill(janitorOf(t, c.Process.Pid), unix.SIGKILL)
	c.Process.Signal(syscall.SIGKILL)
	c.Wait()
	waitUnlocked("partly")
	for deadline := time.Now().Add(10 * time.Second); len(survivors(uniqueSleep(32))) > 0 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	lock := "/sys/fs/cgroup/pids/safe-run-partly"
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		lock = "/sys/fs/cgroup/safe-run-partly"
	}
	if err := os.Remove(lock); err != nil {
		t.Fatalf("removing the run's cgroup where its lock is: %v", err)
	}
	m = manifestFor(t, "partly", "[process]\ncommand = [\"/bin/echo\", \"again\"]\n")
	if r := run(t, m, ""); r.code != 0 || r.stdout != "again\n" {
		t.Errorf("start after a partly removed cgroup: exit %d %s %s", r.code, r.stdout, r.stderr)
	}
	assertNothingLeft(t, "partly")
}

// TestServiceEndsWithSafeRun: a SIGKILLed safe-run takes its service with
// it even when the janitor cannot act (stopped here; killed with safe-run
// by a `pkill -9 safe-run`). The janitor, once it goes on, cleans up.
func TestServiceEndsWithSafeRun(t *testing.T) {
	setup(t)
	m := manifestFor(t, "lifeline", "[process]\ncommand = [\"/bin/sh\", \"-c\", \"echo up; "+uniqueSleep(31)+"\"]\n")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := startUp(t, ctx, m)
	janitor := janitorOf(t, c.Process.Pid)
	unix.Kill(janitor, unix.SIGSTOP)
	defer unix.Kill(janitor, unix.SIGCONT)
	c.Process.Signal(syscall.SIGKILL)
	c.Wait()
	if survivors := survivors(uniqueSleep(31)); len(survivors) > 0 {
		t.Errorf("the service outlived a SIGKILLed safe-run while the janitor was stopped: %s", survivors)
	}
	unix.Kill(janitor, unix.SIGCONT)
	waitUnlocked("lifeline")
	assertNothingLeft(t, "lifeline")
}

// TestSignalsWhileStarting: signals that reach safe-run while the
// container starts wait for the service to take them, with or without
// safe-run-init. Sent earlier, to libcontainer's init, they ended the
// start with its exit status 2. The service may get one before its shell
// sets its trap, and die of it: 129.
func TestSignalsWhileStarting(t *testing.T) {
	setup(t)
	for i := range 10 {
		m := manifestFor(t, "early", fmt.Sprintf("[process]\ncommand = [\"/bin/sh\", \"-c\", \"trap 'echo hup' HUP; echo up; sleep 0.2; echo done\"]\ninit = %v\n", i%2 == 0))
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		c := safeRun(t, ctx, m)
		stdout, _ := c.StdoutPipe()
		stderr, _ := c.StderrPipe()
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		// From the start report on, safe-run takes signals itself.
		var report strings.Builder
		sc := bufio.NewScanner(stderr)
		for sc.Scan() && !strings.Contains(sc.Text(), "starting") {
		}
		ended := make(chan struct{})
		go func() {
			defer close(ended)
			io.Copy(&report, stderr)
		}()
		var out strings.Builder
		up := make(chan struct{})
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				if sc.Text() == "up" {
					close(up)
				}
				out.WriteString(sc.Text() + "\n")
			}
		}()
		// SIGHUP every millisecond until the service is up, or over.
	storm:
		for {
			select {
			case <-up:
				break storm
			case <-ended:
				break storm
			default:
				c.Process.Signal(syscall.SIGHUP)
				time.Sleep(time.Millisecond)
			}
		}
		<-ended
		err := c.Wait()
		cancel()
		switch code := exitCode(err); {
		case code == 0 && strings.HasSuffix(out.String(), "done\n"):
		case code == 129 && strings.Contains(report.String(), "killed by SIGHUP"):
		default:
			t.Fatalf("start %d: exit %d, output %q, stderr:\n%s\nwant 0 (trapped) or 129 (killed by SIGHUP)", i, code, out.String(), report.String())
		}
	}
	assertNothingLeft(t, "early")
}

// TestSignalsGoLeaves: the signals Go's runtime leaves to the C library
// do not end safe-run: 34 (SIGRTMIN) reaches the service, which traps it,
// 32 and 33 are ignored.
func TestSignalsGoLeaves(t *testing.T) {
	setup(t)
	m := manifestFor(t, "rtmin", "[process]\ncommand = [\"/bin/sh\", \"-c\", \"trap 'echo got34' 34; echo up; sleep 1; echo done\"]\n")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := safeRun(t, ctx, "-q", m)
	stdout, _ := c.StdoutPipe()
	var errOut bytes.Buffer
	c.Stderr = &errOut
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	var out []string
	for sc.Scan() {
		out = append(out, sc.Text())
		if sc.Text() == "up" {
			for _, sig := range []syscall.Signal{34, 32, 33} {
				c.Process.Signal(sig)
			}
		}
	}
	err := c.Wait()
	if code := exitCode(err); code != 0 || strings.Join(out, " ") != "up got34 done" {
		t.Errorf("exit %d, output %q, want 0 and up got34 done\n%s", code, out, errOut.String())
	}
	assertNothingLeft(t, "rtmin")
}

func TestTTYRestoresTerminal(t *testing.T) {
	setup(t)
	master, slave := openPTY(t)
	defer master.Close()
	defer slave.Close()
	before, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	m := manifestFor(t, "tty", "[process]\ncommand = [\"/bin/sh\", \"-c\", \"test -t 0 && tty && stty size && sleep 1\"]\ntty = true\n")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := safeRun(t, ctx, "-q", m)
	c.Stdin, c.Stdout, c.Stderr = slave, slave, slave
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := unix.IoctlSetWinsize(int(slave.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 33, Col: 99}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	done := make(chan struct{})
	go func() { io.Copy(&out, master); close(done) }()
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	// While the service runs, the host terminal is raw: keys go to the
	// service's own terminal unprocessed.
	sawRaw := false
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline) && !sawRaw; time.Sleep(20 * time.Millisecond) {
		if tio, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS); err == nil && tio.Lflag&unix.ICANON == 0 {
			sawRaw = true
		}
	}
	if err := c.Wait(); err != nil {
		t.Fatalf("safe-run: %v\n%s", err, out.String())
	}
	if !sawRaw {
		t.Error("the host terminal was never put in raw mode")
	}
	after, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	if *before != *after {
		t.Errorf("terminal not restored:\nbefore %+v\nafter  %+v", before, after)
	}
	slave.Close()
	<-done
	if got := out.String(); !strings.Contains(got, "/dev/pts/0") || !strings.Contains(got, "33 99") {
		t.Errorf("the service did not get its own terminal of the host's size:\n%q", got)
	}
	assertNothingLeft(t, "tty")
}

// openPTY opens a pseudo-terminal pair for a test to play the user's
// terminal.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	return m, s
}

func TestNotify(t *testing.T) {
	setup(t)
	for _, tc := range []struct {
		name, body string
		// READY must come no sooner than this after the start.
		readyAfter time.Duration
		want       []string
	}{
		// safe-run reports READY itself once the process runs.
		{"notifyself", "[process]\ncommand = [\"/bin/sleep\", \"1\"]\n", 0, []string{"READY=1\nSTATUS=running notifyself"}},
		// The service reports it, through safe-run, after its own set-up;
		// MAINPID is not relayed.
		{"notifyrelay", "[process]\ncommand = [\"/bin/confinement\", \"-notify\", \"1s\"]\nnotify = true\n", time.Second,
			[]string{"STATUS=started notifyrelay, waiting for it to report ready", "READY=1\nSTATUS=confined"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sock := filepath.Join(env.dir, tc.name+".sock")
			l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			type message struct {
				text string
				at   time.Time
			}
			messages := make(chan message, 16)
			go func() {
				buf := make([]byte, 4096)
				for {
					n, err := l.Read(buf)
					if err != nil {
						close(messages)
						return
					}
					messages <- message{string(buf[:n]), time.Now()}
				}
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			c := safeRun(t, ctx, "-q", manifestFor(t, tc.name, tc.body))
			c.Env = append(c.Env, "NOTIFY_SOCKET="+sock)
			var errOut bytes.Buffer
			c.Stderr = &errOut
			start := time.Now()
			if err := c.Run(); err != nil {
				t.Fatalf("%v: %s", err, errOut.String())
			}
			l.Close()
			var got []string
			for m := range messages {
				got = append(got, m.text)
				if strings.HasPrefix(m.text, "READY=1") && m.at.Sub(start) < tc.readyAfter {
					t.Errorf("READY after %v, before the service was ready (%v)", m.at.Sub(start), tc.readyAfter)
				}
				if strings.Contains(m.text, "MAINPID") {
					t.Errorf("relayed MAINPID: %q", m.text)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("notifications %q, want %q", got, tc.want)
			}
			assertNothingLeft(t, tc.name)
		})
	}
}

// rootlessUser is the unprivileged user the rootless tests run as; the
// test creates it, with a range of subordinate ids, when it is missing.
const rootlessUser = testenv.RootlessUser

// rootlessHome is a home of rootlessUser's for one test: its state and
// data directories, the manifests the test writes, and safe-run run there
// as the user.
type rootlessHome struct {
	dir string
	u   userIDs
}

// newRootlessHome makes env.dir/name, owned by rootlessUser, with the
// directories safe-run keeps its state and data in.
func newRootlessHome(t *testing.T, name string) rootlessHome {
	t.Helper()
	testenv.RequireTool(t, "newuidmap")
	h := rootlessHome{dir: filepath.Join(env.dir, name), u: ensureUser(t, rootlessUser)}
	for _, d := range []string{h.dir, filepath.Join(h.dir, "xdg"), filepath.Join(h.dir, "data")} {
		os.MkdirAll(d, 0o700)
		os.Chown(d, int(h.u.uid), int(h.u.gid))
	}
	return h
}

// cmd is safe-run with args, run as the user in the home.
func (h rootlessHome) cmd(ctx context.Context, args ...string) *exec.Cmd {
	c := exec.CommandContext(ctx, env.bin, args...)
	c.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + h.dir, "XDG_RUNTIME_DIR=" + filepath.Join(h.dir, "xdg"), "XDG_DATA_HOME=" + filepath.Join(h.dir, "data")}
	c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: h.u.uid, Gid: h.u.gid}}
	c.Dir = h.dir
	return c
}

// rootlessWaiver acknowledges running without limits: this host's
// controllers are cgroup v1, which cannot be delegated to a user (rootless
// limits are proven in the QEMU guest).
const rootlessWaiver = "\n[insecure]\nreason = \"cgroup v1 host: limits cannot be delegated\"\nallow = [\"no_resource_limits\"]\n"

// manifest writes NAME.toml in the home: the test image, body, limits, and
// rootlessWaiver.
func (h rootlessHome) manifest(name, body string) string {
	p := filepath.Join(h.dir, name+".toml")
	text := fmt.Sprintf("version = 1\nname = %q\n[image]\nrootfs = %q\n%s\n[resources]\nmemory = \"64M\"\ncpus = 1.0\n%s", name, env.rootfs, body, rootlessWaiver)
	os.WriteFile(p, []byte(text), 0o644)
	return p
}

func TestRootless(t *testing.T) {
	setup(t)
	h := newRootlessHome(t, "rootless")
	u, home := h.u, h.dir
	os.WriteFile(filepath.Join(home, "db.txt"), []byte("s3cret"), 0o600)
	os.Chown(filepath.Join(home, "db.txt"), int(u.uid), int(u.gid))
	asUser := h.cmd
	write := h.manifest

	t.Run("refused without the waiver", func(t *testing.T) {
		p := write("rl-refused", "[process]\ncommand = [\"/bin/true\"]")
		os.WriteFile(p, []byte(strings.Split(string(mustRead(t, p)), "\n[insecure]")[0]), 0o644)
		out, err := asUser(context.Background(), p).CombinedOutput()
		if code := exitCode(err); code != 125 || !strings.Contains(string(out), "rootless limits: the controllers cpu, memory, pids are not delegated to you") {
			t.Errorf("exit %d:\n%s", code, out)
		}
	})

	// spec and export are for reading and for another machine: they work
	// where this user's run would be refused, spec saying so.
	t.Run("spec and export where a run is refused", func(t *testing.T) {
		p := write("rl-spec", "[process]\ncommand = [\"/bin/true\"]")
		os.WriteFile(p, []byte(strings.Split(string(mustRead(t, p)), "\n[insecure]")[0]), 0o644)
		c := asUser(context.Background(), "spec", p)
		var stderr bytes.Buffer
		c.Stderr = &stderr
		out, err := c.Output()
		var spec struct {
			OCIVersion string `json:"ociVersion"`
			Linux      struct {
				UIDMappings []struct{ Size uint32 } `json:"uidMappings"`
			}
		}
		if err != nil || json.Unmarshal(out, &spec) != nil || spec.OCIVersion == "" || len(spec.Linux.UIDMappings) == 0 {
			t.Fatalf("spec: %v\n%s\n%s", err, out, stderr.String())
		}
		if !strings.Contains(stderr.String(), "note: a run of rl-spec would be refused on this host: host cannot enforce the manifest: rootless limits") {
			t.Errorf("spec does not say the run would be refused:\n%s", stderr.String())
		}
		c = asUser(context.Background(), "export", "kubernetes", p, "--dir", home)
		if out, err := c.CombinedOutput(); err != nil || !strings.Contains(string(out), "\nkind: Pod\n") {
			t.Errorf("export kubernetes: %v\n%s", err, out)
		}
	})

	t.Run("probe", func(t *testing.T) {
		c := asUser(context.Background(), write("rl-probe", "[process]\ncommand = [\"/bin/confinement\", \"-json\"]\nuser = \"1000:1000\""))
		var stderr bytes.Buffer
		c.Stderr = &stderr
		out, err := c.Output()
		if err != nil {
			t.Fatalf("%v\n%s", err, stderr.String())
		}
		var p map[string]any
		if err := json.Unmarshal(out, &p); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		for k, v := range map[string]any{"UID": 1000.0, "CapEff": "0000000000000000", "CapBnd": "0000000000000000",
			"CapInh": "0000000000000000", "NoNewPrivs": "1", "Seccomp": "2", "RootWritable": false} {
			if p[k] != v {
				t.Errorf("%s = %v, want %v", k, p[k], v)
			}
		}
		if ifs := fmt.Sprint(p["Interfaces"]); ifs != "[lo]" {
			t.Errorf("interfaces %s, want only lo", ifs)
		}
		if !regexp.MustCompile(`user namespace 0-65535 -> host ids \d+, \d+-\d+ \(your uid, then your subordinate ids\)`).MatchString(stderr.String()) {
			t.Errorf("start report does not name the host ids:\n%s", stderr.String())
		}
		for _, note := range []string{"limits NOT enforced", "rootfs not id-mapped (rootless)", "Landlock ABI "} {
			if !strings.Contains(stderr.String(), note) {
				t.Errorf("start report lacks %q:\n%s", note, stderr.String())
			}
		}
	})

	t.Run("landlock", func(t *testing.T) {
		// Landlock needs no privilege: rootless, what is written to a
		// volume does not run either; on an exec tmpfs it does.
		testenv.RequireLandlock(t, 1)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		script := "cp /bin/busybox /xt/true && /xt/true && echo exec-tmpfs-ran; cp /bin/busybox /data/true && /data/true 2>/dev/null || echo volume-exec-denied"
		c := asUser(ctx, "-q", write("rl-landlock", fmt.Sprintf(`[process]
command = ["/bin/sh", "-c", %q]
user = "1000:1000"

[[mounts]]
type = "tmpfs"
target = "/xt"
options = ["exec"]

[[mounts]]
type = "volume"
source = "rl-landlock"
target = "/data"
`, script)))
		out, err := c.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "exec-tmpfs-ran") || !strings.Contains(string(out), "volume-exec-denied") {
			t.Errorf("%v\n%s", err, out)
		}
	})

	t.Run("host ids", func(t *testing.T) {
		// On the host, the service runs as the user's subordinate ids.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		sleep := uniqueSleep(30)
		c := asUser(ctx, "-q", write("rl-ids", "[process]\ncommand = [\"/bin/sh\", \"-c\", \"echo up; "+sleep+"\"]\nuser = \"1000:1000\""))
		out, _ := c.StdoutPipe()
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 3)
		out.Read(buf)
		pids, _ := exec.Command("pgrep", "-f", sleep).Output()
		var owners []string
		for _, pid := range strings.Fields(string(pids)) {
			st, err := os.Stat("/proc/" + pid)
			if err == nil {
				owners = append(owners, fmt.Sprint(st.Sys().(*syscall.Stat_t).Uid))
			}
		}
		c.Process.Signal(syscall.SIGTERM)
		c.Wait()
		if len(owners) == 0 {
			t.Fatal("the service was not found on the host")
		}
		for _, o := range owners {
			if o == "0" || o == fmt.Sprint(u.uid) {
				t.Errorf("service process runs as host uid %s; want a subordinate id of %s", o, rootlessUser)
			}
		}
		if code := c.ProcessState.ExitCode(); code != 143 {
			t.Errorf("SIGTERM to rootless safe-run: exit %d, want 143", code)
		}
	})

	t.Run("secrets and volumes", func(t *testing.T) {
		out, err := asUser(context.Background(), "-q", write("rl-files", `[process]
command = ["/bin/sh", "-c", "cat /run/secrets/db; echo; touch /data/x && echo volume-ok; touch /x 2>/dev/null || echo root-ro"]
user = "1000:1000"
[secrets]
db = { file = "db.txt" }
[[mounts]]
type = "volume"
source = "rl-data"
target = "/data"`)).CombinedOutput()
		if err != nil || string(out) != "s3cret\nvolume-ok\nroot-ro\n" {
			t.Errorf("%v:\n%s", err, out)
		}
		if _, err := os.Stat(filepath.Join(home, "data", "safe-run", "volumes", "rl-data", "x")); err != nil {
			t.Errorf("volume not under XDG_DATA_HOME: %v", err)
		}
	})

	t.Run("killed with the outer safe-run", func(t *testing.T) {
		// The inner safe-run, root in its namespace, follows the
		// outer one: killed, it takes the service with it.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c := asUser(ctx, "-q", write("rl-kill", "[process]\ncommand = [\"/bin/sh\", \"-c\", \"echo up; "+uniqueSleep(32)+"\"]"))
		out, _ := c.StdoutPipe()
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		out.Read(make([]byte, 3))
		c.Process.Signal(syscall.SIGKILL)
		c.Wait()
		if left := survivors(uniqueSleep(32) + "|rl-kill"); len(left) > 0 {
			t.Errorf("outlived the outer safe-run: %s", left)
		}
	})

	t.Run("the inner safe-run killed", func(t *testing.T) {
		// Dead of SIGKILL, the one signal it cannot forward, it used to leave the outer one
		// exiting 137 without a word, as if the service had been killed.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c := asUser(ctx, "-q", write("rl-inner", "[process]\ncommand = [\"/bin/sh\", \"-c\", \"echo up; "+uniqueSleep(33)+"\"]"))
		out, _ := c.StdoutPipe()
		var stderr bytes.Buffer
		c.Stderr = &stderr
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		out.Read(make([]byte, 3))
		inner, err := exec.Command("pgrep", "-P", strconv.Itoa(c.Process.Pid)).Output()
		if err != nil || len(strings.Fields(string(inner))) != 1 {
			t.Fatalf("the inner safe-run of %d: %q %v", c.Process.Pid, inner, err)
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(inner)))
		syscall.Kill(pid, syscall.SIGKILL)
		c.Wait()
		if code, want := c.ProcessState.ExitCode(), "safe-run: safe-run in your user namespace was killed by SIGKILL; its janitor cleans up after it (exit 137)\n"; code != 137 || stderr.String() != want {
			t.Errorf("exit %d, stderr %q; want 137, %q", code, stderr.String(), want)
		}
		if left := survivors(uniqueSleep(33)); len(left) > 0 {
			t.Errorf("outlived the inner safe-run: %s", left)
		}
	})

	t.Run("nothing left", func(t *testing.T) {
		entries, _ := os.ReadDir(filepath.Join(home, "xdg", "safe-run"))
		for _, e := range entries {
			t.Errorf("left in XDG_RUNTIME_DIR/safe-run: %s", e.Name())
		}
	})
}

type userIDs struct{ uid, gid uint32 }

// ensureUser creates a system user with a range of subordinate ids.
func ensureUser(t *testing.T, name string) userIDs {
	t.Helper()
	uid, gid := testenv.EnsureUser(t, name)
	return userIDs{uid, gid}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return b
}

func exitCode(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// TestTerminalEscapesShownEscaped: a manifest's values reach the terminal
// escaped, in the start report and in errors alike: a manifest someone
// else wrote must not retitle, clear or rewrite the operator's terminal.
func TestTerminalEscapesShownEscaped(t *testing.T) {
	setup(t)
	r := run(t, manifestFor(t, "escapes", "[process]\ncommand = [\"/bin/sh\", \"-c\", \"true # \\u001b]0;TITLE\\u0007\"]\n"), "")
	if r.code != 0 || strings.ContainsAny(r.stderr, "\x1b\x07") || !strings.Contains(r.stderr, `true # \x1b]0;TITLE\a`) {
		t.Errorf("exit %d, the start report:\n%q", r.code, r.stderr)
	}
	r = run(t, manifestFor(t, "escapes", "[process]\ncommand = [\"/bin/true\"]\n[[mounts]]\ntype = \"bind\"\nsource = \"/nonexistent/\\u001b[2J\"\ntarget = \"/x\"\n"), "")
	if r.code != 125 || strings.Contains(r.stderr, "\x1b") || !strings.Contains(r.stderr, `/nonexistent/\x1b[2J`) {
		t.Errorf("exit %d, the error:\n%q", r.code, r.stderr)
	}
	assertNothingLeft(t, "escapes")
}

// TestIDRangeSharedAcrossDataDirs: two data directories each allot their first range to a
// service of their own; the second to start, while the first runs, says that the two share host
// ids. Each started silently, and one's seccomp denials were reported as the other's.
func TestIDRangeSharedAcrossDataDirs(t *testing.T) {
	setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var dataDirs []string
	for range 2 {
		d := t.TempDir()
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
		dataDirs = append(dataDirs, "SAFE_RUN_DATA_DIR="+d)
	}
	first := startUp(t, ctx, manifestFor(t, "rangea", "[process]\ncommand = [\"/bin/sh\", \"-c\", \"echo up; "+uniqueSleep(33)+"\"]\n"), dataDirs[0])
	second := safeRun(t, ctx, manifestFor(t, "rangeb", "[process]\ncommand = [\"/bin/true\"]\n"))
	second.Env = append(second.Env, dataDirs[1])
	out, err := second.CombinedOutput()
	if err != nil || !regexp.MustCompile(`rangeb: its ids \(0-65535 -> \d+-\d+\) are in use by service rangea, whose ids another data directory allotted: the two share host ids`).Match(out) {
		t.Errorf("a second data directory's first service: %v\n%s", err, out)
	}
	first.Process.Signal(syscall.SIGTERM)
	first.Wait()
	assertNothingLeft(t, "rangea")
	assertNothingLeft(t, "rangeb")
}
