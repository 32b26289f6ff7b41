package ops

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/internal/proc"
)

// A rootless service's supervisor runs in its user's user namespace,
// where the host's root has no uid: the kernel shows root's connection to
// the control socket as from the overflow uid (65534), as it shows any uid
// the namespace does not map, so the supervisor cannot tell root from
// another user and refuses both. The supervisor must keep refusing: an
// overflow uid is no proof of root. Root, who may signal any process
// anyway, does it itself instead: `stop` sends the supervisor SIGTERM, as
// systemd would (a second one, after -t, kills the service), and `kill`
// sends the signal to the service's init, as the supervisor forwards it.
// Each pid comes from status.json, which the service's user writes, so
// each is checked before it is signalled (supervisorAsRoot, initAsRoot):
// a status file forged to name another process gets nothing signalled.

// hostRoot: this process is root in the host's user namespace (its map is
// the identity over every uid), the one user the overflow uid may hide.
func hostRoot() bool {
	if os.Geteuid() != 0 {
		return false
	}
	data, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return false
	}
	return strings.Join(strings.Fields(string(data)), " ") == "0 0 4294967295"
}

// listenerPID is the pid of the process that listens on the other end of
// c (SO_PEERCRED of a connected client: the listener's credentials at
// listen(2)).
func listenerPID(c *net.UnixConn) int {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0
	}
	var cred *unix.Ucred
	_ = raw.Control(func(fd uintptr) {
		cred, _ = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if cred == nil {
		return 0
	}
	return int(cred.Pid)
}

// procUID is the real uid of process pid, as this namespace sees it, and
// its parent's pid (/proc/PID/status).
func procUID(pid int) (uid, ppid int, err error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, 0, err
	}
	uid, ppid = -1, -1
	for _, line := range strings.Split(string(data), "\n") {
		k, v, _ := strings.Cut(line, ":")
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		switch k {
		case "Uid":
			uid, _ = strconv.Atoi(f[0])
		case "PPid":
			ppid, _ = strconv.Atoi(f[0])
		}
	}
	if uid < 0 || ppid < 0 {
		return 0, 0, fmt.Errorf("/proc/%d/status: no Uid or PPid", pid)
	}
	return uid, ppid, nil
}

// errNotSupervisor: what status.json names is not the service's
// supervisor, or no longer.
var errNotSupervisor = errors.New("is not the supervisor status.json names")

// supervisorAsRoot returns a pidfd of s's supervisor, once it is sure of
// it: the process that listens on the control socket (listener), with
// the pid and the start time status.json gives, and run by the user who
// owns the state directory, who is not root (a supervisor of root's
// takes root's requests itself). The pidfd is opened first: whatever the
// checks saw is the process it signals, never a later one of that pid.
func supervisorAsRoot(s *Status, listener int) (int, int, error) {
	var st unix.Stat_t
	if err := unix.Stat(s.StateDir, &st); err != nil {
		return -1, 0, fmt.Errorf("%s: %w", s.StateDir, err)
	}
	owner := int(st.Uid)
	fd, err := unix.PidfdOpen(s.SupervisorPID, 0)
	if err != nil {
		return -1, 0, fmt.Errorf("supervisor pid %d: %w", s.SupervisorPID, err)
	}
	uid, _, err := procUID(s.SupervisorPID)
	switch {
	case err != nil:
	case listener != s.SupervisorPID:
		err = fmt.Errorf("pid %d, which listens on %s, %w (pid %d)", listener, filepath.Join(s.StateDir, ControlFile), errNotSupervisor, s.SupervisorPID)
	case !proc.Alive(s.SupervisorPID, s.SupervisorStart) || s.SupervisorStart == 0:
		err = fmt.Errorf("pid %d %w: it started at another time", s.SupervisorPID, errNotSupervisor)
	case owner == 0 || uid != owner:
		err = fmt.Errorf("pid %d runs as uid %d, %s is uid %d's: it %w", s.SupervisorPID, uid, s.StateDir, owner, errNotSupervisor)
	}
	if err != nil {
		unix.Close(fd)
		return -1, 0, err
	}
	return fd, owner, nil
}

// initAsRoot returns a pidfd of the service's init, once it is sure of
// it: a child of the supervisor whose pidfd is sup (still running, so
// its pid is not reused, and the child's parent pid is its).
func initAsRoot(s *Status, sup int) (int, error) {
	fd, err := unix.PidfdOpen(s.InitPID, 0)
	if err != nil {
		return -1, fmt.Errorf("init pid %d: %w", s.InitPID, err)
	}
	uid, ppid, err := procUID(s.InitPID)
	if err == nil && ppid != s.SupervisorPID {
		err = fmt.Errorf("init pid %d is not a child of the supervisor (pid %d) but of pid %d", s.InitPID, s.SupervisorPID, ppid)
	}
	if err == nil && !mapsTo(s.SupervisorPID, uid) {
		// A child that is no uid of the service's namespace (a
		// setuid program that became root) is no init of the service.
		err = fmt.Errorf("init pid %d runs as uid %d, which the supervisor's user namespace does not map", s.InitPID, uid)
	}
	if err == nil && exited(sup) {
		err = fmt.Errorf("its supervisor (pid %d) exited", s.SupervisorPID)
	}
	if err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// mapsTo: host uid is one of the user namespace of process pid (its
// uid_map's outside ranges).
func mapsTo(pid, uid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/uid_map")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		var in, out, n int
		if _, err := fmt.Sscan(line, &in, &out, &n); err == nil && uid >= out && uid-out < n {
			return true
		}
	}
	return false
}

// exited: the process of pidfd fd has exited.
func exited(fd int) bool {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, _ := unix.Poll(fds, 0)
	return n > 0
}

// asRoot does req for host root, which s's supervisor refused (see
// above); refused is the supervisor's answer.
func asRoot(ctx context.Context, s *Status, listener int, req Request, refused string) error {
	fail := func(err error) error {
		return fmt.Errorf("%s: %w: %s; as root, signalling it directly: %w", s.Name, ErrNotPermitted, refused, err)
	}
	sup, owner, err := supervisorAsRoot(s, listener)
	if err != nil {
		return fail(err)
	}
	defer unix.Close(sup)
	switch req.Op {
	case OpStop:
		if err := unix.PidfdSendSignal(sup, unix.SIGTERM, nil, 0); err != nil {
			return fail(err)
		}
		if req.Timeout > 0 {
			// The supervisor's own stop waits stop_timeout; a second
			// SIGTERM makes it kill the service at once.
			t, cancel := context.WithTimeout(ctx, req.Timeout)
			waitFD(t, sup)
			cancel()
			if !exited(sup) && ctx.Err() == nil {
				_ = unix.PidfdSendSignal(sup, unix.SIGTERM, nil, 0)
			}
		}
		waitFD(ctx, sup)
		if ctx.Err() != nil {
			return fmt.Errorf("%s: waiting for it to stop: %w", s.Name, ctx.Err())
		}
		return nil
	case OpKill:
		init, err := initAsRoot(s, sup)
		if err != nil {
			return fail(err)
		}
		defer unix.Close(init)
		if err := unix.PidfdSendSignal(init, unix.Signal(req.Signal), nil, 0); err != nil {
			return fail(err)
		}
		return nil
	}
	name := "#" + strconv.Itoa(owner)
	if u, err := user.LookupId(strconv.Itoa(owner)); err == nil {
		name = u.Username
	}
	return fmt.Errorf("%s: %w: it runs rootless in uid %d's user namespace, where the host's root has no uid of its own (its supervisor sees root as the overflow uid, as any user it does not map, and refuses it); exec as its user: runuser -u %s -- env SAFE_RUN_STATE_DIR=%s safe-run exec %s -- COMMAND", s.Name, ErrNotPermitted, owner, name, filepath.Dir(s.StateDir), s.Name)
}

// waitFD waits until the process of pidfd fd has exited, or ctx ends.
func waitFD(ctx context.Context, fd int) {
	for ctx.Err() == nil {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if n, err := unix.Poll(fds, 100); n > 0 || err != nil && !errors.Is(err, unix.EINTR) {
			return
		}
	}
}

// waitExit waits until process pid has exited, or ctx ends.
func waitExit(ctx context.Context, pid int) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return // gone already (ESRCH), or no pidfd: nothing better to wait on
	}
	defer unix.Close(fd)
	waitFD(ctx, fd)
}
