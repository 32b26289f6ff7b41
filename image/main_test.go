package image_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/opencontainers/runc/libcontainer"
	// nsexec, for the containers of the integration test.
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
	// Device rules for the cgroup manager, as cmd/safe-run has them.
	_ "github.com/opencontainers/cgroups/devices"

	"github.com/safe-run/safe-run/image"
	"github.com/safe-run/safe-run/manifest"
)

// TestMain is also the test binary's other lives: libcontainer re-executes
// it as "init" inside a new container, TestRunExampleImage runs it to
// start one container, and TestResolveKilled runs it as a pull to kill.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		libcontainer.Init() // never returns
	}
	if v := os.Getenv("SAFE_RUN_TEST_RUN"); v != "" {
		_ = json.NewEncoder(os.Stdout).Encode(childRun(v))
		os.Exit(0)
	}
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
