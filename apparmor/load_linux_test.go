package apparmor

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/safe-run/safe-run/internal/testenv"
)

// TestGoldensCompile compiles every golden profile with apparmor_parser as
// Load does. The parser compiles without AppArmor in the kernel, for the
// ABI the profile pins, so a profile that compiles here loads in the guest
// (see launcher's TestGuest).
func TestGoldensCompile(t *testing.T) {
	parser, err := findParser("")
	if err != nil {
		testenv.Skip(t, "%v", err)
	}
	files, _ := filepath.Glob("testdata/*.aa")
	if len(files) == 0 {
		t.Fatal("no golden profiles in testdata")
	}
	for _, f := range files {
		text, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		policy, err := compile(t.Context(), parser, &Profile{Name: f, Policy: string(text)})
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		t.Logf("%s: %d bytes of binary policy", f, len(policy))
	}
}

func TestCompileError(t *testing.T) {
	parser, err := findParser("")
	if err != nil {
		testenv.Skip(t, "%v", err)
	}
	_, err = compile(t.Context(), parser, &Profile{Name: "safe-run-bad", Policy: "abi <abi/3.0>,\nprofile safe-run-bad {\n  /x rwz,\n}\n"})
	if err == nil || !strings.HasPrefix(err.Error(), "compiling AppArmor profile safe-run-bad with "+parser+": exit status 1: ") ||
		!strings.Contains(err.Error(), "line 3") {
		t.Errorf("got %v, want the parser's error for line 3", err)
	}
}

func TestCacheKey(t *testing.T) {
	parser := filepath.Join(t.TempDir(), "apparmor_parser")
	os.WriteFile(parser, []byte("v1"), 0o755)
	features := t.TempDir()
	os.MkdirAll(filepath.Join(features, "domain"), 0o755)
	os.WriteFile(filepath.Join(features, "domain", "stack"), []byte("yes\n"), 0o644)
	key := func(policy string) string {
		t.Helper()
		k, err := cacheKey(policy, parser, features)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	a := key("profile a {}")
	if key("profile a {}") != a {
		t.Error("the same inputs give different keys")
	}
	if key("profile b {}") == a {
		t.Error("another policy gives the same key")
	}
	os.WriteFile(filepath.Join(features, "domain", "stack"), []byte("no\n"), 0o644)
	if key("profile a {}") == a {
		t.Error("other kernel features give the same key")
	}
	b := key("profile a {}")
	os.WriteFile(parser, []byte("v2, longer"), 0o755)
	if key("profile a {}") == b {
		t.Error("another parser gives the same key")
	}
}

func TestCheckInstalled(t *testing.T) {
	dir := t.TempDir()
	p := &Profile{Name: "safe-run-web", Policy: "profile safe-run-web {}\n", Manifest: "/etc/safe-run/web.toml"}
	err := checkInstalled(p, dir)
	want := "AppArmor profile not installed: safe-run-web is not installed; loading AppArmor profiles needs root, so install it once as root: safe-run apparmor install /etc/safe-run/web.toml"
	if !errors.Is(err, ErrNotInstalled) || err.Error() != want {
		t.Errorf("nothing installed: got %v, want %s", err, want)
	}
	os.WriteFile(filepath.Join(dir, "safe-run-web"), []byte("profile safe-run-web { capability, }\n"), 0o644)
	err = checkInstalled(p, dir)
	want = "AppArmor profile not installed: safe-run-web in " + dir + "/safe-run-web is not the one the manifest gives; loading AppArmor profiles needs root, so install it once as root: safe-run apparmor install /etc/safe-run/web.toml"
	if !errors.Is(err, ErrNotInstalled) || err.Error() != want {
		t.Errorf("another profile installed: got %v, want %s", err, want)
	}
	os.WriteFile(filepath.Join(dir, "safe-run-web"), []byte(p.Policy), 0o644)
	if err := checkInstalled(p, dir); err != nil {
		t.Errorf("the same profile installed: %v", err)
	}
}

// TestCachedPolicyChecksum: a cached policy that a disk or a hand changed
// is reported damaged, never returned to be loaded.
func TestCachedPolicyChecksum(t *testing.T) {
	file := filepath.Join(t.TempDir(), "key")
	policy := []byte("compiled policy \x00\x01\x02")
	if err := writeCached(file, policy); err != nil {
		t.Fatal(err)
	}
	if got, err := readCached(file); err != nil || string(got) != string(policy) {
		t.Fatalf("readCached: %q, %v", got, err)
	}
	kept, _ := os.ReadFile(file)
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"a flipped bit", append([]byte{kept[0] ^ 1}, kept[1:]...)},
		{"cut short", kept[:len(kept)-1]},
		{"only a checksum", kept[len(kept)-32:]},
		{"empty", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.WriteFile(file, tc.data, 0o600)
			_, err := readCached(file)
			if !errors.Is(err, errDamagedCache) || err.Error() != file+": damaged (its checksum does not match)" {
				t.Errorf("readCached: %v", err)
			}
		})
	}
	os.Remove(file)
	if _, err := readCached(file); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("no file: %v", err)
	}
}
