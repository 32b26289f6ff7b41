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
	// MemoryPeak is the high-water mark of Memory (v1's
	// memory.max_usage_in_bytes, v2's memory.peak); 0 where the kernel
	// keeps none (v2 before Linux 5.19).
	MemoryPeak uint64
	// InactiveFile is page cache the kernel reclaims first: Memory less
	// it is the working set, what a limit really presses on.
	InactiveFile uint64
	// PidsDenied counts forks refused at the pids limit (pids.events
	// "max"); 0 where the kernel has no pids.events (old v1).
	PidsDenied uint64
	// Block I/O, all devices: v1 blkio.throttle.io_service_bytes, v2
	// io.stat; 0 without the controller.
	ReadBytes, WriteBytes uint64
	// Network I/O of the service's own network namespace, every
	// interface but lo (ReadNetwork); 0 with the host's network.
	RxBytes, TxBytes uint64
}

// ErrNoCgroup: the service has no cgroups of its own to read (rootless
// where the controllers are not delegated).
var ErrNoCgroup = errors.New("it runs without cgroup limits ([insecure] no_resource_limits): there are no CPU, memory and pids numbers to show (safe-run metrics has its network, seccomp denials and warnings)")

// ReadSample reads the counters of the cgroups in paths (Status.Cgroups):
// by controller on cgroup v1, the unified directory under "" on v2.
func ReadSample(paths map[string]string) (Sample, error) {
	return readSample(paths, os.ReadFile)
}

// readSample reads a sample with read, which reads a whole file.
func readSample(paths map[string]string, read func(string) ([]byte, error)) (Sample, error) {
	s := Sample{At: time.Now()}
	r := reader{read: read}
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
		s.MemoryPeak = r.optUint(filepath.Join(dir, "memory.peak"))
		s.InactiveFile = r.optKey(filepath.Join(dir, "memory.stat"), "inactive_file")
		s.PidsDenied = r.optKey(filepath.Join(dir, "pids.events"), "max")
		s.ReadBytes, s.WriteBytes = ioStat(r.optText(filepath.Join(dir, "io.stat")))
		return s, r.err
	}
	cpu, acct, mem, pids := paths["cpu"], paths["cpuacct"], paths["memory"], paths["pids"]
	if cpu == "" || acct == "" || mem == "" || pids == "" {
		return s, ErrNoCgroup
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
	s.MemoryPeak = r.optUint(filepath.Join(mem, "memory.max_usage_in_bytes"))
	// total_: the cgroup and those below it, as usage_in_bytes counts.
	s.InactiveFile = r.optKey(filepath.Join(mem, "memory.stat"), "total_inactive_file")
	s.PidsDenied = r.optKey(filepath.Join(pids, "pids.events"), "max")
	if blkio := paths["blkio"]; blkio != "" {
		s.ReadBytes, s.WriteBytes = blkioBytes(r.optText(filepath.Join(blkio, "blkio.throttle.io_service_bytes")))
	}
	return s, r.err
}

// ReadNetwork reads the bytes received and sent on every interface but
// lo of the network namespace of process pid (the service's init), from
// /proc/PID/net/dev. A process in the host's own network namespace (the
// host network) has no numbers of its own: 0, 0.
func ReadNetwork(pid int) (rx, tx uint64, err error) {
	if pid <= 0 {
		return 0, 0, nil
	}
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
	if err != nil {
		return 0, 0, err
	}
	if own, err := os.Readlink("/proc/self/ns/net"); err == nil && own == ns {
		return 0, 0, nil
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/dev", pid))
	if err != nil {
		return 0, 0, err
	}
	rx, tx = netDev(string(data))
	return rx, tx, nil
}

// netDev sums /proc/net/dev's receive and transmit bytes over every
// interface but lo.
func netDev(text string) (rx, tx uint64) {
	for _, line := range strings.Split(text, "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(name) == "lo" {
			continue
		}
		// Receive: bytes packets errs drop fifo frame compressed
		// multicast; then transmit: bytes ...
		f := strings.Fields(rest)
		if len(f) < 9 {
			continue
		}
		r, err1 := strconv.ParseUint(f[0], 10, 64)
		t, err2 := strconv.ParseUint(f[8], 10, 64)
		if err1 == nil && err2 == nil {
			rx, tx = rx+r, tx+t
		}
	}
	return rx, tx
}

// ioStat sums cgroup v2's io.stat ("8:0 rbytes=1 wbytes=2 ...") over
// its devices.
func ioStat(text string) (read, write uint64) {
	for _, line := range strings.Split(text, "\n") {
		for _, kv := range strings.Fields(line) {
			k, v, _ := strings.Cut(kv, "=")
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				continue
			}
			switch k {
			case "rbytes":
				read += n
			case "wbytes":
				write += n
			}
		}
	}
	return read, write
}

// blkioBytes sums cgroup v1's blkio.throttle.io_service_bytes ("8:0
// Read 4096") over its devices. v1 charges a buffered write to whoever
// flushes it, not to the service: its write bytes are direct writes.
func blkioBytes(text string) (read, write uint64) {
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue // "Total N"
		}
		n, err := strconv.ParseUint(f[2], 10, 64)
		if err != nil {
			continue
		}
		switch f[1] {
		case "Read":
			read += n
		case "Write":
			write += n
		}
	}
	return read, write
}

// optText reads a file that older kernels or an absent controller lack:
// "" then.
func (r *reader) optText(p string) string {
	t, _ := r.file(p)
	return t
}

func (r *reader) optUint(p string) uint64 {
	n, _ := strconv.ParseUint(r.optText(p), 10, 64)
	return n
}

func (r *reader) optKey(p, key string) uint64 {
	return keyOf(r.optText(p), key)
}

// keyOf reads the value of key in a flat keyed file's text.
func keyOf(text, key string) uint64 {
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == key {
			n, _ := strconv.ParseUint(f[1], 10, 64)
			return n
		}
	}
	return 0
}

// SampleOf reads the counters of a running service: its cgroups', and
// its network's.
func SampleOf(s *Status) (Sample, error) {
	smp, err := ReadSample(s.Cgroups)
	if err != nil {
		return smp, err
	}
	// A service that ended meanwhile has no /proc entry left: its
	// cgroup read above said so already, or it ended just now.
	smp.RxBytes, smp.TxBytes, _ = ReadNetwork(s.InitPID)
	return smp, nil
}

// reader reads the cgroup files of one sample, each once, keeping the
// first error.
type reader struct {
	err   error
	read  func(string) ([]byte, error)
	texts map[string]string
}

func (r *reader) file(p string) (string, error) {
	if t, ok := r.texts[p]; ok {
		return t, nil
	}
	data, err := r.read(p)
	if err != nil {
		return "", err
	}
	if r.texts == nil {
		r.texts = map[string]string{}
	}
	t := strings.TrimSpace(string(data))
	r.texts[p] = t
	return t, nil
}

func (r *reader) text(p string) string {
	t, err := r.file(p)
	if err != nil && r.err == nil {
		r.err = err
	}
	return t
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
	return keyOf(r.text(p), key)
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
	MemoryPeak       uint64   `json:"memory_max_usage_bytes,omitempty"`
	PidsDenied       uint64   `json:"pids_denied"` // forks refused at the limit, in all
	// In all since the start: the service's network namespace (0 on
	// the host's network), and its block I/O.
	NetRx      uint64 `json:"net_rx_bytes"`
	NetTx      uint64 `json:"net_tx_bytes"`
	BlockRead  uint64 `json:"block_read_bytes"`
	BlockWrite uint64 `json:"block_write_bytes"`
}

// Compute turns two samples of one service into its numbers; hostCPUs is
// how many CPUs the host has.
func Compute(name string, a, b Sample, hostCPUs int) Stats {
	dt := b.At.Sub(a.At).Seconds()
	st := Stats{Name: name, Interval: dt, HostCPUs: hostCPUs, CPUSeconds: float64(b.CPUNanos) / 1e9,
		Memory: b.Memory, MemoryLimit: b.MemoryLimit, Pids: b.Pids, PidsLimit: b.PidsLimit,
		Periods: b.Periods, ThrottledPeriods: b.Throttled, ThrottledTotal: float64(b.ThrottledTime) / 1e9, OOMKills: b.OOMKills,
		MemoryPeak: b.MemoryPeak, PidsDenied: b.PidsDenied, NetRx: b.RxBytes, NetTx: b.TxBytes, BlockRead: b.ReadBytes, BlockWrite: b.WriteBytes}
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
