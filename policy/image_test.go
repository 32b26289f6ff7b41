package policy

import (
	"testing"

	"github.com/safe-run/safe-run/manifest"
)

func parseImage(t *testing.T, image, insecure string) *manifest.Service {
	t.Helper()
	text := "version = 1\nname = \"web\"\n[image]\n" + image + "\n[process]\nuser = \"1000\"\n[resources]\nmemory = \"64M\"\ncpus = 1.0\n" + insecure
	s, err := manifest.Parse("web.toml", "/srv/web", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestImageRules(t *testing.T) {
	const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, tc := range []struct {
		name, image, insecure string
		enforce               string   // the error of Enforce, "" for none
		findings              []string // rule IDs found
	}{
		{name: "pinned", image: `ref = "registry.example/web@` + digest + `"`},
		{name: "tag", image: `ref = "registry.example/web:v1"`, findings: []string{"SR018"},
			enforce: `web.toml:4: image.ref: "registry.example/web:v1" is not pinned by digest: whoever can push that tag decides what runs [SR018 unpinned-image] (pin the reference: ref = "registry/repo@sha256:..." (safe-run prints the digest it pulled), or acknowledge it: [insecure] allow = ["unpinned_image"] with a reason)`},
		{name: "implicit latest", image: `ref = "alpine"`, findings: []string{"SR018"},
			enforce: `web.toml:4: image.ref: "alpine" is not pinned by digest: whoever can push that tag decides what runs [SR018 unpinned-image] (pin the reference: ref = "registry/repo@sha256:..." (safe-run prints the digest it pulled), or acknowledge it: [insecure] allow = ["unpinned_image"] with a reason)`},
		{name: "tag acknowledged", image: `ref = "registry.example/web:v1"`, insecure: "[insecure]\nreason = \"r\"\nallow = [\"unpinned_image\"]", findings: []string{"SR018"}},
		{name: "loopback over HTTP acknowledged", image: `ref = "localhost:5000/web@` + digest + `"`, insecure: "[insecure]\nreason = \"r\"\nallow = [\"insecure_registry\"]", findings: []string{"SR019"}},
		{name: "loopback without the allowance", image: `ref = "127.0.0.1:5000/web@` + digest + `"`},
		{name: "not loopback: the allowance changes nothing", image: `ref = "registry.example/web@` + digest + `"`, insecure: "[insecure]\nreason = \"r\"\nallow = [\"insecure_registry\"]"},
		{name: "layout", image: `oci = "oci:latest"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := parseImage(t, tc.image, tc.insecure)
			var ids []string
			for _, f := range Findings(s) {
				if f.Rule.ID == "SR018" || f.Rule.ID == "SR019" {
					ids = append(ids, f.Rule.ID)
				}
			}
			if len(ids) != len(tc.findings) || (len(ids) > 0 && ids[0] != tc.findings[0]) {
				t.Errorf("findings %v, want %v", ids, tc.findings)
			}
			err := Enforce(s)
			if (err == nil) != (tc.enforce == "") || (err != nil && err.Error() != tc.enforce) {
				t.Errorf("Enforce:\n%v\nwant\n%s", err, tc.enforce)
			}
		})
	}
}

func TestRegistryHosts(t *testing.T) {
	for ref, want := range map[string]string{
		"alpine": "index.docker.io", "library/alpine": "index.docker.io", "registry.example/web": "registry.example",
		"localhost:5000/web": "localhost:5000", "localhost/web": "localhost", "[::1]:5000/web": "[::1]:5000", "127.0.0.1:5000/a/b@sha256:x": "127.0.0.1:5000",
	} {
		if got := RegistryHost(ref); got != want {
			t.Errorf("RegistryHost(%q) = %q, want %q", ref, got, want)
		}
	}
	for host, want := range map[string]bool{
		"localhost": true, "localhost:5000": true, "LOCALHOST:5000": true, "127.0.0.1": true, "127.1.2.3:80": true, "[::1]:5000": true, "::1": true,
		"10.0.0.1:5000": false, "registry.example": false, "localhost.example:5000": false, "[fe80::1]:5000": false, "128.0.0.1": false, "": false,
	} {
		if got := LoopbackHost(host); got != want {
			t.Errorf("LoopbackHost(%q) = %v, want %v", host, got, want)
		}
	}
}
