package ops

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/safe-run/safe-run/internal/proc"
)

func TestPSListsRunningAndCrashed(t *testing.T) {
	root := t.TempDir()
	// This test's pid with another start time stands for a reused one.
	start := proc.Start(os.Getpid())
	for _, s := range []Status{
		{Name: "web", State: StateRunning, SupervisorPID: os.Getpid(), SupervisorStart: start + 1, Started: time.Now()},
		{Name: "live", State: StateRunning, SupervisorPID: os.Getpid(), SupervisorStart: start, Started: time.Now(), Unit: "live.service", Manifest: "/srv/e\x1b[2J.toml"},
		{Name: "db", State: StateRunning, SupervisorPID: 1 << 30, Started: time.Now(), Limits: Limits{Memory: 64 << 20, CPUs: 0.5, Pids: 64}},
	} {
		dir := filepath.Join(root, s.Name)
		if err := os.Mkdir(dir, 0o711); err != nil {
			t.Fatal(err)
		}
		if err := WriteStatus(dir, &s); err != nil {
			t.Fatal(err)
		}
	}
	os.Mkdir(filepath.Join(root, "net"), 0o711) // no service's
	var out bytes.Buffer
	if err := PS(&out, root, FormatJSON, false); err != nil {
		t.Fatal(err)
	}
	var got []PSEntry
	if err := json.Unmarshal(out.Bytes(), &got); err != nil || len(got) != 1 || got[0].Name != "live" || got[0].Unit != "live.service" {
		t.Errorf("ps without -a: want only live:\n%s", out.String())
	}
	out.Reset()
	if err := PS(&out, root, FormatJSON, true); err != nil {
		t.Fatal(err)
	}
	got = nil
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Name != "db" || !got[0].Crashed || got[0].Limits.Pids != 64 {
		t.Errorf("ps -a: %+v", got)
	}
	out.Reset()
	if err := PS(&out, root, FormatTable, true); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "crashed (supervisor pid 1073741824 died)") || !strings.Contains(out.String(), "mem 64.0MiB,cpus 0.5,pids 64") ||
		!strings.Contains(out.String(), "  live.service\n") || !strings.Contains(out.String(), `/srv/e\x1b[2J.toml`) || strings.Contains(out.String(), "\x1b") {
		t.Errorf("ps -a table:\n%s", out.String())
	}
	if _, err := Find(root, []string{"db", "nope"}); err == nil ||
		!strings.Contains(err.Error(), "db: no such running service: its supervisor (pid 1073741824) died, and left its container, cgroups and state directory "+filepath.Join(root, "db")+": start it again, which cleans them up first, then safe-run stop db if it should not run") ||
		!strings.Contains(err.Error(), "nope: no such running service in "+root+" (see safe-run ps)") {
		t.Errorf("Find: %v", err)
	}
}

func TestStatusVersion(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, StatusFile), []byte(`{"version":2,"name":"web"}`), 0o644)
	if _, err := ReadStatus(dir); err == nil || !strings.Contains(err.Error(), "status of version 2, this safe-run reads version 1") {
		t.Errorf("error %v", err)
	}
}

// A name no service can have is refused before it becomes a path: "../x"
// would read the status file of x beside the state root (and dial its
// socket), or the journal of x beside the journal directory.
func TestNamesChecked(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "state")
	for _, dir := range []string{root, filepath.Join(base, "evil")} {
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := WriteStatus(filepath.Join(base, "evil"), &Status{Name: "evil", State: StateRunning, SupervisorPID: os.Getpid(), SupervisorStart: proc.Start(os.Getpid())}); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(base, "evil.jsonl"), []byte(`{"time":"2026-01-01T00:00:00Z","service":"evil","kind":"start"}`+"\n"), 0o600)
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"../evil", false}, {"a/b", false}, {"", false}, {"OPS-SLEEP", false}, {".", false}, {"..", false},
		{"-x", false}, {strings.Repeat("a", 64), false},
		{"web", true}, {"a.b_c-1", true}, {strings.Repeat("a", 63), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckName(tc.name)
			if tc.ok != (err == nil) {
				t.Fatalf("CheckName(%q) = %v", tc.name, err)
			}
			if tc.ok {
				return
			}
			want := fmt.Sprintf("%q: not a valid service name (a name is 1-63 lowercase letters, digits, '_', '.', '-', starting with a letter or digit, as the manifest's name; see safe-run ps)", tc.name)
			if err.Error() != want {
				t.Errorf("CheckName(%q):\n got %v\nwant %s", tc.name, err, want)
			}
			if list, err := Find(root, []string{tc.name}); len(list) != 0 || !errors.Is(err, ErrBadName) {
				t.Errorf("Find(%q) = %v, %v", tc.name, list, err)
			}
			if evs, err := ReadEvents(root, []string{tc.name}, time.Time{}); len(evs) != 0 || !errors.Is(err, ErrBadName) {
				t.Errorf("ReadEvents(%q) = %v, %v", tc.name, evs, err)
			}
		})
	}
}

// TestCrashedSaysTheFix: stop or kill of a service whose supervisor died
// says what it left and the command that cleans it up (probe OPS #9: it
// pointed back to ps -a).
func TestCrashedSaysTheFix(t *testing.T) {
	cg := t.TempDir()
	os.WriteFile(filepath.Join(cg, "cgroup.procs"), []byte("12\n34\n"), 0o644)
	s := &Status{Name: "web", SupervisorPID: 42, Manifest: "/srv/web.toml", StateDir: "/run/safe-run/web", Cgroups: map[string]string{"": cg}}
	want := "its supervisor (pid 42) died, and left its container, cgroups (with 2 process(es) of it still running in them) and state directory /run/safe-run/web: start it again (safe-run /srv/web.toml), which cleans them up first, then safe-run stop web if it should not run"
	if got := crashed(s); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}
