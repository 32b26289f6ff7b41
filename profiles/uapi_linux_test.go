package profiles

import (
	"testing"

	"github.com/opencontainers/runc/libcontainer/capabilities"
	"golang.org/x/sys/unix"
)

// TestUAPIConstants checks the numbers the profiles hard-code, so that
// generating a profile needs neither Linux nor x/sys, against x/sys/unix
// for the host's architecture (amd64 and arm64 share them). x/sys/unix has
// no FIONBIO, FIONCLEX or FIOCLEX; those were checked by hand against
// <asm-generic/ioctls.h>.
func TestUAPIConstants(t *testing.T) {
	for _, c := range []struct {
		name      string
		ours, sys uint64
	}{
		{"CLONE_NEW*", cloneNamespaces, unix.CLONE_NEWNS | unix.CLONE_NEWCGROUP | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET},
		{"AF_UNIX", afUnix, unix.AF_UNIX},
		{"AF_INET", afInet, unix.AF_INET},
		{"AF_INET6", afInet6, unix.AF_INET6},
		{"AF_NETLINK", afNetlink, unix.AF_NETLINK},
		{"NETLINK_ROUTE", netlinkRoute, unix.NETLINK_ROUTE},
		{"EPERM", errnoEPERM, uint64(unix.EPERM)},
		{"ENOSYS", errnoENOSYS, uint64(unix.ENOSYS)},
		{"TCGETS", ioctlTCGETS, unix.TCGETS},
		{"TCSETS", ioctlTCSETS, unix.TCSETS},
		{"TCSETSW", ioctlTCSETSW, unix.TCSETSW},
		{"TCSETSF", ioctlTCSETSF, unix.TCSETSF},
		{"TCFLSH", ioctlTCFLSH, unix.TCFLSH},
		{"TIOCGPGRP", ioctlTIOCGPGRP, unix.TIOCGPGRP},
		{"TIOCSPGRP", ioctlTIOCSPGRP, unix.TIOCSPGRP},
		{"TIOCGWINSZ", ioctlTIOCGWINSZ, unix.TIOCGWINSZ},
		{"TIOCSWINSZ", ioctlTIOCSWINSZ, unix.TIOCSWINSZ},
		{"FIONREAD (TIOCINQ)", ioctlFIONREAD, unix.TIOCINQ},
		{"TCGETS2", ioctlTCGETS2, unix.TCGETS2},
		{"TCSETS2", ioctlTCSETS2, unix.TCSETS2},
		{"TCSETSW2", ioctlTCSETSW2, unix.TCSETSW2},
		{"TCSETSF2", ioctlTCSETSF2, unix.TCSETSF2},
	} {
		if c.ours != c.sys {
			t.Errorf("%s: ours %#x, x/sys/unix %#x", c.name, c.ours, c.sys)
		}
	}
}

// TestCapabilities checks isCapability against the capabilities runc knows.
func TestCapabilities(t *testing.T) {
	known := capabilities.KnownCapabilities()
	for _, c := range known {
		if !isCapability(c) {
			t.Errorf("runc knows %s; add it to isCapability", c)
		}
	}
	n := 0
	for _, c := range capSets()[len(capSets())-1] { // the set of all
		if !isCapability(c) {
			t.Errorf("allCapabilities has %s, which isCapability does not know", c)
		}
		n++
	}
	if n != len(known) {
		t.Errorf("allCapabilities has %d capabilities, runc knows %d", n, len(known))
	}
}
