package image

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"os"

	"github.com/safe-run/safe-run/manifest"
	"github.com/safe-run/safe-run/policy"
)

// Image is a resolved root filesystem.
type Image struct {
	Rootfs string // directory holding the root filesystem; read-only to safe-run
	Digest string // manifest digest; the config digest (image ID) for a docker archive; "" for a plain directory
	Config Config
	// Notes are for the start report: where the image came from, what
	// unpacking dropped from it, what in it looks wrong.
	Notes []string

	hold int // fd holding the shared lock on the cache entry; 0: none
}

// Config is what an image says about how to run it; the manifest's
// [process] keys override it as docker run's flags do.
type Config struct {
	Entrypoint []string          `json:",omitempty"`
	Cmd        []string          `json:",omitempty"`
	Env        []string          `json:",omitempty"` // KEY=value
	User       string            `json:",omitempty"`
	WorkingDir string            `json:",omitempty"`
	Labels     map[string]string `json:",omitempty"`
}

// Options say where the image cache is and where progress goes.
type Options struct {
	// Dir is the image cache (the launcher passes DATA/images). It is
	// made 0700: unpacked trees keep the image's owners and modes, setuid
	// files included when [insecure] allows them, and host users have no
	// business reaching them.
	Dir string
	// Progress receives pull and unpack progress: a bar on a terminal,
	// plain lines otherwise. nil: none.
	Progress io.Writer

	limits    limits            // zero: the defaults; tests set small ones
	transport http.RoundTripper // nil: Go's default; tests trust their own TLS registry
}

// Resolve finds the root filesystem the manifest names: a directory as it
// is, or an image from the cache, pulled and unpacked first when missing.
// An image stays in use (image rm and prune leave it alone) until the
// process exits or Release is called.
func Resolve(ctx context.Context, s *manifest.Service, opts Options) (*Image, error) {
	if s.Image.Rootfs != "" {
		return resolveDir(s)
	}
	return resolveImage(ctx, s, opts)
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
