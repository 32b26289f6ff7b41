package rootless

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/internal/proc"
)

// TestRelease: the shared namespaces end only when no run holds the
// membership, and then their keeper and state go.
func TestRelease(t *testing.T) {
	state := t.TempDir()
	dir := sharedDir(state)
	// Stand-ins for the keeper and its pause process.
	var procs []*exec.Cmd
	for range 2 {
		c := exec.Command("sleep", "60")
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Process.Kill() })
		go c.Wait() //nolint:errcheck // reaped, so that a killed one is no zombie
		procs = append(procs, c)
	}
	h := holder{Keeper: procs[0].Process.Pid, Pause: procs[1].Process.Pid, IDs: 65536}
	for h.KeeperStart == 0 || h.PauseStart == 0 {
		h.KeeperStart, h.PauseStart = proc.Start(h.Keeper), proc.Start(h.Pause)
	}
	for _, d := range []string{dir, filepath.Join(state, "net", "bridges")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := writeHolder(dir, h); err != nil {
		t.Fatal(err)
	}
	if !h.alive() {
		t.Fatal("the stand-ins are not alive")
	}

	// A member: Release leaves everything as it is.
	m, err := os.OpenFile(filepath.Join(dir, "members"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := flock(m, unix.LOCK_SH); err != nil {
		t.Fatal(err)
	}
	if err := Release(state, nil); err != nil {
		t.Fatal(err)
	}
	if !h.alive() {
		t.Error("Release ended the keeper of a namespace with a member")
	}
	if _, err := os.Stat(filepath.Join(dir, "holder.json")); err != nil {
		t.Errorf("Release with a member: %v", err)
	}

	// The member gone: the keeper, its pause process and the state go.
	m.Close()
	if err := Release(state, nil); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(2 * time.Second); proc.Start(h.Keeper) != 0 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
	}
	if proc.Start(h.Keeper) != 0 || proc.Start(h.Pause) != 0 {
		t.Error("Release without members left the keeper or its pause process running")
	}
	for _, p := range []string{dir, filepath.Join(state, "net")} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s is left", p)
		}
	}
	// Nothing to release: nothing happens.
	if err := Release(state, nil); err != nil {
		t.Errorf("Release of nothing: %v", err)
	}
}

// TestReleaseCleanupUnderLock: network-cleanup's reclaim (cleanup) runs
// under the namespace's lock, and not at all once the namespace is
// released, so that of two killed members' janitors at once the second
// never recreates the network state the first removed.
func TestReleaseCleanupUnderLock(t *testing.T) {
	state := t.TempDir()
	dir, netDir := sharedDir(state), filepath.Join(state, "net")
	for _, d := range []string{dir, netDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// As network.Cleanup: it makes the state's directories if the state is there.
	cleanup := func() error {
		if _, err := os.Stat(netDir); err != nil {
			return nil
		}
		return os.MkdirAll(filepath.Join(netDir, "bridges"), 0o700)
	}
	unlock, err := lockPath(filepath.Join(dir, "lock"))
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- Release(state, func() error { close(ran); return cleanup() }) }()
	select {
	case <-ran:
		t.Error("cleanup ran while another janitor held the namespace's lock")
	case <-time.After(200 * time.Millisecond):
	}
	unlock()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := Release(state, func() error { t.Error("cleanup ran with the namespace released"); return cleanup() }); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, netDir} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s is left", p)
		}
	}
}

// TestLockPathRemoved: a lock taken on a file that was removed meanwhile
// is taken again on the new one.
func TestLockPathRemoved(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d", "lock")
	unlock, err := lockPath(path)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan func(), 1)
	go func() {
		u, err := lockPath(path)
		if err != nil {
			t.Error(err)
		}
		got <- u
	}()
	time.Sleep(50 * time.Millisecond)
	os.RemoveAll(filepath.Dir(path)) // as Release does, under the lock
	unlock()
	select {
	case u := <-got:
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("the waiter holds a lock on no file: %v", err)
		}
		u()
	case <-time.After(5 * time.Second):
		t.Fatal("the waiter never got the lock")
	}
}
