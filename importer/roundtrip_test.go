package importer

import (
	"io/fs"
	"strings"
	"testing"

	"github.com/safe-run/safe-run/manifest"
)

func load(t *testing.T, r *Result) *manifest.Service {
	t.Helper()
	svc, err := manifest.Parse(r.Name+".toml", "/elsewhere", r.Manifest)
	if err != nil {
		t.Fatalf("manifest does not load: %v\n%s", err, r.Manifest)
	}
	return svc
}

// TestExportRoundTrip: what safe-run's docker export writes imports back
// into the manifest's own values (found by a black-box probe: every
// export was refused for its run.safe-run.* labels, and the secret's
// bind was dropped).
func TestExportRoundTrip(t *testing.T) {
	args := []string{"--name", "web", "--read-only", "--cap-drop", "ALL",
		"--security-opt", "no-new-privileges", "--security-opt", "seccomp=/out/web.seccomp.json", "--security-opt", "apparmor=safe-run-web",
		"--memory", "100M", "--cpu-period", "5000", "--cpu-quota", "2500", "--network", "web-net", "--publish", "127.0.0.1:8080:80/tcp",
		"--mount", "type=bind,source=/etc/safe-run/db,target=/run/secrets/db_password,readonly",
		"--label", "run.safe-run.manifest=/srv/web.toml", "--label", "run.safe-run.manifest.digest=sha256:00",
		"--label", "org.example=x", "nginx@sha256:" + strings.Repeat("a", 64)}
	r, err := DockerRun(args, Options{Dir: "/srv"})
	if err != nil {
		t.Fatal(err)
	}
	svc := load(t, r)
	if svc.Labels["org.example"] != "x" || len(svc.Labels) != 1 {
		t.Errorf("labels %v, want only org.example", svc.Labels)
	}
	if got := svc.Secrets["db_password"].File; got != "/etc/safe-run/db" {
		t.Errorf("secret db_password from %q, want /etc/safe-run/db", got)
	}
	if svc.Security.AppArmor != "generated" || svc.Security.Seccomp != "default" {
		t.Errorf("apparmor %q, seccomp %q; want generated, default", svc.Security.AppArmor, svc.Security.Seccomp)
	}
	if svc.Network.Mode != manifest.NetworkBridge || svc.Network.Bridge != "" {
		t.Errorf("network %q bridge %q, want a bridge of its own", svc.Network.Mode, svc.Network.Bridge)
	}
	if svc.Resources.CPUs != 0.5 {
		t.Errorf("cpus %g, want 0.5", svc.Resources.CPUs)
	}
	if !hasNote(r, "run.safe-run.* is what safe-run records about a service itself") {
		t.Errorf("no note on the dropped labels: %+v", r.Notes)
	}

	// compose: cpu_period and cpu_quota as docker's flags; a bind at
	// /run/secrets/NAME and a secret's target become [secrets].
	rs, err := Compose([]byte(`services:
  web:
    image: nginx
    mem_limit: 64m
    cpu_period: 5000
    cpu_quota: 2500
    labels: {run.safe-run.manifest: /srv/web.toml}
    volumes: ["./pw:/run/secrets/pw:ro"]
    secrets: [{source: db, target: db_password}]
secrets:
  db: {file: ./db.txt}
`), "/srv/app/compose.yml", Options{Dir: "/srv/app"})
	if err != nil {
		t.Fatal(err)
	}
	svc = load(t, rs[0])
	if svc.Resources.CPUs != 0.5 || strings.Contains(string(rs[0].Manifest), "a guess") {
		t.Errorf("cpus %g, want 0.5 from cpu_quota/cpu_period:\n%s", svc.Resources.CPUs, rs[0].Manifest)
	}
	if svc.Secrets["pw"].File != "/srv/app/pw" || svc.Secrets["db_password"].File != "/srv/app/db.txt" {
		t.Errorf("secrets %+v, want pw from /srv/app/pw, db_password from /srv/app/db.txt", svc.Secrets)
	}
}

// TestVolumeNames: docker's anonymous volumes are named after the
// service, compose's named volumes after the project, so that two
// services never share a volume by accident (found by a black-box probe:
// two redis services both got "data").
// TestComposeDefaultNetwork: services that name no network are on the project's default one, as
// compose puts them, and reach each other by name there; before, each was written with network
// none, and a web/api/db file imported into services that could not talk (re-probe).
func TestComposeDefaultNetwork(t *testing.T) {
	rs, err := Compose([]byte(`name: shop
services:
  api: {image: x, mem_limit: 64m}
  db: {image: x, mem_limit: 64m, networks: [default]}
  web: {image: x, mem_limit: 64m, networks: [front]}
  tool: {image: x, mem_limit: 64m, network_mode: none}
`), "compose.yml", Options{Dir: "/srv/app"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range rs {
		n := load(t, r).Network
		got[r.Name] = string(n.Mode) + ":" + n.Bridge
	}
	want := map[string]string{"api": "bridge:shop_default", "db": "bridge:shop_default", "web": "bridge:front", "tool": "none:"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: network %q, want %q", k, got[k], v)
		}
	}
}

// TestComposeSharedVolume: a named volume two services mount is noted on
// both in the import's report: a safe-run volume is one service's, so
// the second to start would be refused.
func TestComposeSharedVolume(t *testing.T) {
	rs, err := Compose([]byte(`name: shop
services:
  api: {image: x, mem_limit: 64m, volumes: ["data:/data", "own:/own"]}
  worker: {image: x, mem_limit: 64m, volumes: [{type: volume, source: data, target: /work}]}
  web: {image: x, mem_limit: 64m, volumes: ["own2:/own"]}
volumes: {data: {}, own: {}, own2: {}}
`), "compose.yml", Options{Dir: "/srv/app"})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		var shared []string
		for _, n := range r.Notes {
			if strings.Contains(n.Text, "also mounted by") {
				shared = append(shared, n.Flag+": "+n.Text)
			}
		}
		want := map[string]string{"api": "volumes: shop_data: also mounted by worker:", "worker": "volumes: shop_data: also mounted by api:"}[r.Name]
		switch {
		case want == "" && len(shared) > 0:
			t.Errorf("%s: noted %v", r.Name, shared)
		case want != "" && (len(shared) != 1 || !strings.HasPrefix(shared[0], want)):
			t.Errorf("%s: notes %v, want one starting %q", r.Name, shared, want)
		}
	}
}

func TestVolumeNames(t *testing.T) {
	rs, err := Compose([]byte(`name: Shop
services:
  cache1: {image: redis, mem_limit: 64m}
  cache2: {image: redis, mem_limit: 64m, volumes: ["/scratch", "data:/data2", {type: volume, source: logs, target: /logs}, "ext:/ext", "named:/named"]}
volumes:
  data: {}
  logs: {}
  ext: {external: true}
  named: {name: fixed}
`), "compose.yml", Options{Dir: "/srv/app"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range rs {
		for _, m := range load(t, r).Mounts {
			if m.Type == manifest.MountVolume {
				got[r.Name+":"+m.Target] = m.Source
			}
		}
	}
	want := map[string]string{
		"cache1:/data": "cache1-data", "cache2:/data": "cache2-data", "cache2:/scratch": "cache2-scratch",
		"cache2:/data2": "shop_data", "cache2:/logs": "shop_logs", "cache2:/ext": "ext", "cache2:/named": "fixed",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: volume %q, want %q", k, got[k], v)
		}
	}
	// The project is the directory's name without a name: key.
	rs, err = Compose([]byte("services:\n  a: {image: x, volumes: [\"d:/d\"]}\n"), "compose.yml", Options{Dir: "/srv/My.App"})
	if err != nil {
		t.Fatal(err)
	}
	if m := load(t, rs[0]).Mounts[0]; m.Source != "myapp_d" {
		t.Errorf("volume %q, want myapp_d", m.Source)
	}
}

// TestRelativePaths: paths relative to where docker ran or to the compose
// file are written absolute, since the manifest reads its relative paths
// from wherever it is written (found by a black-box probe: import -o DIR
// compose pointed a secret at DIR/db_pw.txt).
func TestRelativePaths(t *testing.T) {
	rs, err := Compose([]byte(`services:
  web:
    image: nginx
    volumes: ["./html:/usr/share/nginx/html:ro", {type: bind, source: ../conf, target: /etc/app}]
    security_opt: ["seccomp=prof.json"]
    secrets: [pw]
secrets:
  pw: {file: db_pw.txt}
`), "/srv/app/compose.yml", Options{Dir: "/srv/app"})
	if err != nil {
		t.Fatal(err)
	}
	svc := load(t, rs[0])
	binds := map[string]string{}
	for _, m := range svc.Mounts {
		binds[m.Target] = m.Source
	}
	if binds["/usr/share/nginx/html"] != "/srv/app/html" || binds["/etc/app"] != "/srv/conf" {
		t.Errorf("binds %v, want /srv/app/html and /srv/conf", binds)
	}
	if svc.Secrets["pw"].File != "/srv/app/db_pw.txt" {
		t.Errorf("secret from %q, want /srv/app/db_pw.txt", svc.Secrets["pw"].File)
	}
	if svc.Security.Seccomp != "/srv/app/prof.json" {
		t.Errorf("seccomp %q, want /srv/app/prof.json", svc.Security.Seccomp)
	}
}

// TestComposeNameClash: two services that become one manifest name are
// refused before anything is written (found by a black-box probe: Web
// and web wrote one file, then blamed an earlier import).
func TestComposeNameClash(t *testing.T) {
	_, err := Compose([]byte("services:\n  Web: {image: nginx}\n  web: {image: nginx}\n"), "compose.yml", Options{})
	want := "compose.yml: services Web and web both become the manifest web.toml: rename one, or give it a container_name"
	if err == nil || err.Error() != want {
		t.Errorf("error %v, want %s", err, want)
	}
}

// TestComposeValues: compose's values are read as compose reads them,
// or refused naming the key; none is dropped silently (found by a
// black-box probe: privileged: "true" and ports: 80 were dropped).
func TestComposeValues(t *testing.T) {
	env := map[string]string{"P": "yes"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	tests := []struct{ name, svc, want, err string }{
		{"privileged string", `privileged: "true"`, "", "refused"},
		{"privileged yes", `privileged: "Yes"`, "", "refused"},
		{"privileged interpolated", `privileged: ${P}`, "", "refused"},
		{"read_only on", `read_only: "on"`, "", "!--read-only"},
		{"init no", `init: "no"`, "", "!--init"},
		{"tty string", `tty: "true"`, "tty = true", ""},
		{"bad boolean", `privileged: maybe`, "", `compose.yml: service web: privileged: "maybe" is not a boolean (use true or false)`},
		{"volume read_only string", `volumes: [{type: volume, source: v, target: /v, read_only: "true"}]`, "read_only = true", ""},
		{"scalar ports", `ports: "8080:80"`, `ports = ["0.0.0.0:8080:80"]`, ""},
		{"scalar port", `ports: 80`, "", "--publish 80: "},
		{"scalar volumes", `volumes: /srv/x:/x`, `source = "/srv/x"`, ""},
		{"ports mapping", `ports: {a: 80}`, "", "compose.yml: service web: ports: a list is expected, not a mapping (write e.g. ports: [...])"},
		{"aliases", `networks: {back: {aliases: [redis]}}`, "", "aliases: redis"},
		{"memory twice", "mem_limit: 1g\n    deploy: {resources: {limits: {memory: 512M}}}", "", "compose.yml: service web: deploy: resources.limits.memory 512M and mem_limit 1g differ (compose refuses distinct values too): keep one"},
		{"memory twice alike", "mem_limit: 512m\n    deploy: {resources: {limits: {memory: 512M}}}", `memory = "512M"`, ""},
		{"reservation above", "mem_limit: 64m\n    mem_reservation: 128m", "", "above memory = 64M"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := Compose([]byte("services:\n  web:\n    image: nginx\n    "+tc.svc+"\n"), "compose.yml", Options{Dir: "/srv", LookupEnv: lookup})
			if strings.HasPrefix(tc.err, "compose.yml") {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("error %v, want %s", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			r := rs[0]
			load(t, r)
			if tc.want != "" && !strings.Contains(string(r.Manifest), tc.want) {
				t.Errorf("manifest lacks %s:\n%s", tc.want, r.Manifest)
			}
			switch {
			case tc.err == "refused":
				if r.Notes[0].Kind != Refused || r.Notes[0].Flag != "--privileged" {
					t.Errorf("--privileged not refused: %+v", r.Notes)
				}
			case strings.HasPrefix(tc.err, "!"):
				if hasNote(r, tc.err[1:]+": ") {
					t.Errorf("%s not read: %+v", tc.err[1:], r.Notes)
				}
			case tc.err != "":
				if !hasNote(r, tc.err) {
					t.Errorf("no note with %q: %+v", tc.err, r.Notes)
				}
			}
		})
	}
}

// TestComposeEnvFile: env_file takes compose's long syntax and compose's
// file syntax (found by a black-box probe: "- path: x" was read as a
// file named map[...], export Y="two words" as the key "export Y").
func TestComposeEnvFile(t *testing.T) {
	files := map[string]string{"/srv/a.env": "# c\nexport Y=\"two words\"\nZ='single $HOME'\nW=${WHO}\n"}
	read := func(p string) ([]byte, error) {
		if f, ok := files[p]; ok {
			return []byte(f), nil
		}
		return nil, fs.ErrNotExist
	}
	lookup := func(k string) (string, bool) { return map[string]string{"WHO": "me"}[k], k == "WHO" }
	rs, err := Compose([]byte("services:\n  web:\n    image: nginx\n    env_file:\n      - path: a.env\n      - path: nope.env\n        required: false\n"), "compose.yml",
		Options{Dir: "/srv", ReadFile: read, LookupEnv: lookup})
	if err != nil {
		t.Fatal(err)
	}
	env := load(t, rs[0]).Process.Env
	for k, v := range map[string]string{"Y": "two words", "Z": "single $HOME", "W": "me"} {
		if env[k] != v {
			t.Errorf("%s = %q, want %q (env %v)", k, env[k], v, env)
		}
	}
	if !hasNote(rs[0], "env_file nope.env: not there, and required: false") {
		t.Errorf("no note on the optional file: %+v", rs[0].Notes)
	}
	_, err = Compose([]byte("services:\n  web:\n    image: nginx\n    env_file: [{path: nope.env}]\n"), "compose.yml", Options{Dir: "/srv", ReadFile: read})
	if want := "reading env_file nope.env: file does not exist"; err == nil || !strings.HasSuffix(err.Error(), want) {
		t.Errorf("error %v, want ...%s", err, want)
	}
}

// TestStopSignalRT: a real-time stop signal (systemd's SIGRTMIN+3) is
// noted, not a refusal of the whole line (found by a black-box probe).
func TestStopSignalRT(t *testing.T) {
	r, err := DockerRun([]string{"--stop-signal", "RTMIN+3", "-m", "64m", "fedora"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !hasNote(r, "--stop-signal RTMIN+3: real-time signals other than SIGRTMIN and SIGRTMAX are not in manifest v1") {
		t.Errorf("no note: %+v", r.Notes)
	}
	if _, err := DockerRun([]string{"--stop-signal", "SIGFOO", "fedora"}, Options{}); err == nil {
		t.Error("--stop-signal SIGFOO accepted")
	}
}

// TestComposeMappingLimit: a mapping too long for yaml's quadratic
// duplicate check is refused where it is (found by a black-box probe:
// 20k environment keys took 3.4 s, 300k ten minutes).
func TestComposeMappingLimit(t *testing.T) {
	var b strings.Builder
	b.WriteString("services:\n  web:\n    image: nginx\n    environment:\n")
	for i := 0; i <= maxMappingKeys; i++ {
		b.WriteString("      K" + itoa(i) + ": v\n")
	}
	_, err := Compose([]byte(b.String()), "compose.yml", Options{})
	if want := "compose.yml:5: a mapping of 1001 keys, more than the 1000 safe-run import reads in one (is it the right file?)"; err == nil || err.Error() != want {
		t.Errorf("error %v, want %s", err, want)
	}
}

// TestComposeExtends: extends: of a service in the same file merges the
// base in as compose does, so a privileged base is refused like any
// privileged service (found by a black-box probe).
func TestComposeExtends(t *testing.T) {
	rs, err := Compose([]byte(`services:
  base:
    image: nginx
    privileged: true
    mem_limit: 64m
    environment: {A: "1", B: "2"}
    ports: ["8080:80"]
  web:
    extends: base
    environment: {B: "3"}
    ports: ["8443:443"]
  deeper:
    extends: {service: web}
    mem_limit: 32m
`), "compose.yml", Options{Dir: "/srv"})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.Name == "base" {
			continue
		}
		svc := load(t, r)
		if r.Notes[0].Kind != Refused || r.Notes[0].Flag != "--privileged" {
			t.Errorf("%s: --privileged not refused: %+v", r.Name, r.Notes)
		}
		if svc.Process.Env["A"] != "1" || svc.Process.Env["B"] != "3" || len(svc.Network.Published) != 2 {
			t.Errorf("%s: env %v, ports %v; want A=1 B=3 and both ports", r.Name, svc.Process.Env, svc.Network.Published)
		}
		if want := map[string]int64{"web": 64 << 20, "deeper": 32 << 20}[r.Name]; int64(svc.Resources.Memory) != want {
			t.Errorf("%s: memory %d, want %d", r.Name, svc.Resources.Memory, want)
		}
	}
	for yml, want := range map[string]string{
		"services:\n  a: {extends: b, image: x}\n  b: {extends: a}\n": "compose.yml: service a: extends: a extends itself (a -> b -> a)",
		"services:\n  a: {extends: nope}\n":                           `compose.yml: service a: extends: "nope" is not a service of this file`,
		"services:\n  a: {extends: {file: o.yml, service: b}}\n":      "compose.yml: service a: extends: file: o.yml: safe-run import reads extends: of a service in the same file only (copy the service b in)",
	} {
		if _, err := Compose([]byte(yml), "compose.yml", Options{}); err == nil || err.Error() != want {
			t.Errorf("error %v, want %s", err, want)
		}
	}
}

// TestExportNoise: the options a safe-run export writes for what safe-run
// does anyway read back as such, not as losses.
func TestExportNoise(t *testing.T) {
	r, err := DockerRun([]string{"--name", "web", "--hostname", "web", "-m", "100M", "--memory-swap", "100M", "--cpus", "0.25", "--cpu-shares", "256", "nginx"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range r.Notes {
		if n.Kind == Unsupported {
			t.Errorf("noted as unsupported: %+v", n)
		}
	}
	r, err = DockerRun([]string{"--name", "web", "--hostname", "other", "-m", "100M", "--memory-swap", "200M", "nginx"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !hasNote(r, "--hostname other: a manifest has no hostname") || !hasNote(r, "--memory-swap 200M: swap is never added") {
		t.Errorf("differing values not noted: %+v", r.Notes)
	}
}
