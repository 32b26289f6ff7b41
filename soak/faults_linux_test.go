package soak_test

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/internal/testenv"
)

// TestDamagedSeccompCache: a kept seccomp filter with a flipped bit (its
// shape intact) is never loaded: the next start says so, naming the file,
// compiles the filter again and keeps it whole.
func TestDamagedSeccompCache(t *testing.T) {
	setup(t)
	svc := name("scdamage")
	m := root.manifest(t, svc, "grep Seccomp: /proc/self/status", "")
	if r := root.run("-q", m); r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	files, _ := filepath.Glob(filepath.Join(env.dataDir, "seccomp", "*"))
	if len(files) == 0 {
		t.Fatal("no kept seccomp filter")
	}
	for _, f := range files {
		b, _ := os.ReadFile(f)
		b[len(b)/2] ^= 0x10 // an instruction's operand: the shape holds
		os.WriteFile(f, b, 0o600)
	}
	r := root.run("-q", m)
	if r.code != 0 || r.stdout != "Seccomp:\t2\n" {
		t.Fatalf("after the damage: exit %d, stdout %q\n%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr, `msg="the kept seccomp filter is damaged (its checksum does not match); compiling it again and replacing it" file=`+filepath.Join(env.dataDir, "seccomp")) {
		t.Errorf("the start does not say the kept filter was damaged:\n%s", r.stderr)
	}
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if len(b) < sha256.Size {
			t.Fatalf("%s: %d bytes", f, len(b))
		}
		if sum := sha256.Sum256(b[:len(b)-sha256.Size]); !bytes.Equal(sum[:], b[len(b)-sha256.Size:]) {
			t.Errorf("%s is still damaged", f)
		}
	}
	// And the next start, from the kept filter again, says nothing.
	if r := root.run("-q", m); r.code != 0 || strings.Contains(r.stderr, "damaged") {
		t.Errorf("the start after: exit %d\n%s", r.code, r.stderr)
	}
}

// TestDamagedJournal: a journal whose last line a crash cut short, and a
// line of garbage, neither hide the next run's events; `events` names
// each damaged line with the fix.
func TestDamagedJournal(t *testing.T) {
	setup(t)
	svc := name("jdamage")
	m := root.manifest(t, svc, "exit 0", "")
	if r := root.run("-q", m); r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	journal := filepath.Join(env.dataDir, "events", svc+".jsonl")
	before, _ := os.ReadFile(journal)
	first := bytes.Count(before, []byte("\n")) + 1 // the garbage's line
	f, err := os.OpenFile(journal, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("\x00\x00\x00\x00\n{\"time\":\"2026-12-06T08:00:00Z\",\"serv")
	f.Close()
	if r := root.run("-q", m); r.code != 0 {
		t.Fatalf("the run after the damage: exit %d\n%s", r.code, r.stderr)
	}
	r := root.run("events", svc)
	if r.code != 0 {
		t.Fatalf("events: exit %d\n%s", r.code, r.stderr)
	}
	if n := strings.Count(r.stdout, " "+svc+" start "); n != 2 {
		t.Errorf("events shows %d starts, want both runs':\n%s", n, r.stdout)
	}
	var want string
	for _, line := range []int{first, first + 1} {
		want += fmt.Sprintf("safe-run: events: %s:%d: not an event (damaged or cut short), skipped (the other events are shown; to drop the damaged lines, remove the file once its service is stopped)\n", journal, line)
	}
	if r.stderr != want {
		t.Errorf("events warned:\n%s\nwant:\n%s", r.stderr, want)
	}
}

// TestEscapedCgroup: a service's cgroup that its clean-up could not
// remove, because a process escaped into it (moved there from outside
// the container) and the janitor was killed, or the cgroup was frozen,
// or the state that names it is gone: the next start of the name kills
// what is in it and removes it, then runs.
func TestEscapedCgroup(t *testing.T) {
	setup(t)
	for _, tc := range []struct {
		name        string
		killJanitor bool // else it runs, and meets the escaped process
		freeze      bool
		removeState bool
	}{
		{"janitor killed", true, false, false},
		{"janitor killed, cgroup frozen", true, true, false},
		{"janitor killed, state gone", true, false, true},
		{"cgroup frozen under the janitor", false, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc := name(fmt.Sprintf("esc%d", len(tc.name)%10) + strconv.FormatBool(tc.freeze)[:1] + strconv.FormatBool(tc.removeState)[:1] + strconv.FormatBool(tc.killJanitor)[:1])
			m := root.manifest(t, svc, "echo up; exec sleep 1000", "")
			b := root.startBackground(t, svc, m, "-q")
			janitor := childNamed(b.cmd.Process.Pid, "safe-run-jan")
			if janitor == 0 {
				t.Fatal("no janitor among safe-run's children")
			}
			unix.Kill(janitor, unix.SIGSTOP)
			defer unix.Kill(janitor, unix.SIGKILL)
			b.cmd.Process.Signal(syscall.SIGKILL)
			<-b.done
			dirs := cgroupsOf("safe-run-" + svc)
			if len(dirs) == 0 {
				t.Fatal("the service's cgroups are gone already")
			}
			// The escaped process: a host process moved into every
			// hierarchy's cgroup of the service.
			mark := fmt.Sprintf("1000.%d%d", os.Getpid(), time.Now().UnixNano()%1000)
			escaped := exec.Command("sleep", mark)
			if err := escaped.Start(); err != nil {
				t.Fatal(err)
			}
			gone := make(chan struct{})
			go func() { escaped.Wait(); close(gone) }()
			defer escaped.Process.Kill()
			for _, d := range dirs {
				if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(escaped.Process.Pid)), 0); err != nil {
					t.Logf("moving into %s: %v", d, err)
				}
			}
			if tc.freeze {
				for _, d := range dirs {
					if strings.Contains(d, "/freezer/") {
						if err := os.WriteFile(filepath.Join(d, "freezer.state"), []byte("FROZEN"), 0); err != nil {
							t.Fatalf("freezing %s: %v", d, err)
						}
					}
				}
			}
			if tc.killJanitor {
				unix.Kill(janitor, unix.SIGKILL)
			} else {
				unix.Kill(janitor, unix.SIGCONT)
			}
			// Wait for the janitor to end, however it does (a zombie
			// has ended).
			t0 := time.Now()
			for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
				if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", janitor)); err != nil || bytes.Contains(st, []byte(") Z ")) {
					break
				}
			}
			t.Logf("the janitor ended in %v", time.Since(t0).Round(time.Millisecond))
			if tc.removeState {
				os.RemoveAll(filepath.Join(env.stateDir, svc))
			}
			again := root.manifest(t, svc, "cat /proc/self/cgroup; echo ran", "")
			r := root.run("-q", again)
			t.Logf("the next start took %v", r.took.Round(time.Millisecond))
			if r.code != 0 || !strings.HasSuffix(r.stdout, "ran\n") {
				t.Fatalf("the next start: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
			}
			select {
			case <-gone:
			case <-time.After(10 * time.Second):
				t.Errorf("the escaped process outlived the next start")
			}
			if left := cgroupsOf("safe-run-" + svc); len(left) > 0 {
				t.Errorf("cgroups left: %v", left)
			}
		})
	}
	assertNoLeaks(t, "escaped cgroups")
}

// childNamed is the pid of a child of pid whose comm starts with prefix.
func childNamed(pid int, prefix string) int {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		for _, child := range strings.Fields(string(b)) {
			if comm, _ := os.ReadFile("/proc/" + child + "/comm"); strings.HasPrefix(string(comm), prefix) {
				n, _ := strconv.Atoi(child)
				return n
			}
		}
	}
	return 0
}

// TestPowerLoss: every process of the running services, safe-run, its
// janitor, the containers, pasta, stopped and then SIGKILLed at once,
// and the page cache dropped: what a power loss leaves of their state
// (everything: here /run survives it too). Every later start of the same
// names works, and cleans all of it.
func TestPowerLoss(t *testing.T) {
	setup(t)
	type svc struct {
		r        runner
		name, nw string
	}
	var svcs []svc
	add := func(r runner, n string, bridge bool) {
		nw := ""
		if bridge {
			nw = bridged(t, n, "", testenv.FreePort(t))
		}
		svcs = append(svcs, svc{r, n, nw})
	}
	add(root, name("pl-none"), false)
	add(root, name("pl-bridge"), true)
	if rl, ok := tryRootless(t, false); ok {
		add(rl, name("pl-rl"), false)
	}
	if rl, ok := tryRootless(t, true); ok {
		add(rl, name("pl-rlb"), true)
	}
	for _, s := range svcs {
		s.r.startBackground(t, s.name, s.r.manifest(t, s.name, "echo up; exec sleep 1000", s.nw), "-q")
	}
	pids := ourPIDs()
	for _, p := range pids {
		unix.Kill(p, unix.SIGSTOP)
	}
	for _, p := range pids {
		unix.Kill(p, unix.SIGKILL)
	}
	unix.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0); err != nil {
		t.Logf("dropping the page cache: %v", err)
	}
	// What the crash left, before the next starts take it.
	time.Sleep(200 * time.Millisecond)
	before := leaksNow()
	t.Logf("%d processes killed; left on the host: %d things", len(pids), len(before))
	for _, s := range svcs {
		r := s.r.run("-q", s.r.manifest(t, s.name, "exit 0", s.nw))
		t.Logf("%s (%s): the start after took %v", s.name, s.r, r.took.Round(time.Millisecond))
		if r.code != 0 {
			t.Errorf("%s (%s) after the power loss: exit %d\n%s", s.name, s.r, r.code, r.stderr)
		}
	}
	left := assertNoLeaks(t, "power loss")
	record("| power loss (every process SIGKILLed at once, page cache dropped) | %d services | %d before the next starts, %d after | every next start exit 0 |", len(svcs), len(before), left)
}

// tryRootless is the rootless runner (with pasta for bridge) when the
// host has what it needs, else false with the reason logged.
func tryRootless(t *testing.T, bridge bool) (runner, bool) {
	t.Helper()
	need := []string{"newuidmap"}
	if bridge {
		need = append(need, "pasta")
	}
	for _, tool := range need {
		if _, err := exec.LookPath(tool); err != nil {
			t.Logf("no rootless services (bridge %v): needs %s in PATH", bridge, tool)
			return runner{}, false
		}
	}
	r := rootlessRunner(t)
	if bridge {
		testenv.GrantTun(t, r.uid)
	}
	return r, true
}

// ourPIDs are the pids of ourProcesses and of their children (pasta).
func ourPIDs() []int {
	set := map[int]bool{}
	for _, p := range ourProcesses() {
		pid, _ := strconv.Atoi(strings.Fields(p)[0])
		set[pid] = true
	}
	ents, _ := os.ReadDir("/proc")
	for range 2 {
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || set[pid] {
				continue
			}
			st, _ := os.ReadFile("/proc/" + e.Name() + "/status")
			for _, l := range strings.Split(string(st), "\n") {
				if f := strings.Fields(l); len(f) == 2 && f[0] == "PPid:" {
					if pp, _ := strconv.Atoi(f[1]); set[pp] {
						set[pid] = true
					}
				}
			}
		}
	}
	var out []int
	for p := range set {
		out = append(out, p)
	}
	return out
}
