//go:build !linux

package image

import (
	"context"
	"errors"
	"io"

	"github.com/safe-run/safe-run/manifest"
)

// Unpacking needs openat2 and the cache needs flock: Linux only, as the
// launcher is.

func resolveImage(context.Context, *manifest.Service, Options) (*Image, error) {
	return nil, errors.ErrUnsupported
}

// CheckSource is Linux only.
func CheckSource(context.Context, *manifest.Service) error { return errors.ErrUnsupported }

func isTerminal(io.Writer) bool { return false }

// Release does nothing where images cannot be resolved.
func (i *Image) Release() {}

// List is Linux only.
func List(string) ([]Cached, error) { return nil, errors.ErrUnsupported }

// Leftovers is for Linux only.
func Leftovers(string) (int, int64) { return 0, 0 }

// Remove is Linux only.
func Remove(string, string) (Cached, error) { return Cached{}, errors.ErrUnsupported }

// Prune is Linux only.
func Prune(string) ([]Cached, int64, error) { return nil, 0, errors.ErrUnsupported }

// UnpackLayout is Linux only.
func UnpackLayout(context.Context, string, string) (int64, int64, error) {
	return 0, 0, errors.ErrUnsupported
}
