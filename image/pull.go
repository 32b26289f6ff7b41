package image

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Registry pulls from one repository of an image registry. Package
// image/registry implements it; it is passed in (Options.Registry) so that
// a binary that only runs cached images links no registry client.
type Registry interface {
	// Head resolves a tag to the digest it names now.
	Head(ctx context.Context, ref name.Reference) (*v1.Descriptor, error)
	// Manifest fetches the manifest or index d names.
	Manifest(ctx context.Context, d v1.Descriptor) ([]byte, error)
	// Blob opens the blob d names.
	Blob(ctx context.Context, d v1.Descriptor) (io.ReadCloser, error)
}

// Connect returns the Registry of repo; plain HTTP only when allowHTTP.
type Connect func(repo name.Repository, allowHTTP bool) Registry

// ErrRegistryNeeded: the image must come from a registry (it is not
// cached, or it is named by a tag, which is looked up on every start), and
// Options.Registry is nil.
var ErrRegistryNeeded = errors.New("a registry client is needed")

// wholeStory is an error that says all there is to say (a registry
// refused over plain HTTP): resolving reports it alone, without the steps
// that led to it.
type wholeStory interface {
	error
	WholeStory()
}

// registryStore is a Registry as the store of an image.
type registryStore struct{ Registry }

func (r registryStore) manifest(ctx context.Context, d v1.Descriptor) ([]byte, error) {
	raw, err := r.Manifest(ctx, d)
	if err != nil {
		return nil, err
	}
	// go-containerregistry checks a manifest fetched by digest; every
	// store does, whatever client it uses.
	if got := digestOf(raw); got != d.Digest {
		return nil, fmt.Errorf("%w: manifest %s has digest %s", ErrDigestMismatch, d.Digest, got)
	}
	return raw, nil
}

func (r registryStore) blob(ctx context.Context, d v1.Descriptor) (io.ReadCloser, error) {
	return r.Blob(ctx, d)
}
