package launcher

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	securejoin "github.com/cyphar/filepath-securejoin"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/internal/nsholder"
	"github.com/safe-run/safe-run/plan"
	"github.com/safe-run/safe-run/policy"
)

// The container's file system is prepared in a mount namespace private to
// the OS thread that starts the container: the container's own mount
// namespace is copied from it, and nothing is ever mounted on the host. When
// safe-run exits, however it exits, the thread and its namespace are gone,
// so no mount can be left behind.
func enterPrivateMountNamespace() error {
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("creating a private mount namespace: %w", err)
	}
	// Slave, not private: host mounts still propagate in, ours never out.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return fmt.Errorf("making mounts private: %w", err)
	}
	return nil
}

// usernsFD returns a handle on a user namespace with the service's id
// mapping, for idmapped mounts: that of a child that never runs anything
// (package nsholder), killed in the background once the handle is open.
func usernsFD(ids plan.IDMap) (*os.File, error) {
	holder, err := nsholder.Start(unix.CLONE_NEWUSER)
	if err != nil {
		return nil, fmt.Errorf("creating a user namespace for the id mapping: %w", err)
	}
	defer func() { go holder.End() }()
	proc := "/proc/" + strconv.Itoa(holder.PID)
	for _, m := range []struct {
		file string
		host uint32
	}{{"uid_map", ids.UID}, {"gid_map", ids.GID}} {
		line := fmt.Sprintf("0 %d %d\n", m.host, ids.Size)
		if err := os.WriteFile(proc+"/"+m.file, []byte(line), 0); err != nil {
			return nil, fmt.Errorf("mapping the user namespace for the id mapping: %w", err)
		}
	}
	return os.Open(proc + "/ns/user")
}

// rootfsView presents source at host.RootfsView(): id-mapped into the
// service's user namespace, read-only unless the spec says otherwise, with
// a layer that adds only the mountpoints the spec needs and the image lacks.
// It returns a note for the start report when the view falls short.
func rootfsView(spec *specs.Spec, host plan.Placement, source, upperDir string, userns *os.File, files []string) (note string, err error) {
	lower := filepath.Join(host.StateDir, "lower")
	if err := os.Mkdir(lower, 0o711); err != nil {
		return "", err
	}
	tree, err := unix.OpenTree(unix.AT_FDCWD, source, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	if err != nil {
		return "", fmt.Errorf("opening rootfs %s: %w", source, err)
	}
	defer unix.Close(tree)
	attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NODEV}
	if spec.Process.NoNewPrivileges {
		attr.Attr_set |= unix.MOUNT_ATTR_NOSUID
	}
	if note, err = idmapTree(tree, userns, source, attr); err != nil {
		return "", err
	}
	if err := unix.MoveMount(tree, "", unix.AT_FDCWD, lower, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return "", fmt.Errorf("mounting rootfs view: %w", err)
	}

	points := filepath.Join(host.StateDir, "mountpoints")
	if err := os.Mkdir(points, 0o755); err != nil {
		return "", err
	}
	if err := os.Lchown(points, int(host.IDs.UID), int(host.IDs.GID)); err != nil {
		return "", err
	}
	if err := addMountpoints(spec, lower, points, files); err != nil {
		return "", err
	}
	view := host.RootfsView()
	if err := os.Mkdir(view, 0o711); err != nil {
		return "", err
	}
	opts := "lowerdir=" + points + ":" + lower
	flags := uintptr(unix.MS_NODEV)
	if spec.Process.NoNewPrivileges {
		flags |= unix.MS_NOSUID
	}
	if spec.Root.Readonly {
		flags |= unix.MS_RDONLY
	} else {
		upper, work := filepath.Join(upperDir, "upper"), filepath.Join(upperDir, "work")
		// The data directory's containers/ is made by the first writable rootfs; only root reads
		// the writes of a service there.
		if err := os.MkdirAll(filepath.Dir(upperDir), 0o700); err != nil {
			return "", err
		}
		for _, d := range []string{upperDir, upper, work} {
			if err := os.Mkdir(d, 0o711); err != nil {
				return "", err
			}
			if err := os.Lchown(d, int(host.IDs.UID), int(host.IDs.GID)); err != nil {
				return "", err
			}
		}
		opts += ",upperdir=" + upper + ",workdir=" + work
	}
	if err := unix.Mount("overlay", view, "overlay", flags, opts); err != nil {
		return "", fmt.Errorf("mounting the rootfs overlay: %w", err)
	}
	return note, nil
}

// idmapTree maps the rootfs tree into the user namespace userns. Where it
// cannot (rootless: userns is nil, or a file system without idmapped
// mounts), the tree is shown as it is, and the note says so.
func idmapTree(tree int, userns *os.File, source string, attr *unix.MountAttr) (note string, err error) {
	if userns == nil {
		note = "rootfs not id-mapped (rootless): your files appear as root's, others' as nobody"
	} else {
		idmapped := *attr
		idmapped.Attr_set |= unix.MOUNT_ATTR_IDMAP
		idmapped.Userns_fd = uint64(userns.Fd())
		err = unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &idmapped)
		if err == nil {
			return "", nil
		}
		if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.EPERM) {
			return "", fmt.Errorf("id-mapping rootfs %s: %w", source, err)
		}
		note = fmt.Sprintf("rootfs not id-mapped (the file system of %s does not support idmapped mounts): files owned by host users outside the service's ids appear as nobody", source)
	}
	if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, attr); err != nil {
		return "", fmt.Errorf("making rootfs %s read-only: %w", source, err)
	}
	return note, nil
}

// addMountpoints creates in layer every mount destination of the spec that
// the image lacks. Destinations are resolved inside the image's root, so a
// symlink the image planted (/var/run -> /run, or -> /etc) is followed
// within the image only, and a directory that exists keeps its attributes.
// A bind's mount point is a file when its source is one, or is among files:
// sources made while the view is built (the network's /etc files).
func addMountpoints(spec *specs.Spec, image, layer string, files []string) error {
	var done []string
	for _, m := range spec.Mounts {
		under := false
		for _, d := range done {
			if strings.HasPrefix(m.Destination, d+"/") {
				under = true // created inside an earlier mount by libcontainer
			}
		}
		done = append(done, m.Destination)
		if under {
			continue
		}
		resolved, err := securejoin.SecureJoin(image, m.Destination)
		if err != nil {
			return fmt.Errorf("resolving mount target %s in the image: %w", m.Destination, err)
		}
		if _, err := os.Lstat(resolved); err == nil {
			continue
		}
		rel, err := filepath.Rel(image, resolved)
		if err != nil {
			return err
		}
		isFile := false
		if m.Type == "bind" {
			if st, err := os.Stat(m.Source); err == nil && !st.IsDir() || slices.Contains(files, m.Source) {
				isFile = true
			}
		}
		if err := mkMountpoint(image, layer, rel, isFile); err != nil {
			return fmt.Errorf("adding mountpoint %s: %w", m.Destination, err)
		}
	}
	return nil
}

// mkMountpoint creates rel in layer, copying the mode and owner of every
// parent that exists in the image so the overlay shows them unchanged.
func mkMountpoint(image, layer, rel string, isFile bool) error {
	parts := strings.Split(rel, string(filepath.Separator))
	var uid, gid uint32
	if st, err := os.Stat(layer); err == nil {
		s := st.Sys().(*syscall.Stat_t)
		uid, gid = s.Uid, s.Gid
	}
	for i := range parts {
		sub := filepath.Join(parts[:i+1]...)
		dst := filepath.Join(layer, sub)
		mode, owner := fs.FileMode(0o755), [2]uint32{uid, gid}
		if st, err := os.Lstat(filepath.Join(image, sub)); err == nil {
			s := st.Sys().(*syscall.Stat_t)
			mode, owner = st.Mode().Perm()|st.Mode()&(fs.ModeSticky|fs.ModeSetgid), [2]uint32{s.Uid, s.Gid}
		}
		last := i == len(parts)-1
		switch {
		case last && isFile:
			f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY|unix.O_NOFOLLOW, 0o644)
			if err != nil {
				return err
			}
			f.Close()
		default:
			if err := os.Mkdir(dst, mode); err != nil {
				if errors.Is(err, fs.ErrExist) {
					continue
				}
				return err
			}
			if err := os.Chmod(dst, mode); err != nil { // past the umask
				return err
			}
		}
		if err := os.Lchown(dst, int(owner[0]), int(owner[1])); err != nil {
			return err
		}
	}
	return nil
}

// maxSecretSize bounds one secret; a secret is a password or a key, and
// the tmpfs holding them is charged to safe-run's memory.
const maxSecretSize = 1 << 20

// fillSecrets mounts a small tmpfs at dir, copies each secret into it as a
// 0400 file owned by the process user, and makes it read-only.
func fillSecrets(dir string, secrets map[string]string, uid, gid int, allowSensitive bool) error {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	size := 4096 * (len(secrets) + 1)
	contents := map[string][]byte{}
	for name, src := range secrets {
		data, err := readSecret(src, allowSensitive)
		if err != nil {
			return fmt.Errorf("secret %s: %w", name, err)
		}
		contents[name] = data
		size += len(data) + 4096
	}
	opts := fmt.Sprintf("size=%d,mode=0500,uid=%d,gid=%d", size, uid, gid)
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, opts); err != nil {
		return fmt.Errorf("mounting the secrets tmpfs: %w", err)
	}
	for name, data := range contents {
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_EXCL|os.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o400)
		if err != nil {
			return fmt.Errorf("secret %s: %w", name, err)
		}
		_, err = f.Write(data)
		if err == nil {
			err = f.Chown(uid, gid)
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("secret %s: %w", name, err)
		}
	}
	return unix.Mount("", dir, "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, opts)
}

func readSecret(src string, allowSensitive bool) ([]byte, error) {
	h, err := openChecked(src, allowSensitive)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	st, err := h.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (a secret is a file holding the value)", src)
	}
	// Reopen the checked inode itself for reading, not the path again.
	f, err := os.OpenFile("/proc/self/fd/"+strconv.Itoa(int(h.Fd())), os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st.Size() > maxSecretSize {
		return nil, fmt.Errorf("%s is larger than %d bytes (a secret is a password, token or key)", src, maxSecretSize)
	}
	return io.ReadAll(io.LimitReader(f, maxSecretSize))
}

// CheckBindSource and CheckSecretFile refuse, before a start sets anything
// up, what the start itself would refuse of a bind or secret source: a
// missing path, a sensitive one once its symlinks are resolved, a secret
// that is not a small regular file. The start checks again, on the very
// inode it mounts or reads.
func CheckBindSource(src string, allowSensitive bool) error {
	f, err := openChecked(src, allowSensitive)
	if err != nil {
		return err
	}
	return f.Close()
}

func CheckSecretFile(src string, allowSensitive bool) error {
	_, err := readSecret(src, allowSensitive)
	return err
}

// openChecked returns an O_PATH handle on a host path for a bind or a
// secret: every symlink is
// resolved first and the real path is checked against the sensitive paths,
// then opened with no symlink allowed at all, so a symlink swapped in
// between the two steps fails instead of being followed.
func openChecked(src string, allowSensitive bool) (*os.File, error) {
	real, err := filepath.EvalSymlinks(src)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s does not exist (create it, or correct the path)", src)
	}
	if err != nil {
		return nil, err
	}
	if !allowSensitive {
		if why, bad := policy.SensitivePath(real); bad {
			via := ""
			if real != src {
				via = " (through a symlink, it is " + real + ")"
			}
			return nil, policy.SensitiveMountRefusal(fmt.Sprintf("%s is refused%s: %s", src, via, why))
		}
	}
	fd, err := unix.Openat2(unix.AT_FDCWD, real, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if errors.Is(err, unix.ELOOP) {
		return nil, fmt.Errorf("%s changed while safe-run checked it (a symlink appeared in its path); refusing it", src)
	}
	if err != nil {
		return nil, &os.PathError{Op: "openat2", Path: real, Err: err}
	}
	f := os.NewFile(uintptr(fd), real)
	if !allowSensitive {
		if err := refuseEngineSocket(f, src); err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}

// engineSocketPaths are where container engines put their control sockets.
// A socket hard-linked elsewhere keeps its inode, which is what is compared.
var engineSocketPaths = []string{
	"/run/docker.sock", "/var/run/docker.sock", "/run/containerd/containerd.sock",
	"/run/podman/podman.sock", "/run/crio/crio.sock", "/run/buildkit/buildkitd.sock",
}

func refuseEngineSocket(f *os.File, src string) error {
	st, err := f.Stat()
	if err != nil || st.Mode().Type() != fs.ModeSocket {
		return err
	}
	for _, p := range engineSocketPaths {
		if other, err := os.Stat(p); err == nil && os.SameFile(st, other) {
			return policy.SensitiveMountRefusal(fmt.Sprintf("%s is %s, a container engine socket, which is root on the host", src, p))
		}
	}
	return nil
}

// pinMount binds the checked host object src at stage, so that what the
// container gets is the inode that was checked, whatever happens to the path
// afterwards. Not recursive: mounts below src stay out.
func pinMount(src, stage string, readOnly, allowSensitive bool) error {
	f, err := openChecked(src, allowSensitive)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	tree, err := unix.OpenTree(int(f.Fd()), "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH)
	if err != nil {
		return fmt.Errorf("pinning %s: %w", src, err)
	}
	defer unix.Close(tree)
	attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV}
	if readOnly {
		attr.Attr_set |= unix.MOUNT_ATTR_RDONLY
	}
	if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH, attr); err != nil {
		return fmt.Errorf("pinning %s: %w", src, err)
	}
	if st.IsDir() {
		err = os.Mkdir(stage, 0o700)
	} else {
		var g *os.File
		g, err = os.OpenFile(stage, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err == nil {
			g.Close()
		}
	}
	if err != nil {
		return err
	}
	if err := unix.MoveMount(tree, "", unix.AT_FDCWD, stage, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("pinning %s: %w", src, err)
	}
	return nil
}
