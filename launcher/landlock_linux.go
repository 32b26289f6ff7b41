package launcher

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/landlock"
	"github.com/safe-run/safe-run/plan"
	"github.com/safe-run/safe-run/profiles"
)

// accessWatch sees, while a recording runs the service without its
// Landlock ruleset, the accesses that ruleset cares about, so that
// `profile record` can say which of them it would deny. Landlock has no
// mode that only reports, and its audit records (ABI 7, the kernel's
// audit on) are of denials only: a run without the ruleset makes none,
// and one with it is a run, whose denials the watcher shows
// (unrecordedAccesses says so). So:
//   - files: a fanotify mark on each directory mount of the container
//     (FAN_MARK_MOUNT, which needs root) reports each program executed
//     (FAN_OPEN_EXEC) and each file closed after writing
//     (FAN_CLOSE_WRITE), with the path the kernel opened;
//   - TCP: the listening sockets of the service's own network namespace
//     (/proc/PID/net/tcp, tcp6), read every 50 ms.
//
// Marks are made once the container's mounts exist and before its
// service starts: safe-run-init waits for its ruleset until then (see
// initLink.hold). Not seen: what a rule beyond write and execute governs
// (making directories, removing, renaming, device ioctls), TCP connect,
// and the scoping of abstract sockets and signals.
type accessWatch struct {
	mu     sync.Mutex
	seen   []landlock.Access
	index  map[landlock.Access]bool
	notes  []string
	files  *os.File // the fanotify group; nil without one
	done   chan struct{}
	reader sync.WaitGroup
}

func newAccessWatch() *accessWatch {
	return &accessWatch{index: map[landlock.Access]bool{}, done: make(chan struct{})}
}

func (w *accessWatch) add(a landlock.Access) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.index[a] {
		w.index[a] = true
		w.seen = append(w.seen, a)
	}
}

// start marks the mounts of the container whose first process is pid,
// and starts reading; what it cannot watch goes to the notes.
func (w *accessWatch) start(pid int, spec *specs.Spec) {
	root, err := unix.Open(fmt.Sprintf("/proc/%d/root", pid), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err == nil {
		defer unix.Close(root)
		err = w.markMounts(root, spec)
	}
	if err != nil {
		w.notes = append(w.notes, "Landlock: file accesses not recorded: "+err.Error())
	}
	if hasOwnNetwork(spec) {
		w.reader.Add(1)
		go w.pollPorts(pid)
	} else {
		w.notes = append(w.notes, "Landlock: TCP binds not recorded: the service shares the host's network, whose listening sockets are not all its own")
	}
}

func (w *accessWatch) markMounts(root int, spec *specs.Spec) error {
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_NOTIF|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK, unix.O_RDONLY|unix.O_LARGEFILE|unix.O_CLOEXEC)
	if err != nil {
		return fmt.Errorf("fanotify (needs root): %w", err)
	}
	w.files = os.NewFile(uintptr(fd), "fanotify")
	dests := []string{"/"}
	for _, m := range spec.Mounts {
		if m.Destination != "/proc" && m.Destination != "/sys" && !strings.HasPrefix(m.Destination, "/sys/") {
			dests = append(dests, m.Destination)
		}
	}
	for _, d := range dests {
		// In the container's root, its own links resolved there:
		// never a host path of the same name.
		dir, err := unix.Openat2(root, strings.TrimPrefix(d, "/")+"/.", &unix.OpenHow{
			Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
		})
		if err != nil {
			continue // a mount of one file: read-only, or a device
		}
		err = unix.FanotifyMark(fd, unix.FAN_MARK_ADD|unix.FAN_MARK_MOUNT, unix.FAN_OPEN_EXEC|unix.FAN_CLOSE_WRITE, dir, "")
		unix.Close(dir)
		if err != nil {
			return fmt.Errorf("watching %s: %w", d, err)
		}
	}
	w.reader.Add(1)
	go w.readFiles()
	return nil
}

// readFiles reads the fanotify events until stop, then what is left.
func (w *accessWatch) readFiles() {
	defer w.reader.Done()
	buf := make([]byte, 64<<10)
	stopping := false
	for {
		if !stopping {
			select {
			case <-w.done:
				stopping = true
				_ = w.files.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			default:
				_ = w.files.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			}
		}
		n, err := w.files.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && !stopping {
				continue
			}
			return
		}
		w.events(buf[:n])
	}
}

func (w *accessWatch) events(b []byte) {
	const size = int(unsafe.Sizeof(unix.FanotifyEventMetadata{}))
	for len(b) >= size {
		ev := (*unix.FanotifyEventMetadata)(unsafe.Pointer(&b[0]))
		if ev.Event_len < uint32(size) || int(ev.Event_len) > len(b) {
			return
		}
		b = b[ev.Event_len:]
		if ev.Fd < 0 {
			continue // the queue overflowed
		}
		p, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(ev.Fd)))
		unix.Close(int(ev.Fd))
		if err != nil || !path.IsAbs(p) {
			continue
		}
		// A file removed since: its path is what it was.
		p = strings.TrimSuffix(p, " (deleted)")
		if ev.Mask&unix.FAN_OPEN_EXEC != 0 {
			w.add(landlock.Access{Path: p, Rights: landlock.FSExecute})
		}
		if ev.Mask&unix.FAN_CLOSE_WRITE != 0 {
			w.add(landlock.Access{Path: p, Rights: landlock.FSWriteFile})
		}
	}
}

// pollPorts notes the TCP ports the service listens on.
func (w *accessWatch) pollPorts(pid int) {
	defer w.reader.Done()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		for _, f := range []string{"tcp", "tcp6"} {
			for _, p := range listening(fmt.Sprintf("/proc/%d/net/%s", pid, f)) {
				w.add(landlock.Access{Port: p, Rights: landlock.NetBindTCP})
			}
		}
		select {
		case <-w.done:
			return
		case <-t.C:
		}
	}
}

// listening returns the local ports of the listening sockets in file, a
// /proc/net/tcp table: "sl local_address rem_address st ...", addresses
// as hex IP:PORT, state 0A for LISTEN.
func listening(file string) []uint16 {
	f, err := os.Open(file)
	if err != nil {
		return nil
	}
	defer f.Close()
	var ports []uint16
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || fields[3] != "0A" {
			continue
		}
		_, port, ok := strings.Cut(fields[1], ":")
		if p, err := strconv.ParseUint(port, 16, 16); ok && err == nil {
			ports = append(ports, uint16(p))
		}
	}
	return ports
}

// stop ends the watch, once the service has exited, and returns the
// accesses seen, in order, and what could not be watched.
func (w *accessWatch) stop() ([]landlock.Access, []string) {
	close(w.done)
	w.reader.Wait()
	if w.files != nil {
		w.files.Close()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.seen), w.notes
}

// hasOwnNetwork says whether the spec gives the container a network
// namespace of its own.
func hasOwnNetwork(spec *specs.Spec) bool {
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			return true
		}
	}
	return false
}

// landlockAudit says whether safe-run shows the denials of the service's
// Landlock domain as they happen, and when not, a note for the start
// report saying what a denial is then: an EACCES (EPERM for a mount) to
// the service and nothing more. The kernel audits them from ABI 7, as
// safe-run-init asks (landlock.RestrictSelfLogNewExecOn), where its
// audit is on (auditd, or auditctl -e 1: security/landlock/audit.c checks
// audit_enabled), and only root may read the records.
func landlockAudit(opts runOpts, host plan.Placement) (shown bool, note string) {
	const eacces = "Landlock denials surface as EACCES only"
	switch {
	case opts.Landlock == nil || opts.Violations == nil:
		return false, ""
	case opts.Landlock.RestrictFlags&landlock.RestrictSelfLogNewExecOn == 0:
		return false, fmt.Sprintf("%s: the kernel audits none at ABI %d (audit needs ABI 7)", eacces, opts.Landlock.ABI)
	case host.Rootless:
		return false, eacces + ": rootless, the kernel's audit records are out of reach"
	}
	on, err := profiles.AuditEnabled()
	switch {
	case err != nil:
		return false, fmt.Sprintf("%s: asking the kernel whether its audit is on: %v", eacces, err)
	case !on:
		return false, eacces + ": the kernel's audit is off (auditd, or auditctl -e 1, turns it on)"
	}
	return true, ""
}
