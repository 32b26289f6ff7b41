package plan

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/safe-run/safe-run/host"
	"github.com/safe-run/safe-run/manifest"
)

// TestSeccompProfileErrors: a custom profile's mistakes reach the caller
// at their places in the profile, once each (not also at the manifest's
// security.seccomp line), and a missing profile is reported at that line
// with its cause still visible to errors.Is.
func TestSeccompProfileErrors(t *testing.T) {
	dir, err := filepath.Abs("../profiles/testdata")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, profile string
		check         func(t *testing.T, err error)
	}{
		{"bad profile", "bad/actions.json", func(t *testing.T, err error) {
			fields := manifest.FieldErrors(err)
			if len(fields) == 0 || fields[0].File != filepath.Join(dir, "bad/actions.json") || fields[0].Column == 0 {
				t.Fatalf("got %v, want the profile's own positions", err)
			}
			var fe *manifest.FieldError
			if !errors.As(err, &fe) || fe.Path != "defaultAction" {
				t.Errorf("errors.As: got %+v, want the profile's defaultAction", fe)
			}
		}},
		{"missing profile", "missing.json", func(t *testing.T, err error) {
			fields := manifest.FieldErrors(err)
			if len(fields) != 1 || fields[0].File != "e.toml" || fields[0].Path != "security.seccomp" || fields[0].Line == 0 {
				t.Fatalf("got %v, want one error at e.toml's security.seccomp", err)
			}
			if !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("got %v, want an error that is fs.ErrNotExist", err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := "version = 1\nname = \"e\"\n[image]\nrootfs = \"r\"\n[process]\ncommand = [\"/x\"]\n[security]\nseccomp = \"" + tc.profile + "\"\n"
			svc, err := manifest.Parse("e.toml", dir, []byte(text))
			if err != nil {
				t.Fatal(err)
			}
			_, err = SeccompProfile(svc, host.Probe())
			if err == nil {
				t.Fatal("no error")
			}
			tc.check(t, err)
		})
	}
}

// TestSeccompEscapesRefused: a custom profile that lets an escape through (here: allows
// everything) is refused as no filter at all (SR012), unless [insecure] acknowledges it; a probe
// ran `unshare -U` under one with no acknowledgement.
func TestSeccompEscapesRefused(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "allow.json"), []byte(`{"defaultAction":"SCMP_ACT_ALLOW"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	const text = "version = 1\nname = \"e\"\n[image]\nrootfs = \"r\"\n[process]\ncommand = [\"/x\"]\n[security]\nseccomp = \"allow.json\"\n"
	for _, tc := range []struct {
		name, extra, want string
	}{
		{"refused", "", "allow.json lets through what the default profile refuses as escapes: defaultAction SCMP_ACT_ALLOW, unshare"},
		{"acknowledged", "[insecure]\nreason = \"the test\"\nallow = [\"seccomp_unconfined\"]\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc, err := manifest.Parse("e.toml", dir, []byte(text+tc.extra))
			if err != nil {
				t.Fatal(err)
			}
			_, err = SeccompProfile(svc, host.Probe())
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("acknowledged: %v", err)
			case tc.want != "" && (err == nil || !strings.HasPrefix(err.Error(), "e.toml:8: security.seccomp: ") || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("got %v, want %q", err, tc.want)
			}
		})
	}
}
