package policy

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/safe-run/safe-run/manifest"
)

func TestSeccompEscapes(t *testing.T) {
	dir := t.TempDir()
	base := "version = 1\nname = \"web\"\n\n[image]\nrootfs = \"rootfs\"\n\n[process]\ncommand = [\"/bin/true\"]\n\n[security]\nseccomp = \"allow.json\"\n\n[resources]\nmemory = \"64M\"\ncpus = 1\n"
	for _, tc := range []struct {
		name, extra string
		escapes     []string
		want        string
	}{
		{"refused", "", []string{"defaultAction SCMP_ACT_ALLOW", "unshare"},
			`web.toml:11: security.seccomp: the profile allow.json lets through what the default profile refuses as escapes: defaultAction SCMP_ACT_ALLOW, unshare; it counts as no filter [SR012 seccomp-unconfined] (use seccomp = "default", or record a profile with safe-run profile record, or acknowledge it: [insecure] allow = ["seccomp_unconfined"] with a reason)`},
		{"acknowledged", "\n[insecure]\nreason = \"a legacy tool\"\nallow = [\"seccomp_unconfined\"]\n", []string{"unshare"}, ""},
		{"nothing escapes", "", nil, ""},
		{"many", "", []string{"defaultAction SCMP_ACT_ALLOW", "unshare", "setns", "clone3", "mount", "umount", "umount2", "bpf"},
			`web.toml:11: security.seccomp: the profile allow.json lets through what the default profile refuses as escapes: defaultAction SCMP_ACT_ALLOW, unshare, setns, clone3, mount, umount and 2 more; it counts as no filter [SR012 seccomp-unconfined] (use seccomp = "default", or record a profile with safe-run profile record, or acknowledge it: [insecure] allow = ["seccomp_unconfined"] with a reason)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, "web.toml")
			if err := os.WriteFile(p, []byte(base+tc.extra), 0o644); err != nil {
				t.Fatal(err)
			}
			svc, err := manifest.Load(p)
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			if err := SeccompEscapes(svc, tc.escapes); err != nil {
				got = strings.ReplaceAll(err.Error(), dir+"/", "")
			}
			if got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
			// check files it under its rule, not as an unusable path.
			if tc.want != "" {
				r := Check(svc, nil)
				r.Refuse(svc, SeccompEscapes(svc, tc.escapes))
				if !slices.ContainsFunc(r.Findings, func(f Finding) bool { return f.Rule.ID == "SR012" && f.Path == "security.seccomp" && !f.Accepted }) {
					t.Errorf("check's findings %+v, want a refused SR012 at security.seccomp", r.Findings)
				}
			}
		})
	}
}
