package export

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/internal/testenv"
	"github.com/safe-run/safe-run/launcher"
	"github.com/safe-run/safe-run/plan"
)

// dockerd is a Docker daemon of the test's own: private socket, data root,
// exec root, pid file and cgroup parent, no iptables and no bridge.
type dockerd struct {
	dir          string
	cgroupParent string
	cmd          *exec.Cmd
	env          []string
}

// startDockerd starts a daemon for t and stops it, and removes everything
// it made, when t ends, whether t passed or not.
func startDockerd(t *testing.T) *dockerd {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.Long(t)
	bin := testenv.RequireTool(t, "dockerd")
	testenv.RequireTool(t, "docker")
	dir, err := os.MkdirTemp("", "safe-run-dockerd-")
	if err != nil {
		t.Fatal(err)
	}
	d := &dockerd{dir: dir, cgroupParent: filepath.Base(dir)}
	sock := filepath.Join(dir, "docker.sock")
	d.env = append(os.Environ(), "DOCKER_HOST=unix://"+sock, "DOCKER_CONFIG="+filepath.Join(dir, "config"))
	log, err := os.Create(filepath.Join(dir, "dockerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	d.cmd = exec.Command(bin,
		"--iptables=false", "--ip6tables=false", "--bridge=none", "--ip-masq=false",
		"--host", "unix://"+sock,
		"--data-root", filepath.Join(dir, "data"),
		"--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "docker.pid"),
		"--cgroup-parent", d.cgroupParent)
	d.cmd.Stdout, d.cmd.Stderr = log, log
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("starting dockerd: %v", err)
	}
	t.Cleanup(func() { d.stop(t); log.Close(); _ = os.RemoveAll(dir) })
	deadline := time.Now().Add(30 * time.Second)
	for {
		if err := d.docker(t, "version").Run(); err == nil {
			return d
		}
		if time.Now().After(deadline) || d.cmd.ProcessState != nil {
			logText, _ := os.ReadFile(log.Name())
			testenv.Skip(t, "dockerd does not start on this kernel: %s", lastLines(logText, 10))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// docker is a docker CLI command against d.
func (d *dockerd) docker(t *testing.T, args ...string) *exec.Cmd {
	cmd := exec.Command("docker", args...)
	cmd.Env = d.env
	return cmd
}

// run runs docker and returns its standard output.
func (d *dockerd) run(t *testing.T, args ...string) []byte {
	t.Helper()
	var stderr bytes.Buffer
	cmd := d.docker(t, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("docker %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// stop ends the daemon (and the containerd it manages), unmounts what
// they left, and removes their cgroups.
func (d *dockerd) stop(t *testing.T) {
	if d.cmd.Process != nil && d.cmd.ProcessState == nil {
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = d.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Logf("dockerd did not stop within 20s of SIGTERM: killing it")
			_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}
	if b, err := os.ReadFile(filepath.Join(d.dir, "exec", "containerd", "containerd.pid")); err == nil {
		var pid int
		if _, err := fmt.Sscan(string(b), &pid); err == nil && pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	unmountUnder(t, d.dir)
	removeCgroups(t, d.cgroupParent)
}

// unmountUnder detaches every mount below dir, deepest first.
func unmountUnder(t *testing.T, dir string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Errorf("reading mountinfo: %v", err)
		return
	}
	var points []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			points = append(points, f[4])
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	for _, p := range points {
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			t.Errorf("unmounting %s: %v", p, err)
		}
	}
}

// removeCgroups removes the cgroup name, and the cgroups below it, in
// every hierarchy.
func removeCgroups(t *testing.T, name string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Errorf("reading mountinfo: %v", err)
		return
	}
	for _, line := range strings.Split(string(b), "\n") {
		_, after, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(line), strings.Fields(after)
		if !ok || len(g) == 0 || (g[0] != "cgroup" && g[0] != "cgroup2") {
			continue
		}
		root := filepath.Join(f[4], name)
		var dirs []string
		_ = filepath.WalkDir(root, func(p string, e os.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := os.Remove(dirs[i]); err != nil {
				t.Errorf("removing cgroup %s: %v", dirs[i], err)
			}
		}
	}
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// exampleRootfs builds the example service's root filesystem as `make
// example` does, into a directory of t's.
func exampleRootfs(t *testing.T) string {
	t.Helper()
	testenv.RequireTool(t, "busybox")
	rootfs, err := testenv.ExampleRootfs(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return rootfs
}

// writeManifest writes a service manifest exercising every docker setting
// into a directory of t's, with a bind source and a secret beside it.
func writeManifest(t *testing.T, name, rootfs string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "conf"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "conf", "app.conf"), []byte("x = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "db"), []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	text := fmt.Sprintf(`version = 1
name = %q

[image]
rootfs = %q

[process]
command = ["/bin/sleep", "600"]
user = "app"
env = { LOG_LEVEL = "info" }
workdir = "/tmp"
stop_signal = "SIGINT"
stop_timeout = "3s"
restart = "on-failure"

[security]
capabilities = ["NET_BIND_SERVICE"]

[resources]
memory = "64M"
memory_reservation = "32M"
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

[secrets]
db = { file = "db" }

[labels]
"org.example.test" = "yes"
`, name, rootfs, name)
	path := filepath.Join(dir, "service.toml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// prepareForRun prepares a manifest as `safe-run export` does, with state
// of t's own.
func prepareForRun(t *testing.T, path string) *plan.Prepared {
	t.Helper()
	state := t.TempDir()
	p, err := plan.Prepare(context.Background(), path, plan.Options{
		Dirs:     launcher.Dirs{State: filepath.Join(state, "run"), Data: filepath.Join(state, "data")},
		InitPath: "/usr/lib/safe-run/safe-run-init",
	})
	if err != nil {
		if errors.Is(err, launcher.ErrNoSubIDs) {
			testenv.Skip(t, "%v", err)
		}
		t.Fatal(err)
	}
	return p
}

// inspected is what the test reads of `docker inspect`.
type inspected struct {
	State struct {
		Running bool
		Error   string
	}
	Config struct {
		User        string
		WorkingDir  string
		Env         []string
		Labels      map[string]string
		StopSignal  string
		StopTimeout *int
		Image       string
		Hostname    string
	}
	HostConfig struct {
		ReadonlyRootfs    bool
		CapDrop           []string
		CapAdd            []string
		SecurityOpt       []string
		Memory            int64
		MemorySwap        int64
		MemoryReservation int64
		NanoCpus          int64
		PidsLimit         *int64
		NetworkMode       string
		Tmpfs             map[string]string
		Init              *bool
		RestartPolicy     struct{ Name string }
		Ulimits           []struct {
			Name       string
			Soft, Hard int64
		}
	}
	Mounts []struct {
		Type        string
		Name        string
		Source      string
		Destination string
		RW          bool
	}
}

// TestDockerRun runs the exported docker run line against a real dockerd
// and checks every setting in docker inspect.
func TestDockerRun(t *testing.T) {
	d := startDockerd(t)
	rootfs := exampleRootfs(t)
	name := "safe-run-export-test"
	p := prepareForRun(t, writeManifest(t, name, rootfs))
	dir := t.TempDir()
	out, err := Docker(p, Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := out.WriteFiles(dir); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(dir, "run.sh")
	if err := os.WriteFile(script, out.Text, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = d.docker(t, "rm", "--force", "--volumes", name).Run()
		_ = d.docker(t, "volume", "rm", name+"-data").Run()
	})
	run := exec.Command("sh", script)
	run.Env = d.env
	if b, err := run.CombinedOutput(); err != nil {
		t.Fatalf("the exported script: %v\n%s\n%s", err, b, out.Text)
	}

	var got []inspected
	if err := json.Unmarshal(d.run(t, "inspect", name), &got); err != nil || len(got) != 1 {
		t.Fatalf("docker inspect: %v", err)
	}
	c := got[0]
	h := c.HostConfig
	check := func(what string, got, want any) {
		t.Helper()
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(want)
		if string(g) != string(w) {
			t.Errorf("%s = %s, want %s", what, g, w)
		}
	}
	check("Running", c.State.Running, true)
	check("ReadonlyRootfs", h.ReadonlyRootfs, true)
	check("CapDrop", h.CapDrop, []string{"ALL"})
	// docker's CLI sends capability names with or without CAP_,
	// depending on its version.
	for i := range h.CapAdd {
		h.CapAdd[i] = strings.TrimPrefix(h.CapAdd[i], "CAP_")
	}
	check("CapAdd", h.CapAdd, []string{"NET_BIND_SERVICE"})
	check("Memory", h.Memory, 64<<20)
	check("MemorySwap", h.MemorySwap, 64<<20)
	check("MemoryReservation", h.MemoryReservation, 32<<20)
	check("NanoCpus", h.NanoCpus, 5e8)
	check("PidsLimit", h.PidsLimit, 64)
	check("NetworkMode", h.NetworkMode, "none")
	check("Tmpfs", h.Tmpfs, map[string]string{"/tmp": "nosuid,nodev,noexec,mode=1777,size=16777216"})
	check("Init", h.Init, true)
	check("RestartPolicy", h.RestartPolicy.Name, "on-failure")
	check("User", c.Config.User, "1000:1000")
	check("WorkingDir", c.Config.WorkingDir, "/tmp")
	check("Hostname", c.Config.Hostname, name)
	check("StopSignal", c.Config.StopSignal, "SIGINT")
	check("StopTimeout", c.Config.StopTimeout, 3)
	check("Label", c.Config.Labels["org.example.test"], "yes")
	check("Label digest", c.Config.Labels[launcher.AnnotationManifestDigest], p.Service.Digest)
	if !slices.Contains(c.Config.Env, "LOG_LEVEL=info") {
		t.Errorf("Env %q lacks LOG_LEVEL=info", c.Config.Env)
	}
	if !strings.HasPrefix(c.Config.Image, "sha256:") {
		t.Errorf("Image %q is not pinned by ID", c.Config.Image)
	}
	var rlimits []string
	for _, u := range h.Ulimits {
		rlimits = append(rlimits, fmt.Sprintf("%s=%d:%d", u.Name, u.Soft, u.Hard))
	}
	var want []string
	for _, r := range p.Spec.Process.Rlimits {
		want = append(want, fmt.Sprintf("%s=%d:%d", strings.ToLower(strings.TrimPrefix(r.Type, "RLIMIT_")), r.Soft, r.Hard))
	}
	check("Ulimits", rlimits, want)

	// Security options: no_new_privs, the profile's content (the CLI
	// sends the file's JSON), AppArmor.
	var seccomp string
	opts := slices.DeleteFunc(slices.Clone(h.SecurityOpt), func(o string) bool {
		if s, ok := strings.CutPrefix(o, "seccomp="); ok {
			seccomp = s
			return true
		}
		return false
	})
	check("SecurityOpt", opts, []string{"no-new-privileges", "apparmor=safe-run-" + name})
	var profile struct {
		DefaultAction specs.LinuxSeccompAction `json:"defaultAction"`
		Syscalls      []struct {
			Names []string `json:"names"`
		} `json:"syscalls"`
	}
	if err := json.Unmarshal([]byte(seccomp), &profile); err != nil {
		t.Errorf("SecurityOpt seccomp=%q: %v", seccomp, err)
	}
	// The service's own default profile reached docker: denials by
	// default, read allowed, mount not.
	check("seccomp defaultAction", profile.DefaultAction, specs.ActErrno)
	var allowed []string
	for _, sc := range profile.Syscalls {
		allowed = append(allowed, sc.Names...)
	}
	if !slices.Contains(allowed, "read") || slices.Contains(allowed, "mount") {
		t.Errorf("seccomp profile reaching docker: read allowed %v, mount allowed %v", slices.Contains(allowed, "read"), slices.Contains(allowed, "mount"))
	}

	var mounts []string
	for _, m := range c.Mounts {
		src := m.Source
		if m.Type == "volume" {
			src = m.Name
		}
		mounts = append(mounts, fmt.Sprintf("%s %s %s rw=%v", m.Type, src, m.Destination, m.RW))
	}
	slices.Sort(mounts)
	dirOf := filepath.Dir(p.Service.File)
	check("Mounts", mounts, []string{
		fmt.Sprintf("bind %s/conf /etc/app rw=false", dirOf),
		fmt.Sprintf("bind %s/db /run/secrets/db rw=false", dirOf),
		fmt.Sprintf("volume %s-data /var/lib/app rw=true", name),
	})

	// The container runs confined: a write to its root fails.
	if err := d.docker(t, "exec", name, "touch", "/x").Run(); err == nil {
		t.Error("docker exec touch /x succeeded on a read-only root filesystem")
	}
}
