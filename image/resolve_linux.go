package image

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/manifest"
)

// source is an [image] source other than a plain rootfs directory.
type source interface {
	String() string // "oci /srv/web/oci:latest", for messages and image ls
	// key names the image the source holds without pulling or unpacking
	// anything: the digest it resolves to, or the archive's identity.
	key(ctx context.Context) (key string, notes []string, err error)
	// open reads the image's manifest and config, checked.
	open(ctx context.Context, c *cache) (*found, error)
	close()
}

func newSource(s *manifest.Service, opts Options) (field string, src source, err error) {
	switch {
	case s.Image.OCI != "":
		dir, tag := manifest.SplitOCI(s.Image.OCI)
		return "image.oci", &ociSource{dir: dir, tag: tag}, nil
	case s.Image.Archive != "":
		return "image.archive", &archiveSource{path: s.Image.Archive, lim: opts.limits.orDefault(), progress: opts.Progress}, nil
	case s.Image.Ref != "":
		ref, err := name.ParseReference(s.Image.Ref)
		if err != nil {
			return "image.ref", nil, err
		}
		src := &refSource{orig: s.Image.Ref, ref: ref}
		if opts.Registry != nil {
			src.reg = &registryStore{opts.Registry(ref.Context(), s.Allows(manifest.AllowInsecureRegistry))}
		}
		return "image.ref", src, nil
	}
	return "image", nil, errors.New("no image source (set image.oci, image.archive or image.ref)")
}

func resolveImage(ctx context.Context, s *manifest.Service, opts Options) (*Image, error) {
	field, src, err := newSource(s, opts)
	if err != nil {
		return nil, &sourceError{s.Errorf(field, "%w", err), err}
	}
	defer src.close()
	img, err := resolveFrom(ctx, src, s.Allows(manifest.AllowSetuidBinaries), opts)
	var whole wholeStory
	if errors.As(err, &whole) {
		err = whole
	}
	if err != nil {
		return nil, &sourceError{s.Errorf(field, "%w", err), err}
	}
	return img, nil
}

// CheckSource refuses what Resolve would refuse of an image.oci or
// image.archive before anything is unpacked: a layout or archive that is
// not there, a layout without the tag. It reads only the layout's index
// or the archive's identity, as Resolve does first. A registry ref is not
// checked (that needs the network), nor a rootfs (Resolve itself is that
// cheap). safe-run check calls it, through launcher.CheckFiles, so that a
// manifest spec and run refuse does not pass check.
func CheckSource(ctx context.Context, s *manifest.Service) error {
	if s.Image.OCI == "" && s.Image.Archive == "" {
		return nil
	}
	// A FieldError alone (its cause wrapped): Merge splits a
	// sourceError into its two halves, which would say it twice.
	field, src, err := newSource(s, Options{})
	if err != nil {
		return s.Errorf(field, "%w", err)
	}
	defer src.close()
	if _, _, err := src.key(ctx); err != nil {
		return s.Errorf(field, "%w", err)
	}
	return nil
}

// sourceError places an error at the manifest key of the image source and
// keeps it for errors.Is.
type sourceError struct {
	field *manifest.FieldError
	err   error
}

func (e *sourceError) Error() string   { return e.field.Error() }
func (e *sourceError) Unwrap() []error { return []error{e.field, e.err} }

// resolveFrom returns the cached image of src, pulling and unpacking it
// first when it is not cached.
func resolveFrom(ctx context.Context, src source, keepSetuid bool, opts Options) (*Image, error) {
	if opts.Dir == "" {
		return nil, errors.New("no image cache directory (image.Options.Dir)")
	}
	c := &cache{dir: opts.Dir, log: opts.Logger}
	key, keyNotes, err := src.key(ctx)
	if err != nil {
		return nil, err
	}
	ref := refName(key, keepSetuid)
	if img, r, e, err := c.lookup(ref); err == nil {
		// What a killed pull left goes at any start, not only at the
		// next pull (a readdir of an empty tmp/ when there is none).
		c.cleanTmp()
		img.Notes = reportNotes(r, e, keyNotes, "cached")
		return img, nil
	}
	if err := c.init(); err != nil {
		return nil, c.noSpace(err)
	}
	release, err := c.lockSource(ctx, ref)
	if err != nil {
		return nil, c.noSpace(err)
	}
	defer release()
	if img, r, e, err := c.lookup(ref); err == nil { // pulled by another safe-run meanwhile
		img.Notes = reportNotes(r, e, keyNotes, "cached")
		return img, nil
	}
	c.cleanTmp()
	f, err := src.open(ctx, c)
	if err != nil {
		return nil, err
	}
	entry := entryName(f.configID.Hex, keepSetuid)
	r := refRecord{Source: src.String(), Entry: entry, Notes: f.notes}
	if f.digest.Hex != "" {
		r.Digest = f.digest.String()
	}
	// The entry is taken (use) before the ref names it, and kept: image
	// prune removes what no one holds, and an entry just unpacked, or
	// found, is no one's until then. Taken after writing the ref, as it
	// was, a prune in between removed it under the start ("the image
	// cache changed while safe-run used it"; the soak's prune-while-
	// unpacking test, issue 19). A prune that still wins the moment
	// between the unpack and the use costs another unpack.
	how := "cached"
	for attempt := 1; ; attempt++ {
		img, e, err := c.use(entry)
		if errors.Is(err, errMiss) {
			if err := c.removeDamaged(entry); err != nil {
				return nil, err
			}
			start := time.Now()
			st, uerr := c.unpack(ctx, f, entry, keepSetuid, opts)
			if uerr != nil {
				return nil, c.noSpace(uerr)
			}
			how = fmt.Sprintf("unpacked %d files, %s in %.1fs", st.files, HumanSize(st.bytes), time.Since(start).Seconds())
			img, e, err = c.use(entry)
		}
		if errors.Is(err, errMiss) && attempt < 3 {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("the image cache %s changed while safe-run used it (try again): %w", c.dir, err)
		}
		if err := c.writeRef(ref, r); err != nil {
			img.Release()
			return nil, c.noSpace(err)
		}
		img.Digest = r.Digest
		if img.Digest == "" {
			img.Digest = e.ID
		}
		img.Notes = reportNotes(&r, e, keyNotes, how)
		return img, nil
	}
}

// reportNotes are the start report's lines about the image.
func reportNotes(r *refRecord, e *entryRecord, keyNotes []string, how string) []string {
	id := r.Digest
	if id == "" {
		id = "ID " + e.ID
	}
	notes := []string{fmt.Sprintf("image %s from %s (%s)", id, r.Source, how)}
	notes = append(notes, keyNotes...)
	notes = append(notes, r.Notes...)
	return append(notes, e.Notes...)
}

// noSpace says what to do about a full file system (or a user's disk
// quota) under the cache. What a failed pull wrote is gone by then: an
// entry appears only whole (unpack), its work directory is removed.
func (c *cache) noSpace(err error) error {
	if !errors.Is(err, unix.ENOSPC) && !errors.Is(err, unix.EDQUOT) {
		return err
	}
	return fmt.Errorf("unpacking into the image cache %s: %w (its file system is full, and nothing half-written was kept: free space there, e.g. with safe-run image prune, which removes the images no running service uses, then start again)", c.dir, err)
}

// removeDamaged takes away an entry whose record cannot be read (a crash
// cannot leave one: entries appear whole; a disk or a hand can), so that
// the image is unpacked again rather than refused for good.
func (c *cache) removeDamaged(entry string) error {
	if _, err := os.Lstat(c.path("entries", entry)); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err := c.remove(entry); err != nil {
		return fmt.Errorf("the cached image %s is damaged and cannot be unpacked again: %w", entry, err)
	}
	return nil
}

// unpack builds the entry in a locked work directory and renames it into
// place once it is complete and on disk.
func (c *cache) unpack(ctx context.Context, f *found, entry string, keepSetuid bool, opts Options) (unpackStats, error) {
	work, done, err := c.workDir(entry)
	if err != nil {
		return unpackStats{}, err
	}
	defer done()
	placed := false
	defer func() {
		if !placed {
			c.warn("removing a work directory", work, os.RemoveAll(work))
		}
	}()
	st, err := unpackInto(ctx, f, filepath.Join(work, "rootfs"), keepSetuid, opts)
	if err != nil {
		return st, err
	}
	e := entryRecord{
		ID: f.configID.String(), Setuid: keepSetuid, Config: f.imageConfig(),
		Notes: append(secretNotes(f.config), st.notes...),
		Files: st.files, Bytes: st.bytes, Created: time.Now().UTC(),
	}
	if err := writeJSON(filepath.Join(work, "image.json"), e); err != nil {
		return st, err
	}
	// On disk before it appears: after a crash an entry is whole or absent.
	if err := syncFS(work); err != nil {
		return st, err
	}
	err = os.Rename(work, c.path("entries", entry))
	if errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOTEMPTY) {
		return st, nil // another safe-run unpacked the same image from another source first
	}
	if err != nil {
		return st, fmt.Errorf("adding the image to the cache: %w", err)
	}
	placed = true
	return st, syncDir(c.path("entries"))
}

// unpackInto makes dir and applies the image's layers to it.
func unpackInto(ctx context.Context, f *found, dir string, keepSetuid bool, opts Options) (unpackStats, error) {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return unpackStats{}, err
	}
	if err := os.Chmod(dir, 0o755); err != nil { // past the umask
		return unpackStats{}, err
	}
	u, err := newUnpacker(dir, keepSetuid, opts.limits)
	if err != nil {
		return unpackStats{}, err
	}
	defer u.close()
	p := newProgress(opts.Progress, f)
	defer p.finish()
	for i, l := range f.layers {
		p.startLayer(i, l)
		if err := u.applyLayer(ctx, i+1, l, p); err != nil {
			return unpackStats{}, err
		}
	}
	return u.finish()
}

func syncFS(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Syncfs(fd)
}

// contentKey names an image by the digest its source resolves to. A
// digest names content, so the layout and the registry that hold the same
// digest share the cached image.
func contentKey(d v1.Hash) string {
	return "content " + d.String() + " " + hostPlatform().String()
}

// ociSource is an OCI image layout directory.
type ociSource struct {
	dir, tag string
	desc     v1.Descriptor
}

func (o *ociSource) String() string {
	if o.tag == "" {
		return "oci " + o.dir
	}
	return "oci " + o.dir + ":" + o.tag
}

func (o *ociSource) key(context.Context) (string, []string, error) {
	idx, err := readLayoutIndex(o.dir)
	if err != nil {
		return "", nil, err
	}
	d, err := pickTagged(idx, o.tag, o.dir, "name one: oci = \"DIR:TAG\"")
	if err != nil {
		return "", nil, err
	}
	if !validDigest(d.Digest) {
		return "", nil, fmt.Errorf("%s/index.json: %q is not a sha256 digest", o.dir, d.Digest)
	}
	o.desc = d
	return contentKey(d.Digest), nil, nil
}

func (o *ociSource) open(ctx context.Context, _ *cache) (*found, error) {
	return resolveDesc(ctx, layoutStore{o.dir}, o.desc, o.String())
}

func (o *ociSource) close() {}

// archiveSource is a docker save or OCI archive, gzipped or not. Its key
// is the file's identity as opened (device, inode, size, times): reading
// a cached archive costs one open and one fstat.
type archiveSource struct {
	path     string
	lim      limits
	progress io.Writer
	f, tmp   *os.File
}

func (a *archiveSource) String() string { return "archive " + a.path }

func (a *archiveSource) key(context.Context) (string, []string, error) {
	f, err := openRegular(a.path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil, fmt.Errorf("%s does not exist (point archive at the output of docker save, or an OCI archive)", a.path)
	}
	if err != nil {
		return "", nil, err
	}
	a.f = f
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return "", nil, err
	}
	return fmt.Sprintf("archive %s dev=%d ino=%d size=%d mtime=%d.%d ctime=%d.%d", a.path,
		st.Dev, st.Ino, st.Size, st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec), nil, nil
}

func (a *archiveSource) open(ctx context.Context, c *cache) (*found, error) {
	tarFile := a.f
	magic := make([]byte, 2)
	if _, err := a.f.ReadAt(magic, 0); errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s is empty or cut short (make it with docker save, or skopeo copy ... oci-archive:FILE)", a.path)
	} else if err != nil {
		return nil, fmt.Errorf("reading %s: %w", a.path, err)
	}
	if bytes.Equal(magic, []byte{0x1f, 0x8b}) {
		// A gzipped tar cannot be read in place: decompress it once into
		// an unnamed file, which disappears with safe-run.
		if a.progress != nil {
			fmt.Fprintf(a.progress, "safe-run: decompressing %s\n", a.path)
		}
		z, err := gzip.NewReader(io.NewSectionReader(a.f, 0, 1<<62))
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", a.path, err)
		}
		if a.tmp, err = c.tempFile(); err != nil {
			return nil, err
		}
		room, err := c.room()
		if err != nil {
			return nil, err
		}
		limit := min(a.lim.streamLimit(), room.budget())
		n, err := io.Copy(a.tmp, io.LimitReader(z, limit+1))
		if err != nil {
			return nil, c.noSpace(fmt.Errorf("decompressing %s: %w", a.path, err))
		}
		switch {
		case n > a.lim.streamLimit():
			return nil, fmt.Errorf("decompressing %s: %w: more than %s (a decompression bomb?)", a.path, ErrTooLarge, HumanSize(a.lim.streamLimit()))
		case n > limit:
			return nil, fmt.Errorf("decompressing %s: %w: more than %s uncompressed, and the image cache's file system (%s) has %s free, of which %s stays free for the unpacked image and everything else (a decompression bomb? else free space there, e.g. with safe-run image prune, or give the archive uncompressed: gunzip it)",
				a.path, ErrTooLarge, HumanSize(limit), c.dir, HumanSize(room.free), HumanSize(room.margin()))
		}
		tarFile = a.tmp
	}
	arc, err := indexArchive(tarFile, a.path)
	if err != nil {
		return nil, err
	}
	return arc.image(ctx)
}

func (a *archiveSource) close() {
	for _, f := range []*os.File{a.f, a.tmp} {
		if f != nil {
			f.Close()
		}
	}
}

// refSource is a registry reference.
type refSource struct {
	orig   string
	ref    name.Reference
	reg    *registryStore // nil: no registry client (Options.Registry)
	digest v1.Hash
}

func (r *refSource) String() string { return "ref " + r.orig }

func (r *refSource) key(ctx context.Context) (string, []string, error) {
	if d, ok := r.ref.(name.Digest); ok {
		h, err := v1.NewHash(d.DigestStr())
		if err != nil {
			return "", nil, err
		}
		r.digest = h
		return contentKey(h), nil, nil
	}
	// A tag, which policy let through: [insecure] allows unpinned_image.
	if r.reg == nil {
		return "", nil, fmt.Errorf("%w: %s is a tag, looked up on every start", ErrRegistryNeeded, r.orig)
	}
	d, err := r.reg.Head(ctx, r.ref)
	if err != nil {
		return "", nil, err
	}
	r.digest = d.Digest
	repo := r.orig
	if t, ok := r.ref.(name.Tag); ok {
		repo = strings.TrimSuffix(repo, ":"+t.TagStr())
	}
	note := fmt.Sprintf("unpinned image: %s is %s today; pin it with ref = %q", r.orig, d.Digest, repo+"@"+d.Digest.String())
	return contentKey(d.Digest), []string{note}, nil
}

func (r *refSource) open(ctx context.Context, _ *cache) (*found, error) {
	if r.reg == nil {
		return nil, fmt.Errorf("%w: %s is not cached", ErrRegistryNeeded, r.orig)
	}
	return resolveDesc(ctx, r.reg, v1.Descriptor{Digest: r.digest}, r.String())
}

func (r *refSource) close() {}

// isTerminal reports whether w is a terminal, for the progress bar.
func isTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// UnpackLayout unpacks the image an OCI layout holds ("dir:tag", or "dir"
// when it holds one image) into dest, which must not exist: what Resolve
// does on a cache miss, every digest checked and every layer applied
// safely, without the cache. `make bench` times it against umoci unpack
// on the same image.
func UnpackLayout(ctx context.Context, layoutRef, dest string) (files, bytes int64, err error) {
	dir, tag := manifest.SplitOCI(layoutRef)
	src := &ociSource{dir: dir, tag: tag}
	if _, _, err := src.key(ctx); err != nil {
		return 0, 0, err
	}
	f, err := src.open(ctx, nil)
	if err != nil {
		return 0, 0, err
	}
	st, err := unpackInto(ctx, f, dest, false, Options{})
	return st.files, st.bytes, err
}
