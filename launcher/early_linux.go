package launcher

import (
	"encoding/json"
	"io"
	"os"
	"runtime"
	"strconv"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/runc/libcontainer"

	"github.com/safe-run/safe-run/plan"
)

// early is the part of a start that does not depend on the rest of the
// set-up: mostly waiting on the kernel. It begins first, in the background,
// while Run does the rest of its set-up; make bench measured it at a
// quarter of safe-run's start-to-exit.
type early struct {
	signals    *Signals
	cgroup     chan error // v2: the move into the supervisor leaf
	userns     chan usernsResult
	usernsUsed bool
	ownSignals bool // subscribed by Run, not by its caller
}

type usernsResult struct {
	f   *os.File
	err error
}

func startEarly(host plan.Placement, signals *Signals) *early {
	e := &early{signals: signals, cgroup: make(chan error, 1)}
	if signals == nil {
		e.signals, e.ownSignals = SubscribeSignals(), true
	}
	if !host.Rootless {
		e.userns = make(chan usernsResult, 1)
	}
	// On v2 the idmap holder waits for the move into the supervisor leaf:
	// a process of safe-run's left in its cgroup would keep it from
	// delegating controllers. Elsewhere it goes first: the start waits
	// for it, and for nothing else here.
	leaf := host.CgroupV2 && !host.CgroupsWaived
	if !leaf {
		e.startUserns(host)
	}
	// libcontainer JSON-encodes the container's configuration to its init
	// and into its state file; encoding/json builds the encoders of all
	// its types on first use, about 2 ms in a fresh process. Built here,
	// on the CPU the set-up leaves idle, they are ready by then.
	go func() { _ = json.NewEncoder(io.Discard).Encode(&libcontainer.State{}) }()
	// The first write to any cgroup.procs after a quiet spell waits for an
	// RCU grace period (the kernel's cgroup_threadgroup_rwsem leaving its
	// fast path), about 10 ms: paid here, libcontainer's writes moments
	// later find it passed. On v2 the move into the supervisor leaf is such
	// a write; on v1, moving safe-run into its own cgroup is a no-op that
	// pays it.
	if leaf {
		go func() {
			err := EnterSupervisorLeaf()
			e.cgroup <- err
			e.startUserns(host)
		}()
		return e
	}
	e.cgroup <- nil
	if !host.CgroupV2 {
		go func() {
			if p, err := cgroups.GetOwnCgroupPath("pids"); err == nil {
				_ = cgroups.WriteFile(p, "cgroup.procs", strconv.Itoa(os.Getpid()))
			}
		}()
	}
	return e
}

// startUserns creates, in the background, the user namespace handle for
// idmapped mounts (not rootless: the rootfs is not id-mapped there).
func (e *early) startUserns(host plan.Placement) {
	if e.userns == nil {
		return
	}
	go func() {
		// The holder's parent-death signal follows the thread that
		// created it: the thread must live until the handle is open.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread() //nolint:forbidigo // no namespace or filter on this thread: the holder only needs it alive until the handle is open
		f, err := usernsFD(host.IDs)
		e.userns <- usernsResult{f, err}
	}()
}

// usernsFile waits for the user namespace handle for idmapped mounts.
func (e *early) usernsFile() (*os.File, error) {
	e.usernsUsed = true
	r := <-e.userns
	return r.f, r.err
}

// stop unsubscribes from the signals Run subscribed to, without waiting
// for the runtime, and closes what a start that failed early did not use.
func (e *early) stop() {
	if e.ownSignals {
		e.signals.Stop()
	}
	if e.userns != nil && !e.usernsUsed {
		go func() {
			if r := <-e.userns; r.f != nil {
				r.f.Close()
			}
		}()
	}
}
