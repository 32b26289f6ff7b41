// Command bench compares safe-run with other container runtimes on this
// host: start-to-exit time of /bin/true on the same busybox rootfs with
// equivalent hardening, and the supervisor's memory. `make bench` runs it
// from the repository root after building everything it needs.
//
// A benchmark is one entry of the benchmarks list below: a function that
// prepares a trial for a timed table (the harness warms it up and times it,
// interleaved with the table's other rows), or one that measures a row
// itself. Adding a benchmark is adding an entry.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// benchmarks in table order; the first row of a timed table is the
// baseline of its ratio column.
var benchmarks = []benchmark{
	{table: startTable, name: "safe-run", prepare: safeRunTrial("bench", "")},
	// Without Landlock: with it, init = false starts safe-run-init to
	// apply the ruleset, which loads the cached filter as with init.
	{table: startTable, name: "safe-run, init = false, landlock = \"off\" (libcontainer compiles seccomp)", prepare: safeRunTrial("bench-noinit", "init = false\n\n[security]\nlandlock = \"off\"\n\n[insecure]\nreason = \"the bench's row of libcontainer's own start\"\nallow = [\"landlock_off\"]\n")},
	{table: startTable, name: "safe-run, init = false (safe-run-init applies Landlock, then execs)", prepare: safeRunTrial("bench-noinit-ll", "init = false\n")},
	{table: startTable, name: "safe-run, landlock = \"off\" (no ruleset)", prepare: safeRunTrial("bench-nolandlock", "\n[security]\nlandlock = \"off\"\n\n[insecure]\nreason = \"the bench's row without Landlock\"\nallow = [\"landlock_off\"]\n")},
	{table: startTable, name: "runc run", prepare: runcTrial(installedRunc)},
	{table: startTable, name: "runc run, safe-run's libcontainer version", prepare: runcTrial(moduleRunc)},
	{table: startTable, name: "crun run", prepare: crunTrial},
	{table: startTable, name: "crun run + unshare/tmpfs wrapper", prepare: crunWrappedTrial},
	{table: startTable, name: "bwrap", prepare: bwrapTrial},
	{table: startTable, name: "docker run --rm", prepare: dockerTrial},
	{table: startTable, name: "safe-run, example OCI image (cached)", prepare: safeRunImageTrial},
	{table: memoryTable, name: "safe-run", measure: safeRunMemory},
	{table: memoryTable, name: "runc run", measure: runcMemory},
	{table: unpackTable, name: "safe-run (image.UnpackLayout)", measure: safeRunUnpack},
	{table: unpackTable, name: "umoci unpack", measure: umociUnpack},
	{table: seccompTable, name: "getpid/read loop in a container", measure: seccompLoop},
	{table: memoryTable, group: "net", name: "safe-run, mode = bridge", measure: safeRunBridgeMemory},
	{table: netStartTable, group: "net", name: "safe-run, mode = none", prepare: netStartTrial("bench-netnone", "mode = \"none\"\n")},
	{table: netStartTable, group: "net", name: "safe-run, mode = bridge (a bridge of its own, one port)", prepare: netStartTrial("bench-bridge", "mode = \"bridge\"\nports = [\"127.0.0.1:PORT:80\"]\n")},
	{table: netThroughputTable, group: "net", name: "1 GiB transfer", measure: netThroughput},
	{table: netConnectTable, group: "net", name: "connect + request", measure: netConnect},
	{table: netFleetTable, group: "net", name: "50 services on one bridge", measure: netFleet},
}

// selected says whether -only picks b: a part of its name, or its group.
func selected(b benchmark, only string) bool {
	return only == "" || strings.Contains(b.name, only) || b.group == only
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("bench", flag.ContinueOnError)
	fl.SetOutput(stderr)
	repo := fl.String("repo", ".", "the safe-run checkout, with bin/ and example/rootfs built")
	runs := fl.Int("n", 30, "timed runs of each runtime")
	warmup := fl.Int("warmup", 3, "untimed runs of each runtime first")
	settle := fl.Duration("settle", 20*time.Millisecond, "pause before each timed run")
	only := fl.String("only", "", "run only the benchmarks whose name contains this, or of this group (net: the network rows)")
	if err := fl.Parse(args); err != nil {
		return 2
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(stderr, "bench: needs root (runc, crun, dockerd and safe-run's cgroups)")
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	e, err := newEnv(*repo)
	if err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 1
	}
	defer e.close()
	e.runs, e.warmup, e.settle, e.log = *runs, *warmup, *settle, stderr

	began := time.Now()
	load0 := loadavg()
	results := map[*table][]row{}
	var order []*table
	for _, b := range benchmarks {
		if !selected(b, *only) {
			continue
		}
		if _, ok := results[b.table]; !ok {
			order = append(order, b.table)
			results[b.table] = nil
		}
	}
	for _, t := range order {
		var list []benchmark
		for _, b := range benchmarks {
			if b.table == t && selected(b, *only) {
				list = append(list, b)
			}
		}
		results[t] = runTable(ctx, e, t, list)
		if ctx.Err() != nil {
			fmt.Fprintln(stderr, "bench: interrupted; cleaning up")
			return 130
		}
	}

	fmt.Fprintf(stdout, "safe-run bench: %s, %d CPUs, cgroups %s; %d timed runs per row after %d warm-up, interleaved; load average %s -> %s; took %s\n",
		kernel(), runtime.NumCPU(), cgroupMode(), e.runs, e.warmup, load0, loadavg(), time.Since(began).Round(time.Second))
	for _, t := range order {
		printTable(stdout, t, results[t])
	}
	return 0
}

func kernel() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "linux"
	}
	return "Linux " + unix.ByteSliceToString(u.Release[:])
}

func cgroupMode() string {
	switch {
	case hybridCgroups():
		return "hybrid (v1 controllers, empty v2 at /sys/fs/cgroup/unified)"
	default:
		var st unix.Statfs_t
		if unix.Statfs("/sys/fs/cgroup", &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			return "v2"
		}
		return "v1"
	}
}

func loadavg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
