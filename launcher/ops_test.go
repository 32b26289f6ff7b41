package launcher_test

// The operations commands (ps, stop, kill, events, stats) on real services,
// through the safe-run binary, which hands them to safe-run-tools.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/safe-run/safe-run/internal/testenv"
	"github.com/safe-run/safe-run/ops"
)

// service is a safe-run running a service in the background.
type service struct {
	name   string
	cmd    *exec.Cmd
	stdout *bufio.Reader
	stderr *bytes.Buffer
}

// startService starts a shell script as service name and waits for its
// first line, "up".
func startService(t *testing.T, name, script, extra string) *service {
	t.Helper()
	m := manifestFor(t, name, fmt.Sprintf("[process]\ncommand = [\"/bin/sh\", \"-c\", %q]\n%s", script, extra))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	c := safeRun(t, ctx, m)
	s := &service{name: name, cmd: c, stderr: &bytes.Buffer{}}
	c.Stderr = s.stderr
	out, _ := c.StdoutPipe()
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Process.Signal(syscall.SIGKILL)
		c.Wait()
		cancel()
		waitUnlocked(name)
	})
	s.stdout = bufio.NewReader(out)
	if line, err := s.stdout.ReadString('\n'); err != nil || line != "up\n" {
		t.Fatalf("%s did not start: %q %v\n%s", name, line, err, s.stderr)
	}
	waitStatus(t, name, ops.StateRunning)
	return s
}

// waitStatus waits for the status file of name to say state: a deadline
// for a loaded host, never a measure of speed.
func waitStatus(t *testing.T, name, state string) *ops.Status {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if s, err := ops.ReadStatus(filepath.Join(env.stateDir, name)); err == nil && s.State == state {
			return s
		}
	}
	t.Fatalf("%s never %s", name, state)
	return nil
}

// tools runs a command of safe-run's and returns its result.
func tools(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	c := safeRun(t, ctx, args...)
	var out, errOut bytes.Buffer
	c.Stdout, c.Stderr = &out, &errOut
	err := c.Run()
	if err != nil && c.ProcessState == nil {
		t.Fatalf("safe-run %s: %v", strings.Join(args, " "), err)
	}
	return result{code: c.ProcessState.ExitCode(), stdout: out.String(), stderr: errOut.String()}
}

func psJSON(t *testing.T, args ...string) map[string]ops.PSEntry {
	t.Helper()
	r := tools(t, append([]string{"ps", "--format", "json"}, args...)...)
	if r.code != 0 {
		t.Fatalf("ps: exit %d\n%s", r.code, r.stderr)
	}
	var list []ops.PSEntry
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil {
		t.Fatalf("ps: %v\n%s", err, r.stdout)
	}
	out := map[string]ops.PSEntry{}
	for _, e := range list {
		out[e.Name] = e
	}
	return out
}

func readCgroupFile(t *testing.T, dir, file string) string {
	t.Helper()
	return strings.TrimSpace(string(mustRead(t, filepath.Join(dir, file))))
}

func cgroupKey(t *testing.T, dir, file, key string) uint64 {
	t.Helper()
	for _, l := range strings.Split(readCgroupFile(t, dir, file), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == key {
			n, _ := strconv.ParseUint(f[1], 10, 64)
			return n
		}
	}
	return 0
}

func atoi(t *testing.T, s string) uint64 {
	t.Helper()
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestPSAndStats: ps lists two running services and not one that exited;
// ps -a shows one whose supervisor died; stats matches the cgroup files of
// a service holding a known amount of memory.
func TestPSAndStats(t *testing.T) {
	setup(t)
	// 24 MiB held in a shell variable; init, the shell and the sleep.
	hog := startService(t, "opshog", `x=$(head -c 25165824 /dev/zero | tr '\0' x); echo up; `+uniqueSleep(40)+"; echo $x | head -c 1", "[resources]\nmemory = \"96M\"\ncpus = 0.5\npids = 32\n")
	startService(t, "opsidle", "echo up; "+uniqueSleep(40), "")
	if r := run(t, manifestFor(t, "opsgone", "[process]\ncommand = [\"/bin/true\"]\n"), ""); r.code != 0 {
		t.Fatalf("opsgone: exit %d %s", r.code, r.stderr)
	}
	ps := psJSON(t)
	for _, n := range []string{"opshog", "opsidle"} {
		e, ok := ps[n]
		if !ok || e.State != ops.StateRunning || e.Crashed || e.InitPID == 0 || e.SupervisorPID == 0 || len(e.Cgroups) == 0 || e.ManifestSHA == "" || e.UserNS == "" {
			t.Errorf("ps: %s: %+v", n, e)
		}
	}
	if _, ok := ps["opsgone"]; ok {
		t.Error("ps lists a service that exited")
	}
	if e := ps["opshog"]; e.Limits != (ops.Limits{Memory: 96 << 20, CPUs: 0.5, Pids: 32}) || e.SupervisorPID != hog.cmd.Process.Pid {
		t.Errorf("ps: opshog: limits %+v, supervisor %d (want %d)", e.Limits, e.SupervisorPID, hog.cmd.Process.Pid)
	}
	if r := tools(t, "ps"); r.code != 0 || !strings.Contains(r.stdout, "opshog") || !strings.Contains(r.stdout, "mem 96.0MiB,cpus 0.5,pids 32") {
		t.Errorf("ps table: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// A supervisor that died before its janitor cleaned up.
	ghost := filepath.Join(env.stateDir, "opsghost")
	if err := os.Mkdir(ghost, 0o711); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(ghost) })
	if err := ops.WriteStatus(ghost, &ops.Status{Name: "opsghost", State: ops.StateRunning, SupervisorPID: 1 << 30, Started: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, ok := psJSON(t)["opsghost"]; ok {
		t.Error("ps lists a service whose supervisor died")
	}
	if e, ok := psJSON(t, "-a")["opsghost"]; !ok || !e.Crashed {
		t.Errorf("ps -a: opsghost %+v", e)
	}
	if r := tools(t, "ps", "-a"); !strings.Contains(r.stdout, "crashed (supervisor pid 1073741824 died)") {
		t.Errorf("ps -a table:\n%s", r.stdout)
	}

	r := tools(t, "stats", "opshog", "--no-stream", "--format", "json")
	if r.code != 0 {
		t.Fatalf("stats: exit %d\n%s", r.code, r.stderr)
	}
	var stats []ops.Stats
	if err := json.Unmarshal([]byte(r.stdout), &stats); err != nil || len(stats) != 1 {
		t.Fatalf("stats: %v\n%s", err, r.stdout)
	}
	s := stats[0]
	cg := ps["opshog"].Cgroups
	mem, cpu, acct, pids := cg["memory"], cg["cpu"], cg["cpuacct"], cg["pids"]
	if mem == "" {
		t.Fatalf("this test reads cgroup v1's files; cgroups %v are v2's (the guest's)", cg)
	}
	usage := atoi(t, readCgroupFile(t, mem, "memory.usage_in_bytes"))
	t.Logf("stats: memory %d (file now %d), pids %d, cpu %.2f%% (%.2f%% of the limit), throttled %.1f%%", s.Memory, usage, s.Pids, s.CPUPercent, *s.CPULimitPercent, s.ThrottledPercent)
	if diff := int64(usage) - int64(s.Memory); diff > 1<<20 || diff < -(1<<20) || s.Memory < 24<<20 {
		t.Errorf("memory %d, the cgroup's file says %d; want at least 24 MiB", s.Memory, usage)
	}
	for _, c := range []struct {
		name      string
		got, want uint64
	}{
		{"memory limit", s.MemoryLimit, atoi(t, readCgroupFile(t, mem, "memory.limit_in_bytes"))},
		{"pids", s.Pids, atoi(t, readCgroupFile(t, pids, "pids.current"))},
		{"pids (init, sh, sleep)", s.Pids, 3},
		{"pids limit", s.PidsLimit, atoi(t, readCgroupFile(t, pids, "pids.max"))},
		{"oom kills", s.OOMKills, cgroupKey(t, mem, "memory.oom_control", "oom_kill")},
		{"periods", s.Periods, cgroupKey(t, cpu, "cpu.stat", "nr_periods")},
		{"throttled periods", s.ThrottledPeriods, cgroupKey(t, cpu, "cpu.stat", "nr_throttled")},
	} {
		if c.got != c.want {
			t.Errorf("%s: stats %d, cgroup %d", c.name, c.got, c.want)
		}
	}
	if s.MemoryLimit != 96<<20 || s.CPUs != 0.5 || s.HostCPUs < 1 {
		t.Errorf("limits: %+v", s)
	}
	if used := atoi(t, readCgroupFile(t, acct, "cpuacct.usage")); uint64(s.CPUSeconds*1e9) > used || s.CPUSeconds <= 0 {
		t.Errorf("cpu seconds %f, cgroup says %d ns", s.CPUSeconds, used)
	}
	// A CPU hog at cpus = 0.2: never above its limit, throttled; the
	// counters fall between the cgroup's before and after. How much CPU
	// it gets below its limit is the host's load's to say: not checked.
	startService(t, "opscpu", "echo up; while :; do :; done", "[resources]\nmemory = \"32M\"\ncpus = 0.2\n")
	cpuDir := waitStatus(t, "opscpu", ops.StateRunning).Cgroups["cpu"]
	throttledBefore := cgroupKey(t, cpuDir, "cpu.stat", "nr_throttled")
	r = tools(t, "stats", "opscpu", "--no-stream", "--format", "json", "--interval", "2s")
	throttledAfter := cgroupKey(t, cpuDir, "cpu.stat", "nr_throttled")
	stats = nil
	if err := json.Unmarshal([]byte(r.stdout), &stats); err != nil || len(stats) != 1 {
		t.Fatalf("stats: %v\n%s%s", err, r.stdout, r.stderr)
	}
	s = stats[0]
	t.Logf("cpu hog: cpu %.1f%% of the host, %.1f%% of cpus %g; throttled in %.0f%% of periods, %.2fs of %.1fs", s.CPUPercent, *s.CPULimitPercent, s.CPUs, s.ThrottledPercent, s.ThrottledSeconds, s.Interval)
	// 130: the last period of the interval may be one the quota
	// ran over into.
	if *s.CPULimitPercent <= 0 || *s.CPULimitPercent > 130 || s.ThrottledPercent <= 0 || s.ThrottledSeconds <= 0 || s.CPUs != 0.2 ||
		s.ThrottledPeriods < throttledBefore || s.ThrottledPeriods > throttledAfter {
		t.Errorf("cpu hog at cpus 0.2: %+v; the cgroup's nr_throttled %d before, %d after", s, throttledBefore, throttledAfter)
	}
	if r := tools(t, "stats", "--no-stream"); r.code != 0 || !strings.Contains(r.stdout, "opshog") || !strings.Contains(r.stdout, "opsidle") {
		t.Errorf("stats table: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// TestStopAndKill: kill forwards a signal; stop does what SIGTERM to
// safe-run does, and waits for the end; another user may do neither.
func TestStopAndKill(t *testing.T) {
	setup(t)
	s := startService(t, "opsstop", `trap 'echo got HUP' HUP; echo up; while true; do sleep 0.1; done`, "")

	nobody := exec.Command(env.bin, "stop", "opsstop")
	nobody.Env = append(os.Environ(), "SAFE_RUN_STATE_DIR="+env.stateDir, "SAFE_RUN_DATA_DIR="+env.dataDir)
	nobody.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := nobody.CombinedOutput()
	if err == nil {
		t.Errorf("another user stopped the service: %s", out)
	}
	if !strings.Contains(string(out), "opsstop: not permitted: open "+filepath.Join(env.stateDir, "opsstop", ops.StatusFile)+": permission denied (only who started it, or root, may)") {
		t.Errorf("stop by another user: %s", out)
	}
	// Past the status file's and the socket's modes, the supervisor
	// checks who connects.
	for _, f := range []string{ops.ControlFile, ops.StatusFile} {
		if err := os.Chmod(filepath.Join(env.stateDir, "opsstop", f), 0o666); err != nil {
			t.Fatal(err)
		}
	}
	nobody = exec.Command(env.bin, "kill", "opsstop")
	nobody.Env, nobody.SysProcAttr = append(os.Environ(), "SAFE_RUN_STATE_DIR="+env.stateDir), &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if out, err := nobody.CombinedOutput(); err == nil || !strings.Contains(string(out), "opsstop: not permitted: uid 65534 did not start this service (uid 0 did; or be root)") {
		t.Errorf("kill by another user through an open socket: %v\n%s", err, out)
	}

	if r := tools(t, "kill", "-s", "HUP", "opsstop"); r.code != 0 {
		t.Fatalf("kill: exit %d\n%s", r.code, r.stderr)
	}
	if line, err := s.stdout.ReadString('\n'); err != nil || line != "got HUP\n" {
		t.Errorf("after kill -s HUP: %q %v", line, err)
	}
	if r := tools(t, "stop", "opsstop"); r.code != 0 {
		t.Fatalf("stop: exit %d\n%s", r.code, r.stderr)
	}
	// stop returned: safe-run is gone (a zombie for the test to reap),
	// and everything with it; the name is free for the next start.
	if stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.cmd.Process.Pid)); err == nil && !strings.Contains(string(stat), ") Z ") {
		t.Errorf("safe-run still runs after stop returned: %s", stat)
	}
	if r := run(t, manifestFor(t, "opsstop", "[process]\ncommand = [\"/bin/echo\", \"again\"]\n"), ""); r.code != 0 {
		t.Errorf("a start right after stop: exit %d %s", r.code, r.stderr)
	}
	s.cmd.Wait()
	if code := s.cmd.ProcessState.ExitCode(); code != 143 || !strings.Contains(s.stderr.String(), "opsstop: stop requested by uid 0 (safe-run stop)") ||
		!strings.Contains(s.stderr.String(), "opsstop: stopped with SIGTERM (exit code 143)") {
		t.Errorf("exit %d, stderr:\n%s", code, s.stderr)
	}
	assertNothingLeft(t, "opsstop")
	// The kill and the stop request are events, before the exit.
	ev := tools(t, "events", "opsstop", "--since", "10m").stdout
	if !regexp.MustCompile(`opsstop kill SIGHUP by uid 0\n(.*\n)*.* opsstop stop safe-run stop by uid 0\n(.*\n)*.* opsstop exit code 143: stopped with SIGTERM`).MatchString(ev) {
		t.Errorf("events of kill and stop:\n%s", ev)
	}
	if r := tools(t, "stop", "opsstop"); r.code == 0 || !strings.Contains(r.stderr, "opsstop: no such running service") {
		t.Errorf("stop of a stopped service: exit %d %s", r.code, r.stderr)
	}

	// As PID 1 the shell ignores SIGTERM: -t sets how long until SIGKILL.
	s = startService(t, "opsstopt", "echo up; while true; do sleep 0.1; done", "init = false\nstop_timeout = \"100s\"\n")
	start := time.Now()
	stopped := make(chan result, 1)
	// 3 s: time enough for the test to see it stopping on a loaded host.
	go func() { stopped <- tools(t, "stop", "-t", "3s", "opsstopt") }()
	if e := waitStatus(t, "opsstopt", ops.StateStopping); e.InitPID == 0 {
		t.Errorf("stopping: %+v", e)
	}
	if r := <-stopped; r.code != 0 {
		t.Fatalf("stop -t: exit %d\n%s", r.code, r.stderr)
	}
	s.cmd.Wait()
	if code := s.cmd.ProcessState.ExitCode(); code != 137 || !strings.Contains(s.stderr.String(), "killed with SIGKILL: it did not stop within 3s of SIGTERM (safe-run stop -t)") {
		t.Errorf("exit %d, stderr:\n%s", code, s.stderr)
	}
	// Well short of the manifest's 100 s: -t, not stop_timeout, set
	// the SIGKILL (the line above says it; this is no measure of speed).
	if took := time.Since(start); took > 90*time.Second {
		t.Errorf("stop -t 3s took %v: the manifest's stop_timeout of 100s, not -t", took)
	}
	assertNothingLeft(t, "opsstopt")
}

// TestEvents: events --since sees a start and an exit that happened before
// it started; -f follows a service started after it.
func TestEvents(t *testing.T) {
	setup(t)
	before := time.Now()
	if r := shell(t, "opsev", "exit 3", ""); r.code != 3 {
		t.Fatalf("opsev: exit %d %s", r.code, r.stderr)
	}
	r := tools(t, "events", "opsev", "--since", "1m", "--format", "json")
	if r.code != 0 {
		t.Fatalf("events: exit %d %s", r.code, r.stderr)
	}
	var kinds []string
	var exit ops.Event
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	for {
		var e ops.Event
		if err := dec.Decode(&e); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if e.Time.Before(before) {
			continue // an earlier run of this test
		}
		kinds = append(kinds, e.Kind)
		if e.Kind == ops.EventExit {
			exit = e
		}
	}
	if strings.Join(kinds, " ") != "start ready exit" || exit.Code == nil || *exit.Code != 3 || exit.Message != "exited with code 3" {
		t.Errorf("events %v, exit %+v\n%s", kinds, exit, r.stdout)
	}
	if r := tools(t, "events", "opsev", "--since", "1m"); !strings.Contains(r.stdout, "opsev exit code 3: exited with code 3") {
		t.Errorf("events text:\n%s", r.stdout)
	}

	// The seccomp watcher's denials are events too.
	if r := shell(t, "opsdeny", "unshare -U true 2>/dev/null; echo done", ""); r.code != 0 || !strings.Contains(r.stderr, "seccomp denied unshare") {
		t.Fatalf("opsdeny: exit %d, no denial reported:\n%s", r.code, r.stderr)
	}
	r = tools(t, "events", "opsdeny", "--since", "1m")
	if !regexp.MustCompile(`opsdeny seccomp seccomp denied unshare \(syscall \d+\)`).MatchString(r.stdout) {
		t.Errorf("events of a seccomp denial:\n%s", r.stdout)
	}

	// So are egress denials: a bridge service (egress = "none") sends to
	// a test host in a network namespace of this test's; over UDP
	// (busybox's tftp), which Landlock's TCP connect rule does not stop
	// before the firewall does.
	th := makeTestHost(t)
	if r := shell(t, "opsegress", fmt.Sprintf("timeout 3 tftp -g -r x -l /dev/null %s %d; echo done", th.addr, th.port), "\n[network]\nmode = \"bridge\"\n"); r.code != 0 || !strings.Contains(r.stderr, "egress denied "+th.addr) {
		t.Errorf("opsegress: exit %d, no denial reported:\n%s", r.code, r.stderr)
	}
	r = tools(t, "events", "opsegress", "--since", "1m")
	if !strings.Contains(r.stdout, fmt.Sprintf("opsegress egress egress denied %s:%d/udp\n", th.addr, th.port)) {
		t.Errorf("events of an egress denial:\n%s", r.stdout)
	}

	// An OOM kill is an event of its own, before the exit.
	if r := shell(t, "opsoom", `x=$(head -c 200000000 /dev/zero | tr '\0' x)`, "[resources]\nmemory = \"32M\"\ncpus = 1.0\n"); r.code != 137 {
		t.Fatalf("opsoom: exit %d %s", r.code, r.stderr)
	}
	// Which process, as the kernel's log says it: where the kernel's
	// rate limit (10 in 5 s, host-wide) left it out, the event says how
	// many only.
	r = tools(t, "events", "opsoom", "--since", "1m")
	m := regexp.MustCompile(`opsoom oom the kernel OOM-killed \d+ process\(es\) of it \(memory limit 32M\)(: [a-z]+ \(host pid \d+\)(, [a-z]+ \(host pid \d+\))*)?\n.* opsoom exit code 137: OOM-killed`).FindStringSubmatch(r.stdout)
	if m == nil {
		t.Errorf("events of an OOM kill:\n%s", r.stdout)
	} else if m[1] == "" {
		t.Logf("the kernel's log did not name the OOM-killed process (rate-limited):\n%s", r.stdout)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	follow := safeRun(t, ctx, "events", "-f", "opsfollow", "--format", "json")
	out, _ := follow.StdoutPipe()
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { follow.Process.Kill(); follow.Wait() }()
	// Whether its first scan comes before the journal exists or after,
	// a journal new to it is read from its start.
	if r := shell(t, "opsfollow", "true", ""); r.code != 0 {
		t.Fatalf("opsfollow: exit %d %s", r.code, r.stderr)
	}
	dec = json.NewDecoder(out)
	for {
		var e ops.Event
		if err := dec.Decode(&e); err != nil {
			t.Fatalf("events -f: %v", err)
		}
		if e.Time.Before(before) {
			continue
		}
		if e.Kind == ops.EventExit {
			break
		}
	}
}

// TestRootlessPSAndStop: a user's own services, in the user's own state
// directory: ps lists them, kill signals them, stats says what it cannot
// read without a cgroup (cgroup v1 is not delegated to users; v2's is the
// guest's), metrics has what needs none, stop stops them, events has it
// all.
func TestRootlessPSAndStop(t *testing.T) {
	setup(t)
	h := newRootlessHome(t, "rootless-ops")
	asUser := h.cmd
	// What an earlier run of this test left in the user's journal.
	os.Remove(filepath.Join(h.dir, "data", "safe-run", "events", "rlops.jsonl"))
	os.Remove(filepath.Join(h.dir, "data", "safe-run", "events", "rlops.jsonl.1"))
	p := h.manifest("rlops", "[process]\ncommand = [\"/bin/sh\", \"-c\", \"trap 'echo got HUP' HUP; echo up; while true; do sleep 0.1; done\"]")
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	c := asUser(ctx, "-q", p)
	var stderr testenv.Buffer
	c.Stderr = &stderr
	out, _ := c.StdoutPipe()
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { c.Process.Kill(); c.Wait() }()
	stdout := bufio.NewReader(out)
	if line, err := stdout.ReadString('\n'); err != nil || line != "up\n" {
		t.Fatalf("rlops did not start: %q %v\n%s", line, err, &stderr)
	}
	var list []ops.PSEntry
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		ps, err := asUser(ctx, "ps", "--format", "json").Output()
		if err != nil {
			t.Fatalf("ps: %v", err)
		}
		if err := json.Unmarshal(ps, &list); err != nil {
			t.Fatal(err)
		}
		if len(list) == 1 && list[0].State == ops.StateRunning {
			break
		}
	}
	if len(list) != 1 || list[0].Name != "rlops" || list[0].Crashed || list[0].InitPID == 0 || !strings.Contains(list[0].UserNS, "your uid") {
		files, _ := exec.Command("find", h.dir, "-maxdepth", "5").CombinedOutput()
		t.Fatalf("ps as the user: %+v\n%s", list, files)
	}

	if r, err := asUser(ctx, "kill", "-s", "HUP", "rlops").CombinedOutput(); err != nil {
		t.Fatalf("kill -s HUP as the user: %v\n%s", err, r)
	}
	if line, err := stdout.ReadString('\n'); err != nil || line != "got HUP\n" {
		t.Errorf("after kill -s HUP as the user: %q %v", line, err)
	}

	// No cgroup here: stats says so and names what has the rest.
	st, err := asUser(ctx, "stats", "rlops", "--no-stream", "--format", "json").CombinedOutput()
	t.Logf("stats as the user: %v\n%s", err, st)
	if len(list[0].Cgroups) == 0 {
		if exitCode(err) != 125 || !strings.Contains(string(st), "rlops: it runs without cgroup limits ([insecure] no_resource_limits): there are no CPU, memory and pids numbers to show") {
			t.Errorf("stats of a service without a cgroup: %v\n%s", err, st)
		}
	} else if err != nil {
		t.Errorf("stats as the user: %v\n%s", err, st)
	}
	mtext, err := asUser(ctx, "metrics").Output()
	if err != nil {
		t.Fatalf("metrics as the user: %v", err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(bytes.NewReader(mtext))
	if err != nil {
		t.Fatalf("metrics as the user: %v\n%s", err, mtext)
	}
	for name, want := range map[string]float64{"safe_run_service_info": 1, "safe_run_starts_total": 1, "safe_run_seccomp_denials_total": 0} {
		if v := metricValue(mfs, name, "rlops", ""); v != want {
			t.Errorf("metrics as the user: %s = %g, want %g\n%s", name, v, want, mtext)
		}
	}

	if r, err := asUser(ctx, "stop", "rlops").CombinedOutput(); err != nil {
		t.Fatalf("stop as the user: %v\n%s", err, r)
	}
	c.Wait()
	if code := c.ProcessState.ExitCode(); code != 143 || !strings.Contains(stderr.String(), "rlops: stopped with SIGTERM (exit code 143)") {
		t.Errorf("exit %d:\n%s", code, &stderr)
	}
	ev, _ := asUser(ctx, "events", "rlops").Output()
	uid := strconv.Itoa(int(h.u.uid))
	for _, want := range []string{"rlops start ", "rlops ready ", "rlops kill SIGHUP by uid " + uid, "rlops stop safe-run stop by uid " + uid, "rlops exit code 143"} {
		if !strings.Contains(string(ev), want) {
			t.Errorf("events as the user: no %q in\n%s", want, ev)
		}
	}
}

// TestPSShowsACrash: safe-run SIGKILLed, its janitor held (as a `pkill -9
// safe-run` can leave it): ps -a says the service crashed, ps leaves it
// out, and once the janitor has cleaned up neither lists it.
func TestPSShowsACrash(t *testing.T) {
	setup(t)
	s := startService(t, "opscrash", "echo up; "+uniqueSleep(32)+"; echo", "")
	janitor := janitorOf(t, s.cmd.Process.Pid)
	syscall.Kill(janitor, syscall.SIGSTOP)
	defer syscall.Kill(janitor, syscall.SIGCONT)
	s.cmd.Process.Signal(syscall.SIGKILL)
	s.cmd.Wait()
	if _, ok := psJSON(t)["opscrash"]; ok {
		t.Error("ps lists a service whose safe-run was killed")
	}
	if e, ok := psJSON(t, "-a")["opscrash"]; !ok || !e.Crashed || e.SupervisorPID != s.cmd.Process.Pid {
		t.Errorf("ps -a: %+v", e)
	}
	if r := tools(t, "stop", "opscrash"); r.code == 0 || !strings.Contains(r.stderr, fmt.Sprintf("opscrash: no such running service: its supervisor (pid %d) died, and left its container, cgroups and state directory %s: start it again (safe-run ", s.cmd.Process.Pid, filepath.Join(env.stateDir, "opscrash"))) {
		t.Errorf("stop of a crashed service: exit %d %s", r.code, r.stderr)
	}
	syscall.Kill(janitor, syscall.SIGCONT)
	waitUnlocked("opscrash")
	if _, ok := psJSON(t, "-a")["opscrash"]; ok {
		t.Error("ps -a lists a crashed service the janitor cleaned up after")
	}
	assertNothingLeft(t, "opscrash")
}

// TestPSShowsTheNetwork: a bridge service's address and published ports.
func TestPSShowsTheNetwork(t *testing.T) {
	setup(t)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	s := startService(t, "opsnetps", "echo up; "+uniqueSleep(33)+"; echo", fmt.Sprintf("\n[network]\nmode = \"bridge\"\nports = [\"127.0.0.1:%d:80\"]\n", port))
	e := psJSON(t)["opsnetps"]
	if want := []string{fmt.Sprintf("127.0.0.1:%d:80/tcp", port)}; strings.Join(e.Ports, " ") != strings.Join(want, " ") || !strings.HasPrefix(e.Address, "10.") && !strings.HasPrefix(e.Address, "172.") && !strings.HasPrefix(e.Address, "192.168.") {
		t.Errorf("ps: address %q, ports %v; want a private address and %v", e.Address, e.Ports, want)
	}
	if r := tools(t, "stop", "opsnetps"); r.code != 0 {
		t.Errorf("stop: exit %d %s", r.code, r.stderr)
	}
	s.cmd.Wait()
	assertNothingLeft(t, "opsnetps")
}

// unitCgroup makes a cgroup named like a systemd unit, as systemd keeps a
// unit's processes in, in the hierarchy systemd tracks units in here: the
// unified one (cgroup v2, or its mount beside v1's on a hybrid host), or
// v1's name=systemd. It is removed at the end, once empty.
func unitCgroup(t *testing.T, unit string) string {
	t.Helper()
	var root string
	for _, r := range []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd", "/sys/fs/cgroup"} {
		if _, err := os.Stat(filepath.Join(r, "cgroup.procs")); err == nil {
			root = r
			break
		}
	}
	if root == "" {
		t.Skip("no cgroup hierarchy to make a unit's cgroup in (neither unified nor name=systemd is mounted)")
	}
	dir := filepath.Join(root, unit)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// The janitor may outlive safe-run a moment.
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			err := os.Remove(dir)
			if err == nil || errors.Is(err, fs.ErrNotExist) {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("removing %s: %v", dir, err)
				return
			}
		}
	})
	return dir
}

// TestStartsCounted: safe_run_starts_total counts the starts of a name in
// its journal: started, stopped and started again, it says 2 (a restart).
// The second start is as systemd makes it (INVOCATION_ID, a cgroup named
// after the unit): ps and the metrics name the unit.
func TestStartsCounted(t *testing.T) {
	setup(t)
	const name = "opsrestart"
	// What an earlier run of this test left in the journal.
	for _, p := range []string{name + ".jsonl", name + ".jsonl.1"} {
		os.Remove(filepath.Join(ops.JournalDir(env.dataDir), p))
	}
	script := "echo up; " + uniqueSleep(35) + "; echo"
	s := startService(t, name, script, "")
	if e := psJSON(t)[name]; e.Unit != "" {
		t.Errorf("ps: unit %q of a service systemd did not start", e.Unit)
	}
	if v := metricValue(scrape(t), "safe_run_starts_total", name, ""); v != 1 {
		t.Errorf("starts after the first start: %g, want 1", v)
	}
	if r := tools(t, "stop", name); r.code != 0 {
		t.Fatalf("stop: exit %d %s", r.code, r.stderr)
	}
	s.cmd.Wait()
	waitUnlocked(name)

	unit := fmt.Sprintf("safe-run-test-%d.service", os.Getpid())
	cg := unitCgroup(t, unit)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := exec.CommandContext(ctx, "/bin/sh", "-c", `echo $$ >"$1/cgroup.procs" && shift && exec "$@"`, "sh", cg, env.bin,
		manifestFor(t, name, fmt.Sprintf("[process]\ncommand = [\"/bin/sh\", \"-c\", %q]\n", script)))
	c.Env = append(os.Environ(), "SAFE_RUN_STATE_DIR="+env.stateDir, "SAFE_RUN_DATA_DIR="+env.dataDir, "INVOCATION_ID=0123456789abcdef0123456789abcdef")
	var stderr testenv.Buffer
	c.Stderr = &stderr
	out, _ := c.StdoutPipe()
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Process.Signal(syscall.SIGKILL)
		c.Wait()
		waitUnlocked(name)
	})
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "up\n" {
		t.Fatalf("%s did not start again: %q %v\n%s", name, line, err, &stderr)
	}
	st := waitStatus(t, name, ops.StateRunning)
	t.Logf("second start: unit %q, cgroups %v", st.Unit, st.Cgroups)
	if e := psJSON(t)[name]; e.Unit != unit {
		t.Errorf("ps: unit %q, want %q", e.Unit, unit)
	}
	if r := tools(t, "ps"); !regexp.MustCompile(name + ` .* ` + regexp.QuoteMeta(unit) + `\n`).MatchString(r.stdout) {
		t.Errorf("ps table:\n%s", r.stdout)
	}
	mfs := scrape(t)
	if v := metricValue(mfs, "safe_run_starts_total", name, ""); v != 2 {
		t.Errorf("starts after start, stop, start: %g, want 2", v)
	}
	for _, family := range []string{"safe_run_starts_total", "safe_run_service_info"} {
		found := false
		for _, m := range mfs[family].GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			found = found || l["service"] == name && l["unit"] == unit
		}
		if !found {
			t.Errorf("%s: no series of %s with unit %q", family, name, unit)
		}
	}
	if r := tools(t, "stop", name); r.code != 0 {
		t.Fatalf("stop: exit %d %s", r.code, r.stderr)
	}
	c.Wait()
	assertNothingLeft(t, name)
}
