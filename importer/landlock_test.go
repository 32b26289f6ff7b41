package importer

import (
	"strings"
	"testing"

	"github.com/safe-run/safe-run/manifest"
)

// TestLandlockBind: Landlock lets a service bind only its published
// container ports and landlock_bind, so an imported service that listens
// without publishing must get its ports there, or a TODO that says so
// (found by a black-box probe: redis without -p failed with EACCES).
func TestLandlockBind(t *testing.T) {
	tests := []struct {
		name, line string
		bind       []int  // landlock_bind of the loaded manifest
		todo       bool   // the TODO comment on landlock_bind is written
		note       string // a note whose text has this
	}{
		{"image's port", "-m 64m --cpus 0.5 --user redis redis:7 redis-server --save ''", []int{6379}, false, "landlock_bind = [6379] filled in"},
		{"expose", "-m 64m --cpus 0.5 --expose 8080 --expose 9000-9001/tcp --expose 53/udp alpine", []int{8080, 9000, 9001}, false, "written into [security] landlock_bind"},
		{"expose already published", "-m 64m --cpus 0.5 --expose 8080 -p 8080:8080 alpine", nil, false, ""},
		{"published", "-m 64m --cpus 0.5 -p 127.0.0.1:8080:8080 alpine", nil, false, ""},
		{"nothing", "-m 64m --cpus 0.5 alpine", nil, true, "it publishes none: if it listens, list its TCP ports there"},
		{"range too long", "-m 64m --cpus 0.5 --expose 1-1000 alpine", nil, true, "a range of 1000 ports is not carried over"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args, err := SplitCommand(tc.line)
			if err != nil {
				t.Fatal(err)
			}
			r, err := DockerRun(args, Options{Dir: "/srv"})
			if err != nil {
				t.Fatal(err)
			}
			checkBind(t, r, tc.bind, tc.todo, tc.note)
		})
	}
	// compose's expose: is docker's --expose.
	rs, err := Compose([]byte("services:\n  web:\n    image: alpine\n    mem_limit: 64m\n    cpus: 0.5\n    expose: [3000, \"3001\"]\n"), "compose.yml", Options{Dir: "/srv"})
	if err != nil {
		t.Fatal(err)
	}
	checkBind(t, rs[0], []int{3000, 3001}, false, "written into [security] landlock_bind")
}

func checkBind(t *testing.T, r *Result, bind []int, todo bool, note string) {
	t.Helper()
	svc, err := manifest.Parse("x.toml", "/srv", r.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	if !equalInts(svc.Security.LandlockBind, bind) {
		t.Errorf("landlock_bind = %v, want %v\n%s", svc.Security.LandlockBind, bind, r.Manifest)
	}
	if got := strings.Contains(string(r.Manifest), "# TODO: Landlock lets the service bind"); got != todo {
		t.Errorf("TODO on landlock_bind written: %v, want %v\n%s", got, todo, r.Manifest)
	}
	if note != "" && !hasNote(r, note) {
		t.Errorf("no note with %q: %+v", note, r.Notes)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func hasNote(r *Result, text string) bool {
	for _, n := range r.Notes {
		if strings.Contains(n.Flag+": "+n.Text, text) {
			return true
		}
	}
	return false
}
