package testenv

import (
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"golang.org/x/sys/unix"
)

// EnableAudit turns the kernel's audit on for the test, as `auditctl -e 1`
// does (AUDIT_SET of AUDIT_STATUS_ENABLED on the audit netlink socket),
// when it is off, and turns it off again at the test's end. Landlock audits
// its denials only while audit is on (security/landlock/audit.c checks
// audit_enabled); no audit rule is needed for them.
//
// Turning it on has a cost for the whole host that outlives the test: the
// kernel then gives every new process an audit context until the next
// boot (audit_ever_enabled in kernel/auditsc.c). Tests call it only to see
// what safe-run makes of the records.
func EnableAudit(t testing.TB) {
	t.Helper()
	RequireRoot(t)
	was, err := auditEnabled()
	if err != nil {
		t.Fatalf("asking the kernel whether its audit is on: %v", err)
	}
	switch was {
	case 1:
		return
	case 2:
		Skip(t, "the kernel's audit is locked (auditctl -e 2): it cannot be turned on for the test")
	}
	if err := setAuditEnabled(1); err != nil {
		t.Fatalf("turning the kernel's audit on: %v", err)
	}
	t.Cleanup(func() {
		if err := setAuditEnabled(was); err != nil {
			t.Errorf("turning the kernel's audit back to %d: %v", was, err)
		}
	})
}

// auditStatusLen is the length of struct audit_status of <linux/audit.h>
// up to its backlog field, what AUDIT_GET and AUDIT_SET need.
const auditStatusLen = 8 * 4

// auditRequest sends one audit request with payload and returns the
// kernel's answer: the payload of typ, or the error of its NLMSG_ERROR.
func auditRequest(typ uint16, payload []byte) ([]byte, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_AUDIT)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	req := make([]byte, unix.NLMSG_HDRLEN+len(payload))
	binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:], typ)
	binary.NativeEndian.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	binary.NativeEndian.PutUint32(req[8:], 1)
	copy(req[unix.NLMSG_HDRLEN:], payload)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, err
	}
	buf := make([]byte, 8192)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return nil, err
		}
		if n < unix.NLMSG_HDRLEN {
			return nil, errors.New("short netlink answer")
		}
		data := buf[unix.NLMSG_HDRLEN:n]
		switch got := binary.NativeEndian.Uint16(buf[4:6]); {
		case got == unix.NLMSG_ERROR && len(data) >= 4:
			if e := int32(binary.NativeEndian.Uint32(data)); e != 0 {
				return nil, unix.Errno(-e)
			}
			if typ == unix.AUDIT_SET {
				return nil, nil // the ack
			}
		case got == typ:
			return data, nil
		}
	}
}

func auditEnabled() (uint32, error) {
	data, err := auditRequest(unix.AUDIT_GET, nil)
	if err != nil {
		return 0, err
	}
	if len(data) < auditStatusLen {
		return 0, fmt.Errorf("AUDIT_GET: %d bytes of status", len(data))
	}
	return binary.NativeEndian.Uint32(data[4:]), nil
}

func setAuditEnabled(v uint32) error {
	st := make([]byte, auditStatusLen)
	binary.NativeEndian.PutUint32(st[0:], unix.AUDIT_STATUS_ENABLED) // mask
	binary.NativeEndian.PutUint32(st[4:], v)
	_, err := auditRequest(unix.AUDIT_SET, st)
	return err
}
