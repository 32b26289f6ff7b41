package policy

import (
	"testing"

	"github.com/safe-run/safe-run/internal/testenv"
)

// TestPure keeps package policy pure (style.md, Packages): no system calls,
// no libcontainer, no network, on any GOOS. It judges text, so it can run
// where the service never will (an editor, a CI lint job) and its tests
// need no root.
func TestPure(t *testing.T) {
	testenv.PureImports(t, pureForbidden, []string{"syscall", "net", "unsafe", "os/exec"})
}

// pureForbidden is manifest's list (manifest/depcheck_test.go).
var pureForbidden = []string{
	"golang.org/x/sys/", "github.com/opencontainers/runc/", "github.com/opencontainers/cgroups/",
	"github.com/seccomp/", "net/http", "crypto/tls", "os/exec",
}
