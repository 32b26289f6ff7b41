package profiles

import "testing"

// TestCheckLogged: the seccomp actions the kernel logs (host facts, the
// sysctl kernel.seccomp.actions_logged) decide whether denials can be
// shown and a recording made; the exact message is the contract.
func TestCheckLogged(t *testing.T) {
	all := []string{"kill_process", "kill_thread", "trap", "errno", "user_notif", "trace", "log"}
	for _, tc := range []struct {
		name      string
		logged    []string
		recording bool
		want      string
	}{
		{"default, shown", all, false, ""},
		{"default, recorded", all, true, ""},
		{"unreadable", nil, false, "the kernel's seccomp log settings (sysctl kernel.seccomp.actions_logged) cannot be read"},
		{"no errno", []string{"kill_process", "log"}, false,
			`the kernel does not log the seccomp action "errno" (sysctl kernel.seccomp.actions_logged="kill_process log"; add it: sysctl -w kernel.seccomp.actions_logged="kill_process log errno")`},
		{"no log, shown", []string{"errno"}, false, ""},
		{"no log, recorded", []string{"errno"}, true,
			`the kernel does not log the seccomp action "log" (sysctl kernel.seccomp.actions_logged="errno"; add it: sysctl -w kernel.seccomp.actions_logged="errno log")`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ""
			if err := checkLogged(tc.logged, tc.recording); err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Errorf("checkLogged(%q, %v) = %q\nwant %q", tc.logged, tc.recording, got, tc.want)
			}
		})
	}
}
