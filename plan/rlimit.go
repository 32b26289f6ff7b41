package plan

import (
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/safe-run/safe-run/host"
)

// fitRlimits lowers the spec's hard limits to safe-run's own where it may
// not raise them (no CAP_SYS_RESOURCE: rootless, where capabilities in its
// own user namespace do not count, or a host that drops it), instead of
// failing at start. It returns a note for each one lowered.
func fitRlimits(spec *specs.Spec, f host.Facts) []string {
	if !f.Rootless() && f.CapSysResource {
		return nil
	}
	var notes []string
	for i, r := range spec.Process.Rlimits {
		own, ok := f.RlimitMax[r.Type]
		if !ok || r.Hard <= own {
			continue
		}
		notes = append(notes, fmt.Sprintf("%s hard limit %d, not %d (safe-run may not raise its own without CAP_SYS_RESOURCE)", r.Type, own, r.Hard))
		spec.Process.Rlimits[i].Hard = own
		spec.Process.Rlimits[i].Soft = min(r.Soft, own)
	}
	return notes
}
