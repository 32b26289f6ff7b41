package policy

import (
	"fmt"
	"strings"
)

// Daemon is what safe-run audit found out about a docker engine and the
// host it runs on: the daemon's own exposure, which no container setting
// can make up for.
type Daemon struct {
	Endpoint    string // how audit reached it: unix:///var/run/docker.sock
	Version     string
	Rootless    bool
	UsernsRemap bool
	AppArmor    bool // the engine's host has AppArmor
	Seccomp     bool // the engine applies seccomp profiles
	Listeners   []Listener
	Socket      *Socket // nil when the engine was reached over TCP
}

// Listener is a TCP address the daemon accepts API requests on.
type Listener struct {
	Addr       string // host:port
	TLS        bool   // the port speaks TLS
	ClientAuth bool   // ... and refuses clients without a trusted certificate
}

// Socket is the daemon's unix socket as the file system shows it.
type Socket struct {
	Path    string
	Mode    uint32 // permission bits
	Owner   string
	Group   string
	Members []string // users in Group (listed in /etc/group, or with it as primary group)
}

// DaemonFindings evaluates the daemon rules.
func DaemonFindings(d *Daemon) []Finding {
	var out []Finding
	add := func(r *Rule, path, format string, args ...any) {
		out = append(out, Finding{Rule: r, Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	for _, l := range d.Listeners {
		switch {
		case !l.TLS:
			add(ruleDaemonTCP, "tcp://"+l.Addr, "the API answers plain HTTP: whoever reaches %s is root on the host", l.Addr)
		case !l.ClientAuth:
			add(ruleDaemonTCP, "tcp://"+l.Addr, "TLS without client certificates (no --tlsverify): whoever reaches %s is root on the host", l.Addr)
		}
	}
	if s := d.Socket; s != nil {
		// Connecting to a unix socket needs write permission on it.
		if s.Mode&0o002 != 0 {
			add(ruleDaemonSocketMode, s.Path, "mode %04o: every local user can connect, and so is root on the host", s.Mode)
		}
		if len(s.Members) > 0 && s.Mode&0o020 != 0 {
			add(ruleDockerGroup, s.Path, "group %s (socket mode %04o): %s", s.Group, s.Mode, strings.Join(s.Members, ", "))
		}
	}
	if !d.Rootless {
		add(ruleDaemonRootful, "dockerd", "the daemon runs as root: a runtime escape is root on the host")
		if !d.UsernsRemap {
			add(ruleDaemonNoUserns, "dockerd", "no userns-remap: uid 0 in a container is uid 0 on the host")
		}
	}
	if !d.Seccomp {
		add(ruleSeccompUnconfined, "dockerd", "the engine applies no seccomp profile: every container may make every system call")
	}
	if !d.AppArmor {
		add(ruleHostNoAppArmor, "dockerd", "the engine's kernel has no AppArmor: no container is confined by a profile")
	}
	return out
}
