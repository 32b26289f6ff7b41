package ops

import (
	"os"
	"strings"
)

// SystemdUnit is the systemd unit this process runs under ("web.service"),
// or "" when systemd did not start it. systemd sets INVOCATION_ID in the
// environment of every process of a unit it starts (systemd.exec(5)), and
// keeps each unit's processes in a cgroup named after it, which
// /proc/self/cgroup shows: a process merely inheriting a cgroup named
// *.service from elsewhere has no INVOCATION_ID.
func SystemdUnit() string {
	if os.Getenv("INVOCATION_ID") == "" {
		return ""
	}
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return ""
	}
	return unitFromCgroup(string(data))
}

// unitFromCgroup reads the unit from /proc/self/cgroup's text: the last
// component of the path named UNIT.service or UNIT.scope, in the unified
// hierarchy ("0::/system.slice/web.service/supervisor"), or where there
// is none (a cgroup v1 host), in systemd's own ("1:name=systemd:/...").
// The unit's cgroup may have cgroups of its own below (Delegate=yes).
func unitFromCgroup(text string) string {
	var unified, named string
	for _, line := range strings.Split(text, "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		switch {
		case f[0] == "0" && f[1] == "":
			unified = f[2]
		case f[1] == "name=systemd":
			named = f[2]
		}
	}
	for _, p := range []string{unified, named} {
		parts := strings.Split(p, "/")
		for i := len(parts) - 1; i >= 0; i-- {
			if strings.HasSuffix(parts[i], ".service") || strings.HasSuffix(parts[i], ".scope") {
				return parts[i]
			}
		}
	}
	return ""
}
