package profiles

import (
	"fmt"
	"io"
	"maps"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"
)

// Violations: with seccomp_log, safe-run reports each call the filter
// denies on its own stderr, as
//
//	safe-run: web: seccomp denied unshare (syscall 272) pid 7 (unshare)
//
// naming the call, its number, the process in the container's PID
// namespace and its command. As root the reports come from the kernel's
// audit records of the filter's SECCOMP_FILTER_FLAG_LOG; rootless from
// notifications for the calls its default action denies (NotifyDenials).

// Target is the container whose denials are reported.
type Target struct {
	Name    string              // the service, at the start of every line
	Seccomp *specs.LinuxSeccomp // the filter the container runs under
	// UID and UIDs are the host uids its user namespace maps: an audit
	// record is the container's when its uid is one of them. As root
	// every service has a range of its own (plan.RecordIDs, through
	// launcher.Enforce).
	UID, UIDs uint32
	// Rootless: safe-run runs in a user namespace of its own, where the
	// audit records are out of reach; only notifications are reported.
	Rootless bool
	// Listener is the socket of safe-run's seccomp agent, the filter's
	// listenerPath when safe-run added notifications to it (NotifyDenials,
	// a rootless recording); empty when it did not.
	Listener string
	// Landlock: report the denials of the service's Landlock domain too,
	// which the kernel audits (see landlockaudit.go). As root only.
	Landlock bool
	// AppArmor is the service's AppArmor profile, whose denials (and,
	// in complain mode, what it would deny) the kernel audits: reported
	// too (apparmor.go). As root only; "" for none.
	AppArmor string
	// ActionsLogged are the seccomp actions the kernel logs
	// (host.Facts.Seccomp.ActionsLogged); nil: unknown.
	ActionsLogged []string
}

// linesPerSecond is how many lines one call gets each second; the rest
// are counted and summed up in one line. A service that loops on a
// denied call must not flood the log, nor hide every other denial.
const linesPerSecond = 5

// Seccomp actions as the kernel reports them (SECCOMP_RET_*, the action
// part only: audit records carry no errno).
const (
	retKillProcess = 0x80000000
	retKillThread  = 0x00000000
	retTrap        = 0x00030000
	retErrno       = 0x00050000
	retUserNotif   = 0x7fc00000
	retTrace       = 0x7ff00000
	retLog         = 0x7ffc0000
	retAllow       = 0x7fff0000
)

// AUDIT_ARCH_* values (<linux/audit.h>) and the x32 bit of x32 call
// numbers.
const (
	auditArchX86_64  = 0xc000003e
	auditArchI386    = 0x40000003
	auditArchAArch64 = 0xc00000b7
	auditArchARM     = 0x40000028
	x32SyscallBit    = 0x40000000
)

// event is one call the kernel reported: an audit record of the filter's
// decision, or a notification waiting for safe-run's answer.
type event struct {
	arch   uint32
	nr     int
	action uint32 // SECCOMP_RET_* of the filter's decision
	pid    int    // in the container's PID namespace; 0 if it has exited
	host   int    // in safe-run's PID namespace
	comm   string
}

// auditRecord is what safe-run reads from an AUDIT_SECCOMP record.
type auditRecord struct {
	uid  uint32
	pid  int
	comm string
	arch uint32
	nr   int
	code uint32
}

// parseAuditSeccomp parses the text of an AUDIT_SECCOMP record, as
// audit_log_task and __audit_seccomp in kernel/auditsc.c write it:
//
//	audit(1795468841.704:424): auid=4294967295 uid=1073741824 gid=... ses=... pid=505
//	comm="unshare" exe="/bin/busybox" sig=0 arch=c000003e syscall=272 compat=0 ip=0x4815c7 code=0x50000
//
// Strings with a space in them are written in hex, so fields split on
// spaces.
func parseAuditSeccomp(text string) (auditRecord, bool) {
	var r auditRecord
	seen := 0
	for f := range strings.FieldsSeq(text) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			continue
		}
		var err error
		switch k {
		case "uid":
			var n uint64
			n, err = strconv.ParseUint(v, 10, 32)
			r.uid = uint32(n)
		case "pid":
			r.pid, err = strconv.Atoi(v)
		case "comm":
			r.comm = auditString(v)
			continue
		case "arch":
			var n uint64
			n, err = strconv.ParseUint(v, 16, 32)
			r.arch = uint32(n)
		case "syscall":
			r.nr, err = strconv.Atoi(v)
		case "code":
			var n uint64
			n, err = strconv.ParseUint(strings.TrimPrefix(v, "0x"), 16, 32)
			r.code = uint32(n)
		default:
			continue
		}
		if err != nil {
			return r, false
		}
		seen++
	}
	return r, seen == 5
}

// auditString decodes an untrusted string of an audit record: quoted, or
// in hex when it has a space, a quote or a control character in it.
func auditString(v string) string {
	if s, ok := strings.CutPrefix(v, `"`); ok {
		return strings.TrimSuffix(s, `"`)
	}
	var b []byte
	for i := 0; i+1 < len(v); i += 2 {
		n, err := strconv.ParseUint(v[i:i+2], 16, 8)
		if err != nil {
			return v
		}
		b = append(b, byte(n))
	}
	return string(b)
}

// nativeAuditArch is the AUDIT_ARCH_* of the process's own ABI.
func nativeAuditArch() uint32 {
	if runtime.GOARCH == "arm64" {
		return auditArchAArch64
	}
	return auditArchX86_64
}

// callName names a call for a line: "unshare (syscall 272)", with the
// ABI when it is not the native one, "i386 syscall 102".
func callName(name string, arch uint32, nr int) string {
	abi := ""
	switch {
	case arch == auditArchX86_64 && nr&x32SyscallBit != 0:
		abi, nr = "x32 ", nr&^x32SyscallBit
	case arch == nativeAuditArch():
	case arch == auditArchI386:
		abi = "i386 "
	case arch == auditArchARM:
		abi = "arm "
	default:
		abi = fmt.Sprintf("arch %#x ", arch)
	}
	if name == "" {
		return fmt.Sprintf("%ssyscall %d", abi, nr)
	}
	return fmt.Sprintf("%s (%ssyscall %d)", name, abi, nr)
}

// outcome says what happened to the process besides the denial, for
// actions that do more than return an error.
func outcome(action uint32) string {
	switch action {
	case retKillProcess:
		return ": process killed (SIGSYS)"
	case retKillThread:
		return ": thread killed (SIGSYS)"
	case retTrap:
		return ": SIGSYS sent"
	}
	return ""
}

// reporter writes violation lines, at most linesPerSecond a second for
// each call and outcome; the others are counted, and one line says how
// many once the second is over.
type reporter struct {
	w    io.Writer
	name string
	now  func() time.Time

	mu      sync.Mutex
	windows map[string]*window
	// arm, when set, is called when a summary becomes due a second
	// from now: the watcher flushes then, instead of waking every
	// second of an idle service's life to find nothing to say.
	arm func(time.Duration)
}

type window struct {
	out               io.Writer // where the key's lines go
	start             time.Time
	shown, suppressed int
}

func newReporter(w io.Writer, name string) *reporter {
	return &reporter{w: w, name: name, now: time.Now, windows: map[string]*window{}}
}

// line writes one line of safe-run's own, prefixed as all of them are.
func (r *reporter) line(format string, args ...any) {
	r.lineTo(r.w, format, args...)
}

func (r *reporter) lineTo(out io.Writer, format string, args ...any) {
	fmt.Fprintf(out, "safe-run: %s: "+format+"\n", append([]any{r.name}, args...)...)
}

// violation reports a denial of call (as callName gives it) by the
// process described by who.
func (r *reporter) violation(call string, action uint32, who string) {
	r.limited(r.w, "seccomp denied "+call, " "+who+outcome(action))
}

// limited writes key and rest as one line on out, unless key had its
// linesPerSecond lines this second.
func (r *reporter) limited(out io.Writer, key, rest string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	w := r.windows[key]
	if w == nil || now.Sub(w.start) >= time.Second {
		r.summarize(key, w)
		w = &window{out: out, start: now}
		r.windows[key] = w
	}
	if w.shown >= linesPerSecond {
		if w.suppressed++; w.suppressed == 1 && r.arm != nil {
			r.arm(w.start.Add(time.Second).Sub(now))
		}
		return
	}
	w.shown++
	r.lineTo(out, "%s%s", key, rest)
}

// flush writes the summaries of the seconds that are over, or of all
// of them when the watch ends.
func (r *reporter) flush(all bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	var due time.Duration // the first summary due later than what armed this flush
	for _, key := range slices.Sorted(maps.Keys(r.windows)) {
		if w := r.windows[key]; all || now.Sub(w.start) >= time.Second {
			r.summarize(key, w)
			delete(r.windows, key)
		} else if d := w.start.Add(time.Second).Sub(now); w.suppressed > 0 && (due == 0 || d < due) {
			due = d
		}
	}
	if due > 0 && r.arm != nil {
		r.arm(due)
	}
}

func (r *reporter) summarize(key string, w *window) {
	if w != nil && w.suppressed > 0 {
		r.lineTo(w.out, "%s: %d more suppressed", key, w.suppressed)
	}
}

// who describes the process of an event: its PID in the container and
// its command, or its PID on the host when it has exited before safe-run
// could look it up.
func who(ev event) string {
	pid := fmt.Sprintf("pid %d", ev.pid)
	if ev.pid == 0 {
		pid = fmt.Sprintf("host pid %d", ev.host)
	}
	if ev.comm == "" {
		return pid
	}
	return fmt.Sprintf("%s (%s)", pid, ev.comm)
}

// enosysCalls are the calls s answers with ENOSYS: clone3 in the
// built-in profiles, so that glibc falls back to clone. Their denials are
// expected, and not reported.
func enosysCalls(s *specs.LinuxSeccomp) map[string]bool {
	out := map[string]bool{}
	if s == nil {
		return out
	}
	for _, sc := range s.Syscalls {
		if sc.Action == specs.ActErrno && sc.ErrnoRet != nil && *sc.ErrnoRet == errnoENOSYS {
			for _, n := range sc.Names {
				out[n] = true
			}
		}
	}
	return out
}
