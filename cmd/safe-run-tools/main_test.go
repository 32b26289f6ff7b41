package main

// CLI tests: testscript files under testdata/script run the real safe-run
// command and pin its output and exit codes: safe-run as `make build`
// builds it, and this test binary as the safe-run-tools it hands over to.
// go test ./cmd/safe-run-tools -update rewrites the files that cmp
// compares against.

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/safe-run/safe-run/internal/testenv"
)

// TestMain registers main as the "safe-run-tools" command of the scripts.
// The libcontainer init re-exec ("safe-run-tools init") never gets here:
// the init() in init.go handles it before any test code runs, as in the
// real binary.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){"safe-run-tools": main})
}

func TestScripts(t *testing.T) {
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if err := installBeside("safe-run-tools"); err != nil {
		t.Fatalf("building safe-run and its helpers: %v", err)
	}
	// Scripts that start containers keep their state under $WORK, and
	// the container's mapped root must traverse every component of it:
	// a root of 0711 instead of the 0700 of a default temporary dir.
	root, err := os.MkdirTemp("", "safe-run-cli-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	if err := os.Chmod(root, 0o711); err != nil {
		t.Fatal(err)
	}
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		WorkdirRoot:         root,
		RequireExplicitExec: true,
		UpdateScripts:       testenv.Update(),
		Setup: func(env *testscript.Env) error {
			env.Setenv("REPO", repo)
			// State and data of their own: a script never sees or
			// leaves anything in the host's /run/safe-run.
			env.Setenv("SAFE_RUN_STATE_DIR", filepath.Join(env.WorkDir, "state"))
			env.Setenv("SAFE_RUN_DATA_DIR", filepath.Join(env.WorkDir, "data"))
			return nil
		},
		Condition: condition,
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exitcode": exitcodeCmd,
		},
	})
}

// condition answers [root], [subids] and [busybox]: what the
// scripts that start containers need. Where the host lacks it, the script
// skips ([!root] skip), except under SAFE_RUN_REQUIRE_PRIV=1 (the root CI
// job), where the missing piece fails it, as the privileged Go tests do.
func condition(cond string) (bool, error) {
	var missing string
	switch cond {
	case "root":
		if os.Geteuid() != 0 {
			missing = fmt.Sprintf("needs root (euid is %d)", os.Geteuid())
		}
	case "subids":
		if _, err := user.Lookup("safe-run"); err != nil {
			missing = "needs the safe-run user and its /etc/subuid ranges (make setup-user)"
		}
	case "busybox":
		if _, err := os.Stat("/bin/busybox"); err != nil {
			missing = "needs /bin/busybox (apt-get install busybox-static)"
		}
	default:
		return false, fmt.Errorf("unknown condition %q", cond)
	}
	if missing != "" && testenv.Required() {
		return false, fmt.Errorf("SAFE_RUN_REQUIRE_PRIV=1 but: %s", missing)
	}
	return missing == "", nil
}

// exitcodeCmd: exitcode N command [args...] runs the command like exec
// does and checks its exit status is exactly N (exec only tells zero from
// non-zero; safe-run's 125/126/127 are the contract).
func exitcodeCmd(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exitcode N command [args...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exitcode: %v", err)
	}
	err = ts.Exec(args[1], args[2:]...)
	got := 0
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		got = exit.ExitCode()
	case err != nil:
		ts.Fatalf("exitcode: %v", err)
	}
	if got != want {
		ts.Fatalf("exit status %d, want %d", got, want)
	}
}

// installBeside builds safe-run, safe-run-init and safe-run-janitor into
// the directory of the scripts' command name, beside this test binary, as
// they are installed beside safe-run-tools.
func installBeside(name string) error {
	bin, err := exec.LookPath(name)
	if err != nil {
		return err
	}
	dir := filepath.Dir(bin)
	built, err := testenv.Build(filepath.Join(dir, "build"))
	if err != nil {
		return err
	}
	for _, b := range []string{built.SafeRun, built.Init, built.Janitor} {
		if err := os.Rename(b, filepath.Join(dir, filepath.Base(b))); err != nil {
			return err
		}
	}
	return nil
}
