package image

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/safe-run/safe-run/manifest"
)

// entry is one tar entry of a test layer.
type entry struct {
	hdr  tar.Header
	body string
}

func file(name, body string, mode int64) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(body))}, body: body}
}

func dir(name string, mode int64) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode}}
}

func symlink(name, target string) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}}
}

func hardlink(name, target string) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target}}
}

var testTime = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)

// layerTar writes entries as an uncompressed tar layer.
func layerTar(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		if h.ModTime.IsZero() {
			h.ModTime = testTime
		}
		if h.Format == tar.FormatUnknown && h.PAXRecords != nil {
			h.Format = tar.FormatPAX
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("writing tar header %q: %v", h.Name, err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := io.WriteString(tw, e.body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// testImage builds an image of tar layers (gzipped by ggcr, OCI media
// types), for the host's platform.
func testImage(t testing.TB, edit func(*v1.ConfigFile), layers ...[]byte) v1.Image {
	t.Helper()
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	var ls []v1.Layer
	for _, data := range layers {
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(data)), nil
		}, tarball.WithMediaType(types.OCILayer))
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
	}
	img, err := mutate.AppendLayers(base, ls...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	if edit != nil {
		edit(cf)
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return img
}

// writeLayout writes img into a new OCI layout dir under tag.
func writeLayout(t testing.TB, dir string, img v1.Image, tag string) layout.Path {
	t.Helper()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{refNameAnnotation: tag})); err != nil {
		t.Fatal(err)
	}
	return p
}

// service parses a manifest whose [image] section is img, with resources
// set so that policy passes.
func service(t testing.TB, dir, img string, allow ...string) *manifest.Service {
	t.Helper()
	text := "version = 1\nname = \"test\"\n[image]\n" + img + "\n[process]\ncommand = [\"/bin/true\"]\n[resources]\nmemory = \"64M\"\ncpus = 1.0\n"
	if len(allow) > 0 {
		text += "[insecure]\nreason = \"test\"\nallow = [\"" + strings.Join(allow, "\", \"") + "\"]\n"
	}
	s, err := manifest.Parse(filepath.Join(dir, "service.toml"), dir, []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// tree describes every file under root: type, mode, owner, size, content
// digest or link target. Comparing two of them shows any change.
func tree(t testing.TB, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		st := info.Sys().(*syscall.Stat_t)
		desc := info.Mode().String() + " " + itoa(st.Uid) + ":" + itoa(st.Gid)
		switch {
		case info.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			desc += " " + hex.EncodeToString(sum[:8]) + " nlink=" + itoa(uint32(st.Nlink))
		case info.Mode()&fs.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			desc += " -> " + l
		}
		out[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// sum8 is how tree shows a file's content.
func sum8(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:8])
}

func itoa(n uint32) string { return strconv.FormatUint(uint64(n), 10) }

func sortedKeys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func diffTrees(t testing.TB, before, after map[string]string) {
	t.Helper()
	for _, k := range sortedKeys(before) {
		if after[k] != before[k] {
			t.Errorf("outside the rootfs, %s changed: %q -> %q", k, before[k], after[k])
		}
	}
	for _, k := range sortedKeys(after) {
		if _, ok := before[k]; !ok {
			t.Errorf("outside the rootfs, %s appeared: %q", k, after[k])
		}
	}
}
