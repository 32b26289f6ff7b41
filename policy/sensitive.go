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
