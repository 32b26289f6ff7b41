package plan_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/safe-run/safe-run/export"
	"github.com/safe-run/safe-run/host"
	"github.com/safe-run/safe-run/image"
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
	if _, err := os.Stat(filepath.Join(dirs.Data, "ids")); !errors.Is(err, os.ErrNotExist) {
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

// TestNoInitLandlock: with init = false and a Landlock ruleset, the spec
// starts safe-run-init to apply it, with plan.NoInitFlag, which then
// execs the service; without a ruleset (Landlock off, or none in the
// kernel) the service is started bare, as init = false says. Either way
// ServiceArgs, and so the exports, see the service's own command.
func TestNoInitLandlock(t *testing.T) {
	off := "\n[security]\nlandlock = \"off\"\n[insecure]\nreason = \"v1 laptop\"\nallow = [\"no_resource_limits\", \"landlock_off\"]\n"
	waiver := "[insecure]\nreason = \"v1 laptop\"\nallow = [\"no_resource_limits\"]\n"
	for _, tc := range []struct {
		name, body string
		init       bool
		abi        int
		args       []string
	}{
		{"init", waiver, true, 7, []string{plan.InitPath, "--", "/bin/server"}},
		{"no init", waiver, false, 7, []string{plan.InitPath, plan.NoInitFlag, "--", "/bin/server"}},
		{"no init, no Landlock in the kernel", waiver, false, 0, []string{"/bin/server"}},
		{"no init, Landlock off", off, false, 7, []string{"/bin/server"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := userOnV1
			f.LandlockABI = tc.abi
			p := writeService(t, tc.body)
			if !tc.init {
				data, _ := os.ReadFile(p)
				os.WriteFile(p, []byte(strings.Replace(string(data), "command = [\"/bin/server\"]\n", "command = [\"/bin/server\"]\ninit = false\n", 1)), 0o644)
			}
			job, err := plan.Build(t.Context(), p, f, plan.Options{Dirs: plan.Dirs{State: t.TempDir(), Data: t.TempDir()}, InitPath: "/usr/lib/safe-run/safe-run-init"})
			if err != nil {
				t.Fatal(err)
			}
			if got := job.Spec.Process.Args; !slices.Equal(got, tc.args) {
				t.Errorf("args %q, want %q", got, tc.args)
			}
			mounted := slices.ContainsFunc(job.Spec.Mounts, func(m specs.Mount) bool { return m.Destination == plan.InitPath })
			if want := tc.args[0] == plan.InitPath; mounted != want {
				t.Errorf("safe-run-init mounted: %v, want %v", mounted, want)
			}
			if got := plan.ServiceArgs(job.Spec.Process.Args); !slices.Equal(got, []string{"/bin/server"}) {
				t.Errorf("ServiceArgs = %q", got)
			}
		})
	}
}

// TestBuildElsewhere: a job planned for another machine (export) pulls
// nothing, plans an image.ref this host has not cached from the manifest
// alone, and keeps safe-run's RLIMIT hard limits where this host's own
// are lower: they are the other machine's business.
func TestBuildElsewhere(t *testing.T) {
	low := userOnV1
	low.RlimitMax = map[string]uint64{"RLIMIT_NOFILE": 20000}
	dirs := plan.Dirs{State: t.TempDir(), Data: t.TempDir()}
	nofile := func(j *plan.Job) uint64 {
		for _, r := range j.Spec.Process.Rlimits {
			if r.Type == "RLIMIT_NOFILE" {
				return r.Hard
			}
		}
		return 0
	}
	path := writeService(t, "")
	here, err := plan.Build(t.Context(), path, low, plan.Options{Dirs: dirs})
	if err != nil {
		t.Fatal(err)
	}
	if got := nofile(here); got != 20000 {
		t.Fatalf("planned for this host, RLIMIT_NOFILE hard %d, want this host's 20000", got)
	}
	there, err := plan.Build(t.Context(), path, low, plan.Options{Dirs: dirs, Elsewhere: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := nofile(there); got != 65536 {
		t.Errorf("planned elsewhere, RLIMIT_NOFILE hard %d, want safe-run's 65536", got)
	}

	ref := filepath.Join(t.TempDir(), "ref.toml")
	text := "version = 1\nname = \"web\"\n[image]\nref = \"127.0.0.1:1/web@sha256:" + strings.Repeat("ab", 32) + "\"\n[process]\nuser = \"app\"\n[resources]\nmemory = \"64M\"\ncpus = 1.0\n"
	if err := os.WriteFile(ref, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	connect := func(name.Repository, bool) image.Registry {
		t.Error("connected to a registry")
		return nil
	}
	for _, opts := range []plan.Options{{Elsewhere: true}, {NoImage: true}} {
		opts.Dirs, opts.Registry = dirs, connect
		job, err := plan.Build(t.Context(), ref, low, opts)
		if err != nil {
			t.Fatalf("%+v: %v", opts, err)
		}
		if !job.ImageUnknown || job.Refused() == nil {
			t.Errorf("ImageUnknown %v, refused %v: want an unknown image, refused a run", job.ImageUnknown, job.Refused())
		}
		if args := plan.ServiceArgs(job.Spec.Process.Args); len(args) != 0 {
			t.Errorf("args %q, want none (the image's own)", args)
		}
	}
}

// TestBuildNotesCPUsOverHost: a cpus limit above the host's CPU count, or
// a memory limit above its RAM, is planned (the manifest may be written
// for a bigger host) and said in the start report: it never binds here.
func TestBuildNotesCPUsOverHost(t *testing.T) {
	dirs := plan.Dirs{State: t.TempDir(), Data: t.TempDir()}
	p := writeService(t, "")
	text, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(strings.NewReplacer("cpus = 1.0", "cpus = 64", `memory = "64M"`, `memory = "100T"`).Replace(string(text))), 0o644); err != nil {
		t.Fatal(err)
	}
	f := userOnV1
	f.Memory = 5 << 29 // 2.5 GiB
	job, err := plan.Build(t.Context(), p, f, plan.Options{Dirs: dirs})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	for _, want := range []string{"cpus 64 is more than this host's 2: the CPU limit never binds here",
		"memory 100T is more than this host's 2.5G: the memory limit never binds here, the host's own OOM killer does"} {
		if !slices.Contains(job.Notes, want) {
			t.Errorf("notes %q, want %q", job.Notes, want)
		}
	}
}
