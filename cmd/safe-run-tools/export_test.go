package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/safe-run/safe-run/internal/cli"
)

func TestExportCommand(t *testing.T) {
	t.Setenv("SAFE_RUN_STATE_DIR", t.TempDir())
	t.Setenv("SAFE_RUN_DATA_DIR", t.TempDir())
	manifest := "../../export/testdata/hardened.toml"
	for _, tc := range []struct {
		args []string
		want string // in standard output
	}{
		{[]string{"export", "systemd", manifest, "--safe-run", "/usr/bin/safe-run"}, "\nExecStart=/usr/bin/safe-run run "},
		{[]string{"export", "docker", manifest}, "\nexec docker run \\\n"},
		{[]string{"export", "compose", manifest}, "\nservices:\n  web:\n"},
		{[]string{"export", "kubernetes", manifest}, "\nkind: Pod\n"},
		{[]string{"export", "kubernetes", "--kind", "deployment", manifest}, "\nkind: Deployment\n"},
	} {
		t.Run(strings.Join(tc.args[1:len(tc.args)-1], " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := append(tc.args, "--dir", t.TempDir())
			if code := run(args, nil, &stdout, &stderr); code != 0 {
				t.Fatalf("exit %d: %s", code, stderr.String())
			}
			if !strings.Contains(stdout.String(), tc.want) {
				t.Errorf("output lacks %q:\n%s", tc.want, stdout.String())
			}
		})
	}
}

func TestExportCommandErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"export", "podman", "../../export/testdata/hardened.toml"}, "safe-run: unknown export target \"podman\" (use one of systemd, docker, compose, kubernetes)\n"},
		{[]string{"export", "docker"}, "safe-run: missing arguments (usage: safe-run export {systemd|docker|compose|kubernetes} SERVICE.toml [flags]; see safe-run export --help)\n"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(tc.args, nil, &stdout, &stderr); code != cli.ExitFailed {
			t.Errorf("%v: exit %d, want %d", tc.args, code, cli.ExitFailed)
		}
		if stderr.String() != tc.want {
			t.Errorf("%v: stderr %q, want %q", tc.args, stderr.String(), tc.want)
		}
	}
}

// TestExportWarnsOnStderr: what an export confines less than safe-run is
// said in the output and repeated on standard error, as export --help
// promises: here the egress list docker cannot enforce and Landlock,
// which no target but systemd carries.
func TestExportWarnsOnStderr(t *testing.T) {
	t.Setenv("SAFE_RUN_STATE_DIR", t.TempDir())
	t.Setenv("SAFE_RUN_DATA_DIR", t.TempDir())
	for _, tc := range []struct {
		target string
		want   []string
	}{
		{"docker", []string{"warning: egress: docker cannot limit outbound connections", "warning: Landlock:", "warning: user namespace:", "warning: ports:"}},
		{"compose", []string{"warning: egress: docker cannot limit outbound connections", "warning: Landlock:", "warning: user namespace:"}},
		{"kubernetes", []string{"warning: Landlock:", "warning: NetworkPolicy: egress to host names", "warning: Service: ClusterIP"}},
	} {
		t.Run(tc.target, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := []string{"export", tc.target, "../../export/testdata/bridged.toml", "--dir", t.TempDir()}
			if code := run(args, nil, &stdout, &stderr); code != 0 {
				t.Fatalf("exit %d: %s", code, stderr.String())
			}
			for _, w := range tc.want {
				line := "safe-run: export " + tc.target + ": " + w
				if !strings.Contains(stderr.String(), line) {
					t.Errorf("stderr lacks %q:\n%s", line, stderr.String())
				}
				if !strings.Contains(stdout.String(), "# WARNING: "+strings.TrimPrefix(w, "warning: ")) {
					t.Errorf("the output lacks the comment %q", w)
				}
			}
		})
	}
}

// TestExportPullsNothing: an export is for another machine; it must not
// need the network. A manifest whose image.ref this host has not cached
// exports with the ref as the image and the image's own user, command and
// working directory; the registry (here one on loopback that counts its
// requests) is never asked.
func TestExportPullsNothing(t *testing.T) {
	t.Setenv("SAFE_RUN_STATE_DIR", t.TempDir())
	t.Setenv("SAFE_RUN_DATA_DIR", t.TempDir())
	var requests atomic.Int64
	reg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		http.NotFound(w, r)
	}))
	defer reg.Close()
	ref := strings.TrimPrefix(reg.URL, "http://") + "/web@sha256:" + strings.Repeat("ab", 32)
	path := filepath.Join(t.TempDir(), "web.toml")
	text := "version = 1\nname = \"web\"\n[image]\nref = \"" + ref + "\"\n[resources]\nmemory = \"64M\"\ncpus = 1.0\n" +
		"[insecure]\nreason = \"a registry on loopback\"\nallow = [\"insecure_registry\"]\n"
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		target string
		want   []string // in standard output
	}{
		{"systemd", []string{"ExecStart=/usr/bin/safe-run run " + path}},
		{"docker", []string{"\n  " + ref + "\n", "# Image: not in this host's cache"}},
		{"compose", []string{"image: " + ref + "\n"}},
		{"kubernetes", []string{"image: " + ref + "\n", "runAsNonRoot: true\n"}},
	} {
		t.Run(tc.target, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := []string{"export", tc.target, path, "--dir", t.TempDir(), "--safe-run", "/usr/bin/safe-run"}
			if code := run(args, nil, &stdout, &stderr); code != 0 {
				t.Fatalf("exit %d: %s", code, stderr.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, stdout.String())
				}
			}
			// Nothing of the image's: no user, command or workdir.
			var settings strings.Builder
			for _, l := range strings.Split(stdout.String(), "\n") {
				if !strings.HasPrefix(l, "#") {
					settings.WriteString(l + "\n")
				}
			}
			for _, bad := range []string{"--user ", "--workdir", "user: ", "working_dir", "runAsUser", "workingDir", "command:", "entrypoint"} {
				if strings.Contains(settings.String(), bad) {
					t.Errorf("output sets %q, which is the image's:\n%s", bad, stdout.String())
				}
			}
		})
	}
	if n := requests.Load(); n != 0 {
		t.Errorf("the registry got %d requests", n)
	}
}

// TestExportDirMissing: an export that writes a file into a --dir that
// does not exist says so with the fix, before it prints anything.
func TestExportDirMissing(t *testing.T) {
	t.Setenv("SAFE_RUN_STATE_DIR", t.TempDir())
	t.Setenv("SAFE_RUN_DATA_DIR", t.TempDir())
	dir := filepath.Join(t.TempDir(), "srv", "web")
	var stdout, stderr bytes.Buffer
	code := run([]string{"export", "docker", "../../export/testdata/hardened.toml", "--dir", dir}, nil, &stdout, &stderr)
	want := "safe-run: --dir " + dir + ": not a directory, and the export writes web.seccomp.json there (create it: mkdir -p " + dir + "; or pass another --dir)\n"
	if code != cli.ExitFailed || stderr.String() != want || stdout.Len() > 0 {
		t.Errorf("exit %d, stdout %q, stderr %q\nwant exit %d, stderr %q", code, stdout.String(), stderr.String(), cli.ExitFailed, want)
	}
}
