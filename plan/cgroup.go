package plan

import (
	"path"

	"github.com/safe-run/safe-run/host"
)

// cgroupPlacement returns the OCI cgroupsPath of service name, nested
// under safe-run's own cgroup as systemd's Delegate=yes expects.
//
// On v1 (and hybrid hosts) a relative path nests under safe-run's own
// cgroup in each hierarchy, which may differ per controller. On v2 there is
// one hierarchy; the path is absolute because safe-run moves itself into a
// leaf below its cgroup before the container starts.
func cgroupPlacement(c host.Cgroup, name string) string {
	leaf := "safe-run-" + name
	if c.Mode != host.CgroupV2 {
		return leaf
	}
	return path.Join("/", c.Own, leaf)
}

// undelegated lists the controllers of need that this user may not use
// in its own cgroup, and names the cgroup.
func undelegated(c host.Cgroup, need []string) (missing []string, where string) {
	if c.Mode != host.CgroupV2 {
		return need, "cgroup v1, which cannot be delegated to a user" // hybrid: its controllers are v1 too
	}
	if c.Own == "" {
		return need, "an unknown cgroup"
	}
	for _, ctl := range need {
		if !c.Delegated || !c.HasController(ctl) {
			missing = append(missing, ctl)
		}
	}
	return missing, c.Own
}

// delegationHint is the fix for undelegated controllers.
func delegationHint(c host.Cgroup) string {
	if c.Mode != host.CgroupV2 {
		return "boot with cgroup v2 only (systemd.unified_cgroup_hierarchy=1), or run as root"
	}
	return "as root: mkdir -p /etc/systemd/system/user@.service.d && " +
		"printf '[Service]\\nDelegate=cpu cpuset io memory pids\\n' > /etc/systemd/system/user@.service.d/delegate.conf && " +
		"systemctl daemon-reload; then start safe-run in a delegated scope: systemd-run --user --scope -p Delegate=yes safe-run ..."
}
