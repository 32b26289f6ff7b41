package image

import "errors"

// Conditions callers branch on.
var (
	// ErrDigestMismatch: a manifest, config or layer does not have the
	// digest it is named by (tampered with, or corrupt).
	ErrDigestMismatch = errors.New("digest mismatch")
	// ErrUnsafeLayer: a layer tries to write outside the root filesystem
	// or is malformed in a way only a hostile image is.
	ErrUnsafeLayer = errors.New("unsafe layer")
	// ErrTooLarge: unpacking would pass the bound on bytes or files
	// (a decompression bomb, or an image far larger than services are).
	ErrTooLarge = errors.New("image too large")
	// ErrInUse: a running service uses the cached image.
	ErrInUse = errors.New("image in use")
	// ErrNotCached: no cached image matches.
	ErrNotCached = errors.New("no such cached image")
)
