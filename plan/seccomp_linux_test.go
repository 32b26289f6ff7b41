package plan

import (
	"errors"
	"io/fs"
	"path/filepath"
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
