// Package rootless runs safe-run without root: it re-executes safe-run in a
// user namespace of the user's own first, where the inner safe-run runs the
// service as it would as root.
package rootless

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/host"
	"github.com/safe-run/safe-run/launcher"
	"github.com/safe-run/safe-run/manifest"
	"github.com/safe-run/safe-run/network"
	"github.com/safe-run/safe-run/plan"
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

// FinishEntry runs first in a re-executed safe-run: it waits until
// the parent has mapped the user namespace, then executes itself again,
// because the first exec happened before the maps existed and so dropped
// every capability. Executed again, it follows the parent (see
// followParent). It returns only when safe-run was not re-executed, or
// was executed again.
func FinishEntry() {
	v := os.Getenv(host.RootlessEnv)
	if size, ok := strings.CutSuffix(v, lifelineMark); ok {
		// Children started later (safe-run-tools) do not have fd 3.
		os.Setenv(host.RootlessEnv, size)
		finishJoin()
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
		os.Exit(125) //nolint:forbidigo // runs before main, as the program's entry (init.go): nothing to return to
	}
	// Kept open across the exec: the parent closes its end only when it
	// ends.
	os.Setenv(host.RootlessEnv, "ready:"+size+lifelineMark)
	err := syscall.Exec("/proc/self/exe", os.Args, os.Environ())
	fmt.Fprintf(os.Stderr, "safe-run: entering the user namespace: %v\n", err)
	os.Exit(125) //nolint:forbidigo // runs before main, as the program's entry (init.go): nothing to return to
}

// The outer safe-run's sync pipe, fd 3 of the inner one, stays open for
// the outer's life; the mark on host.RootlessEnv says the inner has it.
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

// Enter is how every command that starts a service begins without root:
// when f says safe-run runs as a user, outside its own user namespace, it
// re-executes safe-run with args in a new user namespace and waits for it,
// and entered is true, code the inner safe-run's exit status. Otherwise it
// does nothing, and the command goes on as root (or as the inner
// safe-run).
//
// dirs are passed on, since inside, safe-run is root and would otherwise
// pick root's directories. What the user should know about the namespace
// goes to report as "safe-run: ..." lines (nil: not at all).
//
// path is the manifest the command runs ("" when it has none): when it
// asks for a bridge of the service's own, the inner safe-run gets a
// network namespace of its own too, connected to the host by pasta (see
// connect); for a named bridge it joins the user's shared namespaces
// instead, with the published ports bound here (see joinShared). A
// manifest that does not load is left to the inner safe-run to report.
//
// signals, subscribed to by the caller beforehand, are forwarded to the
// inner safe-run once it has subscribed to them itself; nil: Enter
// subscribes.
func Enter(f host.Facts, args []string, path string, dirs plan.Dirs, report io.Writer, log *slog.Logger, signals *launcher.Signals) (code int, entered bool, err error) {
	if !f.MustEnterRootless() {
		return 0, false, nil
	}
	if err := checkStateDir(f, dirs.State); err != nil {
		return 0, true, err
	}
	var n innerNet
	if path != "" {
		if svc, err := plan.Load(path); err == nil && svc.Network.Mode == manifest.NetworkBridge {
			if n, err = planNet(f, svc); err != nil {
				return 0, true, err
			}
		}
	}
	defer n.close()
	code, err = run(f, args, dirs, &n, report, log, signals)
	return code, true, err
}

// checkStateDir refuses, before anything is made, a state directory the
// user can neither create nor write: without XDG_RUNTIME_DIR that is
// root's, and the start failed at its lock with "permission denied" and
// no fix. The words are doctor's.
func checkStateDir(f host.Facts, state string) error {
	p := state
	for {
		if _, err := os.Stat(p); err == nil {
			break
		}
		parent := filepath.Dir(p)
		if parent == p {
			break
		}
		p = parent
	}
	// Access checks the real ids: the user's, as the inner safe-run's
	// are on the host.
	if unix.Access(p, unix.W_OK|unix.X_OK) == nil {
		return nil
	}
	if os.Getenv("XDG_RUNTIME_DIR") == "" && os.Getenv("SAFE_RUN_STATE_DIR") == "" {
		return fmt.Errorf("XDG_RUNTIME_DIR is not set: without root safe-run keeps its state there, and %s is root's (log in through systemd-logind (ssh, a desktop or machinectl shell %s@), which creates /run/user/%d and sets it; or set SAFE_RUN_STATE_DIR to a directory of yours)",
			state, f.User, f.UID)
	}
	return fmt.Errorf("the state directory %s cannot be made or written by you: %s is not writable (set SAFE_RUN_STATE_DIR, or XDG_RUNTIME_DIR, to a directory of yours)", state, p)
}

// innerNet is the network the outer safe-run gives the inner one: none,
// a namespace of its own with pasta forwarding ports, or the user's
// shared one with sockets bound here.
type innerNet struct {
	own    bool
	ports  []network.Port // own: pasta forwards them
	join   bool           // the user's shared namespaces
	shared *shared        // joined
	bound  []portFile     // join: the published ports' sockets
}

// close closes the sockets bound here, should run not have.
func (n *innerNet) close() {
	for _, p := range n.bound {
		p.f.Close()
	}
	n.bound = nil
}

// planNet decides the inner safe-run's network for a service in bridge
// mode. A manifest that does not load is left to the inner safe-run to
// report.
func planNet(f host.Facts, svc *manifest.Service) (innerNet, error) {
	// Inside, the host's addresses are out of sight.
	if len(svc.Network.Published) > 0 {
		addrs, err := host.Addresses()
		if err == nil {
			err = svc.CheckHostAddresses(addrs)
		}
		if err != nil {
			return innerNet{}, err
		}
	}
	if f.Pasta == "" {
		return innerNet{}, svc.Errorf("network.mode", `"bridge" without root needs pasta to connect the service's network to the host (as root: apt-get install passt)`)
	}
	if !f.TunUsable {
		return innerNet{}, svc.Errorf("network.mode", `"bridge" without root: pasta needs %s: %s (as root: chmod 0666 %s, the kernel's default)`, host.TunDevice, f.TunProblem, host.TunDevice)
	}
	var n innerNet
	if svc.Network.Bridge == "" {
		n.own = true
		for _, p := range svc.Network.Published {
			n.ports = append(n.ports, network.Port(p))
		}
		// pasta binds them itself (-t, -u), and exits on one taken, which
		// the start would see only as no uplink after its timeout: each
		// is tried first.
		if p, err := portsFree(n.ports, portsFreeWait); err != nil {
			return innerNet{}, svc.Errorf("network.ports", "%s", portError(f, p, err))
		}
		return n, nil
	}
	// The ports first: a port taken fails the start before anything
	// else is made.
	for _, pp := range svc.Network.Published {
		p := network.Port(pp)
		file, err := network.ListenPort(context.Background(), p)
		if err != nil {
			n.close()
			return innerNet{}, svc.Errorf("network.ports", "%s", portError(f, p, err))
		}
		n.bound = append(n.bound, portFile{key: plan.RootlessPortKey(p), f: file})
	}
	n.join = true
	return n, nil
}

// portError says why this user cannot publish p.
func portError(f host.Facts, p network.Port, err error) string {
	if errors.Is(err, syscall.EACCES) {
		start := "1024"
		if f.UnprivilegedPortStart >= 0 {
			start = strconv.Itoa(f.UnprivilegedPortStart)
		}
		return fmt.Sprintf("publishing %s: without root a host port below %s (net.ipv4.ip_unprivileged_port_start) cannot be bound: choose a host port of %s or more, or as root: sysctl net.ipv4.ip_unprivileged_port_start=%d",
			plan.RootlessPortKey(p), start, start, p.HostPort)
	}
	return err.Error()
}

func run(f host.Facts, args []string, dirs plan.Dirs, n *innerNet, report io.Writer, log *slog.Logger, subscribed *launcher.Signals) (int, error) {
	if !n.join && report != nil && mapSize(f) == 1 {
		fmt.Fprintf(report, "safe-run: user %s has no range of %d ids in /etc/subuid and /etc/subgid: only uid 0 of the container is mapped, to your own uid (add a range as root: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 %s)\n", f.User, host.IDRangeSize, f.User)
	}
	// The inner safe-run moves itself into a supervisor leaf of this
	// cgroup so that the container's cgroup can get controllers beside
	// it; this process must not stay behind in the cgroup, or it could
	// not delegate them. Where it cannot move (no cgroup v2 delegated
	// here), the inner safe-run says why.
	if f.Cgroup.Mode == host.CgroupV2 {
		if err := launcher.EnterSupervisorLeaf(); err != nil {
			log.Debug("moving into the supervisor cgroup before entering the user namespace", "err", err)
		}
	}
	if n.join {
		// After the move: a keeper started now stays in this leaf, not
		// in the cgroup that must delegate controllers.
		s, err := joinShared(f, dirs.State, log)
		if err != nil {
			return 0, err
		}
		n.shared = s
		// However this run ends: the last member ends the namespaces.
		defer func() {
			n.shared.closeNS()
			n.shared.members.Close()
			n.shared = nil
			if err := Release(dirs.State, nil); err != nil {
				log.Warn("ending your shared network namespace", "err", err)
			}
		}()
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
	cmd.Env = append(os.Environ(), "SAFE_RUN_STATE_DIR="+dirs.State, "SAFE_RUN_DATA_DIR="+dirs.Data)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: unix.SIGKILL}
	size := uint64(0) // known once mapped
	switch {
	case n.shared != nil:
		// The constructor joins the user's namespaces, which are
		// mapped already: the inner safe-run is root from its first
		// instruction and needs no second exec.
		files, env := n.shared.files(n.bound)
		cmd.ExtraFiles = append(cmd.ExtraFiles, files...)
		cmd.Env = append(cmd.Env, env...)
		cmd.Env = append(cmd.Env, host.RootlessEnv+"=ready:"+strconv.FormatUint(n.shared.ids, 10)+lifelineMark)
	case n.own:
		// The whole inner safe-run, every thread, is in the network
		// namespace it connects the service from; and in a mount
		// namespace its user namespace owns, where it may bind-mount
		// the service's network namespace.
		cmd.SysProcAttr.Cloneflags = unix.CLONE_NEWUSER | unix.CLONE_NEWNET | unix.CLONE_NEWNS
		cmd.Env = append(cmd.Env, host.RootlessNetEnv+"=pasta")
	default:
		cmd.SysProcAttr.Cloneflags = unix.CLONE_NEWUSER
	}
	// The inner safe-run says when it takes signals: until then one
	// forwarded could end it (SIGTERM, SIGUSR1 while its runtime
	// starts) or be lost. Only safe-run's own start says so; for
	// another caller's inner safe-run the signals go at once.
	var taken *os.File
	if subscribed != nil {
		r, w, err := os.Pipe()
		if err != nil {
			return 0, err
		}
		defer r.Close()
		defer w.Close()
		cmd.Env = append(cmd.Env, signalsFDEnv+"="+strconv.Itoa(lifelineFD+len(cmd.ExtraFiles)))
		cmd.ExtraFiles = append(cmd.ExtraFiles, w)
		taken = r
	}
	if n.shared == nil {
		size = mapSize(f)
		cmd.Env = append(cmd.Env, host.RootlessEnv+"=wait:"+strconv.FormatUint(size, 10))
	}
	// Signals for the service go to the inner safe-run, which handles
	// them as it would as root.
	if subscribed == nil {
		subscribed = launcher.SubscribeSignals()
		defer subscribed.Stop()
	}
	signals := subscribed.Wait()
	if err := cmd.Start(); err != nil {
		syncR.Close()
		return 0, fmt.Errorf("entering a user namespace: %w (check that user namespaces are enabled: sysctl user.max_user_namespaces)", err)
	}
	syncR.Close()
	if taken != nil {
		// Only the inner safe-run holds the writing end now: its
		// byte, or its end, comes through.
		cmd.ExtraFiles[len(cmd.ExtraFiles)-1].Close()
	}
	if n.shared != nil {
		// The inner safe-run has them now; the membership stays open
		// here too, until it has exited.
		n.shared.closeNS()
		for _, p := range n.bound {
			p.f.Close()
		}
		n.bound = nil
	} else {
		if _, err := mapIDs(f, strconv.Itoa(cmd.Process.Pid), size); err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return 0, err
		}
		if n.own {
			p, err := connect(f.Pasta, cmd.Process.Pid, n.ports, log)
			if err != nil {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				return 0, err
			}
			defer p.stop()
		}
		// The pipe stays open: its end tells the inner safe-run this
		// one is gone (followParent).
		if _, err := syncW.Write([]byte{1}); err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return 0, fmt.Errorf("releasing the inner safe-run: %w", err)
		}
	}
	go func() {
		if taken != nil {
			_, _ = taken.Read(make([]byte, 1)) // a byte, or EOF: it takes them, or never will
		}
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
		// The inner safe-run takes every signal it is sent but SIGKILL (and forwards those to the
		// service): dead of one, it said nothing, and the exit looked like the service's.
		fmt.Fprintf(os.Stderr, "safe-run: safe-run in your user namespace was killed by %s; its janitor cleans up after it (exit %d)\n", unix.SignalName(ws.Signal()), 128+int(ws.Signal()))
		return 128 + int(ws.Signal()), nil
	}
	return cmd.ProcessState.ExitCode(), nil
}

// signalsFDEnv names the inner safe-run's end of the pipe on which it
// says that it takes signals (SignalsTaken).
const signalsFDEnv = "SAFE_RUN_ROOTLESS_SIGNALS_FD"

// SignalsTaken tells the outer safe-run, in an inner one, once signals
// is complete, that it may forward signals now: a byte on the pipe it
// passed. It is called first thing in main; a safe-run that is no inner
// one's start does nothing. The pipe is never passed on: the
// descriptor is closed on exec at once.
func SignalsTaken(signals *launcher.Signals) {
	v := os.Getenv(signalsFDEnv)
	if v == "" {
		return
	}
	os.Unsetenv(signalsFDEnv)
	fd, err := strconv.Atoi(v)
	if err != nil || fd <= lifelineFD {
		return
	}
	syscall.CloseOnExec(fd)
	f := os.NewFile(uintptr(fd), "rootless signals taken")
	go func() {
		signals.Wait()
		_, _ = f.Write([]byte{1})
		f.Close()
	}()
}

// mapSize is the size of the user namespace a rootless run gets: the
// user's subordinate range and their own uid, or only their own uid.
func mapSize(f host.Facts) uint64 {
	_, uidCount := f.UserSubIDs(f.SubUIDs)
	_, gidCount := f.UserSubIDs(f.SubGIDs)
	if uidCount > 0 && gidCount > 0 {
		return host.IDRangeSize
	}
	return 1
}

// mapIDs writes the id maps of pid's new user namespace, size ids
// (mapSize): 0 is the user, 1.. their subordinate ids.
func mapIDs(f host.Facts, pid string, size uint64) (uint64, error) {
	if size == 0 {
		size = mapSize(f)
	}
	if size == 1 {
		return size, writeSingleMap(pid, strconv.Itoa(f.UID), strconv.Itoa(os.Getgid()))
	}
	uidStart, uidCount := f.UserSubIDs(f.SubUIDs)
	gidStart, gidCount := f.UserSubIDs(f.SubGIDs)
	return size, errors.Join(
		runMapper("newuidmap", pid, "0", strconv.Itoa(f.UID), "1", "1", strconv.FormatUint(uidStart, 10), strconv.FormatUint(uidCount, 10)),
		runMapper("newgidmap", pid, "0", strconv.Itoa(os.Getgid()), "1", "1", strconv.FormatUint(gidStart, 10), strconv.FormatUint(gidCount, 10)))
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
func writeSingleMap(pid, uid, gid string) error {
	if err := os.WriteFile("/proc/"+pid+"/setgroups", []byte("deny"), 0); err != nil {
		return err
	}
	if err := os.WriteFile("/proc/"+pid+"/uid_map", []byte("0 "+uid+" 1"), 0); err != nil {
		return err
	}
	return os.WriteFile("/proc/"+pid+"/gid_map", []byte("0 "+gid+" 1"), 0)
}
