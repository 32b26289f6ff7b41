package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"github.com/safe-run/safe-run/internal/testenv"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"
)

// rawLayers makes an image of uncompressed tar layers, without a manifest:
// what unpackInto needs.
func rawLayers(layers ...[]byte) *found {
	f := &found{source: "test"}
	for _, data := range layers {
		d := digestOf(data)
		f.layers = append(f.layers, layer{digest: d, diffID: d, size: int64(len(data)),
			open: func(context.Context) (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }})
	}
	return f
}

// sandbox is a directory holding the rootfs to unpack into, and beside it
// "outside", which stands for the host: no layer may change it.
type sandbox struct {
	dir, root, out string
}

func newSandbox(t *testing.T) sandbox { return newSandboxIn(t, t.TempDir()) }

// newSandboxIn makes the sandbox in dir, which must be empty.
func newSandboxIn(t *testing.T, dir string) sandbox {
	sb := sandbox{dir: dir, root: filepath.Join(dir, "rootfs"), out: filepath.Join(dir, "outside")}
	if err := os.MkdirAll(filepath.Join(sb.out, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"canary", "etc/passwd"} {
		if err := os.WriteFile(filepath.Join(sb.out, f), []byte("host\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return sb
}

// host is everything in the sandbox but the rootfs.
func (sb sandbox) host(t *testing.T) map[string]string {
	m := tree(t, sb.dir)
	for k := range m {
		if k == "rootfs" || strings.HasPrefix(k, "rootfs/") {
			delete(m, k)
		}
	}
	return m
}

func (sb sandbox) in(rel string) string { return filepath.Join(sb.root, rel) }

func readIn(t *testing.T, sb sandbox, rel string) string {
	t.Helper()
	data, err := os.ReadFile(sb.in(rel))
	if err != nil {
		t.Fatalf("reading %s in the rootfs: %v", rel, err)
	}
	return string(data)
}

func lstatIn(t *testing.T, sb sandbox, rel string) (os.FileInfo, bool) {
	t.Helper()
	fi, err := os.Lstat(sb.in(rel))
	if errors.Is(err, os.ErrNotExist) {
		return nil, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return fi, true
}

func mustExist(t *testing.T, sb sandbox, rel string) os.FileInfo {
	t.Helper()
	fi, ok := lstatIn(t, sb, rel)
	if !ok {
		t.Fatalf("%s is missing from the rootfs", rel)
	}
	return fi
}

func mustNotExist(t *testing.T, sb sandbox, rel string) {
	t.Helper()
	if _, ok := lstatIn(t, sb, rel); ok {
		t.Fatalf("%s is in the rootfs, it should not be", rel)
	}
}

func hasNote(notes []string, part string) bool {
	for _, n := range notes {
		if strings.Contains(n, part) {
			return true
		}
	}
	return false
}

// TestUnpackMalicious applies hostile layers: each is refused or
// neutralised, and the host (the sandbox outside the rootfs) never changes.
func TestUnpackMalicious(t *testing.T) {
	testenv.RequireRoot(t)
	cases := []struct {
		name    string
		layers  func(out string) [][]entry
		setuid  bool
		lim     limits
		wantErr error  // errors.Is; nil: unpacking succeeds
		errText string // part of the error
		check   func(t *testing.T, sb sandbox, st unpackStats)
	}{{
		name:    "dotdot",
		layers:  func(string) [][]entry { return [][]entry{{file("../escape", "x", 0o644)}} },
		wantErr: ErrUnsafeLayer, errText: `"../escape": unsafe layer: the name climbs out of the root filesystem`,
	}, {
		name:    "dotdot inside a path",
		layers:  func(string) [][]entry { return [][]entry{{file("a/../../../escape", "x", 0o644)}} },
		wantErr: ErrUnsafeLayer,
	}, {
		name: "absolute path",
		layers: func(out string) [][]entry {
			return [][]entry{{file(out+"/canary", "pwned", 0o644), file("/etc/abs", "abs", 0o644)}}
		},
		check: func(t *testing.T, sb sandbox, _ unpackStats) {
			if got := readIn(t, sb, sb.out+"/canary"); got != "pwned" {
				t.Errorf("absolute path landed elsewhere: %q", got)
			}
			if got := readIn(t, sb, "etc/abs"); got != "abs" {
				t.Errorf("etc/abs = %q", got)
			}
		},
	}, {
		name: "absolute symlink then file through it",
		layers: func(out string) [][]entry {
			return [][]entry{{symlink("evil", out), file("evil/canary", "pwned", 0o644), file("evil/new", "pwned", 0o644)}}
		},
		check: func(t *testing.T, sb sandbox, _ unpackStats) {
			// Followed as the container would: inside the root.
			if got := readIn(t, sb, sb.out+"/new"); got != "pwned" {
				t.Errorf("file through the symlink = %q", got)
			}
		},
	}, {
		name: "relative symlink climbing out, then file through it",
		layers: func(out string) [][]entry {
			return [][]entry{{symlink("up", strings.Repeat("../", 20)+strings.TrimPrefix(out, "/")), file("up/canary", "pwned", 0o644)}}
		},
		check: func(t *testing.T, sb sandbox, _ unpackStats) {
			if got := readIn(t, sb, sb.out+"/canary"); got != "pwned" {
				t.Errorf("file through the symlink = %q", got)
			}
		},
	}, {
		name: "symlink in one layer, file through it in the next",
		layers: func(out string) [][]entry {
			return [][]entry{{symlink("etc", out+"/etc")}, {file("etc/passwd", "root::0:0::/:/bin/sh\n", 0o644)}}
		},
		check: func(t *testing.T, sb sandbox, _ unpackStats) {
			mustExist(t, sb, sb.out+"/etc/passwd")
		},
	}, {
		name: "file over a symlink replaces the symlink",
		layers: func(out string) [][]entry {
			return [][]entry{{symlink("passwd", out+"/canary")}, {file("passwd", "image", 0o644)}}
		},
		check: func(t *testing.T, sb sandbox, _ unpackStats) {
			if fi := mustExist(t, sb, "passwd"); !fi.Mode().IsRegular() {
				t.Errorf("passwd is %v, want a regular file", fi.Mode())
			}
		},
	}, {
		name:    "hardlink climbing out",
		layers:  func(string) [][]entry { return [][]entry{{hardlink("hl", "../outside/canary")}} },
		wantErr: ErrUnsafeLayer, errText: "hardlink target",
	}, {
		name:    "hardlink to an absolute host path",
		layers:  func(out string) [][]entry { return [][]entry{{hardlink("hl", out+"/canary")}} },
		errText: "no such file or directory",
	}, {
		name: "hardlink through a symlink to the host",
		layers: func(out string) [][]entry {
			return [][]entry{{symlink("s", out), hardlink("hl", "s/canary")}}
		},
		errText: "no such file or directory",
	}, {
		name: "hardlink to a directory",
		layers: func(string) [][]entry {
			return [][]entry{{dir("d/", 0o755), hardlink("hl", "d")}}
		},
		wantErr: ErrUnsafeLayer, errText: "a hardlink to the directory d",
	}, {
		name: "file over a hardlink does not write through it",
		layers: func(string) [][]entry {
			return [][]entry{{file("a", "original", 0o644), hardlink("b", "a")}, {file("b", "changed", 0o644)}}
		},
		check: func(t *testing.T, sb sandbox, _ unpackStats) {
			if got := readIn(t, sb, "a"); got != "original" {
				t.Errorf("a = %q, written through the hardlink", got)
			}
			if got := readIn(t, sb, "b"); got != "changed" {
				t.Errorf("b = %q", got)
			}
		},
	}, {
		name: "device nodes and FIFOs are dropped",
		layers: func(string) [][]entry {
			return [][]entry{{file("dev/sda", "lower", 0o644)}, {
				{hdr: tar.Header{Typeflag: tar.TypeBlock, Name: "dev/sda", Devmajor: 8, Mode: 0o660}},
				{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "dev/mem", Devmajor: 1, Devminor: 1, Mode: 0o666}},
				{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "run/fifo", Mode: 0o644}},
				hardlink("dev/mem2", "dev/mem"),
			}}
		},
		check: func(t *testing.T, sb sandbox, st unpackStats) {
			for _, p := range []string{"dev/sda", "dev/mem", "dev/mem2", "run/fifo"} {
				mustNotExist(t, sb, p)
			}
			if !hasNote(st.notes, "dropped 4 device nodes and FIFOs from the image (safe-run gives the container its /dev): /dev/sda, /dev/mem, /run/fifo, /dev/mem2") {
				t.Errorf("notes = %q", st.notes)
			}
		},
	}, {
		name: "setuid and setgid bits are stripped",
		layers: func(string) [][]entry {
			return [][]entry{{file("bin/su", "x", 0o4755), file("bin/wall", "x", 0o2755), dir("srv/", 0o2775)}}
		},
		check: func(t *testing.T, sb sandbox, st unpackStats) {
			for p, want := range map[string]os.FileMode{"bin/su": 0o755, "bin/wall": 0o755, "srv": os.ModeDir | os.ModeSetgid | 0o775} {
				if fi := mustExist(t, sb, p); fi.Mode() != want {
					t.Errorf("%s has mode %v, want %v", p, fi.Mode(), want)
				}
			}
			want := `removed setuid/setgid bits from 2 files: /bin/su, /bin/wall ([insecure] allow = ["setuid_binaries"] keeps them)`
			if !hasNote(st.notes, want) {
				t.Errorf("notes = %q, want %q", st.notes, want)
			}
		},
	}, {
		name:   "setuid kept when allowed",
		setuid: true,
		layers: func(string) [][]entry { return [][]entry{{file("bin/su", "x", 0o4755)}} },
		check: func(t *testing.T, sb sandbox, _ unpackStats) {
			if fi := mustExist(t, sb, "bin/su"); fi.Mode() != os.ModeSetuid|0o755 {
				t.Errorf("bin/su has mode %v", fi.Mode())
			}
		},
	}, {
		name:    "a file larger than the bound",
		lim:     limits{bytes: 1 << 20},
		layers:  func(string) [][]entry { return [][]entry{{file("big", strings.Repeat("x", 2<<20), 0o644)}} },
		wantErr: ErrTooLarge, errText: "its 2.0 MiB would take the image past 1.0 MiB of files",
	}, {
		name: "many files past the bound",
		lim:  limits{entries: 100},
		layers: func(string) [][]entry {
			var l []entry
			for i := range 200 {
				l = append(l, file("f"+itoa(uint32(i)), "", 0o644))
			}
			return [][]entry{l}
		},
		wantErr: ErrTooLarge, errText: "more than 100 files (a tar bomb?)",
	}, {
		name: "whiteouts and opaque directories",
		layers: func(string) [][]entry {
			return [][]entry{
				{file("a/x", "1", 0o644), file("a/sub/y", "1", 0o644), file("b", "1", 0o644), file("c/keep", "1", 0o644)},
				{dir("a/", 0o755), file("a/sub/z", "2", 0o644), file("a/.wh..wh..opq", "", 0o644), file("a/new", "2", 0o644),
					file(".wh.b", "", 0o644), file("d", "2", 0o644), file(".wh.d", "", 0o644), file("c/.wh.nothing", "", 0o644)},
			}
		},
		check: func(t *testing.T, sb sandbox, _ unpackStats) {
			for _, p := range []string{"a/x", "a/sub/y", "b", ".wh.b", "a/.wh..wh..opq"} {
				mustNotExist(t, sb, p)
			}
			for _, p := range []string{"a/sub/z", "a/new", "d", "c/keep"} {
				mustExist(t, sb, p) // d: a whiteout hides lower layers only
			}
		},
	}, {
		name:    "whiteout of dot-dot",
		layers:  func(string) [][]entry { return [][]entry{{file("a/.wh...", "", 0o644)}} },
		wantErr: ErrUnsafeLayer, errText: "a whiteout that names no file",
	}, {
		name:    "whiteout of dot",
		layers:  func(string) [][]entry { return [][]entry{{file("a/.wh..", "", 0o644)}} },
		wantErr: ErrUnsafeLayer,
	}, {
		name: "whiteouts through a symlink to the host",
		layers: func(out string) [][]entry {
			return [][]entry{{symlink("w", out)}, {file("w/.wh.canary", "", 0o644), file("w/etc/.wh..wh..opq", "", 0o644)}}
		},
		check: func(t *testing.T, sb sandbox, _ unpackStats) {
			if fi := mustExist(t, sb, "w"); fi.Mode()&os.ModeSymlink == 0 {
				t.Errorf("w is %v", fi.Mode())
			}
		},
	}, {
		name: "whiteout of a symlink removes the link only",
		layers: func(out string) [][]entry {
			return [][]entry{{symlink("w", out+"/canary")}, {file(".wh.w", "", 0o644)}}
		},
		check: func(t *testing.T, sb sandbox, _ unpackStats) { mustNotExist(t, sb, "w") },
	}, {
		name: "symlink loop",
		layers: func(string) [][]entry {
			return [][]entry{{symlink("l1", "l2"), symlink("l2", "l1"), file("l1/x", "x", 0o644)}}
		},
		errText: "too many levels of symbolic links",
	}, {
		name:    "a file as a parent",
		layers:  func(string) [][]entry { return [][]entry{{file("f", "x", 0o644), file("f/g", "x", 0o644)}} },
		errText: "a parent of it is not a directory (f)",
	}, {
		name: "odd names",
		layers: func(string) [][]entry {
			return [][]entry{{file("new\nline", "1", 0o644), file(`back\slash`, "2", 0o644), file("ünï cödé", "3", 0o644),
				file("./dot/./slash//double", "4", 0o644), file("-dash", "5", 0o644), file(" space ", "6", 0o644), file("trailing/.", "", 0o644)}}
		},
		errText: "", // "trailing/." names the directory "trailing" as a file: fine
		check: func(t *testing.T, sb sandbox, _ unpackStats) {
			for p, want := range map[string]string{"new\nline": "1", `back\slash`: "2", "ünï cödé": "3", "dot/slash/double": "4", "-dash": "5", " space ": "6"} {
				if got := readIn(t, sb, p); got != want {
					t.Errorf("%q = %q, want %q", p, got, want)
				}
			}
		},
	}, {
		name:    "a name longer than the kernel takes",
		layers:  func(string) [][]entry { return [][]entry{{file(strings.Repeat("n", 300), "x", 0o644)}} },
		errText: "file name too long",
	}, {
		name: "an owner id that is no id",
		layers: func(string) [][]entry {
			e := file("f", "x", 0o644)
			e.hdr.Uid = 4294967295
			return [][]entry{{e}}
		},
		wantErr: ErrUnsafeLayer, errText: "owner 4294967295:0 is not a valid id",
	}, {
		name: "privileged extended attributes are dropped",
		layers: func(string) [][]entry {
			e := file("bin/ping", "x", 0o755)
			e.hdr.PAXRecords = map[string]string{
				"SCHILY.xattr.security.capability":      "\x01\x00\x00\x02\x00\x20\x00\x00",
				"SCHILY.xattr.trusted.overlay.opaque":   "y",
				"SCHILY.xattr.security.selinux":         "system_u:object_r:bin_t",
				"SCHILY.xattr.user.mime_type":           "application/x-executable",
				"SCHILY.xattr.system.posix_acl_access":  "\x02\x00\x00\x00",
				"SCHILY.xattr.trusted.overlay.redirect": "/etc",
			}
			d := dir("opaque/", 0o755)
			d.hdr.PAXRecords = map[string]string{"SCHILY.xattr.trusted.overlay.opaque": "y"}
			return [][]entry{{e, d}}
		},
		check: func(t *testing.T, sb sandbox, st unpackStats) {
			for _, p := range []string{"bin/ping", "opaque"} {
				names := make([]byte, 4096)
				n, err := unix.Llistxattr(sb.in(p), names)
				if err != nil {
					t.Fatal(err)
				}
				for _, x := range strings.Split(strings.TrimRight(string(names[:n]), "\x00"), "\x00") {
					if x != "" && !strings.HasPrefix(x, "user.") {
						t.Errorf("%s has the xattr %s", p, x)
					}
				}
			}
			want := "dropped extended attributes an image may not set: security.capability, security.selinux, system.posix_acl_access, trusted.overlay.opaque, trusted.overlay.redirect"
			if !hasNote(st.notes, want) {
				t.Errorf("notes = %q, want %q", st.notes, want)
			}
		},
	}, {
		// FS probe #13: the whole name was in the error.
		name: "a 5000-byte name, shortened in the error",
		layers: func(string) [][]entry {
			return [][]entry{{file(strings.Repeat("a", 4900)+"/"+strings.Repeat("b", 99), "x", 0o644)}}
		},
		errText: `: "` + strings.Repeat("a", 100) + `"...(4860 bytes)..."` + strings.Repeat("b", 40) + `": resolving "` + strings.Repeat("a", 100) + `"...(4760 bytes)..."` + strings.Repeat("a", 40) + `" in the image: file name too long`,
	}, {
		name: "directory replaced by a file and back",
		layers: func(string) [][]entry {
			return [][]entry{{file("x/a", "1", 0o644)}, {file("x", "file", 0o644)}, {dir("x/", 0o700), file("x/b", "2", 0o644)}}
		},
		check: func(t *testing.T, sb sandbox, _ unpackStats) {
			mustNotExist(t, sb, "x/a")
			if fi := mustExist(t, sb, "x"); !fi.IsDir() || fi.Mode().Perm() != 0o700 {
				t.Errorf("x is %v", fi.Mode())
			}
			mustExist(t, sb, "x/b")
		},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sb := newSandbox(t)
			before := sb.host(t)
			var layers [][]byte
			for _, l := range tc.layers(sb.out) {
				layers = append(layers, layerTar(t, l...))
			}
			st, err := unpackInto(t.Context(), rawLayers(layers...), sb.root, tc.setuid, Options{limits: tc.lim})
			switch {
			case tc.wantErr == nil && tc.errText == "" && err != nil:
				t.Fatalf("unpacking: %v", err)
			case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
				t.Errorf("error %v, want %v", err, tc.wantErr)
			case tc.errText != "" && (err == nil || !strings.Contains(err.Error(), tc.errText)):
				t.Errorf("error %v, want it to say %q", err, tc.errText)
			}
			diffTrees(t, before, sb.host(t))
			if tc.check != nil && err == nil {
				tc.check(t, sb, st)
			}
		})
	}
}

// TestUnpackKeepsMetadata: owners, modes, times, symlinks and hardlinks
// come out as the layer says.
func TestUnpackKeepsMetadata(t *testing.T) {
	testenv.RequireRoot(t)
	sb := newSandbox(t)
	owned := file("home/app/data", "data", 0o640)
	owned.hdr.Uid, owned.hdr.Gid = 1000, 1001
	home := dir("home/app/", 0o750)
	home.hdr.Uid, home.hdr.Gid = 1000, 1000
	layers := [][]byte{layerTar(t, dir("home/", 0o755), home, owned, symlink("home/app/link", "/etc/passwd"),
		hardlink("home/app/hard", "home/app/data"), file("usr/bin/tool", "#!/bin/sh\n", 0o755))}
	if _, err := unpackInto(t.Context(), rawLayers(layers...), sb.root, false, Options{}); err != nil {
		t.Fatal(err)
	}
	got := tree(t, sb.root)
	want := map[string]string{
		".":             "drwxr-xr-x 0:0",
		"home":          "drwxr-xr-x 0:0",
		"home/app":      "drwxr-x--- 1000:1000",
		"home/app/data": "-rw-r----- 1000:1001 " + sum8("data") + " nlink=2",
		"home/app/hard": "-rw-r----- 1000:1001 " + sum8("data") + " nlink=2",
		"home/app/link": "Lrwxrwxrwx 0:0 -> /etc/passwd",
		"usr":           "drwxr-xr-x 0:0",
		"usr/bin":       "drwxr-xr-x 0:0",
		"usr/bin/tool":  "-rwxr-xr-x 0:0 " + sum8("#!/bin/sh\n") + " nlink=1",
	}
	for _, k := range sortedKeys(got) {
		if got[k] != want[k] {
			t.Errorf("%s: %q, want %q", k, got[k], want[k])
		}
	}
	for _, p := range []string{"home/app", "home/app/data", "home/app/link"} {
		var st unix.Stat_t
		if err := unix.Lstat(sb.in(p), &st); err != nil {
			t.Fatal(err)
		}
		if mt := st.Mtim; mt.Sec != testTime.Unix() {
			t.Errorf("%s has mtime %d, want %d", p, mt.Sec, testTime.Unix())
		}
	}
}

// TestUnpackDigests: a layer whose content does not match its digests
// fails the unpack.
func TestUnpackDigests(t *testing.T) {
	data := layerTar(t, file("a", "1", 0o644))
	other := layerTar(t, file("a", "2", 0o644))
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(data)
	zw.Close()
	open := func(b []byte) func(context.Context) (io.ReadCloser, error) {
		return func(context.Context) (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	}
	for _, tc := range []struct {
		name  string
		l     layer
		error string
	}{
		{"blob digest", layer{digest: digestOf(data), diffID: digestOf(data), open: open(other)},
			"the blob has digest " + digestOf(other).String() + ", the manifest says " + digestOf(data).String()},
		{"diff_id", layer{digest: digestOf(gz.Bytes()), diffID: digestOf(other), open: open(gz.Bytes())},
			"the uncompressed layer has digest " + digestOf(data).String() + ", the config says " + digestOf(other).String()},
		{"trailing data after the tar", layer{digest: digestOf(data), diffID: digestOf(data), open: open(append(bytes.Clone(data), "junk"...))},
			"the blob has digest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &found{layers: []layer{tc.l}}
			_, err := unpackInto(t.Context(), f, filepath.Join(t.TempDir(), "rootfs"), false, Options{})
			if !errors.Is(err, ErrDigestMismatch) || !strings.Contains(err.Error(), tc.error) {
				t.Errorf("error %v, want a digest mismatch saying %q", err, tc.error)
			}
		})
	}
}

// TestUnpackDecompressionBomb: a small gzip that inflates to more than the
// bound stops with ErrTooLarge, having written no more than the bound.
func TestUnpackDecompressionBomb(t *testing.T) {
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	tw := tar.NewWriter(zw)
	const size = 256 << 20
	for _, n := range []string{"zeros1", "zeros2"} {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: n, Size: size, Mode: 0o644})
		io.Copy(tw, io.LimitReader(zeroReader{}, size))
	}
	tw.Close()
	zw.Close()
	if gz.Len() > 2<<20 {
		t.Fatalf("the bomb is %d bytes compressed", gz.Len())
	}
	data := gz.Bytes()
	f := &found{layers: []layer{{digest: digestOf(data), diffID: v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("0", 64)},
		open: func(context.Context) (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }}}}
	root := filepath.Join(t.TempDir(), "rootfs")
	_, err := unpackInto(t.Context(), f, root, false, Options{limits: limits{bytes: 300 << 20}})
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), `"zeros2": image too large: its 256.0 MiB would take the image past 300.0 MiB of files`) {
		t.Fatalf("error %v", err)
	}
	if du := diskUsage(root); du > 300<<20 {
		t.Errorf("%d bytes written past the bound", du)
	}
}

type zeroReader struct{}

func (zeroReader) Read(b []byte) (int, error) {
	clear(b)
	return len(b), nil
}

func TestEntryPath(t *testing.T) {
	for name, want := range map[string]string{
		"a/b": "a/b", "./a/b/": "a/b", "/etc/passwd": "etc/passwd", "//a//b": "a/b", ".": "", "./": "", "/": "",
		"a/./b": "a/b", "...": "...", "a..b": "a..b",
	} {
		got, err := entryPath(name)
		if err != nil || got != want {
			t.Errorf("entryPath(%q) = %q, %v; want %q", name, got, err, want)
		}
	}
	for _, name := range []string{"..", "../a", "a/..", "a/../b", "/../etc", "a\x00b"} {
		if _, err := entryPath(name); !errors.Is(err, ErrUnsafeLayer) {
			t.Errorf("entryPath(%q): %v, want ErrUnsafeLayer", name, err)
		}
	}
}

// TestUnpackStreamBomb: zeros after the end of the tar, which no file
// holds, are bounded too: the digest check reads no further than the bound.
func TestUnpackStreamBomb(t *testing.T) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(layerTar(t, file("a", "1", 0o644)))
	io.Copy(zw, io.LimitReader(zeroReader{}, 64<<20))
	zw.Close()
	data := gz.Bytes()
	f := &found{layers: []layer{{digest: digestOf(data), diffID: digestOf(data), size: int64(len(data)),
		open: func(context.Context) (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }}}}
	_, err := unpackInto(t.Context(), f, filepath.Join(t.TempDir(), "rootfs"), false, Options{limits: limits{bytes: 1 << 20, entries: 10}})
	if !errors.Is(err, ErrTooLarge) || !strings.HasSuffix(err.Error(), "image too large: more than 2.0 MiB of uncompressed data (a decompression bomb?)") {
		t.Errorf("error %v", err)
	}
}

// TestUnpackUmask: directories a layer implies are 0755, whatever the
// umask of the process that unpacks.
func TestUnpackUmask(t *testing.T) {
	old := unix.Umask(0o077)
	defer unix.Umask(old)
	sb := newSandbox(t)
	if _, err := unpackInto(t.Context(), rawLayers(layerTar(t, file("a/b/f", "x", 0o644))), sb.root, false, Options{}); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{".": 0o755, "a": 0o755, "a/b": 0o755, "a/b/f": 0o644} {
		if fi := mustExist(t, sb, p); fi.Mode().Perm() != want {
			t.Errorf("%s has mode %v, want %v", p, fi.Mode().Perm(), want)
		}
	}
}
