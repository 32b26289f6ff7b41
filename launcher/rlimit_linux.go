package launcher

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// FitRlimits lowers the spec's hard limits to safe-run's own where it may
// not raise them (no CAP_SYS_RESOURCE: rootless, where capabilities in its
// own user namespace do not count, or a host that drops it), instead of
// failing at start. It returns a note for each one lowered.
func FitRlimits(spec *specs.Spec, rootless bool) []string {
	if !rootless && hasCapability(unix.CAP_SYS_RESOURCE) {
		return nil
	}
	var notes []string
	for i, r := range spec.Process.Rlimits {
		t, ok := rlimitTypes[r.Type]
		if !ok {
			continue
		}
		var own unix.Rlimit
		if unix.Getrlimit(t, &own) != nil || r.Hard <= own.Max {
			continue
		}
		notes = append(notes, fmt.Sprintf("%s hard limit %d, not %d (safe-run may not raise its own without CAP_SYS_RESOURCE)", r.Type, own.Max, r.Hard))
		spec.Process.Rlimits[i].Hard = own.Max
		spec.Process.Rlimits[i].Soft = min(r.Soft, own.Max)
	}
	return notes
}

// hasCapability reports whether safe-run holds capability bit in its
// effective set.
func hasCapability(bit int) bool {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && caps&(1<<uint(bit)) != 0
		}
	}
	return false
}
