package launcher

import (
	"errors"
	"io"
	"io/fs"
	"os"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"github.com/moby/sys/user"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/safe-run/safe-run/image"
	"github.com/safe-run/safe-run/manifest"
)

// resolveUser turns process.user (or the image's user, else root) into ids,
// reading the image's /etc/passwd and /etc/group inside its root: a symlink
// the image planted there cannot point safe-run at a host file.
func resolveUser(s *manifest.Service, img *image.Image) (resolvedUser, error) {
	spec := s.Process.User
	if spec == "" {
		spec = img.Config.User
	}
	if spec == "" {
		spec = "0"
	}
	var readers []io.Reader
	for _, name := range []string{"/etc/passwd", "/etc/group"} {
		f, err := pathrs.OpenInRoot(img.Rootfs, name)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				return resolvedUser{}, s.Errorf("process.user", "reading the image's %s: %v", name, err)
			}
			readers = append(readers, nil)
			continue
		}
		defer f.Close()
		readers = append(readers, regularOnly(f))
	}
	u, err := user.GetExecUser(spec, &user.ExecUser{Home: "/"}, readers[0], readers[1])
	if err != nil {
		return resolvedUser{}, s.Errorf("process.user", "%q: %v (use numeric ids such as \"1000:1000\", or add the user to the image's /etc/passwd)", spec, err)
	}
	if u.Uid > 65535 || u.Gid > 65535 {
		return resolvedUser{}, s.Errorf("process.user", "%q resolves to %d:%d, outside the container's ids 0-65535", spec, u.Uid, u.Gid)
	}
	r := resolvedUser{spec: specs.User{UID: uint32(u.Uid), GID: uint32(u.Gid)}, home: u.Home}
	for _, g := range u.Sgids {
		if g != u.Gid && g >= 0 && g <= 65535 {
			r.spec.AdditionalGids = append(r.spec.AdditionalGids, uint32(g))
		}
	}
	return r, nil
}

// regularOnly refuses to read anything but a regular file (a FIFO or a
// device planted as /etc/passwd would block or never end) and bounds it.
func regularOnly(f *os.File) io.Reader {
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return nil
	}
	return io.LimitReader(f, 16<<20)
}
