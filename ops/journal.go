package ops

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// Kinds of events.
const (
	EventStart    = "start"
	EventReady    = "ready"
	EventExit     = "exit"
	EventOOM      = "oom"
	EventSeccomp  = "seccomp"
	EventAppArmor = "apparmor" // AppArmor's denials, and what it would deny in complain mode
	EventLandlock = "landlock" // Landlock's denials
	EventEgress   = "egress"
	EventStop     = "stop"
	EventKill     = "kill"
	EventExec     = "exec"      // safe-run exec started a command in the service
	EventExecEnd  = "exec-exit" // and it ended
	EventWarning  = "warning"   // a limit about to bite; Event.Condition says which (Warn*)
)

// Event is one line of a service's journal.
type Event struct {
	Time    time.Time `json:"time"`
	Service string    `json:"service"`
	Kind    string    `json:"kind"`
	Code    *int      `json:"code,omitempty"` // exit
	// Condition is a warning's (Warn*).
	Condition string `json:"condition,omitempty"`
	Message   string `json:"message,omitempty"`
}

// JournalDir is where the journals live under safe-run's data directory
// (plan.Dirs.Data): they outlive the run, so `events --since` sees how a
// service ended after the fact.
func JournalDir(dataDir string) string { return filepath.Join(dataDir, "events") }

// JournalCap is the size at which a journal is rotated: the current file
// becomes NAME.jsonl.1 (replacing the one before), so a service's events
// take at most twice this.
const JournalCap = 1 << 20

// Journal appends events to one service's journal. Safe for concurrent
// use; a nil *Journal drops every event.
type Journal struct {
	mu      sync.Mutex
	path    string
	service string
	f       *os.File
	size    int64
}

// OpenJournal opens (creating) the journal of service in dir. The
// directory and the journals are their writer's only (0700, 0600): they
// tell what runs and what it was denied, and a directory or journal of an
// older safe-run's (0755, 0644) is tightened here.
func OpenJournal(dir, service string) (*Journal, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the event journal: %w", err)
	}
	// Not ours to tighten (EPERM) is no reason to record nothing.
	_ = ownerOnly(dir, 0o700)
	_ = ownerOnly(filepath.Join(dir, service+".jsonl.1"), 0o600)
	j := &Journal{path: filepath.Join(dir, service+".jsonl"), service: service}
	if err := j.open(); err != nil {
		return nil, err
	}
	j.endUnrecorded()
	return j, nil
}

// endUnrecorded records the end of the previous run when it has none: a
// supervisor that was SIGKILLed (or a host that went down) wrote no exit,
// and its journal stopped at ready or stop as if it still ran (probe OPS
// #10). The start that opens the journal holds the name's lock: no other
// supervisor of it writes here.
func (j *Journal) endUnrecorded() {
	last, ok := j.lastEvent()
	if !ok || last.Kind == EventExit {
		return
	}
	_ = j.add(Event{Kind: EventExit, Message: fmt.Sprintf("the previous run ended unrecorded after its last event (%s at %s): its safe-run was killed, or the host went down (said at the next start)", last.Kind, last.Time.Format(time.RFC3339))})
}

// lastEvent reads the journal's last event, from its last 64 KiB.
func (j *Journal) lastEvent() (Event, bool) {
	const tail = 64 << 10
	off := max(j.size-tail, 0)
	buf := make([]byte, j.size-off)
	if _, err := j.f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
		return Event{}, false
	}
	lines := bytes.Split(bytes.TrimRight(buf, "\n"), []byte{'\n'})
	for i := len(lines) - 1; i >= 0; i-- {
		var e Event
		if json.Unmarshal(lines[i], &e) == nil && e.Kind != "" && !e.Time.IsZero() {
			return e, true
		}
	}
	return Event{}, false
}

func (j *Journal) open() error {
	f, err := os.OpenFile(j.path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("opening the event journal: %w", err)
	}
	st, err := f.Stat()
	if err == nil && st.Mode().Perm()&0o077 != 0 {
		err = f.Chmod(0o600)
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("opening the event journal: %w", err)
	}
	j.f, j.size = f, st.Size()
	// A journal whose last line was cut short (a crash or a power loss
	// mid-write; a full disk) would glue the next event to it, and both
	// would be lost to every reader: the next event starts a line of its
	// own (issue 19).
	if last := make([]byte, 1); j.size > 0 {
		if _, err := f.ReadAt(last, j.size-1); err == nil && last[0] != '\n' {
			n, _ := f.Write([]byte{'\n'})
			j.size += int64(n)
		}
	}
	return nil
}

// ownerOnly takes group and others' access to path away, as perm says.
func ownerOnly(path string, perm os.FileMode) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if st.Mode().Perm()&0o077 == 0 {
		return nil
	}
	return os.Chmod(path, perm)
}

// Add appends an event of kind now. A journal that cannot be written is
// not the service's failure: the event is lost, and the error returned.
func (j *Journal) Add(kind, msg string, code *int) error {
	return j.add(Event{Kind: kind, Code: code, Message: msg})
}

// Warn appends a warning of condition (Warn*) now.
func (j *Journal) Warn(condition, msg string) error {
	return j.add(Event{Kind: EventWarning, Condition: condition, Message: msg})
}

func (j *Journal) add(e Event) error {
	if j == nil {
		return nil
	}
	e.Time, e.Service = time.Now().UTC(), j.service
	line, err := json.Marshal(e)
	if err != nil {
		return err
	}
	line = append(line, '\n')
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return os.ErrClosed
	}
	if j.size > 0 && j.size+int64(len(line)) > JournalCap {
		j.f.Close()
		j.f = nil
		if err := os.Rename(j.path, j.path+".1"); err != nil {
			return err
		}
		if err := j.open(); err != nil {
			return err
		}
	}
	// One write of a whole line to a file opened O_APPEND: a reader
	// never sees part of one.
	n, err := j.f.Write(line)
	j.size += int64(n)
	return err
}

// Close closes the journal.
func (j *Journal) Close() error {
	if j == nil {
		return nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return nil
	}
	err := j.f.Close()
	j.f = nil
	return err
}

// Writer returns a writer whose lines become events of kind (the
// launcher's seccomp, Landlock and egress denial reports), and are also written to
// w when it is not nil.
func (j *Journal) Writer(kind string, w io.Writer) io.Writer {
	if j == nil {
		return w
	}
	return &lineWriter{j: j, kind: kind, w: w}
}

type lineWriter struct {
	j    *Journal
	kind string
	w    io.Writer
	mu   sync.Mutex
	buf  []byte
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		// The lines name the service, which the event names already.
		msg := strings.TrimSpace(string(l.buf[:i]))
		msg = strings.TrimPrefix(strings.TrimPrefix(msg, "safe-run: "), l.j.service+": ")
		l.buf = l.buf[i+1:]
		if msg != "" {
			_ = l.j.Add(kindOf(l.kind, msg), msg, nil)
		}
	}
	l.mu.Unlock()
	if l.w == nil {
		return len(p), nil
	}
	return l.w.Write(p)
}

// kindOf is the kind of an event from the seccomp watcher's writer,
// which also reports the denials of the other layers it reads the
// kernel's audit records for: "apparmor denied ...", "landlock denied
// ...", each a kind of its own.
func kindOf(kind, msg string) string {
	if kind != EventSeccomp {
		return kind
	}
	switch {
	case strings.HasPrefix(msg, "apparmor "):
		return EventAppArmor
	case strings.HasPrefix(msg, "landlock denied "):
		return EventLandlock
	}
	return kind
}

// ReadEvents returns the events in dir of the named services (all when
// names is empty) since the given time, oldest first.
func ReadEvents(dir string, names []string, since time.Time) ([]Event, error) {
	files, err := journalFiles(dir, names)
	if err != nil {
		return nil, err
	}
	var out []Event
	for _, f := range files {
		evs, _, err := readFrom(f, 0, since)
		if errors.Is(err, fs.ErrPermission) {
			return nil, fmt.Errorf("%w (the journals are readable by who started the services, and root)", err)
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		out = append(out, evs...)
	}
	sort.SliceStable(out, func(i, k int) bool { return out[i].Time.Before(out[k].Time) })
	return out, nil
}

// Damaged lists the lines of the journals in dir of the named services
// (all when names is empty) that are not events, each as "FILE:LINE: what":
// a disk or a hand changed them, or a crash cut them short. Readers skip
// them; `events` says so, with the fix, rather than show less in silence.
// A last line without its newline is one still being written, not listed.
func Damaged(dir string, names []string) ([]string, error) {
	files, err := journalFiles(dir, names)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, p := range files {
		data, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return out, err
		}
		lines := bytes.Split(data, []byte{'\n'})
		lines = lines[:len(lines)-1] // the last: empty, or not whole yet
		for i, line := range lines {
			var e Event
			switch {
			case len(bytes.TrimSpace(line)) == 0:
				continue
			case json.Unmarshal(line, &e) != nil || e.Time.IsZero() || e.Kind == "":
				out = append(out, fmt.Sprintf("%s:%d: not an event (damaged or cut short), skipped", p, i+1))
			}
		}
	}
	return out, nil
}

// journalFiles lists the journals to read, rotated ones first. A name
// given is checked before it becomes a path (CheckName).
func journalFiles(dir string, names []string) ([]string, error) {
	if len(names) == 0 {
		// Glob says nothing of a directory it may not read: another
		// user's journals would look like none.
		if f, err := os.Open(dir); errors.Is(err, fs.ErrPermission) {
			return nil, fmt.Errorf("%w (the journals are readable by who started the services, and root)", err)
		} else if err == nil {
			f.Close()
		}
		m, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
		if err != nil {
			return nil, err
		}
		for _, p := range m {
			names = append(names, strings.TrimSuffix(filepath.Base(p), ".jsonl"))
		}
	} else {
		var errs []error
		for _, n := range names {
			errs = append(errs, CheckName(n))
		}
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
	}
	var out []string
	for _, n := range names {
		p := filepath.Join(dir, n+".jsonl")
		out = append(out, p+".1", p)
	}
	return out, nil
}

// readFrom reads the events of a journal from offset on; it returns the
// offset after the last whole line.
func readFrom(path string, off int64, since time.Time) ([]Event, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, off, err
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return nil, off, err
	}
	var out []Event
	r := bufio.NewReader(f)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			break // a partial last line is read again next time
		}
		off += int64(len(line))
		var e Event
		if json.Unmarshal(line, &e) != nil || e.Time.Before(since) {
			continue
		}
		out = append(out, e)
	}
	return out, off, nil
}

// FollowEvents calls emit with each event of the named services (all
// when names is empty) since the given time, then with each one appended
// later, until ctx ends. It polls the journals twice a second: a journal
// is a file, with no one to wake its readers.
func FollowEvents(ctx context.Context, dir string, names []string, since time.Time, emit func(Event)) error {
	type pos struct {
		off int64
		ino uint64
	}
	seen := map[string]pos{}
	scan := func() error {
		files, err := journalFiles(dir, names)
		if err != nil {
			return err
		}
		var batch []Event
		for _, p := range files {
			if strings.HasSuffix(p, ".1") {
				continue
			}
			st, err := os.Stat(p)
			if err != nil {
				continue
			}
			ino := inode(st)
			cur, ok := seen[p]
			switch {
			case !ok:
				// New to us: what the rotated file holds comes first.
				evs, _, _ := readFrom(p+".1", 0, since)
				batch = append(batch, evs...)
				cur = pos{0, ino}
			case cur.ino != ino:
				// Rotated: what was appended to the old file since
				// the last scan is now in .1, from where we were.
				evs, _, _ := readFrom(p+".1", cur.off, since)
				batch = append(batch, evs...)
				cur = pos{0, ino}
			}
			evs, off, err := readFrom(p, cur.off, since)
			if err != nil {
				continue
			}
			seen[p] = pos{off, ino}
			batch = append(batch, evs...)
		}
		sort.SliceStable(batch, func(i, k int) bool { return batch[i].Time.Before(batch[k].Time) })
		for _, e := range batch {
			emit(e)
		}
		return nil
	}
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		if err := scan(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
