package ops

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestControlSocket(t *testing.T) {
	dir := t.TempDir()
	got := make(chan Request, 2)
	s, err := Serve(dir, func(r Request) error {
		if r.Op == "bad" {
			return errors.New("unknown request")
		}
		got <- r
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, ControlFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, %v; want 0600", st.Mode(), err)
	}
	status := &Status{Name: "web", StateDir: dir}
	if err := Send(t.Context(), status, Request{Op: OpKill, Signal: int(syscall.SIGHUP)}); err != nil {
		t.Fatal(err)
	}
	if r := <-got; r.Op != OpKill || r.Signal != 1 || r.UID != os.Geteuid() {
		t.Errorf("request %+v", r)
	}
	if err := Send(t.Context(), status, Request{Op: "bad"}); err == nil || err.Error() != "web: unknown request" {
		t.Errorf("error %v", err)
	}
	// A stop returns once the server is closed: the service gone.
	stopped := make(chan error)
	go func() { stopped <- Send(t.Context(), status, Request{Op: OpStop, Timeout: time.Second}) }()
	r := <-got
	if r.Timeout != time.Second {
		t.Errorf("stop %+v", r)
	}
	select {
	case err := <-stopped:
		t.Fatalf("stop returned before the end: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	s.Close()
	if err := <-stopped; err != nil {
		t.Error(err)
	}
	if err := Send(t.Context(), status, Request{Op: OpStop}); err == nil || !strings.Contains(err.Error(), "web: reaching its supervisor") {
		t.Errorf("after close: %v", err)
	}
}

// TestMapID: who asked, as the host knows them: rootless, the user is
// uid 0 of safe-run's namespace.
func TestMapID(t *testing.T) {
	const rootless = "         0        995          1\n         1     300000      65535\n"
	for _, tc := range []struct {
		text    string
		id, out int
	}{
		{rootless, 0, 995},
		{rootless, 1, 300000},
		{rootless, 65535, 365534},
		{rootless, 65536, 65536}, // unmapped: as it is
		{"         0          0 4294967295\n", 1000, 1000},
		{"", 7, 7},
	} {
		if got := mapID(tc.text, tc.id); got != tc.out {
			t.Errorf("mapID(%q, %d) = %d, want %d", tc.text, tc.id, got, tc.out)
		}
	}
}

// TestSocketPathTooLong: a state directory that makes the control
// socket's path longer than the kernel takes is said so, with the fix,
// by the supervisor and by its callers, not as a bare "invalid argument"
// (probe OPS #8).
func TestSocketPathTooLong(t *testing.T) {
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 100))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, ControlFile)
	want := fmt.Sprintf("%s: a socket path too long: %d bytes, more than the 107 a unix socket's path may have (use a shorter state directory, SAFE_RUN_STATE_DIR, or XDG_RUNTIME_DIR rootless; or a shorter service name)", path, len(path))
	if _, err := Serve(dir, func(Request) error { return nil }); !errors.Is(err, ErrSocketPath) || err.Error() != "creating the control socket: "+want {
		t.Errorf("Serve: %v", err)
	}
	if err := Send(t.Context(), &Status{Name: "web", StateDir: dir}, Request{Op: OpStop}); !errors.Is(err, ErrSocketPath) || err.Error() != "web: reaching its supervisor: "+want {
		t.Errorf("Send: %v", err)
	}
	if err := CheckSocketPath(strings.Repeat("x", MaxSocketPath)); err != nil {
		t.Errorf("107 bytes: %v", err)
	}
}

// TestWhoIn: a rootless supervisor's refusal of the overflow uid does not
// name a subordinate uid as who asked: it may be root, or any user the
// namespace does not map (probe OPS #4).
func TestWhoIn(t *testing.T) {
	const rootless = "         0        995          1\n         1     300000      65536\n"
	for _, tc := range []struct {
		uidMap string
		uid    int
		want   string
	}{
		{rootless, 65534, "uid 365533, or a uid this service's user namespace does not map (the host's root among them; all show as uid 65534 to it),"},
		{rootless, 1000, "uid 300999"},
		{"         0          0 4294967295\n", 65534, "uid 65534"},
	} {
		if got := whoIn(tc.uidMap, "65534", tc.uid); got != tc.want {
			t.Errorf("whoIn(%d) = %q, want %q", tc.uid, got, tc.want)
		}
	}
}
