package ops

import (
	"os"
	"path/filepath"
	"testing"
	"time"
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
