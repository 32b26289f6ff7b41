package manifest

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// FuzzParse feeds the loader arbitrary text, seeded with every manifest in
// the repository's testdata and example directories. make test runs it for
// 15s (make fuzz); longer by hand:
//
//	go test ./manifest -run '^$' -fuzz '^FuzzParse$' -fuzztime 10m
func FuzzParse(f *testing.F) {
	f.Add([]byte(base))
	f.Add([]byte(""))
	err := filepath.WalkDir("..", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "rootfs") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(p, ".toml") &&
			(strings.Contains(p, "testdata"+string(filepath.Separator)) || strings.Contains(p, "example"+string(filepath.Separator))) {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			f.Add(data)
		}
		return nil
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		src := string(data)
		nlines := strings.Count(src, "\n") + 1
		svc, err := Parse("fuzz.toml", "/srv/fuzz", data)
		if err != nil {
			checkErrors(t, err, nlines)
		} else {
			checkService(t, svc)
		}
		checkIndex(t, src, nlines)
	})
}

// checkErrors: every error Parse returns is a list of FieldErrors, each
// with the file, a message and a line within the file (0: not tied to a
// line), sorted by line with the unplaced ones last, one per key.
func checkErrors(t *testing.T, err error, nlines int) {
	fields := FieldErrors(err)
	if len(fields) == 0 {
		t.Fatalf("error is not a list of FieldErrors: %#v", err)
	}
	var lines []string
	seen := map[string]bool{}
	last := 0
	for _, f := range fields {
		if f.File != "fuzz.toml" || f.Msg == "" {
			t.Errorf("incomplete FieldError %+v", f)
		}
		if f.Line < 0 || f.Line > nlines {
			t.Errorf("line %d outside 1..%d: %v", f.Line, nlines, f)
		}
		if f.Line == 0 {
			last = 1 << 30
		} else if f.Line < last {
			t.Errorf("not sorted by line: %v after line %d", f, last)
		} else {
			last = f.Line
		}
		if f.Path != "" && seen[f.Path] {
			t.Errorf("two errors for %s", f.Path)
		}
		seen[f.Path] = true
		lines = append(lines, f.Error())
	}
	if got := strings.Join(lines, "\n"); got != err.Error() {
		t.Errorf("Error() is not the FieldErrors one per line:\n%s\n---\n%s", err, got)
	}
}

// checkService: what loads is complete and consistent.
func checkService(t *testing.T, s *Service) {
	if s.Version != 1 {
		t.Errorf("version %d loaded", s.Version)
	}
	if len(s.Name) == 0 || len(s.Name) > 63 || !namePattern().MatchString(s.Name) {
		t.Errorf("name %q loaded", s.Name)
	}
	sources := 0
	for _, v := range []string{s.Image.Rootfs, s.Image.OCI, s.Image.Archive, s.Image.Ref} {
		if v != "" {
			sources++
		}
	}
	if sources != 1 {
		t.Errorf("%d image sources loaded: %+v", sources, s.Image)
	}
	if s.Image.Ref != "" && !ValidRef(s.Image.Ref) {
		t.Errorf("image.ref %q loaded", s.Image.Ref)
	}
	if s.Image.Rootfs != "" && (!filepath.IsAbs(s.Image.Rootfs) || len(s.Process.Command) == 0) {
		t.Errorf("rootfs %q with command %q loaded", s.Image.Rootfs, s.Process.Command)
	}
	if s.Resources.Pids < 1 || s.Resources.CPUs < 0 || s.Resources.CPUs != s.Resources.CPUs || s.Process.StopTimeout <= 0 {
		t.Errorf("resources %+v, stop_timeout %v loaded", s.Resources, s.Process.StopTimeout)
	}
	if n := s.Process.StopSignal.Number; n == 9 || n == 19 || n == 0 {
		t.Errorf("stop signal %v loaded", s.Process.StopSignal)
	}
	for i, m := range s.Mounts {
		if !strings.HasPrefix(m.Target, "/") || m.Target == "/" {
			t.Errorf("mounts[%d] target %q loaded", i, m.Target)
		}
		switch m.Type {
		case MountTmpfs:
			if m.Size <= 0 || m.Mode == 0 {
				t.Errorf("mounts[%d] tmpfs without its defaults: %+v", i, m)
			}
		case MountBind, MountVolume:
			if m.ReadOnly == nil || m.Source == "" {
				t.Errorf("mounts[%d] without its defaults: %+v", i, m)
			}
		default:
			t.Errorf("mounts[%d] type %q loaded", i, m.Type)
		}
	}
	if len(s.Insecure.Allow) > 0 && strings.TrimSpace(s.Insecure.Reason) == "" {
		t.Errorf("[insecure] without a reason loaded")
	}
}

// checkIndex holds the line index to what BurntSushi/toml parses: for text
// the parser accepts, every line is within the file, and every top-level
// key the parser found is indexed on a line that names it. (The index is
// not compared with the parser's own positions: it keeps none for keys.)
func checkIndex(t *testing.T, src string, nlines int) {
	var raw map[string]any
	md, err := toml.Decode(src, &raw)
	if err != nil {
		return // the index runs only on text the parser accepted
	}
	ix := indexLines(src)
	for path, l := range ix {
		if l < 1 || l > nlines {
			t.Errorf("index: %s at line %d, outside 1..%d", path, l, nlines)
		}
	}
	if strings.Contains(src, `\`) {
		return // an escaped key is spelled differently in the text
	}
	lines := strings.Split(src, "\n")
	for _, k := range md.Keys() {
		if len(k) != 1 {
			continue
		}
		path := joinKey("", k[0])
		l, ok := ix[path]
		if !ok {
			t.Errorf("index: top-level key %s not indexed", path)
			continue
		}
		if l >= 1 && l <= len(lines) && !strings.Contains(lines[l-1], k[0]) {
			t.Errorf("index: top-level key %s at line %d: %q", path, l, lines[l-1])
		}
	}
}
