package plan

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/safe-run/safe-run/host"
	"github.com/safe-run/safe-run/manifest"
	"github.com/safe-run/safe-run/policy"
)

// PolicyHost is what the host f cannot enforce for svc, for `safe-run
// check --host`. It asks the same questions Build and the launcher do of
// the same facts (AppArmor, the cgroup controllers, the id ranges, where
// bind sources lead), so that what check reports is what a start would
// meet.
func PolicyHost(f host.Facts, dirs Dirs, svc *manifest.Service) policy.Host {
	h := policy.Host{NoLandlock: f.LandlockABI == 0, LandlockABI: f.LandlockABI, AppArmor: f.AppArmor.Enabled, NoSecurityfs: f.AppArmor.NoSecurityfs, RealPaths: map[string]string{}}
	h.Cgroups = cgroupProblem(f.Cgroup)
	switch {
	case f.Userns.Disabled:
		h.Userns = "user namespaces are disabled (sysctl user.max_user_namespaces is 0)"
	case f.Rootless():
		// A rootless run maps what the user has: no range of its own.
	default:
		if _, err := AllocateIDs(f, dirs.Data, svc.Name, false); err != nil {
			h.Userns = err.Error()
		}
	}
	for _, m := range svc.Mounts {
		if m.Type != manifest.MountBind {
			continue
		}
		// As the launcher resolves them when it mounts them.
		if real, err := filepath.EvalSymlinks(m.Source); err == nil {
			h.RealPaths[m.Source] = real
		}
	}
	if len(svc.Network.Published) > 0 {
		h.Addresses, _ = host.Addresses()
	}
	return h
}

// cgroupProblem says which of the controllers safe-run needs it cannot
// use, or "" when it can use them all.
func cgroupProblem(c host.Cgroup) string {
	want := []string{"memory", "cpu", "pids"}
	var missing []string
	if c.Mode == host.CgroupV2 {
		for _, ctl := range want {
			if !c.HasController(ctl) {
				missing = append(missing, ctl)
			}
		}
		if len(missing) == 0 && !c.Delegated {
			return fmt.Sprintf("cgroup %s is not delegated to this user: safe-run cannot create the service's cgroup (run it under systemd-run --scope -p Delegate=yes)", filepath.Join("/sys/fs/cgroup", c.Own))
		}
	} else {
		for _, ctl := range want {
			switch {
			case !c.HasController(ctl):
				missing = append(missing, ctl)
			case strings.Contains(" "+strings.Join(c.Unwritable, " ")+" ", " "+ctl+" "):
				missing = append(missing, ctl+" (not writable: "+filepath.Join("/sys/fs/cgroup", ctl)+")")
			}
		}
	}
	if len(missing) > 0 {
		return "the host gives safe-run no " + strings.Join(missing, ", ") + " cgroup controller: those limits would not be enforced"
	}
	return ""
}
