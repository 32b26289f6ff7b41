package audit

import (
	"archive/tar"
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/safe-run/safe-run/internal/testenv"
	"github.com/safe-run/safe-run/policy"
)

// engine is a dockerd of the test's own (testenv.Dockerd) that also
// listens on loopback TCP without TLS.
type engine struct {
	*testenv.Dockerd
	t   *testing.T
	tcp string
}

func startEngine(t *testing.T) *engine {
	t.Helper()
	testenv.RequireTool(t, "busybox")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tcp := l.Addr().String()
	l.Close()
	d := testenv.StartDockerd(t, "--host", "tcp://"+tcp, "--storage-driver", "vfs")
	return &engine{Dockerd: d, t: t, tcp: tcp}
}

func (e *engine) mustDocker(args ...string) string {
	e.t.Helper()
	return e.MustDocker(e.t, args...)
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
	tarPath := filepath.Join(e.Dir, "busybox.tar")
	if err := os.WriteFile(tarPath, buf.Bytes(), 0o644); err != nil {
		e.t.Fatal(err)
	}
	return e.mustDocker("import", tarPath, "sr-busybox:test")
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
		"-v", e.Socket+":/var/run/docker.sock", "-v", "/etc:/host-etc:ro", "-e", "API_TOKEN=hunter2",
		"--cap-add", "SYS_ADMIN", "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
		"sr-busybox:test", "/bin/busybox", "sleep", "3600")
	// --privileged cannot start in this sandbox: created, not run.
	e.mustDocker("create", "--name", "worse", "--privileged", "--network", "none", "sr-busybox:test", "/bin/busybox", "true")

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := Audit(ctx, Options{Host: e.Host})
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
		e.Host: "SR026 SR029 SR030 SR031",
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
	for _, f := range byName[e.Host].Findings {
		if f.Rule.ID == "SR026" && f.Path != "tcp://"+e.tcp {
			t.Errorf("SR026 at %s, want the test's listener tcp://%s", f.Path, e.tcp)
		}
	}

	// --all adds the created, privileged one.
	res, err = Audit(ctx, Options{Host: e.Host, All: true})
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
	if err := os.Chmod(e.Socket, 0o666); err != nil {
		t.Fatal(err)
	}
	res, err = Audit(ctx, Options{Host: e.Host})
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
