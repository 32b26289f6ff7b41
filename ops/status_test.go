package ops

import (
	"bytes"
	"encoding/json"
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
		{Name: "live", State: StateRunning, SupervisorPID: os.Getpid(), SupervisorStart: start, Started: time.Now(), Unit: "live.service"},
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
		!strings.Contains(out.String(), "  live.service\n") {
		t.Errorf("ps -a table:\n%s", out.String())
	}
	if _, err := Find(root, []string{"db", "nope"}); err == nil ||
		!strings.Contains(err.Error(), "db: no such running service: its supervisor (pid 1073741824) died") ||
		!strings.Contains(err.Error(), "nope: no such running service (see safe-run ps)") {
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
