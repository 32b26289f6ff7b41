package manifest

import (
	"strings"
	"testing"
)

func TestImageSources(t *testing.T) {
	const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, tc := range []struct {
		image string // the [image] table's body
		want  Image  // after Load, when err is ""
		err   string
	}{
		{image: `oci = "oci:latest"`, want: Image{OCI: "/srv/web/oci:latest"}},
		{image: `oci = "../images/web"`, want: Image{OCI: "/srv/images/web"}},
		{image: `oci = "/abs/lay:out:v1.2-rc_3"`, want: Image{OCI: "/abs/lay:out:v1.2-rc_3"}},
		{image: `oci = "dir:with/slash"`, want: Image{OCI: "/srv/web/dir:with/slash"}},
		{image: `archive = "web.tar.gz"`, want: Image{Archive: "/srv/web/web.tar.gz"}},
		{image: `archive = "/var/images/web.tar"`, want: Image{Archive: "/var/images/web.tar"}},
		{image: `ref = "registry.example/team/web@` + digest + `"`, want: Image{Ref: "registry.example/team/web@" + digest}},
		{image: `ref = "localhost:5000/web:v1@` + digest + `"`, want: Image{Ref: "localhost:5000/web:v1@" + digest}},
		{image: `ref = "registry.example/web:v1"`, want: Image{Ref: "registry.example/web:v1"}}, // policy's to refuse (SR018)
		{image: `ref = "alpine"`, want: Image{Ref: "alpine"}},

		{image: `oci = ":latest"`, err: `web.toml:4: image.oci: ":latest" names no directory (use oci = "layout-dir:tag", the directory relative to this file)`},
		{image: `oci = "oci:"`, err: `web.toml:4: image.oci: "oci:": the tag after ':' is not a tag (use letters, digits, '_', '.', '-', e.g. oci = "layout-dir:latest")`},
		{image: `oci = "oci:-x"`, err: `web.toml:4: image.oci: "oci:-x": the tag after ':' is not a tag (use letters, digits, '_', '.', '-', e.g. oci = "layout-dir:latest")`},
		{image: `oci = "good@` + digest + `"`, err: `web.toml:4: image.oci: "good@` + digest + `": an OCI layout's image is named by its tag, not by a digest (use oci = "good:TAG" with a tag of its index.json; to pin by digest, ref = "registry/repo@sha256:...")`},
		{image: `oci = "good:../../x"`, err: `web.toml:4: image.oci: "good:../../x": the part after ':' is a tag, not a path (use oci = "layout-dir:tag"; a directory whose name holds ':' is written without a tag)`},
		{image: `oci = "good:/etc"`, err: `web.toml:4: image.oci: "good:/etc": the part after ':' is a tag, not a path (use oci = "layout-dir:tag"; a directory whose name holds ':' is written without a tag)`},
		{image: `oci = "oci:t@g"`, err: `web.toml:4: image.oci: "oci:t@g": the tag after ':' is not a tag (use letters, digits, '_', '.', '-', e.g. oci = "layout-dir:latest")`},
		{image: `ref = "https://registry.example/web@` + digest + `"`, err: `web.toml:4: image.ref: "https://registry.example/web@` + digest + `" is not a registry reference: drop the URL scheme (use "registry.example/web@sha256:<64 hex digits>")`},
		{image: `ref = "Registry.Example/WEB@` + digest + `"`, err: `web.toml:4: image.ref: "Registry.Example/WEB@` + digest + `" is not a registry reference (use "registry.example/web@sha256:<64 hex digits>")`},
		{image: `ref = "registry.example/web@sha256:abc"`, err: `web.toml:4: image.ref: "registry.example/web@sha256:abc" is not a registry reference (use "registry.example/web@sha256:<64 hex digits>")`},
		{image: `ref = "registry.example/web@sha512:` + strings.Repeat("ab", 64) + `"`, err: `web.toml:4: image.ref: "registry.example/web@sha512:` + strings.Repeat("ab", 64) + `": only sha256 digests are accepted (use "registry.example/web@sha256:<64 hex digits>")`},
		{image: "oci = \"oci:latest\"\narchive = \"web.tar\"", err: `web.toml:5: image.archive: image.oci and image.archive are both set (keep exactly one image source)`},
	} {
		t.Run(tc.image, func(t *testing.T) {
			text := "version = 1\nname = \"web\"\n[image]\n" + tc.image + "\n[resources]\nmemory = \"64M\"\ncpus = 1.0\n"
			s, err := Parse("web.toml", "/srv/web", []byte(text))
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Errorf("error\n%v\nwant\n%s", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.Image != tc.want {
				t.Errorf("image %+v, want %+v", s.Image, tc.want)
			}
		})
	}
}

func TestSplitOCI(t *testing.T) {
	for v, want := range map[string][2]string{
		"oci:latest": {"oci", "latest"}, "oci": {"oci", ""}, "/a:b/c": {"/a:b/c", ""}, "/a:b/c:d": {"/a:b/c", "d"}, "oci:": {"oci", ""},
	} {
		if dir, tag := SplitOCI(v); dir != want[0] || tag != want[1] {
			t.Errorf("SplitOCI(%q) = %q, %q; want %q, %q", v, dir, tag, want[0], want[1])
		}
	}
}
