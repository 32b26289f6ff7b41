package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// safeRunMemory starts a service that sleeps and reads, once it runs, the
// resident memory of the safe-run supervisor, of its janitor and of the
// init inside the container, from /proc.
func safeRunMemory(ctx context.Context, e *env) ([]row, error) {
	return e.supervisorMemory(ctx, "bench-sleep", "", "safe-run (supervising)",
		"safe-run, which prepared the service and supervises it; goal: VmRSS under 15 MiB. RssFile is clean pages of its binary, shared by every safe-run; RssAnon is its own")
}

// supervisorMemory is safeRunMemory for a service with extra manifest
// text; its first row is named label.
func (e *env) supervisorMemory(ctx context.Context, name, extra, label, note string) ([]row, error) {
	envv, err := e.safeRunEnv()
	if err != nil {
		return nil, err
	}
	m, err := e.manifest(name, []string{"/bin/sleep", "5"}, extra)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, e.safeRun(), "-q", m)
	cmd.Env = envv
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	if err := waitFor(cmd.Process.Pid, "sleep", 5*time.Second); err != nil {
		return nil, err
	}
	rows := []row{statusRow(label, cmd.Process.Pid, note)}
	if extra != "" {
		return rows, nil
	}
	for _, child := range children(cmd.Process.Pid) {
		argv0 := cmdline0(child)
		switch {
		case filepath.Base(argv0) == "safe-run-janitor":
			rows = append(rows, statusRow("safe-run-janitor", child, "static C program, waiting on a pipe"))
		case argv0 == "/dev/init":
			rows = append(rows, statusRow("init in the container (safe-run-init)", child, "PID 1 of the container, in front of sleep"))
		}
	}
	return rows, nil
}

// runcMemory is the same for runc run in the foreground, which stays the
// container's parent as safe-run does.
func runcMemory(ctx context.Context, e *env) ([]row, error) {
	runc, err := lookPath("runc")
	if err != nil {
		return nil, err
	}
	b, err := e.bundle(ctx)
	if err != nil {
		return nil, err
	}
	sleep := *b
	s := *b.spec
	p := *s.Process
	p.Args = []string{"/bin/sleep", "5"}
	s.Process = &p
	sleep.spec = &s
	dir, err := sleep.write(e, "runc-sleep")
	if err != nil {
		return nil, err
	}
	state, err := e.dir("runc-state")
	if err != nil {
		return nil, err
	}
	const id = "safe-run-bench-runc-sleep"
	cmd := exec.CommandContext(ctx, runc, "--root", state, "run", "--bundle", dir, id)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	defer func() {
		// sleep is PID 1 there and ignores SIGTERM.
		_, _ = command(context.Background(), nil, runc, "--root", state, "kill", id, "KILL")
		_ = cmd.Wait()
	}()
	if err := waitFor(cmd.Process.Pid, "sleep", 5*time.Second); err != nil {
		return nil, err
	}
	return []row{statusRow("runc run, foreground ("+strings.TrimPrefix(version(runc, "--version"), "runc version ")+")",
		cmd.Process.Pid, "for comparison: the same service under runc")}, nil
}

// waitFor waits until a process named comm runs below pid.
func waitFor(pid int, comm string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if descendantNamed(pid, comm) {
			// Let the supervisor finish what follows the start.
			time.Sleep(200 * time.Millisecond)
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("no %s below pid %d after %s", comm, pid, timeout)
}

func descendantNamed(pid int, comm string) bool {
	for _, c := range children(pid) {
		if name, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(c), "comm")); strings.TrimSpace(string(name)) == comm {
			return true
		}
		if descendantNamed(c, comm) {
			return true
		}
	}
	return false
}

// children lists the processes whose parent is pid.
func children(pid int) []int {
	var out []int
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		child, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", p.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, child)
		}
	}
	return out
}

func cmdline0(pid int) string {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return ""
	}
	a, _, _ := strings.Cut(string(data), "\x00")
	return a
}

func statusRow(name string, pid int, note string) row {
	values, err := memStatus(pid)
	if err != nil {
		return row{name: name, failed: failure(err)}
	}
	return row{name: name, values: values, note: note}
}

// memStatus reads VmRSS, VmHWM, RssAnon and RssFile of pid, in MiB.
func memStatus(pid int) ([]string, error) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return nil, err
	}
	keys := []string{"VmRSS", "VmHWM", "RssAnon", "RssFile"}
	got := map[string]string{}
	for _, l := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok || !slices.Contains(keys, k) {
			continue
		}
		f := strings.Fields(v)
		kb, err := strconv.ParseFloat(f[0], 64)
		if err != nil || len(f) != 2 || f[1] != "kB" {
			return nil, fmt.Errorf("/proc/%d/status: %s: unexpected %q", pid, k, v)
		}
		got[k] = fmt.Sprintf("%.1f MiB", kb/1024)
	}
	var out []string
	for _, k := range keys {
		if got[k] == "" {
			return nil, fmt.Errorf("no %s in /proc/%d/status", k, pid)
		}
		out = append(out, got[k])
	}
	return out, nil
}
