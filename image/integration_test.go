package image_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/image"
	"github.com/safe-run/safe-run/launcher"
)

// repoRoot is the module's root, where the example lives.
func repoRoot(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// buildExample builds what `make example` builds: the confinement probe,
// safe-run-init, and the example rootfs packed as an OCI layout by
// example/mkoci; and a docker archive of the same image.
func buildExample(t *testing.T, work string) (initPath string) {
	t.Helper()
	root := repoRoot(t)
	image.RequireTool(t, "go")
	_, err := os.Stat("/bin/busybox")
	image.RequirePriv(t, err == nil, "no /bin/busybox (apt-get install busybox-static)")
	bin := filepath.Join(work, "bin")
	for _, pkg := range []string{"example/confinement", "cmd/safe-run-init", "example/mkoci"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(bin, filepath.Base(pkg)), "./"+pkg)
		cmd.Dir, cmd.Env = root, append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("building %s: %v\n%s", pkg, err, out)
		}
	}
	for _, args := range [][]string{
		{filepath.Join(root, "example/mkrootfs.sh"), filepath.Join(work, "rootfs"), filepath.Join(bin, "confinement")},
		{filepath.Join(bin, "mkoci"), "-entrypoint", "/bin/confinement", "-user", "1000:1000", "-env", "LOG_LEVEL=info",
			"-label", "org.opencontainers.image.source=https://example.org/safe-run-example", filepath.Join(work, "rootfs"), filepath.Join(work, "oci") + ":latest"},
	} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	ii, err := layout.ImageIndexFromPath(filepath.Join(work, "oci"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := ii.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	img, err := ii.Image(m.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag("example.org/example:latest")
	if err := tarball.WriteToFile(filepath.Join(work, "example.tar"), tag, img); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(bin, "safe-run-init")
}

// TestRunExampleImage runs the example service from an OCI layout and from
// a docker archive, through launcher.Prepare and launcher.Run, as
// `safe-run example/service-oci.toml` does.
func TestRunExampleImage(t *testing.T) {
	image.RequireRoot(t)
	if testing.Short() {
		t.Skip("skipped in -short: builds the example and runs containers")
	}
	// Every component of the state directory must be traversable by the
	// container's root: not t.TempDir()'s 0700.
	work, err := os.MkdirTemp("/tmp", "safe-run-image-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(work) })
	if err := os.Chmod(work, 0o711); err != nil {
		t.Fatal(err)
	}
	initPath := buildExample(t, work)
	dirs := launcher.Dirs{State: filepath.Join(work, "state"), Data: filepath.Join(work, "data")}
	if _, err := launcher.AllocateIDs(dirs.Data, "probe", false); errors.Is(err, launcher.ErrNoSubIDs) {
		image.RequirePriv(t, false, err.Error())
	}

	for i, source := range []string{`oci = "oci:latest"`, `archive = "example.tar"`} {
		t.Run(strings.Fields(source)[0], func(t *testing.T) {
			path := filepath.Join(work, strings.Fields(source)[0]+".toml")
			text := "version = 1\nname = \"image-probe-" + strings.Fields(source)[0] + "\"\n[image]\n" + source + `
[process]
command = ["/bin/confinement", "-json"]   # the image's entrypoint, with -json for the test
env = { LOG_LEVEL = "debug" }
[resources]
memory = "64M"
cpus = 0.5
pids = 64
`
			if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			r := runService(t, runRequest{Manifest: path, Dirs: dirs, InitPath: initPath})
			if !slices.Contains(r.Env, "LOG_LEVEL=debug") || slices.Contains(r.Env, "LOG_LEVEL=info") {
				t.Errorf("env %q: the manifest's LOG_LEVEL must win over the image's", r.Env)
			}
			if r.Err != "" || r.Code != 0 {
				t.Fatalf("run: code %d, %s\nstderr: %s\nreport: %s", r.Code, r.Err, r.Stderr, r.Report)
			}
			var probe struct {
				UID, GID     int
				RootWritable bool
			}
			if err := json.Unmarshal([]byte(r.Stdout), &probe); err != nil {
				t.Fatalf("probe output %q: %v", r.Stdout, err)
			}
			// The image's user (the manifest names none), a read-only rootfs.
			if probe.UID != 1000 || probe.GID != 1000 || probe.RootWritable {
				t.Errorf("probe %+v, want uid 1000 from the image's config and a read-only rootfs", probe)
			}
			how := "(unpacked "
			if i > 0 {
				how = "(cached)" // the archive holds the same image: its config digest names the same entry
			}
			if !strings.Contains(r.Report, ": image ") || !strings.Contains(r.Report, how) {
				t.Errorf("start report lacks the image line %q:\n%s", how, r.Report)
			}
			t.Logf("start report:\n%s", r.Report)
		})
	}
}

// runRequest asks a child test process to run one service: one container
// per process, as safe-run itself starts one (the cgroup library keeps a
// handle on the cgroup root that does not survive a second private mount
// namespace in the same process).
type runRequest struct {
	Manifest, InitPath string
	Dirs               launcher.Dirs
}

type runResult struct {
	Code                        int
	Err, Stdout, Stderr, Report string
	Env                         []string
}

func runService(t *testing.T, req runRequest) runResult {
	t.Helper()
	data, _ := json.Marshal(req)
	cmd := exec.Command("/proc/self/exe", "-test.run=^$")
	cmd.Env = append(os.Environ(), "SAFE_RUN_TEST_RUN="+string(data))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("running the service in a child: %v\n%s", err, out)
	}
	var r runResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("child said %q: %v", out, err)
	}
	return r
}

// childRun is the child's side of runService.
func childRun(spec string) runResult {
	var req runRequest
	if err := json.Unmarshal([]byte(spec), &req); err != nil {
		return runResult{Err: err.Error()}
	}
	ctx := context.Background()
	p, err := launcher.Prepare(ctx, req.Manifest, launcher.PrepareOptions{Dirs: req.Dirs, InitPath: req.InitPath, Allocate: true})
	if err != nil {
		return runResult{Err: err.Error()}
	}
	var stdout, stderr, report bytes.Buffer
	code, err := launcher.Run(ctx, p.Spec, p.Host, launcher.Options{
		Name: p.Service.Name, StateRoot: req.Dirs.State, DataDir: req.Dirs.Data,
		StopSignal: unix.SIGTERM, StopTimeout: 5 * time.Second,
		Stdio:  launcher.Stdio{In: strings.NewReader(""), Out: &stdout, Err: &stderr},
		Report: &report, Notes: p.Notes,
	})
	r := runResult{Code: code, Stdout: stdout.String(), Stderr: stderr.String(), Report: report.String(), Env: p.Spec.Process.Env}
	if err != nil {
		r.Err = err.Error()
	}
	return r
}
