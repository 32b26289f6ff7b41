package image

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"maps"
	"math"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// unpackStats say what an unpack did.
type unpackStats struct {
	files int64 // entries applied
	bytes int64 // file content written
	notes []string
}

// Whiteouts, as the OCI image spec defines them (layer.md, "Whiteouts").
const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
	whiteoutMeta   = ".wh..wh." // aufs's own bookkeeping (.wh..wh.plnk): not content
)

// unpacker applies layers to the tree under root, never outside it.
//
// Every path of a layer is resolved inside the tree with
// openat2(RESOLVE_IN_ROOT): a symlink the image planted (etc -> /etc, or
// ../../..) is followed as the container would follow it, inside the
// tree, never to the host. The last component is never followed: what is
// there is removed and created anew with O_EXCL and O_NOFOLLOW, so no
// write ever goes through a symlink or a hardlink the image made.
type unpacker struct {
	root       *os.File // O_PATH handle on the tree
	rootFD     int
	rootPath   string
	keepSetuid bool
	chown      bool // root: keep the image's owners; otherwise files are the caller's
	lim        limits
	entries    int64
	bytes      int64
	stream     int64 // uncompressed bytes read, all layers
	buf        []byte

	layer string          // "layer 2/5 sha256:...", for errors
	added map[string]bool // what this layer created, and its parents: whiteouts spare them

	// One resolved parent directory, reused while entries stay in it.
	parentPath string
	parentFD   int

	dirTimes map[string]tar.Header // directories get their times last: adding to them changes them

	dropped  []string // device nodes and FIFOs
	dropSet  map[string]bool
	stripped []string // setuid/setgid bits removed
	xattrs   map[string]bool
	skipped  []string // entries of types that have no place in a rootfs
	unmapped []string // owners outside the ids this process can set, given to nobody
}

func newUnpacker(dir string, keepSetuid bool, lim limits) (*unpacker, error) {
	root, err := os.OpenFile(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return &unpacker{
		root: root, rootFD: int(root.Fd()), rootPath: dir, keepSetuid: keepSetuid, chown: os.Geteuid() == 0, lim: lim.orDefault(),
		buf: make([]byte, 1<<20), parentFD: -1,
		dirTimes: map[string]tar.Header{}, dropSet: map[string]bool{}, xattrs: map[string]bool{},
	}, nil
}

func (u *unpacker) close() {
	u.forgetParent()
	u.root.Close()
}

// applyLayer unpacks one layer blob, then checks the blob's digest and
// the digest of its uncompressed tar (the config's diff_id), which tie
// the tree to the config digest the cache is keyed by. A layer that fails
// either check fails the whole unpack: the tree is thrown away.
func (u *unpacker) applyLayer(ctx context.Context, n int, l layer, p *progress) error {
	u.layer = fmt.Sprintf("layer %d %s", n, l.diffID)
	rc, err := l.open(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", u.layer, err)
	}
	defer rc.Close()
	blobSum := &countingHash{Hash: sha256.New()}
	blob := bufio.NewReaderSize(io.TeeReader(countingReader{rc, p}, blobSum), 1<<20)
	// tampered tells whether the whole blob was read and does not have
	// its digest. A store may check the digest too (a registry's does)
	// and fail first: the digest, not that failure, is what to report.
	tampered := func() error {
		if l.digest.Hex == "" || (l.size > 0 && blobSum.n != l.size) || sumHex(blobSum) == l.digest.Hex {
			return nil
		}
		return fmt.Errorf("%s: %w: the blob has digest sha256:%s, the manifest says %s (tampered with or corrupt; pull it again from a source you trust)",
			u.layer, ErrDigestMismatch, sumHex(blobSum), l.digest)
	}
	tarStream, closeDec, err := decompress(blob)
	if err != nil {
		return fmt.Errorf("%s: %w", u.layer, err)
	}
	defer closeDec()
	diffSum := sha256.New()
	// Decompressing and hashing run a few MiB ahead of writing the files.
	tr := newReadAhead(io.TeeReader(&limitedStream{r: tarStream, u: u}, diffSum))
	defer tr.stop()
	if err := u.apply(ctx, tr); err != nil {
		tr.stop()
		// A layer that cannot be read may be one that was tampered with:
		// then say so, rather than what the damage looked like.
		if l.size > 0 && !errors.Is(err, ErrTooLarge) && ctx.Err() == nil {
			_, _ = io.CopyBuffer(io.Discard, io.LimitReader(blob, l.size), u.buf)
			if terr := tampered(); terr != nil {
				return terr
			}
		}
		return err
	}
	// A tar ends with zero blocks and may be padded; the digests cover
	// every byte.
	_, err = io.CopyBuffer(io.Discard, tr, u.buf)
	tr.stop()
	if err == nil {
		_, err = io.CopyBuffer(io.Discard, blob, u.buf)
	}
	if terr := tampered(); terr != nil {
		return terr
	}
	if err != nil {
		return fmt.Errorf("%s: %w", u.layer, err)
	}
	if l.digest.Hex != "" && sumHex(blobSum) != l.digest.Hex {
		return fmt.Errorf("%s: %w: the blob has digest sha256:%s, the manifest says %s (tampered with or corrupt; pull it again from a source you trust)",
			u.layer, ErrDigestMismatch, sumHex(blobSum), l.digest)
	}
	if got := sumHex(diffSum); got != l.diffID.Hex {
		return fmt.Errorf("%s: %w: the uncompressed layer has digest sha256:%s, the config says %s (tampered with or corrupt)",
			u.layer, ErrDigestMismatch, got, l.diffID)
	}
	return nil
}

// readAhead reads r in another goroutine, up to a few MiB ahead of its
// reader, so that inflating and hashing a layer (user time) overlaps with
// creating its files (system time).
type readAhead struct {
	bufs    chan []byte // read, in order; closed at the end of r
	free    chan []byte
	quit    chan struct{}
	exited  chan struct{}
	err     error // r's error; read after bufs is closed
	cur     []byte
	full    []byte
	stopped bool
}

func newReadAhead(r io.Reader) *readAhead {
	const n, size = 4, 1 << 20
	ra := &readAhead{bufs: make(chan []byte, n), free: make(chan []byte, n+1), quit: make(chan struct{}), exited: make(chan struct{})}
	for range n + 1 {
		ra.free <- make([]byte, size)
	}
	go func() {
		defer close(ra.exited)
		defer close(ra.bufs)
		for {
			var b []byte
			select {
			case b = <-ra.free:
			case <-ra.quit:
				return
			}
			n, err := r.Read(b) // what there is: a slow registry's bytes go on at once
			if n > 0 {
				select {
				case ra.bufs <- b[:n]:
				case <-ra.quit:
					return
				}
			}
			if n == 0 {
				ra.free <- b
			}
			if err != nil {
				if !errors.Is(err, io.EOF) {
					ra.err = err
				}
				return
			}
		}
	}()
	return ra
}

func (ra *readAhead) Read(p []byte) (int, error) {
	for len(ra.cur) == 0 {
		if ra.full != nil {
			ra.free <- ra.full[:cap(ra.full)]
			ra.full = nil
		}
		b, ok := <-ra.bufs
		if !ok {
			if ra.err != nil {
				return 0, ra.err
			}
			return 0, io.EOF
		}
		ra.cur, ra.full = b, b
	}
	n := copy(p, ra.cur)
	ra.cur = ra.cur[n:]
	return n, nil
}

// stop ends the reading goroutine and waits for it: after stop, what it
// read from is the caller's again.
func (ra *readAhead) stop() {
	if !ra.stopped {
		ra.stopped = true
		close(ra.quit)
		<-ra.exited
	}
}

// countingHash is a hash that counts what it was fed.
type countingHash struct {
	hash.Hash
	n int64
}

func (c *countingHash) Write(b []byte) (int, error) {
	c.n += int64(len(b))
	return c.Hash.Write(b)
}

func sumHex(h hash.Hash) string { return hex.EncodeToString(h.Sum(nil)) }

// decompress recognises a layer's compression by its magic number, as
// docker and containerd do, rather than trusting its media type.
func decompress(r *bufio.Reader) (io.Reader, func(), error) {
	magic, _ := r.Peek(4)
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		z, err := gzip.NewReader(r)
		if err != nil {
			return nil, nil, err
		}
		return z, func() { z.Close() }, nil
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		// A window above 128 MiB is no layer's, only a memory bomb's.
		z, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(1<<27))
		if err != nil {
			return nil, nil, err
		}
		return z, z.Close, nil
	}
	return r, func() {}, nil
}

// limitedStream bounds the uncompressed bytes of all layers together.
type limitedStream struct {
	r io.Reader
	u *unpacker
}

func (s *limitedStream) Read(b []byte) (int, error) {
	n, err := s.r.Read(b)
	s.u.stream += int64(n)
	if s.u.stream > s.u.lim.streamLimit() {
		return n, fmt.Errorf("%w: more than %s of uncompressed data (a decompression bomb?)", ErrTooLarge, HumanSize(s.u.lim.streamLimit()))
	}
	return n, err
}

func (u *unpacker) apply(ctx context.Context, r io.Reader) error {
	u.added = map[string]bool{}
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: reading the tar: %w", u.layer, err)
		}
		u.entries++
		if u.entries > u.lim.entries {
			return fmt.Errorf("%s: %w: more than %d files (a tar bomb?)", u.layer, ErrTooLarge, u.lim.entries)
		}
		if err := u.entry(tr, hdr); err != nil {
			return fmt.Errorf("%s: %s: %w", u.layer, shortName(hdr.Name), err)
		}
	}
}

// entryPath turns a tar name into a path relative to the root; "" is the
// root itself. A ".." anywhere is refused: no tool that builds images
// writes one, and it only ever serves to climb out. A leading "/" is
// dropped, as tar -x does.
func entryPath(name string) (string, error) {
	if strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("%w: the name holds a NUL byte", ErrUnsafeLayer)
	}
	for _, c := range strings.Split(name, "/") {
		if c == ".." {
			return "", fmt.Errorf("%w: the name climbs out of the root filesystem with \"..\"", ErrUnsafeLayer)
		}
	}
	p := path.Clean("/" + name)[1:]
	return p, nil
}

func splitPath(p string) (dir, base string) {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return "", p
	}
	return p[:i], p[i+1:]
}

func (u *unpacker) entry(tr *tar.Reader, hdr *tar.Header) error {
	p, err := entryPath(hdr.Name)
	if err != nil {
		return err
	}
	if p == "" {
		return nil // the root: safe-run makes it
	}
	dir, base := splitPath(p)
	if strings.HasPrefix(base, whiteoutPrefix) {
		return u.whiteout(dir, base)
	}
	if hdr.Uid < 0 || hdr.Gid < 0 || hdr.Uid >= math.MaxUint32 || hdr.Gid >= math.MaxUint32 {
		return fmt.Errorf("%w: owner %d:%d is not a valid id", ErrUnsafeLayer, hdr.Uid, hdr.Gid)
	}
	pfd, err := u.parent(dir, true)
	if err != nil {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeGNUSparse:
		err = u.file(pfd, p, base, hdr, tr)
	case tar.TypeDir:
		err = u.dir(pfd, p, base, hdr)
	case tar.TypeSymlink:
		err = u.symlink(pfd, p, base, hdr)
	case tar.TypeLink:
		err = u.hardlink(pfd, p, base, hdr)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		// A container gets its devices from safe-run (a fresh /dev), never
		// from its image: a device node is a door to host hardware, and a
		// FIFO nobody opens only hangs. What the path held before is gone,
		// as it would be had the node been made.
		if err = u.clear(pfd, base, false); err == nil {
			u.dropped = append(u.dropped, "/"+p)
			u.dropSet[p] = true
		}
		return err
	default:
		u.skipped = append(u.skipped, fmt.Sprintf("/%s (tar type %q)", p, hdr.Typeflag))
		return nil
	}
	if err != nil {
		return err
	}
	delete(u.dropSet, p)
	for q := p; q != "" && !u.added[q]; q, _ = splitPath(q) {
		u.added[q] = true
	}
	return nil
}

// parent returns a handle on the directory dir of the tree, resolved
// inside the tree; create makes what is missing (tar files may omit the
// entries of parent directories), as docker does, 0755 and owned by root.
func (u *unpacker) parent(dir string, create bool) (int, error) {
	if dir == "" {
		return u.rootFD, nil
	}
	if u.parentFD >= 0 && u.parentPath == dir {
		return u.parentFD, nil
	}
	fd, err := u.openInRoot(dir)
	if errors.Is(err, unix.ENOENT) && create {
		err = u.mkdirAll(dir)
		if err == nil {
			fd, err = u.openInRoot(dir)
		}
	}
	if err != nil {
		if errors.Is(err, unix.ENOTDIR) {
			return -1, fmt.Errorf("a parent of it is not a directory (%s)", dir)
		}
		return -1, fmt.Errorf("resolving %s in the image: %w", shortName(dir), err)
	}
	u.forgetParent()
	u.parentPath, u.parentFD = dir, fd
	return fd, nil
}

// mkdirAll creates the directory dir and its missing parents inside the
// tree, 0755 whatever the umask, as docker makes them. A symlink on the
// way is followed inside the tree, a dangling one included: "etc ->
// /host/etc" then "etc/passwd" makes /host/etc in the tree, as containerd
// does.
func (u *unpacker) mkdirAll(dir string) error {
	real, err := securejoin.SecureJoin(u.rootPath, dir)
	if err != nil {
		return err
	}
	rel, err := filepath.Rel(u.rootPath, real)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return fmt.Errorf("%w: %s resolves outside the tree", ErrUnsafeLayer, dir)
	}
	pfd, err := unix.FcntlInt(uintptr(u.rootFD), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer func() { unix.Close(pfd) }()
	for _, c := range strings.Split(rel, "/") {
		made := unix.Mkdirat(pfd, c, 0o755)
		if made != nil && !errors.Is(made, unix.EEXIST) {
			return made
		}
		// SecureJoin resolved every symlink that exists; one that appears
		// now is not followed.
		fd, err := unix.Openat(pfd, c, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		if made == nil {
			err = unix.Fchmod(fd, 0o755) // past the umask
		}
		unix.Close(pfd)
		pfd = fd
		if err != nil {
			return err
		}
	}
	return nil
}

// openInRoot opens the directory p of the tree as an O_PATH handle,
// following symlinks as if the tree were /, never above it.
func (u *unpacker) openInRoot(p string) (int, error) {
	how := &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
	}
	fd, err := unix.Openat2(u.rootFD, p, how)
	for errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) { // a rename elsewhere on the file system
		fd, err = unix.Openat2(u.rootFD, p, how)
	}
	if errors.Is(err, unix.ENOSYS) { // before Linux 5.6: pathrs emulates it
		h, err := pathrs.OpenatInRoot(u.root, p)
		if err != nil {
			return -1, err
		}
		defer h.Close()
		return unix.Openat(int(h.Fd()), ".", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	}
	return fd, err
}

func (u *unpacker) forgetParent() {
	if u.parentFD >= 0 {
		unix.Close(u.parentFD)
	}
	u.parentFD, u.parentPath = -1, ""
}

// clear makes room for a new entry at base in pfd: whatever is there goes,
// unless it is a directory and keepDir is set (a directory entry over a
// directory only changes its metadata, as in docker); then it returns
// errKeepDir.
func (u *unpacker) clear(pfd int, base string, keepDir bool) error {
	var st unix.Stat_t
	err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		if keepDir {
			return errKeepDir
		}
		u.forgetParent()
	}
	return removeAllAt(pfd, base)
}

var errKeepDir = errors.New("keep the directory")

// removeAllAt removes name in dirfd and, for a directory, everything in
// it, never following a symlink.
func removeAllAt(dirfd int, name string) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if !errors.Is(err, unix.EISDIR) {
		return err
	}
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	d := os.NewFile(uintptr(fd), name)
	names, err := d.Readdirnames(-1)
	if err == nil {
		for _, n := range names {
			if err = removeAllAt(fd, n); err != nil {
				break
			}
		}
	}
	d.Close()
	if err != nil {
		return err
	}
	return unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR)
}

// mode is the entry's permission bits, setuid and setgid removed from
// files unless [insecure] allows setuid_binaries. A directory's setgid bit
// (new files take its group) grants nothing and stays.
func (u *unpacker) mode(p string, hdr *tar.Header, isDir bool) uint32 {
	m := uint32(hdr.Mode) & 0o7777
	switch {
	case isDir:
		m &^= unix.S_ISUID
	case !u.keepSetuid && m&(unix.S_ISUID|unix.S_ISGID) != 0:
		m &^= unix.S_ISUID | unix.S_ISGID
		u.stripped = append(u.stripped, "/"+p)
	}
	return m
}

// overflowID is the kernel's overflowuid and overflowgid, which an id
// without a mapping shows as: nobody.
const overflowID = 65534

// own sets an entry's owner with set. Without root (safe-run in its user
// namespace, mapped onto the user's subordinate ids), an owner outside
// the map cannot be set: the kernel says EINVAL. Such an id would show as
// nobody in the container had root unpacked it (the container's map is
// 0-65535), so nobody it becomes here too, and the start report says so.
func (u *unpacker) own(p string, hdr *tar.Header, set func(uid, gid int) error) error {
	err := set(hdr.Uid, hdr.Gid)
	if !errors.Is(err, unix.EINVAL) {
		return err
	}
	uid, gid := hdr.Uid, hdr.Gid
	if set(uid, -1) != nil {
		uid = overflowID
	}
	if set(-1, gid) != nil {
		gid = overflowID
	}
	if err := set(uid, gid); err != nil {
		return fmt.Errorf("owner %d:%d is outside the ids safe-run can map here, and so is nobody (%d): %w (give the user more subordinate ids, e.g. usermod --add-subuids 100000-165535 --add-subgids 100000-165535 USER, or run as root)", hdr.Uid, hdr.Gid, overflowID, err)
	}
	if len(u.unmapped) < 1000 {
		u.unmapped = append(u.unmapped, fmt.Sprintf("/%s (%d:%d)", p, hdr.Uid, hdr.Gid))
	}
	return nil
}

// attrs sets the owner, mode and extended attributes of the open fd. The
// owner goes first: chown clears setuid bits.
func (u *unpacker) attrs(fd int, p string, hdr *tar.Header, isDir bool) error {
	if u.chown {
		if err := u.own(p, hdr, func(uid, gid int) error { return unix.Fchown(fd, uid, gid) }); err != nil {
			return err
		}
	}
	if err := unix.Fchmod(fd, u.mode(p, hdr, isDir)); err != nil {
		return err
	}
	for _, k := range slices.Sorted(maps.Keys(hdr.PAXRecords)) {
		name, ok := strings.CutPrefix(k, "SCHILY.xattr.")
		if !ok {
			if strings.HasPrefix(k, "LIBARCHIVE.xattr.") {
				u.xattrs[k] = true
			}
			continue
		}
		// Only the unprivileged user namespace: security.capability
		// would grant file capabilities, trusted.overlay.* would
		// reshape the overlay the launcher builds, security.selinux
		// and system.* belong to the host's policy.
		if !strings.HasPrefix(name, "user.") {
			u.xattrs[name] = true
			continue
		}
		err := unix.Fsetxattr(fd, name, []byte(hdr.PAXRecords[k]), 0)
		if err != nil && !errors.Is(err, unix.ENOTSUP) {
			return fmt.Errorf("setting %s: %w", name, err)
		}
	}
	return nil
}

// times sets the entry's times without following it.
func times(pfd int, base string, hdr *tar.Header) error {
	at := hdr.AccessTime
	if at.IsZero() {
		at = hdr.ModTime
	}
	ts := []unix.Timespec{unix.NsecToTimespec(at.UnixNano()), unix.NsecToTimespec(hdr.ModTime.UnixNano())}
	return unix.UtimesNanoAt(pfd, base, ts, unix.AT_SYMLINK_NOFOLLOW)
}

// fdWriter writes to a file descriptor: no os.File (whose NewFile costs
// a system call), no ReadFrom (io.CopyBuffer uses the unpacker's buffer).
type fdWriter int

func (w fdWriter) Write(b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := unix.Write(int(w), b[n:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return n, err
		}
		n += m
	}
	return n, nil
}

func (u *unpacker) file(pfd int, p, base string, hdr *tar.Header, tr *tar.Reader) error {
	if hdr.Size > u.lim.bytes-u.bytes {
		return fmt.Errorf("%w: its %s would take the image past %s of files (a decompression bomb?)", ErrTooLarge, HumanSize(hdr.Size), HumanSize(u.lim.bytes))
	}
	u.bytes += hdr.Size
	if err := u.clear(pfd, base, false); err != nil {
		return err
	}
	fd, err := unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if _, err := io.CopyBuffer(fdWriter(fd), tr, u.buf); err != nil {
		return err
	}
	if err := u.attrs(fd, p, hdr, false); err != nil {
		return err
	}
	return times(pfd, base, hdr)
}

func (u *unpacker) dir(pfd int, p, base string, hdr *tar.Header) error {
	switch err := u.clear(pfd, base, true); {
	case errors.Is(err, errKeepDir):
	case err != nil:
		return err
	default:
		if err := unix.Mkdirat(pfd, base, 0o700); err != nil {
			return err
		}
	}
	fd, err := unix.Openat(pfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := u.attrs(fd, p, hdr, true); err != nil {
		return err
	}
	u.dirTimes[p] = *hdr
	return nil
}

func (u *unpacker) symlink(pfd int, p, base string, hdr *tar.Header) error {
	if strings.IndexByte(hdr.Linkname, 0) >= 0 || hdr.Linkname == "" {
		return fmt.Errorf("%w: the symlink has no valid target", ErrUnsafeLayer)
	}
	if err := u.clear(pfd, base, false); err != nil {
		return err
	}
	// The target is data: it is resolved inside the container, or inside
	// the tree by this unpacker, never on the host.
	if err := unix.Symlinkat(hdr.Linkname, pfd, base); err != nil {
		return err
	}
	if u.chown {
		if err := u.own(p, hdr, func(uid, gid int) error {
			return unix.Fchownat(pfd, base, uid, gid, unix.AT_SYMLINK_NOFOLLOW)
		}); err != nil {
			return err
		}
	}
	return times(pfd, base, hdr)
}

// hardlink links p to another entry of the tree. Both ends are resolved
// inside the tree, so a hardlink can never reach a host file; and since
// no file is ever written in place, a link cannot be written through.
func (u *unpacker) hardlink(pfd int, p, base string, hdr *tar.Header) error {
	target, err := entryPath(hdr.Linkname)
	if err != nil {
		return fmt.Errorf("hardlink target: %w", err)
	}
	if target == "" {
		return fmt.Errorf("%w: a hardlink to the root directory", ErrUnsafeLayer)
	}
	if target == p {
		return nil
	}
	if u.dropSet[target] {
		u.dropped = append(u.dropped, "/"+p)
		u.dropSet[p] = true
		return u.clear(pfd, base, false)
	}
	tdir, tbase := splitPath(target)
	var tfd int
	if tdir == "" {
		tfd, err = unix.FcntlInt(uintptr(u.rootFD), unix.F_DUPFD_CLOEXEC, 0)
	} else {
		tfd, err = u.openInRoot(tdir)
	}
	if err != nil {
		return fmt.Errorf("hardlink target %s: %w", hdr.Linkname, err)
	}
	defer unix.Close(tfd)
	var st unix.Stat_t
	if err := unix.Fstatat(tfd, tbase, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("hardlink target %s: %w", hdr.Linkname, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return fmt.Errorf("%w: a hardlink to the directory %s", ErrUnsafeLayer, hdr.Linkname)
	}
	if err := u.clear(pfd, base, false); err != nil {
		return err
	}
	return unix.Linkat(tfd, tbase, pfd, base, 0)
}

// whiteout applies a whiteout entry: .wh.NAME deletes NAME, .wh..wh..opq
// empties its directory, of what earlier layers put there only.
func (u *unpacker) whiteout(dir, base string) error {
	if strings.HasPrefix(base, whiteoutMeta) && base != whiteoutOpaque {
		return nil
	}
	name := strings.TrimPrefix(base, whiteoutPrefix)
	if base != whiteoutOpaque && (name == "" || name == "." || name == "..") {
		return fmt.Errorf("%w: a whiteout that names no file", ErrUnsafeLayer)
	}
	pfd, err := u.parent(dir, false)
	if errors.Is(err, unix.ENOENT) {
		return nil // nothing there to hide
	}
	if err != nil {
		return err
	}
	if base == whiteoutOpaque {
		err := u.opaque(pfd, dir)
		u.forgetParent()
		return err
	}
	target := path.Join(dir, name)
	if u.added[target] {
		return nil // whiteouts hide lower layers only
	}
	u.forgetDirTimes(target)
	err = removeAllAt(pfd, name)
	u.forgetParent() // it may have held what was removed
	return err
}

// opaque removes from dir everything earlier layers put there, keeping
// what this layer added, at every depth.
func (u *unpacker) opaque(pfd int, dir string) error {
	fd, err := unix.Openat(pfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	d := os.NewFile(uintptr(fd), dir)
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return err
	}
	for _, n := range names {
		child := path.Join(dir, n)
		if !u.added[child] {
			u.forgetDirTimes(child)
			if err := removeAllAt(fd, n); err != nil {
				return err
			}
			continue
		}
		var st unix.Stat_t
		if err := unix.Fstatat(fd, n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			sub, err := unix.Openat(fd, n, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				return err
			}
			err = u.opaque(sub, child)
			unix.Close(sub)
			if err != nil {
				return err
			}
		}
	}
	return nil
}

func (u *unpacker) forgetDirTimes(p string) {
	for d := range u.dirTimes {
		if d == p || strings.HasPrefix(d, p+"/") {
			delete(u.dirTimes, d)
		}
	}
}

// finish sets the directories' times, now that nothing more is added to
// them, and says what was dropped.
func (u *unpacker) finish() (unpackStats, error) {
	u.layer = "setting directory times"
	for _, p := range slices.Sorted(maps.Keys(u.dirTimes)) {
		hdr := u.dirTimes[p]
		dir, base := splitPath(p)
		pfd, err := u.parent(dir, false)
		if err != nil {
			continue // gone, or no longer a directory: a later layer's doing
		}
		if err := times(pfd, base, &hdr); err != nil && !errors.Is(err, unix.ENOENT) {
			return unpackStats{}, fmt.Errorf("setting the times of /%s: %w", p, err)
		}
	}
	s := unpackStats{files: u.entries, bytes: u.bytes}
	if len(u.dropped) > 0 {
		s.notes = append(s.notes, fmt.Sprintf("dropped %s from the image (safe-run gives the container its /dev): %s", count(len(u.dropped), "device node or FIFO", "device nodes and FIFOs"), listSome(u.dropped)))
	}
	if len(u.stripped) > 0 {
		s.notes = append(s.notes, fmt.Sprintf("removed setuid/setgid bits from %s: %s ([insecure] allow = [\"setuid_binaries\"] keeps them)", count(len(u.stripped), "file", "files"), listSome(u.stripped)))
	}
	if len(u.xattrs) > 0 {
		s.notes = append(s.notes, fmt.Sprintf("dropped extended attributes an image may not set: %s", listSome(slices.Sorted(maps.Keys(u.xattrs)))))
	}
	if len(u.skipped) > 0 {
		s.notes = append(s.notes, fmt.Sprintf("skipped %s of types that have no place in a root filesystem: %s", count(len(u.skipped), "entry", "entries"), listSome(u.skipped)))
	}
	if len(u.unmapped) > 0 {
		s.notes = append(s.notes, fmt.Sprintf("%s owned by ids outside those safe-run can map here (its user namespace: the user's subordinate ids) now belong to nobody (%d), as they appear when root unpacks them: %s", count(len(u.unmapped), "file", "files"), overflowID, listSome(u.unmapped)))
	}
	if !u.chown {
		s.notes = append(s.notes, "image unpacked without its file owners (safe-run is not root): every file belongs to the user who unpacked it")
	}
	return s, nil
}

func count(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// listSome lists the first few of names, for a note that stays one line.
func listSome(names []string) string {
	const some = 5
	if len(names) <= some {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:some], ", "), len(names)-some)
}
