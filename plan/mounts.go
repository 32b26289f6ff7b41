package plan

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/safe-run/safe-run/image"
	"github.com/safe-run/safe-run/manifest"
)

// CheckMounts refuses, before a start makes anything, a mount the
// runtime would fail on in its own words, or one that would land where
// no mount may go. manifest checks each target as text; here each is
// resolved as libcontainer resolves it when it mounts (securejoin): inside
// the container's root, the image's symlinks followed within the image,
// and through the mounts that come before it. An image with /cg ->
// /sys/fs/cgroup otherwise had a tmpfs at /cg/memory mounted over
// /sys/fs/cgroup/memory, which safe-run sets up itself; and a bind of a
// file onto a directory failed inside the container's init with "not a
// directory", naming a staging path and no key.
//
// Then each target is checked: not the root, not under what safe-run
// sets up itself (manifest.ReservedTargets), not the target of an earlier
// mount, and of the source's kind: a bind of a file onto a file, of a
// directory (a volume, a tmpfs) onto a directory. volumeDir is where the
// service's volumes live (Placement.VolumeDir).
func CheckMounts(svc *manifest.Service, img *image.Image, volumeDir string) error {
	if img == nil || img.Rootfs == "" {
		return nil
	}
	v := mountView{rootfs: img.Rootfs}
	var errs []error
	resolved := map[string]int{}
	for i, m := range svc.Mounts {
		key := fmt.Sprintf("mounts[%d].target", i)
		t, err := v.resolve(m.Target)
		if err != nil {
			errs = append(errs, svc.Errorf(key, "%s", err))
			v.layers = append(v.layers, layerOf(m, volumeDir))
			continue
		}
		at := m.Target
		if t.via != "" {
			at = fmt.Sprintf("%s resolves to %s in the container (through the image's symlink %s)", m.Target, t.path, t.via)
		}
		switch {
		case t.path == "/":
			errs = append(errs, svc.Errorf(key, "%s: a mount cannot replace the root filesystem (choose a target that is no symlink to /)", at))
		case reservedUnder(t.path) != "":
			errs = append(errs, svc.Errorf(key, "%s: %s is set up by safe-run itself (choose another target)", at, reservedUnder(t.path)))
		default:
			if j, dup := resolved[t.path]; dup {
				errs = append(errs, svc.Errorf(key, "%s: that is already the target of mounts[%d] (each target once)", at, j))
				break
			}
			resolved[t.path] = i
			if err := kindFits(m, t, at); err != nil {
				errs = append(errs, svc.Errorf(key, "%s", err))
			}
		}
		v.layers = append(v.layers, layerOf(m, volumeDir))
	}
	return manifest.Merge(errs...)
}

// kindFits refuses a mount of one kind of object onto another: the
// kernel binds a file only onto a file and a directory only onto a
// directory; a tmpfs and a volume are directories.
func kindFits(m manifest.Mount, t target, at string) error {
	srcDir := true
	if m.Type == manifest.MountBind {
		st, err := os.Stat(m.Source)
		if err != nil {
			return nil // a missing source is mounts[N].source's error (CheckPaths)
		}
		srcDir = st.IsDir()
	}
	if !t.exists || t.dir == srcDir {
		return nil
	}
	if t.dir {
		return fmt.Errorf("%s is a directory, and the bind's source %s is a file (bind a directory there, or make the target a file's path, e.g. %s)",
			at, m.Source, path.Join(t.path, filepath.Base(m.Source)))
	}
	what := "the bind's source " + m.Source + " is a directory"
	if m.Type != manifest.MountBind {
		what = "a " + m.Type + " is a directory"
	}
	return fmt.Errorf("%s is a file, and %s (choose a directory as the target, or bind a file)", at, what)
}

// reservedUnder is the target safe-run sets up itself that p is, or is
// under; "" when none.
func reservedUnder(p string) string {
	for _, r := range manifest.ReservedTargets() {
		if p == r || strings.HasPrefix(p, r+"/") {
			return r
		}
	}
	return ""
}

// target is a mount target resolved in the container.
type target struct {
	path   string // resolved, absolute, clean
	via    string // the first symlink followed ("/cg -> /sys/fs/cgroup"), if any
	exists bool   // there is something at path before the mount
	dir    bool   // and it is a directory
}

// mountView is the container's file tree as the runtime sees it when it
// mounts the next mount: the image, with the mounts so far on top.
type mountView struct {
	rootfs string
	layers []layer
}

// layer is one mount of the view: what lies at its target.
type layer struct {
	target string
	host   string // the directory or file shown there; "" for an empty tmpfs
}

func layerOf(m manifest.Mount, volumeDir string) layer {
	switch m.Type {
	case manifest.MountBind:
		host := m.Source
		if real, err := filepath.EvalSymlinks(host); err == nil {
			host = real // as openChecked resolves it
		}
		return layer{target: m.Target, host: host}
	case manifest.MountVolume:
		return layer{target: m.Target, host: filepath.Join(volumeDir, m.Source)}
	}
	return layer{target: m.Target}
}

// maxSymlinks is the kernel's limit on the symlinks one lookup follows
// (MAXSYMLINKS).
const maxSymlinks = 40

// resolve resolves p in the view as securejoin does: each component in
// turn, a symlink's target read and followed inside the container's root
// (an absolute one from that root, ".." never above it); from the first
// component that does not exist on, the rest is taken as it is written.
// It stops at what safe-run sets up itself (/proc, /sys, /dev...), which
// the image's own directories there do not show.
func (v *mountView) resolve(p string) (target, error) {
	var t target
	rest := strings.Split(p, "/")
	cur := "/"
	links := 0
	for len(rest) > 0 {
		part := rest[0]
		rest = rest[1:]
		switch part {
		case "", ".":
			continue
		case "..":
			cur = path.Dir(cur)
			continue
		}
		next := path.Join(cur, part)
		if reservedUnder(next) != "" {
			t.path, t.exists = path.Join(append([]string{next}, rest...)...), false
			return t, nil
		}
		st, host, err := v.lstat(next)
		if errors.Is(err, fs.ErrNotExist) {
			t.path, t.exists = path.Join(append([]string{next}, rest...)...), false
			return t, nil
		}
		if err != nil {
			return t, fmt.Errorf("%s: resolving %s in the image: %w", p, next, err)
		}
		if st.Mode()&fs.ModeSymlink != 0 {
			if links++; links > maxSymlinks {
				return t, fmt.Errorf("%s: too many levels of symlinks in the image (at %s)", p, next)
			}
			link, err := os.Readlink(host)
			if err != nil {
				return t, fmt.Errorf("%s: reading the image's symlink %s: %w", p, next, err)
			}
			if t.via == "" {
				t.via = next + " -> " + link
			}
			if path.IsAbs(link) {
				cur = "/"
			}
			rest = append(strings.Split(link, "/"), rest...)
			continue
		}
		if !st.IsDir() && len(rest) > 0 && strings.Trim(path.Join(rest...), "/.") != "" {
			return t, fmt.Errorf("%s: %s is a file in the container, not a directory (choose another target)", p, next)
		}
		cur = next
		t.exists, t.dir = true, st.IsDir()
	}
	t.path = cur
	if cur == "/" {
		t.exists, t.dir = true, true
	}
	return t, nil
}

// lstat looks p up in the view without following a final symlink: in the
// last mount at or above it, else in the image. Every component above p
// has been resolved already, so the host path built holds no symlink of
// the image's.
func (v *mountView) lstat(p string) (fs.FileInfo, string, error) {
	base, host := "/", v.rootfs
	found := false
	for _, l := range v.layers {
		if (p == l.target || strings.HasPrefix(p, l.target+"/")) && len(l.target) >= len(base) {
			base, host, found = l.target, l.host, true
		}
	}
	if found && host == "" {
		// An empty tmpfs: only its root is there.
		if p == base {
			return dirInfo{}, "", nil
		}
		return nil, "", fs.ErrNotExist
	}
	h := filepath.Join(host, strings.TrimPrefix(p, base))
	st, err := os.Lstat(h)
	if errors.Is(err, fs.ErrNotExist) && found && p == base {
		return dirInfo{}, "", nil // a volume made at the start
	}
	return st, h, err
}

// dirInfo stands for a directory a mount makes.
type dirInfo struct{ fs.FileInfo }

func (dirInfo) Mode() fs.FileMode { return fs.ModeDir | 0o755 }
func (dirInfo) IsDir() bool       { return true }
