package importer

import (
	"os"
	"strings"
	"testing"

	"github.com/safe-run/safe-run/manifest"
)

// importerBug is in the error the importer returns when what it wrote
// does not load for a reason no docker option explains: its own bug.
const importerBug = "a bug; please report it"

// fuzzOptions reads every env file as one variable: the fuzzer's lines
// may name any path.
func fuzzOptions() Options {
	return Options{Dir: "/srv", ReadFile: func(p string) ([]byte, error) {
		if strings.HasSuffix(p, "missing.env") {
			return nil, os.ErrNotExist
		}
		return []byte("# from " + p + "\nFROM_FILE=1\n"), nil
	}}
}

// checkImported: a line or file the importer takes becomes manifests that
// load; one it refuses is never refused as the importer's own bug.
func checkImported(t *testing.T, rs []*Result, err error) {
	if err != nil {
		if strings.Contains(err.Error(), importerBug) {
			t.Fatalf("the importer wrote a manifest that does not load: %v", err)
		}
		return
	}
	for _, r := range rs {
		if _, err := manifest.Parse(r.Name+".toml", "/srv", r.Manifest); err != nil {
			t.Fatalf("manifest of %s does not load: %v\n%s", r.Name, err, r.Manifest)
		}
		if r.Docker == nil {
			t.Errorf("%s: no judgement of the docker command", r.Name)
		}
	}
}

// FuzzDockerRun converts arbitrary docker run lines, seeded with the
// real-world corpus and the error table. make fuzz runs it for 15s;
// longer by hand:
//
//	go test ./importer -run '^$' -fuzz FuzzDockerRun -fuzztime 10m
func FuzzDockerRun(f *testing.F) {
	data, err := os.ReadFile("testdata/dockerrun.txt")
	if err != nil {
		f.Fatal(err)
	}
	for _, block := range strings.Split(string(data), "\n## ")[1:] {
		var cmd []string
		for _, l := range strings.Split(block, "\n")[1:] {
			if !strings.HasPrefix(l, "#") && strings.TrimSpace(l) != "" {
				cmd = append(cmd, l)
			}
		}
		line := strings.Join(cmd, "\n")
		line = strings.TrimPrefix(line, "sudo ")
		f.Add(strings.TrimPrefix(line, "docker run "))
	}
	for _, s := range []string{"", "--frobnicate nginx", "-m 12X nginx", "-v a:b:c:d nginx", "--env-file missing.env nginx",
		"-m 1b nginx", "-w relative -e =x nginx", "--env-file a.env -p 127.0.0.1:8080:80/udp --tmpfs /run:size=1m,mode=1777 nginx",
		"--network container:db --pid host --cap-add ALL --device /dev/fuse redis", "--mount type=bind,src=/srv,dst=/data,ro nginx sh -c 'echo hi'"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		args, err := SplitCommand(line)
		if err != nil {
			return
		}
		r, err := DockerRun(args, fuzzOptions())
		var rs []*Result
		if r != nil {
			rs = append(rs, r)
		}
		checkImported(t, rs, err)
	})
}

// FuzzCompose converts arbitrary compose files, seeded with the test
// compose file and a few shapes of its keys.
//
//	go test ./importer -run '^$' -fuzz FuzzCompose -fuzztime 10m
func FuzzCompose(f *testing.F) {
	data, err := os.ReadFile("testdata/compose/docker-compose.yml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	for _, s := range []string{
		"",
		"services:\n  web:\n    image: ${IMAGE:?set IMAGE to the image}\n",
		"services:\n  web:\n    image: nginx:${TAG:-1.27}\n    ports: [\"8080:80\", 9090]\n    environment: {A: 1, B: null}\n",
		"services:\n  db:\n    image: postgres\n    secrets: [pw]\n    deploy: {resources: {limits: {cpus: '0.5', memory: 512M}}}\nsecrets:\n  pw: {file: ./pw.txt}\n",
		"services:\n  x:\n    image: busybox\n    command: [sh, -c, 'sleep 1']\n    healthcheck: {test: [CMD, true], interval: 1m30s}\n    tmpfs: /run\n    volumes: [{type: bind, source: /srv, target: /data, read_only: true}]\n",
		"services: []\n",
		"services:\n  a: null\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, err := Compose(data, "docker-compose.yml", fuzzOptions())
		checkImported(t, rs, err)
	})
}
