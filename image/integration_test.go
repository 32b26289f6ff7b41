package image_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	regserver "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/safe-run/safe-run/internal/testenv"
)

// buildExample builds safe-run and what `make example` builds: the example
// rootfs packed as an OCI layout by example/mkoci, and a docker archive of
// the same image, which it returns.
func buildExample(t *testing.T, work string) (testenv.Binaries, v1.Image) {
	t.Helper()
	bins, err := testenv.Build(work)
	if err != nil {
		t.Fatal(err)
	}
	rootfs, err := testenv.ExampleRootfs(work)
	if err != nil {
		t.Fatal(err)
	}
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	mkoci := exec.Command("go", "run", "./example/mkoci", "-entrypoint", "/bin/confinement", "-user", "1000:1000", "-env", "LOG_LEVEL=info",
		"-label", "org.opencontainers.image.source=https://example.org/safe-run-example", rootfs, filepath.Join(work, "oci")+":latest")
	mkoci.Dir = root
	if out, err := mkoci.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(mkoci.Args, " "), err, out)
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
	return bins, img
}

// TestRunExampleImage runs the example service from an OCI layout and from
// a docker archive through the safe-run binary, as `safe-run
// example/service-oci.toml` does.
func TestRunExampleImage(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.Long(t)
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
	bins, img := buildExample(t, work)
	data := filepath.Join(work, "data")
	safeRun := func(args ...string) (stdout, stderr string, code int) {
		c := exec.Command(bins.SafeRun, args...)
		c.Env = append(os.Environ(), "SAFE_RUN_STATE_DIR="+filepath.Join(work, "state"), "SAFE_RUN_DATA_DIR="+data)
		var out, errOut bytes.Buffer
		c.Stdout, c.Stderr = &out, &errOut
		_ = c.Run()
		return out.String(), errOut.String(), c.ProcessState.ExitCode()
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
			stdout, report, code := safeRun(path)
			if code != 0 {
				t.Fatalf("run: exit %d\n%s", code, report)
			}
			var probe struct {
				UID, GID     int
				RootWritable bool
			}
			if err := json.Unmarshal([]byte(stdout), &probe); err != nil {
				t.Fatalf("probe output %q: %v", stdout, err)
			}
			// The image's user (the manifest names none), a read-only rootfs.
			if probe.UID != 1000 || probe.GID != 1000 || probe.RootWritable {
				t.Errorf("probe %+v, want uid 1000 from the image's config and a read-only rootfs", probe)
			}
			how := "(unpacked "
			if i > 0 {
				how = "(cached)" // the archive holds the same image: its config digest names the same entry
			}
			if !strings.Contains(report, ": image ") || !strings.Contains(report, how) {
				t.Errorf("start report lacks the image line %q:\n%s", how, report)
			}
			specJSON, stderr, code := safeRun("-q", "spec", path)
			if code != 0 {
				t.Fatalf("safe-run spec: exit %d: %s", code, stderr)
			}
			var spec struct{ Process struct{ Env []string } }
			if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
				t.Fatal(err)
			}
			if env := spec.Process.Env; !slices.Contains(env, "LOG_LEVEL=debug") || slices.Contains(env, "LOG_LEVEL=info") {
				t.Errorf("env %q: the manifest's LOG_LEVEL must win over the image's", env)
			}
			t.Logf("start report:\n%s", report)
		})
	}

	// From a registry, safe-run hands the start to safe-run-tools, which
	// pulls and hands the prepared service back. Pinned and cached, the
	// next start needs neither the registry nor safe-run-tools.
	t.Run("ref", func(t *testing.T) {
		data = filepath.Join(work, "data-ref") // an empty cache: the oci run cached the same image
		srv := httptest.NewServer(regserver.New(regserver.Logger(log.New(io.Discard, "", 0))))
		defer srv.Close()
		host := srv.Listener.Addr().String()
		ref, _ := name.ParseReference(host + "/example:v1")
		if err := remote.Write(ref, img); err != nil {
			t.Fatal(err)
		}
		d, _ := img.Digest()
		path := filepath.Join(work, "ref.toml")
		text := `version = 1
name = "image-probe-ref"
[image]
ref = "` + host + `/example@` + d.String() + `"
[process]
command = ["/bin/confinement", "-json"]
[resources]
memory = "64M"
cpus = 0.5
pids = 64
[insecure]
reason = "the test's registry, on loopback"
allow = ["insecure_registry"]
`
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		stdout, report, code := safeRun(path)
		if code != 0 || !strings.Contains(stdout, `"UID":1000`) || !strings.Contains(report, "from ref "+host) || !strings.Contains(report, "(unpacked ") {
			t.Fatalf("first start: exit %d\n%s\n%s", code, stdout, report)
		}
		srv.Close()
		if err := os.Rename(bins.Tools, bins.Tools+".away"); err != nil {
			t.Fatal(err)
		}
		defer os.Rename(bins.Tools+".away", bins.Tools)
		stdout, report, code = safeRun(path)
		if code != 0 || !strings.Contains(stdout, `"UID":1000`) || !strings.Contains(report, "(cached)") {
			t.Fatalf("cached start, registry down, no safe-run-tools: exit %d\n%s\n%s", code, stdout, report)
		}
	})
}
