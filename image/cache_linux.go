package image

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"
)

// cache is the image cache in one directory (see the package doc).
type cache struct {
	dir string
	log *slog.Logger // nil: clean-up failures are not told (ls, rm, prune return their errors)
}

// warn tells a clean-up that failed, when the cache has a logger.
func (c *cache) warn(what, path string, err error) {
	if err != nil && c.log != nil && !errors.Is(err, fs.ErrNotExist) {
		c.log.Warn("image cache: "+what, "path", path, "err", err)
	}
}

func (c *cache) path(elem ...string) string {
	return filepath.Join(append([]string{c.dir}, elem...)...)
}

// refRecord ties a source to an entry: refs/HASH.json.
type refRecord struct {
	Source string   `json:"source"`           // "oci /srv/web/oci:latest"
	Entry  string   `json:"entry"`            // name under entries/
	Digest string   `json:"digest,omitempty"` // manifest digest; none for a docker archive
	Notes  []string `json:"notes,omitempty"`  // what resolving the source found (the platform chosen)
}

// entryRecord describes an unpacked image: entries/ID/image.json.
type entryRecord struct {
	ID      string    `json:"id"` // sha256:<config digest>
	Setuid  bool      `json:"setuid,omitempty"`
	Config  Config    `json:"config"`
	Notes   []string  `json:"notes,omitempty"` // what unpacking dropped, what looks wrong
	Files   int64     `json:"files"`
	Bytes   int64     `json:"bytes"`
	Created time.Time `json:"created"`
}

// maxRecordSize bounds the cache's own JSON files.
const maxRecordSize = 1 << 20

// init makes the cache's directories, 0700 (see Options.Dir).
func (c *cache) init() error {
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return fmt.Errorf("creating the image cache: %w", err)
	}
	if err := os.Chmod(c.dir, 0o700); err != nil {
		return fmt.Errorf("creating the image cache: %w", err)
	}
	for _, d := range []string{"entries", "refs", "tmp", "locks"} {
		if err := os.Mkdir(c.path(d), 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("creating the image cache: %w", err)
		}
	}
	return nil
}

// refName is the file name of a source's ref: one per source and setuid
// variant, since the variant changes what is unpacked.
func refName(key string, keepSetuid bool) string {
	if keepSetuid {
		key += "|setuid"
	}
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// entryName names an unpacked image: its config digest, which names the
// digest of every layer, plus the variant.
func entryName(configID string, keepSetuid bool) string {
	if keepSetuid {
		return configID + ".setuid"
	}
	return configID
}

// lookup is the whole cost of a cached image: two small JSON files, one
// open, one flock, two stats. errMiss when it is not cached.
func (c *cache) lookup(ref string) (*Image, *refRecord, *entryRecord, error) {
	var r refRecord
	if err := readJSON(c.path("refs", ref+".json"), &r); err != nil {
		return nil, nil, nil, errMiss
	}
	img, e, err := c.use(r.Entry)
	if err != nil {
		return nil, nil, nil, err
	}
	img.Digest = r.Digest
	if img.Digest == "" {
		img.Digest = e.ID
	}
	return img, &r, e, nil
}

var errMiss = errors.New("not cached")

// use takes the entry for this process: a shared flock on its directory,
// which Remove and Prune respect, held until the process exits or
// Release is called.
func (c *cache) use(entry string) (*Image, *entryRecord, error) {
	if !validEntryName(entry) {
		return nil, nil, errMiss
	}
	dir := c.path("entries", entry)
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, errMiss
	}
	if err := flock(fd, unix.LOCK_SH); err != nil {
		unix.Close(fd)
		return nil, nil, err
	}
	// Remove renames an entry away under an exclusive lock; what we
	// locked must still be what the name shows.
	var a, b unix.Stat_t
	if unix.Fstat(fd, &a) != nil || unix.Stat(dir, &b) != nil || a.Ino != b.Ino || a.Dev != b.Dev {
		unix.Close(fd)
		return nil, nil, errMiss
	}
	var e entryRecord
	if err := readJSON(filepath.Join(dir, "image.json"), &e); err != nil {
		unix.Close(fd)
		return nil, nil, errMiss
	}
	return &Image{Rootfs: filepath.Join(dir, "rootfs"), Config: e.Config, hold: fd + 1}, &e, nil
}

// Release lets image rm and prune remove the image again. The process's
// exit does it too; safe-run keeps its images until then.
func (i *Image) Release() {
	if i.hold > 0 {
		unix.Close(i.hold - 1)
		i.hold = 0
	}
}

func validEntryName(name string) bool {
	id, _ := strings.CutSuffix(name, ".setuid")
	return validDigest(v1.Hash{Algorithm: "sha256", Hex: id})
}

func flock(fd, how int) error {
	for {
		err := unix.Flock(fd, how)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// lockSource serialises pulls of one source across processes: the second
// waits, then finds the image cached. Release removes the lock file, so
// that a pull leaves nothing behind but what it cached (and a failed one
// nothing at all); a waiter whose lock is then on a removed file holds no
// lock, so it takes it again, as after Prune.
func (c *cache) lockSource(ctx context.Context, ref string) (release func(), err error) {
	p := c.path("locks", ref+".lock")
	began := time.Now()
	for {
		f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return nil, fmt.Errorf("locking the image cache: %w", err)
		}
		for {
			err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
			if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
				break
			}
			select {
			case <-ctx.Done():
				f.Close()
				return nil, ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("locking the image cache: %w", err)
		}
		a, err1 := f.Stat()
		b, err2 := os.Lstat(p)
		if err1 == nil && err2 == nil && os.SameFile(a, b) {
			if c.log != nil {
				// The soak reads every lock's wait (issue 19): this
				// one waits out another start's pull of the same image.
				c.log.Debug("image source lock taken", "ref", ref, "lock_wait", time.Since(began))
			}
			return func() {
				c.warn("removing a lock", p, os.Remove(p))
				f.Close()
			}, nil
		}
		f.Close()
	}
}

// cleanTmp removes what killed pulls left in tmp/: everything there is
// locked by its maker while it lives.
func (c *cache) cleanTmp() (freed int64) {
	names, err := readDirNames(c.path("tmp"))
	if err != nil {
		return 0
	}
	for _, n := range names {
		p := c.path("tmp", n)
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
		if err != nil {
			if !errors.Is(err, unix.ENOENT) {
				c.warn("removing what an interrupted pull left", p, os.RemoveAll(p)) // not ours to lock (a symlink): not ours at all
			}
			continue
		}
		if unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB) == nil {
			freed += diskUsage(p)
			c.warn("removing what an interrupted pull left", p, os.RemoveAll(p))
		}
		unix.Close(fd)
	}
	return freed
}

// Leftovers counts what interrupted pulls left in the cache dir's tmp/
// (work directories no safe-run holds), and their bytes on disk: image
// ls shows them, and any start or image prune removes them.
func Leftovers(dir string) (n int, bytes int64) {
	c := &cache{dir: dir}
	names, _ := readDirNames(c.path("tmp"))
	for _, name := range names {
		p := c.path("tmp", name)
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
		if err != nil {
			continue
		}
		if unix.Flock(fd, unix.LOCK_SH|unix.LOCK_NB) == nil {
			n++
			bytes += diskUsage(p)
		}
		unix.Close(fd)
	}
	return n, bytes
}

func readDirNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

// workDir is a fresh directory in tmp/, locked until done is called.
// Between its mkdir and its flock, a prune's cleanTmp may take the new
// directory for a killed pull's and remove it: then another is made.
func (c *cache) workDir(prefix string) (dir string, done func(), err error) {
	for attempt := 1; ; attempt++ {
		dir, err = os.MkdirTemp(c.path("tmp"), prefix+".")
		if err != nil {
			return "", nil, fmt.Errorf("creating a work directory in the image cache: %w", err)
		}
		fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err == nil {
			err = unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
			var a, b unix.Stat_t
			if err == nil && (unix.Fstat(fd, &a) != nil || unix.Stat(dir, &b) != nil || a.Ino != b.Ino || a.Dev != b.Dev) {
				err = unix.ENOENT // removed before we locked it
			}
			if err != nil {
				unix.Close(fd)
			}
		}
		if err == nil {
			return dir, func() { unix.Close(fd) }, nil
		}
		c.warn("removing a work directory", dir, os.Remove(dir))
		if attempt == 3 || (!errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EWOULDBLOCK)) {
			return "", nil, fmt.Errorf("locking a work directory in the image cache: %w", err)
		}
	}
}

// tempFile is an unnamed file in tmp/ (O_TMPFILE): whatever happens to
// the process, nothing of it is left behind.
func (c *cache) tempFile() (*os.File, error) {
	fd, err := unix.Open(c.path("tmp"), unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("creating a temporary file in the image cache: %w", err)
	}
	return os.NewFile(uintptr(fd), c.path("tmp", "(unnamed)")), nil
}

// space is what statfs says of the cache's file system.
type space struct {
	free, size int64 // bytes available to an unprivileged writer; in all
}

// margin is what a temporary copy leaves free: a tenth of the file
// system, at most 1 GiB. The image unpacked from the copy needs about as
// much again, and the host's other writers some too.
func (s space) margin() int64 { return min(s.size/10, 1<<30) }

// budget is what a temporary copy may take: the free space less the
// margin. Copying a gzip bomb stops there, well before the disk fills.
func (s space) budget() int64 { return max(s.free-s.margin(), 0) }

// room is the free space of the file system under tmp/.
func (c *cache) room() (space, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(c.path("tmp"), &st); err != nil {
		return space{}, fmt.Errorf("the image cache's file system: %w", err)
	}
	return space{free: int64(st.Bavail) * st.Bsize, size: int64(st.Blocks) * st.Bsize}, nil
}

// writeRef records a ref atomically: written whole, synced, renamed in.
func (c *cache) writeRef(ref string, r refRecord) error {
	dir, done, err := c.workDir("ref")
	if err != nil {
		return err
	}
	defer done()
	defer func() { c.warn("removing a work directory", dir, os.RemoveAll(dir)) }()
	tmp := filepath.Join(dir, "ref.json")
	if err := writeJSON(tmp, r); err != nil {
		return err
	}
	if err := os.Rename(tmp, c.path("refs", ref+".json")); err != nil {
		return fmt.Errorf("recording the image in the cache: %w", err)
	}
	return syncDir(c.path("refs"))
}

func readJSON(path string, v any) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxRecordSize))
	if err != nil {
		return err
	}
	return json.Unmarshal(data, v)
}

func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(append(data, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// diskUsage adds up the sizes of the files under p, for prune's report.
func diskUsage(p string) int64 {
	var n int64
	_ = filepath.WalkDir(p, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}

// List returns the images cached in dir, oldest first.
func List(dir string) ([]Cached, error) {
	c := &cache{dir: dir}
	names, err := readDirNames(c.path("entries"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the image cache: %w", err)
	}
	refs := c.refs()
	var out []Cached
	for _, n := range names {
		if !validEntryName(n) {
			continue
		}
		var ci Cached
		var e entryRecord
		if readJSON(c.path("entries", n, "image.json"), &e) == nil {
			ci = Cached{ID: e.ID, Setuid: e.Setuid, Files: e.Files, Bytes: e.Bytes, Created: e.Created, entry: n}
		} else {
			// Listed, so that rm and prune can take it away; a start
			// unpacks the image again (see resolveFrom).
			id, setuid := strings.CutSuffix(n, ".setuid")
			ci = Cached{ID: "sha256:" + id, Setuid: setuid, Damaged: true, Bytes: diskUsage(c.path("entries", n)), entry: n}
			if st, err := os.Stat(c.path("entries", n)); err == nil {
				ci.Created = st.ModTime()
			}
		}
		for _, r := range refs {
			if r.rec.Entry != n {
				continue
			}
			ci.Sources = append(ci.Sources, r.rec.Source)
			if r.rec.Digest != "" && !slices.Contains(ci.Digests, r.rec.Digest) {
				ci.Digests = append(ci.Digests, r.rec.Digest)
			}
		}
		slices.Sort(ci.Sources)
		ci.InUse = c.inUse(n)
		out = append(out, ci)
	}
	slices.SortFunc(out, func(a, b Cached) int {
		return cmp.Or(a.Created.Compare(b.Created), strings.Compare(a.ID, b.ID))
	})
	return out, nil
}

type namedRef struct {
	file string
	rec  refRecord
}

func (c *cache) refs() []namedRef {
	names, _ := readDirNames(c.path("refs"))
	var out []namedRef
	for _, n := range names {
		var r refRecord
		if strings.HasSuffix(n, ".json") && readJSON(c.path("refs", n), &r) == nil {
			out = append(out, namedRef{n, r})
		}
	}
	return out
}

func (c *cache) inUse(entry string) bool {
	fd, err := unix.Open(c.path("entries", entry), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	return unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB) != nil
}

// Remove removes the cached image that id names: an image ID or a
// manifest digest, or a prefix of either (as image ls shows it). An image
// a running service uses is not removed (ErrInUse).
func Remove(dir, id string) (Cached, error) {
	all, err := List(dir)
	if err != nil {
		return Cached{}, err
	}
	want, setuidOnly := strings.CutSuffix(strings.TrimPrefix(id, "sha256:"), ".setuid")
	var match []Cached
	for _, ci := range all {
		if ci.Name() == id || ci.entry == id || ci.ID == id { // exact: one variant of an image
			match = []Cached{ci}
			break
		}
		hit := strings.HasPrefix(ci.entry, want)
		for _, d := range ci.Digests {
			hit = hit || strings.HasPrefix(strings.TrimPrefix(d, "sha256:"), want)
		}
		if hit && want != "" && (ci.Setuid || !setuidOnly) {
			match = append(match, ci)
		}
	}
	switch {
	case len(match) == 0:
		return Cached{}, fmt.Errorf("%w: %s (see safe-run image ls)", ErrNotCached, id)
	case len(match) > 1:
		var names []string
		for _, m := range match {
			names = append(names, m.Name())
		}
		return Cached{}, fmt.Errorf("%s names %d cached images (%s): give more of the ID", id, len(match), strings.Join(names, ", "))
	}
	c := &cache{dir: dir}
	if err := c.remove(match[0].entry); err != nil {
		return Cached{}, err
	}
	return match[0], nil
}

// remove takes an entry out of the cache: locked exclusively (no safe-run
// uses it), renamed into tmp/ so that it vanishes at once, its refs
// dropped, then deleted.
func (c *cache) remove(entry string) error {
	dir := c.path("entries", entry)
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("removing %s: %w", entry, err)
	}
	defer unix.Close(fd)
	if unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB) != nil {
		if who := lockHolders(fd); len(who) > 0 {
			return fmt.Errorf("%w: %s is used by a running service: %s (stop it first)", ErrInUse, entry[:12], strings.Join(who, "; "))
		}
		return fmt.Errorf("%w: %s is used by a running service (stop it first)", ErrInUse, entry[:12])
	}
	gone := c.path("tmp", "rm."+entry)
	if err := os.Rename(dir, gone); err != nil {
		return fmt.Errorf("removing %s: %w", entry, err)
	}
	// A ref left behind names an entry that is gone: the next resolve
	// of its source unpacks again, and a prune removes it. Said, not
	// fatal: the entry itself is what rm and prune are for.
	var errs []error
	for _, r := range c.refs() {
		if r.rec.Entry == entry {
			if err := os.Remove(c.path("refs", r.file)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, fmt.Errorf("removing the reference %s to %s: %w", r.file, entry[:12], err))
			}
		}
	}
	return errors.Join(append(errs, os.RemoveAll(gone))...)
}

// lockHolders names the processes that hold a lock on the file fd is
// open on, as /proc/locks lists them ("safe-run /srv/web/web.toml, pid
// 1234"): the services a removal would pull the image from under. Those
// outside this process's PID namespace are not listed, nor named.
func lockHolders(fd int) []string {
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil {
		return nil
	}
	data, err := os.ReadFile("/proc/locks")
	if err != nil {
		return nil
	}
	// The device as /proc/locks writes it (fs/locks.c lock_get_status):
	// major and minor in hex, the inode in decimal.
	id := fmt.Sprintf("%02x:%02x:%d", unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino)
	var out []string
	seen := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || f[1] == "->" || f[5] != id || seen[f[4]] {
			continue
		}
		seen[f[4]] = true
		cmdline, err := os.ReadFile("/proc/" + f[4] + "/cmdline")
		if err != nil || len(cmdline) == 0 {
			continue
		}
		args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
		args[0] = filepath.Base(args[0])
		what := strings.Join(args, " ")
		if len(what) > 200 {
			what = what[:200] + "..."
		}
		out = append(out, fmt.Sprintf("%s, pid %s", what, f[4]))
	}
	slices.Sort(out)
	return out
}

// Prune removes every cached image no running service uses, and what
// interrupted pulls left behind. It returns what it removed, and the
// bytes of file content freed.
func Prune(dir string) ([]Cached, int64, error) {
	c := &cache{dir: dir}
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil, 0, nil
	}
	freed := c.cleanTmp()
	all, err := List(dir)
	if err != nil {
		return nil, freed, err
	}
	var removed []Cached
	for _, ci := range all {
		if ci.InUse {
			continue
		}
		if err := c.remove(ci.entry); err != nil {
			if errors.Is(err, ErrInUse) {
				continue // taken since List looked
			}
			return removed, freed, err
		}
		removed = append(removed, ci)
		freed += ci.Bytes
	}
	// Refs to entries that are gone, and locks nobody holds.
	var errs []error
	for _, r := range c.refs() {
		if _, err := os.Stat(c.path("entries", r.rec.Entry)); errors.Is(err, fs.ErrNotExist) {
			if err := os.Remove(c.path("refs", r.file)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, fmt.Errorf("removing the reference %s to a removed image: %w", r.file, err))
			}
		}
	}
	locks, _ := readDirNames(c.path("locks"))
	for _, n := range locks {
		f, err := os.OpenFile(c.path("locks", n), os.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			continue
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
			if err := os.Remove(c.path("locks", n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, fmt.Errorf("removing the unused lock %s: %w", n, err))
			}
		}
		f.Close()
	}
	return removed, freed, errors.Join(errs...)
}
