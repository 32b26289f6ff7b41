package export

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/safe-run/safe-run/host"
	"github.com/safe-run/safe-run/internal/testenv"
	"github.com/safe-run/safe-run/plan"
)

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
func prepareForRun(t *testing.T, path string) *plan.Job {
	t.Helper()
	state := t.TempDir()
	p, err := plan.Build(context.Background(), path, host.Probe(), plan.Options{
		Dirs:     plan.Dirs{State: filepath.Join(state, "run"), Data: filepath.Join(state, "data")},
		InitPath: "/usr/lib/safe-run/safe-run-init",
	})
	if err != nil {
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
		CpuPeriod         int64
		CpuQuota          int64
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
	d := testenv.StartDockerd(t)
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
		_, _ = d.Docker("rm", "--force", "--volumes", name)
		_, _ = d.Docker("volume", "rm", name+"-data")
	})
	run := exec.Command("sh", script)
	run.Env = d.Env
	if b, err := run.CombinedOutput(); err != nil {
		t.Fatalf("the exported script: %v\n%s\n%s", err, b, out.Text)
	}

	var got []inspected
	if err := json.Unmarshal([]byte(d.MustDocker(t, "inspect", name)), &got); err != nil || len(got) != 1 {
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
	check("CpuPeriod", h.CpuPeriod, 5000) // safe-run's period: plan.CPUQuota
	check("CpuQuota", h.CpuQuota, 2500)
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
	check("Label digest", c.Config.Labels[plan.AnnotationManifestDigest], p.Service.Digest)
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
	if _, err := d.Docker("exec", name, "touch", "/x"); err == nil {
		t.Error("docker exec touch /x succeeded on a read-only root filesystem")
	}
}
