package image

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/internal/testenv"
)

// TestResolveNoSpace: an image larger than the free space of the cache's
// file system (a tmpfs with 2 MiB free, a 4 MiB image). The start fails
// with the fix, no entry, ref or temporary directory is left that a
// later start could take for the image, and once space is freed the next
// start unpacks it.
func TestResolveNoSpace(t *testing.T) {
	cacheDir := testenv.Tmpfs(t, 16<<20)
	big := make([]byte, 4<<20)
	rand.Read(big)
	img := testImage(t, nil, layerTar(t, file("etc/marker", "v1", 0o644), file("srv/big", string(big), 0o644)))
	dir := t.TempDir()
	writeLayout(t, filepath.Join(dir, "oci"), img, "v1")
	svc := service(t, dir, `oci = "oci:v1"`)
	ballast := testenv.Fill(t, cacheDir, 2<<20)

	_, err := Resolve(t.Context(), svc, Options{Dir: cacheDir})
	want := filepath.Join(dir, "service.toml") + ":4: image.oci: unpacking into the image cache " + cacheDir + ": layer 1 " +
		mustConfig(t, img).RootFS.DiffIDs[0].String() + `: "srv/big": no space left on device` +
		" (its file system is full, and nothing half-written was kept: free space there, e.g. with safe-run image prune, which removes the images no running service uses, then start again)"
	if err == nil || err.Error() != want {
		t.Errorf("resolve on a full disk: %v\nwant %s", err, want)
	}
	if n := entryCount(t, cacheDir); n != 0 {
		t.Errorf("%d entries after a failed unpack", n)
	}
	if refs, _ := readDirNames(filepath.Join(cacheDir, "refs")); len(refs) > 0 {
		t.Errorf("refs after a failed unpack: %q", refs)
	}
	assertCacheClean(t, cacheDir)
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}

	// Full at each step of a pull (tmpfs counts 4 KiB pages): the first
	// file, the content, the entry's record, the ref; then room for all.
	const fix = " (its file system is full, and nothing half-written was kept: free space there, e.g. with safe-run image prune, which removes the images no running service uses, then start again)"
	for _, step := range []struct {
		leave int64
		fails string // in the error; "": the pull succeeds
	}{
		{0, `"etc/marker": no space left on device`},
		{4<<20 - 4096, `"srv/big": no space left on device`},
		{4<<20 + 4096, "/image.json: no space left on device"},
		{4<<20 + 8192, "/ref.json: no space left on device"},
		{4<<20 + 12288, ""},
	} {
		ballast := testenv.Fill(t, cacheDir, step.leave)
		img, err := Resolve(t.Context(), svc, Options{Dir: cacheDir})
		switch {
		case step.fails == "" && err != nil:
			t.Errorf("%d bytes free: %v", step.leave, err)
		case step.fails != "" && (err == nil || !strings.Contains(err.Error(), step.fails) || !strings.HasSuffix(err.Error(), fix)):
			t.Errorf("%d bytes free: %v\nwant an error with %s, ending in%s", step.leave, err, step.fails, fix)
		}
		if err == nil {
			img.Release()
		}
		if refs, _ := readDirNames(filepath.Join(cacheDir, "refs")); len(refs) > 0 && err != nil {
			t.Errorf("%d bytes free: a ref after a failed pull: %q", step.leave, refs)
		}
		assertCacheClean(t, cacheDir)
		if _, _, err := Prune(cacheDir); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(ballast); err != nil {
			t.Fatal(err)
		}
	}

	ballast = testenv.Fill(t, cacheDir, 2<<20)
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	got, err := Resolve(t.Context(), svc, Options{Dir: cacheDir})
	if err != nil {
		t.Fatalf("resolve after space was freed: %v", err)
	}
	defer got.Release()
	if data, err := os.ReadFile(filepath.Join(got.Rootfs, "etc/marker")); err != nil || string(data) != "v1" {
		t.Errorf("etc/marker: %q, %v", data, err)
	}
	assertCacheClean(t, cacheDir)
}

// TestGzipBombStopsBeforeDiskFull: a gzipped archive is decompressed into
// a temporary file in the cache before it can be read. A bomb (64 MiB of
// zeros, 64 KiB gzipped) on a cache with 16 MiB must stop at the free
// space less a margin, naming the archive, the sizes and the fix, and
// leave no temporary file: it ran on until the copy hit the
// 34 GiB stream limit, or the disk filled (FS probe #4).
func TestGzipBombStopsBeforeDiskFull(t *testing.T) {
	cacheDir := testenv.Tmpfs(t, 16<<20)
	dir := t.TempDir()
	var gz bytes.Buffer
	z, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	zeros := make([]byte, 1<<20)
	for range 64 {
		z.Write(zeros)
	}
	z.Close()
	if err := os.WriteFile(filepath.Join(dir, "bomb.tar.gz"), gz.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	svc := service(t, dir, `archive = "bomb.tar.gz"`)
	_, err := Resolve(t.Context(), svc, Options{Dir: cacheDir})
	re := regexp.MustCompile(`^` + regexp.QuoteMeta(filepath.Join(dir, "service.toml")+":4: image.archive: decompressing "+filepath.Join(dir, "bomb.tar.gz")+
		": image too large: more than ") + `1[0-9]\.[0-9] MiB` + regexp.QuoteMeta(" uncompressed, and the image cache's file system ("+cacheDir+") has ") +
		`1[0-9]\.[0-9] MiB` + regexp.QuoteMeta(" free, of which 1.6 MiB stays free for the unpacked image and everything else (a decompression bomb? else free space there, e.g. with safe-run image prune, or give the archive uncompressed: gunzip it)") + `$`)
	if err == nil || !errors.Is(err, ErrTooLarge) || !re.MatchString(err.Error()) {
		t.Errorf("got %v\nwant %s", err, re)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(cacheDir, &st); err != nil {
		t.Fatal(err)
	}
	if free := int64(st.Bavail) * st.Bsize; free < 15<<20 {
		t.Errorf("%d bytes free after the failed start, want the temporary copy gone", free)
	}
	assertCacheClean(t, cacheDir)
}
