package launcher

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/internal/printable"
	"github.com/safe-run/safe-run/internal/proc"
	"github.com/safe-run/safe-run/ops"
	"github.com/safe-run/safe-run/plan"
)

// publisher is what the supervisor publishes for `safe-run ps`, `stop`,
// `kill` and `events` (package ops): the status file and the control
// socket in the service's state directory, and its event journal. A
// publisher that could not be made is nil, and its methods do nothing:
// publishing is never the service's failure.
type publisher struct {
	mu       sync.Mutex
	dir      string
	status   ops.Status
	journal  *ops.Journal
	server   *ops.Server
	log      *slog.Logger
	requests chan ops.Request // from the control socket, for supervise
	// since is the monotonic time of the start (monotonic): the kernel's
	// log of OOM kills is read from there (oomVictims).
	since time.Duration
}

// newPublisher opens the service's journal and writes its status file, in
// state starting.
func newPublisher(spec *specs.Spec, host plan.Placement, opts runOpts) *publisher {
	p := &publisher{dir: host.StateDir, log: opts.Logger, requests: make(chan ops.Request, 4), since: monotonic()}
	j, err := ops.OpenJournal(ops.JournalDir(opts.Dirs.Data), opts.Name)
	if err != nil {
		// Said as the supervisor's other warnings are (Ending: even
		// with -q), with the fix: a rootless user without a home has
		// no default data directory.
		if opts.Ending != nil {
			fmt.Fprintf(opts.Ending, "safe-run: %s: events will not be recorded: %s (set SAFE_RUN_DATA_DIR, or XDG_DATA_HOME, to a directory you can write)\n", opts.Name, printable.String(err.Error()))
		} else {
			opts.Logger.Warn("events will not be recorded", "err", err)
		}
	}
	p.journal = j
	a := spec.Annotations
	p.status = ops.Status{
		Name: opts.Name, State: ops.StateStarting, SupervisorPID: os.Getpid(), Started: time.Now().UTC(),
		Image: a[plan.AnnotationRootfs], ImageDigest: a[plan.AnnotationImageDigest],
		Manifest: a[plan.AnnotationManifest], ManifestSHA: strings.TrimPrefix(a[plan.AnnotationManifestDigest], "sha256:"),
		UserNS: host.IDs.String(), Limits: statusLimits(spec), Unit: ops.SystemdUnit(),
	}
	p.status.SupervisorStart = proc.Start(p.status.SupervisorPID)
	if host.Rootless {
		p.status.UserNS = rootlessHostIDs(host.IDs)
	}
	if m := p.status.Manifest; m != "" && !filepath.IsAbs(m) {
		if abs, err := filepath.Abs(m); err == nil {
			p.status.Manifest = abs
		}
	}
	if n := opts.Network; n != nil {
		for _, port := range n.Ports {
			p.status.Ports = append(p.status.Ports, fmt.Sprintf("%s:%d:%d/%s", port.HostIP, port.HostPort, port.ContainerPort, port.Proto))
		}
	}
	p.write()
	return p
}

func statusLimits(spec *specs.Spec) ops.Limits {
	var l ops.Limits
	r := spec.Linux.Resources
	if r == nil {
		return l
	}
	if r.Memory != nil && r.Memory.Limit != nil {
		l.Memory = *r.Memory.Limit
	}
	if r.CPU != nil && r.CPU.Quota != nil && r.CPU.Period != nil && *r.CPU.Period > 0 {
		l.CPUs = float64(*r.CPU.Quota) / float64(*r.CPU.Period)
	}
	if r.Pids != nil && r.Pids.Limit != nil {
		l.Pids = *r.Pids.Limit
	}
	return l
}

// write replaces the status file; p.mu is held or p not yet shared.
func (p *publisher) write() {
	if err := ops.WriteStatus(p.dir, &p.status); err != nil {
		p.log.Warn("writing the status file", "err", err)
	}
}

// running publishes the started service: its init's pid, its cgroups and
// network, and opens the control socket.
func (p *publisher) running(pid int, cgroupPaths map[string]string, opts runOpts) {
	if p == nil {
		return
	}
	// The start is in the journal and the socket open before the status
	// says running: whoever sees it running can count the start
	// (metrics' starts) and reach the supervisor (stop, exec).
	p.event(ops.EventStart, fmt.Sprintf("init pid %d", pid), nil)
	s, err := ops.Serve(p.dir, p.handle)
	if err != nil {
		p.log.Warn("safe-run stop and kill will not reach this service", "err", err)
	}
	p.mu.Lock()
	p.server = s
	p.status.State, p.status.InitPID, p.status.Cgroups = ops.StateRunning, pid, existing(cgroupPaths)
	if a := opts.net; a != nil {
		p.status.Address, p.status.Bridge = a.Address.String(), a.Bridge
	}
	p.write()
	p.mu.Unlock()
}

// existing are the cgroup directories of paths that exist: rootless
// without delegated controllers ([insecure] no_resource_limits),
// libcontainer names the cgroups it would have made, and made none.
func existing(paths map[string]string) map[string]string {
	out := map[string]string{}
	for k, dir := range paths {
		if st, err := os.Stat(dir); err == nil && st.IsDir() {
			out[k] = dir
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// handle passes a control request on to supervise.
func (p *publisher) handle(req ops.Request) error {
	switch req.Op {
	case ops.OpStop:
		if req.Timeout < 0 {
			return fmt.Errorf("a negative stop timeout %s", req.Timeout)
		}
	case ops.OpKill:
		if req.Signal <= 0 || req.Signal > 64 {
			return fmt.Errorf("signal %d is no signal", req.Signal)
		}
	case ops.OpExec:
		if req.Exec == nil || len(req.Exec.Args) == 0 || req.Session == nil {
			return fmt.Errorf("an exec request without a command")
		}
	default:
		return fmt.Errorf("unknown request %q (this supervisor takes stop, kill and exec)", req.Op)
	}
	select {
	case p.requests <- req:
		return nil
	default:
		return fmt.Errorf("too many requests at once; try again")
	}
}

// control is the channel of requests supervise reads; nil for none.
func (p *publisher) control() <-chan ops.Request {
	if p == nil {
		return nil
	}
	return p.requests
}

// stopping publishes that the service is being stopped.
func (p *publisher) stopping(why string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.status.State = ops.StateStopping
	p.write()
	p.mu.Unlock()
	p.event(ops.EventStop, why, nil)
}

func (p *publisher) event(kind, msg string, code *int) {
	if p == nil {
		return
	}
	if err := p.journal.Add(kind, msg, code); err != nil {
		p.log.Warn("recording an event", "kind", kind, "err", err)
	}
}

// warn records a warning of the supervisor's (warn_linux.go): counted in
// the status file, for metrics, and an event.
func (p *publisher) warn(condition, msg string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	if p.status.Warnings == nil {
		p.status.Warnings = map[string]uint64{}
	}
	p.status.Warnings[condition]++
	p.write()
	p.mu.Unlock()
	if err := p.journal.Warn(condition, msg); err != nil {
		p.log.Warn("recording an event", "kind", ops.EventWarning, "err", err)
	}
}

// started is the monotonic time of the start: the kernel's log of OOM
// kills is read from there (oomVictims); 0 for none.
func (p *publisher) started() time.Duration {
	if p == nil {
		return 0
	}
	return p.since
}

// violations wraps w so that its lines are also events of kind; nil stays
// nil (nothing is watched then).
func (p *publisher) violations(kind string, w io.Writer) io.Writer {
	if p == nil || w == nil {
		return w
	}
	return p.journal.Writer(kind, w)
}

// close ends the control socket, which releases the stop requests
// waiting for the end.
func (p *publisher) close() {
	if p == nil {
		return
	}
	p.server.Close()
}

// closeJournal closes the journal, once nothing more is to be said.
func (p *publisher) closeJournal() {
	if p == nil {
		return
	}
	// The journal is appended to: a failed close may be events lost.
	if err := p.journal.Close(); err != nil {
		p.mu.Lock()
		name := p.status.Name
		p.mu.Unlock()
		p.log.Warn("closing the event journal", "service", name, "err", err)
	}
}

// signalOf names a control request's signal for the journal.
func signalOf(n int) string { return signalName(unix.Signal(n)) }
