package ops

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/safe-run/safe-run/internal/proc"
)

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReadSample reads the same numbers from cgroup v1's and v2's files.
func TestReadSample(t *testing.T) {
	want := Sample{CPUNanos: 2_500_000_000, Periods: 100, Throttled: 25, ThrottledTime: 300_000_000, Quota: 50000, Period: 100000,
		Memory: 20 << 20, MemoryLimit: 64 << 20, Pids: 3, PidsLimit: 64, OOMKills: 1}
	v1 := t.TempDir()
	paths := map[string]string{}
	for _, c := range []string{"cpu", "cpuacct", "memory", "pids"} {
		paths[c] = filepath.Join(v1, c)
		os.Mkdir(paths[c], 0o755)
	}
	writeFiles(t, paths["cpu"], map[string]string{"cpu.stat": "nr_periods 100\nnr_throttled 25\nthrottled_time 300000000\n", "cpu.cfs_quota_us": "50000\n", "cpu.cfs_period_us": "100000\n"})
	writeFiles(t, paths["cpuacct"], map[string]string{"cpuacct.usage": "2500000000\n"})
	writeFiles(t, paths["memory"], map[string]string{"memory.usage_in_bytes": "20971520\n", "memory.limit_in_bytes": "67108864\n", "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n"})
	writeFiles(t, paths["pids"], map[string]string{"pids.current": "3\n", "pids.max": "64\n"})
	v2 := t.TempDir()
	writeFiles(t, v2, map[string]string{"cpu.stat": "usage_usec 2500000\nuser_usec 1\nnr_periods 100\nnr_throttled 25\nthrottled_usec 300000\n", "cpu.max": "50000 100000\n",
		"memory.current": "20971520\n", "memory.max": "67108864\n", "memory.events": "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n", "pids.current": "3\n", "pids.max": "64\n"})
	for _, tc := range []struct {
		name  string
		paths map[string]string
	}{{"v1", paths}, {"v2", map[string]string{"": v2}}} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ReadSample(tc.paths)
			if err != nil {
				t.Fatal(err)
			}
			got.At = time.Time{}
			if got != want {
				t.Errorf("sample\n%+v\nwant\n%+v", got, want)
			}
		})
	}
	writeFiles(t, v2, map[string]string{"cpu.max": "max 100000\n", "memory.max": "max\n", "pids.max": "max\n"})
	got, err := ReadSample(map[string]string{"": v2})
	if err != nil || got.Quota != 0 || got.MemoryLimit != 0 || got.PidsLimit != 0 {
		t.Errorf("unlimited: %+v %v", got, err)
	}
}

func TestCompute(t *testing.T) {
	at := time.Now()
	a := Sample{At: at, CPUNanos: 1e9, Periods: 10, Throttled: 0, ThrottledTime: 0, Quota: 50000, Period: 100000, MemoryLimit: 100}
	b := Sample{At: at.Add(2 * time.Second), CPUNanos: 2e9, Periods: 30, Throttled: 5, ThrottledTime: 4e8, Quota: 50000, Period: 100000, Memory: 25, MemoryLimit: 100, Pids: 2, PidsLimit: 8, OOMKills: 2}
	s := Compute("web", a, b, 2)
	// 1 s of CPU in 2 s: 25% of 2 CPUs, 100% of 0.5.
	if s.CPUPercent != 25 || s.CPULimitPercent == nil || *s.CPULimitPercent != 100 || s.CPUs != 0.5 {
		t.Errorf("cpu %+v", s)
	}
	if s.ThrottledPercent != 25 || s.ThrottledSeconds != 0.4 || s.MemoryPercent != 25 || s.OOMKills != 2 || s.Pids != 2 || s.PidsLimit != 8 {
		t.Errorf("stats %+v", s)
	}
}

// TestIOFiles: network and block I/O, summed over interfaces and devices,
// and the v1 and v2 extras, read the same way from both hierarchies.
func TestIOFiles(t *testing.T) {
	dev := `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:  999999      10    0    0    0     0          0         0   999999      10    0    0    0     0       0          0
  eth0:    1500      12    0    0    0     0          0         0      700       9    0    0    0     0       0          0
  eth1:      10       1    0    0    0     0          0         0       20       1    0    0    0     0       0          0
`
	if rx, tx := netDev(dev); rx != 1510 || tx != 720 {
		t.Errorf("net/dev: rx %d tx %d, want 1510 720", rx, tx)
	}
	if r, w := ioStat("8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n8:16 rbytes=1 wbytes=1\n"); r != 4097 || w != 8193 {
		t.Errorf("io.stat: %d %d", r, w)
	}
	if r, w := blkioBytes("8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 1\n8:0 Total 12288\n8:16 Read 1\nTotal 12289\n"); r != 4097 || w != 8192 {
		t.Errorf("blkio: %d %d", r, w)
	}
	v1 := t.TempDir()
	paths := map[string]string{}
	for _, c := range []string{"cpu", "cpuacct", "memory", "pids", "blkio"} {
		paths[c] = filepath.Join(v1, c)
		os.Mkdir(paths[c], 0o755)
	}
	writeFiles(t, paths["cpu"], map[string]string{"cpu.stat": "nr_periods 1\n", "cpu.cfs_quota_us": "-1\n", "cpu.cfs_period_us": "100000\n"})
	writeFiles(t, paths["cpuacct"], map[string]string{"cpuacct.usage": "1\n"})
	writeFiles(t, paths["memory"], map[string]string{"memory.usage_in_bytes": "100\n", "memory.limit_in_bytes": "9223372036854771712\n", "memory.oom_control": "oom_kill 0\n",
		"memory.max_usage_in_bytes": "300\n", "memory.stat": "inactive_file 1\ntotal_inactive_file 40\n"})
	writeFiles(t, paths["pids"], map[string]string{"pids.current": "1\n", "pids.max": "max\n", "pids.events": "max 2\n"})
	writeFiles(t, paths["blkio"], map[string]string{"blkio.throttle.io_service_bytes": "8:0 Read 10\n8:0 Write 20\nTotal 30\n"})
	v2 := t.TempDir()
	writeFiles(t, v2, map[string]string{"cpu.stat": "usage_usec 0\nnr_periods 1\n", "cpu.max": "max 100000\n",
		"memory.current": "100\n", "memory.max": "max\n", "memory.events": "oom_kill 0\n", "memory.peak": "300\n", "memory.stat": "anon 60\ninactive_file 40\n",
		"pids.current": "1\n", "pids.max": "max\n", "pids.events": "max 2\n", "io.stat": "8:0 rbytes=10 wbytes=20 rios=1\n"})
	for _, tc := range []struct {
		name  string
		paths map[string]string
	}{{"v1", paths}, {"v2", map[string]string{"": v2}}} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ReadSample(tc.paths)
			if err != nil {
				t.Fatal(err)
			}
			if s.MemoryLimit != 0 || s.MemoryPeak != 300 || s.InactiveFile != 40 || s.PidsDenied != 2 || s.ReadBytes != 10 || s.WriteBytes != 20 {
				t.Errorf("%+v", s)
			}
		})
	}
	// This process's own network is the host's: no numbers of its own.
	if rx, tx, err := ReadNetwork(os.Getpid()); err != nil || rx != 0 || tx != 0 {
		t.Errorf("own network: %d %d %v", rx, tx, err)
	}
}

// TestSampler: a sampler reads what ReadSample reads, and sees a file
// change through the descriptor it keeps open.
func TestSampler(t *testing.T) {
	v2 := t.TempDir()
	writeFiles(t, v2, map[string]string{"cpu.stat": "usage_usec 1\nnr_periods 1\n", "cpu.max": "max 100000\n",
		"memory.current": "100\n", "memory.max": "max\n", "memory.events": "oom_kill 0\n", "memory.stat": strings.Repeat("x 1\n", 2000) + "inactive_file 7\n",
		"pids.current": "1\n", "pids.max": "max\n"})
	paths := map[string]string{"": v2}
	sm := NewSampler(paths)
	defer sm.Close()
	want, _ := ReadSample(paths)
	got, err := sm.Read()
	if err != nil {
		t.Fatal(err)
	}
	got.At, want.At = time.Time{}, time.Time{}
	if got != want || got.InactiveFile != 7 {
		t.Errorf("sampler %+v\nReadSample %+v", got, want)
	}
	// In place, as the kernel changes a cgroup file.
	if err := os.WriteFile(filepath.Join(v2, "memory.current"), []byte("200\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := sm.Read(); err != nil || got.Memory != 200 {
		t.Errorf("after a change: %d %v", got.Memory, err)
	}
}

// TestShowStatsStream: a stream redraws a terminal in place, and to
// anything else writes one reading after another; --no-stream writes one.
func TestShowStatsStream(t *testing.T) {
	root := t.TempDir()
	state, cg := filepath.Join(root, "state"), filepath.Join(root, "cg")
	for _, d := range []string{filepath.Join(state, "web"), cg} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFiles(t, cg, map[string]string{"cpu.stat": "usage_usec 1\nnr_periods 1\n", "cpu.max": "max 100000\n",
		"memory.current": "100\n", "memory.max": "max\n", "memory.events": "oom_kill 0\n", "pids.current": "1\n", "pids.max": "max\n",
		"io.stat": "8:0 rbytes=2048 wbytes=4096\n"})
	start := proc.Start(os.Getpid())
	if err := WriteStatus(filepath.Join(state, "web"), &Status{Name: "web", State: StateRunning, SupervisorPID: os.Getpid(), SupervisorStart: start, Cgroups: map[string]string{"": cg}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name             string
		o                StatsOptions
		readings, clears int
	}{
		{"no-stream", StatsOptions{Interval: 10 * time.Millisecond}, 1, 0},
		{"terminal", StatsOptions{Interval: 40 * time.Millisecond, Stream: true, Terminal: true}, 2, 2},
		{"pipe", StatsOptions{Interval: 40 * time.Millisecond, Stream: true}, 2, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 140*time.Millisecond)
			defer cancel()
			var out strings.Builder
			if err := ShowStats(ctx, &out, state, tc.o); err != nil {
				t.Fatal(err)
			}
			readings, clears := strings.Count(out.String(), "NAME "), strings.Count(out.String(), clearScreen)
			if readings < tc.readings || tc.clears == 0 && clears != 0 || tc.clears > 0 && clears != readings || !tc.o.Stream && readings != 1 {
				t.Errorf("%d readings, %d clears:\n%q", readings, clears, out.String())
			}
			if !strings.Contains(out.String(), "2.0KiB / 4.0KiB") {
				t.Errorf("no block I/O column:\n%s", out.String())
			}
		})
	}
}

// TestShowStatsNoCgroup: a named service without cgroup limits gets its
// error alone, not a table without rows before it (probe OPS #12).
func TestShowStatsNoCgroup(t *testing.T) {
	state := t.TempDir()
	os.Mkdir(filepath.Join(state, "bare"), 0o700)
	if err := WriteStatus(filepath.Join(state, "bare"), &Status{Name: "bare", State: StateRunning, SupervisorPID: os.Getpid(), SupervisorStart: proc.Start(os.Getpid())}); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	err := ShowStats(t.Context(), &out, state, StatsOptions{Names: []string{"bare"}, Interval: time.Millisecond})
	if err == nil || out.String() != "" {
		t.Errorf("err %v, output %q", err, out.String())
	}
}
