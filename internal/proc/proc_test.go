package proc

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

func TestStart(t *testing.T) {
	self := Start(os.Getpid())
	if self == 0 || !Alive(os.Getpid(), self) || !Alive(os.Getpid(), 0) {
		t.Fatalf("this process: start %d", self)
	}
	if Alive(os.Getpid(), self+1) {
		t.Error("a pid with another start time is taken for this process")
	}
	if Start(0) != 0 || Start(-1) != 0 || Start(0x3fffffff) != 0 {
		t.Error("a pid that runs nothing has a start time")
	}
	// A zombie: exited, not yet reaped.
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Skipf("no true(1) to run: %v", err)
	}
	defer cmd.Wait()
	for deadline := time.Now().Add(5 * time.Second); Start(cmd.Process.Pid) != 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("a zombie has a start time")
		}
	}
}
