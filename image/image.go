package image

import (
	"context"
	"errors"
	"io/fs"
	"os"

	"github.com/safe-run/safe-run/manifest"
	"github.com/safe-run/safe-run/policy"
)

// Image is a resolved root filesystem.
type Image struct {
	Rootfs string // directory holding the root filesystem; read-only to safe-run
	Digest string // content digest of the image, "" for a plain directory
	Config Config
}

// Config is what an image says about how to run it; the manifest's
// [process] keys override it as docker run's flags do.
type Config struct {
	Entrypoint []string
	Cmd        []string
	Env        []string // KEY=value
	User       string
	WorkingDir string
	Labels     map[string]string
}

// Resolve finds the root filesystem the manifest names.
func Resolve(ctx context.Context, s *manifest.Service) (*Image, error) {
	if s.Image.Ref != "" {
		return nil, s.Errorf("image.ref", "registry images are not supported by this release yet (unpack the image into a directory, e.g. with skopeo and umoci, and set image.rootfs)")
	}
	return resolveDir(s)
}

func resolveDir(s *manifest.Service) (*Image, error) {
	dir := s.Image.Rootfs
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, s.Errorf("image.rootfs", "%s does not exist (point rootfs at a directory holding the service's root filesystem)", dir)
	case err != nil:
		return nil, s.Errorf("image.rootfs", "%v", err)
	case !st.IsDir():
		return nil, s.Errorf("image.rootfs", "%s is not a directory (point rootfs at a directory holding the service's root filesystem)", dir)
	}
	if why, bad := policy.SensitivePath(dir); bad && !s.Allows(manifest.AllowSensitiveMounts) {
		return nil, s.Errorf("image.rootfs", "%s is refused as a root filesystem: %s (use a directory made for the service)", dir, why)
	}
	return &Image{Rootfs: dir}, nil
}
