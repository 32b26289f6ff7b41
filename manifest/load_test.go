package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/safe-run/safe-run/internal/testenv"
)

func manifests(t *testing.T, kind string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "manifests", kind, "*.toml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no %s manifests in testdata: %v", kind, err)
	}
	return files
}

// TestGoodManifests loads every good manifest and pins the Service it
// decodes to, defaults filled in and relative paths resolved. The absolute
// testdata directory is written as $DIR so the goldens do not depend on
// where the repository lives.
func TestGoodManifests(t *testing.T) {
	for _, path := range manifests(t, "good") {
		t.Run(filepath.Base(path), func(t *testing.T) {
			svc, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			if !namePattern().MatchString(svc.Name) {
				t.Errorf("name %q", svc.Name)
			}
			data, err := json.MarshalIndent(svc, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			dir, err := filepath.Abs(filepath.Dir(path))
			if err != nil {
				t.Fatal(err)
			}
			data = bytes.ReplaceAll(data, []byte(dir), []byte("$DIR"))
			testenv.Golden(t, strings.TrimSuffix(path, ".toml")+".json", append(data, '\n'))
		})
	}
}

// TestBadManifests pins the whole error of every bad manifest, as
// safe-run prints it: one line per problem.
func TestBadManifests(t *testing.T) {
	for _, path := range manifests(t, "bad") {
		t.Run(filepath.Base(path), func(t *testing.T) {
			_, err := Load(path)
			if err == nil {
				t.Fatal("loads without error")
			}
			fields := FieldErrors(err)
			if len(fields) == 0 {
				t.Fatalf("not FieldErrors: %v", err)
			}
			var lines []string
			for _, f := range fields {
				if f.File != path {
					t.Errorf("File = %q, want %q", f.File, path)
				}
				lines = append(lines, f.Error())
			}
			if got := strings.Join(lines, "\n"); got != err.Error() {
				t.Errorf("FieldErrors and Error() disagree:\n%s\n---\n%s", got, err)
			}
			testenv.Golden(t, strings.TrimSuffix(path, ".toml")+".err", []byte(err.Error()+"\n"))
		})
	}
}

// TestDefaults checks the secure defaults a minimal manifest gets, and
// each mount type's own.
func TestDefaults(t *testing.T) {
	svc, err := Load("testdata/manifests/good/defaults.toml")
	if err != nil {
		t.Fatal(err)
	}
	p, sec, r := svc.Process, svc.Security, svc.Resources
	for _, c := range []struct {
		what string
		ok   bool
	}{
		{"init", p.Init},
		{"no tty", !p.TTY},
		{"no notify", !p.Notify},
		{"stop_signal SIGTERM", p.StopSignal == Signal{"SIGTERM", 15}},
		{"stop_timeout 10s", time.Duration(p.StopTimeout) == 10*time.Second},
		{"restart on-failure", p.Restart == "on-failure"},
		{"no capabilities", len(sec.Capabilities) == 0},
		{"no_new_privileges", sec.NoNewPrivileges},
		{"read_only_rootfs", sec.ReadOnlyRootfs},
		{"seccomp default", sec.Seccomp == "default"},
		{"seccomp_log", sec.SeccompLog},
		{"apparmor generated, enforced, not required", sec.AppArmor == "generated" && sec.AppArmorMode == "enforce" && !sec.AppArmorRequired},
		{"pids 1024", r.Pids == 1024},
		{"network none", svc.Network.Mode == NetworkNone && len(svc.Network.Ports) == 0},
		{"namespaces private", svc.Namespaces == Namespaces{}},
		{"nothing insecure", len(svc.Insecure.Allow) == 0},
		{"bind read-only", *svc.Mounts[0].ReadOnly && !svc.Mounts[0].Writable()},
		{"volume writable", !*svc.Mounts[1].ReadOnly && svc.Mounts[1].Writable()},
		{"tmpfs 64M", svc.Mounts[2].Size == 64<<20},
		{"tmpfs 1777", svc.Mounts[2].Mode == 0o1777},
		{"tmpfs writable", svc.Mounts[2].ReadOnly == nil && svc.Mounts[2].Writable()},
	} {
		if !c.ok {
			t.Errorf("default: %s does not hold", c.what)
		}
	}
	dir, _ := filepath.Abs("testdata/manifests/good")
	if want := filepath.Join(dir, "config"); svc.Mounts[0].Source != want {
		t.Errorf("bind source %q, want %q (relative to the manifest)", svc.Mounts[0].Source, want)
	}
	if want := filepath.Join(dir, "rootfs"); svc.Image.Rootfs != want {
		t.Errorf("rootfs %q, want %q (relative to the manifest)", svc.Image.Rootfs, want)
	}
	if svc.Mounts[1].Source != "data" {
		t.Errorf("volume source %q: a volume name is not a path", svc.Mounts[1].Source)
	}
}

func TestReadOnlyTmpfsIsNotWritable(t *testing.T) {
	svc, err := Load("testdata/manifests/good/forms.toml")
	if err != nil {
		t.Fatal(err)
	}
	if svc.Mounts[1].Writable() {
		t.Error(`a tmpfs with options = ["ro"] is writable`)
	}
}

// TestLoadErrors covers what goes wrong before the TOML: the file itself.
func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.toml")
	if err := os.WriteFile(big, bytes.Repeat([]byte("# padding\n"), maxManifestSize/10+1), 0o644); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo.toml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path, want string
		is         error
	}{
		{filepath.Join(dir, "missing.toml"), "reading manifest: open " + dir + "/missing.toml: no such file or directory", fs.ErrNotExist},
		{dir, "reading manifest " + dir + ": not a regular file (pass the path of a .toml file)", nil},
		{fifo, "reading manifest " + fifo + ": not a regular file (pass the path of a .toml file)", nil},
		{"/dev/zero", "reading manifest /dev/zero: not a regular file (pass the path of a .toml file)", nil},
		{big, "reading manifest " + big + ": larger than 1048576 bytes (a manifest is a short TOML file)", nil},
	}
	for _, tc := range tests {
		t.Run(filepath.Base(tc.path), func(t *testing.T) {
			done := make(chan error, 1)
			go func() {
				_, err := Load(tc.path)
				done <- err
			}()
			var err error
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Load blocks")
			}
			if err == nil || err.Error() != tc.want {
				t.Fatalf("got %v\nwant %s", err, tc.want)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("errors.Is(err, %v) is false", tc.is)
			}
			if len(FieldErrors(err)) != 0 {
				t.Error("a file error is not a FieldError: it has no line or key")
			}
		})
	}
}

func TestFieldErrorFormat(t *testing.T) {
	for _, tc := range []struct {
		e    FieldError
		want string
	}{
		{FieldError{File: "web.toml", Line: 14, Path: "resources.memory", Msg: `"12X" is not a size (use e.g. 512M)`}, `web.toml:14: resources.memory: "12X" is not a size (use e.g. 512M)`},
		{FieldError{File: "web.toml", Path: "version", Msg: "missing (add version = 1)"}, "web.toml: version: missing (add version = 1)"},
		{FieldError{File: "web.toml", Line: 3, Msg: "syntax"}, "web.toml:3: syntax"},
		{FieldError{File: "web.toml", Msg: "bad"}, "web.toml: bad"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
	if FieldErrors(errors.New("plain")) != nil {
		t.Error("FieldErrors of a plain error")
	}
	single := &FieldError{File: "f", Msg: "m"}
	if got := FieldErrors(single); len(got) != 1 || got[0] != single {
		t.Errorf("FieldErrors of one FieldError: %v", got)
	}
}

// TestServiceLineAndErrorf is the API later stages use to report problems
// at the manifest's lines.
func TestServiceLineAndErrorf(t *testing.T) {
	svc, err := Parse("web.toml", "/srv/web", []byte(with("\n[[mounts]]\ntype = \"tmpfs\"\ntarget = \"/a\"\n\n[[mounts]]\ntype = \"bind\"\nsource = \"x\"\ntarget = \"/b\"\n")))
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]int{
		"name": 2, "image.rootfs": 5, "process.command": 8, "process.command[0]": 8,
		"resources.pids":   10, // not set: its table
		"mounts[0].target": 16, "mounts[1]": 18, "mounts[1].source": 20, "mounts[1].read_only": 18,
		"security.seccomp": 0, "": 0,
	} {
		if got := svc.Line(path); got != want {
			t.Errorf("Line(%q) = %d, want %d", path, got, want)
		}
	}
	e := svc.Errorf("mounts[1].source", "%s is refused", "/srv/web/x")
	if got, want := e.Error(), "web.toml:20: mounts[1].source: /srv/web/x is refused"; got != want {
		t.Errorf("Errorf: %q, want %q", got, want)
	}
}

// TestHostileShapes: input shapes that once cost the square of their size
// in this package (a 20 KB manifest took 3 s, a nested array of 100 000
// levels ran out of memory) stay linear. No timing assertion: a regression
// shows as a test that does not finish. (Deeply nested inline tables and
// long dotted keys are still quadratic inside BurntSushi/toml itself,
// BurntSushi/toml#496; not tested here.)
func TestHostileShapes(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		errors     int
	}{
		{"200000 bad elements", edit(`command = ["/bin/web"]`, "command = ["+strings.Repeat("1,", 200000)+"1]"), 200001},
		{"nested arrays", with("x = " + strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + "\n"), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("web.toml", "/srv/web", []byte(tc.text))
			if n := len(FieldErrors(err)); n != tc.errors {
				t.Errorf("%d errors, want %d", n, tc.errors)
			}
		})
	}
}
