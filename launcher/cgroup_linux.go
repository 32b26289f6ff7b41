package launcher

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
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

// ErrNameInUse: a service of the name runs from another state directory, or as another user.
var ErrNameInUse = errors.New("a service of this name is running")

// cleanCgroup kills whatever a run that did not end cleanly left in the cgroup at cgroupPath
// and removes it, reporting whether there was one. A cgroup another run holds (holdCgroup) is
// no leftover: every run of the name holds it, whatever its state directory (SAFE_RUN_STATE_DIR)
// and so its name lock, and a start of a name that runs elsewhere refuses, where it used to take
// the running service for a dead run's leftovers and kill it.
func cleanCgroup(cgroupPath, name string) (found bool, err error) {
	m, err := manager.New(&cgroups.Cgroup{Path: cgroupPath, Resources: &cgroups.Resources{}})
	if err != nil {
		return false, err
	}
	// Any hierarchy's: m.Exists looks at one (devices, on v1), a hierarchy's rmdir may have
	// failed where the others' did not, and systemd removes a stopped unit's cgroups in the
	// hierarchies it manages (pids, memory, cpu), not in the others (freezer, cpuset...).
	left := slices.DeleteFunc(slices.Sorted(maps.Values(m.GetPaths())), func(p string) bool { _, err := os.Stat(p); return err != nil })
	if len(left) == 0 {
		return false, nil
	}
	where := lockDir(m)
	if _, err := os.Stat(where); err == nil {
		held, err := lockCgroup(where, name)
		if err != nil {
			return true, err
		}
		defer held.Close()
	} else {
		// No run holds a lock there: every run's processes are in it.
		where = left[0]
	}
	if err := removeCgroup(m, where); err != nil {
		return true, fmt.Errorf("cleaning up after a previous run of %s: %w", name, err)
	}
	return true, nil
}

// holdCgroup locks the container's cgroup m for the run, once libcontainer has made it: the
// caller closes it when the service has ended. Between the making and the lock, a start of the
// name elsewhere at that very moment could still take it for leftovers: a window of the start's
// own milliseconds, where before every start elsewhere killed the service.
func holdCgroup(m cgroups.Manager, name string) (*os.File, error) {
	return lockCgroup(lockDir(m), name)
}

// lockDir is the directory of m's cgroup that holds its lock: the pids hierarchy's on cgroup v1.
func lockDir(m cgroups.Manager) string {
	if where := m.Path("pids"); where != "" {
		return where
	}
	return m.Path("")
}

// lockCgroup locks the cgroup directory dir, or says which service holds it.
func lockCgroup(dir, name string) (*os.File, error) {
	f, err := os.OpenFile(dir, os.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, fmt.Errorf("opening cgroup %s: %w", dir, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s, whose cgroup %s is in use by another safe-run (started with another SAFE_RUN_STATE_DIR, or by another user; `safe-run ps` where it was started shows it): stop it first, or give this service another name",
				ErrNameInUse, name, dir)
		}
		return nil, fmt.Errorf("locking cgroup %s: %w", dir, err)
	}
	return f, nil
}

// removeCgroup kills whatever still runs in m's cgroup (where: its directory in one hierarchy,
// for messages) and removes it.
func removeCgroup(m cgroups.Manager, where string) error {
	// A frozen task takes its SIGKILL only once thawed: a clean-up
	// killed while libcontainer's kill had the cgroup frozen, or a
	// hand, leaves it so.
	if st, err := m.GetFreezerState(); err == nil && st != cgroups.Thawed && st != cgroups.Undefined {
		_ = m.Freeze(cgroups.Thawed)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids := pidsIn(m)
		if len(pids) == 0 {
			break
		}
		for _, pid := range pids {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v in cgroup %s survive SIGKILL (a process in uninterruptible sleep, state D in ps, ends when its I/O does; once cgroup.procs there is empty, start again)", pids, where)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := m.Destroy(); err != nil {
		return fmt.Errorf("removing cgroup %s: %w (once cgroup.procs there is empty, start again)", where, err)
	}
	return nil
}

// pidsIn lists the processes in m's cgroup in every hierarchy that still has it: m.GetAllPids
// reads one (devices, on v1), which a leftover may have lost.
func pidsIn(m cgroups.Manager) []int {
	seen := map[int]bool{}
	for _, p := range m.GetPaths() {
		pids, _ := cgroups.GetAllPids(p)
		for _, pid := range pids {
			seen[pid] = true
		}
	}
	return slices.Sorted(maps.Keys(seen))
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
