package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// layoutStore reads the blobs of an OCI image layout directory.
type layoutStore struct{ dir string }

func (l layoutStore) manifest(ctx context.Context, d v1.Descriptor) ([]byte, error) {
	rc, err := l.blob(ctx, d)
	if err != nil {
		return nil, err
	}
	return readVerified(rc, d.Digest, maxManifestSize)
}

// blob opens the blob d names, and checks before a byte is read that it
// is a regular file, not a symbolic link (O_NOFOLLOW: a blob linked to
// /etc/shadow was opened as root and parsed as a tar), of the size its
// descriptor gives: a blob cut short, or one longer than said, is a
// damaged or tampered layout, not a tar to read until it fails.
func (l layoutStore) blob(_ context.Context, d v1.Descriptor) (io.ReadCloser, error) {
	if !validDigest(d.Digest) {
		return nil, fmt.Errorf("%q is not a sha256 digest", d.Digest)
	}
	rel := filepath.Join("blobs", d.Digest.Algorithm, d.Digest.Hex)
	path := filepath.Join(l.dir, rel)
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, syscall.ELOOP) {
		return nil, fmt.Errorf("%s: the blob is a symbolic link, which a layout's blob may not be (copy the layout with skopeo copy or umoci, which write blobs as files)", path)
	}
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	switch {
	case err != nil:
	case !st.Mode().IsRegular():
		err = fmt.Errorf("%s: the blob is not a regular file (%s) (copy the layout with skopeo copy or umoci, which write blobs as files)", path, st.Mode().Type())
	case st.Size() != d.Size:
		err = fmt.Errorf("%s: size mismatch: the blob is %d bytes, its descriptor says %d: the layout is damaged or was changed (copy it again from its source)", path, st.Size(), d.Size)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// readLayoutIndex reads the index.json of an OCI image layout.
func readLayoutIndex(dir string) (*v1.IndexManifest, error) {
	f, err := openRegular(filepath.Join(dir, "index.json"))
	if errors.Is(err, fs.ErrNotExist) {
		if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s does not exist (point oci at an OCI image layout directory, as \"DIR:TAG\")", dir)
		} else if err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%s is not an OCI image layout: it has no index.json (make one with skopeo copy ... oci:%s:TAG, or umoci)", dir, dir)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxManifestSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxManifestSize {
		return nil, fmt.Errorf("%s/index.json is larger than %d bytes", dir, maxManifestSize)
	}
	return parseIndex(data, dir+"/index.json")
}

// openRegular opens a file for reading, refusing anything but a regular
// file: a FIFO planted as a blob would block safe-run forever.
func openRegular(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = fmt.Errorf("%s is not a regular file", path)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func validDigest(h v1.Hash) bool {
	if h.Algorithm != "sha256" || len(h.Hex) != 64 {
		return false
	}
	for _, c := range h.Hex {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
