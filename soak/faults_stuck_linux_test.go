package soak_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestUnkillableInCgroup: a process that survives SIGKILL sits in the
// cgroup a killed run left (moved there from outside, its janitor killed
// too). The next start of the name cannot remove the cgroup: it refuses,
// naming the process, the cgroup and what to do; once the process ends,
// the start after it kills and removes the cgroup and runs.
//
// What survives SIGKILL is real: a process whose FUSE request the file
// system's server has read and never answers. The kernel's
// request_wait_answer (fs/fuse/dev.c) waits for such a request without
// any signal ending the wait (state D), until the server answers or the
// connection is aborted. The server here is this test, on /dev/fuse.
func TestUnkillableInCgroup(t *testing.T) {
	setup(t)
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("no FUSE here (%v): nothing to keep a process from its SIGKILL", err)
	}
	svc := name("stuck")
	b := root.startBackground(t, svc, root.manifest(t, svc, "echo up; exec sleep 1000", ""), "-q")
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

	fs := mountStuckFUSE(t)
	// The victim waits for its cue, so that it is in the cgroups before
	// it touches the file system.
	victim := exec.Command("sh", "-c", "read _; exec stat "+filepath.Join(fs.dir, "x"))
	cue, _ := victim.StdinPipe()
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	ended := make(chan struct{})
	go func() { victim.Wait(); close(ended) }()
	pid := victim.Process.Pid
	t.Cleanup(func() {
		fs.release()
		victim.Process.Kill()
		<-ended
	})
	for _, d := range dirs {
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
			t.Logf("moving into %s: %v", d, err)
		}
	}
	cue.Write([]byte("\n"))
	if err := fs.waitFor(pid, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	unix.Kill(janitor, unix.SIGKILL)
	unix.Kill(pid, unix.SIGKILL)
	time.Sleep(200 * time.Millisecond)
	if st := procState(pid); st != "D" {
		t.Fatalf("the victim is in state %q after SIGKILL, not D (uninterruptible): FUSE ended its wait", st)
	}

	// The start refuses, naming the process and the cgroup.
	again := root.manifest(t, svc, "echo ran", "")
	r := root.run("-q", again)
	where := dirs[0]
	for _, d := range dirs {
		if strings.Contains(d, "/pids/") {
			where = d
		}
	}
	want := fmt.Sprintf("safe-run: cleaning up after a previous run of %s: processes [%d] in cgroup %s survive SIGKILL (a process in uninterruptible sleep, state D in ps, ends when its I/O does; once cgroup.procs there is empty, start again)\n", svc, pid, where)
	if r.code != 125 || r.stderr != want {
		t.Errorf("a start beside a process that survives SIGKILL: exit %d\n%s\nwant exit 125:\n%s", r.code, r.stderr, want)
	}
	t.Logf("refused after %v: %s", r.took.Round(time.Millisecond), strings.TrimSpace(r.stderr))
	if st := procState(pid); st != "D" {
		t.Errorf("the victim is in state %q after the refused start, not D", st)
	}

	// Its I/O ends: it dies of the SIGKILL it has pending, and the next
	// start cleans up and runs.
	fs.release()
	select {
	case <-ended:
	case <-time.After(30 * time.Second):
		t.Fatal("the victim outlived the end of its FUSE request")
	}
	r = root.run("-q", again)
	if r.code != 0 || r.stdout != "ran\n" {
		t.Fatalf("the start after the process ended: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if left := cgroupsOf("safe-run-" + svc); len(left) > 0 {
		t.Errorf("cgroups left: %v", left)
	}
	left := assertNoLeaks(t, "a process that survives SIGKILL")
	record("| a process that survives SIGKILL (a FUSE request never answered) in a killed run's cgroup | 2 starts | %d | the first refused (exit 125) naming the pid and %s; once it ended, the next killed and removed the cgroup and ran |", left, where)
}

// procState is the state letter of process pid ("" once it is gone).
func procState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || len(s) < i+3 {
		return ""
	}
	return s[i+2 : i+3]
}

// stuckFUSE is a FUSE file system whose server (this test) answers INIT
// and holds every other request unanswered until release.
type stuckFUSE struct {
	dir  string
	fd   int
	mu   sync.Mutex
	held []fuseHeld
	seen chan int // pids of held requests
	once sync.Once
	done chan struct{}
}

type fuseHeld struct {
	unique uint64
	pid    int
}

// The FUSE protocol's numbers (include/uapi/linux/fuse.h).
const (
	fuseLookup      = 1
	fuseForget      = 2
	fuseInit        = 26
	fuseInterrupt   = 36
	fuseBatchForget = 42
	fuseInHeader    = 40 // len, opcode, unique, nodeid, uid, gid, pid, extlen, padding
	fuseOutHeader   = 16 // len, error, unique
	fuseInitOut     = 64
)

func mountStuckFUSE(t *testing.T) *stuckFUSE {
	t.Helper()
	dir := filepath.Join(env.dir, "stuck-fuse")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open("/dev/fuse", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Skipf("opening /dev/fuse: %v", err)
	}
	opts := fmt.Sprintf("fd=%d,rootmode=40000,user_id=0,group_id=0", fd)
	if err := unix.Mount(env.prefix+"-stuck", dir, "fuse", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		unix.Close(fd)
		t.Skipf("mounting a FUSE file system: %v", err)
	}
	fs := &stuckFUSE{dir: dir, fd: fd, seen: make(chan int, 16), done: make(chan struct{})}
	go fs.serve()
	t.Cleanup(fs.release)
	return fs
}

// serve reads requests until the connection ends (unmounted: ENODEV).
func (fs *stuckFUSE) serve() {
	defer close(fs.done)
	buf := make([]byte, 1<<20)
	for {
		n, err := unix.Read(fs.fd, buf)
		if errors.Is(err, unix.EINTR) || errors.Is(err, unix.ENOENT) {
			continue // ENOENT: a request interrupted before we read it
		}
		if err != nil || n < fuseInHeader {
			return
		}
		op := binary.LittleEndian.Uint32(buf[4:])
		unique := binary.LittleEndian.Uint64(buf[8:])
		pid := int(binary.LittleEndian.Uint32(buf[32:]))
		switch op {
		case fuseInit:
			out := make([]byte, fuseOutHeader+fuseInitOut)
			binary.LittleEndian.PutUint32(out[0:], uint32(len(out)))
			binary.LittleEndian.PutUint64(out[8:], unique)
			binary.LittleEndian.PutUint32(out[16:], 7)     // major
			binary.LittleEndian.PutUint32(out[20:], 31)    // minor
			binary.LittleEndian.PutUint32(out[24:], 65536) // max_readahead
			binary.LittleEndian.PutUint32(out[36:], 4096)  // max_write
			unix.Write(fs.fd, out)
		case fuseForget, fuseBatchForget, fuseInterrupt:
			// No answer is expected; an INTERRUPT of a held request
			// is the SIGKILL's, which the server may ignore.
		default:
			fs.mu.Lock()
			fs.held = append(fs.held, fuseHeld{unique, pid})
			fs.mu.Unlock()
			select {
			case fs.seen <- pid:
			default:
			}
		}
	}
}

// waitFor waits until the server holds a request of process pid.
func (fs *stuckFUSE) waitFor(pid int, d time.Duration) error {
	timeout := time.After(d)
	for {
		select {
		case p := <-fs.seen:
			if p == pid {
				return nil
			}
		case <-timeout:
			return fmt.Errorf("no FUSE request of process %d within %v (state %q)", pid, d, procState(pid))
		}
	}
}

// release answers every held request (ENOENT) and unmounts the file
// system, which ends the connection and serve.
func (fs *stuckFUSE) release() {
	fs.once.Do(func() {
		fs.mu.Lock()
		for _, h := range fs.held {
			out := make([]byte, fuseOutHeader)
			binary.LittleEndian.PutUint32(out[0:], fuseOutHeader)
			errno := -int32(unix.ENOENT)
			binary.LittleEndian.PutUint32(out[4:], uint32(errno))
			binary.LittleEndian.PutUint64(out[8:], h.unique)
			unix.Write(fs.fd, out)
		}
		fs.held = nil
		fs.mu.Unlock()
		unix.Unmount(fs.dir, unix.MNT_DETACH)
		select {
		case <-fs.done:
		case <-time.After(10 * time.Second):
		}
		unix.Close(fs.fd)
		os.Remove(fs.dir)
	})
}
