package importer

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/safe-run/safe-run/manifest"
	"github.com/safe-run/safe-run/policy"

	"github.com/safe-run/safe-run/internal/testenv"
)

type corpusCase struct{ name, source, command string }

// readCorpus reads testdata/dockerrun.txt.
func readCorpus(t *testing.T) []corpusCase {
	t.Helper()
	data, err := os.ReadFile("testdata/dockerrun.txt")
	if err != nil {
		t.Fatal(err)
	}
	var out []corpusCase
	for _, block := range strings.Split(string(data), "\n## ")[1:] {
		lines := strings.Split(block, "\n")
		c := corpusCase{name: strings.TrimSpace(lines[0])}
		var cmd []string
		for _, l := range lines[1:] {
			if src, ok := strings.CutPrefix(l, "# source: "); ok {
				c.source = src
			} else if strings.TrimSpace(l) != "" {
				cmd = append(cmd, l)
			}
		}
		c.command = strings.Join(cmd, "\n")
		out = append(out, c)
	}
	return out
}

// findings renders what the notes golden pins: the notes, the docker
// command's rules, and `safe-run check` of the manifest.
func findings(t *testing.T, r *Result, file string) []byte {
	t.Helper()
	var b strings.Builder
	score, _ := r.Docker.Score()
	b.WriteString("docker command: score " + itoa(score) + "/100:")
	seen := map[string]bool{}
	for _, f := range r.Docker.Findings {
		if !seen[f.Rule.ID] {
			b.WriteString(" " + f.Rule.ID)
		}
		seen[f.Rule.ID] = true
	}
	b.WriteString("\nnotes:\n")
	WriteNotes(&b, r)
	b.WriteString("\nsafe-run check:\n")
	svc, err := manifest.Parse(file, "/srv", r.Manifest)
	if err != nil {
		t.Fatalf("manifest does not load: %v", err)
	}
	var out bytes.Buffer
	if err := policy.WriteText(&out, []*policy.Report{policy.Check(svc, nil)}, nil); err != nil {
		t.Fatal(err)
	}
	b.Write(out.Bytes())
	return []byte(b.String())
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestDockerRunCorpus converts every real-world docker run line of the
// corpus; each manifest must load (DockerRun checks it with manifest.Parse
// too) and manifest, notes and findings are pinned as goldens.
func TestDockerRunCorpus(t *testing.T) {
	cases := readCorpus(t)
	if len(cases) < 30 {
		t.Fatalf("the corpus has %d lines; keep at least 30", len(cases))
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args, err := SplitCommand(c.command)
			if err != nil {
				t.Fatal(err)
			}
			if args[0] == "sudo" {
				args = args[1:]
			}
			if len(args) < 2 || args[0] != "docker" || args[1] != "run" {
				t.Fatalf("not a docker run line: %q", c.command)
			}
			r, err := DockerRun(args[2:], Options{Source: strings.Join(args, " "), Dir: "/srv",
				ReadFile: func(string) ([]byte, error) { return nil, os.ErrNotExist }})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := manifest.Parse(c.name+".toml", "/srv", r.Manifest); err != nil {
				t.Fatalf("manifest does not load: %v", err)
			}
			testenv.Golden(t, filepath.Join("testdata", "golden", c.name+".toml"), r.Manifest)
			testenv.Golden(t, filepath.Join("testdata", "golden", c.name+".notes"), findings(t, r, c.name+".toml"))
		})
	}
}

func TestCompose(t *testing.T) {
	data, err := os.ReadFile("testdata/compose/docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	rs, err := Compose(data, "docker-compose.yml", Options{Dir: "testdata/compose", ReadFile: func(p string) ([]byte, error) {
		return os.ReadFile(p)
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 3 {
		t.Fatalf("%d services, want 3", len(rs))
	}
	for _, r := range rs {
		testenv.Golden(t, filepath.Join("testdata", "compose", r.Name+".toml"), r.Manifest)
		testenv.Golden(t, filepath.Join("testdata", "compose", r.Name+".notes"), findings(t, r, r.Name+".toml"))
	}
}

func TestDockerRunErrors(t *testing.T) {
	tests := []struct{ args, want string }{
		{"", "docker run names no image (write: safe-run import -- docker run [flags] IMAGE [COMMAND...])"},
		{"--frobnicate nginx", "reading docker run flags: unknown flag: --frobnicate (safe-run import knows docker 28's flags)"},
		{"-m 12X nginx", `--memory: "12X" is not a size (use e.g. 512M)`},
		{"--cpus fast nginx", `--cpus "fast" is not a number of CPUs (use e.g. 1.5)`},
		{"--cpus 1e19 nginx", `--cpus 1e19: 1e+19 CPUs is more than any host has (at most 1024; use e.g. 2)`},
		{"--cpus 0.001 nginx", `--cpus 0.001: 0.001 CPUs is below the smallest limit, 0.01 (use e.g. 0.5)`},
		{"--cpu-quota 1 --cpu-period 1000000 nginx", `--cpu-quota 1: 1e-06 CPUs is below the smallest limit, 0.01 (use e.g. 0.5)`},
		{"--restart sometimes nginx", `--restart "sometimes" is not a restart policy (docker takes no, on-failure[:N], always, unless-stopped)`},
		{"-v a:b:c:d nginx", `--volume "a:b:c:d" is not [SOURCE:]TARGET[:OPTIONS]`},
		{"-v data:relative nginx", `--volume data:relative: the target "relative" is not an absolute path in the container`},
		{"--env-file missing.env nginx", "reading --env-file missing.env: file does not exist"},
		{"-e A=\xe9 nginx", `docker run argument "A=\xe9" is not UTF-8 text, which a manifest must be (convert it, e.g. with iconv)`},
		// Options docker refuses too: the manifest cannot take them.
		{"-m 1b nginx", "the line cannot become a manifest:\n  --memory: resources.memory: 1 is below the minimum 6M (the runtime itself needs a few MiB)"},
		{"--security-opt apparmor=! nginx", "the line cannot become a manifest:\n" +
			`  --security-opt: security.apparmor: "!" is not a profile (use "generated", the name of a loaded profile, or "unconfined" with [insecure])`},
		{"-w relative -e =x nginx", "the line cannot become a manifest:\n" +
			`  --workdir: process.workdir: "relative" is relative (use an absolute path inside the container, e.g. "/srv")` + "\n" +
			`  --env: process.env."": "" is not a valid variable name (no '=' and no control character: use letters, digits and '_', e.g. LOG_LEVEL)`},
	}
	for _, tc := range tests {
		t.Run(tc.args, func(t *testing.T) {
			args, _ := SplitCommand(tc.args)
			_, err := DockerRun(args, Options{Dir: "/srv", ReadFile: func(string) ([]byte, error) { return nil, os.ErrNotExist }})
			if err == nil || err.Error() != tc.want {
				t.Errorf("error %v\nwant %s", err, tc.want)
			}
		})
	}
}

func TestSplitCommand(t *testing.T) {
	tests := []struct{ in, want string }{
		{`docker run -e "A=b c" -e 'D=$E' x`, `docker|run|-e|A=b c|-e|D=$E|x`},
		{"a \\\n  b", "a|b"},
		{`a "b\"c" d\ e`, `a|b"c|d e`},
		{"a # comment\nb", "a|b"},
		{`-v "$PWD":/x`, `-v|$PWD:/x`},
	}
	for _, tc := range tests {
		got, err := SplitCommand(tc.in)
		if err != nil || strings.Join(got, "|") != tc.want {
			t.Errorf("SplitCommand(%q) = %q, %v; want %s", tc.in, got, err, tc.want)
		}
	}
	if _, err := SplitCommand(`a "b`); err == nil {
		t.Error("unterminated quote accepted")
	}
}

// TestOutputHint: the manifest's first lines name the file it was written
// to, which may differ from the service's name.
func TestOutputHint(t *testing.T) {
	for output, want := range map[string]string{
		"":              "# Review every TODO, then: safe-run check web.toml\n",
		"deploy/x.toml": "# Review every TODO, then: safe-run check deploy/x.toml\n",
	} {
		r, err := DockerRun([]string{"--name", "web", "-m", "64m", "--cpus", "1", "nginx@sha256:" + strings.Repeat("a", 64)}, Options{Output: output})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(r.Manifest), want) {
			t.Errorf("output %q: manifest lacks %q:\n%s", output, want, r.Manifest)
		}
	}
}

// TestComposeInterpolation: ${VAR} and its default forms are read as
// compose reads them, and the variables that were not set are named.
func TestComposeInterpolation(t *testing.T) {
	compose := []byte(`services:
  web:
    image: "nginx@sha256:${DIGEST}"
    mem_limit: ${MEM:-64m}
    cpus: 0.5
    environment:
      GREETING: "$${literal} ${WHO-world}"
    ports: ["${PORT:-8080}:80"]
`)
	env := map[string]string{"DIGEST": strings.Repeat("a", 64), "WHO": "safe-run"}
	rs, err := Compose(compose, "docker-compose.yml", Options{LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }})
	if err != nil {
		t.Fatal(err)
	}
	m := string(rs[0].Manifest)
	for _, want := range []string{`ref = "nginx@sha256:` + env["DIGEST"] + `"`, `memory = "64M"`, `GREETING = "${literal} safe-run"`, `ports = ["0.0.0.0:8080:80"]`} {
		if !strings.Contains(m, want) {
			t.Errorf("manifest lacks %s:\n%s", want, m)
		}
	}
	var note *Note
	for i, n := range rs[0].Notes {
		if strings.HasPrefix(n.Flag, "${") {
			note = &rs[0].Notes[i]
		}
	}
	if note == nil || note.Flag != "${MEM}, ${PORT}" {
		t.Errorf("note on unset variables: %+v, want one for ${MEM}, ${PORT}", note)
	}

	// An error the unset variables caused names them (found by a
	// black-box probe: only `":" is not a user`).
	_, err = Compose([]byte("services:\n  web:\n    image: nginx\n    user: ${XUID}:${XGID}\n    mem_limit: 64m\n    cpus: 0.5\n"), "docker-compose.yml", Options{})
	if err == nil || !strings.Contains(err.Error(), `":" is not a user`) || !strings.Contains(err.Error(), "(${XGID}, ${XUID} not set when the compose file was read") {
		t.Errorf("an error caused by unset variables: %v", err)
	}

	_, err = Compose([]byte("services:\n  web:\n    image: ${IMAGE:?set IMAGE to the image}\n"), "docker-compose.yml", Options{})
	if err == nil || !strings.Contains(err.Error(), "set IMAGE to the image") {
		t.Errorf("a required variable that is not set: %v", err)
	}
}
