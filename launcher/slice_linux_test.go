package launcher_test

import (
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestServiceSlice: the service's processes, and what they start, run
// with the supervisor's short scheduler slice (serviceSlice, 0.2 ms), and
// the cgroup's weight follows its cpus.
func TestServiceSlice(t *testing.T) {
	setup(t)
	requireCustomSlice(t)
	r := shell(t, "slice", `
grep se.slice /proc/self/sched
sh -c 'grep se.slice /proc/self/sched'
cat /sys/fs/cgroup/cpu.weight 2>/dev/null || cat /sys/fs/cgroup/cpu/cpu.shares 2>/dev/null || echo no weight
`, "[resources]\nmemory = \"64M\"\ncpus = 0.5\npids = 64\n")
	if r.code != 0 {
		t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 {
		t.Fatalf("output:\n%s\n%s", r.stdout, r.stderr)
	}
	for i, who := range []string{"the service", "its child"} {
		if f := strings.Fields(lines[i]); len(f) != 3 || f[2] != "200000" {
			t.Errorf("%s: %q, want se.slice 200000 (0.2 ms)", who, lines[i])
		}
	}
	// Inside the container its cgroup may not be mounted (v1, or a
	// cgroup namespace of its own): then the host's copy is checked by
	// plan's golden specs only.
	if w := lines[2]; w != "no weight" && w != "512" && w != "20" {
		t.Errorf("cpu weight of a service of 0.5 cpus: %s, want cpu.shares 512 (v1) or cpu.weight 20 (v2)", w)
	}
	assertNothingLeft(t, "slice")
}

// requireCustomSlice skips where the kernel keeps no slice a task asks
// for (sched_attr.sched_runtime of SCHED_OTHER: Linux 6.12 and later).
func requireCustomSlice(t *testing.T) {
	t.Helper()
	done := make(chan string)
	go func() {
		// The thread's slice changes: it dies with the goroutine.
		runtime.LockOSThread()
		a, err := unix.SchedGetAttr(0, 0)
		if err != nil {
			done <- err.Error()
			return
		}
		a.Runtime, a.Flags = 300000, 0
		if err := unix.SchedSetAttr(0, a, 0); err != nil {
			done <- err.Error()
			return
		}
		if a, err = unix.SchedGetAttr(0, 0); err != nil || a.Runtime != 300000 {
			done <- "the slice asked for is not kept"
			return
		}
		done <- ""
	}()
	if why := <-done; why != "" {
		var u unix.Utsname
		unix.Uname(&u)
		t.Skipf("kernel %s: %s (a task's own scheduler slice needs Linux 6.12)", unix.ByteSliceToString(u.Release[:]), why)
	}
}
