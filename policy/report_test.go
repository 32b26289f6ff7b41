package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/safe-run/safe-run/manifest"

	"github.com/safe-run/safe-run/internal/testenv"
)

// reports are one target of each kind, with open, refused and accepted
// findings.
func reports(t *testing.T) []*Report {
	t.Helper()
	svc, err := manifest.Load("testdata/report/web.toml")
	if err != nil {
		t.Fatal(err)
	}
	bad := &Container{
		Name: "bad", Image: "busybox:latest", Privileged: true, NetworkMode: "host", PidMode: "host",
		Mounts: []ContainerMount{{Type: "bind", Source: "/var/run/docker.sock", Target: "/var/run/docker.sock"}},
		Env:    []string{"API_TOKEN=x"},
	}
	good := hardened()
	daemon := &Daemon{
		Endpoint: "unix:///var/run/docker.sock", Version: "Docker Engine 20.10.24, API 1.41", Seccomp: true,
		Listeners: []Listener{{Addr: "127.0.0.1:2375"}},
		Socket:    &Socket{Path: "/var/run/docker.sock", Mode: 0o660, Owner: "root", Group: "docker", Members: []string{"alice"}},
	}
	return []*Report{
		Check(svc, &Host{Cgroups: ""}),
		CheckContainer(bad, "0123456789ab, busybox:latest"),
		CheckContainer(good, "ba9876543210, registry.example/web@sha256:0123..."),
		CheckDaemon(daemon),
	}
}

func TestReportFormats(t *testing.T) {
	rs := reports(t)
	failures := Gate{MinScore: 50, FailOn: High}.Failures(rs)
	for _, f := range []struct {
		name  string
		write func(*bytes.Buffer) error
	}{
		{"report.txt", func(b *bytes.Buffer) error { return WriteText(b, rs, failures) }},
		{"report.json", func(b *bytes.Buffer) error { return WriteJSON(b, rs, failures) }},
		{"report.sarif", func(b *bytes.Buffer) error { return WriteSARIF(b, rs, "v0.0.0-test") }},
	} {
		t.Run(f.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := f.write(&b); err != nil {
				t.Fatal(err)
			}
			testenv.Golden(t, filepath.Join("testdata", f.name+".golden"), b.Bytes())
		})
	}
}

func TestScore(t *testing.T) {
	rs := reports(t)
	want := []int{0, 0, 100, 43}
	for i, r := range rs {
		if got, _ := r.Score(); got != want[i] {
			t.Errorf("%s: score %d, want %d", r.Name, got, want[i])
		}
	}
	// One deduction per rule, however many findings: two secret keys cost
	// as much as one.
	c := hardened()
	c.Env = []string{"A_TOKEN=1", "B_TOKEN=2"}
	score, ds := CheckContainer(c, "").Score()
	if score != 92 || len(ds) != 1 || ds[0].String() != "-8 SR014 secret-in-env (medium): --env: A_TOKEN looks like a secret; environment variables leak into logs, docker inspect and child processes (and 1 more)" {
		t.Errorf("score %d, deductions %v", score, ds)
	}
}

// TestScoreNetwork: the network findings are warnings that cost points,
// each rule once, and refuse nothing.
func TestScoreNetwork(t *testing.T) {
	svc := parse(t, base+"\n[network]\nmode = \"bridge\"\nports = [\"0.0.0.0:80:80\", \"0.0.0.0:443:443\"]\negress = \"all\"\n")
	r := Check(svc, nil)
	score, ds := r.Score()
	var got []string
	for _, d := range ds {
		got = append(got, d.String())
	}
	want := []string{
		`-8 SR034 publish-all-addresses (medium): network.ports[0]: "0.0.0.0:80:80" publishes container port 80/tcp on every address of the host, to whatever network reaches it (and 1 more)`,
		`-8 SR035 egress-all (medium): network.egress: "all": the service may connect to any address the host reaches, its local networks and 169.254.169.254 included`,
	}
	if score != 84 || strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("score %d, deductions:\n%s\nwant 84:\n%s", score, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if err := Enforce(svc); err != nil {
		t.Errorf("network findings refused the manifest: %v", err)
	}
}

func TestGate(t *testing.T) {
	clean := Check(parse(t, base), nil)
	refused := Check(parse(t, edit("cpus = 0.5\n", "")), nil)
	tests := []struct {
		name    string
		gate    Gate
		reports []*Report
		want    string
	}{
		{"clean passes", Gate{FailOn: High}, []*Report{clean}, ""},
		{"refused fails whatever the gate", Gate{Never: true}, []*Report{refused},
			"web.toml: safe-run refuses to run it: 1 finding(s) not acknowledged in [insecure]"},
		{"fail-on high", Gate{FailOn: High}, []*Report{refused}, "web.toml: 1 finding(s) at or above --fail-on high (worst: high)\n" +
			"web.toml: safe-run refuses to run it: 1 finding(s) not acknowledged in [insecure]"},
		{"min-score", Gate{MinScore: 90, Never: true}, []*Report{CheckContainer(hardened(), "")}, ""},
		{"min-score fails", Gate{MinScore: 101, Never: true}, []*Report{CheckContainer(hardened(), "")}, "good: score 100 is below --min-score 101"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := strings.Join(tc.gate.Failures(tc.reports), "\n"); got != tc.want {
				t.Errorf("failures:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}

func sarifSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open("testdata/sarif-2.1.0.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("sarif-2.1.0.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("sarif-2.1.0.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSARIFSchema validates the SARIF output against the SARIF 2.1.0
// schema (testdata/README.md says where it comes from), and checks that the
// schema does catch a broken log.
func TestSARIFSchema(t *testing.T) {
	schema := sarifSchema(t)
	var b bytes.Buffer
	if err := WriteSARIF(&b, reports(t), "v0.0.0-test"); err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if err := schema.Validate(doc); err != nil {
		t.Errorf("safe-run's SARIF does not validate: %v", err)
	}
	broken := strings.Replace(b.String(), `"level": "error"`, `"level": "fatal"`, 1)
	doc, _ = jsonschema.UnmarshalJSON(strings.NewReader(broken))
	if err := schema.Validate(doc); err == nil {
		t.Error("a result with level \"fatal\" validates: the schema check checks nothing")
	}
	// GitHub code scanning also wants: a rule for every result, ruleIndex
	// pointing at it, and a location on every result.
	if !strings.Contains(b.String(), `"security-severity": "9.5"`) {
		t.Error("no security-severity on the rules: GitHub could not rank the alerts")
	}
}

// TestTextEscapesControlCharacters: what a container or manifest says is
// printed with its control characters escaped, so that an env name with
// ESC or a bind source with a newline cannot clear the screen or forge a
// "score 100/100" line (found by a black-box probe of audit and check).
func TestTextEscapesControlCharacters(t *testing.T) {
	forged := "container eco-fake (000000000000, x): score 100/100"
	c := hardened()
	c.Name = "evil\u202e"
	c.Env = []string{"\x1b[2J\x1b[HX_PASSWORD\n" + forged + "=v"}
	c.Mounts = []ContainerMount{{Type: "bind", Source: "/srv/a\n" + forged + "\n", Target: "/a"}}
	var b bytes.Buffer
	if err := WriteText(&b, []*Report{CheckContainer(c, "0123456789ab, x\r")}, []string{"evil\x9b: score"}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, bad := range []string{"\x1b", "\r", "\u202e", "\x9b"} {
		if strings.Contains(out, bad) {
			t.Errorf("output holds %q:\n%s", bad, out)
		}
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "container eco-fake") {
			t.Errorf("a forged line: %q\n%s", l, out)
		}
	}
	for _, want := range []string{
		`container evil\u202e (0123456789ab, x\r): score`,
		`--env: \x1b[2J\x1b[HX_PASSWORD\ncontainer eco-fake (000000000000, x): score 100/100 looks like a secret`,
		`--volume: /srv/a\ncontainer eco-fake (000000000000, x): score 100/100\n is writable`,
		`  evil\x9b: score`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestUnjudged: a target that could not be judged (an unreadable
// manifest, an unreachable engine) is in the JSON and SARIF documents,
// which stay valid, and fails the gate.
func TestUnjudged(t *testing.T) {
	rs := append(reports(t)[:1],
		Unjudged(KindManifest, "bad.toml", errors.New("bad.toml:3: Key 'name' has already been defined\nbad.toml:4: more")),
		Unjudged(KindDaemon, "unix:///none.sock", errors.New("docker engine unreachable")))
	fails := Gate{}.Failures(rs)
	for _, want := range []string{"bad.toml: not judged: bad.toml:3: Key 'name' has already been defined\nbad.toml:4: more", "unix:///none.sock: not judged: docker engine unreachable"} {
		if !containsString(fails, want) {
			t.Errorf("failures %q lack %q", fails, want)
		}
	}
	var j bytes.Buffer
	if err := WriteJSON(&j, rs, fails); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Targets []struct {
			Name, Error string
			Score       *int
		}
	}
	if err := json.Unmarshal(j.Bytes(), &doc); err != nil {
		t.Fatalf("JSON: %v\n%s", err, j.String())
	}
	if len(doc.Targets) != 3 || doc.Targets[1].Error == "" || doc.Targets[1].Score != nil || doc.Targets[0].Score == nil {
		t.Errorf("targets: %+v", doc.Targets)
	}
	var s bytes.Buffer
	if err := WriteSARIF(&s, rs, "v0.0.0-test"); err != nil {
		t.Fatal(err)
	}
	sdoc, err := jsonschema.UnmarshalJSON(bytes.NewReader(s.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if err := sarifSchema(t).Validate(sdoc); err != nil {
		t.Errorf("SARIF with targets not judged does not validate: %v", err)
	}
	for _, want := range []string{`"executionSuccessful": false`, `bad.toml: not judged`, `"fullyQualifiedName": "daemon:unix:///none.sock"`} {
		if !strings.Contains(s.String(), want) {
			t.Errorf("SARIF lacks %s:\n%s", want, s.String())
		}
	}
	if score, _ := rs[1].Score(); score != 0 {
		t.Errorf("a target not judged scores %d", score)
	}
}
