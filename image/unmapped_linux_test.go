package image

import (
	"archive/tar"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/internal/testenv"
)

// TestUnpackUnmappedOwner unpacks, as rootless safe-run does, in a user
// namespace that maps 65536 ids, a layer with files owned by 100000 and
// 4294967294, outside the map. The unpack failed with `"uidf": invalid
// argument` (FS probe #5); as root such a file shows as nobody in the
// container, and so it is nobody here too, with a note.
func TestUnpackUnmappedOwner(t *testing.T) {
	testenv.RequireRoot(t)
	work, err := os.MkdirTemp("", "safe-run-unmapped-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(work) })
	if err := os.Chmod(work, 0o755); err != nil {
		t.Fatal(err)
	}
	const base = 1_900_000_000 // the namespace's root on the host
	owned := func(e entry, uid, gid int) entry { e.hdr.Uid, e.hdr.Gid = uid, gid; return e }
	img := testImage(t, nil, layerTar(t,
		owned(file("mine", "m", 0o644), 1000, 1000),
		owned(file("uidf", "u", 0o644), 100000, 100000),
		owned(file("weird", "w", 0o644), 4294967294, 0),
		owned(entry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "link", Linkname: "uidf", Mode: 0o777}}, 100000, 5),
	))
	writeLayout(t, filepath.Join(work, "oci"), img, "v1")
	if err := filepath.Walk(filepath.Join(work, "oci"), func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Chmod(p, fi.Mode().Perm()|0o444|map[bool]os.FileMode{true: 0o111}[fi.IsDir()])
	}); err != nil {
		t.Fatal(err)
	}
	text := "version = 1\nname = \"test\"\n[image]\noci = \"oci:v1\"\n[process]\ncommand = [\"/bin/true\"]\n[resources]\nmemory = \"64M\"\ncpus = 1.0\n"
	if err := os.WriteFile(filepath.Join(work, "service.toml"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cacheDir := filepath.Join(work, "cache")
	if err := os.Mkdir(cacheDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(cacheDir, base, base); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/proc/self/exe", "-test.run=^$")
	cmd.Env = append(os.Environ(), "SAFE_RUN_TEST_RESOLVE="+filepath.Join(work, "service.toml")+":"+cacheDir)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		Credential:  &syscall.Credential{Uid: 0, Gid: 0},
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: base, Size: 65536}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: base, Size: 65536}},
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("unpacking in a user namespace of 65536 ids: %v\n%s", err, out)
	}
	rootfs, _ := filepath.Glob(filepath.Join(cacheDir, "entries", "*", "rootfs"))
	if len(rootfs) != 1 {
		t.Fatalf("entries: %q", rootfs)
	}
	for name, want := range map[string][2]uint32{
		"mine":  {base + 1000, base + 1000},
		"uidf":  {base + overflowID, base + overflowID},
		"weird": {base + overflowID, base},
		"link":  {base + overflowID, base + 5},
	} {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(rootfs[0], name), &st); err != nil {
			t.Fatal(err)
		}
		if got := [2]uint32{st.Uid, st.Gid}; got != want {
			t.Errorf("%s: owner %v on the host, want %v", name, got, want)
		}
	}
	record, err := os.ReadFile(filepath.Join(filepath.Dir(rootfs[0]), "image.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(record), "3 files owned by ids outside those safe-run can map here") || !strings.Contains(string(record), "/uidf (100000:100000)") {
		t.Errorf("no note of the files given to nobody in the entry's record:\n%s", record)
	}
}
