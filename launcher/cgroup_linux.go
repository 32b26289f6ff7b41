package launcher

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/fs2"
	"github.com/opencontainers/cgroups/manager"
	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/host"
)

// EnterSupervisorLeaf moves safe-run into the supervisor leaf of its own
// cgroup (host.SupervisorLeaf) and enables the controllers the container
// needs below it.
func EnterSupervisorLeaf() error {
	cg := host.Probe().Cgroup
	own := cg.Own
	if own == "" {
		return errors.New("reading own cgroup: /proc/self/cgroup has no cgroup v2 entry")
	}
	if own == "/" {
		// The root cgroup may hold processes and still delegate.
		return nil
	}
	dir := filepath.Join(fs2.UnifiedMountpoint, own)
	leaf := filepath.Join(dir, host.SupervisorLeaf)
	if err := os.Mkdir(leaf, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("creating supervisor cgroup %s: %w (run safe-run where it may create cgroups, e.g. a systemd unit with Delegate=yes)", leaf, err)
	}
	if err := cgroups.WriteFile(leaf, "cgroup.procs", "0"); err != nil {
		return fmt.Errorf("moving safe-run into %s: %w", leaf, err)
	}
	var enable []string
	// io: for the block I/O `safe-run stats` and `metrics` show (io.stat);
	// it sets no limit.
	for _, c := range []string{"cpu", "memory", "pids", "io"} {
		if cg.HasController(c) {
			enable = append(enable, "+"+c)
		}
	}
	if len(enable) == 0 {
		return nil
	}
	if err := cgroups.WriteFile(dir, "cgroup.subtree_control", strings.Join(enable, " ")); err != nil {
		if errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("%w: cgroup %s holds other processes besides safe-run, so it cannot delegate controllers (start safe-run in its own cgroup: systemd-run --scope -p Delegate=yes safe-run ...)", host.ErrCannotEnforce, own)
		}
		return fmt.Errorf("enabling %s in %s: %w", strings.Join(enable, " "), dir, err)
	}
	return nil
}

// removeCgroup kills whatever still runs in the cgroup at cgroupPath and
// removes it: the clean-up after a run that did not end cleanly. It
// reports whether there was a cgroup to remove.
func removeCgroup(cgroupPath string) (found bool, err error) {
	m, err := manager.New(&cgroups.Cgroup{Path: cgroupPath, Resources: &cgroups.Resources{}})
	if err != nil {
		return false, err
	}
	if !m.Exists() {
		return false, nil
	}
	// A frozen task takes its SIGKILL only once thawed: a clean-up
	// killed while libcontainer's kill had the cgroup frozen, or a
	// hand, leaves it so.
	if st, err := m.GetFreezerState(); err == nil && st != cgroups.Thawed && st != cgroups.Undefined {
		_ = m.Freeze(cgroups.Thawed)
	}
	where := m.Path("pids")
	if where == "" {
		where = m.Path("")
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
			return true, fmt.Errorf("processes %v in cgroup %s survive SIGKILL (a process in uninterruptible sleep, state D in ps, ends when its I/O does; once cgroup.procs there is empty, start again)", pids, where)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := m.Destroy(); err != nil {
		return true, fmt.Errorf("removing cgroup %s: %w (once cgroup.procs there is empty, start again)", where, err)
	}
	return true, nil
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
