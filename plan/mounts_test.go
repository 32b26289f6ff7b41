package plan

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/safe-run/safe-run/image"
	"github.com/safe-run/safe-run/manifest"
)

// TestCheckMounts: each mount target is resolved inside the container's
// root, through the image's symlinks and the mounts before it, before it
// is checked against what safe-run sets up itself; a file is bound only
// onto a file, a directory only onto a directory. Each refusal names its
// line and key, with the fix.
func TestCheckMounts(t *testing.T) {
	root := t.TempDir()
	rootfs := filepath.Join(root, "rootfs")
	host := filepath.Join(root, "host")
	for _, d := range []string{"etc", "data", "sys", "proc", "srv/deep"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"dir/sub", "dir/loop"} {
		if err := os.MkdirAll(filepath.Join(host, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{filepath.Join(rootfs, "etc/passwd"), filepath.Join(host, "file")} {
		if err := os.WriteFile(f, []byte("x\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for link, to := range map[string]string{
		"cg": "/sys/fs/cgroup", "psys": "/proc/sys", "up": "../../../../../etc", "self": "/",
		"varrun": "/run/secrets", "data2": "data", "srv/deep/back": "../../proc", "loop": "loop",
	} {
		if err := os.Symlink(to, filepath.Join(rootfs, link)); err != nil {
			t.Fatal(err)
		}
	}
	// A host directory bound at /data holds a symlink of its own: the
	// runtime follows it, inside the container, when it mounts below.
	if err := os.Symlink("/proc", filepath.Join(host, "dir", "p")); err != nil {
		t.Fatal(err)
	}
	mount := func(typ, src, target string) string {
		s := fmt.Sprintf("[[mounts]]\ntype = %q\ntarget = %q\n", typ, target)
		if src != "" {
			s += fmt.Sprintf("source = %q\n", src)
		}
		return s
	}
	head := "version = 1\nname = \"m\"\n[image]\nrootfs = \"r\"\n[process]\ncommand = [\"/x\"]\n[resources]\nmemory = \"64M\"\ncpus = 1\n"
	// The first mount is at line 10.
	for _, tc := range []struct {
		name   string
		mounts []string
		want   []string
	}{
		{"plain", []string{mount("tmpfs", "", "/tmp"), mount("bind", host+"/dir", "/data"), mount("bind", host+"/file", "/etc/passwd")}, nil},
		{"a new file target", []string{mount("bind", host+"/file", "/etc/app.conf")}, nil},
		{"a new directory target", []string{mount("volume", "v", "/var/lib/app")}, nil},
		{"symlink into /sys", []string{mount("tmpfs", "", "/cg/memory")},
			[]string{`m.toml:12: mounts[0].target: /cg/memory resolves to /sys/fs/cgroup/memory in the container (through the image's symlink /cg -> /sys/fs/cgroup): /sys is set up by safe-run itself (choose another target)`}},
		{"symlink into /proc", []string{mount("tmpfs", "", "/psys")},
			[]string{`m.toml:12: mounts[0].target: /psys resolves to /proc/sys in the container (through the image's symlink /psys -> /proc/sys): /proc is set up by safe-run itself (choose another target)`}},
		{"relative symlink, .. in it", []string{mount("tmpfs", "", "/srv/deep/back/x")},
			[]string{`m.toml:12: mounts[0].target: /srv/deep/back/x resolves to /proc/x in the container (through the image's symlink /srv/deep/back -> ../../proc): /proc is set up by safe-run itself (choose another target)`}},
		{"symlink out of the root stays in it", []string{mount("tmpfs", "", "/up/app")}, nil},
		{"symlink to the root", []string{mount("tmpfs", "", "/self")},
			[]string{`m.toml:12: mounts[0].target: /self resolves to / in the container (through the image's symlink /self -> /): a mount cannot replace the root filesystem (choose a target that is no symlink to /)`}},
		{"symlink to the secrets", []string{mount("tmpfs", "", "/varrun")},
			[]string{`m.toml:12: mounts[0].target: /varrun resolves to /run/secrets in the container (through the image's symlink /varrun -> /run/secrets): /run/secrets is set up by safe-run itself (choose another target)`}},
		{"a symlink loop", []string{mount("tmpfs", "", "/loop/x")},
			[]string{`m.toml:12: mounts[0].target: /loop/x: too many levels of symlinks in the image (at /loop)`}},
		{"through an earlier bind's symlink", []string{mount("bind", host+"/dir", "/data"), mount("tmpfs", "", "/data/p/sys")},
			[]string{`m.toml:16: mounts[1].target: /data/p/sys resolves to /proc/sys in the container (through the image's symlink /data/p -> /proc): /proc is set up by safe-run itself (choose another target)`}},
		{"the same target through a symlink", []string{mount("tmpfs", "", "/data"), mount("tmpfs", "", "/data2")},
			[]string{`m.toml:15: mounts[1].target: /data2 resolves to /data in the container (through the image's symlink /data2 -> data): that is already the target of mounts[0] (each target once)`}},
		{"a file onto a directory", []string{mount("bind", host+"/file", "/etc")},
			[]string{`m.toml:12: mounts[0].target: /etc is a directory, and the bind's source ` + host + `/file is a file (bind a directory there, or make the target a file's path, e.g. /etc/file)`}},
		{"a directory onto a file", []string{mount("bind", host+"/dir", "/etc/passwd")},
			[]string{`m.toml:12: mounts[0].target: /etc/passwd is a file, and the bind's source ` + host + `/dir is a directory (choose a directory as the target, or bind a file)`}},
		{"a tmpfs onto a file", []string{mount("tmpfs", "", "/etc/passwd")},
			[]string{`m.toml:12: mounts[0].target: /etc/passwd is a file, and a tmpfs is a directory (choose a directory as the target, or bind a file)`}},
		{"below a file", []string{mount("volume", "v", "/etc/passwd/x")},
			[]string{`m.toml:12: mounts[0].target: /etc/passwd/x: /etc/passwd is a file in the container, not a directory (choose another target)`}},
		{"below a bound file", []string{mount("bind", host+"/file", "/etc/app.conf"), mount("tmpfs", "", "/etc/app.conf/x")},
			[]string{`m.toml:16: mounts[1].target: /etc/app.conf/x: /etc/app.conf is a file in the container, not a directory (choose another target)`}},
		{"in an earlier tmpfs", []string{mount("tmpfs", "", "/data"), mount("bind", host+"/file", "/data/f")}, nil},
		{"every problem at once", []string{mount("tmpfs", "", "/cg"), mount("bind", host+"/file", "/etc")},
			[]string{
				`m.toml:12: mounts[0].target: /cg resolves to /sys/fs/cgroup in the container (through the image's symlink /cg -> /sys/fs/cgroup): /sys is set up by safe-run itself (choose another target)`,
				`m.toml:15: mounts[1].target: /etc is a directory, and the bind's source ` + host + `/file is a file (bind a directory there, or make the target a file's path, e.g. /etc/file)`,
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc, err := manifest.Parse("m.toml", "/srv/m", []byte(head+strings.Join(tc.mounts, "")))
			if err != nil {
				t.Fatal(err)
			}
			err = CheckMounts(svc, &image.Image{Rootfs: rootfs}, filepath.Join(root, "volumes"))
			want := strings.Join(tc.want, "\n")
			if got := fmt.Sprint(err); (want == "" && err != nil) || (want != "" && got != want) {
				t.Errorf("got  %v\nwant %s", err, want)
			}
		})
	}
}
