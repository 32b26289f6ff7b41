package plan

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"github.com/moby/sys/user"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/image"
	"github.com/safe-run/safe-run/manifest"
)

// resolveUser turns process.user (or the image's user, else root) into ids.
func resolveUser(s *manifest.Service, img *image.Image) (resolvedUser, error) {
	spec := s.Process.User
	if spec == "" {
		spec = img.Config.User
	}
	if spec == "" {
		spec = "0"
	}
	u, home, err := LookupUser(img.Rootfs, spec)
	if err != nil {
		return resolvedUser{}, s.Errorf("process.user", "%w", err)
	}
	return resolvedUser{spec: u, home: home}, nil
}

// LookupUser resolves spec, a name or UID[:GID], into the container's ids
// and home directory, reading the image's /etc/passwd and /etc/group
// inside rootfs (none when rootfs is ""), as the service's user and
// `safe-run exec -u` are: a symlink the image planted there cannot point
// safe-run at a host file.
func LookupUser(rootfs, spec string) (specs.User, string, error) {
	readers := []io.Reader{nil, nil}
	for i, name := range []string{"/etc/passwd", "/etc/group"} {
		if rootfs == "" {
			continue
		}
		f, err := openInRoot(rootfs, name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return specs.User{}, "", fmt.Errorf("reading the image's %s: %w", name, err)
		}
		defer f.Close()
		readers[i] = io.LimitReader(f, 16<<20)
	}
	u, err := user.GetExecUser(spec, &user.ExecUser{Home: "/"}, readers[0], readers[1])
	if errors.Is(err, user.ErrNoGroupEntries) {
		return specs.User{}, "", fmt.Errorf("%q: %w (use a numeric gid such as \"1000:1000\", or add the group to the image's /etc/group)", spec, err)
	}
	if err != nil {
		return specs.User{}, "", fmt.Errorf("%q: %w (use numeric ids such as \"1000:1000\", or add the user to the image's /etc/passwd)", spec, err)
	}
	switch {
	case u.Uid < 0 || u.Uid > 65535:
		// The gid alone would be the default's, never asked for.
		return specs.User{}, "", fmt.Errorf("%q resolves to uid %d, outside the container's ids 0-65535", spec, u.Uid)
	case u.Gid < 0 || u.Gid > 65535:
		return specs.User{}, "", fmt.Errorf("%q resolves to gid %d, outside the container's ids 0-65535", spec, u.Gid)
	}
	out := specs.User{UID: uint32(u.Uid), GID: uint32(u.Gid)}
	for _, g := range u.Sgids {
		if g != u.Gid && g >= 0 && g <= 65535 {
			out.AdditionalGids = append(out.AdditionalGids, uint32(g))
		}
	}
	return out, u.Home, nil
}

// openInRoot opens a regular file of the image for reading, resolving
// its path inside root. Anything else (a FIFO or a device planted as
// /etc/passwd would block or never end) counts as absent.
func openInRoot(root, name string) (*os.File, error) {
	h, err := pathrs.OpenInRoot(root, name)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	if st, err := h.Stat(); err != nil || !st.Mode().IsRegular() {
		return nil, fs.ErrNotExist
	}
	return pathrs.Reopen(h, unix.O_RDONLY|unix.O_CLOEXEC)
}
