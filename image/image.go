package image

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

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
	// Registry connects to the registry of an image.ref (package
	// image/registry). nil: only a ref pinned by digest and already cached
	// resolves; others fail with ErrRegistryNeeded.
	Registry Connect
	// Logger receives what goes wrong without failing the resolve (a
	// temporary file or lock that could not be removed); nil: discarded.
	Logger *slog.Logger

	limits limits // zero: the defaults; tests set small ones
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
		return nil, s.Errorf("image.rootfs", "%w", err)
	case !st.IsDir():
		return nil, s.Errorf("image.rootfs", "%s is not a directory (point rootfs at a directory holding the service's root filesystem)", dir)
	}
	// The directory as the kernel will find it: a symlink to /etc is /etc.
	// The launcher is handed the real path, so the link cannot be changed
	// to point elsewhere after this check.
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, s.Errorf("image.rootfs", "%w", err)
	}
	if !s.Allows(manifest.AllowSensitiveMounts) {
		if why, bad := policy.SensitivePath(dir); bad {
			return nil, s.Errorf("image.rootfs", "%s is refused as a root filesystem: %s (use a directory made for the service)", dir, why)
		}
		if why, bad := policy.SensitivePath(real); bad {
			return nil, s.Errorf("image.rootfs", "%s is refused as a root filesystem (through a symlink, it is %s): %s (use a directory made for the service)", dir, real, why)
		}
	}
	return &Image{Rootfs: real}, nil
}

// Cached is one image in the cache, as image ls shows it.
type Cached struct {
	ID      string    // sha256:<config digest>, the image ID
	Setuid  bool      // unpacked with its setuid/setgid bits ([insecure] setuid_binaries)
	Digests []string  // manifest digests it was resolved from
	Sources []string  // sources that resolve to it: "oci /srv/web/oci:latest"
	Files   int64     // entries unpacked
	Bytes   int64     // bytes of file content
	Created time.Time // when it was unpacked
	InUse   bool      // a running safe-run holds it
	Damaged bool      // its record is unreadable: only its ID and size are known
	entry   string
}

// Name is what image rm takes: the ID's first 12 hex digits, and the
// variant.
func (c Cached) Name() string {
	n := strings.TrimPrefix(c.ID, "sha256:")[:12]
	if c.Setuid {
		n += ".setuid"
	}
	return n
}

// Bounds on one image, all layers together. They sit well above what
// services ship (the largest common images, CUDA and ML stacks, are around
// 10-20 GiB and a few hundred thousand files) and stop a decompression
// bomb long before it fills the disk or the inode table.
const (
	defaultMaxBytes   = 32 << 30
	defaultMaxEntries = 2_000_000
)

// limits bound what one image may unpack to.
type limits struct {
	bytes   int64 // file content
	entries int64 // tar entries
}

func (l limits) orDefault() limits {
	if l.bytes == 0 {
		l.bytes = defaultMaxBytes
	}
	if l.entries == 0 {
		l.entries = defaultMaxEntries
	}
	return l
}

// streamLimit bounds the uncompressed bytes read: file content plus at
// most 1 KiB of tar headers and padding per entry. Draining a layer to
// check its digest reads no further than this either.
func (l limits) streamLimit() int64 { return l.bytes + l.entries*1024 + 1<<20 }
