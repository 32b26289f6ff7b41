package host_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/safe-run/safe-run/host"
	"github.com/safe-run/safe-run/host/hosttest"
)

// TestRead: the facts of each staged host, as the commands read them.
func TestRead(t *testing.T) {
	for _, tc := range []struct {
		kind                   string
		mode                   host.CgroupMode
		delegated, rootless    bool
		appArmor, noSecurityfs bool
		lsms                   int
	}{
		{hosttest.V1Hybrid, host.CgroupHybrid, true, false, true, false, 6},
		{hosttest.V2Delegated, host.CgroupV2, true, true, true, false, 6},
		{hosttest.V2Undelegated, host.CgroupV2, false, true, true, false, 6},
		{hosttest.NoAppArmor, host.CgroupV2, true, false, false, false, 5},
		{hosttest.NoSecurityfs, host.CgroupV2, true, false, false, true, 0},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			_, f := hosttest.Stage(t, tc.kind)
			if f.Cgroup.Mode != tc.mode || f.Cgroup.Delegated != tc.delegated || f.Rootless() != tc.rootless {
				t.Errorf("cgroup %+v rootless %v, want %s delegated %v rootless %v", f.Cgroup, f.Rootless(), tc.mode, tc.delegated, tc.rootless)
			}
			for _, c := range []string{"cpu", "memory", "pids"} {
				if !f.Cgroup.HasController(c) {
					t.Errorf("no %s controller in %v", c, f.Cgroup.Controllers)
				}
			}
			if f.AppArmor.Enabled != tc.appArmor || f.AppArmor.NoSecurityfs != tc.noSecurityfs {
				t.Errorf("AppArmor %+v, want enabled %v, no securityfs %v", f.AppArmor, tc.appArmor, tc.noSecurityfs)
			}
			if len(f.LSMs) != tc.lsms {
				t.Errorf("LSMs %v, want %d", f.LSMs, tc.lsms)
			}
			if f.SELinux || f.UnprivilegedPortStart != 1024 {
				t.Errorf("SELinux %v, unprivileged ports from %d: want false, 1024", f.SELinux, f.UnprivilegedPortStart)
			}
			if f.IDUserUID != "999" || !f.CapSysResource || !f.Seccomp.Present {
				t.Errorf("id user %q, CAP_SYS_RESOURCE %v, seccomp %+v", f.IDUserUID, f.CapSysResource, f.Seccomp)
			}
			if tc.rootless && f.RootlessIDSize() != host.IDRangeSize {
				t.Errorf("rootless id size %d, want %d (alice has a range)", f.RootlessIDSize(), host.IDRangeSize)
			}
		})
	}
}

// TestProbeOnce: every caller in a process gets the same facts.
func TestProbeOnce(t *testing.T) {
	a, b := host.Probe(), host.Probe()
	if a.Cgroup.Mode != b.Cgroup.Mode || a.Kernel != b.Kernel || a.Kernel == "" {
		t.Errorf("two probes differ or are empty: %+v / %+v", a, b)
	}
}

// TestReadLSMFacts: SELinux is seen in the LSM list, or by its own file
// system where securityfs is not mounted; the unprivileged port start is
// -1 and the seccomp actions logged nil when they cannot be read.
func TestReadLSMFacts(t *testing.T) {
	for _, tc := range []struct {
		name    string
		files   map[string]string
		selinux bool
		ports   int
		logged  []string
	}{
		{"nothing", nil, false, -1, nil},
		{"selinux in lsm", map[string]string{"sys/kernel/security/lsm": "capability,selinux"}, true, -1, nil},
		{"selinuxfs only", map[string]string{"sys/fs/selinux/enforce": "1"}, true, -1, nil},
		{"ports", map[string]string{"proc/sys/net/ipv4/ip_unprivileged_port_start": "80\n"}, false, 80, nil},
		{"seccomp logged", map[string]string{"proc/sys/kernel/seccomp/actions_logged": "kill_process errno log\n"}, false, -1, []string{"kill_process", "errno", "log"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			for p, content := range tc.files {
				full := filepath.Join(root, p)
				if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			f := host.Read(root, 0, 0)
			if f.SELinux != tc.selinux || f.UnprivilegedPortStart != tc.ports || !slices.Equal(f.Seccomp.ActionsLogged, tc.logged) {
				t.Errorf("SELinux %v, ports from %d, seccomp logs %q; want %v, %d, %q", f.SELinux, f.UnprivilegedPortStart, f.Seccomp.ActionsLogged, tc.selinux, tc.ports, tc.logged)
			}
		})
	}
}
