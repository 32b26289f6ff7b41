package image

import (
	"archive/tar"
	"compress/gzip"
	"crypto/rand"
	"errors"
	"fmt"
	"github.com/safe-run/safe-run/internal/testenv"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// A small image with a config, as the tests use it.
func configuredImage(t testing.TB, marker string) v1.Image {
	return testImage(t, func(cf *v1.ConfigFile) {
		cf.Config = v1.Config{
			Entrypoint: []string{"/bin/server"}, Cmd: []string{"--port", "8080"},
			Env:  []string{"PATH=/usr/bin:/bin", "LOG_LEVEL=debug"},
			User: "app", WorkingDir: "/srv", Labels: map[string]string{"org.opencontainers.image.version": "1.2"},
		}
	}, layerTar(t, dir("srv/", 0o755), file("bin/server", "#!/bin/sh\n", 0o755), file("etc/marker", marker, 0o644)),
		layerTar(t, file("etc/passwd", "root:x:0:0::/:/bin/sh\napp:x:1000:1000::/srv:/bin/sh\n", 0o644)))
}

func mustConfig(t testing.TB, img v1.Image) *v1.ConfigFile {
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	return cf
}

func digest(t testing.TB, img v1.Image) string {
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

func configID(t testing.TB, img v1.Image) string {
	d, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return d.Hex
}

// unpackedNote matches the start report's line of a fresh unpack.
var unpackedNote = regexp.MustCompile(`^image (sha256:[0-9a-f]{64}|ID sha256:[0-9a-f]{64}) from (.+) \(unpacked \d+ files, [0-9.]+ [KMG]?i?B in [0-9.]+s\)$`)

func TestResolveLayout(t *testing.T) {
	testenv.RequireRoot(t)
	dir, cacheDir := t.TempDir(), t.TempDir()
	img := configuredImage(t, "v1")
	writeLayout(t, filepath.Join(dir, "oci"), img, "v1")
	svc := service(t, dir, `oci = "oci:v1"`)

	got, err := Resolve(t.Context(), svc, Options{Dir: cacheDir})
	if err != nil {
		t.Fatal(err)
	}
	defer got.Release()
	want := Config{
		Entrypoint: []string{"/bin/server"}, Cmd: []string{"--port", "8080"},
		Env:  []string{"PATH=/usr/bin:/bin", "LOG_LEVEL=debug"},
		User: "app", WorkingDir: "/srv", Labels: map[string]string{"org.opencontainers.image.version": "1.2"},
	}
	if fmt.Sprint(got.Config) != fmt.Sprint(want) {
		t.Errorf("config %+v, want %+v", got.Config, want)
	}
	if got.Digest != digest(t, img) {
		t.Errorf("digest %s, want %s", got.Digest, digest(t, img))
	}
	if want := filepath.Join(cacheDir, "entries", configID(t, img), "rootfs"); got.Rootfs != want {
		t.Errorf("rootfs %s, want %s", got.Rootfs, want)
	}
	if data, err := os.ReadFile(filepath.Join(got.Rootfs, "etc/marker")); err != nil || string(data) != "v1" {
		t.Errorf("etc/marker: %q, %v", data, err)
	}
	if len(got.Notes) != 1 || !unpackedNote.MatchString(got.Notes[0]) || !strings.Contains(got.Notes[0], "from oci "+dir+"/oci:v1 (unpacked 4 files, ") {
		t.Errorf("notes %q", got.Notes)
	}

	again, err := Resolve(t.Context(), svc, Options{Dir: cacheDir})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Release()
	wantNote := "image " + digest(t, img) + " from oci " + dir + "/oci:v1 (cached)"
	if again.Rootfs != got.Rootfs || !slices.Equal(again.Notes, []string{wantNote}) {
		t.Errorf("second resolve: %s %q, want %s %q", again.Rootfs, again.Notes, got.Rootfs, wantNote)
	}
	assertCacheClean(t, cacheDir)
}

// assertCacheClean: nothing is left in tmp/ or locks/, and every entry is
// whole.
func assertCacheClean(t *testing.T, cacheDir string) {
	t.Helper()
	for _, dir := range []string{"tmp", "locks"} {
		if left, _ := readDirNames(filepath.Join(cacheDir, dir)); len(left) > 0 {
			t.Errorf("%s/ holds %q", dir, left)
		}
	}
	entries, _ := readDirNames(filepath.Join(cacheDir, "entries"))
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join(cacheDir, "entries", e, "image.json")); err != nil {
			t.Errorf("entry %s is not whole: %v", e, err)
		}
	}
}

func entryCount(t *testing.T, cacheDir string) int {
	t.Helper()
	entries, _ := readDirNames(filepath.Join(cacheDir, "entries"))
	return len(entries)
}

func TestResolveLayoutErrors(t *testing.T) {
	testenv.RequireRoot(t)
	img := configuredImage(t, "v1")
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	layerBlob := "blobs/sha256/" + m.Layers[0].Digest.Hex
	configBlob := "blobs/sha256/" + m.Config.Digest.Hex
	manifestBlob := "blobs/sha256/" + strings.TrimPrefix(digest(t, img), "sha256:")
	for _, tc := range []struct {
		name, oci string
		tamper    string // blob to overwrite
		wantErr   error
		msg       string // the error, %s the layout dir
	}{
		{name: "unknown tag", oci: "oci:v2", msg: `service.toml:4: image.oci: %s/oci has no tag "v2" (it has: v1)`},
		{name: "missing layout", oci: "nothere:v1", msg: `service.toml:4: image.oci: %s/nothere does not exist (point oci at an OCI image layout directory, as "DIR:TAG")`},
		{name: "not a layout", oci: ".:v1", msg: `service.toml:4: image.oci: %s is not an OCI image layout: it has no index.json (make one with skopeo copy ... oci:%s:TAG, or umoci)`},
		{name: "tampered layer", oci: "oci:v1", tamper: layerBlob, wantErr: ErrDigestMismatch,
			msg: "service.toml:4: image.oci: layer 1 " + mustConfig(t, img).RootFS.DiffIDs[0].String() + ": digest mismatch: the blob has digest sha256:"},
		{name: "tampered config", oci: "oci:v1", tamper: configBlob, wantErr: ErrDigestMismatch,
			msg: "service.toml:4: image.oci: reading config " + m.Config.Digest.String() + ": digest mismatch: content has digest sha256:"},
		{name: "tampered manifest", oci: "oci:v1", tamper: manifestBlob, wantErr: ErrDigestMismatch,
			msg: "service.toml:4: image.oci: reading manifest " + digest(t, img) + ": digest mismatch: content has digest sha256:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, cacheDir := t.TempDir(), t.TempDir()
			writeLayout(t, filepath.Join(dir, "oci"), img, "v1")
			if tc.tamper != "" {
				p := filepath.Join(dir, "oci", tc.tamper)
				data, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				data[len(data)/2] ^= 1
				if err := os.WriteFile(p, data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			_, err := Resolve(t.Context(), service(t, dir, `oci = "`+tc.oci+`"`), Options{Dir: cacheDir})
			if err == nil {
				t.Fatal("resolved")
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("error %v, want %v", err, tc.wantErr)
			}
			if msg := strings.ReplaceAll(tc.msg, "%s", dir); msg != "" && !strings.HasPrefix(err.Error(), filepath.Join(dir, msg)) && !strings.HasPrefix(err.Error(), dir+"/"+msg) {
				t.Errorf("error\n%v\nwant\n%s/%s", err, dir, msg)
			}
			if n := entryCount(t, cacheDir); n != 0 {
				t.Errorf("%d entries cached from a bad image", n)
			}
			assertCacheClean(t, cacheDir)
		})
	}
}

// writeDockerArchive writes img as docker save does (ggcr's tarball).
func writeDockerArchive(t testing.TB, path string, imgs map[string]v1.Image) {
	t.Helper()
	refs := map[name.Reference]v1.Image{}
	for tag, img := range imgs {
		ref, err := name.NewTag(tag)
		if err != nil {
			t.Fatal(err)
		}
		refs[ref] = img
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644) // in the test's own directory
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := tarball.MultiRefWrite(refs, f); err != nil {
		t.Fatal(err)
	}
}

// tarDir writes the tree at dir as a tar, gzipped or not: an OCI archive
// when dir is a layout.
func tarDir(t testing.TB, dir, dst string, gz bool) {
	t.Helper()
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644) // in the test's own directory
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var w io.Writer = f
	var zw *gzip.Writer
	if gz {
		zw = gzip.NewWriter(f)
		w = zw
	}
	tw := tar.NewWriter(w)
	if err := tw.AddFS(os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if zw != nil {
		zw.Close()
	}
}

func gzipFile(t testing.TB, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644) // in the test's own directory
	if err != nil {
		t.Fatal(err)
	}
	zw := gzip.NewWriter(f)
	zw.Write(data)
	zw.Close()
	f.Close()
}

func TestResolveArchives(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	img := configuredImage(t, "archived")
	writeLayout(t, filepath.Join(dir, "oci"), img, "latest")
	writeDockerArchive(t, filepath.Join(dir, "docker.tar"), map[string]v1.Image{"example.org/web:1": img})
	gzipFile(t, filepath.Join(dir, "docker.tar"), filepath.Join(dir, "docker.tar.gz"))
	tarDir(t, filepath.Join(dir, "oci"), filepath.Join(dir, "oci.tar"), false)
	tarDir(t, filepath.Join(dir, "oci"), filepath.Join(dir, "oci.tar.gz"), true)
	writeDockerArchive(t, filepath.Join(dir, "two.tar"), map[string]v1.Image{"example.org/web:1": img, "example.org/web:2": configuredImage(t, "2")})
	if err := os.WriteFile(filepath.Join(dir, "empty.tar"), nil, 0o644); err != nil {
		t.Fatal(err)
	}

	manifestDigest, id := digest(t, img), "sha256:"+configID(t, img)
	for _, tc := range []struct {
		file, digest, err string
	}{
		{file: "docker.tar", digest: "ID " + id},
		{file: "docker.tar.gz", digest: "ID " + id},
		{file: "oci.tar", digest: manifestDigest},
		{file: "oci.tar.gz", digest: manifestDigest},
		{file: "two.tar", err: "service.toml:4: image.archive: " + dir + "/two.tar holds 2 images, tagged example.org/web:1, example.org/web:2: save one image per archive (docker save IMAGE)"},
		{file: "oci", err: "service.toml:4: image.archive: " + dir + "/oci is not a regular file"},
		{file: "missing.tar", err: "service.toml:4: image.archive: " + dir + "/missing.tar does not exist (point archive at the output of docker save, or an OCI archive)"},
		{file: "empty.tar", err: "service.toml:4: image.archive: " + dir + "/empty.tar is empty or cut short (make it with docker save, or skopeo copy ... oci-archive:FILE)"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			cacheDir := t.TempDir()
			got, err := Resolve(t.Context(), service(t, dir, `archive = "`+tc.file+`"`), Options{Dir: cacheDir})
			if tc.err != "" {
				if err == nil || !strings.HasPrefix(err.Error(), filepath.Join(dir, tc.err)) {
					t.Fatalf("error %v, want %s/%s", err, dir, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer got.Release()
			if data, err := os.ReadFile(filepath.Join(got.Rootfs, "etc/marker")); err != nil || string(data) != "archived" {
				t.Errorf("etc/marker: %q, %v", data, err)
			}
			if got.Config.User != "app" || got.Config.Entrypoint[0] != "/bin/server" {
				t.Errorf("config %+v", got.Config)
			}
			if !strings.HasPrefix(got.Notes[0], "image "+tc.digest+" from archive "+dir+"/"+tc.file+" (unpacked ") {
				t.Errorf("note %q", got.Notes[0])
			}
			again, err := Resolve(t.Context(), service(t, dir, `archive = "`+tc.file+`"`), Options{Dir: cacheDir})
			if err != nil {
				t.Fatal(err)
			}
			defer again.Release()
			if want := "image " + tc.digest + " from archive " + dir + "/" + tc.file + " (cached)"; again.Notes[0] != want {
				t.Errorf("note %q, want %q", again.Notes[0], want)
			}
			assertCacheClean(t, cacheDir)
		})
	}
}

// TestResolveSharesEntries: the same image from a layout and from a docker
// archive is unpacked once; an archive that changes is read again.
func TestResolveSharesEntries(t *testing.T) {
	testenv.RequireRoot(t)
	dir, cacheDir := t.TempDir(), t.TempDir()
	img := configuredImage(t, "shared")
	writeLayout(t, filepath.Join(dir, "oci"), img, "latest")
	writeDockerArchive(t, filepath.Join(dir, "img.tar"), map[string]v1.Image{"example.org/web:1": img})
	a, err := Resolve(t.Context(), service(t, dir, `oci = "oci:latest"`), Options{Dir: cacheDir})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Resolve(t.Context(), service(t, dir, `archive = "img.tar"`), Options{Dir: cacheDir})
	if err != nil {
		t.Fatal(err)
	}
	if a.Rootfs != b.Rootfs || !strings.HasSuffix(b.Notes[0], "(cached)") {
		t.Errorf("rootfs %s and %s, note %q", a.Rootfs, b.Notes[0], b.Notes)
	}
	writeDockerArchive(t, filepath.Join(dir, "img.tar"), map[string]v1.Image{"example.org/web:1": configuredImage(t, "changed")})
	c, err := Resolve(t.Context(), service(t, dir, `archive = "img.tar"`), Options{Dir: cacheDir})
	if err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(filepath.Join(c.Rootfs, "etc/marker")); string(data) != "changed" {
		t.Errorf("the changed archive was not read again: etc/marker = %q", data)
	}
	if n := entryCount(t, cacheDir); n != 2 {
		t.Errorf("%d entries, want 2", n)
	}
}

func TestResolveSetuidVariant(t *testing.T) {
	testenv.RequireRoot(t)
	dir, cacheDir := t.TempDir(), t.TempDir()
	writeLayout(t, filepath.Join(dir, "oci"), testImage(t, nil, layerTar(t, file("bin/su", "x", 0o4755))), "latest")
	plain, err := Resolve(t.Context(), service(t, dir, `oci = "oci:latest"`), Options{Dir: cacheDir})
	if err != nil {
		t.Fatal(err)
	}
	kept, err := Resolve(t.Context(), service(t, dir, `oci = "oci:latest"`, "setuid_binaries"), Options{Dir: cacheDir})
	if err != nil {
		t.Fatal(err)
	}
	if plain.Rootfs == kept.Rootfs || !strings.HasSuffix(filepath.Dir(kept.Rootfs), ".setuid") {
		t.Fatalf("rootfs %s and %s", plain.Rootfs, kept.Rootfs)
	}
	for rootfs, want := range map[string]fs.FileMode{plain.Rootfs: 0o755, kept.Rootfs: fs.ModeSetuid | 0o755} {
		if fi, err := os.Stat(filepath.Join(rootfs, "bin/su")); err != nil || fi.Mode() != want {
			t.Errorf("%s/bin/su: %v %v, want %v", rootfs, fi.Mode(), err, want)
		}
	}
	if !hasNote(plain.Notes, "removed setuid/setgid bits from 1 file: /bin/su") || hasNote(kept.Notes, "setuid") {
		t.Errorf("notes %q and %q", plain.Notes, kept.Notes)
	}
}

// TestResolveConcurrent: services starting together pull and unpack an
// image once.
func TestResolveConcurrent(t *testing.T) {
	testenv.RequireRoot(t)
	dir, cacheDir := t.TempDir(), t.TempDir()
	writeLayout(t, filepath.Join(dir, "oci"), configuredImage(t, "c"), "latest")
	var wg sync.WaitGroup
	notes := make([]string, 6)
	errs := make([]error, 6)
	for i := range notes {
		wg.Go(func() {
			img, err := Resolve(t.Context(), service(t, dir, `oci = "oci:latest"`), Options{Dir: cacheDir})
			errs[i] = err
			if err == nil {
				notes[i] = img.Notes[0]
				img.Release()
			}
		})
	}
	wg.Wait()
	unpacked := 0
	for i, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
		if unpackedNote.MatchString(notes[i]) {
			unpacked++
		}
	}
	if unpacked != 1 || entryCount(t, cacheDir) != 1 {
		t.Errorf("unpacked %d times, %d entries: %q", unpacked, entryCount(t, cacheDir), notes)
	}
	assertCacheClean(t, cacheDir)
}

// TestResolveKilled: a pull killed in the middle leaves nothing usable,
// and the next one cleans up after it. The registry stalls halfway
// through the layer, so the pull is killed mid-unpack every time.
func TestResolveKilled(t *testing.T) {
	testenv.RequireRoot(t)
	var many []entry
	noise := make([]byte, 1024)
	for i := range 2000 {
		rand.Read(noise)
		many = append(many, file(fmt.Sprintf("d%d/f%d", i%50, i), string(noise), 0o644))
	}
	img := testImage(t, nil, layerTar(t, many...))
	m, _ := img.Manifest()
	layerPath := "/v2/web/blobs/" + m.Layers[0].Digest.String()
	var stall atomic.Bool
	released := make(chan struct{})
	defer close(released)
	reg := startRegistry(t, false, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !stall.Load() || r.URL.Path != layerPath || r.Method != http.MethodGet {
				h.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			w.Header().Set("Content-Length", fmt.Sprint(rec.Body.Len()))
			w.WriteHeader(rec.Code)
			w.Write(rec.Body.Bytes()[:rec.Body.Len()/2])
			w.(http.Flusher).Flush()
			select {
			case <-released:
			case <-r.Context().Done():
			}
		})
	})
	d := reg.push(t, "web:v1", img)
	stall.Store(true)
	dir, cacheDir := t.TempDir(), t.TempDir()
	svc := "version = 1\nname = \"test\"\n[image]\nref = \"" + reg.host + "/web@" + d + "\"\n[process]\ncommand = [\"/x\"]\n" +
		"[resources]\nmemory = \"64M\"\ncpus = 1.0\n[insecure]\nreason = \"test registry\"\nallow = [\"insecure_registry\"]\n"
	if err := os.WriteFile(filepath.Join(dir, "service.toml"), []byte(svc), 0o644); err != nil {
		t.Fatal(err)
	}
	// Another image, cached before the pull is killed.
	other := t.TempDir()
	writeLayout(t, filepath.Join(other, "oci"), configuredImage(t, "other"), "v1")
	otherSvc := service(t, other, `oci = "oci:v1"`)
	o, err := Resolve(t.Context(), otherSvc, Options{Dir: cacheDir})
	if err != nil {
		t.Fatal(err)
	}
	o.Release()
	cmd := exec.Command("/proc/self/exe", "-test.run=^$")
	cmd.Env = append(os.Environ(), "SAFE_RUN_TEST_RESOLVE="+filepath.Join(dir, "service.toml")+":"+cacheDir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// Kill it once it is unpacking: its work directory has files.
	for deadline := time.Now().Add(time.Minute); ; {
		if work, _ := filepath.Glob(filepath.Join(cacheDir, "tmp", "*", "rootfs", "d*", "f*")); len(work) > 0 {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("the pull ended before it stalled: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("the pull wrote nothing in a minute")
		}
	}
	cmd.Process.Kill()
	<-exited
	if n := entryCount(t, cacheDir); n != 1 {
		t.Fatalf("%d entries after a killed pull, want the other image's only", n)
	}
	if left, _ := readDirNames(filepath.Join(cacheDir, "tmp")); len(left) == 0 {
		t.Fatal("the killed pull left nothing to clean up: the test did not kill it mid-pull")
	}
	// image ls counts what it left (FS probe #13: not shown at all)...
	if n, size := Leftovers(cacheDir); n != 1 || size == 0 {
		t.Errorf("Leftovers: %d, %d bytes; want the killed pull's work directory", n, size)
	}
	// ...and any later start removes it, one of an image already cached
	// too, not only a pull.
	o, err = Resolve(t.Context(), otherSvc, Options{Dir: cacheDir})
	if err != nil {
		t.Fatal(err)
	}
	o.Release()
	if !strings.HasSuffix(o.Notes[0], "(cached)") {
		t.Errorf("the second start of the other image: %q, want it cached", o.Notes)
	}
	if n, _ := Leftovers(cacheDir); n != 0 {
		t.Errorf("a start of a cached image left %d work directories of the killed pull", n)
	}
	stall.Store(false)
	got, err := Resolve(t.Context(), service(t, dir, `ref = "`+reg.host+`/web@`+d+`"`, "insecure_registry"), Options{Dir: cacheDir, Registry: pulls(nil)})
	if err != nil {
		t.Fatal(err)
	}
	got.Release()
	assertCacheClean(t, cacheDir)
}

func TestCacheRemovePrune(t *testing.T) {
	testenv.RequireRoot(t)
	dir, cacheDir := t.TempDir(), t.TempDir()
	one, two := configuredImage(t, "1"), configuredImage(t, "2")
	writeLayout(t, filepath.Join(dir, "one"), one, "latest")
	writeLayout(t, filepath.Join(dir, "two"), two, "latest")
	a, err := Resolve(t.Context(), service(t, dir, `oci = "one:latest"`), Options{Dir: cacheDir})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Resolve(t.Context(), service(t, dir, `oci = "two:latest"`), Options{Dir: cacheDir})
	if err != nil {
		t.Fatal(err)
	}
	all, err := List(cacheDir)
	if err != nil || len(all) != 2 || !all[0].InUse || all[0].Files != 4 || all[0].Sources[0] != "oci "+dir+"/one:latest" || all[0].Digests[0] != digest(t, one) {
		t.Fatalf("list %+v, %v", all, err)
	}
	idOne := configID(t, one)
	// The holder is named, as /proc/locks and its command line say:
	// here the test itself.
	cmdline, _ := os.ReadFile("/proc/self/cmdline")
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	args[0] = filepath.Base(args[0])
	what := strings.Join(args, " ")
	if len(what) > 200 {
		what = what[:200] + "..."
	}
	holder := fmt.Sprintf("%s, pid %d", what, os.Getpid())
	if _, err := Remove(cacheDir, idOne[:12]); !errors.Is(err, ErrInUse) || err.Error() != "image in use: "+idOne[:12]+" is used by a running service: "+holder+" (stop it first)" {
		t.Errorf("removing an image in use: %v\nwant the holder: %s", err, holder)
	}
	if _, err := Remove(cacheDir, "ffffffffffff"); !errors.Is(err, ErrNotCached) || err.Error() != "no such cached image: ffffffffffff (see safe-run image ls)" {
		t.Errorf("removing what is not cached: %v", err)
	}
	a.Release()
	removed, err := Remove(cacheDir, digest(t, one)) // by manifest digest
	if err != nil || removed.ID != "sha256:"+idOne {
		t.Fatalf("removed %+v, %v", removed, err)
	}
	if _, err := os.Stat(a.Rootfs); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s is still there: %v", a.Rootfs, err)
	}
	// Its ref went with it: resolving unpacks again.
	a, err = Resolve(t.Context(), service(t, dir, `oci = "one:latest"`), Options{Dir: cacheDir})
	if err != nil || !unpackedNote.MatchString(a.Notes[0]) {
		t.Fatalf("resolving again: %q, %v", a.Notes, err)
	}
	a.Release()
	if err := os.MkdirAll(filepath.Join(cacheDir, "tmp", "leftover", "rootfs"), 0o700); err != nil {
		t.Fatal(err)
	}
	pruned, _, err := Prune(cacheDir)
	if err != nil || len(pruned) != 1 || pruned[0].ID != "sha256:"+idOne {
		t.Fatalf("pruned %+v, %v", pruned, err)
	}
	all, _ = List(cacheDir)
	if len(all) != 1 || all[0].ID != "sha256:"+configID(t, two) {
		t.Errorf("after prune: %+v", all)
	}
	refs, _ := readDirNames(filepath.Join(cacheDir, "refs"))
	if len(refs) != 1 {
		t.Errorf("refs after prune: %q", refs)
	}
	assertCacheClean(t, cacheDir)
	b.Release()
}

func TestResolveSecretWarnings(t *testing.T) {
	testenv.RequireRoot(t)
	dir, cacheDir := t.TempDir(), t.TempDir()
	img := testImage(t, func(cf *v1.ConfigFile) {
		cf.Config.Env = []string{"PATH=/bin", "DB_PASSWORD=hunter2", "API_KEY=k"}
		cf.History = []v1.History{
			{CreatedBy: "ADD rootfs.tar /"},
			{CreatedBy: "ENV DB_PASSWORD=hunter2", EmptyLayer: true},
			{CreatedBy: "RUN |1 GITHUB_TOKEN=ghp_x /bin/sh -c make install"},
		}
	}, layerTar(t, file("a", "1", 0o644)), layerTar(t, file("b", "2", 0o644)))
	writeLayout(t, filepath.Join(dir, "oci"), img, "latest")
	got, err := Resolve(t.Context(), service(t, dir, `oci = "oci:latest"`), Options{Dir: cacheDir})
	if err != nil {
		t.Fatal(err)
	}
	defer got.Release()
	cf, _ := img.ConfigFile()
	want := []string{
		"the image's config sets DB_PASSWORD, which looks like a secret (set by history step 2, no layer of its own): anyone with the image can read it (pass secrets through [secrets])",
		"the image's config sets API_KEY, which looks like a secret: anyone with the image can read it (pass secrets through [secrets])",
		"the image was built with GITHUB_TOKEN=... (history step 3, layer 2 " + cf.RootFS.DiffIDs[1].String() + "), which looks like a secret: its value stays in the image's history and may be in the layer",
	}
	if !slices.Equal(got.Notes[1:], want) {
		t.Errorf("notes\n%s\nwant\n%s", strings.Join(got.Notes[1:], "\n"), strings.Join(want, "\n"))
	}
	for _, n := range got.Notes {
		if strings.Contains(n, "hunter2") || strings.Contains(n, "ghp_x") {
			t.Errorf("a note repeats a secret: %q", n)
		}
	}
}

// TestResolveIndex: an index (a multi-platform image) resolves to the
// host's platform.
func TestResolveIndex(t *testing.T) {
	testenv.RequireRoot(t)
	host := configuredImage(t, "host")
	foreign := testImage(t, func(cf *v1.ConfigFile) { cf.Architecture = "s390x" }, layerTar(t, file("etc/marker", "s390x", 0o644)))
	idx := func(imgs map[string]v1.Image) v1.ImageIndex {
		var adds []mutate.IndexAddendum
		for arch, img := range imgs {
			adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
		}
		slices.SortFunc(adds, func(a, b mutate.IndexAddendum) int {
			return strings.Compare(a.Descriptor.Platform.Architecture, b.Descriptor.Platform.Architecture)
		})
		return mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), adds...)
	}
	both := idx(map[string]v1.Image{runtime.GOARCH: host, "s390x": foreign})
	only := idx(map[string]v1.Image{"s390x": foreign})
	dir := t.TempDir()
	for name, ii := range map[string]v1.ImageIndex{"both": both, "only": only} {
		p, err := layout.Write(filepath.Join(dir, name), empty.Index)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.AppendIndex(ii, layout.WithAnnotations(map[string]string{refNameAnnotation: "latest"})); err != nil {
			t.Fatal(err)
		}
	}
	cacheDir := t.TempDir()
	got, err := Resolve(t.Context(), service(t, dir, `oci = "both:latest"`), Options{Dir: cacheDir})
	if err != nil {
		t.Fatal(err)
	}
	defer got.Release()
	if data, _ := os.ReadFile(filepath.Join(got.Rootfs, "etc/marker")); string(data) != "host" || got.Digest != digest(t, host) {
		t.Errorf("resolved to %s (%q), want the host's image %s", got.Digest, data, digest(t, host))
	}
	bothDigest, _ := both.Digest()
	if want := fmt.Sprintf("index %s resolved to %s for linux/%s", bothDigest, digest(t, host), runtime.GOARCH); !slices.Contains(got.Notes, want) {
		t.Errorf("notes %q, want %q", got.Notes, want)
	}
	onlyDigest, _ := only.Digest()
	_, err = Resolve(t.Context(), service(t, dir, `oci = "only:latest"`), Options{Dir: cacheDir})
	want := fmt.Sprintf("service.toml:4: image.oci: oci %s/only:latest (index %s): no image for linux/%s (it has: linux/s390x)", dir, onlyDigest, runtime.GOARCH)
	if err == nil || err.Error() != filepath.Join(dir, want) {
		t.Errorf("error %v, want %s/%s", err, dir, want)
	}
}

// TestResolveRootfsDir: a rootfs directory is judged by its real path, and
// the launcher gets that path, so a symlink to /etc does not make /etc the
// container's root.
func TestResolveRootfsDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "rootfs"), 0o755); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{"tree": "rootfs", "etc": "/etc", "host": "/"} {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct{ rootfs, want, err string }{
		{rootfs: "rootfs", want: filepath.Join(dir, "rootfs")},
		{rootfs: "tree", want: filepath.Join(dir, "rootfs")},
		{rootfs: "/etc", err: "%s/service.toml:4: image.rootfs: /etc is refused as a root filesystem: the host's configuration (use a directory made for the service)"},
		{rootfs: "etc", err: "%s/service.toml:4: image.rootfs: %s/etc is refused as a root filesystem (through a symlink, it is /etc): the host's configuration (use a directory made for the service)"},
		{rootfs: "host", err: "%s/service.toml:4: image.rootfs: %s/host is refused as a root filesystem (through a symlink, it is /): the whole host filesystem (use a directory made for the service)"},
	} {
		t.Run(tc.rootfs, func(t *testing.T) {
			img, err := Resolve(t.Context(), service(t, dir, `rootfs = "`+tc.rootfs+`"`), Options{Dir: t.TempDir()})
			if tc.err != "" {
				want := strings.ReplaceAll(tc.err, "%s", dir)
				if err == nil || err.Error() != want {
					t.Fatalf("error %v\nwant %s", err, want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if img.Rootfs != tc.want {
				t.Errorf("rootfs %s, want %s", img.Rootfs, tc.want)
			}
		})
	}
}

// TestDamagedEntry: an entry whose record cannot be read is listed as
// damaged, unpacked again by the next start, and removed by prune.
func TestDamagedEntry(t *testing.T) {
	testenv.RequireRoot(t)
	dir, cacheDir := t.TempDir(), t.TempDir()
	writeLayout(t, filepath.Join(dir, "oci"), configuredImage(t, "damaged"), "v1")
	svc := service(t, dir, `oci = "oci:v1"`)
	damage := func() {
		t.Helper()
		entries, _ := filepath.Glob(filepath.Join(cacheDir, "entries", "*", "image.json"))
		if len(entries) != 1 {
			t.Fatalf("entries %v", entries)
		}
		if err := os.WriteFile(entries[0], []byte(`{"id":`), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	img, err := Resolve(t.Context(), svc, Options{Dir: cacheDir})
	if err != nil {
		t.Fatal(err)
	}
	img.Release()
	damage()
	if all, err := List(cacheDir); err != nil || len(all) != 1 || !all[0].Damaged {
		t.Fatalf("List: %+v %v, want one damaged entry", all, err)
	}
	img, err = Resolve(t.Context(), svc, Options{Dir: cacheDir})
	if err != nil {
		t.Fatalf("a damaged entry is not unpacked again: %v", err)
	}
	if !strings.Contains(img.Notes[0], "(unpacked ") {
		t.Errorf("note %q, want it unpacked again", img.Notes[0])
	}
	img.Release()
	damage()
	removed, _, err := Prune(cacheDir)
	if err != nil || len(removed) != 1 || entryCount(t, cacheDir) != 0 {
		t.Errorf("prune removed %+v (%v), %d entries left", removed, err, entryCount(t, cacheDir))
	}
	assertCacheClean(t, cacheDir)
}

// TestPruneWhileResolving: Prune, again and again while images are
// resolved (unpacked, since each round prunes the last), never removes
// what a Resolve returns, nor fails one. It once removed an entry between
// its unpack and its use ("the image cache changed while safe-run used
// it"), and could take a work directory between its mkdir and its lock.
func TestPruneWhileResolving(t *testing.T) {
	testenv.RequireRoot(t)
	dir, cacheDir := t.TempDir(), t.TempDir()
	writeLayout(t, filepath.Join(dir, "oci"), configuredImage(t, "prune"), "latest")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				Prune(cacheDir)
			}
		}
	})
	for i := range 30 {
		img, err := Resolve(t.Context(), service(t, dir, `oci = "oci:latest"`), Options{Dir: cacheDir})
		if err != nil {
			close(stop)
			wg.Wait()
			t.Fatalf("resolve %d: %v", i, err)
		}
		if _, err := os.Stat(filepath.Join(img.Rootfs, "etc")); err != nil {
			t.Errorf("resolve %d: the image went under it: %v", i, err)
		}
		img.Release()
	}
	close(stop)
	wg.Wait()
	if _, _, err := Prune(cacheDir); err != nil {
		t.Fatal(err)
	}
	assertCacheClean(t, cacheDir)
}

// TestLayoutBlobChecks: a layout's blob is checked before it is read: a
// symbolic link (to /etc/shadow in the FS probe #10, opened as root and
// parsed as a tar), a FIFO, and a blob one byte longer or shorter than
// its descriptor says (it gave "unexpected EOF", or was read on) are
// refused by name.
func TestLayoutBlobChecks(t *testing.T) {
	img := testImage(t, nil, layerTar(t, file("etc/marker", "v1", 0o644)))
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	d, err := ls[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	size, err := ls[0].Size()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		edit func(blob string) error
		want string // after the blob's path
	}{
		{"symlink", func(blob string) error {
			data, err := os.ReadFile(blob)
			if err != nil {
				return err
			}
			other := filepath.Join(filepath.Dir(blob), "elsewhere")
			if err := os.WriteFile(other, data, 0o644); err != nil {
				return err
			}
			os.Remove(blob)
			return os.Symlink(other, blob)
		}, ": the blob is a symbolic link, which a layout's blob may not be (copy the layout with skopeo copy or umoci, which write blobs as files)"},
		{"fifo", func(blob string) error {
			os.Remove(blob)
			return syscall.Mkfifo(blob, 0o644)
		}, ": the blob is not a regular file (p---------) (copy the layout with skopeo copy or umoci, which write blobs as files)"},
		{"one byte more", func(blob string) error {
			f, err := os.OpenFile(blob, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.Write([]byte{0})
			return err
		}, fmt.Sprintf(": size mismatch: the blob is %d bytes, its descriptor says %d: the layout is damaged or was changed (copy it again from its source)", size+1, size)},
		{"one byte less", func(blob string) error { return os.Truncate(blob, size-1) },
			fmt.Sprintf(": size mismatch: the blob is %d bytes, its descriptor says %d: the layout is damaged or was changed (copy it again from its source)", size-1, size)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeLayout(t, filepath.Join(dir, "oci"), img, "v1")
			blob := filepath.Join(dir, "oci", "blobs", "sha256", d.Hex)
			if err := tc.edit(blob); err != nil {
				t.Fatal(err)
			}
			_, err := Resolve(t.Context(), service(t, dir, `oci = "oci:v1"`), Options{Dir: t.TempDir()})
			if err == nil || !strings.HasSuffix(err.Error(), blob+tc.want) {
				t.Errorf("got %v\nwant ...%s%s", err, blob, tc.want)
			}
		})
	}
}

// TestImageStopSignalWarning: an image config's StopSignal that is no
// signal was ignored without a word (FS probe #13); a real one is not
// safe-run's to follow, and is not remarked on.
func TestImageStopSignalWarning(t *testing.T) {
	for _, tc := range []struct{ sig, want string }{
		{"SIGFOO", `WARNING: the image's config sets StopSignal "SIGFOO", which is not a signal: ignored (safe-run stops the service with [process] stop_signal, SIGTERM unless set; fix the image's STOPSIGNAL)`},
		{"SIGQUIT", ""},
	} {
		t.Run(tc.sig, func(t *testing.T) {
			img := testImage(t, func(c *v1.ConfigFile) { c.Config.StopSignal = tc.sig }, layerTar(t, file("etc/marker", "v1", 0o644)))
			dir := t.TempDir()
			writeLayout(t, filepath.Join(dir, "oci"), img, "v1")
			got, err := Resolve(t.Context(), service(t, dir, `oci = "oci:v1"`), Options{Dir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			defer got.Release()
			warned := slices.ContainsFunc(got.Notes, func(n string) bool { return strings.Contains(n, "sets StopSignal") })
			if tc.want == "" && warned || tc.want != "" && !slices.Contains(got.Notes, tc.want) {
				t.Errorf("notes %q, want %q", got.Notes, tc.want)
			}
		})
	}
}
