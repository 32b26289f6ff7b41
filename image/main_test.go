package image_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/safe-run/safe-run/image"
	"github.com/safe-run/safe-run/manifest"
)

// TestMain is also the test binary's other life: TestResolveKilled runs it
// as a pull to kill.
func TestMain(m *testing.M) {
	if v := os.Getenv("SAFE_RUN_TEST_RESOLVE"); v != "" {
		path, cacheDir, _ := strings.Cut(v, ":")
		svc, err := manifest.Load(path)
		if err == nil {
			_, err = image.Resolve(context.Background(), svc, image.Options{Dir: cacheDir})
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}
