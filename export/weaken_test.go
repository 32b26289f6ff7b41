package export

import (
	"strings"
	"testing"
)

// TestWeakeningsWarned: every weakening an export makes is a warning
// (standard error, through the export command) and a comment of the
// output, for every target but systemd, whose unit runs safe-run itself.
func TestWeakeningsWarned(t *testing.T) {
	for _, tc := range []struct {
		manifest, target string
		want             []string // each the start of one warning
	}{
		{"bridged", "docker", []string{"user namespace:", "Landlock:", "egress: docker cannot limit outbound connections to", "ports: docker's DNAT"}},
		{"bridged", "compose", []string{"user namespace:", "Landlock:", "egress: docker cannot limit outbound connections to", "ports: docker's DNAT"}},
		{"bridged", "kubernetes", []string{"Landlock:", "hostUsers:", "seccomp: RuntimeDefault", "pids = 1024", "Service: ClusterIP", "NetworkPolicy: enforced only", "NetworkPolicy: egress to host names"}},
		{"hardened", "docker", []string{"user namespace:", "Landlock:", "binds:", "secrets:"}},
		{"hardened", "compose", []string{"user namespace:", "Landlock:", "binds:", "secrets:"}},
		{"hardened", "kubernetes", []string{"Landlock:", "hostUsers:", "pids = 128", "tmpfs /tmp:", "NetworkPolicy: enforced only"}},
		{"root", "docker", []string{"the process runs as root (uid 0)", "Landlock:"}},
		{"bridged-own", "compose", []string{"ports: docker's DNAT"}}, // egress = "all"
		{"hardened", "systemd", nil},
	} {
		t.Run(tc.manifest+"."+tc.target, func(t *testing.T) {
			out, err := Export(tc.target, prepare(t, tc.manifest), goldenOpts)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				found := false
				for _, got := range out.Warnings {
					found = found || strings.HasPrefix(got, w)
				}
				if !found {
					t.Errorf("no warning starts %q; warnings:\n%s", w, strings.Join(out.Warnings, "\n"))
				}
			}
			if tc.want == nil && len(out.Warnings) > 0 {
				t.Errorf("warnings %q, want none", out.Warnings)
			}
			for _, w := range out.Warnings {
				if !strings.Contains(string(out.Text), "# WARNING: "+w+"\n") {
					t.Errorf("the output does not say %q in a comment", w)
				}
			}
		})
	}
}
