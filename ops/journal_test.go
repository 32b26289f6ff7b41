package ops

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestJournalSinceAndRotation(t *testing.T) {
	dir := t.TempDir()
	j, err := OpenJournal(dir, "web")
	if err != nil {
		t.Fatal(err)
	}
	code := 143
	for _, e := range []struct{ kind, msg string }{{EventStart, "init pid 1"}, {EventReady, "ready"}} {
		if err := j.Add(e.kind, e.msg, nil); err != nil {
			t.Fatal(err)
		}
	}
	mid := time.Now()
	if err := j.Add(EventExit, "stopped with SIGTERM", &code); err != nil {
		t.Fatal(err)
	}
	j.Close()

	// A new reader, after the fact.
	for _, tc := range []struct {
		name  string
		since time.Time
		want  []string
	}{
		{"all", time.Time{}, []string{EventStart, EventReady, EventExit}},
		{"since", mid, []string{EventExit}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			evs, err := ReadEvents(dir, nil, tc.since)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range evs {
				got = append(got, e.Kind)
			}
			if strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Errorf("events %v, want %v", got, tc.want)
			}
		})
	}
	evs, _ := ReadEvents(dir, []string{"web"}, mid)
	if len(evs) != 1 || evs[0].Code == nil || *evs[0].Code != 143 || evs[0].Service != "web" {
		t.Errorf("exit event %+v", evs)
	}
	if evs, _ := ReadEvents(dir, []string{"other"}, time.Time{}); len(evs) != 0 {
		t.Errorf("another service's events: %+v", evs)
	}

	// Rotation keeps the journal bounded: at most the cap, twice.
	j, err = OpenJournal(dir, "web")
	if err != nil {
		t.Fatal(err)
	}
	msg := strings.Repeat("x", 1000)
	for range 3 * JournalCap / 1000 {
		if err := j.Add(EventSeccomp, msg, nil); err != nil {
			t.Fatal(err)
		}
	}
	j.Close()
	for _, p := range []string{"web.jsonl", "web.jsonl.1"} {
		st, err := os.Stat(filepath.Join(dir, p))
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > JournalCap {
			t.Errorf("%s is %d bytes, over the cap %d", p, st.Size(), JournalCap)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "web.jsonl.2")); err == nil {
		t.Error("a second rotated file")
	}
}

func TestFollowEvents(t *testing.T) {
	dir := t.TempDir()
	j, err := OpenJournal(dir, "web")
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	j.Add(EventStart, "before", nil)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	got := make(chan Event, 10)
	go FollowEvents(ctx, dir, nil, time.Time{}, func(e Event) { got <- e })
	if e := <-got; e.Message != "before" {
		t.Errorf("first event %+v, want the one from before", e)
	}
	// A line written in two pieces is read whole.
	w := j.Writer(EventEgress, nil)
	w.Write([]byte("safe-run: web: denied 10.0.0.1"))
	w.Write([]byte(":80\n"))
	select {
	case e := <-got:
		if e.Kind != EventEgress || e.Message != "denied 10.0.0.1:80" {
			t.Errorf("followed %+v", e)
		}
	case <-ctx.Done():
		t.Fatal("no new event followed")
	}
}

func TestParseSignal(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
		err  string
	}{
		{"HUP", 1, ""}, {"sighup", 1, ""}, {"SIGTERM", 15, ""}, {"9", 9, ""}, {"RTMIN+2", 36, ""},
		{"0", 0, "signal 0 is out of 1-64"}, {"NOPE", 0, `"NOPE" is not a signal (use a name such as HUP or SIGTERM, or a number)`},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseSignal(tc.in)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Errorf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || int(got) != tc.want {
				t.Errorf("%d, %v; want %d", got, err, tc.want)
			}
		})
	}
}

// TestJournalDamaged: lines a disk, a hand or a crash damaged are skipped
// by readers, listed by Damaged (and so by `events`, with the fix), and
// a line a crash cut short does not swallow the next event.
func TestJournalDamaged(t *testing.T) {
	dir := t.TempDir()
	j, err := OpenJournal(dir, "web")
	if err != nil {
		t.Fatal(err)
	}
	j.Add(EventStart, "init pid 1", nil)
	j.Close()
	p := filepath.Join(dir, "web.jsonl")
	f, _ := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString("\x00\x00\x00garbage\n{\"time\":\"2026-12-06T08:00:00Z\",\"service\":\"web\",\"ki") // a bad line, then one cut short
	f.Close()
	if d, err := Damaged(dir, nil); err != nil || len(d) != 1 || d[0] != p+":2: not an event (damaged or cut short), skipped" {
		t.Errorf("Damaged: %q, %v", d, err)
	}
	// The next run's journal: its first event is whole, and read.
	j, err = OpenJournal(dir, "web")
	if err != nil {
		t.Fatal(err)
	}
	j.Add(EventStart, "after the crash", nil)
	j.Close()
	evs, err := ReadEvents(dir, nil, time.Time{})
	// Between them, the end of the crashed run that the next start said.
	if err != nil || len(evs) != 3 || evs[1].Kind != EventExit || evs[2].Message != "after the crash" {
		t.Errorf("ReadEvents: %+v, %v", evs, err)
	}
	var out, warn strings.Builder
	if err := Events(context.Background(), &out, dir, EventsOptions{Warn: &warn}); err != nil {
		t.Fatal(err)
	}
	want := "safe-run: events: " + p + ":2: not an event (damaged or cut short), skipped (the other events are shown; to drop the damaged lines, remove the file once its service is stopped)\n" +
		"safe-run: events: " + p + ":3: not an event (damaged or cut short), skipped (the other events are shown; to drop the damaged lines, remove the file once its service is stopped)\n"
	if warn.String() != want || strings.Count(out.String(), "\n") != 3 {
		t.Errorf("events printed:\n%s\nwarned:\n%s\nwant:\n%s", out.String(), warn.String(), want)
	}
	// A name that never ran is said, not shown as no events.
	err = Events(context.Background(), &out, dir, EventsOptions{Names: []string{"web", "wbe"}})
	if want := "no events of wbe in " + dir + ": no service of that name has run with this data directory (safe-run ps lists the running ones; SAFE_RUN_DATA_DIR moves the directory)"; err == nil || err.Error() != want {
		t.Errorf("events of a name that never ran: %v\nwant %s", err, want)
	}
}

// TestWriterKinds: the seccomp watcher's writer also carries the other
// layers' denials it reads from the audit records: each its own kind.
func TestWriterKinds(t *testing.T) {
	dir := t.TempDir()
	j, err := OpenJournal(dir, "web")
	if err != nil {
		t.Fatal(err)
	}
	w := j.Writer(EventSeccomp, nil)
	for _, l := range []string{
		"safe-run: web: seccomp denied unshare (syscall 272) pid 5 (sh)",
		"safe-run: web: apparmor denied mknod /dev/evil pid 6 (sh)",
		"safe-run: web: apparmor would deny (complain mode) open /etc/shadow pid 7 (cat)",
		"safe-run: web: landlock denied write-file /etc/x pid 8 (sh)",
	} {
		w.Write([]byte(l + "\n"))
	}
	j.Writer(EventEgress, nil).Write([]byte("safe-run: web: apparmor-looking egress denied 10.0.0.1:80/tcp\n"))
	j.Close()
	evs, err := ReadEvents(dir, nil, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, e := range evs {
		kinds = append(kinds, e.Kind)
	}
	if got, want := strings.Join(kinds, " "), "seccomp apparmor apparmor landlock egress"; got != want {
		t.Errorf("kinds %q, want %q", got, want)
	}
}

// TestOwnerOnly: the journals and the status file are their writer's
// only, and an older safe-run's, readable by all, are tightened by the
// next start (probe OPS #11: every local user read every journal).
func TestOwnerOnly(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "events")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	for _, f := range []string{"web.jsonl", "web.jsonl.1"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		os.Chmod(filepath.Join(dir, f), 0o644)
	}
	j, err := OpenJournal(dir, "web")
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	j2, err := OpenJournal(dir, "db")
	if err != nil {
		t.Fatal(err)
	}
	defer j2.Close()
	state := t.TempDir()
	if err := WriteStatus(state, &Status{Name: "web"}); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{
		dir: 0o700, filepath.Join(dir, "web.jsonl"): 0o600, filepath.Join(dir, "web.jsonl.1"): 0o600,
		filepath.Join(dir, "db.jsonl"): 0o600, filepath.Join(state, StatusFile): 0o600,
	} {
		st, err := os.Stat(path)
		if err != nil || st.Mode().Perm() != want {
			t.Errorf("%s: mode %v, %v; want %v", path, st.Mode().Perm(), err, want)
		}
	}
	// A new dir is made 0700 too.
	fresh := filepath.Join(t.TempDir(), "events")
	j3, err := OpenJournal(fresh, "web")
	if err != nil {
		t.Fatal(err)
	}
	j3.Close()
	if st, err := os.Stat(fresh); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("new journal dir: %v, %v", st.Mode().Perm(), err)
	}
}

// TestEndUnrecorded: a run whose safe-run was killed wrote no exit; the
// next start records one, so the journal does not end as if it still
// ran (probe OPS #10). A run that ended, or none, gets nothing.
func TestEndUnrecorded(t *testing.T) {
	for _, tc := range []struct {
		name, journal string
		exit          bool
	}{
		{"killed", `{"time":"2026-12-06T10:00:00Z","service":"web","kind":"start"}` + "\n" + `{"time":"2026-12-06T10:00:01Z","service":"web","kind":"ready"}` + "\n", true},
		{"ended", `{"time":"2026-12-06T10:00:00Z","service":"web","kind":"start"}` + "\n" + `{"time":"2026-12-06T10:00:02Z","service":"web","kind":"exit","code":0}` + "\n", false},
		{"new", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.journal != "" {
				os.WriteFile(filepath.Join(dir, "web.jsonl"), []byte(tc.journal), 0o600)
			}
			j, err := OpenJournal(dir, "web")
			if err != nil {
				t.Fatal(err)
			}
			j.Close()
			evs, err := ReadEvents(dir, []string{"web"}, time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			n := strings.Count(tc.journal, "\n")
			if !tc.exit {
				if len(evs) != n {
					t.Errorf("%d events, want %d: %+v", len(evs), n, evs)
				}
				return
			}
			want := "the previous run ended unrecorded after its last event (ready at 2026-12-06T10:00:01Z): its safe-run was killed, or the host went down (said at the next start)"
			if len(evs) != n+1 || evs[n].Kind != EventExit || evs[n].Message != want || evs[n].Code != nil {
				t.Errorf("events %+v", evs)
			}
		})
	}
}

// TestEventsTextEscaped: an event's message may quote what the service
// chose (a process's name): events prints it escaped, never raw.
func TestEventsTextEscaped(t *testing.T) {
	dir := t.TempDir()
	j, err := OpenJournal(dir, "web")
	if err != nil {
		t.Fatal(err)
	}
	j.Add(EventSeccomp, "seccomp denied unshare (syscall 272) host pid 42 (\x1b]0;pwned\a)", nil)
	j.Close()
	var out strings.Builder
	if err := Events(context.Background(), &out, dir, EventsOptions{Names: []string{"web"}}); err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(out.String(), "\x1b\a") || !strings.Contains(out.String(), `(\x1b]0;pwned\a)`) {
		t.Errorf("events printed %q", out.String())
	}
}
