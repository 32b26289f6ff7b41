package doctor_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/safe-run/safe-run/apparmor"
	"github.com/safe-run/safe-run/doctor"
	"github.com/safe-run/safe-run/host"
	"github.com/safe-run/safe-run/host/hosttest"
	"github.com/safe-run/safe-run/manifest"
	"github.com/safe-run/safe-run/plan"
)

// TestCommandsAgree: on one host, doctor, check --host and a run (plan)
// read the same facts and come to the same answer, for the cgroup limits
// and for AppArmor.
func TestCommandsAgree(t *testing.T) {
	rootfs, err := filepath.Abs("../plan/testdata/rootfs")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		kind                 string
		noLimits, noAppArmor bool // what the host cannot enforce
	}{
		{hosttest.V1Hybrid, false, false},
		{hosttest.V2Delegated, false, false},
		{hosttest.V2Undelegated, true, false},
		{hosttest.NoAppArmor, false, true},
		{hosttest.NoSecurityfs, false, true},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			root, f := hosttest.Stage(t, tc.kind)
			dirs := plan.Dirs{State: t.TempDir(), Data: t.TempDir()}
			write := func(security string) string {
				p := filepath.Join(t.TempDir(), "web.toml")
				text := "version = 1\nname = \"web\"\n[image]\nrootfs = \"" + rootfs + "\"\n[process]\ncommand = [\"/bin/server\"]\n[resources]\nmemory = \"64M\"\ncpus = 1.0\n" + security
				if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
				return p
			}

			// doctor
			r := doctor.Diagnose(doctor.Host{Root: root, Facts: f, Env: func(string) string { return "" }})
			checks := map[string]doctor.Status{}
			for _, c := range r.Checks {
				checks[c.Name] = c.Status
			}
			// check --host
			svc, err := manifest.Load(write(""))
			if err != nil {
				t.Fatal(err)
			}
			ph := plan.PolicyHost(f, dirs, svc)
			// a run
			job, err := plan.Build(t.Context(), write(""), f, plan.Options{Dirs: dirs})
			if err != nil {
				t.Fatal(err)
			}
			required, err := plan.Build(t.Context(), write("[security]\napparmor_required = true\n"), f, plan.Options{Dirs: dirs})
			if err != nil {
				t.Fatal(err)
			}

			limits := map[string]bool{
				"doctor":        checks["cgroups"] == doctor.Fail,
				"check --host":  ph.Cgroups != "",
				"run (refused)": errors.Is(job.Refused(), host.ErrCannotEnforce),
			}
			for who, says := range limits {
				if says != tc.noLimits {
					t.Errorf("limits: %s says the host cannot enforce them: %v, want %v (cgroup facts %+v)", who, says, tc.noLimits, f.Cgroup)
				}
			}
			aa := map[string]bool{
				"doctor":                          checks["AppArmor"] == doctor.Warn,
				"check --host":                    !ph.AppArmor,
				"run (apparmor_required refused)": errors.Is(required.Refused(), apparmor.ErrNotEnabled),
				"run (no profile)":                job.AppArmor == nil,
			}
			for who, says := range aa {
				if says != tc.noAppArmor {
					t.Errorf("AppArmor: %s says the host has none: %v, want %v (facts %+v)", who, says, tc.noAppArmor, f.AppArmor)
				}
			}
		})
	}
}
