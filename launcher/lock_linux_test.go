package launcher

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

// TestDying: a name lock's holder is waited for, not refused as running,
// once it is on its way out: gone, a zombie, or with a SIGKILL pending on
// any thread. A live process, this one with its many threads, is not.
func TestDying(t *testing.T) {
	zombie := exec.Command("true")
	if err := zombie.Start(); err != nil {
		t.Fatal(err)
	}
	defer zombie.Wait()
	// Unreaped, it stays a zombie; wait until it is one.
	for deadline := time.Now().Add(10 * time.Second); !dying(zombie.Process.Pid) && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
	}
	reaped := exec.Command("true")
	if err := reaped.Run(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		pid  int
		want bool
	}{
		{"this process", os.Getpid(), false},
		{"a zombie", zombie.Process.Pid, true},
		{"gone", reaped.Process.Pid, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := dying(tc.pid); got != tc.want {
				t.Errorf("dying(%d) = %v, want %v", tc.pid, got, tc.want)
			}
		})
	}
}
