package host_test

import (
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
