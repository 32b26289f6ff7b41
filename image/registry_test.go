package image

import (
	"encoding/base64"
	"errors"
	"fmt"
	"github.com/safe-run/safe-run/internal/testenv"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	regserver "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/safe-run/safe-run/image/registry"
)

// testRegistry is go-containerregistry's registry, in process, on
// loopback. wrap may intercept requests (tamper, require credentials).
type testRegistry struct {
	host      string
	transport http.RoundTripper
	close     func()
}

func startRegistry(t *testing.T, useTLS bool, wrap func(http.Handler) http.Handler) *testRegistry {
	t.Helper()
	var h http.Handler = regserver.New(regserver.Logger(log.New(io.Discard, "", 0)))
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewUnstartedServer(h)
	if useTLS {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	r := &testRegistry{host: srv.Listener.Addr().String(), transport: http.DefaultTransport, close: srv.Close}
	if useTLS {
		r.transport = srv.Client().Transport
	}
	return r
}

func (r *testRegistry) push(t *testing.T, repoTag string, img v1.Image) string {
	t.Helper()
	ref, err := name.ParseReference(r.host + "/" + repoTag)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithTransport(r.transport)); err != nil {
		t.Fatal(err)
	}
	return digest(t, img)
}

func TestRegistryPinned(t *testing.T) {
	testenv.RequireRoot(t)
	reg := startRegistry(t, false, nil)
	img := configuredImage(t, "pulled")
	d := reg.push(t, "team/web:v1", img)
	dir, cacheDir := t.TempDir(), t.TempDir()
	svc := service(t, dir, `ref = "`+reg.host+`/team/web@`+d+`"`, "insecure_registry")
	if _, err := Resolve(t.Context(), svc, Options{Dir: cacheDir}); !errors.Is(err, ErrRegistryNeeded) {
		t.Fatalf("an uncached ref without a registry client: %v, want ErrRegistryNeeded", err)
	}
	got, err := Resolve(t.Context(), svc, Options{Dir: cacheDir, Registry: pulls(nil)})
	if err != nil {
		t.Fatal(err)
	}
	defer got.Release()
	if data, _ := os.ReadFile(filepath.Join(got.Rootfs, "etc/marker")); string(data) != "pulled" || got.Digest != d || got.Config.User != "app" {
		t.Errorf("pulled %s %q %+v", got.Digest, data, got.Config)
	}
	if !strings.HasPrefix(got.Notes[0], "image "+d+" from ref "+reg.host+"/team/web@"+d+" (unpacked 4 files, ") {
		t.Errorf("note %q", got.Notes[0])
	}
	// Pinned and cached: starting again needs no registry, nor the
	// client (safe-run's fast path runs it without one).
	reg.close()
	again, err := Resolve(t.Context(), svc, Options{Dir: cacheDir})
	if err != nil {
		t.Fatalf("resolving a cached pinned image with the registry down: %v", err)
	}
	defer again.Release()
	if again.Notes[0] != "image "+d+" from ref "+reg.host+"/team/web@"+d+" (cached)" {
		t.Errorf("note %q", again.Notes[0])
	}
	assertCacheClean(t, cacheDir)
}

// TestRegistryPlainHTTP: plain HTTP only for a loopback registry that
// [insecure] allows.
func TestRegistryPlainHTTP(t *testing.T) {
	reg := startRegistry(t, false, nil)
	d := reg.push(t, "web:v1", configuredImage(t, "x"))
	dir := t.TempDir()
	_, err := Resolve(t.Context(), service(t, dir, `ref = "`+reg.host+`/web@`+d+`"`), Options{Dir: t.TempDir(), Registry: pulls(nil)})
	// Why HTTPS failed is Go's to say, in words that depend on timing.
	want := regexp.QuoteMeta(dir+"/service.toml:4: image.ref: plain HTTP refused: cannot pull from "+reg.host+" (over HTTPS: ") + "[^()]+" +
		regexp.QuoteMeta(`), and plain HTTP, which anyone on the path can read and tamper with, is refused [SR019 insecure-registry] (serve the registry over HTTPS, or acknowledge plain HTTP to this loopback registry: [insecure] allow = ["insecure_registry"] with a reason)`)
	if !errors.Is(err, registry.ErrPlainHTTP) || !regexp.MustCompile("^"+want+"$").MatchString(err.Error()) {
		t.Errorf("error\n%v\nwant\n%s", err, want)
	}
}

// pulls connects as safe-run-tools does: image/registry's client, over
// transport (nil: Go's default).
func pulls(transport http.RoundTripper) Connect {
	return func(repo name.Repository, allowHTTP bool) Registry { return registry.New(repo, allowHTTP, transport) }
}

func TestRegistryTLS(t *testing.T) {
	testenv.RequireRoot(t)
	reg := startRegistry(t, true, nil)
	d := reg.push(t, "web:v1", configuredImage(t, "tls"))
	dir := t.TempDir()
	got, err := Resolve(t.Context(), service(t, dir, `ref = "`+reg.host+`/web@`+d+`"`), Options{Dir: t.TempDir(), Registry: pulls(reg.transport)})
	if err != nil {
		t.Fatal(err)
	}
	got.Release()
}

// TestRegistryTag: with [insecure] allow = ["unpinned_image"], a tag is
// resolved on every start and the digest to pin it with is reported.
func TestRegistryTag(t *testing.T) {
	testenv.RequireRoot(t)
	reg := startRegistry(t, false, nil)
	d := reg.push(t, "web:v1", configuredImage(t, "v1"))
	dir, cacheDir := t.TempDir(), t.TempDir()
	svc := service(t, dir, `ref = "`+reg.host+`/web:v1"`, "unpinned_image", "insecure_registry")
	got, err := Resolve(t.Context(), svc, Options{Dir: cacheDir, Registry: pulls(nil)})
	if err != nil {
		t.Fatal(err)
	}
	defer got.Release()
	want := fmt.Sprintf("unpinned image: %s/web:v1 is %s today; pin it with ref = %q", reg.host, d, reg.host+"/web@"+d)
	if !slices.Contains(got.Notes, want) || got.Digest != d {
		t.Errorf("notes %q, want %q", got.Notes, want)
	}
	// The tag moves: the next start follows it, and says so.
	d2 := reg.push(t, "web:v1", configuredImage(t, "v2"))
	again, err := Resolve(t.Context(), svc, Options{Dir: cacheDir, Registry: pulls(nil)})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Release()
	if data, _ := os.ReadFile(filepath.Join(again.Rootfs, "etc/marker")); string(data) != "v2" || again.Digest != d2 {
		t.Errorf("after the tag moved: %s %q", again.Digest, data)
	}
	// Cached or not, a tag is looked up on every start: never without
	// the client.
	if _, err := Resolve(t.Context(), svc, Options{Dir: cacheDir}); !errors.Is(err, ErrRegistryNeeded) {
		t.Errorf("a cached tag without a registry client: %v, want ErrRegistryNeeded", err)
	}
}

// TestRegistryTampered: a registry serving other content than the digest
// names gets nothing into the cache.
func TestRegistryTampered(t *testing.T) {
	testenv.RequireRoot(t)
	img := configuredImage(t, "genuine")
	m, _ := img.Manifest()
	for _, tc := range []struct{ name, path string }{
		{"layer", "/v2/web/blobs/" + m.Layers[0].Digest.String()},
		{"config", "/v2/web/blobs/" + m.Config.Digest.String()},
		{"manifest", "/v2/web/manifests/" + digest(t, img)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var tamper atomic.Bool
			reg := startRegistry(t, false, func(h http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if !tamper.Load() || r.URL.Path != tc.path || r.Method != http.MethodGet {
						h.ServeHTTP(w, r)
						return
					}
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, r)
					body := rec.Body.Bytes()
					body[len(body)/2] ^= 1
					for k, v := range rec.Header() {
						w.Header()[k] = v
					}
					w.WriteHeader(rec.Code)
					w.Write(body)
				})
			})
			d := reg.push(t, "web:v1", img)
			tamper.Store(true)
			cacheDir := t.TempDir()
			_, err := Resolve(t.Context(), service(t, t.TempDir(), `ref = "`+reg.host+`/web@`+d+`"`, "insecure_registry"), Options{Dir: cacheDir, Registry: pulls(nil)})
			if err == nil {
				t.Fatal("a tampered image was accepted")
			}
			// Layers are checked by safe-run; go-containerregistry checks
			// manifests and configs fetched by digest first, in its words.
			if tc.name == "layer" && !errors.Is(err, ErrDigestMismatch) ||
				!strings.Contains(err.Error(), "digest") && !strings.Contains(err.Error(), "checksum") {
				t.Errorf("error %v does not say the digest is wrong", err)
			}
			if n := entryCount(t, cacheDir); n != 0 {
				t.Errorf("%d entries cached", n)
			}
			assertCacheClean(t, cacheDir)
		})
	}
}

func TestRegistryIndex(t *testing.T) {
	testenv.RequireRoot(t)
	reg := startRegistry(t, false, nil)
	host := configuredImage(t, "host")
	foreign := testImage(t, func(cf *v1.ConfigFile) { cf.Architecture = "s390x" }, layerTar(t, file("etc/marker", "s390x", 0o644)))
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: foreign, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "s390x"}}},
		mutate.IndexAddendum{Add: host, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}}})
	ref, _ := name.ParseReference(reg.host + "/multi:v1")
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatal(err)
	}
	id, _ := idx.Digest()
	got, err := Resolve(t.Context(), service(t, t.TempDir(), `ref = "`+reg.host+`/multi@`+id.String()+`"`, "insecure_registry"), Options{Dir: t.TempDir(), Registry: pulls(nil)})
	if err != nil {
		t.Fatal(err)
	}
	defer got.Release()
	if data, _ := os.ReadFile(filepath.Join(got.Rootfs, "etc/marker")); string(data) != "host" || got.Digest != digest(t, host) {
		t.Errorf("resolved %s %q", got.Digest, data)
	}
}

// TestRegistryCredentials: credentials come from the docker config file.
func TestRegistryCredentials(t *testing.T) {
	testenv.RequireRoot(t)
	var locked atomic.Bool
	const auth = "Basic " + "c2FmZTpydW4=" // safe:run
	reg := startRegistry(t, false, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if locked.Load() && r.Header.Get("Authorization") != auth {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	d := reg.push(t, "private:v1", configuredImage(t, "private"))
	locked.Store(true)
	svc := service(t, t.TempDir(), `ref = "`+reg.host+`/private@`+d+`"`, "insecure_registry")

	t.Setenv("DOCKER_CONFIG", t.TempDir())
	if _, err := Resolve(t.Context(), svc, Options{Dir: t.TempDir(), Registry: pulls(nil)}); err == nil || !strings.Contains(err.Error(), "401 Unauthorized") {
		t.Errorf("without credentials: %v", err)
	}
	cfg := t.TempDir()
	config := fmt.Sprintf(`{"auths": {%q: {"auth": %q}}}`, reg.host, base64.StdEncoding.EncodeToString([]byte("safe:run")))
	if err := os.WriteFile(filepath.Join(cfg, "config.json"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", cfg)
	got, err := Resolve(t.Context(), svc, Options{Dir: t.TempDir(), Registry: pulls(nil)})
	if err != nil {
		t.Fatalf("with credentials in $DOCKER_CONFIG/config.json: %v", err)
	}
	got.Release()
}
