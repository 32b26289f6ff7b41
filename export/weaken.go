package export

import (
	"github.com/safe-run/safe-run/manifest"
	"github.com/safe-run/safe-run/plan"
)

// What the targets confine less than safe-run does. Each is a warning of
// the export (Output.Warnings): written at the top of the output as a
// comment, and repeated on standard error by the export command, as its
// help promises. Notes, in the output only, are for what changes without
// weakening anything (where a file goes, what to create first).

// landlockWarning: no target applies safe-run's Landlock ruleset (the
// systemd unit runs safe-run itself, which does).
func landlockWarning(s *manifest.Service, target string) []string {
	if s.Security.Landlock == "off" {
		return nil
	}
	return []string{"Landlock: " + target + " has no Landlock ruleset; safe-run's (writes only to the declared writable places, nothing run from them, TCP bind only to the declared ports, connect only where egress names ports, no abstract sockets or signals outside the service) is not carried over"}
}

// dockerWarnings are what docker and compose confine less than safe-run,
// whatever the network: the user namespace, Landlock, binds, secrets,
// and the security modules.
func dockerWarnings(p *plan.Job, target string, seccompMissing bool) []string {
	svc := p.Service
	var w []string
	if runsAsRoot(p) {
		w = append(w, rootWarning)
	} else {
		w = append(w, "user namespace: safe-run runs the container in a user namespace of its own, "+target+" only where the daemon runs with userns-remap (dockerd --userns-remap=default, or \"userns-remap\" in daemon.json); without it the container's users are the host's users of the same ids (`safe-run audit` checks it)")
	}
	w = append(w, landlockWarning(svc, target)...)
	if seccompMissing {
		w = append(w, "seccomp: the spec holds no profile, so docker applies its own default one, not the manifest's")
	}
	if svc.Security.AppArmorRequired {
		w = append(w, "AppArmor: apparmor_required = true: safe-run refuses to start where the kernel has no AppArmor; docker starts the container without it")
	}
	if hasBinds(svc) {
		w = append(w, "binds: docker mounts them recursively (mounts under a source show in the container) and without nosuid,nodev; safe-run does neither")
	}
	if len(svc.Secrets) > 0 {
		w = append(w, "secrets: bound read-only from their host files, with the files' own owner and mode; safe-run copies them to a tmpfs, 0400, owned by the service's user")
	}
	return w
}
