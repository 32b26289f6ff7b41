package export

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v3"

	"github.com/safe-run/safe-run/importer"
	"github.com/safe-run/safe-run/manifest"
)

// loadCompose loads a compose file the way docker compose v2 does
// (compose-go: Compose Specification JSON schema, interpolation,
// normalisation), with the image ID a rootfs export asks for.
func loadCompose(t *testing.T, text []byte) (*types.Project, error) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "compose.yaml")
	if err := os.WriteFile(path, text, 0o644); err != nil {
		t.Fatal(err)
	}
	return loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  dir,
		ConfigFiles: []types.ConfigFile{{Filename: path, Content: text}},
		Environment: types.Mapping{"IMAGE": "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
	}, func(o *loader.Options) { o.SetProjectName("test", true) })
}

func TestComposeSchema(t *testing.T) {
	// The loader is strict: a key the specification lacks is an error.
	if _, err := loadCompose(t, []byte("services:\n  x:\n    image: busybox\n    read_only_rootfs: true\n")); err == nil {
		t.Fatal("compose-go accepted an unknown key; the schema check below would prove nothing")
	}
	for _, m := range manifests {
		t.Run(m, func(t *testing.T) {
			out, err := Compose(prepare(t, m), goldenOpts)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := loadCompose(t, out.Text); err != nil {
				t.Fatalf("compose-go refuses the export: %v\n%s", err, out.Text)
			}
		})
	}
}

// TestComposeHardened checks the hardened service as compose-go reads it.
func TestComposeHardened(t *testing.T) {
	out, err := Compose(prepare(t, "hardened"), goldenOpts)
	if err != nil {
		t.Fatal(err)
	}
	p, err := loadCompose(t, out.Text)
	if err != nil {
		t.Fatal(err)
	}
	s, err := p.GetService("web")
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string, got, want any) {
		t.Helper()
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(want)
		if string(g) != string(w) {
			t.Errorf("%s = %s, want %s", what, g, w)
		}
	}
	yes := true
	grace := types.Duration(20 * time.Second)
	check("read_only", s.ReadOnly, true)
	check("cap_drop", s.CapDrop, []string{"ALL"})
	check("cap_add", s.CapAdd, []string{"NET_BIND_SERVICE"})
	check("security_opt", s.SecurityOpt, []string{"no-new-privileges:true", "seccomp:/export/web.seccomp.json", "apparmor:safe-run-web"})
	check("mem_limit", s.MemLimit, types.UnitBytes(256<<20))
	check("memswap_limit", s.MemSwapLimit, types.UnitBytes(256<<20))
	check("mem_reservation", s.MemReservation, types.UnitBytes(128<<20))
	check("cpu_period", s.CPUPeriod, int64(5000))
	check("cpu_quota", s.CPUQuota, int64(7500))
	check("pids_limit", s.PidsLimit, int64(128))
	check("network_mode", s.NetworkMode, "none")
	check("tmpfs", s.Tmpfs, types.StringList{"/tmp:nosuid,nodev,noexec,mode=1777,size=67108864"})
	check("init", s.Init, &yes)
	check("user", s.User, "1000:1000")
	check("working_dir", s.WorkingDir, "/srv")
	check("stop_signal", s.StopSignal, "SIGINT")
	check("stop_grace_period", s.StopGracePeriod, &grace)
	check("restart", s.Restart, "always")
	check("entrypoint", s.Entrypoint, types.ShellCommand{"/bin/server", "--port", "80"})
	check("ulimits.core", s.Ulimits["core"], &types.UlimitsConfig{Single: 0})
	check("ulimits.nofile", s.Ulimits["nofile"], &types.UlimitsConfig{Soft: 1024, Hard: 65536})
	check("secrets", len(s.Secrets), 1)
	check("volumes", len(s.Volumes), 3)
	check("volume", s.Volumes[0].Type+" "+s.Volumes[0].Source+" "+s.Volumes[0].Target, "volume web-data /var/lib/web")
	check("bind", s.Volumes[1].ReadOnly, true)
	check("label", s.Labels["org.opencontainers.image.source"], "https://example.org/web")
	check("image", s.Image, "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
}

// writeTestManifest writes a manifest into a new directory and returns its
// path; "$ROOTFS" in text stands for testdata's root filesystem.
func writeTestManifest(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "m.toml")
	text = strings.ReplaceAll(text, "$ROOTFS", filepath.Join(testdata, "rootfs"))
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestComposeDollar: compose interpolates $VAR and ${VAR} in every value
// of the file, so each $ of the manifest is written $$, compose's literal
// dollar. Read back by compose-go with those variables set, and by our
// own compose importer (compose-go's interpolation again), the values are
// the manifest's, not the variables of whoever runs compose.
func TestComposeDollar(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "conf$x")
	if err := os.Mkdir(conf, 0o755); err != nil {
		t.Fatal(err)
	}
	path := writeTestManifest(t, `version = 1
name = "dollar"
[image]
rootfs = "$ROOTFS"
[process]
command = ["/bin/sh", "-c", "echo $HOME pid=$$ ${PATH} $"]
env = { PASS = "pa$word", "K$EY" = "${X:-y}" }
user = "1000:1000"
workdir = "/srv/$x"
[resources]
memory = "64M"
cpus = 0.5
[[mounts]]
type = "bind"
source = "`+conf+`"
target = "/etc/$x"
[[mounts]]
type = "tmpfs"
target = "/run/$x"
[labels]
"la$bel" = "a$b"
`)
	out, err := Compose(prepareFile(t, path), goldenOpts)
	if err != nil {
		t.Fatal(err)
	}
	wantCmd := []string{"/bin/sh", "-c", "echo $HOME pid=$$ ${PATH} $"}
	wantEnv := map[string]string{"PASS": "pa$word", "K$EY": "${X:-y}"}

	// The YAML as written.
	var raw struct {
		Services map[string]struct {
			Entrypoint  []string          `yaml:"entrypoint"`
			Environment map[string]string `yaml:"environment"`
			Labels      map[string]string `yaml:"labels"`
			WorkingDir  string            `yaml:"working_dir"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(out.Text, &raw); err != nil {
		t.Fatal(err)
	}
	svc := raw.Services["dollar"]
	if got, want := svc.Entrypoint, []string{"/bin/sh", "-c", "echo $$HOME pid=$$$$ $${PATH} $$"}; !slices.Equal(got, want) {
		t.Errorf("entrypoint written %q, want %q", got, want)
	}
	if got := svc.Environment["PASS"]; got != "pa$$word" {
		t.Errorf("PASS written %q, want pa$$word", got)
	}
	if got := svc.Environment["K$EY"]; got != "$${X:-y}" {
		t.Errorf("K$EY (keys are not interpolated) written %q, want $${X:-y}", got)
	}
	if got := svc.Labels["la$bel"]; got != "a$$b" {
		t.Errorf("label written %q, want a$$b", got)
	}
	if got := svc.WorkingDir; got != "/srv/$$x" {
		t.Errorf("working_dir written %q, want /srv/$$x", got)
	}

	// As docker compose reads it.
	p, err := loadCompose(t, out.Text)
	if err != nil {
		t.Fatalf("compose-go refuses the export: %v\n%s", err, out.Text)
	}
	s, err := p.GetService("dollar")
	if err != nil {
		t.Fatal(err)
	}
	if got := []string(s.Entrypoint); !slices.Equal(got, wantCmd) {
		t.Errorf("compose runs %q, want %q", got, wantCmd)
	}
	for k, v := range wantEnv {
		if got := s.Environment[k]; got == nil || *got != v {
			t.Errorf("compose sets %s=%q, want %q", k, s.Environment.ToMapping()[k], v)
		}
	}
	if got := s.Labels["la$bel"]; got != "a$b" {
		t.Errorf("compose labels la$bel=%q, want a$b", got)
	}
	if s.WorkingDir != "/srv/$x" {
		t.Errorf("compose working_dir %q, want /srv/$x", s.WorkingDir)
	}
	if len(s.Volumes) != 1 || s.Volumes[0].Source != conf || s.Volumes[0].Target != "/etc/$x" {
		t.Errorf("compose volumes %+v, want %s at /etc/$x", s.Volumes, conf)
	}
	if s.Image != "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" {
		t.Errorf("compose image %q: ${IMAGE} must stay a variable", s.Image)
	}

	// Round trip through safe-run's own compose importer. The labels
	// safe-run records about the service are reserved in a manifest, so
	// they are left out of what is imported.
	var doc map[string]any
	if err := yaml.Unmarshal(out.Text, &doc); err != nil {
		t.Fatal(err)
	}
	labels := doc["services"].(map[string]any)["dollar"].(map[string]any)["labels"].(map[string]any)
	for k := range labels {
		if strings.HasPrefix(k, manifest.ReservedLabelPrefix) {
			delete(labels, k)
		}
	}
	text, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	res, err := importer.Compose(text, "compose.yaml", importer.Options{LookupEnv: func(name string) (string, bool) {
		if name == "IMAGE" {
			return "registry.example/dollar@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", true
		}
		return "INJECTED", true
	}})
	if err != nil {
		t.Fatalf("importing the export: %v\n%s", err, text)
	}
	back, err := manifest.Parse("back.toml", dir, res[0].Manifest)
	if err != nil {
		t.Fatalf("the imported manifest: %v\n%s", err, res[0].Manifest)
	}
	if !slices.Equal(back.Process.Command, wantCmd) {
		t.Errorf("imported command %q, want %q", back.Process.Command, wantCmd)
	}
	for k, v := range wantEnv {
		if back.Process.Env[k] != v {
			t.Errorf("imported env %s=%q, want %q", k, back.Process.Env[k], v)
		}
	}
	if back.Labels["la$bel"] != "a$b" {
		t.Errorf("imported labels %v, want la$bel=a$b", back.Labels)
	}
}
