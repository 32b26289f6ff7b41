package ops

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestExecSession: the exec conversation without a supervisor: the
// request's pipes arrive whole, the command's output comes back through
// them, signals reach the handler, the exit code is the caller's; a
// failure with a code is both said and exited with; a caller that hangs
// up is seen.
func TestExecSession(t *testing.T) {
	dir := t.TempDir()
	sessions := make(chan Request, 1)
	s, err := Serve(dir, func(r Request) error {
		if r.Op != OpExec || r.Session == nil || r.Exec == nil {
			return errors.New("not an exec")
		}
		sessions <- r
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := WriteStatus(dir, &Status{Name: "web", State: StateRunning, SupervisorPID: os.Getpid()}); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	if err := os.Symlink(dir, root+"/web"); err != nil {
		t.Fatal(err)
	}

	type result struct {
		code int
		err  error
	}
	sigs := make(chan os.Signal, 1)
	var out, errOut bytes.Buffer
	done := make(chan result, 1)
	go func() {
		code, err := Exec(t.Context(), root, "web", ExecOptions{ExecRequest: ExecRequest{Args: []string{"cat"}, User: "app", Env: []string{"A=1"}},
			Stdin: strings.NewReader("in\n"), Stdout: &out, Stderr: &errOut, Signals: sigs})
		done <- result{code, err}
	}()
	req := <-sessions
	x, sess := req.Exec, req.Session
	if strings.Join(x.Args, " ") != "cat" || x.User != "app" || strings.Join(x.Env, " ") != "A=1" || x.TTY || req.UID != os.Geteuid() || len(sess.Files) != 3 {
		t.Fatalf("request %+v %+v, %d files", req, x, len(sess.Files))
	}
	for _, f := range sess.Files {
		if st, err := f.Stat(); err != nil || st.Mode()&os.ModeNamedPipe == 0 {
			t.Errorf("a passed file of mode %v, %v; want a pipe", st.Mode(), err)
		}
	}
	// Play the command: read stdin, write both outputs.
	line := make([]byte, 3)
	if _, err := sess.Files[0].Read(line); err != nil || string(line) != "in\n" {
		t.Errorf("stdin: %q %v", line, err)
	}
	sess.Files[1].WriteString("out\n")
	sess.Files[2].WriteString("err\n")
	got := make(chan unix.Signal, 1)
	gone := make(chan struct{})
	sess.Watch(func(s unix.Signal) { got <- s }, func() { close(gone) })
	if err := sess.Started(42, nil); err != nil {
		t.Fatal(err)
	}
	sigs <- unix.SIGUSR1
	if s := <-got; s != unix.SIGUSR1 {
		t.Errorf("signal %v", s)
	}
	closeFiles(sess.Files)
	sess.Exited(3)
	r := <-done
	if r.code != 3 || r.err != nil || out.String() != "out\n" || errOut.String() != "err\n" {
		t.Errorf("exec: %d %v, %q %q", r.code, r.err, out.String(), errOut.String())
	}
	select {
	case <-gone:
		t.Error("a session that ended saw its caller hang up")
	case <-time.After(50 * time.Millisecond):
	}

	// A command that is not there: said, and exit 127.
	go func() {
		code, err := Exec(t.Context(), root, "web", ExecOptions{ExecRequest: ExecRequest{Args: []string{"nope"}}})
		done <- result{code, err}
	}()
	req = <-sessions
	req.Session.FailCode(errors.New("nope is not in the image"), 127)
	if r := <-done; r.code != 127 || r.err == nil || r.err.Error() != "web: exec: nope is not in the image" {
		t.Errorf("not found: %d %v", r.code, r.err)
	}

	// A caller that goes away: the handler hears of it (and kills the
	// command).
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		code, err := Exec(ctx, root, "web", ExecOptions{ExecRequest: ExecRequest{Args: []string{"sleep"}}})
		done <- result{code, err}
	}()
	req = <-sessions
	gone = make(chan struct{})
	req.Session.Watch(func(unix.Signal) {}, func() { close(gone) })
	req.Session.Started(43, nil)
	closeFiles(req.Session.Files)
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case <-gone:
	case <-time.After(5 * time.Second):
		t.Error("the caller hung up unseen")
	}
	if r := <-done; r.err == nil {
		t.Errorf("a cancelled exec: %d, no error", r.code)
	}
	req.Session.Exited(137) // as the supervisor does once the kill is done

	// Arguments and environment of 600 KiB pass (the cap was 64 KiB,
	// far below what execve takes: probe OPS #15); a request longer than
	// 1 MiB is said so.
	big := make(chan error, 1)
	go func() {
		_, err := Exec(t.Context(), root, "web", ExecOptions{ExecRequest: ExecRequest{Args: []string{"sh"}, Env: []string{"A=" + strings.Repeat("x", 600<<10)}}})
		big <- err
	}()
	req = <-sessions
	if len(req.Exec.Env) != 1 || len(req.Exec.Env[0]) != 2+600<<10 {
		t.Errorf("a 600 KiB environment: %d variables", len(req.Exec.Env))
	}
	req.Session.Fail(errors.New("no sh"))
	if err := <-big; err == nil || err.Error() != "web: exec: no sh" {
		t.Errorf("a 600 KiB request: %v", err)
	}
	if _, err := Exec(t.Context(), root, "web", ExecOptions{ExecRequest: ExecRequest{Args: []string{"sh"}, Env: []string{"A=" + strings.Repeat("x", maxRequest)}}}); err == nil ||
		err.Error() != "web: exec: a request too long: more than 1048576 bytes (exec takes at most 1 MiB of arguments and environment: pass fewer or shorter ones, or a file through stdin)" {
		t.Errorf("a request too long: %v", err)
	}

	// Ended sessions are not kept.
	s.mu.Lock()
	kept := len(s.execs)
	s.mu.Unlock()
	if kept != 0 {
		t.Errorf("%d ended exec sessions kept by the server", kept)
	}

	// -t needs a terminal.
	if _, err := Exec(t.Context(), root, "web", ExecOptions{ExecRequest: ExecRequest{Args: []string{"sh"}, TTY: true}, Stdin: strings.NewReader("")}); !errors.Is(err, ErrNoTerminal) {
		t.Errorf("-t without a terminal: %v", err)
	}
}
