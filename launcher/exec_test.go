package launcher_test

// safe-run exec on real services: the command gets the service's
// confinement, no more.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/internal/testenv"
	"github.com/safe-run/safe-run/ops"
)

// execService is the service the exec tests run commands in: a user that
// is not root, a declared capability, a volume (mounted exec: only
// Landlock keeps what is written there from running), a tmpfs.
const execService = `user = "1000:1000"
[security]
capabilities = ["NET_BIND_SERVICE"]

[[mounts]]
type = "volume"
source = "opsexec-data"
target = "/data"

[[mounts]]
type = "tmpfs"
target = "/tmp"
`

// statusFields are the lines of /proc/PID/status that say a process's
// confinement.
var statusFields = []string{"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp", "Seccomp_filters"}

func statusOf(text string) map[string]string {
	out := map[string]string{}
	for _, l := range strings.Split(text, "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			out[k] = strings.TrimSpace(v)
		}
	}
	return out
}

// TestExec: exec runs commands in a running service, with its namespaces,
// cgroup, user, capabilities, no_new_privs, seccomp filter and Landlock
// ruleset; escapes stay blocked; exit codes, -u, -w, -e, -t; another user
// is refused; each exec is a line of the service's output and an event.
func TestExec(t *testing.T) {
	setup(t)
	s := startService(t, "opsexec", "echo up; "+uniqueSleep(60), execService)
	st := waitStatus(t, "opsexec", ops.StateRunning)
	ex := func(args ...string) result {
		t.Helper()
		return tools(t, append([]string{"exec"}, args...)...)
	}

	if r := ex("opsexec", "--", "id"); r.code != 0 || r.stdout != "uid=1000(app) gid=1000(app)\n" {
		t.Errorf("exec id: exit %d, %q %s", r.code, r.stdout, r.stderr)
	}

	// The service's init's confinement, as the host sees it, and the
	// command's, as it sees its own.
	want := statusOf(string(mustRead(t, fmt.Sprintf("/proc/%d/status", st.InitPID))))
	r := ex("opsexec", "--", "cat", "/proc/self/status")
	if r.code != 0 {
		t.Fatalf("exec cat: exit %d %s", r.code, r.stderr)
	}
	got := statusOf(r.stdout)
	for _, k := range statusFields {
		if got[k] != want[k] || got[k] == "" {
			t.Errorf("%s: exec %q, the service's init %q", k, got[k], want[k])
		}
	}
	t.Logf("exec's status: %v", got)
	if got["Seccomp"] != "2" || got["NoNewPrivs"] != "1" || got["CapEff"] != fmt.Sprintf("%016x", 1<<10) {
		t.Errorf("exec's confinement: %v", got)
	}
	// Its namespaces are the service's, every one.
	r = ex("opsexec", "--", "sh", "-c", "for n in user mnt pid net ipc uts cgroup; do readlink /proc/self/ns/$n; done")
	var nsWant []string
	for _, n := range []string{"user", "mnt", "pid", "net", "ipc", "uts", "cgroup"} {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", st.InitPID, n))
		if err != nil {
			t.Fatal(err)
		}
		nsWant = append(nsWant, l)
	}
	if strings.Fields(r.stdout) == nil || strings.Join(strings.Fields(r.stdout), " ") != strings.Join(nsWant, " ") {
		t.Errorf("exec's namespaces:\n%s\nthe service's:\n%s", r.stdout, strings.Join(nsWant, "\n"))
	}

	// Its PID 1 is the service's init; it holds no descriptor but its
	// stdio (none of safe-run's, none of safe-run-init's feed).
	if r := ex("opsexec", "--", "sh", "-c", "tr '\\0' ' ' </proc/1/cmdline"); r.code != 0 || !strings.HasPrefix(r.stdout, "/dev/init --control-fd 3 -- /bin/sh -c ") {
		t.Errorf("exec's PID 1: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
	if r := ex("opsexec", "--", "ls", "-l", "/proc/self/fd"); r.code != 0 || len(strings.Split(strings.TrimSpace(r.stdout), "\n")) != 5 {
		// total, 0, 1, 2, and ls's own of /proc/self/fd
		t.Errorf("exec's descriptors: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// Escapes stay blocked; the rootfs stays read-only; what is written
	// on the volume does not run (Landlock); the denied unshare is the
	// seccomp filter's, and reported as the service's are.
	for _, tc := range []struct{ name, script string }{
		{"mount", "mount -t tmpfs none /tmp"},
		{"unshare -U", "unshare -U true"},
		{"unshare -m", "unshare -m true"},
		{"nsenter", "nsenter -t 1 -m true"},
		{"write the rootfs", "touch /bin/x"},
		{"run from the volume", "cp /bin/busybox /data/true && /data/true"},
		{"chroot", "chroot / true"},
	} {
		if r := ex("opsexec", "--", "sh", "-c", tc.script); r.code == 0 {
			t.Errorf("%s: exit 0 in exec\n%s%s", tc.name, r.stdout, r.stderr)
		}
	}

	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"sh", "-c", "exit 3"}, 3, ""},
		{[]string{"/nonexistent"}, 127, ""},
		{[]string{"/etc/passwd"}, 126, ""},
		{[]string{"sh", "-c", "kill -9 $$"}, 137, ""},
		{[]string{"-u", "0:0", "--", "id", "-u"}, 0, "0\n"},
		{[]string{"-u", "nobody", "--", "id"}, 0, "uid=65534(nobody) gid=65534(nogroup)\n"},
		{[]string{"-u", "root", "--", "sh", "-c", "echo $HOME"}, 0, "/root\n"},
		{[]string{"-u", "root", "-e", "HOME=/tmp", "--", "sh", "-c", "echo $HOME"}, 0, "/tmp\n"},
		{[]string{"sh", "-c", "echo $HOME"}, 0, "/home/app\n"},
		{[]string{"-u", "2000:3000", "--", "sh", "-c", "echo $(id -u):$(id -g)"}, 0, "2000:3000\n"},
		{[]string{"-w", "/tmp", "--", "pwd"}, 0, "/tmp\n"},
		{[]string{"-w", "/proc/1", "--", "pwd"}, 0, "/proc/1\n"}, // under a mount of the service's
		{[]string{"-e", "FOO=bar baz", "-e", "PATH=/bin", "--", "sh", "-c", "echo $FOO:$PATH"}, 0, "bar baz:/bin\n"},
		{[]string{"sh", "-c", "read x; echo \"got $x.\""}, 0, "got .\n"}, // stdin: empty, closed
	} {
		var args []string
		if i := slices.Index(tc.args, "--"); i >= 0 {
			args = slices.Concat(tc.args[:i], []string{"opsexec"}, tc.args[i:])
		} else {
			args = append([]string{"opsexec", "--"}, tc.args...)
		}
		if r := ex(args...); r.code != tc.code || tc.out != "" && r.stdout != tc.out {
			t.Errorf("exec %s: exit %d, %q, want %d, %q\n%s", strings.Join(tc.args, " "), r.code, r.stdout, tc.code, tc.out, r.stderr)
		}
	}
	for _, tc := range []struct{ args, want string }{
		{"-u nosuchuser -- id", `-u "nosuchuser": unable to find user nosuchuser`},
		{"-w relative -- pwd", "-w relative: use an absolute path in the container"},
		{"-e NOEQUALS -- true", `-e "NOEQUALS": use KEY=VALUE`},
		{"-w /nonexistent -- pwd", "-w /nonexistent: no such directory in the service (name one that exists there)"},
		{"-w /etc/passwd -- pwd", "-w /etc/passwd: not a directory in the service (name a directory)"},
		{"nosuchservice -- true", "nosuchservice: no such running service"},
	} {
		args := strings.Fields(tc.args)
		if i := slices.Index(args, "--"); args[0] != "nosuchservice" {
			args = slices.Concat(args[:i], []string{"opsexec"}, args[i:])
		}
		r := ex(args...)
		t.Logf("exec %s: %s", tc.args, strings.TrimSpace(r.stderr))
		if r.code != 125 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("exec %s: exit %d, %q, want 125 and %q", tc.args, r.code, r.stderr, tc.want)
		}
	}

	// stdin reaches the command; stdout and stderr come back apart.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := safeRun(t, ctx, "exec", "opsexec", "--", "sh", "-c", "tr a-z A-Z; echo err >&2")
	var out, errOut bytes.Buffer
	c.Stdin, c.Stdout, c.Stderr = strings.NewReader("hello\n"), &out, &errOut
	if err := c.Run(); err != nil || out.String() != "HELLO\n" || errOut.String() != "err\n" {
		t.Errorf("exec with stdin: %v, %q, %q", err, out.String(), errOut.String())
	}

	// While it runs, the command is in the service's cgroup; when its
	// caller goes, so does it.
	c = safeRun(t, ctx, "exec", "opsexec", "--", "sh", "-c", "echo started; exec "+uniqueSleep(30))
	pipe, _ := c.StdoutPipe()
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(pipe).ReadString('\n'); err != nil || line != "started\n" {
		t.Fatalf("exec sleep: %q %v", line, err)
	}
	// Its pid, from the journal (the service's output is not to be
	// read while it runs). The command may run, and say so, before its
	// supervisor has written the event.
	var m []string
	for deadline := time.Now().Add(60 * time.Second); m == nil; time.Sleep(50 * time.Millisecond) {
		evs := tools(t, "events", "opsexec", "--since", "10m").stdout
		m = regexp.MustCompile(`opsexec exec exec sh as 1000:1000 by uid 0 \(pid (\d+)\)\n$`).FindStringSubmatch(evs)
		if m == nil && time.Now().After(deadline) {
			t.Fatalf("no exec event for the sleep:\n%s", evs)
		}
	}
	pid := m[1]
	for ctrl, dir := range st.Cgroups {
		if !strings.Contains(" "+strings.Join(strings.Fields(readCgroupFile(t, dir, "cgroup.procs")), " ")+" ", " "+pid+" ") {
			t.Errorf("exec's pid %s is not in the service's %s cgroup %s", pid, ctrl, dir)
		}
	}
	c.Process.Kill()
	c.Wait()
	gone := false
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline) && !gone; time.Sleep(20 * time.Millisecond) {
		_, err := os.Stat("/proc/" + pid)
		gone = err != nil
	}
	if !gone {
		t.Errorf("the exec'd sleep (pid %s) outlived its caller", pid)
	}

	// A signal to exec goes to the command.
	c = safeRun(t, ctx, "exec", "opsexec", "--", "sh", "-c", `trap 'echo got INT; exit 7' INT; echo ready; while :; do sleep 0.1; done`)
	pipe, _ = c.StdoutPipe()
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	rd := bufio.NewReader(pipe)
	if line, err := rd.ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("exec trap: %q %v", line, err)
	}
	c.Process.Signal(syscall.SIGINT)
	if line, _ := rd.ReadString('\n'); line != "got INT\n" {
		t.Errorf("exec after SIGINT: %q", line)
	}
	if err := c.Wait(); exitCode(err) != 7 {
		t.Errorf("exec after SIGINT: %v, want exit 7", err)
	}

	// -t: a terminal of the container's own, not the caller's.
	master, slave := openPTY(t)
	defer master.Close()
	termBefore, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	c = safeRun(t, ctx, "exec", "-t", "opsexec", "--", "sh", "-c", `tty; stty size; echo $TERM; read x; echo "got $x"; exit 5`)
	c.Env = append(c.Env, "TERM=xterm-exec")
	c.Stdin, c.Stdout, c.Stderr = slave, slave, slave
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := unix.IoctlSetWinsize(int(slave.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 21, Col: 77}); err != nil {
		t.Fatal(err)
	}
	var ttyOut testenv.Buffer
	copied := make(chan struct{})
	go func() { io.Copy(&ttyOut, master); close(copied) }()
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	// Typed once the command waits for it, through the caller's
	// terminal (raw by then) and the container's.
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline) && !strings.Contains(ttyOut.String(), "xterm-exec"); time.Sleep(20 * time.Millisecond) {
	}
	master.WriteString("hello\r")
	if err := c.Wait(); exitCode(err) != 5 {
		t.Errorf("exec -t: %v, want exit 5", err)
	}
	termAfter, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	if *termBefore != *termAfter {
		t.Errorf("exec -t left the caller's terminal changed:\nbefore %+v\nafter  %+v", termBefore, termAfter)
	}
	slave.Close()
	<-copied
	t.Logf("exec -t: %q", ttyOut.String())
	if !regexp.MustCompile(`^/dev/pts/\d+\r?\n21 77\r?\nxterm-exec\r?\nhello\r?\ngot hello\r?\n`).MatchString(ttyOut.String()) {
		t.Errorf("exec -t: %q, want the container's /dev/pts/N at the caller's size, its TERM, and the line typed", ttyOut.String())
	}
	if r := ex("-t", "opsexec", "--", "true"); r.code != 125 || !strings.Contains(r.stderr, "-t: stdin is not a terminal") {
		t.Errorf("exec -t without a terminal: exit %d %s", r.code, r.stderr)
	}

	// Another user may not, through the socket's mode or past it.
	nobody := safeRun(t, ctx, "exec", "opsexec", "--", "id")
	nobody.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if out, err := nobody.CombinedOutput(); exitCode(err) != 125 || !strings.Contains(string(out), "opsexec: not permitted") {
		t.Errorf("exec by another user: %v\n%s", err, out)
	}
	for _, f := range []string{ops.ControlFile, ops.StatusFile} {
		if err := os.Chmod(filepath.Join(env.stateDir, "opsexec", f), 0o666); err != nil {
			t.Fatal(err)
		}
	}
	nobody = safeRun(t, ctx, "exec", "opsexec", "--", "id")
	nobody.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if out, err := nobody.CombinedOutput(); exitCode(err) != 125 || !strings.Contains(string(out), "opsexec: not permitted: uid 65534 did not start this service (uid 0 did; or be root)") {
		t.Errorf("exec by another user through an open socket: %v\n%s", err, out)
	}

	// The journal has each exec and its end.
	ev := tools(t, "events", "opsexec", "--since", "10m")
	for _, re := range []string{
		`opsexec exec exec id as 1000:1000 by uid 0 \(pid \d+\)`,
		`opsexec exec-exit code 0: exec id \(pid \d+\) exited with code 0`,
		`opsexec exec-exit code 3: exec sh \(pid \d+\) exited with code 3`,
		`opsexec seccomp seccomp denied unshare`,
	} {
		if !regexp.MustCompile(re).MatchString(ev.stdout) {
			t.Errorf("events: no %s in\n%s", re, ev.stdout)
		}
	}
	// The service itself carried on through all of it.
	if r := tools(t, "stop", "opsexec"); r.code != 0 {
		t.Errorf("stop: exit %d %s", r.code, r.stderr)
	}
	s.cmd.Wait()
	for _, re := range []string{
		`safe-run: opsexec: exec id as 1000:1000 by uid 0 \(pid \d+\)\n`,
		`safe-run: opsexec: exec id \(pid \d+\) exited with code 0\n`,
	} {
		if !regexp.MustCompile(re).MatchString(s.stderr.String()) {
			t.Errorf("the service's output has no %s:\n%s", re, s.stderr)
		}
	}
	assertNothingLeft(t, "opsexec")
}

// TestRootlessExec: a user execs into the user's own service: the same
// socket, served by safe-run in the user's namespace; the service's filter,
// whose denials come to safe-run's agent, holds for the command.
func TestRootlessExec(t *testing.T) {
	setup(t)
	h := newRootlessHome(t, "rootless-exec")
	p := h.manifest("rlexec", "[process]\ncommand = [\"/bin/sh\", \"-c\", \"echo up; while true; do sleep 0.1; done\"]")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := h.cmd(ctx, p)
	var stderr bytes.Buffer
	c.Stderr = &stderr
	out, _ := c.StdoutPipe()
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { c.Process.Kill(); c.Wait() }()
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "up\n" {
		t.Fatalf("rlexec did not start: %q %v\n%s", line, err, stderr.String())
	}
	var got []byte
	var err error
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if got, err = h.cmd(ctx, "exec", "rlexec", "--", "sh", "-c", "id -u; grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status; unshare -U true 2>/dev/null || echo denied; exit 4").CombinedOutput(); exitCode(err) == 4 {
			break
		}
	}
	if exitCode(err) != 4 || !regexp.MustCompile(`^0\nNoNewPrivs:\s+1\nSeccomp:\s+2\ndenied\n$`).Match(got) {
		t.Errorf("exec as the user: %v\n%s\nservice:\n%s", err, got, stderr.String())
	}
	if r, err := h.cmd(ctx, "stop", "rlexec").CombinedOutput(); err != nil {
		t.Fatalf("stop as the user: %v\n%s", err, r)
	}
	c.Wait()
	// The denial came to safe-run as a notification (rootless, the
	// kernel's log is out of reach), answered and reported.
	// Who asked is said as the host knows them, not as uid 0 of
	// safe-run's user namespace.
	if !strings.Contains(stderr.String(), fmt.Sprintf("rlexec: exec sh as 0:0 by uid %d ", h.u.uid)) || !strings.Contains(stderr.String(), "seccomp denied unshare") {
		t.Errorf("no exec line in the service's output:\n%s", stderr.String())
	}
	t.Logf("service's output:\n%s", stderr.String())
}

// TestExecWithoutInit: with init = false, exec's command gets the service's
// filter, whoever loads it (safe-run-init under a Landlock ruleset,
// libcontainer without one), and docker's codes for a command that is
// missing or cannot run.
func TestExecWithoutInit(t *testing.T) {
	setup(t)
	for _, tc := range []struct {
		name, extra string
		missing     string // what exec of a missing and of a non-executable file say
		notExec     string
	}{
		// A Landlock ruleset: safe-run-init applies it, then execs the
		// service (--no-init), and is exec's first program too.
		{"landlock", "", "cannot run /nonexistent: No such file or directory", "cannot run /etc/passwd: Permission denied"},
		// Without one, libcontainer loads the filter for both, and safe-run
		// checks the command in the image beforehand.
		{"libcontainer", "\n[security]\nlandlock = \"off\"\n\n[insecure]\nreason = \"libcontainer's own loader\"\nallow = [\"landlock_off\"]\n",
			"/nonexistent is not in the image", "/etc/passwd is not executable in the image"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := "opsexecnoinit" + tc.name
			startService(t, name, "echo up; exec "+uniqueSleep(40), "init = false\n"+tc.extra)
			st := waitStatus(t, name, ops.StateRunning)
			want := statusOf(string(mustRead(t, fmt.Sprintf("/proc/%d/status", st.InitPID))))
			r := tools(t, "exec", name, "--", "cat", "/proc/self/status")
			if r.code != 0 {
				t.Fatalf("exec: exit %d %s", r.code, r.stderr)
			}
			got := statusOf(r.stdout)
			for _, k := range statusFields {
				if got[k] != want[k] || got[k] == "" {
					t.Errorf("%s: exec %q, the service %q", k, got[k], want[k])
				}
			}
			if got["Seccomp"] != "2" {
				t.Errorf("exec without init runs unfiltered: %v", got)
			}
			for _, c := range []struct {
				cmd  string
				code int
				msg  string
			}{{"/nonexistent", 127, tc.missing}, {"/etc/passwd", 126, tc.notExec}} {
				if r := tools(t, "exec", name, "--", c.cmd); r.code != c.code || !strings.Contains(r.stderr, c.msg) {
					t.Errorf("exec %s: exit %d %q, want %d and %q", c.cmd, r.code, r.stderr, c.code, c.msg)
				}
			}
		})
	}
}

// TestExecBridge: in a service on a bridge, whose network namespace safe-run
// made and holds by a mount of its own, exec's command is in that
// namespace too.
func TestExecBridge(t *testing.T) {
	setup(t)
	s := startService(t, "opsexecnet", "echo up; "+uniqueSleep(34)+"; echo", "\n[network]\nmode = \"bridge\"\n")
	st := waitStatus(t, "opsexecnet", ops.StateRunning)
	want, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", st.InitPID))
	if err != nil {
		t.Fatal(err)
	}
	r := tools(t, "exec", "opsexecnet", "--", "sh", "-c", "readlink /proc/self/ns/net; ls /sys/class/net | tr '\\n' ' '")
	if r.code != 0 || !strings.HasPrefix(r.stdout, want+"\n") || !strings.Contains(r.stdout, "eth0") {
		t.Errorf("exec in a bridge service: exit %d %q (want %s and eth0) %s", r.code, r.stdout, want, r.stderr)
	}
	if r := tools(t, "stop", "opsexecnet"); r.code != 0 {
		t.Errorf("stop: exit %d %s", r.code, r.stderr)
	}
	s.cmd.Wait()
	assertNothingLeft(t, "opsexecnet")
}
