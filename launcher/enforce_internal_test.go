package launcher

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/safe-run/safe-run/manifest"
	"github.com/safe-run/safe-run/plan"
)

// TestCheckVolumes: a volume that another service's ids own is refused
// before the start makes anything, at its line of the manifest (it was
// refused while the container's mounts were pinned, with no position).
func TestCheckVolumes(t *testing.T) {
	dir := t.TempDir()
	own := uint32(os.Getuid())
	for _, name := range []string{"theirs", "mine"} {
		if err := os.Mkdir(filepath.Join(dir, name), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	text := "version = 1\nname = \"v\"\n[image]\nrootfs = \"r\"\n[process]\ncommand = [\"/x\"]\n[resources]\nmemory = \"64M\"\ncpus = 1\n" +
		"[[mounts]]\ntype = \"volume\"\nsource = %q\ntarget = \"/data\"\n"
	outside := plan.IDMap{UID: own + 100000, GID: own + 100000, Size: 65536}
	inside := plan.IDMap{UID: own, GID: own, Size: 65536}
	for _, tc := range []struct {
		name, volume string
		ids          plan.IDMap
		want         string
	}{
		{"new", "new", outside, ""},
		{"this service's", "mine", inside, ""},
		{"another's", "theirs", outside, fmt.Sprintf("v.toml:12: mounts[0].source: volume %s/theirs belongs to uid %d, outside this service's ids %s: a volume belongs to one service (use another volume name)", dir, own, outside)},
		{"not a directory", "file", inside, fmt.Sprintf("v.toml:12: mounts[0].source: volume %s/file is not a directory (remove it, or use another volume name)", dir)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc, err := manifest.Parse("v.toml", "/srv/v", []byte(fmt.Sprintf(text, tc.volume)))
			if err != nil {
				t.Fatal(err)
			}
			job := &plan.Job{Service: svc, Placement: plan.Placement{VolumeDir: dir, IDs: tc.ids}}
			err = checkVolumes(job)
			if got := fmt.Sprint(err); (tc.want == "" && err != nil) || (tc.want != "" && got != tc.want) {
				t.Errorf("got  %v\nwant %s", err, tc.want)
			}
		})
	}
}
