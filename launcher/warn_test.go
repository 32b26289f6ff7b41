package launcher_test

// The supervisor's warnings (limits that warn before they bite), safe-run
// metrics, and stats' network and block I/O, on real services.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/safe-run/safe-run/internal/testenv"
	"github.com/safe-run/safe-run/ops"
)

var warnBin struct {
	once sync.Once
	path string
	err  error
}

// scaledSafeRun builds safe-run with its warnings' periods a tenth as
// long (launcher.warnScale: a minute's window in 6 s), beside links to
// the other binaries.
func scaledSafeRun(t *testing.T) string {
	t.Helper()
	warnBin.once.Do(func() {
		dir := filepath.Join(env.dir, "warnbin")
		if warnBin.err = os.MkdirAll(dir, 0o755); warnBin.err != nil {
			return
		}
		root, err := testenv.ModuleRoot()
		if err != nil {
			warnBin.err = err
			return
		}
		warnBin.path = filepath.Join(dir, "safe-run")
		c := exec.Command("go", "build", "-trimpath", "-tags", "seccomp netgo osusergo",
			"-ldflags", "-extldflags -static -X github.com/safe-run/safe-run/launcher.warnScale=0.1", "-o", warnBin.path, "./cmd/safe-run")
		c.Dir, c.Env = root, append(os.Environ(), "CGO_ENABLED=1")
		if out, err := c.CombinedOutput(); err != nil {
			warnBin.err = fmt.Errorf("building the scaled safe-run: %w\n%s", err, out)
			return
		}
		for _, b := range []string{"safe-run-tools", "safe-run-init", "safe-run-janitor"} {
			if warnBin.err = os.Link(filepath.Join(filepath.Dir(env.bin), b), filepath.Join(dir, b)); warnBin.err != nil {
				return
			}
		}
	})
	if warnBin.err != nil {
		t.Fatal(warnBin.err)
	}
	return warnBin.path
}

// liveService is a safe-run running in the background whose stderr the
// test reads as it comes.
type liveService struct {
	name   string
	cmd    *exec.Cmd
	stderr *testenv.Buffer
}

// startLive starts a shell script as service name with safe-run bin and
// waits for its first line, "up", and its status to say running.
func startLive(t *testing.T, bin, name, script, extra string) *liveService {
	t.Helper()
	m := manifestFor(t, name, fmt.Sprintf("[process]\ncommand = [\"/bin/sh\", \"-c\", %q]\n%s", script, extra))
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	c := exec.CommandContext(ctx, bin, m)
	c.Env = append(os.Environ(), "SAFE_RUN_STATE_DIR="+env.stateDir, "SAFE_RUN_DATA_DIR="+env.dataDir)
	s := &liveService{name: name, cmd: c, stderr: &testenv.Buffer{}}
	c.Stderr = s.stderr
	out, _ := c.StdoutPipe()
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Process.Signal(syscall.SIGKILL)
		c.Wait()
		cancel()
		waitUnlocked(name)
	})
	r := bufio.NewReader(out)
	if line, err := r.ReadString('\n'); err != nil || line != "up\n" {
		t.Fatalf("%s did not start: %q %v\n%s", name, line, err, s.stderr)
	}
	go io.Copy(io.Discard, r)
	waitStatus(t, name, ops.StateRunning)
	return s
}

// waitLine waits for a line of stderr containing want.
func (s *liveService) waitLine(t *testing.T, want string, within time.Duration) string {
	t.Helper()
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		for _, l := range strings.Split(s.stderr.String(), "\n") {
			if strings.Contains(l, want) {
				return l
			}
		}
	}
	t.Fatalf("%s: no line %q within %s; stderr:\n%s", s.name, want, within, s.stderr)
	return ""
}

// warningEvents returns the warning events of service name since t0.
func warningEvents(t *testing.T, name string, since time.Time) []ops.Event {
	t.Helper()
	evs, err := ops.ReadEvents(ops.JournalDir(env.dataDir), []string{name}, since)
	if err != nil {
		t.Fatal(err)
	}
	var out []ops.Event
	for _, e := range evs {
		if e.Kind == ops.EventWarning {
			out = append(out, e)
		}
	}
	return out
}

// scrape runs safe-run metrics and parses what it prints.
func scrape(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	r := tools(t, "metrics")
	if r.code != 0 {
		t.Fatalf("metrics: exit %d\n%s", r.code, r.stderr)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(r.stdout))
	if err != nil {
		t.Fatalf("metrics: %v\n%s", err, r.stdout)
	}
	return mfs
}

// metricValue is the value of family name for service (and condition,
// if not empty); -1 if there is none.
func metricValue(mfs map[string]*dto.MetricFamily, name, service, condition string) float64 {
	for _, m := range mfs[name].GetMetric() {
		l := map[string]string{}
		for _, p := range m.GetLabel() {
			l[p.GetName()] = p.GetValue()
		}
		if l["service"] != service || condition != "" && l["condition"] != condition {
			continue
		}
		if m.Counter != nil {
			return m.Counter.GetValue()
		}
		return m.Gauge.GetValue()
	}
	return -1
}

// TestWarnings: a CPU hog at cpus 0.1, a child OOM-killed while the
// service goes on, forks at the pids limit, and memory held above 90% of
// the limit each produce the
// supervisor's warning line, an event, and a count in metrics. The
// supervisor is built with its periods scaled to a tenth (6 s window).
func TestWarnings(t *testing.T) {
	setup(t)
	bin := scaledSafeRun(t)
	since := time.Now()
	cpu := startLive(t, bin, "warncpu", "while :; do :; done & echo up; wait", "[resources]\nmemory = \"32M\"\ncpus = 0.1\n")
	// The hog raises its OOM score, so the kernel takes it (or, if the
	// first kill frees too little in time, its pipeline) and never the
	// service's shell, whose RSS is as small as theirs; a CI run under
	// load saw the shell killed second. Landlock keeps /proc read-only.
	oom := startLive(t, bin, "warnoom", `echo up; (echo 1000 >/proc/self/oom_score_adj && x=$(head -c 200000000 /dev/zero | tr '\0' x)); echo survived >&2; `+uniqueSleep(60),
		"[resources]\nmemory = \"32M\"\ncpus = 1.0\n\n[security]\nlandlock = \"off\"\n\n[insecure]\nreason = \"the hog raises its OOM score in /proc, which the ruleset keeps read-only\"\nallow = [\"landlock_off\"]\n")
	// The inner shell dies at its first failed fork; the service goes on.
	pids := startLive(t, bin, "warnpids", "echo up; sh -c 'for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 60 & done' 2>/dev/null; "+uniqueSleep(61), "[resources]\nmemory = \"32M\"\ncpus = 1.0\npids = 8\n")
	// 59 MiB in a tmpfs file, which no reclaim can take without swap: a
	// working set of over 92% of 64M, held (3 s, scaled).
	mem := startLive(t, bin, "warnmem", "head -c 61865984 /dev/zero >/tmp/fill && echo up; "+uniqueSleep(62),
		"[resources]\nmemory = \"64M\"\ncpus = 1.0\n\n[[mounts]]\ntype = \"tmpfs\"\ntarget = \"/tmp\"\nsize = \"80M\"\n")

	for _, c := range []struct {
		s         *liveService
		condition string
		line      string
	}{
		{cpu, ops.WarnCPUThrottled, "warncpu: CPU-throttled "},
		{oom, ops.WarnOOMKill, "warnoom: the kernel OOM-killed "},
		{pids, ops.WarnPidsLimit, "warnpids: reached its pids limit 8"},
		{mem, ops.WarnMemoryHigh, "warnmem: memory at "},
	} {
		line := c.s.waitLine(t, c.line, 60*time.Second)
		t.Logf("%s", line)
		evs := warningEvents(t, c.s.name, since)
		if len(evs) == 0 || evs[0].Condition != c.condition || !strings.Contains(line, evs[0].Message) {
			t.Errorf("%s: warning events %+v", c.s.name, evs)
		}
	}
	if l := cpu.waitLine(t, "warncpu: CPU-throttled ", time.Second); !regexp.MustCompile(`CPU-throttled in \d+% of its busy periods over the last 6s, [0-9.]+m?s in all, at cpus 0.1; raise resources.cpus or find the hot loop$`).MatchString(l) {
		t.Errorf("cpu warning: %s", l)
	}
	if l := mem.waitLine(t, "warnmem: memory at ", time.Second); !regexp.MustCompile(`warnmem: memory at (9[0-9]|100)% of its limit 64M for \d+s; raise resources.memory or find the leak$`).MatchString(l) {
		t.Errorf("memory warning: %s", l)
	}
	oom.waitLine(t, "survived", 30*time.Second)
	// Which process, where the kernel's log says (its rate limit may
	// leave it out): the shell that held the memory.
	if l := oom.waitLine(t, "warnoom: the kernel OOM-killed", time.Second); !regexp.MustCompile(`^safe-run: warnoom: the kernel OOM-killed [1-3] process\(es\) of it at its memory limit 32M(: [a-z]+ \(host pid \d+\)(, [a-z]+ \(host pid \d+\))*)?; the service keeps running; raise resources.memory or find the leak$`).MatchString(l) {
		t.Errorf("oom warning: %s", l)
	} else if !strings.Contains(l, "(host pid ") {
		t.Logf("the kernel's log did not name the OOM-killed process (rate-limited)")
	}
	mfs := scrape(t)
	for _, c := range []struct {
		service, condition string
	}{{"warncpu", ops.WarnCPUThrottled}, {"warnoom", ops.WarnOOMKill}, {"warnpids", ops.WarnPidsLimit}, {"warnmem", ops.WarnMemoryHigh}} {
		if v := metricValue(mfs, "safe_run_warnings_total", c.service, c.condition); v < 1 {
			t.Errorf("metrics: %s warnings of %s: %g", c.service, c.condition, v)
		}
	}
	// The hog, or its whole pipeline (the warning's 1 to 3).
	if v := metricValue(mfs, "safe_run_oom_kills_total", "warnoom", ""); v < 1 || v > 3 {
		t.Errorf("metrics: warnoom oom kills %g, want 1-3", v)
	}
	if v := metricValue(mfs, "safe_run_pids_denied_total", "warnpids", ""); v < 1 {
		if _, err := os.Stat(filepath.Join(waitStatus(t, "warnpids", ops.StateRunning).Cgroups["pids"], "pids.events")); err == nil {
			t.Errorf("metrics: warnpids pids denied %g", v)
		}
	}
	if v := metricValue(mfs, "safe_run_cpu_throttled_periods_total", "warncpu", ""); v < 10 {
		t.Errorf("metrics: warncpu throttled periods %g", v)
	}
	// Once a (scaled) minute at most: in 3 s, no second line.
	n := strings.Count(cpu.stderr.String(), "CPU-throttled")
	time.Sleep(3 * time.Second)
	if m := strings.Count(cpu.stderr.String(), "CPU-throttled"); m > n+1 || m < 1 {
		t.Errorf("cpu warnings: %d, then %d 3 s later:\n%s", n, m, cpu.stderr)
	}
}

// TestMetricsScrape: safe-run metrics --listen on loopback and on a unix
// socket, and --textfile, against the cgroup files of a service holding a
// known amount of memory; stats shows the bytes a published port
// received.
func TestMetricsScrape(t *testing.T) {
	setup(t)
	startService(t, "metricshog", `x=$(head -c 25165824 /dev/zero | tr '\0' x); echo up; `+uniqueSleep(40)+"; echo $x | head -c 1", "[resources]\nmemory = \"96M\"\ncpus = 0.5\npids = 32\n")
	st := waitStatus(t, "metricshog", ops.StateRunning)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	sock := filepath.Join(env.dir, "metrics.sock")
	ctx, cancel := context.WithTimeout(context.Background(), 180*time.Second)
	defer cancel()
	for _, l := range []string{addr, "unix:" + sock} {
		c := safeRun(t, ctx, "metrics", "--listen", l)
		out := &testenv.Buffer{}
		c.Stdout, c.Stderr = out, out
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { c.Process.Signal(syscall.SIGTERM); c.Wait() }()
	}
	unixClient := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
	get := func(client *http.Client, url string) map[string]*dto.MetricFamily {
		var resp *http.Response
		var err error
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if resp, err = client.Get(url); err == nil {
				break
			}
		}
		if err != nil {
			t.Fatalf("scraping %s: %v", url, err)
		}
		defer resp.Body.Close()
		p := expfmt.NewTextParser(model.UTF8Validation)
		mfs, err := p.TextToMetricFamilies(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return mfs
	}
	mem, cpu, acct, pids := st.Cgroups["memory"], st.Cgroups["cpu"], st.Cgroups["cpuacct"], st.Cgroups["pids"]
	if mem == "" {
		t.Fatalf("this test reads cgroup v1's files; cgroups %v are v2's (the guest's)", st.Cgroups)
	}
	// The counters the service's sleep may still move: the scrapes
	// must fall between their values before and after.
	periodsBefore := cgroupKey(t, cpu, "cpu.stat", "nr_periods")
	mfs := get(http.DefaultClient, "http://"+addr+"/metrics")
	viaUnix := get(unixClient, "http://metrics/metrics")
	for _, m := range []map[string]*dto.MetricFamily{mfs, viaUnix} {
		if got, after := metricValue(m, "safe_run_cpu_periods_total", "metricshog", ""), cgroupKey(t, cpu, "cpu.stat", "nr_periods"); got < float64(periodsBefore) || got > float64(after) {
			t.Errorf("safe_run_cpu_periods_total = %g, cgroup %d before, %d after", got, periodsBefore, after)
		}
	}
	v := func(mfs map[string]*dto.MetricFamily, name string) float64 {
		return metricValue(mfs, name, "metricshog", "")
	}
	usage := atoi(t, readCgroupFile(t, mem, "memory.usage_in_bytes"))
	if got := v(mfs, "safe_run_memory_usage_bytes"); got < 24<<20 || got-float64(usage) > 1<<20 || float64(usage)-got > 1<<20 {
		t.Errorf("memory usage %g, the cgroup's file says %d; want at least 24 MiB", got, usage)
	}
	for _, c := range []struct {
		name string
		want uint64
	}{
		{"safe_run_memory_limit_bytes", atoi(t, readCgroupFile(t, mem, "memory.limit_in_bytes"))},
		{"safe_run_pids", atoi(t, readCgroupFile(t, pids, "pids.current"))},
		{"safe_run_pids_limit", atoi(t, readCgroupFile(t, pids, "pids.max"))},
		{"safe_run_oom_kills_total", cgroupKey(t, mem, "memory.oom_control", "oom_kill")},
		{"safe_run_cpu_throttled_periods_total", cgroupKey(t, cpu, "cpu.stat", "nr_throttled")},
	} {
		if got := v(mfs, c.name); got != float64(c.want) {
			t.Errorf("%s = %g, cgroup %d", c.name, got, c.want)
		}
		if got := v(viaUnix, c.name); got != float64(c.want) {
			t.Errorf("%s = %g over the unix socket, cgroup %d", c.name, got, c.want)
		}
	}
	if peak, got := atoi(t, readCgroupFile(t, mem, "memory.max_usage_in_bytes")), v(mfs, "safe_run_memory_max_usage_bytes"); got < 24<<20 || got > float64(peak) {
		t.Errorf("memory high-water %g, the cgroup's file says %d", got, peak)
	}
	if used, got := atoi(t, readCgroupFile(t, acct, "cpuacct.usage")), v(mfs, "safe_run_cpu_seconds_total"); got <= 0 || got*1e9 > float64(used)+1 { // +1: ns to float seconds and back
		t.Errorf("cpu seconds %g, cgroup says %d ns", got, used)
	}
	if got := v(mfs, "safe_run_cpu_limit_cpus"); got != 0.5 {
		t.Errorf("cpu limit %g", got)
	}
	for _, m := range mfs["safe_run_service_info"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "manifest_digest" && len(l.GetValue()) != 64 {
				t.Errorf("manifest digest label %q", l.GetValue())
			}
		}
	}

	dir := t.TempDir()
	if r := tools(t, "metrics", "--textfile", dir); r.code != 0 {
		t.Fatalf("metrics --textfile: exit %d %s", r.code, r.stderr)
	}
	f, err := os.Open(filepath.Join(dir, "safe-run.prom"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	tf, err := p.TextToMetricFamilies(f)
	if err != nil || v(tf, "safe_run_memory_limit_bytes") != 96<<20 {
		t.Errorf("textfile: %v %g", err, v(tf, "safe_run_memory_limit_bytes"))
	}
	if r := tools(t, "metrics", "--listen", "0.0.0.0:0"); r.code == 0 || !strings.Contains(r.stderr, "not a loopback address") {
		t.Errorf("metrics --listen 0.0.0.0:0: exit %d %s", r.code, r.stderr)
	}

	// Network I/O: 256 KiB sent to a published port reach the
	// service's eth0.
	ln, err = net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	startService(t, "metricsnet", "echo up; nc -l -p 80 >/dev/null; "+uniqueSleep(41), fmt.Sprintf("\n[network]\nmode = \"bridge\"\nports = [\"127.0.0.1:%d:80\"]\n", port))
	// Dial once nc listens inside ("up" comes before it does): a
	// connection the service refuses would carry no data to count.
	st = waitStatus(t, "metricsnet", ops.StateRunning)
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		tcp, _ := os.ReadFile(fmt.Sprintf("/proc/%d/net/tcp", st.InitPID))
		tcp6, _ := os.ReadFile(fmt.Sprintf("/proc/%d/net/tcp6", st.InitPID))
		tcp = append(tcp, tcp6...) // busybox nc listens on ::, for IPv4 too
		if regexp.MustCompile(`:0050 0+:0000 0A`).Match(tcp) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nc does not listen on port 80 in metricsnet:\n%s", tcp)
		}
	}
	conn, err := net.Dial("tcp4", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(make([]byte, 256<<10)); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	// The published port's forwarder may still be passing it on.
	var stats []ops.Stats
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		r := tools(t, "stats", "metricsnet", "metricshog", "--no-stream", "--format", "json", "--interval", "100ms")
		stats = nil
		if err := json.Unmarshal([]byte(r.stdout), &stats); err != nil || len(stats) != 2 {
			t.Fatalf("stats: %v\n%s%s", err, r.stdout, r.stderr)
		}
		if i := slices.IndexFunc(stats, func(s ops.Stats) bool { return s.Name == "metricsnet" }); stats[i].NetRx >= 256<<10 || time.Now().After(deadline) {
			break
		}
	}
	for _, s := range stats {
		t.Logf("%s: net rx %d tx %d, block read %d write %d", s.Name, s.NetRx, s.NetTx, s.BlockRead, s.BlockWrite)
		switch s.Name {
		case "metricsnet":
			if s.NetRx < 256<<10 || s.NetTx == 0 {
				t.Errorf("metricsnet: rx %d tx %d, want at least the 256 KiB sent", s.NetRx, s.NetTx)
			}
		case "metricshog":
			if s.NetRx != 0 || s.NetTx != 0 {
				t.Errorf("metricshog: network none, rx %d tx %d", s.NetRx, s.NetTx)
			}
		}
	}
	if r := tools(t, "stats", "--no-stream", "metricsnet"); !strings.Contains(r.stdout, "NET I/O") || !strings.Contains(r.stdout, "BLOCK I/O") {
		t.Errorf("stats table:\n%s", r.stdout)
	}
}

// TestIdleSupervisor: an idle service's supervisor wakes less than once a
// second on average. It counts wake-ups: the tenths of a second, over
// 20 s, in which any thread of it ran (its context switches grew). The
// context switches themselves are logged: each wake-up costs several, and
// more on a loaded host, where Go's sysmon polls every 20 µs for as long
// as the woken goroutine waits for a CPU. The seccomp watcher's audit
// reader wakes for every seccomp denial on the host, other services' and
// other tests' included: the figures with it are logged, those without
// it checked.
func TestIdleSupervisor(t *testing.T) {
	setup(t)
	quiet := startService(t, "idlequiet", "echo up; "+uniqueSleep(46), "[security]\nseccomp_log = false\n")
	logged := startService(t, "idlewake", "echo up; "+uniqueSleep(45), "")
	// The start's own work settles, and the Go runtime's scavenger
	// returns what the start took to the kernel, waking for a while.
	time.Sleep(10 * time.Second)
	switches := func(pid int) (n uint64) {
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
		for _, p := range tasks {
			data, err := os.ReadFile(p)
			if err != nil {
				continue
			}
			for _, l := range strings.Split(string(data), "\n") {
				if f := strings.Fields(l); len(f) == 2 && (f[0] == "voluntary_ctxt_switches:" || f[0] == "nonvoluntary_ctxt_switches:") {
					k, _ := strconv.ParseUint(f[1], 10, 64)
					n += k
				}
			}
		}
		return n
	}
	rss := func(pid int) string {
		data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		for _, l := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
				return strings.TrimSpace(v)
			}
		}
		return ""
	}
	const over, slot = 20 * time.Second, 100 * time.Millisecond
	pids := []int{quiet.cmd.Process.Pid, logged.cmd.Process.Pid}
	first, last := make([]uint64, 2), make([]uint64, 2)
	wakes := make([]int, 2)
	for i, p := range pids {
		first[i] = switches(p)
		last[i] = first[i]
	}
	for end := time.Now().Add(over); time.Now().Before(end); {
		time.Sleep(slot)
		for i, p := range pids {
			if n := switches(p); n != last[i] {
				wakes[i]++
				last[i] = n
			}
		}
	}
	sec := over.Seconds()
	t.Logf("idle supervisor: %.2f wake-ups/s (%.2f context switches/s), VmRSS %s; with the seccomp watcher: %.2f wake-ups/s (%.2f context switches/s), VmRSS %s",
		float64(wakes[0])/sec, float64(last[0]-first[0])/sec, rss(pids[0]), float64(wakes[1])/sec, float64(last[1]-first[1])/sec, rss(pids[1]))
	if r := float64(wakes[0]) / sec; r > 1 {
		t.Errorf("an idle supervisor woke %.2f times a second", r)
	}
}
