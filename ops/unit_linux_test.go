package ops

import "testing"

func TestUnitFromCgroup(t *testing.T) {
	for _, tc := range []struct{ name, text, want string }{
		{"v2", "0::/system.slice/web.service\n", "web.service"},
		{"v2, delegated below the unit", "0::/system.slice/web.service/supervisor\n", "web.service"},
		{"v2, a template instance", "0::/system.slice/system-safe\\x2drun.slice/safe-run@web.service\n", "safe-run@web.service"},
		{"v2, a user's unit", "0::/user.slice/user-1000.slice/user@1000.service/app.slice/web.service\n", "web.service"},
		{"hybrid", "12:memory:/system.slice/web.service\n1:name=systemd:/system.slice/web.service\n0::/system.slice/web.service\n", "web.service"},
		{"v1 only", "4:pids:/system.slice/web.service\n1:name=systemd:/system.slice/web.service\n", "web.service"},
		{"a scope", "0::/user.slice/user-0.slice/session-3.scope\n", "session-3.scope"},
		{"no unit", "0::/\n", ""},
		{"the unified root, the unit in systemd's v1", "1:name=systemd:/system.slice/db.service\n0::/\n", "db.service"},
		{"garbage", "nonsense\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := unitFromCgroup(tc.text); got != tc.want {
				t.Errorf("unitFromCgroup(%q) = %q, want %q", tc.text, got, tc.want)
			}
		})
	}
	// Without systemd's INVOCATION_ID, a cgroup named like a unit is no
	// unit's.
	t.Setenv("INVOCATION_ID", "")
	if got := SystemdUnit(); got != "" {
		t.Errorf("SystemdUnit() without INVOCATION_ID = %q", got)
	}
}
