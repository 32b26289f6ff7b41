package policy

import (
	"path/filepath"
	"strings"
)

// engineSockets are the control sockets of container engines: whoever can
// write to one can start a privileged container, which is root on the host.
var engineSockets = []string{
	"docker.sock", "containerd.sock", "podman.sock", "crio.sock",
	"dockershim.sock", "cri-dockerd.sock", "buildkitd.sock",
}

// sensitiveTrees may not be bound, nor anything below them.
var sensitiveTrees = []struct{ path, why string }{
	{"/proc", "the host's processes and kernel knobs"},
	{"/sys", "the host's kernel and device configuration"},
	{"/dev", "the host's devices"},
	{"/boot", "the host's kernel and boot loader"},
	{"/root", "root's home directory"},
	{"/run", "the host's runtime state and daemon sockets"},
	{"/var/run", "the host's runtime state and daemon sockets"},
	{"/var/lib/docker", "docker's images, containers and volumes"},
	{"/var/lib/containerd", "containerd's images and containers"},
	{"/var/lib/containers", "podman's images and containers"},
	{"/var/lib/kubelet", "the kubelet's pods and credentials"},
	{"/etc/shadow", "the host's password hashes"},
	{"/etc/gshadow", "the host's group password hashes"},
	{"/etc/sudoers", "who may become root"},
	{"/etc/sudoers.d", "who may become root"},
	{"/etc/ssh", "the host's SSH keys"},
	{"/etc/docker", "docker's daemon configuration and TLS keys"},
	{"/etc/kubernetes", "cluster credentials"},
	// safe-run's own: what its start trusts (ids/ decides which
	// host ids a service's root is), every service's volumes and
	// events. /run/safe-run is under /run.
	{"/var/lib/safe-run", "safe-run's own data: the services' id ranges, volumes and event journals"},
	// The seed's advice is never to mount /etc. Refused here is what in
	// it controls the host or holds its secrets; the rest is a finding
	// (HostConfigPath).
	{"/etc/passwd", "the host's users (writable, whoever edits it is root)"},
	{"/etc/group", "the host's groups (writable, whoever edits it joins sudo or docker)"},
	{"/etc/subuid", "the id ranges of user namespaces, safe-run's among them"},
	{"/etc/subgid", "the id ranges of user namespaces, safe-run's among them"},
	{"/etc/crontab", "what the host runs as root on a schedule"},
	{"/etc/anacrontab", "what the host runs as root on a schedule"},
	{"/etc/cron.d", "what the host runs as root on a schedule"},
	{"/etc/cron.hourly", "what the host runs as root on a schedule"},
	{"/etc/cron.daily", "what the host runs as root on a schedule"},
	{"/etc/cron.weekly", "what the host runs as root on a schedule"},
	{"/etc/cron.monthly", "what the host runs as root on a schedule"},
	{"/etc/systemd", "the host's services, started as root"},
	{"/etc/init.d", "the host's services, started as root"},
	{"/etc/pam.d", "how users log in to the host"},
	{"/etc/security", "how users log in to the host"},
	{"/etc/ld.so.preload", "libraries every program of the host loads"},
	{"/etc/ld.so.conf", "where every program of the host finds its libraries"},
	{"/etc/ld.so.conf.d", "where every program of the host finds its libraries"},
	{"/etc/profile", "what every login shell of the host runs"},
	{"/etc/profile.d", "what every login shell of the host runs"},
	{"/etc/environment", "the environment of every login of the host"},
	{"/etc/sysctl.conf", "the host's kernel settings"},
	{"/etc/sysctl.d", "the host's kernel settings"},
	{"/etc/modprobe.d", "which kernel modules the host loads, and how"},
	{"/etc/modules-load.d", "which kernel modules the host loads, and how"},
	{"/etc/polkit-1", "who may administer the host"},
	{"/etc/apt", "where the host's packages come from, and whose signatures it trusts"},
	{"/etc/ssl/private", "the host's TLS private keys"},
	{"/etc/letsencrypt", "the host's TLS private keys"},
	{"/etc/containers", "podman's configuration"},
	{"/etc/containerd", "containerd's configuration"},
}

// hostConfigFine are the files below /etc that services commonly read and
// that tell nothing about the host nor control it: time zone and CA
// certificates. (/etc/safe-run is not among them: it holds every
// service's manifest and, by the README's example, their secrets.)
var hostConfigFine = []string{
	"/etc/localtime", "/etc/timezone", "/etc/ssl/certs", "/etc/ca-certificates",
	"/etc/pki/ca-trust", "/etc/pki/tls/certs",
}

// HostConfigPath reports whether p is a host configuration file or
// directory below /etc that SensitivePath does not refuse: the seed's
// advice is never to mount /etc, so check and audit say it, without
// refusing what a service may need (its own configuration kept there).
func HostConfigPath(p string) bool {
	p = filepath.Clean(p)
	if !strings.HasPrefix(p, "/etc/") {
		return false
	}
	if _, refused := SensitivePath(p); refused {
		return false
	}
	for _, f := range hostConfigFine {
		if p == f || strings.HasPrefix(p, f+"/") {
			return false
		}
	}
	return true
}

// sensitiveDirs may not be bound themselves; paths below them may.
var sensitiveDirs = []struct{ path, why string }{
	{"/", "the whole host filesystem"},
	{"/etc", "the host's configuration"},
	{"/home", "every user's home directory"},
	{"/var", "the host's state, daemon sockets and container storage"},
	{"/var/lib", "the host's daemon state"},
	{"/usr", "the host's programs"},
}

// homeSecrets are directories in a home directory that hold credentials.
var homeSecrets = []string{".ssh", ".gnupg", ".docker", ".kube", ".aws", ".config", ".local/share/keyrings", ".password-store"}

// SensitivePath reports whether binding the host path p into a container
// would expose something that amounts to control of the host, and why.
// p must be absolute; the launcher calls it again on the path with every
// symlink resolved.
func SensitivePath(p string) (why string, sensitive bool) {
	p = filepath.Clean(p)
	base := filepath.Base(p)
	for _, s := range engineSockets {
		if base == s {
			return "a container engine socket is root on the host", true
		}
	}
	for _, d := range sensitiveDirs {
		if p == d.path {
			return d.why, true
		}
	}
	for _, t := range sensitiveTrees {
		if p == t.path || strings.HasPrefix(p, t.path+"/") {
			return t.why, true
		}
	}
	for _, t := range sensitiveTrees {
		if strings.HasPrefix(t.path, p+"/") {
			return "it contains " + t.path + " (" + t.why + ")", true
		}
	}
	// /home/NAME is a home directory; below it, only credential stores.
	if rest, ok := strings.CutPrefix(p, "/home/"); ok {
		user, sub, _ := strings.Cut(rest, "/")
		if sub == "" {
			return "a user's home directory, with their SSH keys and credentials", true
		}
		// Rootless safe-run's data ($XDG_DATA_HOME/safe-run), as
		// /var/lib/safe-run is root's.
		if d := ".local/share/safe-run"; sub == d || strings.HasPrefix(sub, d+"/") {
			return user + "'s safe-run data: the services' volumes and event journals", true
		}
		for _, h := range homeSecrets {
			if sub == h || strings.HasPrefix(sub, h+"/") {
				return user + "'s credentials", true
			}
			// A parent of a store exposes it as much as the store
			// itself, as /var does /var/lib/docker.
			if strings.HasPrefix(h, sub+"/") {
				return "it contains " + user + "'s " + h + " (" + user + "'s credentials)", true
			}
		}
	}
	return "", false
}
