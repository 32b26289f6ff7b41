package launcher

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/fs2"
	"github.com/opencontainers/cgroups/manager"
	"golang.org/x/sys/unix"
)

// supervisorLeaf is the cgroup v2 leaf safe-run moves itself into, so that
// its own cgroup can delegate controllers to the container's cgroup beside
// it: a v2 cgroup with processes cannot enable controllers for children.
const supervisorLeaf = "supervisor"

// CgroupPlacement returns the OCI cgroupsPath of service name, nested under
// safe-run's own cgroup as systemd's Delegate=yes expects, and whether the
// host runs cgroup v2 alone.
//
// On v1 (and hybrid hosts) a relative path nests under safe-run's own cgroup
// in each hierarchy, which may differ per controller. On v2 there is one
// hierarchy; the path is absolute because safe-run moves itself into a leaf
// below its cgroup before the container starts.
func CgroupPlacement(name string) (cgroupPath string, v2 bool, err error) {
	leaf := "safe-run-" + name
	if !cgroups.IsCgroup2UnifiedMode() {
		return leaf, false, nil
	}
	own, err := ownCgroupV2()
	if err != nil {
		return "", true, err
	}
	return path.Join(own, leaf), true, nil
}

// ownCgroupV2 is the cgroup safe-run was started in (the parent of the
// supervisor leaf, once it has moved there).
func ownCgroupV2() (string, error) {
	paths, err := cgroups.ParseCgroupFile("/proc/self/cgroup")
	if err != nil {
		return "", fmt.Errorf("reading own cgroup: %w", err)
	}
	own, ok := paths[""]
	if !ok {
		return "", errors.New("reading own cgroup: /proc/self/cgroup has no cgroup v2 entry")
	}
	if path.Base(own) == supervisorLeaf {
		own = path.Dir(own)
	}
	return own, nil
}

// enterSupervisorLeaf moves safe-run into the supervisor leaf of its own
// cgroup and enables the controllers the container needs below it.
func enterSupervisorLeaf() error {
	own, err := ownCgroupV2()
	if err != nil || own == "/" {
		// The root cgroup may hold processes and still delegate.
		return err
	}
	dir := filepath.Join(fs2.UnifiedMountpoint, own)
	leaf := filepath.Join(dir, supervisorLeaf)
	if err := os.Mkdir(leaf, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("creating supervisor cgroup %s: %w (run safe-run where it may create cgroups, e.g. a systemd unit with Delegate=yes)", leaf, err)
	}
	if err := cgroups.WriteFile(leaf, "cgroup.procs", "0"); err != nil {
		return fmt.Errorf("moving safe-run into %s: %w", leaf, err)
	}
	avail, err := cgroups.ReadFile(dir, "cgroup.controllers")
	if err != nil {
		return err
	}
	var enable []string
	for _, c := range []string{"cpu", "memory", "pids"} {
		if strings.Contains(" "+strings.TrimSpace(avail)+" ", " "+c+" ") {
			enable = append(enable, "+"+c)
		}
	}
	if len(enable) == 0 {
		return nil
	}
	if err := cgroups.WriteFile(dir, "cgroup.subtree_control", strings.Join(enable, " ")); err != nil {
		if errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("%w: cgroup %s holds other processes besides safe-run, so it cannot delegate controllers (start safe-run in its own cgroup: systemd-run --scope -p Delegate=yes safe-run ...)", ErrHostCannotEnforce, own)
		}
		return fmt.Errorf("enabling %s in %s: %w", strings.Join(enable, " "), dir, err)
	}
	return nil
}

// removeCgroup kills whatever still runs in the cgroup at cgroupPath and
// removes it: the clean-up after a run that did not end cleanly.
func removeCgroup(cgroupPath string) error {
	m, err := manager.New(&cgroups.Cgroup{Path: cgroupPath, Resources: &cgroups.Resources{}})
	if err != nil {
		return err
	}
	if !m.Exists() {
		return nil
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids, err := m.GetAllPids()
		if err != nil || len(pids) == 0 {
			break
		}
		for _, pid := range pids {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v in cgroup %s survive SIGKILL", pids, cgroupPath)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return m.Destroy()
}

// oomKills reads how many processes the kernel's OOM killer took from the
// container's cgroup.
func oomKills(m cgroups.Manager) uint64 {
	n, err := m.OOMKillCount()
	if err != nil {
		return 0
	}
	return n
}

// UndelegatedControllers lists the controllers of need that this user may
// not use in its own cgroup, and names the cgroup.
func UndelegatedControllers(v2 bool, need []string) (missing []string, where string) {
	if !v2 {
		return need, "cgroup v1, which cannot be delegated to a user"
	}
	own, err := ownCgroupV2()
	if err != nil {
		return need, "an unknown cgroup"
	}
	dir := filepath.Join(fs2.UnifiedMountpoint, own)
	avail, _ := cgroups.ReadFile(dir, "cgroup.controllers")
	writable := unix.Access(filepath.Join(dir, "cgroup.subtree_control"), unix.W_OK) == nil &&
		unix.Access(filepath.Join(dir, "cgroup.procs"), unix.W_OK) == nil
	for _, c := range need {
		if !writable || !strings.Contains(" "+strings.TrimSpace(avail)+" ", " "+c+" ") {
			missing = append(missing, c)
		}
	}
	return missing, own
}

// DelegationHint is the fix for undelegated controllers.
func DelegationHint(v2 bool) string {
	if !v2 {
		return "boot with cgroup v2 only (systemd.unified_cgroup_hierarchy=1), or run as root"
	}
	return "as root: mkdir -p /etc/systemd/system/user@.service.d && " +
		"printf '[Service]\\nDelegate=cpu cpuset io memory pids\\n' > /etc/systemd/system/user@.service.d/delegate.conf && " +
		"systemctl daemon-reload; then start safe-run in a delegated scope: systemd-run --user --scope -p Delegate=yes safe-run ..."
}
