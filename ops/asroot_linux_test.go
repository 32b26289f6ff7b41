package ops

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/internal/proc"
	"github.com/safe-run/safe-run/internal/testenv"
)

// fakeSupervisorEnv makes the test binary a rootless supervisor of
// service "svc" in the directory it names (fakeSupervisor).
const fakeSupervisorEnv = "OPS_TEST_FAKE_SUPERVISOR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(fakeSupervisorEnv); dir != "" {
		os.Exit(fakeSupervisor(dir, os.Getenv("OPS_TEST_STATUS_PID"), os.Getenv("OPS_TEST_STATUS_INIT")))
	}
	os.Exit(m.Run())
}

// fakeSupervisor serves the control socket in dir/svc as a rootless
// supervisor does (from a user namespace where its user is uid 0), with a
// child for its init, and publishes its status: by default its own pid,
// or statusPID's, and its child's pid as its init's, or statusInit's (a
// forged status file). It says on stdout what reaches
// it: "init: ..." when its child ends, "stop" on SIGTERM.
func fakeSupervisor(dir, statusPID, statusInit string) int {
	init := exec.Command("sleep", "60")
	if err := init.Start(); err != nil {
		fmt.Println(err)
		return 1
	}
	srv, err := Serve(filepath.Join(dir, "svc"), func(Request) error { return nil })
	if err != nil {
		fmt.Println(err)
		return 1
	}
	defer srv.Close()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, unix.SIGTERM)
	st := &Status{Name: "svc", State: StateRunning, SupervisorPID: os.Getpid(), InitPID: init.Process.Pid, Started: time.Now()}
	if statusPID != "" {
		fmt.Sscan(statusPID, &st.SupervisorPID)
	}
	if statusInit != "" {
		fmt.Sscan(statusInit, &st.InitPID)
	}
	st.SupervisorStart = proc.Start(st.SupervisorPID)
	if err := WriteStatus(filepath.Join(dir, "svc"), st); err != nil {
		fmt.Println(err)
		return 1
	}
	fmt.Println("ready")
	ended := make(chan error, 1)
	go func() { ended <- init.Wait() }()
	for {
		select {
		case err := <-ended:
			fmt.Printf("init: %v\n", err)
		case <-sigs:
			fmt.Println("stop")
			init.Process.Kill()
			return 0
		}
	}
}

// TestRootSignalsRootless: host root stops and kills a rootless service,
// whose supervisor sees root as the overflow uid and refuses it, by
// signalling it directly; a status file that names another process than
// the one serving its socket gets nothing signalled; exec says how root
// can do it.
func TestRootSignalsRootless(t *testing.T) {
	testenv.RequireRoot(t)
	if !hostRoot() {
		testenv.Skip(t, "not root of the host's user namespace")
	}
	const uid = 54321 // no one's: the supervisor's user, outside
	start := func(t *testing.T, statusPID, statusInit string) (string, *bufio.Scanner) {
		base, err := os.MkdirTemp("", "ops-asroot-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(base) })
		dir := filepath.Join(base, "svc")
		for _, d := range []string{base, dir} {
			os.Mkdir(d, 0o700)
			if err := os.Chown(d, uid, uid); err != nil {
				t.Fatal(err)
			}
		}
		// The test binary, where the supervisor's user may run it.
		self, err := os.ReadFile(os.Args[0])
		if err != nil {
			t.Fatal(err)
		}
		bin := filepath.Join(base, "ops.test")
		if err := os.WriteFile(bin, self, 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "-test.run=^$")
		cmd.Env = append(os.Environ(), fakeSupervisorEnv+"="+base, "OPS_TEST_STATUS_PID="+statusPID, "OPS_TEST_STATUS_INIT="+statusInit)
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Cloneflags:  unix.CLONE_NEWUSER,
			UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: uid, Size: 1}},
			GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: uid, Size: 1}},
			// uid 0 of the namespace: the host's uid, as rootless.
			Credential: &syscall.Credential{Uid: 0, Gid: 0},
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			testenv.Skip(t, "no user namespace: %v", err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		lines := bufio.NewScanner(out)
		if !lines.Scan() || lines.Text() != "ready" {
			t.Fatalf("fake supervisor: %q", lines.Text())
		}
		return base, lines
	}
	t.Run("kill-stop-exec", func(t *testing.T) {
		base, lines := start(t, "", "")
		if err := Kill(t.Context(), base, []string{"svc"}, unix.SIGUSR2); err != nil {
			t.Fatal(err)
		}
		if !lines.Scan() || lines.Text() != "init: signal: user defined signal 2" {
			t.Errorf("after kill -s USR2: %q", lines.Text())
		}
		_, err := Exec(t.Context(), base, "svc", ExecOptions{ExecRequest: ExecRequest{Args: []string{"true"}}})
		want := fmt.Sprintf("svc: not permitted: it runs rootless in uid %d's user namespace, where the host's root has no uid of its own (its supervisor sees root as the overflow uid, as any user it does not map, and refuses it); exec as its user: runuser -u #%d -- env SAFE_RUN_STATE_DIR=%s safe-run exec svc -- COMMAND", uid, uid, base)
		if err == nil || err.Error() != want {
			t.Errorf("exec as root:\n got %v\nwant %s", err, want)
		}
		if err := Stop(t.Context(), base, []string{"svc"}, 0); err != nil {
			t.Fatal(err)
		}
		if !lines.Scan() || lines.Text() != "stop" {
			t.Errorf("after stop: %q", lines.Text())
		}
	})
	t.Run("forged", func(t *testing.T) {
		// A process of root's that the status file names: never signalled.
		victim := exec.Command("sleep", "60")
		if err := victim.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { victim.Process.Kill(); victim.Wait() }()
		base, _ := start(t, fmt.Sprint(victim.Process.Pid), "")
		for _, op := range []func() error{
			func() error { return Kill(t.Context(), base, []string{"svc"}, unix.SIGKILL) },
			func() error { return Stop(t.Context(), base, []string{"svc"}, 0) },
		} {
			err := op()
			if !errors.Is(err, ErrNotPermitted) || !strings.Contains(err.Error(), "is not the supervisor status.json names") {
				t.Errorf("forged status: %v", err)
			}
		}
		if !proc.Alive(victim.Process.Pid, 0) {
			t.Error("the process a forged status file names was signalled")
		}
		// The real supervisor, naming root's process as its init.
		base, _ = start(t, "", fmt.Sprint(victim.Process.Pid))
		if err := Kill(t.Context(), base, []string{"svc"}, unix.SIGKILL); !errors.Is(err, ErrNotPermitted) || !strings.Contains(err.Error(), fmt.Sprintf("init pid %d is not a child of the supervisor", victim.Process.Pid)) {
			t.Errorf("forged init: %v", err)
		}
		if !proc.Alive(victim.Process.Pid, 0) {
			t.Error("the init a forged status file names was signalled")
		}
	})
}
