package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/safe-run/safe-run/manifest"
)

// Bounds on what is read whole into memory: manifests, indexes and configs
// are small JSON documents; a hostile source must not make safe-run read a
// layer-sized one.
const (
	maxManifestSize = 4 << 20
	maxConfigSize   = 8 << 20
)

// found is an image whose manifest and config were read and checked
// against their digests; its layers are checked as they are unpacked.
type found struct {
	source   string  // where it came from, for messages: "oci /srv/web/oci:latest"
	digest   v1.Hash // manifest digest; zero for a docker archive, which has none
	config   *v1.ConfigFile
	configID v1.Hash // digest of the config: the image ID and the cache key
	layers   []layer
	notes    []string // what choosing it found worth saying (the platform chosen from an index)
}

// layer is one layer to unpack.
type layer struct {
	digest v1.Hash // digest of the blob as stored; zero when the source has none (docker archive)
	diffID v1.Hash // digest of the uncompressed tar, from the config
	size   int64   // bytes of the blob, for progress; -1 when unknown
	open   func(ctx context.Context) (io.ReadCloser, error)
}

// store serves the manifests and blobs of one image source.
type store interface {
	// manifest returns the manifest or index d names, checked against
	// d's digest.
	manifest(ctx context.Context, d v1.Descriptor) ([]byte, error)
	// blob opens the blob d names; the caller checks the digest.
	blob(ctx context.Context, d v1.Descriptor) (io.ReadCloser, error)
}

// hostPlatform is what an index is resolved to: the platform safe-run
// runs on, so the image's binaries run natively.
func hostPlatform() v1.Platform {
	return v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
}

// refNameAnnotation names a manifest in an OCI layout's index.json.
const refNameAnnotation = "org.opencontainers.image.ref.name"

// pickTagged chooses the descriptor of an OCI layout's index.json that tag
// names, or its only descriptor when tag is "". choose says how a user
// names one of several.
func pickTagged(idx *v1.IndexManifest, tag, what, choose string) (v1.Descriptor, error) {
	var tags []string
	for _, d := range idx.Manifests {
		if t := d.Annotations[refNameAnnotation]; t != "" {
			tags = append(tags, t)
			if t == tag {
				return d, nil
			}
		}
	}
	slices.Sort(tags)
	tags = slices.Compact(tags)
	switch {
	case tag != "" && len(tags) == 0:
		return v1.Descriptor{}, fmt.Errorf("%s has no tag %q (it tags no image: drop the tag to use its only image)", what, tag)
	case tag != "":
		return v1.Descriptor{}, fmt.Errorf("%s has no tag %q (it has: %s)", what, tag, strings.Join(tags, ", "))
	case len(idx.Manifests) == 1:
		return idx.Manifests[0], nil
	case len(idx.Manifests) == 0:
		return v1.Descriptor{}, fmt.Errorf("%s holds no image", what)
	case len(tags) > 0:
		return v1.Descriptor{}, fmt.Errorf("%s holds %d images, tagged %s (%s)", what, len(idx.Manifests), strings.Join(tags, ", "), choose)
	default:
		return v1.Descriptor{}, fmt.Errorf("%s holds %d untagged images (keep one image in it)", what, len(idx.Manifests))
	}
}

// resolveDesc follows d, through indexes to the host's platform, to an
// image manifest, and reads that image's config.
func resolveDesc(ctx context.Context, st store, d v1.Descriptor, source string) (*found, error) {
	f := &found{source: source}
	for depth := 0; ; depth++ {
		raw, err := st.manifest(ctx, d)
		if err != nil {
			return nil, fmt.Errorf("reading manifest %s: %w", d.Digest, err)
		}
		mt := d.MediaType
		if mt == "" {
			mt = sniffMediaType(raw)
		}
		switch {
		case mt.IsIndex():
			if depth >= 2 {
				return nil, fmt.Errorf("%s: indexes nest too deep at %s", source, d.Digest)
			}
			idx, err := v1.ParseIndexManifest(bytes.NewReader(raw))
			if err != nil {
				return nil, fmt.Errorf("reading index %s: %w", d.Digest, err)
			}
			next, err := pickPlatform(idx, hostPlatform())
			if err != nil {
				return nil, fmt.Errorf("%s (index %s): %w", source, d.Digest, err)
			}
			f.notes = append(f.notes, fmt.Sprintf("index %s resolved to %s for %s", d.Digest, next.Digest, next.Platform))
			d = next
		case mt.IsSchema1():
			return nil, fmt.Errorf("%s: %s is a docker schema 1 manifest, which is deprecated and unsigned (push the image again with a current docker or skopeo)", source, d.Digest)
		case mt.IsImage() || mt == "":
			f.digest = d.Digest
			return f, f.readImage(ctx, st, raw)
		default:
			return nil, fmt.Errorf("%s: %s is a %s, not an image", source, d.Digest, mt)
		}
	}
}

func sniffMediaType(raw []byte) types.MediaType {
	var m struct {
		MediaType types.MediaType `json:"mediaType"`
		Manifests json.RawMessage `json:"manifests"`
	}
	_ = json.Unmarshal(raw, &m)
	if m.MediaType == "" && m.Manifests != nil {
		return types.OCIImageIndex
	}
	return m.MediaType
}

// pickPlatform chooses the manifest of an index that runs on want.
func pickPlatform(idx *v1.IndexManifest, want v1.Platform) (v1.Descriptor, error) {
	var have []string
	for _, d := range idx.Manifests {
		if d.Platform == nil {
			continue
		}
		if d.Platform.Satisfies(want) {
			return d, nil
		}
		if d.Platform.OS != "unknown" { // attestations, not images
			have = append(have, d.Platform.String())
		}
	}
	if len(have) == 0 {
		return v1.Descriptor{}, fmt.Errorf("no image for %s (the index names no platforms)", want)
	}
	return v1.Descriptor{}, fmt.Errorf("no image for %s (it has: %s)", want, strings.Join(have, ", "))
}

func (f *found) readImage(ctx context.Context, st store, raw []byte) error {
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return fmt.Errorf("reading manifest %s: %w", f.digest, err)
	}
	rc, err := st.blob(ctx, m.Config)
	if err != nil {
		return fmt.Errorf("reading config %s: %w", m.Config.Digest, err)
	}
	cfgRaw, err := readVerified(rc, m.Config.Digest, maxConfigSize)
	if err != nil {
		return fmt.Errorf("reading config %s: %w", m.Config.Digest, err)
	}
	if err := f.setConfig(cfgRaw); err != nil {
		return err
	}
	if len(m.Layers) != len(f.config.RootFS.DiffIDs) {
		return fmt.Errorf("%s: the manifest has %d layers but the config names %d (a broken image)", f.source, len(m.Layers), len(f.config.RootFS.DiffIDs))
	}
	for i, l := range m.Layers {
		if l.Digest.Algorithm != "sha256" {
			return fmt.Errorf("%s: layer %d: digest %s is not sha256", f.source, i+1, l.Digest)
		}
		d := l
		f.layers = append(f.layers, layer{
			digest: l.Digest, diffID: f.config.RootFS.DiffIDs[i], size: l.Size,
			open: func(ctx context.Context) (io.ReadCloser, error) { return st.blob(ctx, d) },
		})
	}
	return nil
}

// setConfig parses the image's config, whose digest is the cache key.
func (f *found) setConfig(raw []byte) error {
	sum := sha256.Sum256(raw)
	f.configID = v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(raw))
	if err != nil {
		return fmt.Errorf("%s: reading config %s: %w", f.source, f.configID, err)
	}
	for i, d := range cfg.RootFS.DiffIDs {
		if d.Algorithm != "sha256" || len(d.Hex) != 64 {
			return fmt.Errorf("%s: config %s: layer %d has diff_id %q, not a sha256 digest", f.source, f.configID, i+1, d)
		}
	}
	if cfg.OS != "" && cfg.OS != "linux" {
		return fmt.Errorf("%s is a %s image; safe-run runs linux images", f.source, cfg.OS)
	}
	if host := runtime.GOARCH; cfg.Architecture != "" && cfg.Architecture != host {
		f.notes = append(f.notes, fmt.Sprintf("image is built for %s, this host is %s: it runs only under binfmt emulation", cfg.Architecture, host))
	}
	if sig := cfg.Config.StopSignal; sig != "" {
		// safe-run stops with [process] stop_signal, never the image's;
		// a StopSignal that is no signal at all says the image is not
		// what its author thinks, which is worth a line.
		if _, err := manifest.ParseSignal(sig); err != nil {
			f.notes = append(f.notes, fmt.Sprintf("WARNING: the image's config sets StopSignal %s, which is not a signal: ignored (safe-run stops the service with [process] stop_signal, SIGTERM unless set; fix the image's STOPSIGNAL)", shortName(sig)))
		}
	}
	f.config = cfg
	return nil
}

// imageConfig is the part of the image's config the launcher honours.
func (f *found) imageConfig() Config {
	c := f.config.Config
	return Config{
		Entrypoint: c.Entrypoint, Cmd: c.Cmd, Env: c.Env,
		User: c.User, WorkingDir: c.WorkingDir, Labels: c.Labels,
	}
}

// shortName quotes an entry's name for an error: whole up to 160 bytes,
// else its start and end around the count of what is left out. A layer
// may name an entry with 5000 bytes or more, which said in full buries
// the error it is part of.
func shortName(name string) string {
	const most, head, tail = 160, 100, 40
	if len(name) <= most {
		return strconv.Quote(name)
	}
	// Cut on rune boundaries, so that the quoting shows no broken UTF-8.
	h, t := head, len(name)-tail
	for h > 0 && !utf8.RuneStart(name[h]) {
		h--
	}
	for t < len(name) && !utf8.RuneStart(name[t]) {
		t++
	}
	return fmt.Sprintf("%s...(%d bytes)...%s", strconv.Quote(name[:h]), t-h, strconv.Quote(name[t:]))
}

// readVerified reads a small blob whole, checking its size bound and its
// digest.
func readVerified(rc io.ReadCloser, want v1.Hash, max int64) ([]byte, error) {
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("larger than %d bytes", max)
	}
	if got := digestOf(data); got != want {
		return nil, fmt.Errorf("%w: content has digest %s", ErrDigestMismatch, got)
	}
	return data, nil
}

func digestOf(data []byte) v1.Hash {
	sum := sha256.Sum256(data)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

func parseIndex(data []byte, what string) (*v1.IndexManifest, error) {
	idx, err := v1.ParseIndexManifest(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", what, err)
	}
	return idx, nil
}
