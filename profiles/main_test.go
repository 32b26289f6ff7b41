package profiles

import (
	"os"
	"testing"
)

// childEnv, when set, makes the test binary a child that loads a seccomp
// filter and execs a program under it instead of running tests; see
// TestStrictProfileRuns.
const childEnv = "SAFE_RUN_PROFILES_TEST_CHILD"

func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		os.Exit(runChild(spec)) // runChild only returns on failure
	}
	os.Exit(m.Run())
}

// requireRoot skips a test that needs root, or fails it in the root CI
// job, which sets SAFE_RUN_REQUIRE_PRIV=1.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "needs root: it loads a filter without no_new_privileges and changes user, as runc init does")
	}
}

func skipOrFail(t *testing.T, reason string) {
	t.Helper()
	if os.Getenv("SAFE_RUN_REQUIRE_PRIV") == "1" {
		t.Fatalf("%s; SAFE_RUN_REQUIRE_PRIV=1 turns this skip into a failure", reason)
	}
	t.Skip(reason)
}
