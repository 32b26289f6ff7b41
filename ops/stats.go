package ops

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Sample is one reading of a service's cgroup counters.
type Sample struct {
	At            time.Time
	CPUNanos      uint64 // CPU time used, all of the service's processes
	Periods       uint64 // CFS periods in which it was runnable
	Throttled     uint64 // of those, periods in which it was throttled
	ThrottledTime uint64 // ns spent throttled
	Quota, Period int64  // µs; quota <= 0: no CPU limit
	Memory        uint64 // bytes in use, as the cgroup counts them (page cache included)
	MemoryLimit   uint64 // 0: none
	Pids          uint64
	PidsLimit     uint64 // 0: none
	OOMKills      uint64
}

// ReadSample reads the counters of the cgroups in paths (Status.Cgroups):
// by controller on cgroup v1, the unified directory under "" on v2.
func ReadSample(paths map[string]string) (Sample, error) {
	s := Sample{At: time.Now()}
	var r reader
	// On a hybrid host, v1's controllers are beside a unified hierarchy
	// that has none of them.
	if dir, ok := paths[""]; ok && paths["memory"] == "" {
		s.CPUNanos = r.key(filepath.Join(dir, "cpu.stat"), "usage_usec") * 1000
		s.Periods = r.key(filepath.Join(dir, "cpu.stat"), "nr_periods")
		s.Throttled = r.key(filepath.Join(dir, "cpu.stat"), "nr_throttled")
		s.ThrottledTime = r.key(filepath.Join(dir, "cpu.stat"), "throttled_usec") * 1000
		if f := strings.Fields(r.text(filepath.Join(dir, "cpu.max"))); len(f) == 2 {
			s.Period, _ = strconv.ParseInt(f[1], 10, 64)
			if f[0] != "max" {
				s.Quota, _ = strconv.ParseInt(f[0], 10, 64)
			}
		}
		s.Memory = r.uint(filepath.Join(dir, "memory.current"))
		s.MemoryLimit = r.uint(filepath.Join(dir, "memory.max"))
		s.OOMKills = r.key(filepath.Join(dir, "memory.events"), "oom_kill")
		s.Pids = r.uint(filepath.Join(dir, "pids.current"))
		s.PidsLimit = r.uint(filepath.Join(dir, "pids.max"))
		return s, r.err
	}
	cpu, acct, mem, pids := paths["cpu"], paths["cpuacct"], paths["memory"], paths["pids"]
	if cpu == "" || acct == "" || mem == "" || pids == "" {
		return s, errors.New("the service has no cpu, cpuacct, memory and pids cgroups (it runs without limits)")
	}
	s.CPUNanos = r.uint(filepath.Join(acct, "cpuacct.usage"))
	s.Periods = r.key(filepath.Join(cpu, "cpu.stat"), "nr_periods")
	s.Throttled = r.key(filepath.Join(cpu, "cpu.stat"), "nr_throttled")
	s.ThrottledTime = r.key(filepath.Join(cpu, "cpu.stat"), "throttled_time")
	s.Quota = r.int(filepath.Join(cpu, "cpu.cfs_quota_us"))
	s.Period = r.int(filepath.Join(cpu, "cpu.cfs_period_us"))
	s.Memory = r.uint(filepath.Join(mem, "memory.usage_in_bytes"))
	s.MemoryLimit = r.uint(filepath.Join(mem, "memory.limit_in_bytes"))
	if s.MemoryLimit >= math.MaxInt64/2 { // v1's "unlimited": the largest page multiple
		s.MemoryLimit = 0
	}
	s.OOMKills = r.key(filepath.Join(mem, "memory.oom_control"), "oom_kill")
	s.Pids = r.uint(filepath.Join(pids, "pids.current"))
	s.PidsLimit = r.uint(filepath.Join(pids, "pids.max"))
	return s, r.err
}

// reader reads cgroup files, keeping the first error.
type reader struct{ err error }

func (r *reader) text(p string) string {
	data, err := os.ReadFile(p)
	if err != nil {
		if r.err == nil {
			r.err = err
		}
		return ""
	}
	return strings.TrimSpace(string(data))
}

// uint reads a file of one number; "max" is 0, no limit.
func (r *reader) uint(p string) uint64 {
	t := r.text(p)
	if t == "" || t == "max" {
		return 0
	}
	n, err := strconv.ParseUint(t, 10, 64)
	if err != nil && r.err == nil {
		r.err = fmt.Errorf("%s: %w", p, err)
	}
	return n
}

func (r *reader) int(p string) int64 {
	t := r.text(p)
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil && r.err == nil {
		r.err = fmt.Errorf("%s: %w", p, err)
	}
	return n
}

// key reads the value of key in a flat keyed file (cpu.stat,
// memory.events); a key the kernel does not have is 0.
func (r *reader) key(p, key string) uint64 {
	for _, line := range strings.Split(r.text(p), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == key {
			n, _ := strconv.ParseUint(f[1], 10, 64)
			return n
		}
	}
	return 0
}

// Stats are a service's numbers over an interval between two samples.
type Stats struct {
	Name     string  `json:"name"`
	Interval float64 `json:"interval_seconds"`
	// CPU use over the interval, in % of the host (all its CPUs) and of
	// the service's limit (absent without one).
	CPUPercent       float64  `json:"cpu_percent"`
	CPULimitPercent  *float64 `json:"cpu_limit_percent,omitempty"`
	CPUs             float64  `json:"cpus_limit,omitempty"`
	HostCPUs         int      `json:"host_cpus"`
	CPUSeconds       float64  `json:"cpu_seconds"` // in all, at the second sample
	Memory           uint64   `json:"memory_bytes"`
	MemoryLimit      uint64   `json:"memory_limit_bytes,omitempty"`
	MemoryPercent    float64  `json:"memory_percent,omitempty"`
	Pids             uint64   `json:"pids"`
	PidsLimit        uint64   `json:"pids_limit,omitempty"`
	ThrottledPercent float64  `json:"throttled_periods_percent"` // of the CFS periods in the interval
	ThrottledSeconds float64  `json:"throttled_seconds"`         // time throttled in the interval
	Periods          uint64   `json:"nr_periods"`                // in all
	ThrottledPeriods uint64   `json:"nr_throttled"`              // in all
	ThrottledTotal   float64  `json:"throttled_seconds_total"`
	OOMKills         uint64   `json:"oom_kills"`
}

// Compute turns two samples of one service into its numbers; hostCPUs is
// how many CPUs the host has.
func Compute(name string, a, b Sample, hostCPUs int) Stats {
	dt := b.At.Sub(a.At).Seconds()
	st := Stats{Name: name, Interval: dt, HostCPUs: hostCPUs, CPUSeconds: float64(b.CPUNanos) / 1e9,
		Memory: b.Memory, MemoryLimit: b.MemoryLimit, Pids: b.Pids, PidsLimit: b.PidsLimit,
		Periods: b.Periods, ThrottledPeriods: b.Throttled, ThrottledTotal: float64(b.ThrottledTime) / 1e9, OOMKills: b.OOMKills}
	used := float64(sub(b.CPUNanos, a.CPUNanos)) / 1e9
	if dt > 0 && hostCPUs > 0 {
		st.CPUPercent = 100 * used / (dt * float64(hostCPUs))
	}
	if b.Quota > 0 && b.Period > 0 {
		st.CPUs = float64(b.Quota) / float64(b.Period)
		if dt > 0 {
			p := 100 * used / (dt * st.CPUs)
			st.CPULimitPercent = &p
		}
	}
	if b.MemoryLimit > 0 {
		st.MemoryPercent = 100 * float64(b.Memory) / float64(b.MemoryLimit)
	}
	if n := sub(b.Periods, a.Periods); n > 0 {
		st.ThrottledPercent = 100 * float64(sub(b.Throttled, a.Throttled)) / float64(n)
	}
	st.ThrottledSeconds = float64(sub(b.ThrottledTime, a.ThrottledTime)) / 1e9
	return st
}

func sub(b, a uint64) uint64 {
	if b < a {
		return 0
	}
	return b - a
}
