package launcher

import (
	"context"
	"maps"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/safe-run/safe-run/host"
	"github.com/safe-run/safe-run/plan"
	"github.com/safe-run/safe-run/profiles"
)

// Record runs job, as Run does, under a variant of its seccomp profile
// that reports every call the profile allows (see profiles.Recording),
// until it exits or ctx ends, and returns the recorded profile and the
// service's exit status. It lives here rather than in package profiles
// because it runs the container; the profile logic is profiles'.
func Record(ctx context.Context, job *plan.Job, f host.Facts, opts Options) (*specs.LinuxSeccomp, int, error) {
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
	code, err := Run(ctx, &recorded, opts)
	if err != nil {
		return nil, code, err
	}
	prof, err := rec.Profile()
	return prof, code, err
}
