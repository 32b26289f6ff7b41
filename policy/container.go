package policy

import (
	"fmt"
	"slices"
	"strings"

	"github.com/safe-run/safe-run/manifest"
)

// Container is how docker runs a container, reduced to what the rules judge.
// safe-run import fills it from a docker run line or a compose service, and
// safe-run audit from the engine's container inspect, so that both judge
// docker's settings by the same rules as a manifest. Capability names are
// as docker writes them (NET_ADMIN, CAP_NET_ADMIN, ALL).
type Container struct {
	Name           string
	Image          string // as the user wrote it: nginx:1.25, nginx@sha256:...
	User           string // "" means the image's user, root unless the image says otherwise
	Env            []string
	Privileged     bool
	CapAdd         []string
	CapDrop        []string
	Devices        []string // host device paths
	Mounts         []ContainerMount
	NetworkMode    string // "" or "default" (the default bridge), bridge, host, none, container:ID, or a network name
	Ports          []ContainerPort
	PidMode        string
	IpcMode        string
	UTSMode        string
	UsernsMode     string
	ReadonlyRootfs bool
	Memory         int64   // bytes; 0: no limit
	CPUs           float64 // 0: no limit
	PidsLimit      int64   // 0 or negative: no limit
	SecurityOpt    []string
	// AppArmorProfile is the profile the engine applied, as inspect shows it;
	// "" when not known (import) or when the host has no AppArmor.
	AppArmorProfile string
}

// ContainerMount is one bind, volume or tmpfs of a container.
type ContainerMount struct {
	Type     string // bind | volume | tmpfs
	Source   string // host path (bind) or volume name
	Target   string
	ReadOnly bool
}

// ContainerPort is one published port as docker has it.
type ContainerPort struct {
	HostIP        string // "" is docker's default: every address (0.0.0.0 and ::)
	HostPort      string // "" or "0": a random port
	ContainerPort string // a number, or a range as docker writes it
	Proto         string // tcp | udp | sctp
}

// EveryAddress reports whether the port is published on every address of
// the host.
func (p ContainerPort) EveryAddress() bool {
	return p.HostIP == "" || p.HostIP == "0.0.0.0" || p.HostIP == "::" || p.HostIP == "[::]"
}

// SecurityOption returns the value of docker's --security-opt key (which
// docker spells key=value or key:value), and whether it is set.
func (c *Container) SecurityOption(key string) (string, bool) {
	for _, o := range c.SecurityOpt {
		k, v, found := strings.Cut(o, "=")
		if !found {
			k, v, found = strings.Cut(o, ":")
		}
		if k == key {
			if !found {
				v = "true" // no-new-privileges without a value
			}
			return v, true
		}
	}
	return "", false
}

// NoNewPrivileges reports whether --security-opt no-new-privileges is on.
func (c *Container) NoNewPrivileges() bool {
	v, ok := c.SecurityOption("no-new-privileges")
	return ok && v != "false"
}

// capName is a docker capability name in manifest spelling (CAP_X), or ALL.
func capName(name string) string {
	n := strings.ToUpper(strings.TrimSpace(name))
	if n == "ALL" {
		return n
	}
	return "CAP_" + strings.TrimPrefix(n, "CAP_")
}

// DropsAll reports whether --cap-drop ALL is given.
func (c *Container) DropsAll() bool {
	return slices.ContainsFunc(c.CapDrop, func(s string) bool { return capName(s) == "ALL" })
}

// ContainerFindings evaluates the rules against a docker container. Paths
// name the docker run flag concerned, which reads the same whether the
// container came from a command line or from the engine.
func ContainerFindings(c *Container) []Finding {
	var out []Finding
	add := func(r *Rule, path, format string, args ...any) {
		out = append(out, Finding{Rule: r, Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	if c.Privileged {
		add(rulePrivileged, "--privileged", "every capability, every host device, no seccomp filter and no AppArmor profile")
		// What it grants, each by the rule that judges it alone: a
		// privileged container must never score better than one with
		// --cap-add SYS_ADMIN or --pid host (found by a black-box
		// probe: 10/100 against 0 and 2).
		for _, g := range []struct {
			rule *Rule
			msg  string
		}{
			{ruleDangerousCap, "every capability, " + strings.Join(dangerousShort(), ", ") + " among them"},
			{ruleHostDevice, "every device of the host is reachable from the container"},
			{ruleSensitiveMount, "/sys and /proc/sys are mounted writable, /proc unmasked: the host's kernel and device configuration"},
			{ruleSeccompUnconfined, "no seccomp filter: every system call is allowed"},
			{ruleAppArmorUnconfined, "no AppArmor profile confines the container"},
		} {
			out = append(out, Finding{Rule: g.rule, Path: "--privileged", Msg: g.msg, Fix: rulePrivileged.Fix})
		}
	}
	for _, a := range c.CapAdd {
		switch n := capName(a); {
		case n == "ALL":
			add(ruleDangerousCap, "--cap-add", "ALL adds every capability, %s among them", strings.Join(dangerousShort(), ", "))
		default:
			if why, bad := dangerousCapabilities[manifest.Capability(n)]; bad {
				add(ruleDangerousCap, "--cap-add", "%s: %s", strings.TrimPrefix(n, "CAP_"), why)
			}
		}
	}
	if !c.Privileged && !c.DropsAll() {
		add(ruleDefaultCaps, "--cap-drop", "docker's 14 default capabilities (CHOWN, DAC_OVERRIDE, SETUID, NET_RAW, ...) are kept")
	}
	for _, d := range c.Devices {
		add(ruleHostDevice, "--device", "%s is reachable from the container", d)
	}
	for _, m := range c.Mounts {
		if m.Type != manifest.MountBind {
			continue
		}
		if why, bad := SensitivePath(m.Source); bad {
			add(ruleSensitiveMount, "--volume", "%s is mounted at %s: %s", m.Source, m.Target, why)
		} else if HostConfigPath(m.Source) {
			add(ruleHostConfigBind, "--volume", "%s is mounted at %s: the host's configuration, shown to the container", m.Source, m.Target)
		}
		if !m.ReadOnly {
			add(ruleWritableBind, "--volume", "%s is writable from the container", m.Source)
		}
	}
	switch c.NetworkMode {
	case "host":
		add(ruleHostNetwork, "--network", "the host network namespace is shared")
	case "", "default", "bridge":
		add(ruleDefaultBridge, "--network", "every container on the default bridge can reach this one")
	}
	if c.NetworkMode != "host" {
		for _, p := range c.Ports {
			if p.EveryAddress() {
				host := p.HostIP
				if host == "" {
					host = "0.0.0.0"
				}
				add(rulePublishAll, "--publish", "container port %s/%s is published on %s, every address of the host, and docker's DNAT passes by the host's INPUT firewall", p.ContainerPort, p.Proto, host)
			}
		}
	}
	for _, ns := range []struct {
		mode, flag, name string
		rule             *Rule
	}{
		{c.PidMode, "--pid", "PID", ruleHostPID},
		{c.IpcMode, "--ipc", "IPC", ruleHostIPC},
		{c.UTSMode, "--uts", "UTS", ruleHostUTS},
		{c.UsernsMode, "--userns", "user", ruleHostUserns},
	} {
		if ns.mode == "host" {
			add(ns.rule, ns.flag, "the host %s namespace is shared", ns.name)
		}
	}
	if !c.NoNewPrivileges() {
		add(ruleNewPrivileges, "--security-opt", "no no-new-privileges: setuid binaries and file capabilities can raise privileges")
	}
	if !c.Privileged { // which has its own findings of these
		if v, _ := c.SecurityOption("seccomp"); v == "unconfined" {
			add(ruleSeccompUnconfined, "--security-opt", "seccomp=unconfined: every system call is allowed")
		}
		if v, _ := c.SecurityOption("apparmor"); v == "unconfined" || c.AppArmorProfile == "unconfined" {
			add(ruleAppArmorUnconfined, "--security-opt", "apparmor=unconfined: no AppArmor profile confines the container")
		}
	}
	if !c.ReadonlyRootfs {
		add(ruleWritableRootfs, "--read-only", "the container can change its own binaries and configuration")
	}
	if c.Memory == 0 {
		add(ruleMemory, "--memory", "no -m: the container may use all of the host's memory")
	}
	if c.CPUs == 0 {
		add(ruleCPU, "--cpus", "no --cpus: the container may use every CPU of the host")
	}
	switch {
	case c.PidsLimit <= 0:
		add(rulePids, "--pids-limit", "no --pids-limit: a fork bomb takes the host's process table")
	case c.PidsLimit > 4096:
		add(rulePids, "--pids-limit", "%d processes is enough for a fork bomb to hurt the host", c.PidsLimit)
	}
	seen := map[string]bool{}
	for _, kv := range c.Env {
		k, _, _ := strings.Cut(kv, "=")
		if SecretLooking(k) && !seen[k] {
			seen[k] = true
			add(ruleSecretEnv, "--env", "%s looks like a secret; environment variables leak into logs, docker inspect and child processes", k)
		}
	}
	switch u, _, _ := strings.Cut(c.User, ":"); u {
	case "0", "root":
		add(ruleRootUser, "--user", "the container runs as root")
	case "":
		add(ruleRootUser, "--user", "no --user: the container runs as the image's user, root unless the image says otherwise")
	}
	if c.Image != "" && !Pinned(c.Image) {
		add(ruleUnpinnedImage, "IMAGE", "%q is not pinned by digest: whoever can push that tag decides what runs", c.Image)
	}
	return out
}

// dangerousShort lists the dangerous capabilities without CAP_, sorted.
func dangerousShort() []string {
	var out []string
	for c := range dangerousCapabilities {
		out = append(out, c.Short())
	}
	slices.Sort(out)
	return out
}
