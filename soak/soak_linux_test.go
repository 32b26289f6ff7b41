package soak_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/safe-run/safe-run/internal/testenv"
	"github.com/safe-run/safe-run/ops"
)

// level is how much a pass does. The short pass runs in `make test`; the
// long one is `make soak`.
type level struct {
	name            string
	cycles          int // start-to-exit cycles per mode
	killed          int // SIGKILLed cycles per mode
	calls           int // stats/ps/kill calls against one service
	concurrent      int // services started at once
	pulls           int // prunes-while-unpacking rounds
	hogSeconds      int // how long the hogs run beside the web service
	baselineQueries int
}

func soakLevel() level {
	switch os.Getenv("SAFE_RUN_SOAK") {
	case "long":
		return level{"long", 1000, 200, 10000, 50, 20, 30, 500}
	case "medium":
		return level{"medium", 250, 50, 2500, 50, 5, 15, 200}
	default:
		return level{"short", 30, 10, 500, 10, 2, 4, 50}
	}
}

// env is what every soak test shares: binaries, the example rootfs, state
// and data directories of its own, and a prefix that makes every service
// name, and so every cgroup, lock and journal, this run's own.
var env struct {
	once              sync.Once
	err               error
	dir               string
	bin               testenv.Binaries
	rootfs            string
	stateDir, dataDir string
	prefix            string
	lvl               level

	mu       sync.Mutex
	names    map[string]bool // root services started
	rlNames  map[string]bool // rootless services started
	bridges  map[string]bool // bridge names used (root)
	linksPre map[string]bool // sv-/sr- links before the soak
	report   []string        // lines of the figures table
}

func TestMain(m *testing.M) {
	code := m.Run()
	if len(env.report) > 0 {
		fmt.Printf("\nsoak (%s pass) figures:\n%s\n", env.lvl.name, strings.Join(env.report, "\n"))
		if p := os.Getenv("SAFE_RUN_SOAK_REPORT"); p != "" {
			os.WriteFile(p, []byte(strings.Join(env.report, "\n")+"\n"), 0o644)
		}
	}
	if env.dir != "" && code == 0 {
		os.RemoveAll(env.dir)
	} else if env.dir != "" {
		fmt.Printf("soak: kept %s for a look\n", env.dir)
	}
	os.Exit(code)
}

func setup(t testing.TB) {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.Long(t)
	testenv.RequireTool(t, "nft")
	testenv.RequireTool(t, "ip")
	env.once.Do(func() { env.err = build() })
	if env.err != nil {
		t.Fatal(env.err)
	}
}

func build() error {
	env.lvl = soakLevel()
	var b [2]byte
	rand.Read(b[:])
	env.prefix = "sk" + hex.EncodeToString(b[:])
	env.names, env.rlNames, env.bridges = map[string]bool{}, map[string]bool{}, map[string]bool{}
	dir, err := os.MkdirTemp("", "safe-run-soak-")
	if err != nil {
		return err
	}
	env.dir = dir
	// Every component must be traversable by a container's mapped root
	// and by the rootless user.
	if err := os.Chmod(dir, 0o711); err != nil {
		return err
	}
	if bin := os.Getenv("SAFE_RUN_BIN"); bin != "" {
		env.bin = testenv.Binaries{SafeRun: filepath.Join(bin, "safe-run"), Tools: filepath.Join(bin, "safe-run-tools"),
			Init: filepath.Join(bin, "safe-run-init"), Janitor: filepath.Join(bin, "safe-run-janitor")}
		for _, p := range []string{env.bin.SafeRun, env.bin.Tools, env.bin.Init, env.bin.Janitor} {
			if _, err := os.Stat(p); err != nil {
				return fmt.Errorf("SAFE_RUN_BIN: %w (run make build)", err)
			}
		}
	} else if env.bin, err = testenv.Build(dir); err != nil {
		return err
	}
	if env.rootfs, err = testenv.ExampleRootfs(dir); err != nil {
		return err
	}
	env.stateDir, env.dataDir = filepath.Join(dir, "state"), filepath.Join(dir, "data")
	for _, d := range []string{env.stateDir, env.dataDir, filepath.Join(dir, "manifests")} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return err
		}
	}
	env.linksPre = map[string]bool{}
	for _, l := range links() {
		env.linksPre[l.name] = true
	}
	return nil
}

// record adds a line to the figures the pass prints at its end.
func record(format string, args ...any) {
	env.mu.Lock()
	defer env.mu.Unlock()
	env.report = append(env.report, fmt.Sprintf(format, args...))
}

// name is a service name of this run's: the prefix, then s.
func name(s string) string { return env.prefix + "-" + s }

// runner runs safe-run as root (rootless false) or as the rootless user.
type runner struct {
	rootless bool
	home     string
	uid, gid uint32
}

var root = runner{}

func (r runner) cmd(ctx context.Context, args ...string) *exec.Cmd {
	c := exec.CommandContext(ctx, env.bin.SafeRun, args...)
	// Killed by its context, safe-run gets SIGKILL: what the soak does
	// on purpose anyway; WaitDelay keeps a stuck pipe from hanging it.
	c.WaitDelay = 5 * time.Second
	if !r.rootless {
		c.Env = append(os.Environ(), "SAFE_RUN_STATE_DIR="+env.stateDir, "SAFE_RUN_DATA_DIR="+env.dataDir)
		return c
	}
	c.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + r.home, "XDG_RUNTIME_DIR=" + filepath.Join(r.home, "xdg"), "XDG_DATA_HOME=" + filepath.Join(r.home, "data")}
	c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: r.uid, Gid: r.gid}}
	c.Dir = r.home
	return c
}

func (r runner) String() string {
	if r.rootless {
		return "rootless"
	}
	return "root"
}

// stateRoot is where this runner's safe-run keeps its state.
func (r runner) stateRoot() string {
	if r.rootless {
		return filepath.Join(r.home, "xdg", "safe-run")
	}
	return env.stateDir
}

func (r runner) dataRoot() string {
	if r.rootless {
		return filepath.Join(r.home, "data", "safe-run")
	}
	return env.dataDir
}

var rootlessOnce struct {
	sync.Once
	r   runner
	err string
}

// rootlessRunner is the rootless user's runner, or skips t with the
// reason the host cannot run one.
func rootlessRunner(t *testing.T) runner {
	t.Helper()
	testenv.RequireTool(t, "newuidmap")
	rootlessOnce.Do(func() {
		uid, gid := testenv.EnsureUser(t, testenv.RootlessUser)
		home := filepath.Join(env.dir, "rootless")
		for _, d := range []string{home, filepath.Join(home, "xdg"), filepath.Join(home, "data")} {
			os.MkdirAll(d, 0o700)
			os.Chown(d, int(uid), int(gid))
		}
		rootlessOnce.r = runner{rootless: true, home: home, uid: uid, gid: gid}
	})
	return rootlessOnce.r
}

// rootlessWaiver acknowledges running without limits where the host's
// controllers are cgroup v1, which cannot be delegated to a user.
const rootlessWaiver = "\n[insecure]\nreason = \"cgroup v1 host: limits cannot be delegated\"\nallow = [\"no_resource_limits\"]\n"

// manifest writes the manifest of service svc for r: the example rootfs,
// the script as its command, extra TOML, default limits.
func (r runner) manifest(t testing.TB, svc, script, extra string) string {
	t.Helper()
	env.mu.Lock()
	if r.rootless {
		env.rlNames[svc] = true
	} else {
		env.names[svc] = true
	}
	env.mu.Unlock()
	text := fmt.Sprintf("version = 1\nname = %q\n\n[image]\nrootfs = %q\n\n[process]\ncommand = [\"/bin/sh\", \"-c\", %q]\n%s\n", svc, env.rootfs, script, extra)
	if !strings.Contains(extra, "[resources]") {
		text += "\n[resources]\nmemory = \"64M\"\ncpus = 1.0\npids = 64\n"
	}
	dir := filepath.Join(env.dir, "manifests")
	if r.rootless {
		text += rootlessWaiver
		dir = r.home
	}
	p := filepath.Join(dir, svc+".toml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// bridged is the [network] of a bridge service publishing port on
// 127.0.0.1 to its port 80, on network bridge ("" = its own).
func bridged(t testing.TB, svc, bridge string, port int) string {
	b := bridge
	if b == "" {
		b = "_" + svc
	}
	env.mu.Lock()
	env.bridges[b] = true
	env.mu.Unlock()
	s := "\n[network]\nmode = \"bridge\"\n"
	if bridge != "" {
		s += fmt.Sprintf("bridge = %q\n", bridge)
	}
	if port != 0 {
		s += fmt.Sprintf("ports = [\"127.0.0.1:%d:80\"]\n", port)
	}
	return s
}

// result is how one run of safe-run ended.
type result struct {
	code           int
	stdout, stderr string
	took           time.Duration
}

// run runs safe-run with args and waits, up to a generous minute.
func (r runner) run(args ...string) result {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := r.cmd(ctx, args...)
	var out, errOut bytes.Buffer
	c.Stdout, c.Stderr = &out, &errOut
	start := time.Now()
	err := c.Run()
	res := result{code: exitCode(err), stdout: out.String(), stderr: errOut.String(), took: time.Since(start)}
	return res
}

func exitCode(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// background is a safe-run running a service whose first line is "up".
type background struct {
	name   string
	cmd    *exec.Cmd
	stdout *bufio.Reader
	stderr *testenv.Buffer
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// startBackground starts r's safe-run on manifest and waits for "up"
// (a minute at most).
func (r runner) startBackground(t testing.TB, svc, manifest string, args ...string) *background {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	c := r.cmd(ctx, append(args, manifest)...)
	b := &background{name: svc, cmd: c, stderr: &testenv.Buffer{}, cancel: cancel, done: make(chan struct{})}
	c.Stderr = b.stderr
	out, _ := c.StdoutPipe()
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		b.err = c.Wait()
		close(b.done)
	}()
	t.Cleanup(func() {
		c.Process.Signal(syscall.SIGKILL)
		<-b.done
		cancel()
	})
	b.stdout = bufio.NewReader(out)
	line := make(chan string, 1)
	go func() {
		l, _ := b.stdout.ReadString('\n')
		line <- l
	}()
	select {
	case l := <-line:
		if l != "up\n" {
			<-b.done
			t.Fatalf("%s did not start: %q, exit %d\n%s", svc, l, exitCode(b.err), b.stderr)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("%s not up within a minute:\n%s", svc, b.stderr)
	}
	return b
}

// stop sends SIGTERM and waits for safe-run's exit code.
func (b *background) stop() int {
	b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.done:
	case <-time.After(60 * time.Second):
		b.cmd.Process.Signal(syscall.SIGKILL)
		<-b.done
	}
	return exitCode(b.err)
}

// percentiles of ds: p50, p90, p99, max.
func percentiles(ds []time.Duration) (p50, p90, p99, top time.Duration) {
	if len(ds) == 0 {
		return
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(q float64) time.Duration {
		i := int(q*float64(len(s))+0.5) - 1
		return s[min(max(i, 0), len(s)-1)]
	}
	return at(0.5), at(0.9), at(0.99), s[len(s)-1]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

// --- what a run may leave behind ---

type link struct {
	name, master, kind string
}

// links are the host's sv-* and sr-* links.
func links() []link {
	out, err := exec.Command("ip", "-j", "-d", "link", "show").Output()
	if err != nil {
		return nil
	}
	var all []struct {
		Name     string `json:"ifname"`
		Master   string `json:"master"`
		LinkInfo struct {
			Kind string `json:"info_kind"`
		} `json:"linkinfo"`
	}
	json.Unmarshal(out, &all)
	var ls []link
	for _, l := range all {
		if strings.HasPrefix(l.Name, "sv-") || strings.HasPrefix(l.Name, "sr-") {
			ls = append(ls, link{l.Name, l.Master, l.LinkInfo.Kind})
		}
	}
	return ls
}

func shortHash(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(h[:])
}

// netDir is the network state root of the root services (plan.NetworkDir).
func netDir() string { return filepath.Join(env.stateDir, "net") }

// ourTable is the nftables table of netDir (network's stateRoot.table:
// any state root but the default gets its own).
func ourTable() string { return "safe_run_" + shortHash(filepath.Clean(netDir()))[:8] }

// ourBridgeIf is the interface of bridge network name (stateRoot.bridgeIfname).
func ourBridgeIf(bridge string) string {
	return "sr-" + shortHash(filepath.Clean(netDir()), bridge)[:10]
}

// leaks lists everything this run's services left on the host. It waits
// up to 10 s for janitors still at work, then reports what stays.
func leaks(t testing.TB) []string {
	t.Helper()
	var left []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if left = leaksNow(); len(left) == 0 || time.Now().After(deadline) {
			return left
		}
	}
}

func leaksNow() []string {
	var left []string
	add := func(format string, args ...any) { left = append(left, fmt.Sprintf(format, args...)) }
	// Cgroups: every v1 controller's and the unified hierarchy, at any
	// depth a parent may put them.
	for _, p := range cgroupsOf("safe-run-" + env.prefix) {
		add("cgroup %s", p)
	}
	// Mounts of the host's namespace naming this run's directories.
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(mounts), "\n") {
		if strings.Contains(line, env.dir) {
			add("mount %s", line)
		}
	}
	// Network namespaces: safe-run's own bind mounts, and ip netns.
	for _, root := range []string{netDir(), filepath.Join(env.dir, "rootless", "xdg", "safe-run", "net")} {
		ents, _ := os.ReadDir(filepath.Join(root, "netns"))
		for _, e := range ents {
			add("network namespace %s", filepath.Join(root, "netns", e.Name()))
		}
		files, _ := os.ReadDir(filepath.Join(root, "files"))
		for _, e := range files {
			add("network files %s", filepath.Join(root, "files", e.Name()))
		}
		// Leases: a bridge's directory stays only while it has members, a subnet's
		// claim only while its bridge does.
		bridges, _ := os.ReadDir(filepath.Join(root, "bridges"))
		for _, e := range bridges {
			var leases []string
			filepath.WalkDir(filepath.Join(root, "bridges", e.Name()), func(p string, d fs.DirEntry, err error) error {
				if err == nil && !d.IsDir() {
					b, _ := os.ReadFile(p)
					leases = append(leases, d.Name()+": "+strings.Join(strings.Fields(string(b)), " "))
				}
				return nil
			})
			add("bridge state (leases) %s: %s", e.Name(), strings.Join(leases, "; "))
		}
		subnets, _ := os.ReadDir(filepath.Join(root, "subnets"))
		for _, e := range subnets {
			owner, _ := os.Readlink(filepath.Join(root, "subnets", e.Name()))
			add("subnet claim %s -> %s", e.Name(), owner)
		}
	}
	if out, err := exec.Command("ip", "netns", "list").Output(); err == nil && strings.Contains(string(out), env.prefix) {
		add("ip netns: %s", out)
	}
	// Links: this run's bridges, and veths on them.
	env.mu.Lock()
	ours := map[string]bool{}
	for b := range env.bridges {
		ours[ourBridgeIf(b)] = true
	}
	env.mu.Unlock()
	for _, l := range links() {
		switch {
		case ours[l.name]:
			add("bridge %s", l.name)
		case strings.HasPrefix(l.name, "sv-") && ours[l.master]:
			add("veth %s on %s", l.name, l.master)
		}
	}
	// nftables: the tables of this run's state root (ip, ip6, bridge) go
	// with its last bridge service.
	if out, err := exec.Command("nft", "list", "tables").Output(); err == nil {
		for _, l := range strings.Split(string(out), "\n") {
			if f := strings.Fields(l); len(f) == 3 && f[2] == ourTable() {
				add("nftables table %s %s", f[1], ourTable())
			}
		}
	}
	// State and lock files: nothing but the network root's skeleton.
	for _, root := range []string{env.stateDir, filepath.Join(env.dir, "rootless", "xdg", "safe-run")} {
		ents, _ := os.ReadDir(root)
		for _, e := range ents {
			if e.Name() != "net" {
				add("state %s", filepath.Join(root, e.Name()))
			}
		}
	}
	ents, _ := os.ReadDir(netDir())
	for _, e := range ents {
		if !slices.Contains([]string{"lock", "bridges", "netns", "files", "subnets"}, e.Name()) {
			add("network state %s", filepath.Join(netDir(), e.Name()))
		}
	}
	// Temporary files: the image cache's work area, and any half-written
	// file (atomicfile's .tmp-*) in the data directories.
	for _, root := range []string{env.dataDir, filepath.Join(env.dir, "rootless", "data", "safe-run")} {
		tmp, _ := os.ReadDir(filepath.Join(root, "images", "tmp"))
		for _, e := range tmp {
			add("image cache temporary %s", filepath.Join(root, "images", "tmp", e.Name()))
		}
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && strings.HasPrefix(d.Name(), ".tmp-") {
				add("temporary file %s", p)
			}
			return nil
		})
		cont, _ := os.ReadDir(filepath.Join(root, "containers"))
		for _, e := range cont {
			add("container dir %s", filepath.Join(root, "containers", e.Name()))
		}
	}
	// Processes: safe-run's, pasta and whatever ran in a service of ours.
	for _, p := range ourProcesses() {
		add("process %s", p)
	}
	return left
}

// cgroupsOf finds cgroup directories whose name starts with prefix.
func cgroupsOf(prefix string) []string {
	var found []string
	_ = filepath.WalkDir("/sys/fs/cgroup", func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		if strings.HasPrefix(d.Name(), prefix) {
			found = append(found, p)
			return filepath.SkipDir
		}
		if strings.Count(p, "/") > 8 {
			return filepath.SkipDir
		}
		return nil
	})
	return found
}

// ourProcesses are the live processes of this run: those whose command
// line names its directory (safe-run, its janitor, pasta of the rootless
// services) or that sit in one of its cgroups.
func ourProcesses() []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	self := strconv.Itoa(os.Getpid())
	for _, e := range ents {
		pid := e.Name()
		if _, err := strconv.Atoi(pid); err != nil || pid == self {
			continue
		}
		stat, _ := os.ReadFile("/proc/" + pid + "/stat")
		if i := bytes.LastIndexByte(stat, ')'); i > 0 && len(stat) > i+2 && stat[i+2] == 'Z' {
			continue
		}
		cmdline := testenv.Cmdline(pid)
		cg, _ := os.ReadFile("/proc/" + pid + "/cgroup")
		if strings.Contains(cmdline, env.dir) || strings.Contains(string(cg), "safe-run-"+env.prefix) {
			out = append(out, pid+" "+cmdline)
		}
	}
	return out
}

// checkIDs: the ids' records (ids/services) hold exactly the names of
// the services started, each range's claim (ids/ranges) names its
// service, and no other range is claimed.
func checkIDs(t *testing.T, r runner) {
	t.Helper()
	dir := filepath.Join(r.dataRoot(), "ids")
	records, err := os.ReadDir(filepath.Join(dir, "services"))
	if r.rootless && errors.Is(err, fs.ErrNotExist) {
		// Rootless, the user's own subordinate ids are the range:
		// nothing is allotted, nothing recorded.
		return
	}
	if err != nil {
		t.Errorf("ids: %v", err)
		return
	}
	ids := map[string]struct{ UID, GID, Size uint32 }{}
	for _, e := range records {
		path := filepath.Join(dir, "services", e.Name())
		var rec struct {
			Service        string
			UID, GID, Size uint32
		}
		b, err := os.ReadFile(path)
		if err == nil {
			err = json.Unmarshal(b, &rec)
		}
		if err == nil && rec.Service != e.Name() {
			err = fmt.Errorf("it names %s", rec.Service)
		}
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		claim := filepath.Join(dir, "ranges", strconv.FormatUint(uint64(rec.UID), 10))
		if owner, err := os.Readlink(claim); owner != e.Name() {
			t.Errorf("%s: the claim %s names %q (%v)", path, claim, owner, err)
		}
		ids[e.Name()] = struct{ UID, GID, Size uint32 }{rec.UID, rec.GID, rec.Size}
	}
	if claims, _ := os.ReadDir(filepath.Join(dir, "ranges")); len(claims) != len(records) {
		t.Errorf("%s ids: %d ranges claimed for %d services", r, len(claims), len(records))
	}
	env.mu.Lock()
	want := env.names
	if r.rootless {
		want = env.rlNames
	}
	var missing, extra []string
	for n := range want {
		if _, ok := ids[n]; !ok {
			missing = append(missing, n)
		}
	}
	env.mu.Unlock()
	for n := range ids {
		if !want[n] {
			extra = append(extra, n)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing)+len(extra) > 0 {
		t.Errorf("%s ids: missing %v, not ours %v", r, missing, extra)
	}
	// No two services on one id range.
	type rng struct {
		name     string
		lo, size uint32
	}
	var rs []rng
	for n, id := range ids {
		rs = append(rs, rng{n, id.UID, id.Size})
	}
	sort.Slice(rs, func(i, k int) bool { return rs[i].lo < rs[k].lo })
	for i := 1; i < len(rs); i++ {
		if rs[i-1].lo+rs[i-1].size > rs[i].lo {
			t.Errorf("%s ids: %s and %s overlap", r, rs[i-1].name, rs[i].name)
		}
	}
}

// assertNoLeaks fails t with whatever the run left, and records the count.
func assertNoLeaks(t *testing.T, phase string) int {
	t.Helper()
	left := leaks(t)
	for _, l := range left {
		t.Errorf("%s left: %s", phase, l)
	}
	return len(left)
}

// status reads a running service's status file.
func status(r runner, svc string) (*ops.Status, error) {
	return ops.ReadStatus(filepath.Join(r.stateRoot(), svc))
}

// readAll drains r in the background, so a service never blocks on a
// full pipe.
func drain(r io.Reader) { go io.Copy(io.Discard, r) }

// TestNothingLeftAtTheEnd runs after every other test of the package (go
// test runs files in name order, and this file sorts last): nothing of
// any service is left, and the ids' records hold exactly the names started.
func TestNothingLeftAtTheEnd(t *testing.T) {
	setup(t)
	left := assertNoLeaks(t, "the soak")
	checkIDs(t, root)
	if rootlessOnce.r.rootless {
		checkIDs(t, rootlessOnce.r)
	}
	env.mu.Lock()
	names, rl := len(env.names), len(env.rlNames)
	env.mu.Unlock()
	record("| at the end: ids | %d root + %d rootless names | %d | exactly the services started, no two ranges overlap |", names, rl, left)
}
