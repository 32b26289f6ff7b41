package handoff

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/host"
	"github.com/safe-run/safe-run/plan"
)

// root on a cgroup v2 host with AppArmor and Landlock: a job with every
// part that crosses the exec (spec, AppArmor profile, Landlock ruleset,
// bridge network, notes).
var root = host.Facts{
	Kernel: "6.1.0-18-amd64", Arch: "amd64", CPUs: 2, User: "root", IDUserUID: "999",
	Cgroup:      host.Cgroup{Mode: host.CgroupV2, Own: "/system.slice/web.service", Controllers: []string{"cpu", "memory", "pids"}, Delegated: true},
	AppArmor:    host.AppArmor{Enabled: true},
	LandlockABI: 6,
	SubUIDs:     []host.SubIDRange{{Owner: "safe-run", Start: 1073741824, Count: 65536 * 4}},
	SubGIDs:     []host.SubIDRange{{Owner: "safe-run", Start: 1073741824, Count: 65536 * 4}},
	Seccomp:     host.Seccomp{Present: true, Log: true, Notify: true},
}

func plannedJob(t *testing.T) *plan.Job {
	t.Helper()
	rootfs, err := filepath.Abs("../../plan/testdata/rootfs")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "web.toml")
	text := "version = 1\nname = \"web\"\n[image]\nrootfs = \"" + rootfs + "\"\n[process]\ncommand = [\"/bin/server\"]\nstop_signal = \"SIGQUIT\"\nstop_timeout = \"3s\"\n" +
		"[resources]\nmemory = \"64M\"\ncpus = 1.0\n[network]\nmode = \"bridge\"\nports = [\"8080:80\"]\n"
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	job, err := plan.Build(t.Context(), p, root, plan.Options{Dirs: plan.Dirs{State: t.TempDir(), Data: t.TempDir()}, InitPath: "/usr/lib/safe-run/safe-run-init", JanitorPath: "/usr/lib/safe-run/safe-run-janitor"})
	if err != nil {
		t.Fatal(err)
	}
	if job.AppArmor == nil || job.Landlock == nil || job.Network == nil {
		t.Fatalf("the job lacks a part that crosses the exec: AppArmor %v, Landlock %v, network %v", job.AppArmor, job.Landlock, job.Network)
	}
	job.Notes = append(job.Notes, "a note")
	return job
}

// handed writes h as Exec does, in a memfd, and returns its descriptor.
func handed(t *testing.T, h any) int {
	t.Helper()
	data, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.MemfdCreate("safe-run-job-test", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Write(fd, data); err != nil {
		t.Fatal(err)
	}
	return fd
}

// TestRoundTrip: the job safe-run reads is the job safe-run-tools
// planned, every field the launcher uses intact (only the manifest and
// the image, which the launcher needs neither of, stay behind).
func TestRoundTrip(t *testing.T) {
	job := plannedJob(t)
	got, err := Read(handed(t, Handoff{Job: job, Quiet: true, Debug: true}))
	if err != nil {
		t.Fatal(err)
	}
	if !got.Quiet || !got.Debug {
		t.Errorf("flags lost: quiet %v, debug %v", got.Quiet, got.Debug)
	}
	// The spec's empty lists come back as none (omitempty): JSON is the
	// measure, as it is what crosses.
	a, _ := json.MarshalIndent(got.Job, "", " ")
	b, _ := json.MarshalIndent(job, "", " ")
	if string(a) != string(b) {
		t.Errorf("the job changed across the hand-off:\ngot  %s\nwant %s", a, b)
	}
	if !reflect.DeepEqual(got.Job.Landlock, job.Landlock) || !reflect.DeepEqual(got.Job.AppArmor, job.AppArmor) ||
		!reflect.DeepEqual(got.Job.Network, job.Network) || !reflect.DeepEqual(got.Job.Placement, job.Placement) {
		t.Errorf("the confinement or placement changed across the hand-off")
	}
	if got.Job.Service != nil || got.Job.Image != nil {
		t.Errorf("the manifest or the image crossed the exec: the launcher needs neither")
	}
}

// TestReadRefuses: a job of another version, or none, is refused rather
// than guessed at.
func TestReadRefuses(t *testing.T) {
	job := plannedJob(t)
	job.Version = plan.JobVersion + 1
	for _, tc := range []struct {
		name string
		h    any
		want string
	}{
		{"another version", Handoff{Job: job}, fmt.Sprintf("reading the job: the job is of version %d, this safe-run runs version %d (install safe-run and safe-run-tools of one release)", plan.JobVersion+1, plan.JobVersion)},
		{"no job", Handoff{}, "reading the job: there is none"},
		{"not JSON", "{", "reading the job: json: cannot unmarshal string into Go value of type handoff.Handoff"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Read(handed(t, tc.h))
			if err == nil || err.Error() != tc.want {
				t.Errorf("Read = %v\nwant %s", err, tc.want)
			}
		})
	}
}

// TestFD: only safe-run's own hand-off arguments name a job descriptor,
// and never stdio's.
func TestFD(t *testing.T) {
	for _, tc := range []struct {
		args []string
		fd   int
		ok   bool
	}{
		{[]string{Command, "--job-fd", "7"}, 7, true},
		{[]string{Command, "--job-fd", "2"}, 0, false},
		{[]string{Command, "--job-fd", "x"}, 0, false},
		{[]string{"run", "--job-fd", "7"}, 0, false},
		{[]string{Command, "--job-fd"}, 0, false},
		{[]string{"web.toml"}, 0, false},
	} {
		fd, ok := FD(tc.args)
		if ok != tc.ok || ok && fd != tc.fd {
			t.Errorf("FD(%s) = %d, %v; want %d, %v", strings.Join(tc.args, " "), fd, ok, tc.fd, tc.ok)
		}
	}
}
