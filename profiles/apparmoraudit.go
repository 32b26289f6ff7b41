package profiles

import (
	"strconv"
	"strings"
)

// An AppArmor record (AUDIT_AVC) of the kernel's, as the audit socket
// carries it: `apparmor="DENIED" operation="mknod" profile="safe-run-web"
// name="/dev/evil" pid=4242 comm="sh" requested_mask="c" denied_mask="c"`.

// appArmorDenial is what one record of profile's (or of a child profile
// of it, "profile//hat") says; ok is false for another profile's, or a
// record that denies nothing.
type appArmorDenial struct {
	key  string // "apparmor denied mknod /dev/evil": what the rate limit counts
	pid  int    // on the host
	comm string
}

func parseAppArmor(text, profile string) (appArmorDenial, bool) {
	f := auditFields(text)
	unquote := func(k string) string { return strings.Trim(f.get(k), `"`) }
	p := unquote("profile")
	if profile == "" || p != profile && !strings.HasPrefix(p, profile+"//") {
		return appArmorDenial{}, false
	}
	var verb string
	switch unquote("apparmor") {
	case "DENIED":
		verb = "apparmor denied"
	case "ALLOWED": // complain mode: what enforce mode would deny
		verb = "apparmor would deny (complain mode)"
	default: // AUDIT, STATUS, KILL...: no denial of the service's
		return appArmorDenial{}, false
	}
	what := unquote("name")
	if what == "" && f.get("family") != "" {
		what = unquote("family") + " " + unquote("sock_type") + " socket"
	}
	key := verb + " " + unquote("operation")
	if what != "" {
		key += " " + what
	}
	pid, _ := strconv.Atoi(f.get("pid"))
	return appArmorDenial{key: key, pid: pid, comm: unquote("comm")}, true
}
