package plan

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/safe-run/safe-run/image"
	"github.com/safe-run/safe-run/manifest"
)

// TestCheckWorkdir: a start refuses a working directory a read-only image
// lacks, naming whose it is: the manifest's or the image's. One under a
// mount, or in a writable root, is left to the runtime to create.
func TestCheckWorkdir(t *testing.T) {
	rootfs, err := filepath.Abs("testdata/rootfs")
	if err != nil {
		t.Fatal(err)
	}
	text := "version = 1\nname = \"w\"\n[image]\nrootfs = \"r\"\n[process]\ncommand = [\"/x\"]\n%s[resources]\nmemory = \"64M\"\ncpus = 1\n%s"
	for _, tc := range []struct {
		name, process, more, imageWorkdir, want string
	}{
		{"in the image", "workdir = \"/srv\"\n", "", "", ""},
		{"not in the image", "workdir = \"/nonexistent\"\n", "", "",
			`w.toml:7: process.workdir: /nonexistent is not a directory in the image (the root is read-only: create it in the image, or mount a tmpfs or volume there)`},
		{"a file", "workdir = \"/etc/passwd\"\n", "", "",
			`w.toml:7: process.workdir: /etc/passwd is not a directory in the image (the root is read-only: create it in the image, or mount a tmpfs or volume there)`},
		{"under a tmpfs", "workdir = \"/data/x\"\n", "[[mounts]]\ntype = \"tmpfs\"\ntarget = \"/data\"\n", "", ""},
		{"the image's", "", "", "/gone",
			`w.toml:3: image: the image's working directory /gone is not a directory in it (set process.workdir, or mount a tmpfs or volume there)`},
		{"the manifest's over the image's", "workdir = \"/srv\"\n", "", "/gone", ""},
		{"writable root", "workdir = \"/nonexistent\"\n", "[security]\nread_only_rootfs = false\n[insecure]\nreason = \"r\"\nallow = [\"writable_rootfs\"]\n", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc, err := manifest.Parse("w.toml", "/srv/w", []byte(fmt.Sprintf(text, tc.process, tc.more)))
			if err != nil {
				t.Fatal(err)
			}
			img := &image.Image{Rootfs: rootfs, Config: image.Config{WorkingDir: tc.imageWorkdir}}
			err = CheckWorkdir(svc, img)
			if got := fmt.Sprint(err); (tc.want == "" && err != nil) || (tc.want != "" && got != tc.want) {
				t.Errorf("got  %v\nwant %q", err, tc.want)
			}
		})
	}
}
