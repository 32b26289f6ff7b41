package example_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/safe-run/safe-run/internal/testenv"
)

// The packages of each service's root filesystem, as `make images` builds
// them: the same list is the same cache entry.
var (
	nginxPackages = []string{"nginx", "busybox"}
	redisPackages = []string{"redis-server"}
)

// TestServices runs the Debian examples through bin/safe-run with their own
// manifests, hardening and all, changing only the root filesystem (the
// cache's), the command, and the network's names (a bridge and a published
// port of the test's own, so that a shop the user runs meets no collision):
// a script that starts the service in the background, asks it from inside
// the container, checks it is still up a moment later, and stops it.
// example/network_test.go asks them from outside.
func TestServices(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.Long(t)
	// Not t.TempDir: its parent is 0700, and every component must be
	// traversable by a container's mapped root.
	dir, err := os.MkdirTemp("", "safe-run-services-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	for _, d := range []string{dir, filepath.Join(dir, "state"), filepath.Join(dir, "data")} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	bins, err := testenv.Build(dir)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		packages []string
		script   string
		want     []string // lines the script must print
	}{{
		name:     "nginx",
		packages: nginxPackages,
		script: `nginx -e stderr -g 'daemon off;' & pid=$!
for i in $(seq 100); do
	page=$(busybox wget -q -O - http://127.0.0.1/ 2>&1) && break
	sleep 0.1
done
echo "$page"
busybox wget -q -O - http://127.0.0.1/missing 2>&1 | grep -q '404' && echo "missing: 404"
sleep 1
kill -0 $pid && echo "still up"
kill -QUIT $pid; wait $pid; echo "exit $?"`,
		want: []string{"<p>Hello from nginx under safe-run.</p>", "missing: 404", "still up", "exit 0"},
	}, {
		name:     "redis",
		packages: redisPackages,
		script: `redis-server --protected-mode no --bind 0.0.0.0 --port 6379 --save '' --appendonly no --dir /var/lib/redis --logfile '' & pid=$!
for i in $(seq 100); do
	pong=$(redis-cli -h 127.0.0.1 ping 2>&1) && [ "$pong" = PONG ] && break
	sleep 0.1
done
echo "$pong"
redis-cli set greeting "hello from redis" >/dev/null
echo "get: $(redis-cli get greeting)"
sleep 1
kill -0 $pid && echo "still up"
kill -TERM $pid; wait $pid; echo "exit $?"`,
		want: []string{"PONG", "get: hello from redis", "still up", "exit 0"},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rootfs := testenv.DebianRootfs(t, tc.name, tc.packages...)
			manifest := exampleManifest(t, dir, tc.name, rootfs, tc.script, uniqueNetwork(t, fmt.Sprintf("svc%d", os.Getpid()))...)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bins.SafeRun, manifest)
			cmd.Env = append(os.Environ(), "SAFE_RUN_STATE_DIR="+filepath.Join(dir, "state"), "SAFE_RUN_DATA_DIR="+filepath.Join(dir, "data"))
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			start := time.Now()
			if err := cmd.Run(); err != nil {
				t.Fatalf("safe-run %s: %v\nstdout:\n%s\nstderr:\n%s", manifest, err, out.String(), errb.String())
			}
			t.Logf("%s: ran in %s:\n%s", tc.name, time.Since(start).Round(time.Millisecond), out.String())
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			for _, w := range tc.want {
				if !contains(lines, w) {
					t.Errorf("the script did not print %q\nstdout:\n%s\nstderr:\n%s", w, out.String(), errb.String())
				}
			}
		})
	}
}

// edit is one change exampleManifest makes to an example's manifest: every
// match of re becomes repl; a required edit that matches nothing fails the
// test, since the example and the test no longer agree.
type edit struct {
	re, repl string
	optional bool
}

// uniqueNetwork moves an example off its bridge "shop" to bridge, and its
// published host ports to free ones.
func uniqueNetwork(t *testing.T, bridge string) []edit {
	return []edit{
		{`(?m)^bridge = "shop"`, fmt.Sprintf("bridge = %q", bridge), false},
		{`(?m)^ports = \["8080:80"\]`, fmt.Sprintf(`ports = ["%d:80"]`, testenv.FreePort(t)), true},
	}
}

// exampleManifest writes example/NAME/service.toml into dir/NAME with its
// rootfs set to rootfs, its relative bind sources made absolute, its
// command replaced by a shell script ("": kept) and edits made.
func exampleManifest(t *testing.T, dir, name, rootfs, script string, edits ...edit) string {
	t.Helper()
	src, err := filepath.Abs(name)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(src, "service.toml"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	all := []edit{
		{`(?m)^rootfs = "(\.\./redis/)?rootfs"`, fmt.Sprintf("rootfs = %q", rootfs), false},
		{`(?m)^source = "\./`, `source = "` + src + `/`, true},
	}
	if script != "" {
		// The command: one line, or several up to the closing bracket.
		all = append(all, edit{`(?ms)^command = \[.*?\]$`, fmt.Sprintf("command = [\"/bin/sh\", \"-c\", %q]", script), false})
	}
	for _, r := range append(all, edits...) {
		re := regexp.MustCompile(r.re)
		if !re.MatchString(text) && !r.optional {
			t.Fatalf("example/%s/service.toml: no line matches %s (keep the test in step with the example)", name, r.re)
		}
		text = re.ReplaceAllLiteralString(text, r.repl)
	}
	d := filepath.Join(dir, name)
	if err := os.MkdirAll(d, 0o711); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(d, "service.toml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func contains(lines []string, s string) bool {
	for _, l := range lines {
		if strings.TrimSpace(l) == s {
			return true
		}
	}
	return false
}

// TestMkrootfsUnreachable: where the archive cannot be reached,
// mkrootfs.sh exits 3 (DebianRootfs skips on it outside CI) and leaves no
// cache entry. The mirror is a closed port on loopback.
func TestMkrootfsUnreachable(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "mmdebstrap")
	cache := t.TempDir()
	cmd := exec.Command("./debian/mkrootfs.sh", "unreachable", "hello")
	cmd.Env = append(os.Environ(), "SAFE_RUN_ROOTFS_CACHE="+cache, "MIRROR=http://127.0.0.1:9/debian/")
	out, err := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != 3 {
		t.Fatalf("mkrootfs.sh with an unreachable mirror: exit %d (%v), want 3\n%s", code, err, out)
	}
	if !strings.Contains(string(out), "cannot reach the Debian archive at http://127.0.0.1:9/debian/") {
		t.Errorf("mkrootfs.sh does not say what it could not reach:\n%s", out)
	}
	entries, err := os.ReadDir(cache)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".lock") {
			t.Errorf("left in the cache: %s", e.Name())
		}
	}
}
