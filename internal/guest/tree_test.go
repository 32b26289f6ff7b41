package guest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// cpioEntry is one entry read back by readCpio.
type cpioEntry struct {
	name string
	mode uint32
	rdev [2]uint32
	data string
}

// readCpio parses a newc archive, checking the alignment rules the kernel's
// unpacker relies on (init/initramfs.c) and that everything is root's.
func readCpio(t *testing.T, b []byte) []cpioEntry {
	t.Helper()
	var out []cpioEntry
	off := 0
	field := func(i int) uint32 {
		v, err := strconv.ParseUint(string(b[off+6+8*i:off+14+8*i]), 16, 32)
		if err != nil {
			t.Fatalf("offset %d: field %d: %v", off, i, err)
		}
		return uint32(v)
	}
	align := func(n int) int { return (n + 3) &^ 3 }
	for {
		if off%4 != 0 || string(b[off:off+6]) != "070701" {
			t.Fatalf("offset %d: no newc header aligned to 4 bytes", off)
		}
		e := cpioEntry{mode: field(1), rdev: [2]uint32{field(9), field(10)}}
		if field(2) != 0 || field(3) != 0 {
			t.Errorf("offset %d: uid/gid %d/%d, want root", off, field(2), field(3))
		}
		size, namesize := int(field(6)), int(field(11))
		name := b[off+110 : off+110+namesize]
		if name[namesize-1] != 0 {
			t.Fatalf("offset %d: name not NUL-terminated", off)
		}
		e.name = string(name[:namesize-1])
		off = align(off + 110 + namesize)
		e.data = string(b[off : off+size])
		off = align(off + size)
		if e.name == "TRAILER!!!" {
			if off != len(b) {
				t.Errorf("%d bytes after the trailer", len(b)-off)
			}
			return out
		}
		out = append(out, e)
	}
}

func TestTreeArchive(t *testing.T) {
	host := filepath.Join(t.TempDir(), "src")
	os.MkdirAll(filepath.Join(host, "sub"), 0o750)
	os.WriteFile(filepath.Join(host, "sub", "f"), []byte("hello"), 0o640)
	os.Symlink("sub/f", filepath.Join(host, "link"))
	os.Chmod(host, 0o755)
	os.Chmod(filepath.Join(host, "sub"), 0o750|os.ModeSetgid)

	tr := tree{}
	tr.dir("/tmp", 0o777|os.ModeSticky)
	tr.data("/init", 0o755, []byte("#!/bin/sh\n"))
	tr.set("/dev/console", node{kind: kindCharDev, perm: 0o600, major: 5, minor: 1})
	if err := tr.hostPath("/srv/app", host); err != nil {
		t.Fatal(err)
	}
	tr.data("/srv/app/sub/f", 0o600, []byte("replaced")) // later wins
	var buf bytes.Buffer
	if err := tr.write(&buf); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range readCpio(t, buf.Bytes()) {
		got = append(got, fmt.Sprintf("%s %o %d,%d %q", e.name, e.mode, e.rdev[0], e.rdev[1], e.data))
	}
	want := []string{
		`dev 40755 0,0 ""`,
		`dev/console 20600 5,1 ""`,
		`init 100755 0,0 "#!/bin/sh\n"`,
		`srv 40755 0,0 ""`,
		`srv/app 40755 0,0 ""`,
		`srv/app/link 120777 0,0 "sub/f"`,
		`srv/app/sub 42750 0,0 ""`,
		`srv/app/sub/f 100600 0,0 "replaced"`,
		`tmp 41777 0,0 ""`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("archive:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestTreeRejectsSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	if err := mkfifo(filepath.Join(dir, "fifo")); err != nil {
		t.Skipf("cannot make a FIFO to test with: %v", err)
	}
	err := tree{}.hostPath("/x", dir)
	if err == nil || !strings.Contains(err.Error(), "create them in the script instead") {
		t.Errorf("hostPath of a directory with a FIFO: got %v, want an error saying what to do", err)
	}
}

func TestCleanGuestPath(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{in: "/usr/bin/x", want: "/usr/bin/x"},
		{in: "/a/../b/", want: "/b"},
		{in: "usr/bin/x", err: `guest path "usr/bin/x" is not absolute (use e.g. /usr/bin/safe-run)`},
		{in: "/", err: `guest path "/" names the root; name a file or directory under it`},
	} {
		got, err := cleanGuestPath(tc.in)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("cleanGuestPath(%q) error = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("cleanGuestPath(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}
