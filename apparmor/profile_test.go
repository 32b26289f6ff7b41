package apparmor

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/safe-run/safe-run/manifest"
	"github.com/safe-run/safe-run/policy"

	"github.com/safe-run/safe-run/internal/testenv"
)

// goldens are the manifests in testdata whose profiles are pinned in
// testdata/NAME.aa.
func goldens(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("testdata/*.toml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in testdata: %v", err)
	}
	return files
}

func load(t *testing.T, path string) *manifest.Service {
	t.Helper()
	svc, err := manifest.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := policy.Enforce(svc); err != nil {
		t.Fatalf("%s must pass the policy: %v", path, err)
	}
	return svc
}

func TestGenerateGolden(t *testing.T) {
	for _, file := range goldens(t) {
		name := strings.TrimSuffix(filepath.Base(file), ".toml")
		t.Run(name, func(t *testing.T) {
			got, err := Generate(load(t, file))
			if err != nil {
				t.Fatal(err)
			}
			testenv.Golden(t, filepath.Join("testdata", name+".aa"), []byte(got))
		})
	}
}

// TestGenerateIsSpecific checks, beyond the goldens, the properties the
// profile exists for, so that an -update cannot lose them unnoticed.
func TestGenerateIsSpecific(t *testing.T) {
	profile := func(file string) string {
		t.Helper()
		text, err := Generate(load(t, file))
		if err != nil {
			t.Fatal(err)
		}
		return text
	}
	min, caps, mounts, complain := profile("testdata/minimal.toml"), profile("testdata/netcaps.toml"),
		profile("testdata/mounts.toml"), profile("testdata/complain.toml")
	for _, tc := range []struct {
		name, text string
		has, lacks []string
	}{
		{"every profile pins the ABI and denies escapes", min,
			[]string{"abi <abi/3.0>,\n", "profile safe-run-minimal flags=(attach_disconnected,mediate_deleted) {",
				"/{,**} rmix,", "audit deny mount,", "audit deny umount /{,**},", "audit deny pivot_root,", "audit deny /proc/sys/** wl,",
				"audit deny /proc/sysrq-trigger rwl,", "audit deny /proc/kcore rwl,", "audit deny /sys/** wl,",
				"ptrace (read, trace, readby, tracedby) peer=safe-run-minimal,", "signal (send, receive) peer=safe-run-minimal,"},
			[]string{"include", "capability", "network inet raw", "network packet", "\n  file,", "\n  network,", "audit deny umount,", "/{,**} w"}},
		{"only the declared capabilities", caps,
			[]string{"capability net_bind_service,\n  capability net_raw,\n", "network inet raw,", "network packet,"},
			[]string{"capability sys_admin"}},
		{"writable mounts are writable and not executable", mounts,
			[]string{"/tmp/{,**} rwlk,\n  audit deny /tmp/** mx,", "/var/lib/app/{,**} rwlk,\n  audit deny /var/lib/app/** mx,",
				`"/var/spool/app\[1\]/{,**}" rwlk,`, "/var/cache/jit/{,**} rwlk,\n\n", "audit deny /run/secrets/** wl,"},
			[]string{"/etc/app/", "seed data/", "audit deny /var/cache/jit"}},
		{"complain mode", complain,
			// Only quiet deny rules hold in complain mode.
			[]string{"flags=(attach_disconnected,mediate_deleted,complain)", "\n  deny mount,", "\n  deny /tmp/** mx,", "\n  deny /proc/sys/** wl,"},
			[]string{"audit deny"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, s := range tc.has {
				if !strings.Contains(tc.text, s) {
					t.Errorf("profile lacks %q:\n%s", s, tc.text)
				}
			}
			for _, s := range tc.lacks {
				if strings.Contains(tc.text, s) {
					t.Errorf("profile has %q:\n%s", s, tc.text)
				}
			}
		})
	}
}

func TestQuotePath(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{"/tmp", "/tmp/**", ""},
		{"/var/lib/app-1.2_x+y", "/var/lib/app-1.2_x+y/**", ""},
		{"/srv/my data", `"/srv/my data/**"`, ""},
		{"/srv/@{HOME}", `"/srv/@\{HOME\}/**"`, ""},
		{`/a"b\c*?[]^`, `"/a\"b\\c\*\?\[\]\^/**"`, ""},
		{"/a,b#c", `"/a,b#c/**"`, ""},
		{"/a\nb", "", `"/a\nb" holds a control character, which an AppArmor rule cannot name (rename the target)`},
	} {
		got, err := quotePath(tc.in, "/**")
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("quotePath(%q): error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("quotePath(%q) = %s, %v; want %s", tc.in, got, err, tc.want)
		}
	}
}

func parse(t *testing.T, body string) *manifest.Service {
	t.Helper()
	svc, err := manifest.Parse("web.toml", "/srv/web", []byte("version = 1\nname = \"web\"\n[image]\nrootfs = \"rootfs\"\n[process]\ncommand = [\"/bin/web\"]\n[resources]\nmemory = \"64M\"\ncpus = 1.0\n"+body))
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func TestForService(t *testing.T) {
	enabled := Host{Enabled: true, Loaded: map[string]string{"docker-default": "enforce"}}
	for _, tc := range []struct {
		name     string
		body     string
		host     Host
		profile  string // name; "" for none
		policy   bool   // generated text to load
		note     string
		err      string
		sentinel error
	}{
		{name: "generated", host: enabled, profile: "safe-run-web", policy: true},
		{name: "generated, complain", body: "[security]\napparmor_mode = \"complain\"\n", host: enabled, profile: "safe-run-web", policy: true,
			note: "AppArmor profile safe-run-web in COMPLAIN mode: denials are logged, not enforced (security.apparmor_mode)"},
		{name: "loaded profile", body: "[security]\napparmor = \"docker-default\"\n", host: enabled, profile: "docker-default"},
		{name: "loaded profile, list unreadable", body: "[security]\napparmor = \"other\"\n", host: Host{Enabled: true}, profile: "other"},
		{name: "profile not loaded", body: "[security]\napparmor = \"nginx\"\n", host: enabled, sentinel: ErrNotLoaded,
			err: `AppArmor profile not loaded: web.toml:11: security.apparmor: profile "nginx" is not loaded in the kernel (load it first, e.g. apparmor_parser -r /etc/apparmor.d/nginx, or use apparmor = "generated")`},
		{name: "complain with a loaded profile", body: "[security]\napparmor = \"docker-default\"\napparmor_mode = \"complain\"\n", host: enabled,
			err: `web.toml:12: security.apparmor_mode: "complain" applies to the generated profile; "docker-default" keeps the mode it was loaded in (load it in complain mode with apparmor_parser -C, or remove apparmor_mode)`},
		{name: "unconfined", body: "[security]\napparmor = \"unconfined\"\n[insecure]\nreason = \"x\"\nallow = [\"apparmor_unconfined\"]\n", host: enabled,
			note: "AppArmor UNCONFINED ([insecure] apparmor_unconfined)"},
		{name: "unconfined, no AppArmor", body: "[security]\napparmor = \"unconfined\"\n[insecure]\nreason = \"x\"\nallow = [\"apparmor_unconfined\"]\n"},
		{name: "no AppArmor", note: "AppArmor not enforced: this kernel has no AppArmor"},
		{name: "no AppArmor, required", body: "[security]\napparmor_required = true\n", sentinel: ErrNotEnabled,
			err: "AppArmor is not enabled: web.toml:11: security.apparmor_required: this kernel has no AppArmor (run on a kernel with AppArmor enabled, or set apparmor_required = false)"},
		{name: "securityfs not mounted", host: Host{NoSecurityfs: true},
			note: "AppArmor not enforced: AppArmor is in this kernel, but securityfs is not mounted (as root: mount -t securityfs securityfs /sys/kernel/security)"},
		{name: "securityfs not mounted, required", body: "[security]\napparmor_required = true\n", host: Host{NoSecurityfs: true}, sentinel: ErrNotEnabled,
			err: "AppArmor is not enabled: web.toml:11: security.apparmor_required: AppArmor is in this kernel, but securityfs is not mounted (as root: mount -t securityfs securityfs /sys/kernel/security, or set apparmor_required = false)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, note, err := ForService(parse(t, tc.body), tc.host)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("error:\n got %v\nwant %s", err, tc.err)
				}
				if tc.sentinel != nil && !errors.Is(err, tc.sentinel) {
					t.Errorf("error %v does not match %v", err, tc.sentinel)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if note != tc.note {
				t.Errorf("note %q, want %q", note, tc.note)
			}
			switch {
			case tc.profile == "" && p != nil:
				t.Errorf("profile %+v, want none", p)
			case tc.profile != "" && (p == nil || p.Name != tc.profile || (p.Policy != "") != tc.policy):
				t.Errorf("profile %+v, want %s (generated: %v)", p, tc.profile, tc.policy)
			}
		})
	}
}

func TestGeneratedNeedsGenerated(t *testing.T) {
	_, err := Generated(parse(t, "[security]\napparmor = \"docker-default\"\n"))
	want := `web.toml:11: security.apparmor: is "docker-default", so safe-run generates no profile for web (set apparmor = "generated")`
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}

func TestGenerateBadTarget(t *testing.T) {
	_, err := Generate(parse(t, "[[mounts]]\ntype = \"tmpfs\"\ntarget = \"/a\\tb\"\n"))
	want := `web.toml:12: mounts[0].target: "/a\tb" holds a control character, which an AppArmor rule cannot name (rename the target)`
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}
