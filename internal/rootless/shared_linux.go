package rootless

import "C" // for join_linux.c, whose constructor runs in every safe-run before Go's runtime

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/host"
	"github.com/safe-run/safe-run/internal/atomicfile"
	"github.com/safe-run/safe-run/internal/nsholder"
	"github.com/safe-run/safe-run/internal/proc"
	"github.com/safe-run/safe-run/plan"
)

// Named bridges without root: the members of a bridge must meet in one
// network namespace, so every run of the user's on a named bridge joins
// one user namespace U and one network namespace N, the user's, instead
// of making its own (podman's rootless-netns). A keeper process holds
// them: `safe-run rootless-netns`, in a session of its own, running as the
// user in the host's namespaces. It clones the pause process that is in U
// and N and maps U over the user's uid and subordinate ids, as a run of
// its own maps its namespace; it starts the one pasta that connects N to
// the host, which forwards no port either way; then it waits. Pause and
// pasta die with it (PDEATHSIG), and it ends when either of them does.
//
// A run joins U and N by setns from a C constructor (join_linux.c), with
// descriptors of the pause process's namespaces the outer safe-run
// opened, and makes its own mount namespace; inside, it is root over the
// network of N and attaches the service as root does on the host, with
// the user's network state (plan.NetworkDir). A running pasta cannot
// take new ports: the outer safe-run binds each published port on the
// host itself and hands the socket to the inner one, whose forwarders
// accept on it (network.ListenPort, Options.ListenFDs).
//
// Membership is a shared flock on members, held by the outer and the
// inner safe-run of every run on a named bridge (one open file, passed
// on), taken under lock: the kernel drops it when both are gone, however
// they end. Whoever finds no member left under lock, by taking members
// exclusively, ends the keeper and removes the shared state: the outer
// safe-run after its inner one exits, or the janitor of a killed one
// (network-cleanup). A keeper that died is found at the next start
// (holder.json names a dead process) and replaced.
//
// All of this lives in the user's runtime directory, never root's.

// KeeperCommand is safe-run's hidden command that keeps the user's shared
// namespaces: safe-run rootless-netns.
const KeeperCommand = "rootless-netns"

// joinEnv names the descriptors of U and N for the constructor: "USER,NET".
const joinEnv = "_SAFE_RUN_ROOTLESS_JOIN"

// The inner safe-run's descriptors in the shared namespace: 3 is the
// lifeline, as for any rootless run.
const (
	membersFD   = 4
	joinUserFD  = 5
	joinNetFD   = 6
	firstPortFD = 7
)

// sharedDir is where the keeper's state lives: lock, members, holder.json,
// pasta.pid.
func sharedDir(stateDir string) string { return filepath.Join(stateDir, "rootless-netns") }

// holder is holder.json: the keeper and its pause process, each with its
// start time, so that a reused pid is never taken for them.
type holder struct {
	Keeper      int    `json:"keeper"`
	KeeperStart uint64 `json:"keeper_start"`
	Pause       int    `json:"pause"`
	PauseStart  uint64 `json:"pause_start"`
	IDs         uint64 `json:"ids"` // the size of U's map
}

func (h holder) alive() bool {
	return h.Keeper > 0 && h.Pause > 0 && proc.Start(h.Keeper) == h.KeeperStart && proc.Start(h.Pause) == h.PauseStart
}

// lockPath takes an exclusive flock on path, created if need be, and
// makes sure path is still the file it locked: Release removes the
// directory under this lock, and a waiter then holds a lock on a file
// nobody else will open.
func lockPath(path string) (func(), error) {
	for {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return nil, err
		}
		if err := flock(f, unix.LOCK_EX); err != nil {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		var held, now unix.Stat_t
		if unix.Fstat(int(f.Fd()), &held) == nil && unix.Stat(path, &now) == nil && held.Ino == now.Ino && held.Dev == now.Dev {
			return func() { f.Close() }, nil
		}
		f.Close()
	}
}

func flock(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// shared is a run's membership of the user's shared namespaces: what the
// outer safe-run passes to the inner one.
type shared struct {
	members *os.File // a shared flock: this run is a member
	user    *os.File // /proc/PAUSE/ns/user
	net     *os.File // /proc/PAUSE/ns/net
	ids     uint64   // the size of U's map
}

// closeNS closes the namespaces' descriptors; again does nothing.
func (s *shared) closeNS() {
	s.user.Close()
	s.net.Close()
}

// joinShared makes this run a member of the user's shared namespaces,
// starting their keeper when none runs.
func joinShared(f host.Facts, stateDir string, log *slog.Logger) (_ *shared, err error) {
	dir := sharedDir(stateDir)
	unlock, err := lockPath(filepath.Join(dir, "lock"))
	if err != nil {
		return nil, fmt.Errorf("your shared network namespace: %w", err)
	}
	defer unlock()
	var h holder
	if data, err := os.ReadFile(filepath.Join(dir, "holder.json")); err == nil {
		_ = json.Unmarshal(data, &h)
	}
	if !h.alive() {
		if h.Keeper > 0 {
			// A keeper without its pause process, or the reverse: it
			// ends itself; this makes sure, before starting anew.
			stopKeeper(h)
			if membersLeft(dir) {
				log.Warn("your shared network namespace's keeper died: starting a new one (the services still running on named bridges have lost their network: restart them)", "pid", h.Keeper)
			} else {
				log.Debug("your shared network namespace's keeper died with no member left: starting a new one", "pid", h.Keeper)
			}
		}
		if h, err = startKeeper(f, dir, log); err != nil {
			return nil, err
		}
	}
	s := &shared{ids: h.IDs}
	s.members, err = os.OpenFile(filepath.Join(dir, "members"), os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("your shared network namespace: %w", err)
	}
	if err := flock(s.members, unix.LOCK_SH); err != nil {
		s.members.Close()
		return nil, fmt.Errorf("your shared network namespace: joining: %w", err)
	}
	pause := "/proc/" + strconv.Itoa(h.Pause) + "/ns/"
	s.user, err = os.Open(pause + "user")
	if err == nil {
		s.net, err = os.Open(pause + "net")
	}
	if err == nil && proc.Start(h.Pause) != h.PauseStart {
		err = errors.New("the pause process ended while opening its namespaces")
	}
	if err != nil {
		s.members.Close()
		if s.user != nil {
			s.user.Close()
		}
		return nil, fmt.Errorf("your shared network namespace: %w", err)
	}
	return s, nil
}

// membersLeft reports whether a run holds the membership in dir.
func membersLeft(dir string) bool {
	m, err := os.OpenFile(filepath.Join(dir, "members"), os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return false
	}
	defer m.Close()
	return errors.Is(flock(m, unix.LOCK_EX|unix.LOCK_NB), unix.EWOULDBLOCK)
}

func writeHolder(dir string, h holder) error {
	data, err := json.Marshal(h)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dir, "holder.json"), data, 0o600); err != nil {
		return fmt.Errorf("your shared network namespace: %w", err)
	}
	return nil
}

// orphanCheck is how often the keeper checks that holder.json still names
// it.
const orphanCheck = 2 * time.Second

// keeperTimeout bounds a keeper's start: a clone, two setuid helpers and
// pasta's set-up, tens of milliseconds.
const keeperTimeout = 10 * time.Second

// startKeeper starts the keeper in a session of its own, waits until it
// says its namespaces are mapped and connected, and records it in
// holder.json. The keeper waits for that, in turn, on the same socket:
// should this safe-run die before, the keeper ends itself, and no keeper
// runs that holder.json does not name.
func startKeeper(f host.Facts, dir string, log *slog.Logger) (holder, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return holder{}, fmt.Errorf("starting your shared network namespace's keeper: %w", err)
	}
	_ = unix.SetNonblock(fds[0], true) // pollable: reads take a deadline
	conn, theirs := os.NewFile(uintptr(fds[0]), "keeper"), os.NewFile(uintptr(fds[1]), "keeper")
	defer conn.Close()
	cmd := exec.Command("/proc/self/exe", KeeperCommand, f.Pasta, filepath.Join(dir, "pasta.pid"))
	cmd.Args[0] = os.Args[0]
	cmd.ExtraFiles = []*os.File{theirs}
	// Not the terminal's, not this safe-run's: it outlives this run.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	os.Remove(filepath.Join(dir, "pasta.pid"))
	err = cmd.Start()
	theirs.Close()
	if err != nil {
		return holder{}, fmt.Errorf("starting your shared network namespace's keeper: %w", err)
	}
	// Reaped by this safe-run while it runs, should it end meanwhile
	// (another run's Release): a zombie would look alive.
	go cmd.Wait() //nolint:errcheck // its status says nothing more than holder.json's check
	_ = conn.SetReadDeadline(time.Now().Add(keeperTimeout))
	line, _ := bufio.NewReader(conn).ReadString('\n')
	line = strings.TrimSpace(line)
	pid, err := strconv.Atoi(line)
	if err != nil || pid <= 0 {
		_ = cmd.Process.Kill()
		if line == "" {
			line = fmt.Sprintf("it said nothing within %v", keeperTimeout)
		}
		return holder{}, fmt.Errorf("starting your shared network namespace: %s", line)
	}
	h := holder{Keeper: cmd.Process.Pid, KeeperStart: proc.Start(cmd.Process.Pid), Pause: pid, PauseStart: proc.Start(pid), IDs: mapSize(f)}
	if err := writeHolder(dir, h); err != nil {
		_ = cmd.Process.Kill()
		return holder{}, err
	}
	if _, err := conn.Write([]byte{'k'}); err != nil {
		stopKeeper(h)
		return holder{}, fmt.Errorf("starting your shared network namespace: the keeper ended: %w", err)
	}
	log.Debug("started your shared network namespace", "keeper", h.Keeper, "pause", h.Pause)
	return h, nil
}

// stopKeeper ends the keeper, which ends pasta and the pause process and
// reaps them before it exits, and waits until it is gone.
func stopKeeper(h holder) {
	if h.Keeper <= 0 && h.Pause <= 0 {
		return // none recorded (holder.json gone or never written)
	}
	kill := func(sig unix.Signal) {
		if h.Keeper > 0 && proc.Start(h.Keeper) == h.KeeperStart {
			_ = unix.Kill(h.Keeper, sig)
		}
		if h.Pause > 0 && proc.Start(h.Pause) == h.PauseStart {
			_ = unix.Kill(h.Pause, sig)
		}
	}
	kill(unix.SIGTERM)
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if proc.Start(h.Keeper) != h.KeeperStart && proc.Start(h.Pause) != h.PauseStart {
			return
		}
	}
	kill(unix.SIGKILL)
}

// Release ends the user's shared network namespace when no run is a
// member any more, and removes its state and the user's network state
// under stateDir (the user's plan.Dirs.State): nothing in them is live
// once N is gone. A run still a member (or one joining) keeps it; then
// Release does nothing. The outer safe-run calls it once its inner one
// has exited (cleanup nil), and `safe-run network-cleanup` after a killed
// member, with cleanup the network state's reclaim of its lease, run
// first: both under the namespace's lock, so that of two killed
// members' janitors at once, one never recreates the network state the
// other has just removed (a CI run's "left in XDG_RUNTIME_DIR: net").
// With no shared namespace (released already, and the network state with
// it) there is nothing to clean, and cleanup is not run.
func Release(stateDir string, cleanup func() error) error {
	dir := sharedDir(stateDir)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	unlock, err := lockPath(filepath.Join(dir, "lock"))
	if err != nil {
		return fmt.Errorf("your shared network namespace: %w", err)
	}
	defer unlock()
	var errs []error
	if cleanup != nil {
		errs = append(errs, cleanup())
	}
	m, err := os.OpenFile(filepath.Join(dir, "members"), os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("your shared network namespace: %w", err))...)
	}
	defer m.Close()
	if err := flock(m, unix.LOCK_EX|unix.LOCK_NB); errors.Is(err, unix.EWOULDBLOCK) {
		return errors.Join(errs...) // a member runs
	} else if err != nil {
		return errors.Join(append(errs, fmt.Errorf("your shared network namespace: %w", err))...)
	}
	var h holder
	if data, err := os.ReadFile(filepath.Join(dir, "holder.json")); err == nil {
		_ = json.Unmarshal(data, &h)
	}
	stopKeeper(h)
	return errors.Join(append(errs, os.RemoveAll(plan.NetworkDir(plan.Dirs{State: stateDir})), os.RemoveAll(dir))...)
}

// Keep is the keeper (KeeperCommand): args are pasta's path and the file
// pasta writes its pid to once it has connected N. It tells the safe-run
// that started it the pause process's pid, or what went wrong, on fd 3,
// and waits for its word that it recorded it; then it waits until it is
// told to end, or pasta or the pause process ends.
func Keep(args []string) int {
	ready := os.NewFile(3, "keeper-ready")
	fail := func(err error) int {
		fmt.Fprintln(ready, strings.ReplaceAll(err.Error(), "\n", "; "))
		return 1
	}
	if len(args) != 2 || ready == nil {
		return fail(errors.New("usage: safe-run rootless-netns PASTA PIDFILE"))
	}
	// The pause process and pasta die with this thread (PDEATHSIG):
	// locked, it is never ended under them.
	runtime.LockOSThread()
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, unix.SIGTERM, unix.SIGINT, unix.SIGHUP)
	ns, err := nsholder.Start(unix.CLONE_NEWUSER | unix.CLONE_NEWNET)
	if err != nil {
		return fail(fmt.Errorf("creating the namespaces: %w (check that user namespaces are enabled: sysctl user.max_user_namespaces)", err))
	}
	pause, reap := ns.PID, ns.End
	if _, err := mapIDs(host.Probe(), strconv.Itoa(pause), 0); err != nil {
		reap()
		return fail(err)
	}
	pasta := exec.Command(args[0], append([]string{"--foreground", "--quiet", "--config-net", "--ipv4-only", "--no-map-gw",
		"-t", "none", "-u", "none", "-T", "none", "-U", "none", "--pid", args[1]}, strconv.Itoa(pause))...)
	var stderr bytes.Buffer
	pasta.Stdout, pasta.Stderr = &stderr, &stderr
	pasta.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: unix.SIGKILL, Setpgid: true}
	if err := pasta.Start(); err != nil {
		reap()
		return fail(fmt.Errorf("starting pasta to connect your shared network namespace: %w (as root: apt-get install passt)", err))
	}
	var pastaErr error
	pastaDone := make(chan struct{}) // closed once pasta is reaped, pastaErr set
	go func() { pastaErr = pasta.Wait(); close(pastaDone) }()
	// pasta writes its pid file once N is connected.
	ctx, cancel := context.WithTimeout(context.Background(), keeperTimeout)
	defer cancel()
	for connected := false; !connected; {
		select {
		case <-pastaDone:
			reap()
			return fail(fmt.Errorf("pasta could not connect your shared network namespace: %w: %s", pastaErr, strings.TrimSpace(stderr.String())))
		case <-ctx.Done():
			_ = pasta.Process.Kill()
			<-pastaDone
			reap()
			return fail(fmt.Errorf("pasta did not connect your shared network namespace within %v: %s", keeperTimeout, strings.TrimSpace(stderr.String())))
		case <-time.After(2 * time.Millisecond):
			data, _ := os.ReadFile(args[1])
			connected = len(bytes.TrimSpace(data)) > 0
		}
	}
	// Recorded in holder.json by the safe-run that started this one, or
	// never: then nobody would end this keeper, so it ends now.
	ack := make([]byte, 1)
	if _, err := fmt.Fprintf(ready, "%d\n", pause); err != nil {
		ack[0] = 0
	} else if n, _ := ready.Read(ack); n != 1 {
		ack[0] = 0
	}
	ready.Close()
	if ack[0] != 'k' {
		_ = pasta.Process.Kill()
		<-pastaDone
		reap()
		return 1
	}
	// Ended by Release, normally. Should its state go another way (the
	// runtime directory removed at logout, by hand), nothing would end
	// it: it ends itself once holder.json no longer names it.
	orphaned := make(chan struct{})
	go func() {
		path := filepath.Join(filepath.Dir(args[1]), "holder.json")
		for range time.Tick(orphanCheck) {
			var h holder
			data, err := os.ReadFile(path)
			if err == nil {
				err = json.Unmarshal(data, &h)
			}
			if errors.Is(err, fs.ErrNotExist) || err == nil && h.Keeper != os.Getpid() {
				close(orphaned)
				return
			}
		}
	}()
	pauseDone := make(chan struct{})
	go func() {
		// Seen, not reaped (WNOWAIT): its pid stays its own until reap.
		var info unix.Siginfo
		for {
			if err := unix.Waitid(unix.P_PID, pause, &info, unix.WEXITED|unix.WNOWAIT, nil); !errors.Is(err, unix.EINTR) {
				break
			}
		}
		close(pauseDone)
	}()
	select {
	case <-signals:
	case <-orphaned:
	case <-pastaDone:
	case <-pauseDone:
	}
	_ = pasta.Process.Kill()
	<-pastaDone
	reap()
	<-pauseDone
	return 0
}

// files are the ExtraFiles and environment of an inner safe-run in the
// shared namespaces: its fds from 4 on (3 is the lifeline).
func (s *shared) files(ports []portFile) (files []*os.File, env []string) {
	files = []*os.File{s.members, s.user, s.net}
	var spec []string
	for i, p := range ports {
		files = append(files, p.f)
		spec = append(spec, fmt.Sprintf("%d=%s", firstPortFD+i, p.key))
	}
	env = []string{
		joinEnv + "=" + strconv.Itoa(joinUserFD) + "," + strconv.Itoa(joinNetFD),
		host.RootlessNetEnv + "=" + host.RootlessNetShared,
		host.RootlessPortsEnv + "=" + strings.Join(spec, ","),
	}
	return files, env
}

// portFile is a published port's socket the outer safe-run bound.
type portFile struct {
	key string // plan.RootlessPortKey
	f   *os.File
}

// finishJoin is FinishEntry's part in the shared namespaces: the
// constructor has joined them; nothing the inner safe-run starts may
// inherit the membership, or try to join again. The published ports'
// sockets stay open across an exec into safe-run-tools and back, until
// the launcher takes them (launcher's holdListenFDs).
func finishJoin() {
	os.Unsetenv(joinEnv)
	if os.Getenv(host.RootlessNetEnv) == host.RootlessNetShared {
		syscall.CloseOnExec(membersFD)
	}
}
