package image_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/safe-run/safe-run/image"
	"github.com/safe-run/safe-run/image/registry"
	"github.com/safe-run/safe-run/manifest"
)

// TestMain is also the test binary's other life: TestResolveKilled runs it
// as a pull to kill.
func TestMain(m *testing.M) {
	if v := os.Getenv("SAFE_RUN_TEST_RESOLVE"); v != "" {
		path, cacheDir, _ := strings.Cut(v, ":")
		svc, err := manifest.Load(path)
		if err == nil {
			pull := func(repo name.Repository, allowHTTP bool) image.Registry { return registry.New(repo, allowHTTP, nil) }
			_, err = image.Resolve(context.Background(), svc, image.Options{Dir: cacheDir, Registry: pull})
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}
