package profiles

import (
	"encoding/binary"
	"errors"
	"testing"

	"golang.org/x/sys/unix"
)

// TestAuditRecordFilter runs the socket filter of the audit reader on
// records of each type sent through a datagram socket pair: the seccomp
// and Landlock records pass, whole; the host's others do not. (Until it
// let Landlock's through, no Landlock denial was ever shown.)
func TestAuditRecordFilter(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	if err := onlyWantedRecords(fds[1]); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		typ  uint16
		pass bool
	}{
		{unix.AUDIT_SECCOMP, true},
		{auditLandlockAccess, true},
		{auditLandlockDomain, true},
		{unix.AUDIT_SYSCALL, false},
		{1325 /* AUDIT_NETFILTER_CFG */, false},
		{unix.AUDIT_SECCOMP>>8 | unix.AUDIT_SECCOMP&0xff<<8, false}, // swapped: the byte order matters
	} {
		msg := make([]byte, unix.NLMSG_HDRLEN+8)
		binary.NativeEndian.PutUint32(msg[0:], uint32(len(msg)))
		binary.NativeEndian.PutUint16(msg[4:], tc.typ)
		copy(msg[unix.NLMSG_HDRLEN:], "domain=1")
		if err := unix.Send(fds[0], msg, 0); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64)
		n, _, err := unix.Recvfrom(fds[1], buf, unix.MSG_DONTWAIT)
		switch {
		case tc.pass && (err != nil || n != len(msg)):
			t.Errorf("type %d: %d bytes, %v; want the whole record", tc.typ, n, err)
		case !tc.pass && !errors.Is(err, unix.EAGAIN):
			t.Errorf("type %d: %d bytes, %v; want it filtered out", tc.typ, n, err)
		}
	}
}
