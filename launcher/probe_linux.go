package launcher

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/fs2"
	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/apparmor"
	"github.com/safe-run/safe-run/manifest"
	"github.com/safe-run/safe-run/policy"
)

// ProbeHost finds out what this host can enforce for svc, for `safe-run
// check --host`. It asks the same questions Prepare and Run do (AppArmor
// through libcontainer, the cgroup placement, the id ranges, where bind
// sources lead), so that what check reports is what a start would meet.
func ProbeHost(dirs Dirs, svc *manifest.Service) policy.Host {
	aa := apparmor.Probe()
	h := policy.Host{AppArmor: aa.Enabled, NoSecurityfs: aa.NoSecurityfs, RealPaths: map[string]string{}}
	h.Cgroups = probeCgroups(svc.Name)
	if n, err := os.ReadFile("/proc/sys/user/max_user_namespaces"); err == nil && strings.TrimSpace(string(n)) == "0" {
		h.Userns = "user namespaces are disabled (sysctl user.max_user_namespaces is 0)"
	} else if _, err := AllocateIDs(dirs.Data, svc.Name, false); err != nil {
		h.Userns = err.Error()
	}
	for _, m := range svc.Mounts {
		if m.Type != manifest.MountBind {
			continue
		}
		// As openChecked resolves them when it mounts them.
		if real, err := filepath.EvalSymlinks(m.Source); err == nil {
			h.RealPaths[m.Source] = real
		}
	}
	if svc.Network.Mode == manifest.NetworkBridge {
		h.Addresses, _ = HostAddresses()
	}
	return h
}

// HostAddresses lists the addresses of this host's interfaces, where a
// port may be published.
func HostAddresses() ([]netip.Addr, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("listing the host's addresses: %w", err)
	}
	out := []netip.Addr{}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out, nil
}

// probeCgroups says which of the controllers safe-run needs it cannot use,
// or "" when it can use them all.
func probeCgroups(name string) string {
	want := []string{"memory", "cpu", "pids"}
	var missing []string
	if cgroups.IsCgroup2UnifiedMode() {
		cgPath, _, err := CgroupPlacement(name)
		if err != nil {
			return err.Error()
		}
		dir := filepath.Join(fs2.UnifiedMountpoint, filepath.Dir(cgPath))
		avail, err := cgroups.ReadFile(dir, "cgroup.controllers")
		if err != nil {
			return fmt.Sprintf("reading %s/cgroup.controllers: %v", dir, err)
		}
		have := " " + strings.TrimSpace(avail) + " "
		for _, c := range want {
			if !strings.Contains(have, " "+c+" ") {
				missing = append(missing, c)
			}
		}
		if len(missing) == 0 && unix.Access(dir, unix.W_OK) != nil {
			return fmt.Sprintf("cgroup %s is not delegated to this user: safe-run cannot create the service's cgroup (run it under systemd-run --scope -p Delegate=yes)", dir)
		}
	} else {
		enabled, err := enabledControllers()
		if err != nil {
			return err.Error()
		}
		for _, c := range want {
			mnt := filepath.Join("/sys/fs/cgroup", c)
			if !enabled[c] {
				missing = append(missing, c)
			} else if unix.Access(mnt, unix.W_OK) != nil {
				missing = append(missing, c+" (not writable: "+mnt+")")
			}
		}
	}
	if len(missing) > 0 {
		return "the host gives safe-run no " + strings.Join(missing, ", ") + " cgroup controller: those limits would not be enforced"
	}
	return ""
}

// enabledControllers reads /proc/cgroups (cgroup v1 and hybrid hosts).
func enabledControllers() (map[string]bool, error) {
	f, err := os.Open("/proc/cgroups")
	if errors.Is(err, os.ErrNotExist) {
		return map[string]bool{}, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 4 && !strings.HasPrefix(fields[0], "#") {
			out[fields[0]] = fields[3] == "1"
		}
	}
	return out, sc.Err()
}
