package profiles

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"
)

// TestInitCallsKept: safe-run-init runs under the service's filter; a
// custom or recorded profile without what it needs left a stop waiting
// for stop_timeout (kill) or the init spinning at its exit (exit_group).
func TestInitCallsKept(t *testing.T) {
	dir := t.TempDir()
	profiles := map[string]string{
		// The FS probe's profile: only read, write, execve.
		"min.json": `{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read","write","execve"],"action":"SCMP_ACT_ALLOW"}]}`,
		// Allows all but the reaping.
		"nowait.json": `{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["wait4","waitid"],"action":"SCMP_ACT_ERRNO"}]}`,
		// kill for signal 0 only, exit_group logged: argument tests go.
		"cond.json": `{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["kill"],"action":"SCMP_ACT_ALLOW","args":[{"index":1,"value":0,"op":"SCMP_CMP_EQ"}]},{"names":["exit_group","getuid"],"action":"SCMP_ACT_LOG"}]}`,
	}
	for name, text := range profiles {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, arch := range []string{"amd64", "arm64"} {
		for name := range profiles {
			t.Run(arch+"/"+name, func(t *testing.T) {
				s, err := Seccomp(Options{Profile: name, Dir: dir, Arch: arch})
				if err != nil {
					t.Fatal(err)
				}
				for _, n := range InitCalls(arch) {
					if n == "clone" {
						continue // with its namespace test, below
					}
					if !allowedOutright(s, n) {
						t.Errorf("%s is not allowed outright: rules %+v, default %s", n, rulesFor(s, n), s.DefaultAction)
					}
				}
				if arch == "arm64" && !allows(s.DefaultAction) {
					if rs := rulesFor(s, "clone"); len(rs) != 1 || len(rs[0].Args) != 1 || rs[0].Args[0].Value != cloneNamespaces {
						t.Errorf("clone rules %+v, want one without namespace flags", rs)
					}
				}
				// What the profile says of other calls stays.
				if name == "nowait.json" && !slices.Equal(actionsFor(s, "waitid"), []string{"SCMP_ACT_ERRNO(1)"}) {
					t.Errorf("waitid: %v, want the profile's own denial", actionsFor(s, "waitid"))
				}
				if name == "cond.json" && !slices.Equal(actionsFor(s, "getuid"), []string{string(specs.ActLog)}) {
					t.Errorf("getuid: %v, want the profile's own rule", actionsFor(s, "getuid"))
				}
			})
		}
	}

	if got, want := InitCallsNote(Options{Profile: "min.json", Dir: dir, Arch: "amd64"}),
		"seccomp: min.json did not allow close, exit, exit_group, fcntl, fork, fstat, getpid, gettid, kill, landlock_add_rule, landlock_create_ruleset, landlock_restrict_self, newfstatat, open, openat, rt_sigprocmask, rt_sigreturn, rt_sigtimedwait, setpgid, wait4 or writev, which safe-run-init needs (it runs under the service's filter): allowed"; got != want {
		t.Errorf("note\n%s\nwant\n%s", got, want)
	}
	for _, p := range []string{"default", "strict", "unconfined"} {
		if got := InitCallsNote(Options{Profile: p, Arch: "amd64"}); got != "" {
			t.Errorf("%s: note %q, want none", p, got)
		}
	}

	// A recording that ended by itself never saw a stop: its profile
	// still has kill, and every other call of the init.
	for _, base := range []string{"default", "strict"} {
		t.Run("recorded/"+base, func(t *testing.T) {
			b, err := Seccomp(Options{Profile: base, Arch: "amd64"})
			if err != nil {
				t.Fatal(err)
			}
			r, err := NewRecording(b, RecordOptions{Arch: "amd64"})
			if err != nil {
				t.Fatal(err)
			}
			p, err := r.Profile()
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range InitCalls("amd64") {
				if !allowedOutright(p, n) {
					t.Errorf("the recorded profile does not allow %s outright: rules %+v", n, rulesFor(p, n))
				}
			}
		})
	}
}
