package profiles

import "testing"

func TestParseAppArmor(t *testing.T) {
	for _, tc := range []struct {
		name, text, want string
		pid              int
	}{
		{"a denied mknod", `apparmor="DENIED" operation="mknod" class="file" profile="safe-run-web" name="/dev/evil" pid=4242 comm="sh" requested_mask="c" denied_mask="c" fsuid=1073872896 ouid=1073872896`,
			"apparmor denied mknod /dev/evil", 4242},
		{"a socket", `apparmor="DENIED" operation="create" class="net" profile="safe-run-web" pid=7 comm="attempt" family="inet" sock_type="raw" protocol=1 requested_mask="create" denied_mask="create"`,
			"apparmor denied create inet raw socket", 7},
		{"a mount", `apparmor="DENIED" operation="mount" class="mount" info="failed flags match" error=-13 profile="safe-run-web" name="/tmp/" pid=8 comm="attempt" fstype="tmpfs" srcname="none"`,
			"apparmor denied mount /tmp/", 8},
		{"complain mode", `apparmor="ALLOWED" operation="open" profile="safe-run-web" name="/etc/shadow" pid=9 comm="cat" requested_mask="r" denied_mask="r"`,
			"apparmor would deny (complain mode) open /etc/shadow", 9},
		{"a child profile", `apparmor="DENIED" operation="open" profile="safe-run-web//null-/bin/x" name="/etc/shadow" pid=9 comm="x"`,
			"apparmor denied open /etc/shadow", 9},
		{"another service's", `apparmor="DENIED" operation="mknod" profile="safe-run-webx" name="/dev/evil" pid=1 comm="sh"`, "", 0},
		{"a profile load", `apparmor="STATUS" operation="profile_load" profile="unconfined" name="safe-run-web" pid=1 comm="apparmor_parser"`, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, ok := parseAppArmor(tc.text, "safe-run-web")
			if ok != (tc.want != "") || d.key != tc.want || d.pid != tc.pid {
				t.Errorf("parseAppArmor = %+v, %v; want %q pid %d", d, ok, tc.want, tc.pid)
			}
		})
	}
	if _, ok := parseAppArmor(`apparmor="DENIED" operation="mknod" profile="safe-run-web" name="/dev/evil" pid=1`, ""); ok {
		t.Error("a record reported for a service without a profile")
	}
}
