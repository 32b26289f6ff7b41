package testenv

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// unreachable is mkrootfs.sh's exit status when the Debian archive cannot
// be reached.
const unreachable = 3

// InCI reports whether the tests run in CI (CI=true, as GitHub Actions,
// GitLab and most others set it, or the root job's SAFE_RUN_REQUIRE_PRIV=1),
// where a missing network must fail a test, not skip it.
func InCI() bool { return os.Getenv("CI") == "true" || Required() }

// DebianRootfs returns the path of a Debian 12 (bookworm) root filesystem
// with the essential packages and packages, built by
// example/debian/mkrootfs.sh on first use into its cache
// (/var/cache/safe-run/rootfs, or $SAFE_RUN_ROOTFS_CACHE) and reused after:
// the first build takes about a minute, a cached one a few milliseconds.
// name only labels the build (a symlink in the cache, the log). The tree is
// owned by root and shared by every test: never write to it.
//
// It needs root and mmdebstrap. Where the archive cannot be reached it
// skips t with the reason, except in CI (InCI), where it fails t.
func DebianRootfs(t testing.TB, name string, packages ...string) string {
	t.Helper()
	RequireRoot(t)
	RequireTool(t, "mmdebstrap")
	if len(packages) == 0 {
		t.Fatalf("DebianRootfs(%q): no packages (name at least the service's)", name)
	}
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	// mmdebstrap's own download and unpack, with a margin for a slow mirror.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(root, "example", "debian", "mkrootfs.sh"), append([]string{name}, packages...)...)
	// At the deadline, the whole build is asked to stop, mmdebstrap too:
	// it unmounts what it mounted in the tree on SIGTERM, not on SIGKILL.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = time.Minute
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit) && exit.ExitCode() == unreachable && !InCI():
		t.Skipf("cannot build the %s root filesystem: the Debian archive is unreachable:\n%s", name, LastLines(errb.String(), 10))
	case err != nil:
		t.Fatalf("building the %s root filesystem (%s): %v\n%s", name, strings.Join(packages, " "), err, LastLines(errb.String(), 30))
	}
	path := strings.TrimSpace(out.String())
	if st, err := os.Stat(path); err != nil || !st.IsDir() {
		t.Fatalf("mkrootfs.sh %s printed %q, not a directory (%v)", name, path, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Logf("built the %s root filesystem in %s: %s", name, d.Round(time.Second), path)
	}
	return path
}
