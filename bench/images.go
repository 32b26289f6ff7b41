package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/image"
)

// safeRunImageTrial starts the bench service from the example OCI layout;
// after the warm-up the image is cached, so the row shows what a cached
// image adds to a start (the cache lookup) over the rootfs directory row.
func safeRunImageTrial(ctx context.Context, e *env) (*trial, error) {
	layout := filepath.Join(e.repo, "example", "oci")
	if _, err := os.Stat(layout); err != nil {
		return nil, fmt.Errorf("the example OCI layout: %w (run make example first)", err)
	}
	envv, err := e.safeRunEnv()
	if err != nil {
		return nil, err
	}
	m, err := e.manifestFrom("bench-oci", fmt.Sprintf("oci = %q", layout+":latest"), []string{"/bin/true"}, "")
	if err != nil {
		return nil, err
	}
	return &trial{run: timedRun(envv, e.safeRun(), "-q", m), note: "the same service from example/oci:latest, unpacked once before the timed runs"}, nil
}

const unpackRuns = 5

// unpackInto times unpack into a fresh directory on a tmpfs, five times,
// and returns the median and the throughput.
func unpackInto(ctx context.Context, e *env, name string, unpack func(dest string) (bytes int64, err error)) ([]row, error) {
	dir, err := e.dir("unpack", name)
	if err != nil {
		return nil, err
	}
	// tmpfs: the CPU work of unpacking, not this machine's disk.
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=512m"); err != nil {
		return nil, fmt.Errorf("mounting a tmpfs for the unpack: %w", err)
	}
	defer func() { _ = unix.Unmount(dir, unix.MNT_DETACH) }() // a bench's scratch tmpfs: nothing to do if it stays
	var times []time.Duration
	var size int64
	for i := range unpackRuns {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		dest := filepath.Join(dir, fmt.Sprint(i))
		start := time.Now()
		n, err := unpack(dest)
		if err != nil {
			return nil, err
		}
		times = append(times, time.Since(start))
		size = n
		if err := os.RemoveAll(dest); err != nil {
			return nil, err
		}
	}
	slices.Sort(times)
	med := times[len(times)/2]
	mibs := float64(size) / (1 << 20) / med.Seconds()
	return []row{{name: name, values: []string{med.Round(time.Millisecond).String(), fmt.Sprintf("%.0f", mibs)},
		note: fmt.Sprintf("%.1f MiB of files", float64(size)/(1<<20))}}, nil
}

func safeRunUnpack(ctx context.Context, e *env) ([]row, error) {
	layout := filepath.Join(e.repo, "example", "oci") + ":latest"
	return unpackInto(ctx, e, "safe-run (image.UnpackLayout)", func(dest string) (int64, error) {
		_, n, err := image.UnpackLayout(ctx, layout, dest)
		return n, err
	})
}

func umociUnpack(ctx context.Context, e *env) ([]row, error) {
	umoci, err := exec.LookPath("umoci")
	if err != nil {
		return []row{{name: "umoci unpack", failed: "umoci not installed"}}, nil
	}
	layout := filepath.Join(e.repo, "example", "oci") + ":latest"
	var size int64
	return unpackInto(ctx, e, "umoci unpack", func(dest string) (int64, error) {
		if out, err := exec.CommandContext(ctx, umoci, "unpack", "--image", layout, dest).CombinedOutput(); err != nil {
			return 0, fmt.Errorf("umoci unpack: %w: %s", err, out)
		}
		if size == 0 {
			size = treeSize(filepath.Join(dest, "rootfs"))
		}
		return size, nil
	})
}

func treeSize(dir string) int64 {
	var n int64
	_ = filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// seccompLine is what BenchmarkSyscallLoop prints for each profile.
var seccompLine = regexp.MustCompile(`seccomp (\S+)\s+([0-9.]+) ns/call:\s+([+-][0-9.]+%) over no filter \([0-9.]+ ns/call\),\s+([+-][0-9.]+%) over a filter that allows everything`)

// seccompLoop runs the seccomp benchmark of profiles/integration, which
// runs a getpid/read loop inside containers under each profile.
func seccompLoop(ctx context.Context, e *env) ([]row, error) {
	cmd := exec.CommandContext(ctx, "go", "test", "-tags", "seccomp", "-run", "^$", "-bench", "SyscallLoop", "-benchtime", "3x", "./profiles/integration")
	cmd.Dir = e.repo
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("go test -bench SyscallLoop: %w\n%s", err, out)
	}
	var rows []row
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if m := seccompLine.FindStringSubmatch(sc.Text()); m != nil {
			rows = append(rows, row{name: "seccomp " + m[1], values: []string{m[2], m[3], m[4]}})
		}
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("go test -bench SyscallLoop printed no results:\n%s", out)
	}
	return rows, nil
}
