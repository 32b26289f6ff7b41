package guest

import (
	"fmt"
	"io"
	"io/fs"
	"strings"
)

// The initramfs is written in the "newc" cpio format by hand rather than by
// `cpio -o -H newc` over a staged directory: the format is a fixed ASCII
// header per entry (Documentation/driver-api/early-userspace/buffer-format.rst),
// and writing it ourselves lets every entry be owned by root and lets
// /dev/console be a device node without the test running as root or touching
// the host's filesystem, and keeps cpio off the list of host packages.

// cpioWriter writes a newc archive. Entries are written as given; the caller
// orders them parents first.
type cpioWriter struct {
	w   io.Writer
	n   int64 // bytes written, for padding
	ino uint32
}

// cpio mode bits (they are the kernel's S_IF* values, which io/fs does not
// use).
const (
	cpioDir     = 0o040000
	cpioFile    = 0o100000
	cpioSymlink = 0o120000
	cpioCharDev = 0o020000
)

type cpioHeader struct {
	name         string
	mode         uint32 // type bits | permission bits
	size         int64
	rmajor, rmin uint32
}

func (c *cpioWriter) write(p []byte) error {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return err
}

func (c *cpioWriter) pad() error {
	if r := c.n % 4; r != 0 {
		return c.write(make([]byte, 4-r))
	}
	return nil
}

func (c *cpioWriter) header(h cpioHeader) error {
	c.ino++
	name := strings.TrimPrefix(h.name, "/")
	nlink := 1
	if h.mode&0o170000 == cpioDir {
		nlink = 2
	}
	// magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor,
	// devminor, rdevmajor, rdevminor, namesize (with its NUL), check.
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, h.mode, 0, 0, nlink, 0, h.size, 0, 0, h.rmajor, h.rmin, len(name)+1, 0)
	if err := c.write([]byte(hdr + name + "\x00")); err != nil {
		return err
	}
	return c.pad()
}

// unixMode returns the permission and set-id/sticky bits of m as the kernel
// spells them; io/fs keeps the latter in high bits of its own.
func unixMode(m fs.FileMode) uint32 {
	u := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		u |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		u |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		u |= 0o1000
	}
	return u
}

func (c *cpioWriter) dir(name string, perm fs.FileMode) error {
	return c.header(cpioHeader{name: name, mode: cpioDir | unixMode(perm)})
}

func (c *cpioWriter) symlink(name, target string) error {
	if err := c.header(cpioHeader{name: name, mode: cpioSymlink | 0o777, size: int64(len(target))}); err != nil {
		return err
	}
	if err := c.write([]byte(target)); err != nil {
		return err
	}
	return c.pad()
}

func (c *cpioWriter) charDev(name string, perm fs.FileMode, major, minor uint32) error {
	return c.header(cpioHeader{name: name, mode: cpioCharDev | unixMode(perm), rmajor: major, rmin: minor})
}

// file writes a regular file of exactly size bytes read from r.
func (c *cpioWriter) file(name string, perm fs.FileMode, size int64, r io.Reader) error {
	if err := c.header(cpioHeader{name: name, mode: cpioFile | unixMode(perm), size: size}); err != nil {
		return err
	}
	n, err := io.Copy(c.w, io.LimitReader(r, size))
	c.n += n
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("%s: %d bytes, expected %d (file changed while archiving?)", name, n, size)
	}
	return c.pad()
}

// close writes the trailer entry that ends the archive.
func (c *cpioWriter) close() error {
	return c.header(cpioHeader{name: "TRAILER!!!"})
}
