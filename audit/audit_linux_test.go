package audit

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/internal/testenv"
	"github.com/safe-run/safe-run/policy"
)

// engine is a dockerd of the test's own: private socket, data and exec
// roots, no iptables and no bridge, plus a TCP listener without TLS on
// loopback. Everything it made is removed on cleanup, even when the test
// fails.
type engine struct {
	t       *testing.T
	dir     string
	socket  string
	tcp     string
	host    string
	cmd     *exec.Cmd
	exited  chan struct{}
	logPath string
}

func startEngine(t *testing.T) *engine {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.Long(t)
	dockerd := testenv.RequireTool(t, "dockerd")
	testenv.RequireTool(t, "docker")
	testenv.RequireTool(t, "busybox")
	// A short path: a unix socket's path must fit in 108 bytes.
	dir, err := os.MkdirTemp("/tmp", "srau-")
	if err != nil {
		t.Fatal(err)
	}
	e := &engine{t: t, dir: dir, socket: filepath.Join(dir, "docker.sock"), logPath: filepath.Join(dir, "dockerd.log"), exited: make(chan struct{})}
	e.host = "unix://" + e.socket
	t.Cleanup(e.cleanup)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.tcp = l.Addr().String()
	l.Close()
	log, err := os.Create(e.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	e.cmd = exec.Command(dockerd,
		"--iptables=false", "--ip-masq=false", "--ip-forward=false", "--bridge=none", "--userland-proxy=false",
		"--host", e.host, "--host", "tcp://"+e.tcp,
		"--data-root", filepath.Join(dir, "data"), "--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "docker.pid"), "--storage-driver", "vfs")
	e.cmd.Stdout, e.cmd.Stderr = log, log
	// Its own process group, so that cleanup reaches containerd too.
	e.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := e.cmd.Start(); err != nil {
		testenv.Skip(t, "dockerd cannot start here: %v", err)
	}
	go func() { e.cmd.Wait(); close(e.exited) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := e.docker("version", "--format", "{{.Server.Version}}"); err == nil {
			break
		}
		select {
		case <-e.exited:
			logText, _ := os.ReadFile(e.logPath)
			testenv.Skip(t, "dockerd exited at start-up here:\n%s", tail(string(logText), 20))
		default:
		}
		if time.Now().After(deadline) {
			logText, _ := os.ReadFile(e.logPath)
			t.Fatalf("dockerd did not answer within 60s:\n%s", tail(string(logText), 20))
		}
		time.Sleep(200 * time.Millisecond)
	}
	return e
}

func (e *engine) docker(args ...string) (string, error) {
	cmd := exec.Command("docker", append([]string{"-H", e.host}, args...)...)
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+filepath.Join(e.dir, "cli"))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("docker %s: %v: %s", strings.Join(args, " "), err, errb.String())
	}
	return strings.TrimSpace(out.String()), nil
}

func (e *engine) mustDocker(args ...string) string {
	e.t.Helper()
	out, err := e.docker(args...)
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// cleanup removes every container, stops the daemon (and its containerd),
// unmounts what is left under the test's directory and removes it.
func (e *engine) cleanup() {
	if e.cmd != nil && e.cmd.Process != nil {
		select {
		case <-e.exited:
		default:
			if ids, err := e.docker("ps", "-aq"); err == nil && ids != "" {
				e.docker(append([]string{"rm", "-f"}, strings.Fields(ids)...)...)
			}
			e.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-e.exited:
			case <-time.After(30 * time.Second):
				e.t.Log("dockerd did not stop within 30s: killing its process group")
			}
		}
		// containerd and shims are in dockerd's process group.
		syscall.Kill(-e.cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-e.exited:
		case <-time.After(10 * time.Second):
		}
	}
	unmountUnder(e.t, e.dir)
	if err := os.RemoveAll(e.dir); err != nil {
		e.t.Errorf("removing %s: %v", e.dir, err)
	}
}

// unmountUnder detaches every mount below dir, deepest first.
func unmountUnder(t *testing.T, dir string) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var mounts []string
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			mounts = append(mounts, f[4])
		}
	}
	slices.SortFunc(mounts, func(a, b string) int { return len(b) - len(a) })
	for _, m := range mounts {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil {
			t.Logf("unmounting %s: %v", m, err)
		}
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// importBusybox builds a one-binary image with docker import: no registry.
func (e *engine) importBusybox() string {
	e.t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		e.t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755})
	tw.WriteHeader(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bb))})
	tw.Write(bb)
	tw.WriteHeader(&tar.Header{Name: "bin/sh", Typeflag: tar.TypeSymlink, Linkname: "busybox"})
	tw.WriteHeader(&tar.Header{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777})
	tw.Close()
	tarPath := filepath.Join(e.dir, "busybox.tar")
	if err := os.WriteFile(tarPath, buf.Bytes(), 0o644); err != nil {
		e.t.Fatal(err)
	}
	return e.mustDocker("import", tarPath, "sr-busybox:test")
}

func ruleIDs(r *policy.Report) []string {
	var ids []string
	for _, f := range r.Findings {
		if !slices.Contains(ids, f.Rule.ID) {
			ids = append(ids, f.Rule.ID)
		}
	}
	slices.Sort(ids)
	return ids
}

func TestAuditDockerd(t *testing.T) {
	e := startEngine(t)
	id := e.importBusybox()

	// Every hardening flag the rules ask for; --network none as the test
	// daemon has no bridge. The image is run by its ID, which pins it.
	e.mustDocker("run", "-d", "--name", "good", "--read-only", "--cap-drop", "ALL",
		"--security-opt", "no-new-privileges", "--user", "1000:1000", "--memory", "64m", "--cpus", "0.5",
		"--pids-limit", "64", "--network", "none", "--tmpfs", "/tmp:size=8m", id, "/bin/busybox", "sleep", "3600")
	// What the seeds warn about, as far as this sandbox lets a container
	// start (it lacks capabilities --privileged would need).
	e.mustDocker("run", "-d", "--name", "bad", "--network", "host", "--pid", "host", "--ipc", "host", "--uts", "host",
		"-v", e.socket+":/var/run/docker.sock", "-v", "/etc:/host-etc:ro", "-e", "API_TOKEN=hunter2",
		"--cap-add", "SYS_ADMIN", "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
		"sr-busybox:test", "/bin/busybox", "sleep", "3600")
	// --privileged cannot start in this sandbox: created, not run.
	e.mustDocker("create", "--name", "worse", "--privileged", "--network", "none", "sr-busybox:test", "/bin/busybox", "true")

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := Audit(ctx, Options{Host: e.host})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Notes) > 0 {
		t.Errorf("notes (audit could not see something): %v", res.Notes)
	}
	byName := map[string]*policy.Report{}
	for _, r := range res.Reports {
		byName[r.Name] = r
	}
	want := map[string]string{
		e.host: "SR026 SR029 SR030 SR031",
		"good": "",
		"bad":  "SR001 SR002 SR003 SR004 SR005 SR006 SR007 SR008 SR009 SR010 SR011 SR012 SR013 SR014 SR015 SR017 SR018 SR021",
	}
	for name, ids := range want {
		r := byName[name]
		if r == nil {
			t.Errorf("no report for %s", name)
			continue
		}
		if got := strings.Join(ruleIDs(r), " "); got != ids {
			t.Errorf("%s: rules %s\nwant %s", name, got, ids)
		}
	}
	if _, ok := byName["worse"]; ok {
		t.Error("a container that is not running is audited without --all")
	}
	if score, _ := byName["good"].Score(); score != 100 {
		t.Errorf("hardened container scores %d", score)
	}
	for _, f := range byName[e.host].Findings {
		if f.Rule.ID == "SR026" && f.Path != "tcp://"+e.tcp {
			t.Errorf("SR026 at %s, want the test's listener tcp://%s", f.Path, e.tcp)
		}
	}

	// --all adds the created, privileged one.
	res, err = Audit(ctx, Options{Host: e.host, All: true})
	if err != nil {
		t.Fatal(err)
	}
	var worse *policy.Report
	for _, r := range res.Reports {
		if r.Name == "worse" {
			worse = r
		}
	}
	if worse == nil || !slices.Contains(ruleIDs(worse), "SR020") {
		t.Errorf("--all: privileged container not reported as SR020: %v", worse)
	}

	// A socket every user may write to is SR027; members of its group,
	// SR028 (the group is docker where it exists, root otherwise).
	if err := os.Chmod(e.socket, 0o666); err != nil {
		t.Fatal(err)
	}
	res, err = Audit(ctx, Options{Host: e.host})
	if err != nil {
		t.Fatal(err)
	}
	if ids := ruleIDs(res.Reports[0]); !slices.Contains(ids, "SR027") {
		t.Errorf("world-writable socket: daemon rules %v, want SR027", ids)
	}

	// Over TCP without TLS, the connection itself is the finding.
	res, err = Audit(ctx, Options{Host: "tcp://" + e.tcp})
	if err != nil {
		t.Fatal(err)
	}
	if ids := ruleIDs(res.Reports[0]); !slices.Contains(ids, "SR026") {
		t.Errorf("audit over plain TCP: daemon rules %v, want SR026", ids)
	}
}

func TestAuditUnreachable(t *testing.T) {
	_, err := Audit(context.Background(), Options{Host: "unix:///nonexistent/docker.sock"})
	if err == nil || !strings.Contains(err.Error(), "docker engine unreachable at unix:///nonexistent/docker.sock") {
		t.Errorf("error %v", err)
	}
	_, err = Audit(context.Background(), Options{Host: "ssh://host"})
	if err == nil || err.Error() != `DOCKER_HOST "ssh://host": scheme ssh is not supported (use unix:// or tcp://)` {
		t.Errorf("error %v", err)
	}
}

func TestDecodeAddr(t *testing.T) {
	for in, want := range map[string]string{
		"0100007F:5CDE":                         "127.0.0.1:23774",
		"00000000:0929":                         "0.0.0.0:2345",
		"00000000000000000000000000000000:0929": "[::]:2345",
		"00000000000000000000000001000000:0050": "[::1]:80",
	} {
		if got, ok := decodeAddr(in); !ok || got != want {
			t.Errorf("decodeAddr(%s) = %s, want %s", in, got, want)
		}
	}
}
