package policy

import (
	"fmt"
	"net/netip"

	"github.com/safe-run/safe-run/manifest"
)

// Host is what the host safe-run runs on can enforce. The launcher probes
// it (plan.PolicyHost, from host.Probe); the rules only read it, so they stay pure and
// testable on any machine.
type Host struct {
	AppArmor bool // the kernel has AppArmor enabled
	// NoSecurityfs: AppArmor is in the kernel, but securityfs, its
	// interface, is not mounted (AppArmor is false then).
	NoSecurityfs bool
	Cgroups      string // "" when safe-run can apply memory, cpu and pids limits; otherwise what is missing
	Userns       string // "" when the service can get its user namespace; otherwise what is missing
	// NoLandlock: the kernel has no Landlock (ABI 0).
	NoLandlock bool
	// LandlockABI is the kernel's Landlock ABI; 0 when it has none or
	// when not probed.
	LandlockABI int
	// RealPaths holds each bind source's path with its symlinks
	// resolved, as the launcher will find it; a source missing here
	// was not found.
	RealPaths map[string]string
	// Addresses are the host's own addresses, where a port may be
	// published; nil when not probed.
	Addresses []netip.Addr
}

// HostFindings evaluates the host rules: facts about this host that weaken
// a service whatever its manifest says.
func HostFindings(s *manifest.Service, h Host) []Finding {
	var out []Finding
	add := func(r *Rule, path, format string, args ...any) {
		out = append(out, Finding{
			Rule: r, Path: path, Line: s.Line(path),
			Msg:      fmt.Sprintf(format, args...),
			Accepted: r.Allow != "" && s.Allows(r.Allow),
		})
	}
	if !h.AppArmor && s.Security.AppArmor != "unconfined" {
		why := "this kernel has no AppArmor"
		if h.NoSecurityfs {
			why = "securityfs is not mounted, so AppArmor, which this kernel has, cannot be used (mount -t securityfs securityfs /sys/kernel/security)"
		}
		if s.Security.AppArmorRequired {
			add(ruleHostNoAppArmor, "security.apparmor_required", "%s, and the manifest requires it: safe-run will refuse to start", why)
		} else {
			add(ruleHostNoAppArmor, "security.apparmor", "%s: the service runs without its profile (apparmor_required = true refuses to start instead)", why)
		}
	}
	if h.NoLandlock && s.Security.Landlock != "off" {
		if s.Security.LandlockRequired {
			add(ruleHostNoLandlock, "security.landlock_required", "this kernel has no Landlock, and the manifest requires it: safe-run will refuse to start")
		} else {
			add(ruleHostNoLandlock, "security.landlock", "this kernel has no Landlock: the service runs without its ruleset (landlock_required = true refuses to start instead)")
		}
	}
	if abi := h.LandlockABI; abi > 0 && abi < 6 && s.Security.Landlock != "off" {
		what := "file system only: TCP bind and connect are not restricted, nor signals and abstract sockets"
		if abi >= 4 {
			what = "file system and TCP: signals and abstract unix sockets outside the service are not scoped"
		}
		add(ruleHostLandlockPartial, "security.landlock", "this kernel's Landlock is ABI %d, %s", abi, what)
	}
	for i, m := range s.Mounts {
		real, ok := h.RealPaths[m.Source]
		if m.Type != manifest.MountBind || !ok || real == m.Source {
			continue
		}
		if _, direct := SensitivePath(m.Source); direct {
			continue // Findings has it already
		}
		if why, bad := SensitivePath(real); bad {
			add(ruleSensitiveMount, fmt.Sprintf("mounts[%d].source", i), "%s is refused (through a symlink, it is %s): %s", m.Source, real, why)
		}
	}
	if h.Addresses != nil {
		for i, p := range s.Network.Published {
			if !p.OnHost(h.Addresses) {
				add(ruleHostNoAddress, fmt.Sprintf("network.ports[%d]", i), "%s", manifest.HostAddressMissing(p))
			}
		}
	}
	if h.Cgroups != "" {
		add(ruleHostNoCgroups, "resources", "%s", h.Cgroups)
	}
	if h.Userns != "" {
		add(ruleHostNoUserns, "", "%s", h.Userns)
	}
	return out
}
