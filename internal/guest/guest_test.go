package guest

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// requireGuest skips a test that boots the guest when it cannot run here,
// saying why, or fails it when SAFE_RUN_REQUIRE_PRIV=1 (the root CI job).
func requireGuest(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("boots a QEMU guest under TCG (about 10 s); skipped with -short")
	}
	if err := Check(); err != nil {
		skipOrFail(t, err)
	}
}

func skipOrFail(t *testing.T, err error) {
	t.Helper()
	if os.Getenv("SAFE_RUN_REQUIRE_PRIV") == "1" {
		t.Fatalf("SAFE_RUN_REQUIRE_PRIV=1, but the guest cannot run: %v", err)
	}
	t.Skipf("guest cannot run: %v", err)
}

// runGuest is Run with unavailability turned into skipOrFail.
func runGuest(t *testing.T, opts Options) (int, error) {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	}
	status, err := Run(t.Context(), opts)
	if errors.Is(err, ErrUnavailable) {
		skipOrFail(t, err)
	}
	return status, err
}

// guestChecks are what the guest exists for. Each runs in its own subshell,
// as root unless it says otherwise.
var guestChecks = []struct{ name, sh string }{
	{"apparmor enabled", `grep -qx Y /sys/module/apparmor/parameters/enabled`},
	{"apparmor is an active LSM", `cat /sys/kernel/security/lsm; echo; grep -qw apparmor /sys/kernel/security/lsm`},
	{"apparmorfs present", `test -f /sys/kernel/security/apparmor/profiles`},
	{"apparmor_parser loads a profile", `
		printf 'abi <abi/3.0>,\nprofile t { }\n' >/tmp/t.aa
		apparmor_parser -r /tmp/t.aa
		grep -qx 't (enforce)' /sys/kernel/security/apparmor/profiles`},
	{"cgroup2 is the only cgroup hierarchy", `
		awk '$3 ~ /^cgroup/' /proc/mounts >/tmp/cg
		cat /tmp/cg
		test "$(cut -d' ' -f1-3 /tmp/cg)" = "cgroup2 /sys/fs/cgroup cgroup2"
		grep -q nsdelegate /tmp/cg`},
	{"memory, cpu and pids delegated to a child cgroup", `
		mkdir /sys/fs/cgroup/child
		cat /sys/fs/cgroup/child/cgroup.controllers
		for c in memory cpu pids; do grep -qw $c /sys/fs/cgroup/child/cgroup.controllers; done
		rmdir /sys/fs/cgroup/child`},
	{"unprivileged user namespace", `test "$(su -s /bin/sh nobody -c 'unshare -r id -u')" = 0`},
	{"overlayfs", `
		cd /tmp && mkdir l u w m && echo x >l/f
		mount -t overlay overlay -o lowerdir=l,upperdir=u,workdir=w m
		test "$(cat m/f)" = x && echo y >m/g && test -f u/g`},
	{"overlayfs in an unprivileged user namespace", `
		su -s /bin/sh nobody -c 'cd /tmp && mkdir ul uu uw um && echo x >ul/f &&
			unshare -r -m sh -c "mount -t overlay overlay -o lowerdir=ul,upperdir=uu,workdir=uw um && cat um/f"' >/tmp/uo
		test "$(cat /tmp/uo)" = x`},
	{"static cgo binary loads a seccomp filter", `hello; hello | grep -qx 'seccomp filter: getppid denied'`},
	{"modules loaded after their dependencies", `lsmod; for m in overlay bridge stp llc; do grep -q "^$m " /proc/modules; done`},
}

// TestGuest boots once and runs every check, so it costs one boot. The
// script ends with exit 3 only when all checks pass, which also shows that
// the script's status, not init's, comes back from Run.
func TestGuest(t *testing.T) {
	requireGuest(t)
	hello := filepath.Join(t.TempDir(), "hello")
	if err := BuildStatic(t.Context(), "./testdata/hello", hello); err != nil {
		t.Fatal(err)
	}
	var script strings.Builder
	script.WriteString("fail=0\n")
	for _, c := range guestChecks {
		fmt.Fprintf(&script, "if (set -e\n%s\n) >/tmp/check.out 2>&1; then echo 'ok: %s'; else echo 'FAIL: %s'; fail=1; fi\nsed 's/^/    /' /tmp/check.out\n", c.sh, c.name, c.name)
	}
	script.WriteString("test $fail = 0 && exit 3\nexit 1\n")

	var console strings.Builder
	start := time.Now()
	status, err := runGuest(t, Options{
		Files:   map[string]string{"/usr/bin/hello": hello},
		Modules: []string{"bridge"}, // needs stp, which needs llc
		Script:  script.String(),
		Timeout: 2 * time.Minute,
		Stdout:  &console,
	})
	t.Logf("guest console:\n%s", console.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Run took %s", time.Since(start).Round(time.Millisecond))
	for _, c := range guestChecks {
		if !strings.Contains(console.String(), "ok: "+c.name+"\n") {
			t.Errorf("check %q did not pass in the guest", c.name)
		}
	}
	if status != 3 {
		t.Errorf("Run returned status %d, want 3 (the script's exit 3 after all checks pass)", status)
	}
}

func TestRunTimeout(t *testing.T) {
	requireGuest(t)
	start := time.Now()
	_, err := runGuest(t, Options{Script: "sleep 600", Timeout: 3 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "did not finish within 3s") {
		t.Fatalf("Run with a 3s timeout: got %v, want a timeout error", err)
	}
	// The kernel lookup and initramfs come before the timeout starts.
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("Run returned %s after the start; QEMU was not killed at the timeout", d)
	}
}

func TestRunWithoutQEMU(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := Run(t.Context(), Options{Script: "true"})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Run without QEMU on PATH: got %v, want an error matching ErrUnavailable", err)
	}
	if want := "apt-get install -y qemu-system-x86"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
	if err := Check(); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "busybox-static") {
		t.Errorf("Check with an empty PATH: got %v, want it to name qemu-system-x86 and busybox-static", err)
	}
}

func TestBuildStatic(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a cgo binary; skipped with -short")
	}
	out := filepath.Join(t.TempDir(), "hello")
	if err := BuildStatic(t.Context(), "./testdata/hello", out); err != nil {
		t.Fatal(err)
	}
	if static, err := isStatic(out); err != nil || !static {
		t.Fatalf("isStatic(%s) = %v, %v; want true", out, static, err)
	}
	got, err := exec.Command(out).CombinedOutput()
	if err != nil {
		t.Fatalf("running %s: %v\n%s", out, err, got)
	}
	if !strings.Contains(string(got), "libseccomp 2.") || !strings.Contains(string(got), "getppid denied") {
		t.Errorf("hello printed %q, want the libseccomp version and the filter result", got)
	}
}
