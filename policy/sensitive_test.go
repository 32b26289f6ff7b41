package policy

import "testing"

func TestSensitivePath(t *testing.T) {
	const (
		home  = "a user's home directory, with their SSH keys and credentials"
		state = "the host's runtime state and daemon sockets"
		sock  = "a container engine socket is root on the host"
	)
	tests := []struct {
		path string
		why  string // "" when the path may be bound
	}{
		// The host's root and configuration: the directories themselves,
		// not every file below them.
		{"/", "the whole host filesystem"},
		{"/etc", "the host's configuration"},
		{"/etc/", "the host's configuration"},
		{"/etc/app", ""},
		{"/etc/app/config.toml", ""},
		{"/etc/shadow", "the host's password hashes"},
		{"/etc/ssh/ssh_host_ed25519_key", "the host's SSH keys"},
		{"/etc/sudoers.d/x", "who may become root"},
		{"/etc/docker/daemon.json", "docker's daemon configuration and TLS keys"},
		{"/etc/kubernetes/admin.conf", "cluster credentials"},
		{"/srv/../etc", "the host's configuration"},
		// What in /etc controls the host or holds its secrets (found by
		// a black-box probe: /etc/passwd and /etc/cron.d passed).
		{"/etc/passwd", "the host's users (writable, whoever edits it is root)"},
		{"/etc/group", "the host's groups (writable, whoever edits it joins sudo or docker)"},
		{"/etc/cron.d", "what the host runs as root on a schedule"},
		{"/etc/cron.d/backup", "what the host runs as root on a schedule"},
		{"/etc/crontab", "what the host runs as root on a schedule"},
		{"/etc/systemd/system", "the host's services, started as root"},
		{"/etc/ld.so.preload", "libraries every program of the host loads"},
		{"/etc/subuid", "the id ranges of user namespaces, safe-run's among them"},
		{"/etc/ssl/private/web.key", "the host's TLS private keys"},
		{"/etc/ssl", "it contains /etc/ssl/private (the host's TLS private keys)"},
		{"/etc/ssl/certs", ""},
		{"/etc/localtime", ""},
		{"/etc/safe-run/secrets/db", ""},
		// safe-run's own data, as its state under /run is (found by a
		// black-box probe: a container read the ids and the events).
		{"/var/lib/safe-run", "safe-run's own data: the services' id ranges, volumes and event journals"},
		{"/var/lib/safe-run/ids/services/web", "safe-run's own data: the services' id ranges, volumes and event journals"},
		{"/var/lib/safe-run/volumes/data", "safe-run's own data: the services' id ranges, volumes and event journals"},
		{"/var/lib/safe-runner", ""},
		{"/run/safe-run", state},
		{"/home/alice/.local/share/safe-run", "alice's safe-run data: the services' volumes and event journals"},
		{"/home/alice/.local/share/safe-run/volumes/x", "alice's safe-run data: the services' volumes and event journals"},
		// Kernel interfaces: the whole tree.
		{"/proc", "the host's processes and kernel knobs"},
		{"/proc/1", "the host's processes and kernel knobs"},
		{"/procfs", ""},
		{"/sys/fs/cgroup", "the host's kernel and device configuration"},
		{"/dev/sda", "the host's devices"},
		{"/boot/vmlinuz", "the host's kernel and boot loader"},
		// State and sockets.
		{"/var", "the host's state, daemon sockets and container storage"},
		{"/var/lib", "the host's daemon state"},
		{"/var/lib/mysql", ""},
		{"/var/lib/docker", "docker's images, containers and volumes"},
		{"/var/lib/docker/x", "docker's images, containers and volumes"},
		{"/var/lib/containerd/io.containerd.content.v1.content", "containerd's images and containers"},
		{"/var/lib/containers/storage", "podman's images and containers"},
		{"/var/lib/kubelet/pods", "the kubelet's pods and credentials"},
		{"/var/run", state},
		{"/var/run/docker.sock", sock},
		{"/run", state},
		{"/run/foo", state},
		{"/run/docker.sock", sock},
		{"/run/containerd/containerd.sock", sock},
		{"/run/user/1000/podman/podman.sock", sock},
		{"/var/run/crio/crio.sock", sock},
		{"/srv/docker.sock", sock},
		{"/srv/docker.sock.d", ""},
		{"/var/log", ""},
		// Home directories: the directories and credential stores, not
		// a project below them.
		{"/home", "every user's home directory"},
		{"/home/alice", home},
		{"/home/alice/", home},
		{"/home/alice/project", ""},
		{"/home/alice/project/.ssh", ""},
		{"/home/alice/.ssh", "alice's credentials"},
		{"/home/alice/.ssh/id_ed25519", "alice's credentials"},
		{"/home/alice/.kube/config", "alice's credentials"},
		{"/home/alice/.docker", "alice's credentials"},
		{"/home/alice/.local/share/keyrings", "alice's credentials"},
		{"/home/alice/.local", "it contains alice's .local/share/keyrings (alice's credentials)"},
		{"/home/alice/.local/share", "it contains alice's .local/share/keyrings (alice's credentials)"},
		{"/home/alice/.local/bin", ""},
		{"/root", "root's home directory"},
		{"/root/.ssh", "root's home directory"},
		// Programs and data.
		{"/usr", "the host's programs"},
		{"/usr/local", ""}, // read-only by default, and root-owned files stay root's to the mapped ids
		{"/usr/share/zoneinfo", ""},
		{"/srv", ""},
		{"/srv/data", ""},
		{"/opt/app", ""},
		{"/mnt/backup", ""},
	}
	for _, tc := range tests {
		why, bad := SensitivePath(tc.path)
		if bad != (tc.why != "") || why != tc.why {
			t.Errorf("SensitivePath(%q) = %q, %v; want %q", tc.path, why, bad, tc.why)
		}
	}
}

// TestHostConfigPath: the rest of /etc is a finding (SR042), not a
// refusal; what services commonly read there (time zone, CA
// certificates, safe-run's own directory) is neither.
func TestHostConfigPath(t *testing.T) {
	for p, want := range map[string]bool{
		"/etc/hosts": true, "/etc/nginx/nginx.conf": true, "/etc/app": true, "/etc/os-release": true,
		"/etc": false, "/etc/passwd": false, "/etc/shadow": false, // refused: SensitivePath
		"/etc/localtime": false, "/etc/timezone": false, "/etc/ssl/certs/ca-certificates.crt": false,
		"/etc/safe-run/secrets": true, "/srv/etc/hosts": false, "/etcetera": false,
	} {
		if got := HostConfigPath(p); got != want {
			t.Errorf("HostConfigPath(%q) = %v, want %v", p, got, want)
		}
	}
}
