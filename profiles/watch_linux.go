package profiles

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// WatchViolations reports the denials of t's filter on w while the
// container runs, and returns the function that stops watching; call it
// once the container has exited, so that the last denials are reported
// too. What cannot be watched on this host is said on w, and the
// container runs anyway; an error means the filter's notifications
// (rootless) would have no agent, and the container cannot start.
func WatchViolations(t Target, w io.Writer) (stop func(), err error) {
	return watch(t, w, nil)
}

// Watch reports t's denials on w as WatchViolations does, and records
// the calls the service makes. Unlike WatchViolations it fails when the
// calls cannot be seen.
func (r *Recording) Watch(t Target, w io.Writer) (stop func(), err error) {
	t.Seccomp = r.spec
	return watch(t, w, r)
}

// drainMax bounds how long the audit reader goes on after stop: the
// kernel's audit thread sends records after the call returns, so the last
// ones of a service that has just exited may still be on their way.
const drainMax = 2 * time.Second

type watcher struct {
	t      Target
	rep    *reporter
	rec    *Recording
	enosys map[string]bool
	errno  uint
	ll     *landlockDomains // set with t.Landlock

	// Overruns of the kernel's audit queue or log since lostRecords last
	// said so, and when that was: a busy host overruns them again and
	// again, and each service's stderr and journal would fill with
	// the same line (probe OPS #6).
	lostMu   sync.Mutex
	lost     int
	lostSaid time.Time

	// Closing stopW tells every reader to finish: they poll stopFd, the
	// read end, for the hang-up.
	stopR, stopW *os.File
	stopFd       int32
	wg           sync.WaitGroup
}

// settle is how long the audit reader waits, once the kernel's audit
// queue is empty, for the records the audit thread has taken from it but
// not yet sent. A recording waits longer: a lost record is a call
// missing from the profile.
func (wt *watcher) settle() time.Duration {
	if wt.rec != nil {
		return 50 * time.Millisecond
	}
	return time.Millisecond
}

func watch(t Target, w io.Writer, rec *Recording) (func(), error) {
	if w == nil {
		w = io.Discard
	}
	if t.Seccomp == nil && !t.Landlock && t.AppArmor == "" {
		return func() {}, nil
	}
	wt := &watcher{t: t, rep: newReporter(w, t.Name), rec: rec, enosys: enosysCalls(t.Seccomp), errno: defaultErrno(t.Seccomp)}
	if t.Landlock && !t.Rootless {
		wt.ll = newLandlockDomains(t.UID, t.UIDs, func(blocker, object string) {
			wt.rep.limited(w, "landlock denied "+blocker, " "+object)
		})
	}
	if !namesKnown {
		return nil, errors.New("seccomp violations: safe-run was built without libseccomp (build with CGO_ENABLED=1 -tags seccomp)")
	}
	var err error
	if wt.stopR, wt.stopW, err = os.Pipe(); err != nil {
		return nil, err
	}
	wt.stopFd = int32(wt.stopR.Fd())
	// wake unblocks the readers that do not poll stopFd; release frees
	// what the readers used, once they are done.
	var wake, release []func()
	finish := func() {
		wt.stopW.Close()
		for _, f := range wake {
			f()
		}
		wt.wg.Wait()
		for _, f := range release {
			f()
		}
		wt.stopR.Close()
	}
	fail := func(err error) (func(), error) {
		finish()
		return nil, err
	}

	if path := t.Listener; path != "" {
		a, err := listenAgent(path)
		if err != nil {
			return fail(err)
		}
		wake = append(wake, a.close)
		wt.wg.Add(1)
		go func() {
			defer wt.wg.Done()
			a.serve(wt)
		}()
	}
	if !t.Rootless {
		// The audit records tell of seccomp's denials where the kernel
		// logs them, and of Landlock's (wt.ll) and AppArmor's.
		read := wt.ll != nil || t.AppArmor != ""
		if t.Seccomp != nil {
			if err := checkLogged(t.ActionsLogged, rec != nil); err != nil {
				if rec != nil {
					return fail(err)
				}
				wt.rep.line("seccomp denials are not shown: %v", err)
			} else {
				read = true
			}
		}
		if read {
			src, err := openAudit()
			if err != nil && rec != nil {
				return fail(fmt.Errorf("recording needs the kernel's audit records: %w", err))
			}
			if err != nil {
				wt.rep.line("denials are not shown: %v", err)
			} else {
				release = append(release, src.close)
				wt.wg.Add(1)
				go func() {
					defer wt.wg.Done()
					wt.readAudit(src)
				}()
			}
		}
	} else if rec != nil && t.Listener == "" {
		return fail(errors.New("recording rootless needs a seccomp agent (RecordOptions.Listener)"))
	}

	// The summaries of suppressed lines are written once their second
	// is over: a timer armed when one is due, not a ticker that wakes
	// the supervisor every second of an idle service's life.
	// arm runs under wt.rep.mu, as flush does: flushAt needs no lock of
	// its own.
	var flushAt time.Time // when the armed timer fires; zero: not armed
	flush := time.AfterFunc(time.Hour, func() {
		wt.rep.mu.Lock()
		flushAt = time.Time{}
		wt.rep.mu.Unlock()
		wt.rep.flush(false)
	})
	flush.Stop()
	wt.rep.mu.Lock()
	wt.rep.arm = func(d time.Duration) {
		at := time.Now().Add(d + 10*time.Millisecond)
		if flushAt.IsZero() || at.Before(flushAt) {
			flushAt = at
			flush.Reset(time.Until(at))
		}
	}
	wt.rep.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			finish()
			flush.Stop()
			wt.rep.flush(true)
		})
	}, nil
}

// handle decides on one event: it records the call, if a recording is
// under way and the call is one it lets through, or reports the denial.
// It returns whether a notification should let the call continue.
func (wt *watcher) handle(ev event, notification bool) bool {
	name := syscallName(ev.arch, ev.nr)
	if wt.rec != nil && (notification || ev.action == retLog) && name != "" && wt.rec.saw(name) {
		return true
	}
	switch {
	case notification:
		ev.action = retErrno
	case ev.action == retAllow || ev.action == retLog || ev.action == retUserNotif || ev.action == retTrace:
		return false
	}
	if ev.action == retErrno && (name == "" || wt.enosys[name]) {
		// ENOSYS: a call newer than the filter, for which runc's stub
		// returns ENOSYS, or clone3, which glibc then replaces with
		// clone. Both are the expected way to probe for a call.
		return false
	}
	wt.rep.violation(callName(name, ev.arch, ev.nr), ev.action, who(ev))
	return false
}

// checkLogged checks that the kernel logs the filter's denials, and, for
// a recording, its SCMP_ACT_LOG decisions: the sysctl
// kernel.seccomp.actions_logged may leave them out.
func checkLogged(logged []string, recording bool) error {
	if logged == nil {
		return errors.New("the kernel's seccomp log settings (sysctl kernel.seccomp.actions_logged) cannot be read")
	}
	need := []string{"errno"}
	if recording {
		need = append(need, "log")
	}
	for _, a := range need {
		if !contains(logged, a) {
			return fmt.Errorf("the kernel does not log the seccomp action %q (sysctl kernel.seccomp.actions_logged=%q; add it: sysctl -w kernel.seccomp.actions_logged=\"%s %s\")",
				a, strings.Join(logged, " "), strings.Join(logged, " "), a)
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// containerPid returns the PID of host (a PID of safe-run's namespace) in
// the innermost PID namespace it belongs to, the container's, from the
// NSpid line of its status; 0 when it has exited.
func containerPid(host int) int {
	f, err := os.Open("/proc/" + strconv.Itoa(host) + "/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "NSpid:"); ok {
			fields := strings.Fields(rest)
			if len(fields) == 0 {
				return 0
			}
			pid, _ := strconv.Atoi(fields[len(fields)-1])
			return pid
		}
	}
	return 0
}

// auditSource reads the kernel's audit records: from the audit netlink
// socket's read-only multicast group (Linux 3.16; needs CAP_AUDIT_READ),
// which gets every record whether or not auditd runs, or else from
// /dev/kmsg, where the kernel prints them when no auditd does, at most 10
// every 5 seconds (printk_ratelimit): there, a burst of denials loses
// lines.
type auditSource struct {
	fd    int
	kmsg  bool
	close func()
}

// auditReadLog is AUDIT_NLGRP_READLOG, the audit multicast group.
const auditReadLog = 1

func openAudit() (*auditSource, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_AUDIT)
	if err == nil {
		err = unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
		if err == nil {
			err = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, auditReadLog)
		}
		if err == nil {
			// Room for bursts; a full buffer loses records, which
			// recvfrom then reports as ENOBUFS.
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20)
			// Best effort: without the filter, every record is
			// read and the others dropped here.
			_ = onlyWantedRecords(fd)
			return &auditSource{fd: fd, close: func() { unix.Close(fd) }}, nil
		}
		unix.Close(fd)
	}
	netlinkErr := err
	kfd, err := unix.Open("/dev/kmsg", unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("the kernel's audit records are out of reach: the audit socket: %w; /dev/kmsg: %w (safe-run needs CAP_AUDIT_READ, or CAP_SYSLOG, in the host's user namespace)", netlinkErr, err)
	}
	if _, err := unix.Seek(kfd, 0, io.SeekEnd); err != nil {
		unix.Close(kfd)
		return nil, fmt.Errorf("/dev/kmsg: %w", err)
	}
	return &auditSource{fd: kfd, kmsg: true, close: func() { unix.Close(kfd) }}, nil
}

// onlyWantedRecords attaches a socket filter that lets through only the
// records the watcher reads (wanted: seccomp's, Landlock's, AppArmor's):
// the group carries every audit record of the host (nftables changes,
// logins, BPF loads...), and each would wake the supervisor of every
// service for nothing.
func onlyWantedRecords(fd int) error {
	// A filter loads the 16-bit nlmsg_type in network byte order; the
	// kernel wrote it in the host's.
	types := wantedTypes()
	filter := []unix.SockFilter{{Code: unix.BPF_LD | unix.BPF_H | unix.BPF_ABS, K: 4}} // nlmsghdr.nlmsg_type
	for i, t := range types {
		var typ [2]byte
		binary.NativeEndian.PutUint16(typ[:], t)
		// Equal: on to the accept after the other tests.
		filter = append(filter, unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: uint8(len(types) - i), K: uint32(binary.BigEndian.Uint16(typ[:]))})
	}
	filter = append(filter,
		unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: 0},          // nothing
		unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: 0xffffffff}, // the whole record
	)
	return unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]})
}

// readAudit hands the records of the container to handle until stop,
// and then those still on their way.
func (wt *watcher) readAudit(src *auditSource) {
	buf := make([]byte, 1<<16)
	lostBefore, statusErr := auditStatus()
	fds := []unix.PollFd{{Fd: int32(src.fd), Events: unix.POLLIN}, {Fd: wt.stopFd, Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(fds, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			wt.rep.line("seccomp denials: waiting for audit records: %v", err)
			return
		}
		if fds[0].Revents&unix.POLLIN != 0 && !wt.readAvailable(src, buf) {
			return
		}
		if fds[1].Revents != 0 {
			break
		}
	}

	// The service has exited: read until the kernel's audit queue is
	// empty and what it sent has arrived.
	deadline := time.Now().Add(drainMax)
	for time.Now().Before(deadline) {
		if !wt.readAvailable(src, buf) {
			return
		}
		st, err := auditStatus()
		if src.kmsg || err != nil {
			// No way to ask the kernel: wait for a quiet spell.
			quiet := []unix.PollFd{{Fd: int32(src.fd), Events: unix.POLLIN}}
			if n, err := unix.Poll(quiet, int(100*time.Millisecond/time.Millisecond)); n == 0 && err == nil {
				return
			}
			continue
		}
		if st.backlog == 0 {
			time.Sleep(wt.settle())
			wt.readAvailable(src, buf)
			if statusErr == nil && st.lost > lostBefore.lost {
				// Host-wide: some may have been another
				// process's.
				lost := fmt.Errorf("the kernel lost %d audit records while the service ran (its audit backlog overflowed; auditctl -b raises it)", st.lost-lostBefore.lost)
				if wt.rec != nil {
					wt.rec.incomplete(lost)
				} else {
					wt.rep.line("%v: some denials may not be shown", lost)
				}
			}
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
	if wt.rec != nil {
		wt.rec.incomplete(fmt.Errorf("the kernel's audit queue did not empty within %s of the service's exit", drainMax))
	}
}

// readAvailable handles the records that have arrived, without waiting;
// it returns false when reading fails for good.
func (wt *watcher) readAvailable(src *auditSource, buf []byte) bool {
	for {
		typ, text, err := readRecord(src, buf)
		switch {
		case errors.Is(err, unix.EAGAIN):
			return true
		case errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.EPIPE):
			// ENOBUFS: the socket overflowed; EPIPE: kmsg's ring
			// overwrote records before they were read.
			wt.lostRecords()
		case err != nil:
			wt.rep.line("seccomp denials: reading the audit records: %v", err)
			if wt.rec != nil {
				wt.rec.incomplete(err)
			}
			return false
		case typ == auditLandlockAccess || typ == auditLandlockDomain:
			if wt.ll != nil {
				wt.ll.record(typ, text)
			}
		case typ == auditAVC:
			wt.appArmorRecord(text)
		default:
			wt.auditRecord(text)
		}
	}
}

// auditState is the part of struct audit_status safe-run reads.
type auditState struct{ enabled, lost, backlog uint32 }

// auditStatus asks the kernel for its audit status (AUDIT_GET, which
// needs CAP_AUDIT_CONTROL): how many records it lost, and how many wait
// for its audit thread.
func auditStatus() (auditState, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_AUDIT)
	if err != nil {
		return auditState{}, err
	}
	defer unix.Close(fd)
	req := make([]byte, unix.NLMSG_HDRLEN)
	binary.NativeEndian.PutUint32(req[0:], unix.NLMSG_HDRLEN)
	binary.NativeEndian.PutUint16(req[4:], unix.AUDIT_GET)
	binary.NativeEndian.PutUint16(req[6:], unix.NLM_F_REQUEST)
	binary.NativeEndian.PutUint32(req[8:], 1)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return auditState{}, err
	}
	buf := make([]byte, 4096)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return auditState{}, err
	}
	// struct audit_status: mask, enabled, failure, pid, rate_limit,
	// backlog_limit, lost, backlog, ... (u32 each)
	data := buf[unix.NLMSG_HDRLEN:n]
	switch typ := binary.NativeEndian.Uint16(buf[4:6]); {
	case typ == unix.NLMSG_ERROR && len(data) >= 4:
		return auditState{}, unix.Errno(-int32(binary.NativeEndian.Uint32(data)))
	case typ != unix.AUDIT_GET || len(data) < 32:
		return auditState{}, errors.New("unexpected answer to AUDIT_GET")
	}
	return auditState{enabled: binary.NativeEndian.Uint32(data[4:]), lost: binary.NativeEndian.Uint32(data[24:]), backlog: binary.NativeEndian.Uint32(data[28:])}, nil
}

// AuditEnabled says whether the kernel's audit is on (auditd runs, or
// audit=1): only then does it audit Landlock's denials. It asks the
// kernel (AUDIT_GET), which needs CAP_AUDIT_CONTROL.
func AuditEnabled() (bool, error) {
	st, err := auditStatus()
	return st.enabled != 0, err
}

// readRecord reads one record without blocking, and returns its type
// and text if it is an AUDIT_SECCOMP or a Landlock one, else "".
func readRecord(src *auditSource, buf []byte) (uint16, string, error) {
	if src.kmsg {
		n, err := unix.Read(src.fd, buf)
		if err != nil {
			return 0, "", err
		}
		// "6,1234,5678,-;audit: type=1326 audit(...): auid=..."
		_, msg, _ := strings.Cut(string(buf[:n]), ";")
		rest, ok := strings.CutPrefix(msg, "audit: type=")
		num, text, _ := strings.Cut(rest, " ")
		typ, err := strconv.ParseUint(num, 10, 16)
		if !ok || err != nil || !wanted(uint16(typ)) {
			return 0, "", nil
		}
		return uint16(typ), strings.TrimRight(text, "\n"), nil
	}
	n, _, err := unix.Recvfrom(src.fd, buf, unix.MSG_DONTWAIT)
	if err != nil {
		return 0, "", err
	}
	// One record a datagram; its length is not padded to the netlink
	// alignment, so it is read here rather than with a netlink parser.
	if n < unix.NLMSG_HDRLEN {
		return 0, "", nil
	}
	length := int(binary.NativeEndian.Uint32(buf[0:4]))
	typ := binary.NativeEndian.Uint16(buf[4:6])
	if !wanted(typ) {
		return 0, "", nil
	}
	length = min(max(length, unix.NLMSG_HDRLEN), n)
	return typ, strings.TrimRight(string(buf[unix.NLMSG_HDRLEN:length]), "\x00\n"), nil
}

// auditAVC is AUDIT_AVC, the type of AppArmor's records.
const auditAVC = 1400

// wantedTypes are the types of audit records the watcher reads.
func wantedTypes() []uint16 {
	return []uint16{unix.AUDIT_SECCOMP, auditLandlockAccess, auditLandlockDomain, auditAVC}
}

// wanted says whether the watcher reads audit records of type typ.
func wanted(typ uint16) bool { return slices.Contains(wantedTypes(), typ) }

// lostSpacing is the least time between two warnings of lostRecords.
const lostSpacing = time.Minute

// lostRecords says that the kernel dropped audit records: at once the
// first time, then at most once a minute, with how many overruns there
// were since it last said so.
func (wt *watcher) lostRecords() {
	if wt.rec != nil {
		wt.rec.incomplete(errors.New("the kernel dropped audit records before safe-run could read them"))
	}
	wt.lostMu.Lock()
	defer wt.lostMu.Unlock()
	wt.lost++
	now := wt.rep.now()
	if !wt.lostSaid.IsZero() && now.Sub(wt.lostSaid) < lostSpacing {
		return
	}
	if wt.lostSaid.IsZero() {
		wt.rep.line("seccomp denials: the kernel dropped audit records before safe-run could read them; some denials are not shown (said again at most once a minute)")
	} else {
		wt.rep.line("seccomp denials: the kernel dropped audit records %d more time(s) in the last %s; some denials are not shown", wt.lost, now.Sub(wt.lostSaid).Round(time.Second))
	}
	wt.lost, wt.lostSaid = 0, now
}

// auditRecord handles one AUDIT_SECCOMP record if it is the container's.
func (wt *watcher) auditRecord(text string) {
	if text == "" {
		return
	}
	r, ok := parseAuditSeccomp(text)
	if !ok || r.uid < wt.t.UID || r.uid-wt.t.UID >= wt.t.UIDs {
		return
	}
	wt.handle(event{arch: r.arch, nr: r.nr, action: r.code, host: r.pid, pid: containerPid(r.pid), comm: r.comm}, false)
}

// appArmorRecord reports one AppArmor record if it is of the service's
// profile, rate-limited as seccomp's denials are.
func (wt *watcher) appArmorRecord(text string) {
	d, ok := parseAppArmor(text, wt.t.AppArmor)
	if !ok {
		return
	}
	wt.rep.limited(wt.rep.w, d.key, " "+who(event{host: d.pid, pid: containerPid(d.pid), comm: d.comm}))
}

// agent is the seccomp agent rootless safe-run is: libcontainer connects
// to its socket once the filter is loaded and sends the notification
// descriptor with the container's state (runc's
// sendContainerProcessState); the agent answers each notification.
type agent struct {
	ln   *net.UnixListener
	path string
}

func listenAgent(path string) (*agent, error) {
	_ = os.Remove(path) // a socket left by a run that died
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("seccomp agent: %w", err)
	}
	ln.SetUnlinkOnClose(true)
	return &agent{ln: ln, path: path}, nil
}

func (a *agent) close() { a.ln.Close() }

// serve accepts libcontainer's connections and answers the
// notifications of each descriptor it receives, until stop.
func (a *agent) serve(wt *watcher) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		// Accept returns an error once stop closes the listener.
		conn, err := a.ln.AcceptUnix()
		if err != nil {
			return
		}
		fd, err := receiveFd(conn)
		conn.Close()
		if err != nil {
			wt.rep.line("seccomp agent: %v", err)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer unix.Close(fd)
			wt.answer(fd)
		}()
	}
}

// receiveFd reads libcontainer's message: the container's state as JSON,
// and the notification descriptor.
func receiveFd(conn *net.UnixConn) (int, error) {
	buf := make([]byte, 1<<16)
	oob := make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return -1, fmt.Errorf("receiving the notification descriptor: %w", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return -1, errors.New("receiving the notification descriptor: no descriptor in the message")
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return -1, errors.New("receiving the notification descriptor: not one descriptor in the message")
	}
	return fds[0], nil
}

// seccompNotif and seccompNotifResp are struct seccomp_notif and struct
// seccomp_notif_resp of <linux/seccomp.h>.
type seccompNotif struct {
	id    uint64
	pid   uint32
	flags uint32
	nr    int32
	arch  uint32
	ip    uint64
	args  [6]uint64
}

type seccompNotifResp struct {
	id    uint64
	val   int64
	error int32
	flags uint32
}

// answer answers the notifications of fd until every process that uses
// the filter has exited, or stop.
func (wt *watcher) answer(fd int) {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}, {Fd: wt.stopFd, Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(fds, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || fds[1].Revents != 0 || fds[0].Revents&(unix.POLLHUP|unix.POLLERR) != 0 && fds[0].Revents&unix.POLLIN == 0 {
			return
		}
		if fds[0].Revents&unix.POLLIN == 0 {
			continue
		}
		var n seccompNotif // the kernel wants it zeroed
		if err := notifIoctl(fd, unix.SECCOMP_IOCTL_NOTIF_RECV, unsafe.Pointer(&n)); err != nil {
			// ENOENT: the process was killed while it waited.
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EINTR) {
				continue
			}
			wt.rep.line("seccomp agent: %v", err)
			return
		}
		ev := event{arch: n.arch, nr: int(n.nr), host: int(n.pid), pid: containerPid(int(n.pid))}
		if comm, err := os.ReadFile("/proc/" + strconv.Itoa(int(n.pid)) + "/comm"); err == nil {
			ev.comm = strings.TrimSpace(string(comm))
		}
		// The process waits for the answer, so its PID was still its
		// own while /proc was read, unless it was killed meanwhile.
		id := n.id
		if notifIoctl(fd, unix.SECCOMP_IOCTL_NOTIF_ID_VALID, unsafe.Pointer(&id)) != nil {
			continue
		}
		resp := seccompNotifResp{id: n.id}
		if wt.handle(ev, true) {
			resp.flags = unix.SECCOMP_USER_NOTIF_FLAG_CONTINUE
		} else {
			resp.error = -int32(wt.errno)
		}
		if err := notifIoctl(fd, unix.SECCOMP_IOCTL_NOTIF_SEND, unsafe.Pointer(&resp)); err != nil && !errors.Is(err, unix.ENOENT) {
			wt.rep.line("seccomp agent: answering a notification: %v", err)
		}
	}
}

func notifIoctl(fd int, req uint, arg unsafe.Pointer) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(arg))
	if errno != 0 {
		return errno
	}
	return nil
}
