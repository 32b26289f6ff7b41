package guest

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
)

// tree is the guest's root filesystem as it will be archived: guest paths
// mapped to what goes there. Host files are read only when the archive is
// written, so a large binary is never held in memory.
type tree map[string]node

type nodeKind int

const (
	kindDir nodeKind = iota
	kindFile
	kindSymlink
	kindCharDev
)

type node struct {
	kind         nodeKind
	perm         fs.FileMode
	host         string // kindFile: copy from this host path, unless data is set
	data         []byte // kindFile: contents
	target       string // kindSymlink
	major, minor uint32 // kindCharDev
}

// cleanGuestPath makes p absolute and clean, refusing paths that are not
// absolute so that a typo in Options.Files is not silently re-rooted.
func cleanGuestPath(p string) (string, error) {
	if !path.IsAbs(p) {
		return "", fmt.Errorf("guest path %q is not absolute (use e.g. /usr/bin/safe-run)", p)
	}
	p = path.Clean(p)
	if p == "/" {
		return "", fmt.Errorf("guest path %q names the root; name a file or directory under it", p)
	}
	return p, nil
}

// set puts n at p, creating missing parents as 0755 directories. A later set
// of the same path replaces the earlier one, so Options.Files can override
// what the harness puts in.
func (t tree) set(p string, n node) {
	for d := path.Dir(p); d != "/"; d = path.Dir(d) {
		if _, ok := t[d]; !ok {
			t[d] = node{kind: kindDir, perm: 0o755}
		}
	}
	t[p] = n
}

func (t tree) dir(p string, perm fs.FileMode) { t.set(p, node{kind: kindDir, perm: perm}) }

func (t tree) data(p string, perm fs.FileMode, data []byte) {
	t.set(p, node{kind: kindFile, perm: perm, data: data})
}

func (t tree) symlink(p, target string) { t.set(p, node{kind: kindSymlink, target: target}) }

// hostFile puts the host file src at p, following symlinks at src itself.
func (t tree) hostFile(p, src string) error {
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", src)
	}
	t.set(p, node{kind: kindFile, perm: fi.Mode(), host: src})
	return nil
}

// hostPath puts src at p: a file as hostFile does, a directory with
// everything under it, keeping symlinks inside it as symlinks.
func (t tree) hostPath(p, src string) error {
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return t.hostFile(p, src)
	}
	return filepath.WalkDir(src, func(hp string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, hp)
		if err != nil {
			return err
		}
		gp := path.Join(p, filepath.ToSlash(rel))
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch m := info.Mode(); {
		case m.IsDir():
			t.set(gp, node{kind: kindDir, perm: m})
		case m.IsRegular():
			t.set(gp, node{kind: kindFile, perm: m, host: hp})
		case m&fs.ModeSymlink != 0:
			target, err := os.Readlink(hp)
			if err != nil {
				return err
			}
			t.symlink(gp, target)
		default:
			return fmt.Errorf("%s: %s files cannot be copied into the guest; create them in the script instead", hp, m.Type())
		}
		return nil
	})
}

// write archives the tree. Sorted paths put every directory before its
// contents, which the kernel's unpacker needs.
func (t tree) write(w io.Writer) error {
	c := &cpioWriter{w: w}
	for _, p := range slices.Sorted(maps.Keys(t)) {
		if err := t.writeNode(c, p, t[p]); err != nil {
			return fmt.Errorf("archiving %s: %w", p, err)
		}
	}
	return c.close()
}

func (t tree) writeNode(c *cpioWriter, p string, n node) error {
	switch n.kind {
	case kindDir:
		return c.dir(p, n.perm)
	case kindSymlink:
		return c.symlink(p, n.target)
	case kindCharDev:
		return c.charDev(p, n.perm, n.major, n.minor)
	}
	if n.host == "" {
		return c.file(p, n.perm, int64(len(n.data)), bytes.NewReader(n.data))
	}
	f, err := os.Open(n.host)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	return c.file(p, n.perm, fi.Size(), f)
}
