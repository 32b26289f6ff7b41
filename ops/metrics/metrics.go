// Package metrics exposes what package ops reads of the running services
// (their status files, cgroups, network and journals) as Prometheus
// metrics, for `safe-run metrics`: printed once, served on a loopback
// address or a unix socket, or written for node_exporter's textfile
// collector.
//
// Only safe-run-tools links it: the resident supervisor publishes files
// and knows nothing of Prometheus (cmd/safe-run's TestLean).
package metrics

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"
	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/internal/atomicfile"
	"github.com/safe-run/safe-run/ops"
)

// TextfileName is the file --textfile writes in its directory.
const TextfileName = "safe-run.prom"

// Labels of every per-service metric.
var labels = []string{"service", "manifest_digest"}

func desc(name, help string, extra ...string) *prometheus.Desc {
	return prometheus.NewDesc("safe_run_"+name, help, append(append([]string{}, labels...), extra...), nil)
}

var (
	descInfo             = desc("service_info", "A running service: its image, the digest of its image, and the systemd unit it runs under (\"\" if none), always 1.", "image", "image_digest", "unit")
	descStarts           = desc("starts_total", "Starts of a service of this name that its event journal holds, this one included: restarts are one less. The journal (DATA/events/NAME.jsonl) outlives each run, but is rotated at 1 MiB and keeps one rotated file: a service with many events counts only the starts those two files hold.", "unit")
	descCPUSeconds       = desc("cpu_seconds_total", "CPU time used by all of the service's processes.")
	descCPULimit         = desc("cpu_limit_cpus", "The service's CPU limit, in CPUs (resources.cpus).")
	descPeriods          = desc("cpu_periods_total", "CFS periods in which the service was runnable.")
	descThrottledPeriods = desc("cpu_throttled_periods_total", "CFS periods in which the service was throttled at its CPU limit.")
	descThrottledSeconds = desc("cpu_throttled_seconds_total", "Time the service was throttled at its CPU limit.")
	descMemory           = desc("memory_usage_bytes", "Memory in use as the cgroup counts it, page cache included.")
	descWorkingSet       = desc("memory_working_set_bytes", "Memory in use less inactive page cache: what the limit presses on.")
	descMemoryLimit      = desc("memory_limit_bytes", "The service's memory limit (resources.memory).")
	descMemoryPeak       = desc("memory_max_usage_bytes", "High-water mark of memory in use (memory.max_usage_in_bytes, memory.peak).")
	descOOMKills         = desc("oom_kills_total", "Processes of the service the kernel's OOM killer took.")
	descPids             = desc("pids", "Processes and threads of the service.")
	descPidsLimit        = desc("pids_limit", "The service's pids limit (resources.pids).")
	descPidsDenied       = desc("pids_denied_total", "Forks refused at the pids limit (pids.events max).")
	descNetRx            = desc("network_receive_bytes_total", "Bytes received on the service's network interfaces (not lo).")
	descNetTx            = desc("network_transmit_bytes_total", "Bytes sent on the service's network interfaces (not lo).")
	descBlockRead        = desc("block_read_bytes_total", "Bytes read from block devices.")
	descBlockWrite       = desc("block_write_bytes_total", "Bytes written to block devices (on cgroup v1 direct writes only).")
	descSeccomp          = desc("seccomp_denials_total", "System calls the seccomp filter denied since the start, from the event journal.")
	descLandlock         = desc("landlock_denials_total", "Accesses the Landlock ruleset denied since the start, as the kernel audited them (ABI 7, its audit on), from the event journal.")
	descWarnings         = desc("warnings_total", "The supervisor's warnings of a limit about to bite, by condition.", "condition")
)

// Collector is a prometheus.Collector of every running service under a
// state directory, read anew at each scrape.
type Collector struct {
	StateRoot  string // plan.Dirs.State
	JournalDir string // ops.JournalDir(plan.Dirs.Data); "": no seccomp denials
}

// Describe sends the descriptions of every metric Collect sends.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descInfo, descStarts, descCPUSeconds, descCPULimit, descPeriods, descThrottledPeriods,
		descThrottledSeconds, descMemory, descWorkingSet, descMemoryLimit, descMemoryPeak, descOOMKills, descPids,
		descPidsLimit, descPidsDenied, descNetRx, descNetTx, descBlockRead, descBlockWrite, descSeccomp, descLandlock, descWarnings} {
		ch <- d
	}
}

// Collect reads every running service. One whose cgroup cannot be read
// (it runs without limits: rootless on cgroup v1) has no cgroup numbers,
// only its info, starts, network, seccomp denials and warnings.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	list, _ := ops.List(c.StateRoot)
	for _, s := range list {
		if s.Dead || s.State == ops.StateStarting {
			continue
		}
		smp, err := ops.ReadSample(s.Cgroups)
		// A service that ended meanwhile has no /proc entry left:
		// 0, 0 then, and it is gone from the next scrape.
		smp.RxBytes, smp.TxBytes, _ = ops.ReadNetwork(s.InitPID)
		c.service(ch, s, smp, err == nil)
	}
}

func (c *Collector) service(ch chan<- prometheus.Metric, s *ops.Status, smp ops.Sample, cgroup bool) {
	lv := []string{s.Name, s.ManifestSHA}
	send := func(d *prometheus.Desc, t prometheus.ValueType, v float64, extra ...string) {
		ch <- prometheus.MustNewConstMetric(d, t, v, append(append([]string{}, lv...), extra...)...)
	}
	counter := func(d *prometheus.Desc, v uint64) { send(d, prometheus.CounterValue, float64(v)) }
	gauge := func(d *prometheus.Desc, v uint64) { send(d, prometheus.GaugeValue, float64(v)) }
	send(descInfo, prometheus.GaugeValue, 1, s.Image, s.ImageDigest, s.Unit)
	if c.JournalDir != "" {
		starts, denials := fromJournal(c.JournalDir, s)
		send(descStarts, prometheus.CounterValue, float64(starts), s.Unit)
		counter(descSeccomp, denials[ops.EventSeccomp])
		counter(descLandlock, denials[ops.EventLandlock])
	}
	counter(descNetRx, smp.RxBytes)
	counter(descNetTx, smp.TxBytes)
	for _, cond := range ops.WarnConditions() {
		send(descWarnings, prometheus.CounterValue, float64(s.Warnings[cond]), cond)
	}
	if !cgroup {
		return
	}
	send(descCPUSeconds, prometheus.CounterValue, float64(smp.CPUNanos)/1e9)
	if smp.Quota > 0 && smp.Period > 0 {
		send(descCPULimit, prometheus.GaugeValue, float64(smp.Quota)/float64(smp.Period))
	}
	counter(descPeriods, smp.Periods)
	counter(descThrottledPeriods, smp.Throttled)
	send(descThrottledSeconds, prometheus.CounterValue, float64(smp.ThrottledTime)/1e9)
	gauge(descMemory, smp.Memory)
	gauge(descWorkingSet, smp.Memory-min(smp.InactiveFile, smp.Memory))
	if smp.MemoryLimit > 0 {
		gauge(descMemoryLimit, smp.MemoryLimit)
	}
	if smp.MemoryPeak > 0 {
		gauge(descMemoryPeak, smp.MemoryPeak)
	}
	counter(descOOMKills, smp.OOMKills)
	gauge(descPids, smp.Pids)
	if smp.PidsLimit > 0 {
		gauge(descPidsLimit, smp.PidsLimit)
	}
	counter(descPidsDenied, smp.PidsDenied)
	counter(descBlockRead, smp.ReadBytes)
	counter(descBlockWrite, smp.WriteBytes)
}

// deniedPrefix is how each kind of denial event begins; other events of
// those kinds ("seccomp denials are not shown: ...") are about the watcher.
var deniedPrefix = map[string]string{ops.EventSeccomp: "seccomp denied ", ops.EventLandlock: "landlock denied "}

// fromJournal reads the journal of s once, for the starts of services of
// its name it holds (every run's, this one's included), and the denials of
// each kind since this run's start: a line for each shown, and the count a
// summary line gives of those suppressed ("seccomp denied X: 12 more
// suppressed").
func fromJournal(dir string, s *ops.Status) (starts uint64, denials map[string]uint64) {
	denials = map[string]uint64{}
	evs, err := ops.ReadEvents(dir, []string{s.Name}, time.Time{})
	if err != nil {
		return 0, denials
	}
	for _, e := range evs {
		if e.Kind == ops.EventStart {
			starts++
			continue
		}
		if prefix, ok := deniedPrefix[e.Kind]; ok && !e.Time.Before(s.Started) && strings.HasPrefix(e.Message, prefix) {
			denials[e.Kind] += suppressed(e.Message)
		}
	}
	return starts, denials
}

// suppressed is how many denials an event stands for: 1, or the count of
// a summary line.
func suppressed(msg string) uint64 {
	if rest, ok := strings.CutSuffix(msg, " more suppressed"); ok {
		if i := strings.LastIndex(rest, ": "); i >= 0 {
			if k, err := strconv.ParseUint(rest[i+2:], 10, 64); err == nil {
				return k
			}
		}
	}
	return 1
}

// Registry returns a registry of the services under stateRoot alone:
// not the metrics of safe-run-tools's own Go runtime, which come and go
// with each scrape's process.
func Registry(c *Collector) *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(c)
	return r
}

// Write writes what g gathers in Prometheus's text exposition format.
func Write(w io.Writer, g prometheus.Gatherer) error {
	mfs, err := g.Gather()
	if err != nil {
		return err
	}
	enc := expfmt.NewEncoder(w, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return err
		}
	}
	return nil
}

// WriteTextfile replaces dir/safe-run.prom with what g gathers, at once:
// node_exporter's textfile collector never reads half of it.
func WriteTextfile(dir string, g prometheus.Gatherer) error {
	var b bytes.Buffer
	if err := Write(&b, g); err != nil {
		return err
	}
	// node_exporter reads *.prom only: the temporary file atomicfile
	// writes beside it is not one.
	return atomicfile.Write(filepath.Join(dir, TextfileName), b.Bytes(), 0o644)
}

// ErrNotLoopback: --listen names an address other hosts can reach.
var ErrNotLoopback = errors.New("not a loopback address")

// Listen opens addr for Serve: "unix:PATH" (a socket, mode 0660), or
// HOST:PORT, where HOST must be a loopback address or localhost unless
// anyHost: the metrics name every service, its manifest digest and its
// use of the host, with no authentication.
func Listen(addr string, anyHost bool) (net.Listener, error) {
	if p, ok := strings.CutPrefix(addr, "unix:"); ok {
		if p == "" {
			return nil, fmt.Errorf("--listen %q: name the socket's path (unix:/run/safe-run-metrics.sock)", addr)
		}
		l, err := net.Listen("unix", p)
		if errors.Is(err, unix.EADDRINUSE) && stale(p) {
			// A metrics command killed before it could remove its
			// socket left it: nobody listens there any more.
			if rerr := os.Remove(p); rerr == nil || errors.Is(rerr, fs.ErrNotExist) {
				l, err = net.Listen("unix", p)
			}
		}
		if errors.Is(err, unix.EADDRINUSE) {
			return nil, fmt.Errorf("--listen %s: %w (another safe-run metrics serves there, or it is no socket: pick another path)", addr, err)
		}
		if err != nil {
			return nil, fmt.Errorf("--listen %s: %w", addr, err)
		}
		if err := os.Chmod(p, 0o660); err != nil {
			l.Close()
			return nil, fmt.Errorf("--listen %s: %w", addr, err)
		}
		return l, nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("--listen %q: %w (use 127.0.0.1:9464 or unix:PATH)", addr, err)
	}
	if !anyHost && !loopback(host) {
		return nil, fmt.Errorf("--listen %s: %w: the metrics name every service and its use of this host, with no authentication; listen on 127.0.0.1 or a unix socket and let an authenticating proxy or the scraper's tunnel reach it, or pass --listen-any-host to serve them to the network anyway", addr, ErrNotLoopback)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--listen %s: %w", addr, err)
	}
	return l, nil
}

// stale: path is a unix socket nobody listens on (a connection to it is
// refused), left by a listener that could not remove it.
func stale(path string) bool {
	st, err := os.Lstat(path)
	if err != nil || st.Mode().Type() != fs.ModeSocket {
		return false
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return false
	}
	return errors.Is(err, unix.ECONNREFUSED)
}

// loopback: host is a loopback IP address, or localhost. An empty host
// (":9464") is every address of the host.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Serve serves g at /metrics on l until ctx ends.
func Serve(ctx context.Context, l net.Listener, g prometheus.Gatherer) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	})
	defer stop()
	err := srv.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
