package image_test

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/safe-run/safe-run/internal/testenv"
	"github.com/safe-run/safe-run/plan"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/safe-run/safe-run/image"
)

// TestSpecFromImageConfig: the image's config reaches the OCI spec as
// docker run would apply it, and the manifest's [process] keys win.
func TestSpecFromImageConfig(t *testing.T) {
	testenv.RequireRoot(t)
	dir, cacheDir := t.TempDir(), t.TempDir()
	img := image.TestImage(t, func(cf *v1.ConfigFile) {
		cf.Config = v1.Config{
			Entrypoint: []string{"/bin/server"}, Cmd: []string{"--port", "8080"},
			Env:  []string{"PATH=/opt/bin:/bin", "MODE=image", "KEEP=1"},
			User: "app", WorkingDir: "/srv",
			Labels: map[string]string{"org.opencontainers.image.version": "1.2", "tier": "image"},
		}
	}, image.LayerTar(t, image.TestFile("etc/passwd", "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n", 0o644)))
	image.WriteLayout(t, filepath.Join(dir, "oci"), img, "latest")
	d, _ := img.Digest()
	host := plan.Placement{StateDir: "/run/safe-run/test", IDs: plan.IDMap{UID: 100000, GID: 100000, Size: 65536}}

	spec := func(extra string) *plan.Inputs {
		svc := image.TestService(t, dir, "oci = \"oci:latest\"\n"+extra)
		got, err := image.Resolve(t.Context(), svc, image.Options{Dir: cacheDir})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(got.Release)
		return &plan.Inputs{Service: svc, Image: got}
	}

	// The image alone: its entrypoint and cmd, user, workdir, env, labels.
	in := spec("")
	in.Service.Process.Command = nil // the helper's manifest names one
	s, err := plan.Spec(*in, host)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{plan.InitPath, "--", "/bin/server", "--port", "8080"}; !slices.Equal(s.Process.Args, want) {
		t.Errorf("args %q, want %q", s.Process.Args, want)
	}
	if s.Process.User.UID != 1000 || s.Process.User.GID != 1001 || s.Process.Cwd != "/srv" {
		t.Errorf("user %+v, cwd %s", s.Process.User, s.Process.Cwd)
	}
	for _, kv := range []string{"PATH=/opt/bin:/bin", "MODE=image", "KEEP=1", "HOME=/home/app"} {
		if !slices.Contains(s.Process.Env, kv) {
			t.Errorf("env %q lacks %s", s.Process.Env, kv)
		}
	}
	if s.Annotations["tier"] != "image" || s.Annotations["org.opencontainers.image.version"] != "1.2" || s.Annotations[plan.AnnotationImageDigest] != d.String() {
		t.Errorf("annotations %v", s.Annotations)
	}

	// The manifest wins: command, env, user, workdir, labels.
	in = spec("[labels]\ntier = \"manifest\"")
	in.Service.Process.Command = []string{"/bin/other"}
	in.Service.Process.Env = map[string]string{"MODE": "manifest"}
	in.Service.Process.User = "0:0"
	in.Service.Process.Workdir = "/"
	if s, err = plan.Spec(*in, host); err != nil {
		t.Fatal(err)
	}
	if want := []string{plan.InitPath, "--", "/bin/other"}; !slices.Equal(s.Process.Args, want) {
		t.Errorf("args %q, want %q", s.Process.Args, want)
	}
	if !slices.Contains(s.Process.Env, "MODE=manifest") || slices.Contains(s.Process.Env, "MODE=image") || !slices.Contains(s.Process.Env, "KEEP=1") {
		t.Errorf("env %q", s.Process.Env)
	}
	if s.Process.User.UID != 0 || s.Process.Cwd != "/" || s.Annotations["tier"] != "manifest" {
		t.Errorf("user %+v, cwd %s, tier %s", s.Process.User, s.Process.Cwd, s.Annotations["tier"])
	}
}
