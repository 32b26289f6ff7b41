package plan_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/safe-run/safe-run/export"
	"github.com/safe-run/safe-run/host"
	"github.com/safe-run/safe-run/plan"
)

// writeService writes a manifest of the test rootfs into a directory of
// its own, with body added.
func writeService(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	text := "version = 1\nname = \"web\"\n[image]\nrootfs = \"" + testRootfs(t) + "\"\n[process]\ncommand = [\"/bin/server\"]\n[resources]\nmemory = \"64M\"\ncpus = 1.0\n" + body
	p := filepath.Join(dir, "service.toml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// userOnV1 is an unprivileged user on a hybrid cgroup host without
// delegation, with subordinate ids: a run is refused (its limits cannot be
// enforced), and spec and export must work all the same.
var userOnV1 = host.Facts{
	Kernel: "6.1.0-18-amd64", Arch: "amd64", CPUs: 2, UID: 1000, EUID: 1000, User: "alice",
	Cgroup:  host.Cgroup{Mode: host.CgroupHybrid, Own: "/user.slice", Controllers: []string{"cpu", "memory", "pids"}, Unwritable: []string{"cpu", "memory", "pids"}},
	SubUIDs: []host.SubIDRange{{Owner: "alice", Start: 100000, Count: 65536}},
	SubGIDs: []host.SubIDRange{{Owner: "alice", Start: 100000, Count: 65536}},
	Seccomp: host.Seccomp{Present: true, Log: true, Notify: true},
}

// TestBuildOnAnyHost: what this host cannot enforce does not fail the
// plan: spec prints it, export writes it, and only a run is refused.
func TestBuildOnAnyHost(t *testing.T) {
	dirs := plan.Dirs{State: t.TempDir(), Data: t.TempDir()}
	job, err := plan.Build(t.Context(), writeService(t, ""), userOnV1, plan.Options{Dirs: dirs, InitPath: "/usr/lib/safe-run/safe-run-init"})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	refused := job.Refused()
	if !errors.Is(refused, host.ErrCannotEnforce) || !strings.Contains(refused.Error(), "rootless limits: the controllers cpu, memory, pids are not delegated to you in cgroup v1") {
		t.Errorf("Refused() = %v, want the rootless limits", refused)
	}
	if job.Spec == nil || !job.Placement.Rootless || job.Placement.IDs.Size != host.IDRangeSize || job.Spec.Linux.Resources == nil {
		t.Errorf("the spec of the refused run is not the rootless one: %+v", job.Placement)
	}
	for _, target := range export.Targets() {
		if _, err := export.Export(target, job, export.Options{Dir: t.TempDir(), SafeRun: "/usr/bin/safe-run"}); err != nil {
			t.Errorf("export %s: %v", target, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dirs.Data, "ids.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Build recorded ids: %v", err)
	}

	// The waiver makes it a run without limits, said in the notes.
	job, err = plan.Build(t.Context(), writeService(t, "[insecure]\nreason = \"v1 laptop\"\nallow = [\"no_resource_limits\"]\n"), userOnV1, plan.Options{Dirs: dirs})
	if err != nil || job.Refused() != nil || !job.Placement.CgroupsWaived || job.Spec.Linux.Resources != nil {
		t.Errorf("waived: %v, refused %v, %+v", err, job.Refused(), job.Placement)
	}
}

// TestJobCheck: a job of another version is refused rather than guessed.
func TestJobCheck(t *testing.T) {
	job, err := plan.Build(t.Context(), writeService(t, "[insecure]\nreason = \"v1 laptop\"\nallow = [\"no_resource_limits\"]\n"), userOnV1, plan.Options{Dirs: plan.Dirs{State: t.TempDir(), Data: t.TempDir()}})
	if err != nil {
		t.Fatal(err)
	}
	if err := job.Check(); err != nil {
		t.Errorf("Check: %v", err)
	}
	job.Version = plan.JobVersion + 1
	if err := job.Check(); err == nil || !strings.Contains(err.Error(), "install safe-run and safe-run-tools of one release") {
		t.Errorf("Check of version %d: %v", job.Version, err)
	}
}
