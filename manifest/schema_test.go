package manifest

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	data, err := Schema()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("manifest.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("manifest.schema.json")
	if err != nil {
		t.Fatalf("the generated schema does not compile: %v", err)
	}
	return s
}

// tomlAsJSON decodes TOML as the schema sees it.
func tomlAsJSON(t *testing.T, text string) any {
	t.Helper()
	var raw map[string]any
	if _, err := toml.Decode(text, &raw); err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestSchemaAcceptsWhatLoads keeps the schema in step with the loader:
// every manifest in the repository's testdata and example directories that
// loads must validate against the schema.
func TestSchemaAcceptsWhatLoads(t *testing.T) {
	schema := compileSchema(t)
	var files []string
	err := filepath.WalkDir("..", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "rootfs") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(p, ".toml") &&
			(strings.Contains(p, "testdata"+string(filepath.Separator)) || strings.Contains(p, "example"+string(filepath.Separator))) {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	loaded := 0
	for _, p := range files {
		if _, err := Load(p); err != nil {
			continue // a bad-input case; the schema may or may not catch it
		}
		loaded++
		data, _ := os.ReadFile(p)
		if err := schema.Validate(tomlAsJSON(t, string(data))); err != nil {
			t.Errorf("%s loads but does not validate against the schema: %v", p, err)
		}
	}
	if loaded < 3 {
		t.Fatalf("only %d manifests load out of %d found: the walk finds too little to keep the schema honest", loaded, len(files))
	}
	t.Logf("%d of %d manifests load and validate", loaded, len(files))
}

const schemaBase = `version = 1
name = "web"
[image]
rootfs = "rootfs"
[process]
command = ["/bin/web"]
[resources]
memory = "64M"
cpus = 1
[[mounts]]
type = "tmpfs"
target = "/tmp"
[secrets]
db = { file = "/etc/db" }
`

// TestSchemaRejects checks that the schema refuses unknown keys at every
// level, and bad values where the loader refuses them too.
func TestSchemaRejects(t *testing.T) {
	schema := compileSchema(t)
	if _, err := Parse("web.toml", "/srv", []byte(schemaBase)); err != nil {
		t.Fatal(err)
	}
	if err := schema.Validate(tomlAsJSON(t, schemaBase)); err != nil {
		t.Fatalf("base does not validate: %v", err)
	}
	tests := []struct{ name, from, to string }{
		{"unknown top-level key", `name = "web"`, "name = \"web\"\nnmae = \"x\""},
		{"unknown process key", `command = ["/bin/web"]`, "command = [\"/bin/web\"]\ncomand = []"},
		{"unknown resources key", `cpus = 1`, "cpus = 1\nmemroy = \"1G\""},
		{"unknown mount key", `target = "/tmp"`, "target = \"/tmp\"\nsize_mb = 4"},
		{"unknown secret key", `db = { file = "/etc/db" }`, `db = { file = "/etc/db", mode = "0400" }`},
		{"bad size", `memory = "64M"`, `memory = "64X"`},
		{"bare size", `memory = "64M"`, `memory = 64`},
		{"bad restart", `command = ["/bin/web"]`, "command = [\"/bin/web\"]\nrestart = \"unless-stopped\""},
		{"bad mount type", `type = "tmpfs"`, `type = "overlay"`},
		{"tmpfs with a source", `target = "/tmp"`, "target = \"/tmp\"\nsource = \"x\""},
		{"bad allow item", `name = "web"`, "name = \"web\"\n[insecure]\nreason = \"r\"\nallow = [\"everything\"]"},
		{"two image sources", `rootfs = "rootfs"`, "rootfs = \"rootfs\"\nref = \"nginx@sha256:00\""},
		{"no version", "version = 1\n", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			text := strings.Replace(schemaBase, tc.from, tc.to, 1)
			if text == schemaBase {
				t.Fatalf("%q not in the base manifest", tc.from)
			}
			if _, err := Parse("web.toml", "/srv", []byte(text)); err == nil {
				t.Fatalf("the loader accepts it; the case tests nothing")
			}
			if err := schema.Validate(tomlAsJSON(t, text)); err == nil {
				t.Errorf("the schema accepts what the loader refuses:\n%s", text)
			}
		})
	}
}

// TestSchemaDocumented makes a new key get a description.
func TestSchemaDocumented(t *testing.T) {
	for _, p := range schemaPaths() {
		if _, ok := schemaDocs()[p]; !ok {
			t.Errorf("%s: no entry in schemaDocs (describe the key)", p)
		}
	}
	for p := range schemaDocs() {
		found := false
		for _, q := range schemaPaths() {
			found = found || p == q
		}
		if !found {
			t.Errorf("schemaDocs has %s, which is no key", p)
		}
	}
}

// TestPortPattern keeps ParsePort and the schema's portPattern in step.
func TestPortPattern(t *testing.T) {
	re := regexp.MustCompile(portPattern)
	for _, p := range []string{"8080:80", "8080:80/tcp", "53:53/udp", "127.0.0.1:8080:80", "0.0.0.0:5353:53/udp",
		"80", "127.0.0.1::80", "[::1]:8080:80", "8000-8010:8000-8010", "80/sctp",
		"", "http", "8080:", "a:80", "8080:80/icmp", "1:2:3:4", "[::1", "127.0.0.1:8080:80:1"} {
		_, err := ParsePort(p)
		if got, want := err == nil, re.MatchString(p); got != want {
			t.Errorf("%q: ParsePort accepts %v, schema pattern %v", p, got, want)
		}
	}
}
