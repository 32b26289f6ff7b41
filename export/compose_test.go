package export

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
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
