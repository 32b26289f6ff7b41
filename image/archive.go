package image

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// archive is a docker save or OCI archive (a tar of an OCI layout), indexed
// once so that each file in it is read in place.
type archive struct {
	f     *os.File // the tar; a decompressed copy when the archive is gzipped
	name  string   // for messages
	files map[string]section
	links map[string]string // symlinks and hardlinks: name -> target name
}

type section struct{ off, size int64 }

// maxArchiveEntries bounds the index: an archive holds a few files per
// layer, not a file system.
const maxArchiveEntries = 1 << 16

// indexArchive lists the regular files of the tar f and where their data
// starts. archive/tar leaves f at the start of an entry's data after Next,
// and skips data by seeking, so indexing reads only the headers.
func indexArchive(f *os.File, name string) (*archive, error) {
	a := &archive{f: f, name: name, files: map[string]section{}, links: map[string]string{}}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	tr := tar.NewReader(f)
	for n := 0; ; n++ {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w (not a tar archive, or truncated)", name, err)
		}
		if n >= maxArchiveEntries {
			return nil, fmt.Errorf("reading %s: more than %d entries (not an image archive)", name, maxArchiveEntries)
		}
		p := archivePath(hdr.Name)
		switch hdr.Typeflag {
		case tar.TypeReg:
			off, err := f.Seek(0, io.SeekCurrent)
			if err != nil {
				return nil, err
			}
			a.files[p] = section{off, hdr.Size}
		case tar.TypeSymlink:
			a.links[p] = archivePath(path.Join(path.Dir(p), hdr.Linkname))
		case tar.TypeLink:
			a.links[p] = archivePath(hdr.Linkname)
		}
	}
	return a, nil
}

func archivePath(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}

// open returns the file name of the archive, following the links older
// docker versions use for layers shared between images.
func (a *archive) open(name string) (*io.SectionReader, error) {
	name = archivePath(name)
	for range 8 {
		if s, ok := a.files[name]; ok {
			return io.NewSectionReader(a.f, s.off, s.size), nil
		}
		target, ok := a.links[name]
		if !ok {
			break
		}
		name = target
	}
	return nil, fmt.Errorf("%s has no file %s: %w", a.name, name, fs.ErrNotExist)
}

func (a *archive) has(name string) bool {
	_, err := a.open(name)
	return err == nil
}

func (a *archive) readSmall(name string, max int64) ([]byte, error) {
	r, err := a.open(name)
	if err != nil {
		return nil, err
	}
	if r.Size() > max {
		return nil, fmt.Errorf("%s: %s is larger than %d bytes", a.name, name, max)
	}
	return io.ReadAll(r)
}

// The archive as the store of an OCI layout.
func (a *archive) manifest(ctx context.Context, d v1.Descriptor) ([]byte, error) {
	rc, err := a.blob(ctx, d)
	if err != nil {
		return nil, err
	}
	return readVerified(rc, d.Digest, maxManifestSize)
}

func (a *archive) blob(_ context.Context, d v1.Descriptor) (io.ReadCloser, error) {
	if !validDigest(d.Digest) {
		return nil, fmt.Errorf("%q is not a sha256 digest", d.Digest)
	}
	r, err := a.open("blobs/sha256/" + d.Digest.Hex)
	if err != nil {
		return nil, err
	}
	return io.NopCloser(r), nil
}

// image finds the one image of the archive: through index.json when it is
// an OCI archive (docker 25 and later write one too), else through docker's
// manifest.json.
func (a *archive) image(ctx context.Context) (*found, error) {
	source := "archive " + a.name
	if a.has("index.json") {
		data, err := a.readSmall("index.json", maxManifestSize)
		if err != nil {
			return nil, err
		}
		idx, err := parseIndex(data, a.name+": index.json")
		if err != nil {
			return nil, err
		}
		d, err := pickTagged(idx, "", a.name, "an archive names no tag: copy one image out, e.g. skopeo copy oci-archive:FILE:TAG oci:DIR:TAG, and use oci = \"DIR:TAG\"")
		if err != nil {
			return nil, err
		}
		return resolveDesc(ctx, a, d, source)
	}
	if !a.has("manifest.json") {
		return nil, fmt.Errorf("%s is neither a docker save archive (no manifest.json) nor an OCI archive (no index.json)", a.name)
	}
	data, err := a.readSmall("manifest.json", maxManifestSize)
	if err != nil {
		return nil, err
	}
	var m tarball.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("reading %s: manifest.json: %w", a.name, err)
	}
	if len(m) != 1 {
		var tags []string
		for _, d := range m {
			tags = append(tags, d.RepoTags...)
		}
		return nil, fmt.Errorf("%s holds %d images%s: save one image per archive (docker save IMAGE)", a.name, len(m), tagList(tags))
	}
	cfg, err := a.readSmall(m[0].Config, maxConfigSize)
	if err != nil {
		return nil, err
	}
	f := &found{source: source}
	if err := f.setConfig(cfg); err != nil {
		return nil, err
	}
	if len(m[0].Layers) != len(f.config.RootFS.DiffIDs) {
		return nil, fmt.Errorf("%s: manifest.json names %d layers but the config names %d (a broken archive)", a.name, len(m[0].Layers), len(f.config.RootFS.DiffIDs))
	}
	for i, name := range m[0].Layers {
		r, err := a.open(name)
		if err != nil {
			return nil, err
		}
		f.layers = append(f.layers, layer{
			diffID: f.config.RootFS.DiffIDs[i], size: r.Size(),
			open: func(context.Context) (io.ReadCloser, error) {
				return io.NopCloser(io.NewSectionReader(r, 0, r.Size())), nil
			},
		})
	}
	return f, nil
}

// tagList is ", tagged a, b" for tags, or nothing.
func tagList(tags []string) string {
	if len(tags) == 0 {
		return ""
	}
	return ", tagged " + strings.Join(tags, ", ")
}
