package launcher

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"syscall"

	"github.com/opencontainers/cgroups"
	"golang.org/x/sys/unix"
)

// Rootless: safe-run runs the same manifest without root by first entering
// a user namespace of its own, where the user is root over the user's own
// uid and their /etc/subuid range (through the setuid newuidmap and
// newgidmap of package uidmap), as rootlesskit and podman do. Inside it,
// safe-run follows the same path as under real root: a private mount
// namespace, the rootfs view with its mountpoint layer, pinned binds, the
// secrets tmpfs; the container's own user namespace nests inside.
//
// Two things differ, and the start report says so: the rootfs is not
// id-mapped (idmapped mounts need privilege over the host's file system;
// files of the user appear as root in the container), and limits need a
// cgroup v2 subtree delegated to the user.
//
// The outer safe-run stays as the parent: it forwards signals and exits
// with the inner one's status.

// rootlessEnv tells the re-executed safe-run where it is: "wait" until the
// parent has written the id maps, then "ready:SIZE" once it is root in
// the namespace, SIZE ids being mapped.
const rootlessEnv = "_SAFE_RUN_ROOTLESS"

// RootlessIDs returns the size of the user namespace safe-run runs in when
// it is the rootless inner process, or 0 when it is not.
func RootlessIDs() uint32 {
	v, ok := strings.CutPrefix(os.Getenv(rootlessEnv), "ready:")
	if !ok {
		return 0
	}
	n, _ := strconv.ParseUint(v, 10, 32)
	return uint32(n)
}

// FinishRootlessEntry runs first in a re-executed safe-run: it waits until
// the parent has mapped the user namespace, then executes itself again,
// because the first exec happened before the maps existed and so dropped
// every capability. Executed again, it follows the parent (see
// followParent). It returns only when safe-run was not re-executed, or
// was executed again.
func FinishRootlessEntry() {
	v := os.Getenv(rootlessEnv)
	if size, ok := strings.CutSuffix(v, lifelineMark); ok {
		// Children started later (safe-run-tools) do not have fd 3.
		os.Setenv(rootlessEnv, size)
		followParent(os.NewFile(lifelineFD, "rootless lifeline"))
		return
	}
	size, ok := strings.CutPrefix(v, "wait:")
	if !ok {
		return
	}
	sync := os.NewFile(lifelineFD, "rootless-sync")
	buf := make([]byte, 1)
	if n, _ := sync.Read(buf); n != 1 {
		fmt.Fprintln(os.Stderr, "safe-run: entering the user namespace: the parent did not map it")
		os.Exit(125)
	}
	// Kept open across the exec: the parent closes its end only when it
	// ends.
	os.Setenv(rootlessEnv, "ready:"+size+lifelineMark)
	err := syscall.Exec("/proc/self/exe", os.Args, os.Environ())
	fmt.Fprintf(os.Stderr, "safe-run: entering the user namespace: %v\n", err)
	os.Exit(125)
}

// The outer safe-run's sync pipe, fd 3 of the inner one, stays open for
// the outer's life; the mark on rootlessEnv says the inner has it.
const (
	lifelineFD   = 3
	lifelineMark = ":lifeline"
)

// followParent ends this inner safe-run as the outer one ended: killed.
// Its janitor and safe-run-init then clean up as after any SIGKILL. (The
// parent-death signal set for it cannot: the kernel clears it when the
// process becomes root in its namespace.)
func followParent(f *os.File) {
	syscall.CloseOnExec(lifelineFD) // neither the janitor nor a container has it
	go func() {
		buf := make([]byte, 1)
		for {
			if _, err := f.Read(buf); err != nil {
				_ = unix.Kill(os.Getpid(), unix.SIGKILL)
				return
			}
		}
	}()
}

// RootlessIDSize is the size of the user namespace a rootless run gets: the
// one it is in, or the one it would enter.
func RootlessIDSize() uint32 {
	if n := RootlessIDs(); n > 0 {
		return n
	}
	u, err := user.Current()
	if err != nil {
		return 1
	}
	_, uids, _ := userSubIDs("/etc/subuid", u)
	_, gids, _ := userSubIDs("/etc/subgid", u)
	if uids > 0 && gids > 0 {
		return IDRangeSize
	}
	return 1
}

// userSubIDs is the user's first range of at least 65535 subordinate ids.
func userSubIDs(file string, u *user.User) (start, count uint64, err error) {
	ranges, err := ReadSubIDs(file)
	if err != nil {
		return 0, 0, err
	}
	for _, r := range ranges {
		if (r.Owner == u.Username || r.Owner == u.Uid) && r.Count >= IDRangeSize-1 {
			return r.Start, IDRangeSize - 1, nil
		}
	}
	return 0, 0, nil
}

// MustEnterRootless reports whether safe-run runs without root and outside
// its own user namespace: a start must go through RunRootless first.
func MustEnterRootless() bool {
	return os.Geteuid() != 0 && RootlessIDs() == 0
}

// RunRootless re-executes safe-run with args in a new user namespace and
// waits for it. dirs are passed on, since inside, safe-run is root and
// would otherwise pick root's directories. What the user should know
// about the namespace goes to report as "safe-run: ..." lines (nil: not
// at all).
func RunRootless(args []string, dirs Dirs, report io.Writer) (int, error) {
	u, err := user.Current()
	if err != nil {
		return 0, err
	}
	uidStart, uidCount, err := userSubIDs("/etc/subuid", u)
	if err != nil {
		return 0, fmt.Errorf("reading /etc/subuid: %w", err)
	}
	gidStart, gidCount, err := userSubIDs("/etc/subgid", u)
	if err != nil {
		return 0, fmt.Errorf("reading /etc/subgid: %w", err)
	}
	size := uint64(1)
	if uidCount > 0 && gidCount > 0 {
		size = IDRangeSize
	} else if report != nil {
		fmt.Fprintf(report, "safe-run: user %s has no range of %d ids in /etc/subuid and /etc/subgid: only uid 0 of the container is mapped, to your own uid (add a range as root: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 %s)\n", u.Username, IDRangeSize, u.Username)
	}
	// The inner safe-run moves itself into a supervisor leaf of this
	// cgroup so that the container's cgroup can get controllers beside
	// it; this process must not stay behind in the cgroup, or it could
	// not delegate them. Where it cannot move (no cgroup v2 delegated
	// here), the inner safe-run says why.
	if cgroups.IsCgroup2UnifiedMode() {
		_ = enterSupervisorLeaf()
	}
	syncR, syncW, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer syncW.Close()
	cmd := exec.Command("/proc/self/exe", args...)
	cmd.Args[0] = os.Args[0]
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.ExtraFiles = []*os.File{syncR}
	cmd.Env = append(os.Environ(), rootlessEnv+"=wait:"+strconv.FormatUint(size, 10),
		"SAFE_RUN_STATE_DIR="+dirs.State, "SAFE_RUN_DATA_DIR="+dirs.Data)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWUSER, Pdeathsig: unix.SIGKILL}
	// Signals for the service go to the inner safe-run, which handles
	// them as it would as root.
	subscribed := SubscribeSignals()
	defer subscribed.stop()
	signals := subscribed.wait()
	if err := cmd.Start(); err != nil {
		syncR.Close()
		return 0, fmt.Errorf("entering a user namespace: %w (check that user namespaces are enabled: sysctl user.max_user_namespaces)", err)
	}
	syncR.Close()
	pid := strconv.Itoa(cmd.Process.Pid)
	var mapErr error
	if size == 1 {
		mapErr = writeSingleMap(pid, u)
	} else {
		mapErr = errors.Join(
			runMapper("newuidmap", pid, "0", u.Uid, "1", "1", strconv.FormatUint(uidStart, 10), strconv.FormatUint(uidCount, 10)),
			runMapper("newgidmap", pid, "0", u.Gid, "1", "1", strconv.FormatUint(gidStart, 10), strconv.FormatUint(gidCount, 10)))
	}
	if mapErr != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return 0, mapErr
	}
	// The pipe stays open: its end tells the inner safe-run this one
	// is gone (followParent).
	if _, err := syncW.Write([]byte{1}); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return 0, fmt.Errorf("releasing the inner safe-run: %w", err)
	}
	go func() {
		for sig := range signals {
			if sig != unix.SIGCHLD && sig != unix.SIGURG {
				_ = cmd.Process.Signal(sig)
			}
		}
	}()
	err = cmd.Wait()
	if cmd.ProcessState == nil {
		return 0, err
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	return cmd.ProcessState.ExitCode(), nil
}

func runMapper(tool string, args ...string) error {
	out, err := exec.Command(tool, args...).CombinedOutput()
	if errors.Is(err, exec.ErrNotFound) {
		return fmt.Errorf("%s is not installed (apt-get install uidmap)", tool)
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s (it must be setuid root or carry cap_setuid/cap_setgid: ls -l $(command -v %s))",
			tool, strings.Join(args, " "), err, strings.TrimSpace(string(out)), tool)
	}
	return nil
}

// writeSingleMap maps container root onto the user, which needs no helper.
func writeSingleMap(pid string, u *user.User) error {
	if err := os.WriteFile("/proc/"+pid+"/setgroups", []byte("deny"), 0); err != nil {
		return err
	}
	if err := os.WriteFile("/proc/"+pid+"/uid_map", []byte("0 "+u.Uid+" 1"), 0); err != nil {
		return err
	}
	return os.WriteFile("/proc/"+pid+"/gid_map", []byte("0 "+u.Gid+" 1"), 0)
}
