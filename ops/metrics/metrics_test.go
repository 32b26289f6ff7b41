package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/safe-run/safe-run/internal/proc"
	"github.com/safe-run/safe-run/ops"
)

// fakeService writes the status of a running service "web" (this test's
// own process as its supervisor) whose cgroup v2 directory holds known
// numbers, and a journal with two shown denials and 5 suppressed.
func fakeService(t *testing.T) (state, journal string) {
	t.Helper()
	root := t.TempDir()
	state, journal = filepath.Join(root, "state"), filepath.Join(root, "events")
	cg := filepath.Join(root, "cgroup")
	for _, d := range []string{filepath.Join(state, "web"), cg} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, text := range map[string]string{
		"cpu.stat":       "usage_usec 2500000\nnr_periods 100\nnr_throttled 25\nthrottled_usec 300000\n",
		"cpu.max":        "50000 100000\n",
		"memory.current": "20971520\n", "memory.max": "67108864\n", "memory.peak": "33554432\n",
		"memory.stat":   "anon 1\ninactive_file 1048576\n",
		"memory.events": "low 0\nhigh 0\nmax 3\noom 1\noom_kill 2\n",
		"pids.current":  "3\n", "pids.max": "64\n", "pids.events": "max 7\n",
		"io.stat": "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2\n253:0 rbytes=1 wbytes=2\n",
	} {
		if err := os.WriteFile(filepath.Join(cg, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	start := proc.Start(os.Getpid())
	started := time.Now().Add(-time.Minute)
	st := &ops.Status{Name: "web", State: ops.StateRunning, SupervisorPID: os.Getpid(), SupervisorStart: start, Started: started,
		Image: "/srv/web/rootfs", ManifestSHA: "abc123", Cgroups: map[string]string{"": cg}, Unit: "web.service",
		Warnings: map[string]uint64{ops.WarnCPUThrottled: 2}}
	if err := ops.WriteStatus(filepath.Join(state, "web"), st); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(journal, 0o755); err != nil {
		t.Fatal(err)
	}
	var lines []string
	for i, msg := range []string{
		"seccomp denied unshare (syscall 272) pid 5 (sh)",
		"seccomp denied unshare (syscall 272) pid 6 (sh)",
		"seccomp denied unshare (syscall 272): 5 more suppressed",
		"seccomp denials are not shown: no audit",
	} {
		lines = append(lines, fmt.Sprintf(`{"time":%q,"service":"web","kind":"seccomp","message":%q}`, started.Add(time.Duration(i+1)*time.Second).UTC().Format(time.RFC3339Nano), msg))
	}
	for i, msg := range []string{
		"landlock denied write-file /dev/x",
		"landlock denied write-file: 3 more suppressed",
		"landlock denied bind-tcp port 9999",
	} {
		lines = append(lines, fmt.Sprintf(`{"time":%q,"service":"web","kind":"landlock","message":%q}`, started.Add(time.Duration(i+1)*time.Second).UTC().Format(time.RFC3339Nano), msg))
	}
	// One of an earlier run, before this one started.
	lines = append(lines, fmt.Sprintf(`{"time":%q,"service":"web","kind":"seccomp","message":"seccomp denied ptrace"}`, started.Add(-time.Hour).UTC().Format(time.RFC3339Nano)))
	// Starts: this run's, and two earlier ones in the rotated file.
	at := func(d time.Duration) string { return started.Add(d).UTC().Format(time.RFC3339Nano) }
	lines = append(lines, fmt.Sprintf(`{"time":%q,"service":"web","kind":"start","message":"init pid 7"}`, at(0)))
	rotated := fmt.Sprintf(`{"time":%q,"service":"web","kind":"start","message":"init pid 5"}`+"\n"+
		`{"time":%q,"service":"web","kind":"exit","code":1,"message":"exited with code 1"}`+"\n"+
		`{"time":%q,"service":"web","kind":"start","message":"init pid 6"}`+"\n", at(-3*time.Hour), at(-2*time.Hour), at(-90*time.Minute))
	if err := os.WriteFile(filepath.Join(journal, "web.jsonl.1"), []byte(rotated), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(journal, "web.jsonl"), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return state, journal
}

func parse(t *testing.T, r io.Reader) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(r)
	if err != nil {
		t.Fatal(err)
	}
	return mfs
}

// value is the value of the metric of family name whose labels include
// want.
func value(t *testing.T, mfs map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	t.Helper()
	mf, ok := mfs[name]
	if !ok {
		t.Errorf("no metric %s", name)
		return -1
	}
next:
	for _, m := range mf.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		}
	}
	t.Errorf("no metric %s with labels %v", name, want)
	return -1
}

// TestScrape serves the metrics on loopback, scrapes and parses them, and
// checks each against the cgroup files it came from.
func TestScrape(t *testing.T) {
	state, journal := fakeService(t)
	reg := Registry(&Collector{StateRoot: state, JournalDir: journal})
	l, err := Listen("127.0.0.1:0", false)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, l, reg) }()
	resp, err := http.Get("http://" + l.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	mfs := parse(t, resp.Body)
	resp.Body.Close()
	cancel()
	if err := <-served; err != nil {
		t.Errorf("serve: %v", err)
	}
	web := map[string]string{"service": "web", "manifest_digest": "abc123"}
	for _, c := range []struct {
		name string
		want float64
	}{
		{"safe_run_cpu_seconds_total", 2.5},
		{"safe_run_cpu_limit_cpus", 0.5},
		{"safe_run_cpu_periods_total", 100},
		{"safe_run_cpu_throttled_periods_total", 25},
		{"safe_run_cpu_throttled_seconds_total", 0.3},
		{"safe_run_memory_usage_bytes", 20 << 20},
		{"safe_run_memory_working_set_bytes", 19 << 20},
		{"safe_run_memory_limit_bytes", 64 << 20},
		{"safe_run_memory_max_usage_bytes", 32 << 20},
		{"safe_run_oom_kills_total", 2},
		{"safe_run_pids", 3},
		{"safe_run_pids_limit", 64},
		{"safe_run_pids_denied_total", 7},
		{"safe_run_block_read_bytes_total", 4097},
		{"safe_run_block_write_bytes_total", 8194},
		{"safe_run_seccomp_denials_total", 7},
		{"safe_run_landlock_denials_total", 5},
		{"safe_run_service_info", 1},
	} {
		if got := value(t, mfs, c.name, web); got != c.want {
			t.Errorf("%s = %g, want %g", c.name, got, c.want)
		}
	}
	// Three starts in the journal and its rotated file: two restarts.
	if got := value(t, mfs, "safe_run_starts_total", map[string]string{"service": "web", "manifest_digest": "abc123", "unit": "web.service"}); got != 3 {
		t.Errorf("starts %g, want 3", got)
	}
	if got := value(t, mfs, "safe_run_service_info", map[string]string{"service": "web", "unit": "web.service", "image": "/srv/web/rootfs"}); got != 1 {
		t.Errorf("info %g", got)
	}
	for cond, want := range map[string]float64{ops.WarnCPUThrottled: 2, ops.WarnOOMKill: 0} {
		if got := value(t, mfs, "safe_run_warnings_total", map[string]string{"service": "web", "condition": cond}); got != want {
			t.Errorf("warnings %s = %g, want %g", cond, got, want)
		}
	}
	if mf := mfs["safe_run_cpu_seconds_total"]; mf.GetType() != dto.MetricType_COUNTER || mf.GetHelp() == "" {
		t.Errorf("cpu seconds: %v", mf)
	}
}

// TestNoCgroup: a service without cgroup limits (rootless on cgroup v1)
// is listed with what does not come from its cgroup, and nothing that
// would.
func TestNoCgroup(t *testing.T) {
	state, journal := fakeService(t)
	st, err := ops.ReadStatus(filepath.Join(state, "web"))
	if err != nil {
		t.Fatal(err)
	}
	st.Cgroups, st.Unit = nil, ""
	if err := ops.WriteStatus(filepath.Join(state, "web"), st); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := Write(&b, Registry(&Collector{StateRoot: state, JournalDir: journal})); err != nil {
		t.Fatal(err)
	}
	mfs := parse(t, strings.NewReader(b.String()))
	web := map[string]string{"service": "web"}
	for name, want := range map[string]float64{
		"safe_run_service_info": 1, "safe_run_starts_total": 3, "safe_run_seccomp_denials_total": 7,
		"safe_run_network_receive_bytes_total": 0,
	} {
		if got := value(t, mfs, name, web); got != want {
			t.Errorf("%s = %g, want %g", name, got, want)
		}
	}
	if got := value(t, mfs, "safe_run_warnings_total", map[string]string{"service": "web", "condition": ops.WarnCPUThrottled}); got != 2 {
		t.Errorf("warnings %g", got)
	}
	for _, name := range []string{"safe_run_cpu_seconds_total", "safe_run_memory_usage_bytes", "safe_run_pids", "safe_run_oom_kills_total"} {
		if _, ok := mfs[name]; ok {
			t.Errorf("%s of a service without a cgroup:\n%s", name, b.String())
		}
	}
}

// TestTextfile: --textfile writes the same metrics to DIR/safe-run.prom,
// leaving nothing else behind.
func TestTextfile(t *testing.T) {
	state, journal := fakeService(t)
	dir := t.TempDir()
	if err := WriteTextfile(dir, Registry(&Collector{StateRoot: state, JournalDir: journal})); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(dir, TextfileName))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got := value(t, parse(t, f), "safe_run_pids", map[string]string{"service": "web"}); got != 3 {
		t.Errorf("pids %g", got)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("textfile dir holds %v", ents)
	}
}

func TestListen(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "m.sock")
	for _, tc := range []struct {
		addr    string
		anyHost bool
		err     string
	}{
		{"127.0.0.1:0", false, ""},
		{"[::1]:0", false, ""},
		{"localhost:0", false, ""},
		{"unix:" + sock, false, ""},
		{":9464", false, `--listen :9464: not a loopback address: the metrics name every service`},
		{"0.0.0.0:9464", false, `--listen 0.0.0.0:9464: not a loopback address`},
		{"192.0.2.1:9464", false, `not a loopback address`},
		{"unix:", false, `name the socket's path`},
		{"9464", false, `use 127.0.0.1:9464 or unix:PATH`},
	} {
		t.Run(tc.addr, func(t *testing.T) {
			l, err := Listen(tc.addr, tc.anyHost)
			if l != nil {
				l.Close()
			}
			switch {
			case tc.err == "" && err != nil:
				if errors.Is(err, os.ErrPermission) || strings.Contains(err.Error(), "cannot assign") {
					t.Skipf("this host lacks the address: %v", err)
				}
				t.Fatal(err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("err %v, want %q", err, tc.err)
			}
		})
	}
}

// TestListenStale: a unix socket left by a metrics command that was
// killed is taken over; one another listener serves, or a file that is
// no socket, is left alone (probe OPS #13).
func TestListenStale(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "m.sock")
	old, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	old.SetUnlinkOnClose(false)
	old.Close() // as a SIGKILL leaves it
	l, err := Listen("unix:"+sock, false)
	if err != nil {
		t.Fatalf("over a stale socket: %v", err)
	}
	defer l.Close()
	if _, err := Listen("unix:"+sock, false); err == nil || !strings.Contains(err.Error(), "address already in use (another safe-run metrics serves there, or it is no socket: pick another path)") {
		t.Errorf("over a live socket: %v", err)
	}
	file := filepath.Join(dir, "file")
	os.WriteFile(file, []byte("keep"), 0o600)
	if _, err := Listen("unix:"+file, false); err == nil {
		t.Error("a file that is no socket was replaced")
	}
	if data, _ := os.ReadFile(file); string(data) != "keep" {
		t.Error("a file that is no socket was removed")
	}
}
