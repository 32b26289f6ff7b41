package launcher_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestDevNoexec: /dev is writable by the container's root, and with
// Landlock off nothing else kept a program copied there from running:
// the tmpfs is noexec and nosuid, checked from inside. safe-run-init, a
// bind at /dev/init, still runs.
func TestDevNoexec(t *testing.T) {
	setup(t)
	r := shell(t, "devnoexec", `
cp /bin/busybox /dev/bb && echo copied
/dev/bb true; echo "exec=$?"
grep ' /dev tmpfs ' /proc/mounts | awk '{print $4}'
`, "init = true\n\n[security]\nlandlock = \"off\"\n\n[insecure]\nreason = \"the test checks /dev without Landlock\"\nallow = [\"landlock_off\"]\n")
	if r.code != 0 {
		t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "copied") || !strings.Contains(r.stdout, "exec=126") {
		t.Errorf("a program copied to /dev ran, or was not copied:\n%s%s", r.stdout, r.stderr)
	}
	if !regexp.MustCompile(`(^|\n)rw,nosuid,(.*,)?noexec`).MatchString(r.stdout) {
		t.Errorf("/dev options: want rw, nosuid and noexec in:\n%s", r.stdout)
	}
	assertNothingLeft(t, "devnoexec")
}

// TestMountTargetRefusals: a target that resolves, through the image's
// symlinks, into what safe-run sets up itself, and a file bound onto a
// directory, are refused before anything is made, at their lines of the
// manifest (the runtime refused them after the start report, in its own
// words, or not at all: a tmpfs at /cg/memory with /cg -> /sys/fs/cgroup
// was mounted over the cgroup file system).
func TestMountTargetRefusals(t *testing.T) {
	setup(t)
	// The example's rootfs with a few symlinks of the image's own.
	rootfs := filepath.Join(env.dir, "symlinked-rootfs")
	if _, err := os.Stat(rootfs); err != nil {
		if out, err := exec.Command("cp", "-a", env.rootfs, rootfs).CombinedOutput(); err != nil {
			t.Fatalf("copying the rootfs: %v\n%s", err, out)
		}
		for link, to := range map[string]string{"cg": "/sys/fs/cgroup", "psys": "/proc/sys"} {
			if err := os.Symlink(to, filepath.Join(rootfs, link)); err != nil {
				t.Fatal(err)
			}
		}
	}
	dir := filepath.Join(env.dir, "manifests", "targets")
	if err := os.MkdirAll(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "file"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	m := filepath.Join(dir, "service.toml")
	text := `version = 1
name = "targets"
[image]
rootfs = "` + rootfs + `"
[process]
command = ["/bin/true"]
[resources]
memory = "64M"
cpus = 1
[[mounts]]
type = "tmpfs"
target = "/cg/memory"
[[mounts]]
type = "tmpfs"
target = "/psys"
[[mounts]]
type = "bind"
source = "file"
target = "/etc"
`
	if err := os.WriteFile(m, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	r := run(t, m, "")
	want := m + `:12: mounts[0].target: /cg/memory resolves to /sys/fs/cgroup/memory in the container (through the image's symlink /cg -> /sys/fs/cgroup): /sys is set up by safe-run itself (choose another target)
` + m + `:15: mounts[1].target: /psys resolves to /proc/sys in the container (through the image's symlink /psys -> /proc/sys): /proc is set up by safe-run itself (choose another target)
` + m + `:19: mounts[2].target: /etc is a directory, and the bind's source ` + dir + `/file is a file (bind a directory there, or make the target a file's path, e.g. /etc/file)
`
	if r.code != 125 || r.stderr != want {
		t.Errorf("exit %d, stderr:\n%s\nwant 125 and:\n%s", r.code, r.stderr, want)
	}
	assertNothingLeft(t, "targets")
}

// TestRootlessWithoutRuntimeDir: without root and without
// XDG_RUNTIME_DIR the state directory would be root's: the start is
// refused before anything is made, with doctor's fix (it failed at its
// lock with "permission denied").
func TestRootlessWithoutRuntimeDir(t *testing.T) {
	setup(t)
	h := newRootlessHome(t, "rootless-noxdg")
	p := h.manifest("rl-noxdg", "[process]\ncommand = [\"/bin/true\"]")
	c := h.cmd(context.Background(), "-q", p)
	c.Env = slices.DeleteFunc(c.Env, func(e string) bool { return strings.HasPrefix(e, "XDG_RUNTIME_DIR=") })
	out, err := c.CombinedOutput()
	want := fmt.Sprintf("safe-run: XDG_RUNTIME_DIR is not set: without root safe-run keeps its state there, and /run/safe-run is root's (log in through systemd-logind (ssh, a desktop or machinectl shell %s@), which creates /run/user/%d and sets it; or set SAFE_RUN_STATE_DIR to a directory of yours)\n", rootlessUser, h.u.uid)
	if code := exitCode(err); code != 125 || string(out) != want {
		t.Errorf("exit %d:\n%s\nwant 125 and:\n%s", code, out, want)
	}
	for _, left := range []string{"/run/safe-run/rl-noxdg", "/run/safe-run/rl-noxdg.lock"} {
		if _, err := os.Lstat(left); err == nil {
			t.Errorf("left behind: %s", left)
		}
	}
}
