// Package testenv holds the requirements privileged tests state before they
// run. A requirement that is not met skips the test with the reason, and
// fails it instead when SAFE_RUN_REQUIRE_PRIV=1 (the root CI job), so that CI
// can never pass by skipping.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// Required reports whether skips must fail: the root CI job sets it.
func Required() bool { return os.Getenv("SAFE_RUN_REQUIRE_PRIV") == "1" }

// Skip skips t with reason, or fails it under SAFE_RUN_REQUIRE_PRIV=1.
func Skip(t testing.TB, format string, args ...any) {
	t.Helper()
	if Required() {
		t.Fatalf("SAFE_RUN_REQUIRE_PRIV=1 but: "+format, args...)
	}
	t.Skipf(format, args...)
}

// RequireRoot needs euid 0.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Skip(t, "needs root (euid is %d)", os.Geteuid())
	}
}

// RequireTool needs a program in PATH.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Skip(t, "needs %s in PATH", name)
	}
	return p
}

// Long marks a test that takes seconds; -short skips it (never in CI,
// where -short is not passed).
func Long(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("slow test skipped with -short")
	}
}
