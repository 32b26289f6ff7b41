package image

import (
	"github.com/safe-run/safe-run/internal/testenv"
	"path/filepath"
	"testing"
)

// BenchmarkResolveCached is the whole cost an image adds to a start once
// it is cached: reading the layout's index.json, the ref, the entry's
// image.json, and taking the entry's lock.
func BenchmarkResolveCached(b *testing.B) {
	testenv.RequireRoot(b)
	dir, cacheDir := b.TempDir(), b.TempDir()
	writeLayout(b, filepath.Join(dir, "oci"), configuredImage(b, "bench"), "latest")
	svc := service(b, dir, `oci = "oci:latest"`)
	img, err := Resolve(b.Context(), svc, Options{Dir: cacheDir})
	if err != nil {
		b.Fatal(err)
	}
	img.Release()
	b.ResetTimer()
	for b.Loop() {
		img, err := Resolve(b.Context(), svc, Options{Dir: cacheDir})
		if err != nil {
			b.Fatal(err)
		}
		img.Release()
	}
}
