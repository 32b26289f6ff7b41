package launcher

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
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

// TestCheckSocketPaths: a state directory and name whose sockets a unix
// socket's path cannot hold (107 bytes) are refused before anything is
// made, naming the path, its length and the fix; the start failed
// halfway with "bind: invalid argument".
func TestCheckSocketPaths(t *testing.T) {
	name := strings.Repeat("n", 63)
	text := "version = 1\nname = %q\n[image]\nrootfs = \"r\"\n[process]\ncommand = [\"/x\"]\n%s[resources]\nmemory = \"64M\"\ncpus = 1\n"
	for _, tc := range []struct {
		name, svc, state, process, want string
	}{
		{"fits", "web", "/run/safe-run", "", ""},
		{"fits at 107", name, "/" + strings.Repeat("s", 29), "", ""},
		{"the sockets one byte over", name, "/" + strings.Repeat("s", 30), "", "v.toml:2: name: the service's socket /" + strings.Repeat("s", 30) + "/" + name + "/control.sock would be 108 bytes long, more than the 107 a unix socket's path may have (shorten it by 1: a state directory shorter than /" + strings.Repeat("s", 30) + " (SAFE_RUN_STATE_DIR, or XDG_RUNTIME_DIR without root), or a shorter name)"},
		{"the notify socket", name, "/" + strings.Repeat("s", 29), "notify = true\n", "v.toml:2: name: the service's socket /" + strings.Repeat("s", 29) + "/" + name + "/notify/notify.sock would be 113 bytes long, more than the 107 a unix socket's path may have (shorten it by 6: a state directory shorter than /" + strings.Repeat("s", 29) + " (SAFE_RUN_STATE_DIR, or XDG_RUNTIME_DIR without root), or a shorter name)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc, err := manifest.Parse("v.toml", "/srv/v", []byte(fmt.Sprintf(text, tc.svc, tc.process)))
			if err != nil {
				t.Fatal(err)
			}
			job := &plan.Job{Service: svc, Dirs: plan.Dirs{State: tc.state}, Placement: plan.Placement{StateDir: filepath.Join(tc.state, tc.svc)}}
			err = checkSocketPaths(job)
			if got := fmt.Sprint(err); (tc.want == "" && err != nil) || (tc.want != "" && got != tc.want) {
				t.Errorf("got  %v\nwant %s", err, tc.want)
			}
		})
	}
}
