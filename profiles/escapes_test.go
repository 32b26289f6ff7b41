package profiles

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestEscapes: a custom profile that allows by default, or lets through
// what the default profile refuses as an escape, is listed as such (FS
// probe #3: an allow-all profile ran without [insecure], and unshare -U
// succeeded inside).
func TestEscapes(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, profile string
		caps          []string
		want          []string
	}{
		{"allow all", `{"defaultAction":"SCMP_ACT_ALLOW"}`, nil, []string{
			"defaultAction SCMP_ACT_ALLOW", "unshare", "setns", "clone3", "mount", "umount", "umount2", "mount_setattr",
			"move_mount", "open_tree", "fsopen", "fsconfig", "fsmount", "fspick", "pivot_root", "chroot", "bpf",
			"perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key", "kcmp", "pidfd_getfd", "kexec_load", "kexec_file_load",
			"init_module", "finit_module", "delete_module", "open_by_handle_at", "iopl", "ioperm", "reboot", "swapon",
			"swapoff", "acct", "quotactl", "quotactl_fd", "syslog", "settimeofday", "clock_settime",
			"io_uring_setup", "io_uring_enter", "io_uring_register", "clone with namespace flags (CLONE_NEW*)",
		}},
		{"log all, refusing the escapes", `{"defaultAction":"SCMP_ACT_LOG","syscalls":[{"names":["unshare","mount","bpf"],"action":"SCMP_ACT_ERRNO"}]}`, nil,
			nil /* checked below: still the default action */},
		{"allows unshare mount bpf keyctl", `{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read","unshare","mount","bpf","keyctl"],"action":"SCMP_ACT_ALLOW"}]}`, nil,
			[]string{"unshare", "mount", "bpf", "keyctl"}},
		{"clone unconditionally", `{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["clone"],"action":"SCMP_ACT_ALLOW"}]}`, nil,
			[]string{"clone with namespace flags (CLONE_NEW*)"}},
		{"clone without namespaces", `{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["clone"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":2114060288,"op":"SCMP_CMP_MASKED_EQ"}]}]}`, nil,
			nil},
		{"mount with CAP_SYS_ADMIN, as the default profile", `{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["mount","ptrace"],"action":"SCMP_ACT_ALLOW"}]}`, []string{"CAP_SYS_ADMIN"},
			nil},
		{"ptrace, as the default profile", `{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["ptrace","read","write"],"action":"SCMP_ACT_ALLOW"}]}`, nil,
			nil},
		{"narrow", `{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read","write","execve"],"action":"SCMP_ACT_ALLOW"}]}`, nil,
			nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.name+".json")
			if err := os.WriteFile(p, []byte(tc.profile), 0o644); err != nil {
				t.Fatal(err)
			}
			s, err := Seccomp(Options{Profile: p, Arch: "amd64", Capabilities: tc.caps})
			if err != nil {
				t.Fatal(err)
			}
			got := Escapes(s, tc.caps, "amd64")
			if tc.name == "log all, refusing the escapes" {
				if len(got) == 0 || got[0] != "defaultAction SCMP_ACT_LOG" || slices.Contains(got, "unshare") {
					t.Errorf("got %q, want the default action first, and not unshare", got)
				}
				return
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
	for _, builtin := range []string{"default", "strict"} {
		s, err := Seccomp(Options{Profile: builtin, Arch: "amd64"})
		if err != nil {
			t.Fatal(err)
		}
		if got := Escapes(s, nil, "amd64"); len(got) > 0 {
			t.Errorf("%s: %q, want nothing", builtin, got)
		}
	}
}
