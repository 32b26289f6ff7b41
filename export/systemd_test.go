package export

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/safe-run/safe-run/host"
	"github.com/safe-run/safe-run/internal/testenv"
	"github.com/safe-run/safe-run/plan"
)

// verifyUnit runs systemd-analyze verify on a unit; any word from it is a
// failure, since it reports unknown keys and bad values only as warnings.
func verifyUnit(t *testing.T, name string, text []byte) {
	t.Helper()
	bin := testenv.RequireTool(t, "systemd-analyze")
	path := filepath.Join(t.TempDir(), name+".service")
	if err := os.WriteFile(path, text, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "verify", path).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s\n%s", name, err, out, text)
	}
}

// TestSystemdVerify checks every unit the testdata manifests give with
// systemd-analyze verify; ExecStart must name a program that exists, so
// the unit starts this test binary.
func TestSystemdVerify(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range manifests {
		t.Run(m, func(t *testing.T) {
			p := prepare(t, m)
			out, err := Systemd(p, Options{SafeRun: self})
			if err != nil {
				t.Fatal(err)
			}
			verifyUnit(t, p.Service.Name, out.Text)
		})
	}
}

// buildSafeRun builds safe-run and safe-run-init into dir/bin, as make
// build does.
func buildSafeRun(t *testing.T, dir string) string {
	t.Helper()
	b, err := testenv.Build(dir)
	if err != nil {
		t.Fatal(err)
	}
	return b.SafeRun
}

// nestedSystemd is a systemd of the test's own, PID 1 of a new PID
// namespace, in a cgroup of its own (with a cgroup namespace, and the
// hierarchies bound from that cgroup), in a private mount namespace where
// /run is a fresh tmpfs, /var/lib/safe-run is a directory of the test's,
// and its units are the test's alone.
type nestedSystemd struct {
	cmd    *exec.Cmd
	pid    int // systemd, as this PID namespace numbers it
	cgroup string
}

const systemdOuter = `set -e
cg=$1; shift
for mp in "$@"; do
	mkdir -p "$mp/$cg"
	if [ -e "$mp/cpuset.cpus" ]; then
		cat "$mp/cpuset.cpus" >"$mp/$cg/cpuset.cpus"
		cat "$mp/cpuset.mems" >"$mp/$cg/cpuset.mems"
	fi
	echo $$ >"$mp/$cg/cgroup.procs"
done
exec unshare --cgroup --pid --fork --mount --mount-proc --propagation private sh -c "$INNER" inner "$cg" "$@"
`

const systemdInner = `set -e
cg=$1; shift
stage=$(mktemp -d)
mount -t tmpfs tmpfs "$stage"
i=0; for mp in "$@"; do mkdir "$stage/$i"; mount --bind "$mp/$cg" "$stage/$i"; i=$((i+1)); done
mount -t tmpfs -o mode=755,nosuid,nodev,noexec tmpfs /sys/fs/cgroup
i=0; for mp in "$@"; do mkdir -p "$mp"; mount --move "$stage/$i" "$mp"; i=$((i+1)); done
umount "$stage"; rmdir "$stage"
mount -t tmpfs -o mode=755 tmpfs /run
mount --bind "$VARLIB" /var/lib/safe-run
mount --bind "$UNITS" /lib/systemd/system
mount -t tmpfs tmpfs /etc/systemd/system
exec env container=safe-run-test /lib/systemd/systemd --system --log-target=null
`

// cgroupMounts lists the mount points of the cgroup hierarchies.
func cgroupMounts(t *testing.T) []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		_, after, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(line), strings.Fields(after)
		if ok && len(g) > 0 && (g[0] == "cgroup" || g[0] == "cgroup2") {
			out = append(out, f[4])
		}
	}
	return out
}

func startSystemd(t *testing.T, dir string) *nestedSystemd {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.Long(t)
	for _, tool := range []string{"unshare", "nsenter", "systemctl"} {
		testenv.RequireTool(t, tool)
	}
	if _, err := os.Stat("/lib/systemd/systemd"); err != nil {
		testenv.Skip(t, "needs systemd (/lib/systemd/systemd): %v", err)
	}
	units, varlib := filepath.Join(dir, "units"), filepath.Join(dir, "varlib")
	for _, d := range []string{units, varlib} {
		if err := os.Mkdir(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	// The targets a service's default dependencies name.
	for _, target := range []string{"default", "sysinit", "basic", "shutdown", "multi-user"} {
		if err := os.WriteFile(filepath.Join(units, target+".target"), []byte("[Unit]\nDescription="+target+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat("/var/lib/safe-run"); errors.Is(err, fs.ErrNotExist) {
		if err := os.Mkdir("/var/lib/safe-run", 0o711); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.Remove("/var/lib/safe-run") })
	}
	s := &nestedSystemd{cgroup: filepath.Base(dir)}
	s.cmd = exec.Command("sh", append([]string{"-c", systemdOuter, "outer", s.cgroup}, cgroupMounts(t)...)...)
	s.cmd.Env = append(os.Environ(), "INNER="+systemdInner, "VARLIB="+varlib, "UNITS="+units)
	var stderr bytes.Buffer
	s.cmd.Stderr = &stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.stop(t) })
	deadline := time.Now().Add(30 * time.Second)
	state := ""
	for {
		if s.pid == 0 {
			s.pid = systemdChild(s.cmd.Process.Pid)
		}
		if s.pid != 0 {
			out, _ := s.systemctl("is-system-running").CombinedOutput()
			if state = strings.TrimSpace(string(out)); state == "running" || state == "degraded" {
				return s
			}
		}
		if time.Now().After(deadline) {
			testenv.Skip(t, "systemd does not come up as PID 1 of a PID namespace here (pid %d, state %q): %s", s.pid, state, stderr.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// systemdChild is the systemd that unshare (pid) forked, or 0 while there
// is none yet: before unshare runs, pid's children are the outer script's
// commands.
func systemdChild(pid int) int {
	c := childOf(pid)
	if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", c)); c == 0 || err != nil || strings.TrimSpace(string(comm)) != "systemd" {
		return 0
	}
	return c
}

// childOf is the only child of pid, or 0.
func childOf(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) != 1 {
		return 0
	}
	n, _ := strconv.Atoi(f[0])
	return n
}

func (s *nestedSystemd) systemctl(args ...string) *exec.Cmd {
	return exec.Command("nsenter", append([]string{"-t", strconv.Itoa(s.pid), "-m", "-p", "systemctl"}, args...)...)
}

// show returns a unit's properties.
func (s *nestedSystemd) show(t *testing.T, unit string, props ...string) map[string]string {
	t.Helper()
	out, err := s.systemctl("show", unit, "-p", strings.Join(props, ",")).Output()
	if err != nil {
		t.Fatalf("systemctl show %s: %v", unit, err)
	}
	m := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		k, v, _ := strings.Cut(l, "=")
		m[k] = v
	}
	return m
}

// stop kills the namespace's systemd (and so everything in its PID
// namespace), and removes its cgroups.
func (s *nestedSystemd) stop(t *testing.T) {
	if s.pid != 0 {
		_ = syscall.Kill(s.pid, syscall.SIGKILL)
	}
	_ = s.cmd.Wait()
	// The cgroups empty as the killed processes are reaped.
	for i := 0; i < 50; i++ {
		if testenv.TryRemoveCgroups(s.cgroup) == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	testenv.RemoveCgroups(t, s.cgroup)
}

// confinementKeys are the fields of example/confinement's report that must
// read the same under the unit as under safe-run alone: the unit's
// hardening of safe-run must not reach the container.
var confinementKeys = []string{"UID", "GID", "CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb",
	"NoNewPrivs", "Seccomp", "AppArmor", "Hostname", "RootWritable", "Interfaces",
	"MemoryLimit", "MemorySoft", "CPUQuota", "PidsLimit", "CgroupVersion", "PID1"}

// TestSystemdUnitRuns starts a service through the exported unit under a
// real systemd, with every hardening directive of the unit, and checks
// that the service ran with the same confinement as under safe-run alone,
// reading its ro bind and secret and writing its volume and its writable
// bind (which ProtectSystem=strict would otherwise make read-only).
func TestSystemdUnitRuns(t *testing.T) {
	// Not under /tmp, so that the unit gets PrivateTmp=yes, and not
	// writable but for ReadWritePaths under ProtectSystem=strict.
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
	rootfs := exampleRootfs(t)
	if out, err := exec.Command("cp", "-a", rootfs, filepath.Join(dir, "rootfs")).CombinedOutput(); err != nil {
		t.Fatalf("copying the rootfs: %v: %s", err, out)
	}
	for _, d := range []string{"conf", "out"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o777); err != nil {
			t.Fatal(err)
		}
	}
	// Writable by the service's user as mapped.
	if err := os.Chmod(filepath.Join(dir, "out"), 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "conf", "app.conf"), []byte("x = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "db"), []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	name := "safe-run-export-sdtest"
	manifestText := fmt.Sprintf(`version = 1
name = %q

[image]
rootfs = "rootfs"

[process]
command = ["/bin/sh", "-c", "cat /etc/app/app.conf /run/secrets/db >/dev/null && echo ok >/var/lib/app/v && echo ok >/out/w && exec /bin/confinement -json"]
user = "app"
restart = "no"

[resources]
memory = "64M"
cpus = 0.5
pids = 64

[[mounts]]
type = "tmpfs"
target = "/tmp"
size = "16M"

[[mounts]]
type = "volume"
source = "%s-data"
target = "/var/lib/app"

[[mounts]]
type = "bind"
source = "conf"
target = "/etc/app"

[[mounts]]
type = "bind"
source = "out"
target = "/out"
read_only = false

[secrets]
db = { file = "db" }
`, name, name)
	manifestPath := filepath.Join(dir, "service.toml")
	if err := os.WriteFile(manifestPath, []byte(manifestText), 0o644); err != nil {
		t.Fatal(err)
	}

	// The same service under safe-run alone, as the reference.
	state := filepath.Join(dir, "direct")
	if err := os.Mkdir(state, 0o711); err != nil {
		t.Fatal(err)
	}
	direct := exec.Command(safeRun, "-q", manifestPath)
	direct.Env = append(os.Environ(), "SAFE_RUN_STATE_DIR="+filepath.Join(state, "run"), "SAFE_RUN_DATA_DIR="+filepath.Join(state, "data"))
	var directErr bytes.Buffer
	direct.Stderr = &directErr
	want, err := direct.Output()
	if err != nil {
		if strings.Contains(directErr.String(), host.SetupHint) {
			testenv.Skip(t, "%s", directErr.String())
		}
		t.Fatalf("safe-run alone: %v\n%s", err, directErr.String())
	}
	if err := os.Remove(filepath.Join(dir, "out", "w")); err != nil {
		t.Fatal(err)
	}

	// The exported unit, as `safe-run export systemd` writes it; a
	// drop-in sends its output to files, as there is no journal here.
	p, err := plan.Build(t.Context(), manifestPath, host.Probe(), plan.Options{
		Dirs: plan.Dirs{State: filepath.Join(state, "run"), Data: filepath.Join(state, "data")}, InitPath: filepath.Join(filepath.Dir(safeRun), "safe-run-init")})
	if err != nil {
		t.Fatal(err)
	}
	out, err := Systemd(p, Options{SafeRun: safeRun})
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"PrivateTmp=yes", "ProtectSystem=strict", "ReadWritePaths=" + filepath.Join(dir, "out")} {
		if !bytes.Contains(out.Text, []byte("\n"+line+"\n")) {
			t.Fatalf("the unit lacks %s:\n%s", line, out.Text)
		}
	}
	verifyUnit(t, name, out.Text)
	units := filepath.Join(dir, "units")
	stdout, stderr := filepath.Join(dir, "stdout"), filepath.Join(dir, "stderr")
	if err := os.WriteFile(filepath.Join(units, name+".service"), out.Text, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(units, name+".service.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	// RemainAfterExit keeps the ended unit loaded: an inactive unit that
	// ended well is garbage-collected, properties and all.
	dropIn := fmt.Sprintf("[Service]\nStandardOutput=file:%s\nStandardError=file:%s\nRemainAfterExit=yes\n", stdout, stderr)
	if err := os.WriteFile(filepath.Join(units, name+".service.d", "test.conf"), []byte(dropIn), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := sd.systemctl("daemon-reload").CombinedOutput(); err != nil {
		t.Fatalf("systemctl daemon-reload: %v: %s", err, b)
	}
	if b, err := sd.systemctl("start", "--no-block", name).CombinedOutput(); err != nil {
		t.Fatalf("systemctl start: %v: %s", err, b)
	}
	var props map[string]string
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		props = sd.show(t, name, "ActiveState", "Result", "ExecMainCode", "ExecMainStatus", "ExecMainExitTimestampMonotonic")
		if ts := props["ExecMainExitTimestampMonotonic"]; ts != "" && ts != "0" && props["ActiveState"] != "activating" && props["ActiveState"] != "deactivating" {
			break
		}
		if time.Now().After(deadline) {
			status, _ := sd.systemctl("show", name).CombinedOutput()
			errText, _ := os.ReadFile(stderr)
			t.Fatalf("the unit has not ended after 60s: %v\n%s\n%s", props, status, errText)
		}
	}
	errText, _ := os.ReadFile(stderr)
	// ExecMainCode 1 is CLD_EXITED.
	if props["ExecMainCode"] != "1" || props["ExecMainStatus"] != "0" {
		t.Fatalf("safe-run under the unit: %v\n%s", props, errText)
	}
	// TODO(sd_notify): once safe-run sends READY=1, only "success".
	if r := props["Result"]; r != "success" && r != "protocol" {
		t.Errorf("Result=%s, want success", r)
	}
	t.Logf("unit ended: %v", props)
	got, err := os.ReadFile(stdout)
	if err != nil {
		t.Fatal(err)
	}
	var g, w map[string]any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("the service's report under the unit: %v\n%s\n%s", err, got, errText)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatalf("the service's report under safe-run alone: %v\n%s", err, want)
	}
	for _, k := range confinementKeys {
		gj, _ := json.Marshal(g[k])
		wj, _ := json.Marshal(w[k])
		if !bytes.Equal(gj, wj) {
			t.Errorf("%s under the unit = %s, under safe-run alone = %s", k, gj, wj)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "out", "w")); err != nil || string(b) != "ok\n" {
		t.Errorf("the writable bind under the unit: %q, %v", b, err)
	}
}
