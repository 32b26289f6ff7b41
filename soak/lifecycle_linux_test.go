package soak_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/safe-run/safe-run/internal/testenv"
)

// mode is one way of running a service the soak cycles through.
type mode struct {
	name   string
	r      func(t *testing.T) runner
	bridge bool
}

func modes() []mode {
	rootless := func(t *testing.T) runner { return rootlessRunner(t) }
	rootlessBridge := func(t *testing.T) runner {
		testenv.RequireTool(t, "pasta")
		r := rootlessRunner(t)
		testenv.GrantTun(t, r.uid)
		return r
	}
	return []mode{
		{"root-none", func(*testing.T) runner { return root }, false},
		{"root-bridge", func(*testing.T) runner { return root }, true},
		{"rootless-none", rootless, false},
		{"rootless-bridge", rootlessBridge, true},
	}
}

// TestLifecycles: start-to-exit cycles of one service per mode, each
// exiting 0; then nothing of them is left on the host.
func TestLifecycles(t *testing.T) {
	setup(t)
	n := env.lvl.cycles
	for _, m := range modes() {
		t.Run(m.name, func(t *testing.T) {
			r := m.r(t)
			svc := name("lc-" + m.name)
			extra := ""
			if m.bridge {
				extra = bridged(t, svc, "", testenv.FreePort(t))
			}
			manifest := r.manifest(t, svc, "exit 0", extra)
			var took []time.Duration
			start := time.Now()
			for i := range n {
				res := retryTun(t, r, "-q", manifest)
				if res.code != 0 {
					t.Fatalf("cycle %d of %d: exit %d\n%s", i+1, n, res.code, res.stderr)
				}
				took = append(took, res.took)
			}
			p50, p90, p99, max := percentiles(took)
			left := assertNoLeaks(t, m.name)
			t.Logf("%s: %d cycles in %s: start-to-exit p50 %s p90 %s p99 %s max %s; %d leaks", m.name, n, time.Since(start).Round(time.Millisecond), ms(p50), ms(p90), ms(p99), ms(max), left)
			record("| start-to-exit, %s | %d | %d | p50 %s, p90 %s, p99 %s, max %s |", m.name, n, left, ms(p50), ms(p90), ms(p99), ms(max))
		})
	}
}

// retryTun runs safe-run with args; a rootless bridge start refused
// because /dev/net/tun lost the test user's ACL (the tests of others
// running beside this one on a shared machine remove theirs, which is
// the same entry) is granted it again and retried, once.
func retryTun(t *testing.T, r runner, args ...string) result {
	res := r.run(args...)
	if res.code == 125 && r.rootless && strings.Contains(res.stderr, "pasta needs /dev/net/tun") {
		t.Logf("/dev/net/tun lost its ACL for %s meanwhile; granting it again", testenv.RootlessUser)
		testenv.GrantTun(t, r.uid)
		res = r.run(args...)
	}
	return res
}

// phases of a start safe-run is SIGKILLed in.
var phases = []string{"preparing", "starting", "running", "stopping"}

// TestKilledCycles: safe-run is SIGKILLed at a random moment of a start
// (while it prepares, while the container starts, while it runs, while
// it stops), and the next start of the same name must work. The janitor
// (and, for bridge services, network-cleanup) takes what is left.
func TestKilledCycles(t *testing.T) {
	setup(t)
	n := env.lvl.killed
	seed := uint64(time.Now().UnixNano())
	t.Logf("random seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	for _, m := range modes() {
		t.Run(m.name, func(t *testing.T) {
			r := m.r(t)
			svc := name("kc-" + m.name)
			extra := ""
			if m.bridge {
				extra = bridged(t, svc, "", testenv.FreePort(t))
			}
			// The service takes a moment to stop, so SIGKILL can land
			// while it does.
			manifest := r.manifest(t, svc, "trap 'sleep 0.05; exit 0' TERM; echo up; while :; do sleep 0.02; done", extra+"\n")
			again := filepath.Join(filepath.Dir(manifest), svc+"-again.toml")
			text, _ := os.ReadFile(manifest)
			os.WriteFile(again, []byte(strings.Replace(string(text), "trap 'sleep 0.05; exit 0' TERM; echo up; while :; do sleep 0.02; done", "exit 0", 1)), 0o644)
			counts := map[string]int{}
			var next []time.Duration
			for i := range n {
				phase := phases[rng.IntN(len(phases))]
				if err := killedStart(r, manifest, phase, rng); err != nil {
					t.Fatalf("cycle %d (%s): %v", i+1, phase, err)
				}
				counts[phase]++
				// The next start of the name, at once: it waits for the
				// janitor's lock, then runs.
				res := retryTun(t, r, "-q", again)
				if res.code != 0 {
					t.Fatalf("cycle %d: the start after a SIGKILL while %s: exit %d\n%s", i+1, phase, res.code, res.stderr)
				}
				next = append(next, res.took)
			}
			p50, _, p99, max := percentiles(next)
			left := assertNoLeaks(t, m.name)
			t.Logf("%s: %d SIGKILLs %v; the next start p50 %s p99 %s max %s; %d leaks", m.name, n, counts, ms(p50), ms(p99), ms(max), left)
			record("| SIGKILL at random, %s | %d (%d preparing, %d starting, %d running, %d stopping) | %d | next start p50 %s, p99 %s |",
				m.name, n, counts["preparing"], counts["starting"], counts["running"], counts["stopping"], left, ms(p50), ms(p99))
		})
	}
}

// killedStart starts safe-run on manifest and SIGKILLs it in phase. An
// exit of safe-run's own before the kill is an error unless it is the
// service's clean stop.
func killedStart(r runner, manifest, phase string, rng *rand.Rand) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := r.cmd(ctx, manifest)
	stderr := &testenv.Buffer{}
	errPipe, _ := c.StderrPipe()
	outPipe, _ := c.StdoutPipe()
	if err := c.Start(); err != nil {
		return err
	}
	starting := make(chan struct{})
	up := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(errPipe)
		once := false
		for sc.Scan() {
			stderr.Write([]byte(sc.Text() + "\n"))
			if !once && strings.Contains(sc.Text(), ": starting ") {
				once = true
				close(starting)
			}
		}
	}()
	go func() {
		sc := bufio.NewScanner(outPipe)
		once := false
		for sc.Scan() {
			if !once && sc.Text() == "up" {
				once = true
				close(up)
			}
		}
	}()
	exited := make(chan error, 1)
	go func() { exited <- c.Wait() }()
	wait := func(ch chan struct{}) error {
		select {
		case <-ch:
			return nil
		case err := <-exited:
			exited <- err
			return fmt.Errorf("safe-run ended before the kill: exit %d\n%s", exitCode(err), stderr)
		case <-ctx.Done():
			return fmt.Errorf("stuck before the kill:\n%s", stderr)
		}
	}
	jitter := func(max time.Duration) { time.Sleep(time.Duration(rng.Int64N(int64(max)))) }
	var err error
	switch phase {
	case "preparing":
		jitter(20 * time.Millisecond)
	case "starting":
		err = wait(starting)
		jitter(10 * time.Millisecond)
	case "running":
		err = wait(up)
		jitter(30 * time.Millisecond)
	case "stopping":
		if err = wait(up); err == nil {
			c.Process.Signal(syscall.SIGTERM)
			jitter(80 * time.Millisecond)
		}
	}
	c.Process.Signal(syscall.SIGKILL)
	werr := <-exited
	if err != nil {
		return err
	}
	// Before the kill, safe-run may only have ended cleanly (a stop
	// that beat the SIGKILL).
	if code := exitCode(werr); code != 137 && code != 0 && code != 143 {
		return fmt.Errorf("exit %d, want SIGKILL\n%s", code, stderr)
	}
	return nil
}

// TestSupervisorSteady: the supervisor's open fds and resident memory do
// not grow over many operations commands against one long-running
// service: stats, ps, kill -s SIGUSR1 (through its control socket), and
// exec where it exists. A leak grows with the calls; warming up is
// front-loaded, so the second half must not grow.
func TestSupervisorSteady(t *testing.T) {
	setup(t)
	svc := name("steady")
	manifest := root.manifest(t, svc, "trap '' USR1; echo up; exec sleep 100000", "")
	b := root.startBackground(t, svc, manifest, "-q")
	pid := b.cmd.Process.Pid
	calls := [][]string{{"stats", "--no-stream", "--interval", "10ms", svc}, {"ps"}, {"kill", "-s", "SIGUSR1", svc}}
	if res := root.run("exec", svc, "--", "/bin/true"); res.code == 0 {
		calls = append(calls, []string{"exec", svc, "--", "/bin/true"})
	} else {
		t.Logf("no exec here (exit %d): %s", res.code, firstLine(res.stderr))
	}
	sample := func() (fds int, rss int) {
		ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		for _, l := range strings.Split(string(st), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
				rss, _ = strconv.Atoi(f[1])
			}
		}
		return len(ents), rss
	}
	n := env.lvl.calls
	warm := min(50, n/10)
	var fds [3]int
	var rss [3]int
	var took []time.Duration
	for i := range n {
		switch i {
		case warm:
			fds[0], rss[0] = sample()
		case warm + (n-warm)/2:
			fds[1], rss[1] = sample()
		}
		args := calls[i%len(calls)]
		res := root.run(args...)
		if res.code != 0 {
			t.Fatalf("call %d, %s: exit %d\n%s", i, strings.Join(args, " "), res.code, res.stderr)
		}
		took = append(took, res.took)
	}
	fds[2], rss[2] = sample()
	if code := b.stop(); code != 143 && code != 0 {
		t.Errorf("stopping %s: exit %d\n%s", svc, code, b.stderr)
	}
	p50, _, p99, _ := percentiles(took)
	t.Logf("%d calls (%d kinds): supervisor fds %v, VmRSS %v KiB (after warm-up, half-way, end); call p50 %s p99 %s", n, len(calls), fds, rss, ms(p50), ms(p99))
	if fds[2] > fds[1] || fds[1] > fds[0]+1 {
		t.Errorf("the supervisor's open fds grew: %v", fds)
	}
	// Resident memory moves with the garbage collector's pacing: a
	// leak is what grows over the second half, by more than a few
	// hundred bytes a call.
	if grow := rss[2] - rss[1]; grow > 4096 {
		t.Errorf("the supervisor's VmRSS grew by %d KiB over the last %d calls: %v", grow, n-warm-(n-warm)/2, rss)
	}
	left := assertNoLeaks(t, "steady")
	record("| supervisor under %d stats/ps/kill%s calls | %d | %d | fds %d -> %d -> %d, VmRSS %d -> %d -> %d KiB |", n, map[bool]string{true: "/exec", false: ""}[len(calls) == 4], n, left, fds[0], fds[1], fds[2], rss[0], rss[1], rss[2])
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return l
}
