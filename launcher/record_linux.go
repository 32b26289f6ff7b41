package launcher

import (
	"context"
	"fmt"
	"maps"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/safe-run/safe-run/host"
	"github.com/safe-run/safe-run/landlock"
	"github.com/safe-run/safe-run/plan"
	"github.com/safe-run/safe-run/profiles"
)

// Recorded is what a recording saw.
type Recorded struct {
	Seccomp *specs.LinuxSeccomp // the recorded profile
	// LandlockDenials are what the service's Landlock ruleset would
	// have refused of what it did, in words (landlock.Ruleset.Denial),
	// in the order first seen; LandlockNotes say what was not watched.
	LandlockDenials []string
	LandlockNotes   []string
}

// Record runs job, as Run does, under a variant of its seccomp profile
// that reports every call the profile allows (see profiles.Recording),
// until it exits or ctx ends, and returns what it recorded and the
// service's exit status. It lives here rather than in package profiles
// because it runs the container; the profile logic is profiles'.
//
// The service runs without its Landlock ruleset, which has no mode that
// only reports: as root, the accesses it would refuse are watched instead
// (accessWatch) and judged against the ruleset (landlock.Ruleset.Denies).
func Record(ctx context.Context, job *plan.Job, f host.Facts, opts Options) (*Recorded, int, error) {
	// The service's own profile, without the notifications Build may
	// have added for a rootless seccomp_log: the recording adds its own.
	base, err := plan.SeccompProfile(job.Service, f)
	if err != nil {
		return nil, 0, err
	}
	ro := profiles.RecordOptions{Arch: f.Arch}
	if job.Placement.Rootless {
		ro.Listener = job.Placement.SeccompAgent()
	}
	rec, err := profiles.NewRecording(base, ro)
	if err != nil {
		return nil, 0, err
	}
	recorded := *job
	spec := *job.Spec
	linux := *spec.Linux
	linux.Seccomp = rec.Spec()
	spec.Linux = &linux
	spec.Annotations = maps.Clone(spec.Annotations)
	spec.Annotations[plan.AnnotationSeccomp] = job.Service.Security.Seccomp + ", recording"
	recorded.Spec = &spec
	opts.Record = rec
	out := &Recorded{}
	switch {
	case job.Landlock == nil:
	case job.Placement.Rootless:
		// Nothing to watch with (fanotify needs root): the ruleset
		// stays on. It must: libcontainer loads a rootless filter
		// (it notifies) before safe-run-init makes the Landlock calls,
		// which the recorded profile must then allow.
		out.LandlockNotes = append(out.LandlockNotes, "Landlock: what the ruleset would deny is not recorded without root (fanotify needs it); it was enforced")
	default:
		// safe-run-init, started with or without NoInitFlag as the
		// spec says, gets no ruleset. As root it loads the filter
		// itself, after the Landlock calls: the profile needs none.
		recorded.Landlock = nil
		recorded.Notes = append(recorded.Notes[:len(recorded.Notes):len(recorded.Notes)],
			"Landlock not enforced while recording: what it would deny is reported at the end")
		opts.accesses = newAccessWatch()
		out.LandlockNotes = append(out.LandlockNotes, unrecordedAccesses(job.Landlock))
	}
	code, err := Run(ctx, &recorded, opts)
	if opts.accesses != nil {
		seen, notes := opts.accesses.stop()
		out.LandlockNotes = append(out.LandlockNotes, notes...)
		out.LandlockDenials = denials(job.Landlock, seen)
	}
	if err != nil {
		return nil, code, err
	}
	out.Seccomp, err = rec.Profile()
	return out, code, err
}

// denials are what r would refuse of seen, in words.
func denials(r *landlock.Ruleset, seen []landlock.Access) []string {
	var out []string
	for _, a := range seen {
		if d := r.Denial(a); d != "" {
			out = append(out, d)
		}
	}
	return out
}

// unrecordedAccesses says what a recording does not see of what the
// ruleset governs, and where to see it. The kernel's audit records would
// name every kind of denial (ABI 7), but a denial is all they record: a
// recording without the ruleset makes none, and one with it would stop
// the service at its first, which is what a run does. So such a run, its
// denials shown (where the kernel audits them), is where those are seen.
func unrecordedAccesses(r *landlock.Ruleset) string {
	const what = "Landlock: not recorded (Landlock has no mode that only reports): directories made or removed, renames and links, device ioctls, TCP connects, abstract sockets, signals"
	if r.RestrictFlags&landlock.RestrictSelfLogNewExecOn == 0 {
		return fmt.Sprintf("%s; a run with the ruleset refuses those it denies with EACCES, which the kernel does not audit at ABI %d", what, r.ABI)
	}
	if on, err := profiles.AuditEnabled(); err == nil && on {
		return what + "; a run with the ruleset shows those it denies (the kernel's audit is on)"
	}
	return what + "; a run with the ruleset shows those it denies where the kernel's audit is on (auditd, or auditctl -e 1)"
}
