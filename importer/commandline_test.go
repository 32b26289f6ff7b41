package importer

import (
	"strings"
	"testing"
)

// TestCommandLine: what a pasted line may hold before docker run's flags
// is accepted, what a shell would run besides the one command is
// refused, and no error repeats the line, which may hold passwords
// (found by a black-box probe).
func TestCommandLine(t *testing.T) {
	tests := []struct{ line, want, err string }{
		{"docker run redis", "redis", ""},
		{"sudo docker run -m 64m redis", "-m|64m|redis", ""},
		{"sudo -E -u root docker run redis", "redis", ""},
		{"$ docker run redis", "redis", ""},
		{"/usr/bin/docker run redis", "redis", ""},
		{"podman run redis", "redis", ""},
		{"DOCKER_HOST=tcp://x:2375 A=b docker run redis", "redis", ""},
		{"docker --context x -H=unix:///s --debug run redis", "redis", ""},
		{"docker container run redis", "redis", ""},
		{"docker run \\\n  -e 'A=b|c' \"D=e;f\" redis \\\n  # a comment\n", "-e|A=b|c|D=e;f|redis", ""},
		{"docker run redis\r\n", "redis", ""},
		{"docker run redis\n# a note\n\n", "redis", ""},
		{"docker run redis | tee x", "", `line 1: "|" is a shell operator: safe-run import reads one docker run command (quote the character if it belongs to an argument, or give the docker run command alone)`},
		{"docker run redis && echo hi", "", `line 1: "&&" is a shell operator`},
		{"docker run -e PASS=hunter2 redis; rm -rf /", "", `line 1: ";" is a shell operator`},
		{"docker run \\\n redis > log 2>&1", "", `line 2: ">" is a shell operator`},
		{"docker run redis\ndocker run nginx", "", "line 2: a second command (a line without a trailing \\ ends the command): safe-run import reads one docker run command; import each on its own"},
		{"curl -u admin:hunter2 http://x", "", `the command is "curl", not docker run (write: safe-run import -- docker run [flags] IMAGE [COMMAND...])`},
		{"docker ps -e PASS=hunter2", "", `docker ps is not a run command (write: safe-run import -- docker run [flags] IMAGE [COMMAND...])`},
		{"docker --frob run redis", "", `docker option "--frob" is not known to safe-run import (give the run command's flags after "run")`},
		{"sudo", "", "no command (write: safe-run import -- docker run [flags] IMAGE [COMMAND...])"},
		{"docker run \x00\x00", "", "line 1 holds a NUL byte: not a command line"},
	}
	for _, tc := range tests {
		t.Run(tc.line, func(t *testing.T) {
			args, err := CommandLine(tc.line)
			switch {
			case tc.err != "":
				if err == nil || !strings.HasPrefix(err.Error(), tc.err) {
					t.Fatalf("error %v, want %s", err, tc.err)
				}
				if strings.Contains(err.Error(), "hunter2") {
					t.Errorf("the error repeats the line: %v", err)
				}
			case err != nil:
				t.Fatal(err)
			case strings.Join(args, "|") != tc.want:
				t.Errorf("args %q, want %s", args, tc.want)
			}
		})
	}
}

// TestSourceQuoting: the "Imported from" comment keeps the quoting, so
// it pastes back as the same command (found by a black-box probe: --save
// ” lost its argument).
func TestSourceQuoting(t *testing.T) {
	args := []string{"-m", "64m", "--cpus", "1", "redis", "redis-server", "--save", "", "sh", "-c", "echo hi  there; " + strings.Repeat("x", 100)}
	r, err := DockerRun(args, Options{Source: "docker run " + Quote(args)})
	if err != nil {
		t.Fatal(err)
	}
	var src []string
	for _, l := range strings.Split(string(r.Manifest), "\n")[1:] {
		if !strings.HasPrefix(l, "#   ") {
			break
		}
		src = append(src, strings.TrimSuffix(strings.TrimPrefix(l, "#   "), " \\"))
	}
	got, err := SplitCommand(strings.Join(src, " "))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got[2:], "|") != strings.Join(args, "|") {
		t.Errorf("the comment reads back as %q, want %q:\n%s", got[2:], args, r.Manifest)
	}
}

// TestEnvResult: a manifest with environment values says so, for the
// file to be written 0600 (found by a black-box probe: a secret from a
// 0600 env file landed in a 0644 manifest).
func TestEnvResult(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  bool
	}{
		{[]string{"-m", "64m", "redis"}, false},
		{[]string{"-m", "64m", "-e", "A=b", "redis"}, true},
		{[]string{"-m", "64m", "--env-file", "x.env", "redis"}, true},
	} {
		r, err := DockerRun(tc.args, Options{ReadFile: func(string) ([]byte, error) { return []byte("DB_PASSWORD=hunter2\n"), nil }})
		if err != nil {
			t.Fatal(err)
		}
		if r.Env != tc.env {
			t.Errorf("%q: Env = %v, want %v", tc.args, r.Env, tc.env)
		}
	}
	rs, err := Compose([]byte("services:\n  a:\n    image: redis\n    environment: [\"TOKEN=${TOKEN}\"]\n"), "c.yml", Options{LookupEnv: func(string) (string, bool) { return "x", true }})
	if err != nil {
		t.Fatal(err)
	}
	if !rs[0].Env {
		t.Error("compose environment: Env = false")
	}
}

// TestLongInput: an env file within the input limit that makes a
// manifest beyond manifest.Load's is refused as such, quickly (found by
// a black-box probe: 20k variables took 3.4 s, and a manifest the
// loader refuses was written).
func TestLongInput(t *testing.T) {
	var b strings.Builder
	for i := 0; b.Len() < MaxInputSize-100; i++ {
		b.WriteString("DB_PASSWORD_" + itoa(i) + "=x\n")
	}
	_, err := DockerRun([]string{"--env-file", "e.env", "redis"}, Options{ReadFile: func(string) ([]byte, error) { return []byte(b.String()), nil }})
	if err == nil || !strings.Contains(err.Error(), "more than the 1048576 a manifest may be") {
		t.Errorf("error %v, want the manifest's limit", err)
	}
}
