package host

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Probe returns the facts of this host, read once per process: every
// command and stage that asks gets the same answer.
func Probe() Facts { return probed() }

var probed = sync.OnceValue(probe)

func probe() Facts {
	f := Read("/", os.Getuid(), os.Geteuid())
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	f.Kernel = unix.ByteSliceToString(uts.Release[:])
	f.Arch = runtime.GOARCH
	f.CPUs = runtime.NumCPU()
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) == nil {
		f.Memory = uint64(si.Totalram) * uint64(si.Unit)
	}
	if v, ok := strings.CutPrefix(os.Getenv(RootlessEnv), "ready:"); ok {
		v, _, _ = strings.Cut(v, ":") // the lifeline mark, until the inner safe-run clears it
		n, _ := strconv.ParseUint(v, 10, 32)
		f.InnerIDs = uint32(n)
		f.InnerNet = os.Getenv(RootlessNetEnv) != ""
		f.InnerSharedNet = os.Getenv(RootlessNetEnv) == RootlessNetShared
		for _, e := range strings.Split(os.Getenv(RootlessPortsEnv), ",") {
			fd, port, ok := strings.Cut(e, "=")
			if n, err := strconv.Atoi(fd); ok && err == nil {
				if f.InnerPorts == nil {
					f.InnerPorts = map[string]int{}
				}
				f.InnerPorts[port] = n
			}
		}
	}
	for name, res := range map[string]int{"RLIMIT_NOFILE": unix.RLIMIT_NOFILE, "RLIMIT_CORE": unix.RLIMIT_CORE} {
		var l unix.Rlimit
		if unix.Getrlimit(res, &l) == nil {
			f.RlimitMax[name] = l.Max
		}
	}
	f.LandlockABI = landlockABI()
	if f.LandlockABI >= 7 {
		f.Audit = auditState()
	}
	if f.Seccomp.Present {
		f.Seccomp.Log = seccompAction(0x7ffc0000 /* SECCOMP_RET_LOG */)
		f.Seccomp.Notify = seccompAction(0x7fc00000 /* SECCOMP_RET_USER_NOTIF */)
	}
	return f
}

// landlockABI asks the kernel for its Landlock ABI version:
// landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION).
func landlockABI() int {
	v, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, 1 /* LANDLOCK_CREATE_RULESET_VERSION */)
	if errno != 0 {
		return 0
	}
	return int(v)
}

// auditState asks the kernel whether its audit is on (AUDIT_GET on the
// audit netlink socket, as auditctl -s does).
func auditState() Audit {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_AUDIT)
	if err != nil {
		return AuditUnknown
	}
	defer unix.Close(fd)
	var req [unix.NLMSG_HDRLEN]byte
	*(*unix.NlMsghdr)(unsafe.Pointer(&req[0])) = unix.NlMsghdr{Len: unix.NLMSG_HDRLEN, Type: unix.AUDIT_GET, Flags: unix.NLM_F_REQUEST, Seq: 1}
	if err := unix.Sendto(fd, req[:], 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return AuditUnknown
	}
	// An answer of type AUDIT_GET: struct audit_status, whose second
	// u32 is enabled; else NLMSG_ERROR (EPERM without the capability).
	buf := make([]byte, 4096)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil || n < unix.NLMSG_HDRLEN+8 {
		return AuditUnknown
	}
	h := (*unix.NlMsghdr)(unsafe.Pointer(&buf[0]))
	if h.Type != unix.AUDIT_GET {
		return AuditUnknown
	}
	if *(*uint32)(unsafe.Pointer(&buf[unix.NLMSG_HDRLEN+4])) == 0 {
		return AuditOff
	}
	return AuditOn
}

// seccompAction asks the kernel whether it knows a seccomp return action.
func seccompAction(action uint32) bool {
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, 2 /* SECCOMP_GET_ACTION_AVAIL */, 0, uintptr(unsafe.Pointer(&action)))
	return errno == 0
}
