package plan

import (
	"context"
	"maps"
	"runtime"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/safe-run/safe-run/launcher"
	"github.com/safe-run/safe-run/profiles"
)

// Record runs a prepared service, as Run does, under a variant of its
// seccomp profile that reports every call the profile allows (see
// profiles.Recording), until it exits or ctx ends, and returns the
// recorded profile and the service's exit status. Recording lives here
// rather than in package profiles because it runs the container; the
// profile logic is profiles'.
func Record(ctx context.Context, p *Prepared, opts launcher.Options) (*specs.LinuxSeccomp, int, error) {
	// The service's own profile, without the notifications Prepare may
	// have added for a rootless seccomp_log: the recording adds its own.
	base, err := seccompProfile(p.Service)
	if err != nil {
		return nil, 0, err
	}
	ro := profiles.RecordOptions{Arch: runtime.GOARCH}
	if p.Host.Rootless {
		ro.Listener = p.Host.SeccompAgent()
	}
	rec, err := profiles.NewRecording(base, ro)
	if err != nil {
		return nil, 0, err
	}
	spec := *p.Spec
	linux := *spec.Linux
	linux.Seccomp = rec.Spec()
	spec.Linux = &linux
	spec.Annotations = maps.Clone(spec.Annotations)
	spec.Annotations[launcher.AnnotationSeccomp] = p.Service.Security.Seccomp + ", recording"
	opts.Record = rec
	code, err := launcher.Run(ctx, &spec, p.Host, opts)
	if err != nil {
		return nil, code, err
	}
	prof, err := rec.Profile()
	return prof, code, err
}
