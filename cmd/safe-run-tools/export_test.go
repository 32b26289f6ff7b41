package main

import (
	"bytes"
	"strings"
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
