package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Dockerd is a docker daemon of a test's own: private socket, data and exec
// roots and cgroup parent, no iptables and no bridge. Everything it made
// (containers, mounts, cgroups, files) is removed when the test ends,
// whether it passed or not.
type Dockerd struct {
	Dir    string   // its files
	Socket string   // its unix socket
	Host   string   // unix://Socket, for DOCKER_HOST
	Env    []string // the environment of a docker CLI that talks to it

	t            *testing.T
	cgroupParent string
	cmd          *exec.Cmd
	exited       chan struct{}
	log          string
}

// StartDockerd starts a daemon for t, with the extra dockerd flags given
// (another --host, a --storage-driver). It skips t where dockerd exits at
// start-up, as it does on kernels it cannot use.
func StartDockerd(t *testing.T, extra ...string) *Dockerd {
	t.Helper()
	RequireRoot(t)
	Long(t)
	bin := RequireTool(t, "dockerd")
	RequireTool(t, "docker")
	// A short path: a unix socket's path must fit in 108 bytes.
	dir, err := os.MkdirTemp("/tmp", "srdockerd-")
	if err != nil {
		t.Fatal(err)
	}
	d := &Dockerd{Dir: dir, Socket: filepath.Join(dir, "docker.sock"), t: t, cgroupParent: filepath.Base(dir),
		exited: make(chan struct{}), log: filepath.Join(dir, "dockerd.log")}
	d.Host = "unix://" + d.Socket
	d.Env = append(os.Environ(), "DOCKER_HOST="+d.Host, "DOCKER_CONFIG="+filepath.Join(dir, "cli"))
	t.Cleanup(d.cleanup)
	log, err := os.OpenFile(d.log, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	d.cmd = exec.Command(bin, append([]string{
		"--iptables=false", "--ip6tables=false", "--ip-masq=false", "--ip-forward=false", "--bridge=none", "--userland-proxy=false",
		"--host", d.Host,
		"--data-root", filepath.Join(dir, "data"), "--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "docker.pid"), "--cgroup-parent", d.cgroupParent}, extra...)...)
	d.cmd.Stdout, d.cmd.Stderr = log, log
	// Its own process group, so that cleanup reaches containerd too.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("starting dockerd: %v", err)
	}
	go func() { _ = d.cmd.Wait(); close(d.exited) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := d.Docker("version", "--format", "{{.Server.Version}}"); err == nil {
			return d
		}
		select {
		case <-d.exited:
			Skip(t, "dockerd exited at start-up here:\n%s", d.logTail())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("dockerd did not answer within 60s:\n%s", d.logTail())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Command is a docker CLI command against d.
func (d *Dockerd) Command(args ...string) *exec.Cmd {
	cmd := exec.Command("docker", args...)
	cmd.Env = d.Env
	return cmd
}

// Docker runs a docker CLI command against d and returns its standard
// output, trimmed.
func (d *Dockerd) Docker(args ...string) (string, error) {
	var out, errb bytes.Buffer
	cmd := d.Command(args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, errb.String())
	}
	return strings.TrimSpace(out.String()), nil
}

// MustDocker is Docker that fails t on an error.
func (d *Dockerd) MustDocker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := d.Docker(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (d *Dockerd) logTail() string {
	b, _ := os.ReadFile(d.log)
	return LastLines(string(b), 20)
}

// cleanup removes every container, stops the daemon (and its containerd),
// and removes what they left: mounts, cgroups, files.
func (d *Dockerd) cleanup() {
	t := d.t
	if d.cmd != nil && d.cmd.Process != nil {
		select {
		case <-d.exited:
		default:
			if ids, err := d.Docker("ps", "-aq"); err == nil && ids != "" {
				_, _ = d.Docker(append([]string{"rm", "-f"}, strings.Fields(ids)...)...)
			}
			_ = d.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-d.exited:
			case <-time.After(30 * time.Second):
				t.Log("dockerd did not stop within 30s of SIGTERM: killing its process group")
			}
		}
		_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-d.exited:
		case <-time.After(10 * time.Second):
		}
	}
	// A containerd that left dockerd's process group.
	if b, err := os.ReadFile(filepath.Join(d.Dir, "exec", "containerd", "containerd.pid")); err == nil {
		var pid int
		if _, err := fmt.Sscan(string(b), &pid); err == nil && pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	UnmountUnder(t, d.Dir)
	RemoveCgroups(t, d.cgroupParent)
	if err := os.RemoveAll(d.Dir); err != nil {
		t.Errorf("removing %s: %v", d.Dir, err)
	}
}

// UnmountUnder detaches every mount below dir, deepest first.
func UnmountUnder(t *testing.T, dir string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Errorf("reading mountinfo: %v", err)
		return
	}
	var points []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			points = append(points, f[4])
		}
	}
	slices.SortFunc(points, func(a, b string) int { return len(b) - len(a) })
	for _, p := range points {
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			t.Errorf("unmounting %s: %v", p, err)
		}
	}
}

// RemoveCgroups removes the cgroup name, and the cgroups below it, in
// every hierarchy, and fails t on what it cannot remove.
func RemoveCgroups(t *testing.T, name string) {
	if err := TryRemoveCgroups(name); err != nil {
		t.Errorf("removing cgroup %s: %v", name, err)
	}
}

// TryRemoveCgroups is RemoveCgroups for a caller that retries: a cgroup
// is busy until the processes killed in it are reaped.
func TryRemoveCgroups(name string) error {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var errs []error
	for _, line := range strings.Split(string(b), "\n") {
		_, after, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(line), strings.Fields(after)
		if !ok || len(g) == 0 || (g[0] != "cgroup" && g[0] != "cgroup2") {
			continue
		}
		var dirs []string
		_ = filepath.WalkDir(filepath.Join(f[4], name), func(p string, e os.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := os.Remove(dirs[i]); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// LastLines is the last n lines of s, for a log in a failure message.
func LastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
