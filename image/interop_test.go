package image

import (
	"github.com/safe-run/safe-run/internal/testenv"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// interopImage has what a real image has: directories, owners, a symlink,
// a hardlink, modes.
func interopImage(t *testing.T) (layers [][]byte) {
	owned := file("home/app/notes", "mine", 0o600)
	owned.hdr.Uid, owned.hdr.Gid = 1000, 1000
	home := dir("home/app/", 0o750)
	home.hdr.Uid, home.hdr.Gid = 1000, 1000
	return [][]byte{
		layerTar(t, dir("bin/", 0o755), file("bin/busybox", "busybox", 0o755), symlink("bin/sh", "busybox"),
			hardlink("bin/ash", "bin/busybox"), dir("etc/", 0o755), file("etc/passwd", "root:x:0:0::/:/bin/sh\n", 0o644),
			dir("home/", 0o755), home, owned, file("tmp/gone", "x", 0o644)),
		layerTar(t, file("etc/os-release", "ID=test\n", 0o644), file("tmp/.wh.gone", "", 0o644)),
	}
}

// TestInteropSkopeo: archives and layouts written by skopeo resolve to the
// same tree.
func TestInteropSkopeo(t *testing.T) {
	testenv.RequireRoot(t)
	skopeo := testenv.RequireTool(t, "skopeo")
	dir := t.TempDir()
	writeLayout(t, filepath.Join(dir, "oci"), testImage(t, nil, interopImage(t)...), "latest")
	src := "oci:" + filepath.Join(dir, "oci") + ":latest"
	run(t, skopeo, "--insecure-policy", "copy", "-q", src, "docker-archive:"+filepath.Join(dir, "docker.tar")+":example.org/web:1")
	run(t, skopeo, "--insecure-policy", "copy", "-q", src, "oci-archive:"+filepath.Join(dir, "oci.tar")+":latest")
	run(t, skopeo, "--insecure-policy", "copy", "-q", src, "oci:"+filepath.Join(dir, "copied")+":v2")
	var want map[string]string
	for _, source := range []string{`oci = "oci:latest"`, `archive = "docker.tar"`, `archive = "oci.tar"`, `oci = "copied:v2"`} {
		img, err := Resolve(t.Context(), service(t, dir, source), Options{Dir: t.TempDir()})
		if err != nil {
			t.Fatalf("%s: %v", source, err)
		}
		got := tree(t, img.Rootfs)
		img.Release()
		if want == nil {
			want = got
			continue
		}
		for _, k := range sortedKeys(want) {
			if got[k] != want[k] {
				t.Errorf("%s: %s is %q, from the layout %q", source, k, got[k], want[k])
			}
		}
		if len(got) != len(want) {
			t.Errorf("%s: %d files, from the layout %d", source, len(got), len(want))
		}
	}
}

// TestInteropUmoci: an image umoci builds resolves with its config, and
// the same image unpacks to the same tree with umoci unpack and with
// safe-run.
func TestInteropUmoci(t *testing.T) {
	testenv.RequireRoot(t)
	umoci := testenv.RequireTool(t, "umoci")
	dir := t.TempDir()

	// Built by umoci.
	built := filepath.Join(dir, "built")
	run(t, umoci, "init", "--layout", built)
	run(t, umoci, "new", "--image", built+":v1")
	bundle := filepath.Join(dir, "bundle")
	run(t, umoci, "unpack", "--image", built+":v1", bundle)
	if err := os.MkdirAll(filepath.Join(bundle, "rootfs/srv"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "rootfs/srv/index.html"), []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, umoci, "repack", "--image", built+":v1", bundle)
	run(t, umoci, "config", "--image", built+":v1", "--config.entrypoint", "/bin/server", "--config.user", "1000:1000",
		"--config.workingdir", "/srv", "--config.env", "MODE=prod", "--config.label", "tier=web")
	img, err := Resolve(t.Context(), service(t, dir, `oci = "built:v1"`), Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Release()
	if data, _ := os.ReadFile(filepath.Join(img.Rootfs, "srv/index.html")); string(data) != "hello" {
		t.Errorf("srv/index.html = %q", data)
	}
	c := img.Config
	if c.Entrypoint[0] != "/bin/server" || c.User != "1000:1000" || c.WorkingDir != "/srv" || !strings.Contains(strings.Join(c.Env, " "), "MODE=prod") || c.Labels["tier"] != "web" {
		t.Errorf("config %+v", c)
	}

	// The same image, unpacked by both.
	writeLayout(t, filepath.Join(dir, "oci"), testImage(t, nil, interopImage(t)...), "latest")
	ours, err := Resolve(t.Context(), service(t, dir, `oci = "oci:latest"`), Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer ours.Release()
	theirs := filepath.Join(dir, "umoci")
	run(t, umoci, "unpack", "--image", filepath.Join(dir, "oci")+":latest", theirs)
	want, got := tree(t, filepath.Join(theirs, "rootfs")), tree(t, ours.Rootfs)
	for _, k := range sortedKeys(want) {
		if got[k] != want[k] {
			t.Errorf("%s: safe-run %q, umoci %q", k, got[k], want[k])
		}
	}
	for _, k := range sortedKeys(got) {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: safe-run %q, umoci has none", k, got[k])
		}
	}
}
