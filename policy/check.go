package policy

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	"github.com/safe-run/safe-run/manifest"
)

// Finding is one rule that a manifest trips.
type Finding struct {
	Rule     *Rule
	Path     string // manifest key path
	Line     int
	Msg      string
	Accepted bool // acknowledged in [insecure]
	// Fix, when set, replaces the rule's: what --privileged grants is
	// fixed by dropping --privileged, not by the rule's own flag.
	Fix string
}

// Refused reports whether the finding stops the service from starting.
func (f Finding) Refused() bool { return f.Rule.Always || (f.Rule.Allow != "" && !f.Accepted) }

// DangerousCapability says why c is refused unless [insecure] allows
// dangerous_capabilities, and whether it is.
func DangerousCapability(c manifest.Capability) (why string, dangerous bool) {
	why, dangerous = dangerousCapabilities[c]
	return why, dangerous
}

// dangerousCapabilities are refused unless [insecure] allows
// dangerous_capabilities: each is close to full control of the host or the
// kernel even from inside a user namespace.
var dangerousCapabilities = map[manifest.Capability]string{
	"CAP_SYS_ADMIN":       "mount, namespaces, BPF, and most of the kernel's admin interface",
	"CAP_SYS_MODULE":      "loads kernel modules",
	"CAP_SYS_PTRACE":      "traces and injects code into other processes",
	"CAP_SYS_RAWIO":       "raw I/O ports and device memory",
	"CAP_NET_ADMIN":       "reconfigures interfaces, routes and firewalls",
	"CAP_BPF":             "loads BPF programs into the kernel",
	"CAP_PERFMON":         "kernel performance monitoring, a side channel",
	"CAP_DAC_READ_SEARCH": "open_by_handle_at, the shocker escape",
	"CAP_SYS_BOOT":        "reboots the host or loads a new kernel",
	"CAP_MAC_ADMIN":       "reconfigures AppArmor/SELinux",
}

// Findings evaluates every rule against the manifest.
func Findings(s *manifest.Service) []Finding {
	var out []Finding
	add := func(r *Rule, path, format string, args ...any) {
		out = append(out, Finding{
			Rule: r, Path: path, Line: s.Line(path),
			Msg:      fmt.Sprintf(format, args...),
			Accepted: r.Allow != "" && s.Allows(r.Allow),
		})
	}
	if s.Resources.Memory == 0 {
		add(ruleMemory, "resources.memory", "missing: the service may use all of the host's memory")
	}
	if s.Resources.CPUs == 0 {
		add(ruleCPU, "resources.cpus", "missing: the service may use every CPU of the host")
	}
	if s.Resources.Pids > 4096 {
		add(rulePids, "resources.pids", "%d processes is enough for a fork bomb to hurt the host", s.Resources.Pids)
	}
	for i, c := range s.Security.Capabilities {
		if why, bad := dangerousCapabilities[c]; bad {
			add(ruleDangerousCap, fmt.Sprintf("security.capabilities[%d]", i), "%s is refused: %s", c.Short(), why)
		}
	}
	if dir := s.Image.Rootfs; dir != "" {
		// image.Resolve checks again with the symlinks resolved.
		if why, bad := SensitivePath(dir); bad {
			add(ruleSensitiveMount, "image.rootfs", "%s is refused as a root filesystem: %s; point rootfs at a directory made for the service", dir, why)
		}
	}
	for i, m := range s.Mounts {
		if m.Type != manifest.MountBind {
			continue
		}
		at := fmt.Sprintf("mounts[%d]", i)
		if why, bad := SensitivePath(m.Source); bad {
			add(ruleSensitiveMount, at+".source", "%s is refused: %s", m.Source, why)
		} else if HostConfigPath(m.Source) {
			add(ruleHostConfigBind, at+".source", "%s is the host's configuration, shown to the container", m.Source)
		}
		if m.Writable() {
			add(ruleWritableBind, at+".read_only", "%s is writable from the container", m.Source)
		}
	}
	if s.Network.Mode == manifest.NetworkHost {
		add(ruleHostNetwork, "network.mode", "the host network namespace is shared")
	}
	networkFindings(s, add)
	for _, ns := range []struct {
		mode, key string
		rule      *Rule
	}{{s.Namespaces.PID, "pid", ruleHostPID}, {s.Namespaces.IPC, "ipc", ruleHostIPC}, {s.Namespaces.UTS, "uts", ruleHostUTS}} {
		if ns.mode == "host" {
			add(ns.rule, "namespaces."+ns.key, "the host %s namespace is shared", strings.ToUpper(ns.key))
		}
	}
	if !s.Security.NoNewPrivileges {
		add(ruleNewPrivileges, "security.no_new_privileges", "setuid binaries and file capabilities can raise privileges")
	}
	if !s.Security.ReadOnlyRootfs {
		add(ruleWritableRootfs, "security.read_only_rootfs", "the service can change its own binaries and configuration")
	}
	if s.Security.Seccomp == "unconfined" {
		add(ruleSeccompUnconfined, "security.seccomp", "every system call is allowed")
	}
	if s.Security.AppArmor == "unconfined" {
		add(ruleAppArmorUnconfined, "security.apparmor", "no AppArmor profile confines the service")
	} else if s.Security.AppArmorMode == "complain" {
		add(ruleAppArmorComplain, "security.apparmor_mode", "denials are logged, not enforced")
	}
	if s.Security.Landlock == "off" {
		add(ruleLandlockOff, "security.landlock", "no Landlock ruleset restricts the service's files and ports")
	}
	for _, k := range slices.Sorted(maps.Keys(s.Process.Env)) {
		if SecretLooking(k) {
			add(ruleSecretEnv, "process.env."+k, "%s looks like a secret; environment variables leak into logs, /proc and child processes", k)
		}
	}
	if ref := s.Image.Ref; ref != "" {
		if !Pinned(ref) {
			add(ruleUnpinnedImage, "image.ref", "%q is not pinned by digest: whoever can push that tag decides what runs", ref)
		}
		if host := RegistryHost(ref); LoopbackHost(host) && s.Allows(manifest.AllowInsecureRegistry) {
			add(ruleInsecureRegistry, "image.ref", "the loopback registry %s may be reached over plain HTTP", host)
		}
	}
	if TodoReason(s.Insecure.Reason) && len(s.Insecure.Allow) > 0 {
		add(ruleTodoReason, "insecure.reason", "%q: nobody has said yet why the service needs %s", s.Insecure.Reason, strings.Join(s.Insecure.Allow, ", "))
	}
	switch u, _, _ := strings.Cut(s.Process.User, ":"); u {
	case "0", "root":
		add(ruleRootUser, "process.user", "the service runs as root inside its user namespace")
	case "":
		add(ruleRootUser, "process", "no process.user: the service runs as the image's user, or root")
	}
	return out
}

// linkLocal holds the cloud metadata address 169.254.169.254.
var linkLocal = netip.MustParsePrefix("169.254.0.0/16")

// networkFindings judges what reaches the service and what it reaches.
func networkFindings(s *manifest.Service, add func(r *Rule, path, format string, args ...any)) {
	n := &s.Network
	if n.Mode != manifest.NetworkBridge {
		return
	}
	for i, p := range n.Published {
		if p.HostIP.IsUnspecified() {
			add(rulePublishAll, fmt.Sprintf("network.ports[%d]", i), "%q publishes container port %d/%s on every address of the host, to whatever network reaches it", n.Ports[i], p.ContainerPort, p.Proto)
		}
	}
	if n.Egress.All {
		add(ruleEgressAll, "network.egress", `"all": the service may connect to any address the host reaches, its local networks and 169.254.169.254 included`)
	}
	for i, r := range n.Egress.Rules {
		switch {
		case r.Prefix.IsValid() && r.Prefix.Bits() == 0:
			add(ruleEgressAll, fmt.Sprintf("network.egress[%d]", i), "%q is every address: the service may connect anywhere the host reaches", n.Egress.Entries[i])
		case r.Prefix.IsValid() && r.Prefix.Overlaps(linkLocal):
			add(ruleEgressMetadata, fmt.Sprintf("network.egress[%d]", i), "%q covers link-local addresses, the cloud metadata service 169.254.169.254 among them", n.Egress.Entries[i])
		}
	}
}

// Enforce returns an error naming every refused finding, or nil.
func Enforce(s *manifest.Service) error {
	findings := Findings(s)
	// By line, as manifest errors are: a finding tied to no line (a key
	// the manifest lacks, in a table it lacks too) comes last.
	last := func(l int) int {
		if l == 0 {
			return 1 << 30
		}
		return l
	}
	slices.SortStableFunc(findings, func(a, b Finding) int { return last(a.Line) - last(b.Line) })
	var errs []error
	for _, f := range findings {
		if !f.Refused() {
			continue
		}
		errs = append(errs, s.Errorf(f.Path, "%s", f.Rule.refusal(f.Msg)))
	}
	return errors.Join(errs...)
}

// refusal is how a refusal by r reads: what is wrong, the rule, the fix.
func (r *Rule) refusal(msg string) string {
	fix := r.Fix
	if r.Allow != "" {
		fix += fmt.Sprintf(", or acknowledge it: [insecure] allow = [%q] with a reason", r.Allow)
	}
	return fmt.Sprintf("%s [%s %s] (%s)", msg, r.ID, r.Name, fix)
}

// SensitiveMountRefusal is the refusal of a bind or secret source that the
// launcher finds sensitive at the moment it acts (a symlink resolved, an
// engine socket hard-linked elsewhere): the same rule, in the same words,
// as Enforce's on the manifest's text. what says which source and why.
func SensitiveMountRefusal(what string) error {
	return &RefusalError{Rule: ruleSensitiveMount, What: what}
}

// RefusalError is a refusal by a rule, made by a stage after the policy
// (the launcher's look at what a path really is): check reports it as a
// finding of its rule.
type RefusalError struct {
	Rule *Rule
	What string // the message, without the rule and fix
}

func (e *RefusalError) Error() string { return e.Rule.refusal(e.What) }

// Pinned reports whether an image reference names its content by digest:
// repo@sha256:..., or a bare image ID (sha256:...), which is the digest of
// the image's config and so content-addressed too.
func Pinned(ref string) bool {
	return strings.Contains(ref, "@sha256:") || strings.HasPrefix(ref, "sha256:")
}

// TodoReason reports whether an [insecure] reason is a placeholder, such as
// the "TODO: ..." that safe-run import writes.
func TodoReason(reason string) bool {
	r := strings.ToUpper(strings.TrimSpace(reason))
	return strings.HasPrefix(r, "TODO") || strings.HasPrefix(r, "FIXME") || strings.HasPrefix(r, "XXX")
}

var secretKey = regexp.MustCompile(`(?i)(PASSWORD|PASSWD|TOKEN|SECRET|_KEY$|^KEY$|CREDENTIAL|PRIVATE)`)

// SecretLooking reports whether an environment variable name suggests it
// holds a secret: *PASSWORD*, *TOKEN*, *SECRET*, *_KEY. A name ending in
// _FILE holds the path of a secret file, the convention official images
// use to keep secrets out of the environment (POSTGRES_PASSWORD_FILE).
func SecretLooking(name string) bool {
	return secretKey.MatchString(name) && !strings.HasSuffix(strings.ToUpper(name), "_FILE")
}

// RegistryHost returns the registry part of an image reference as docker
// reads it: the first path component when it looks like a host (has a '.'
// or a ':', or is localhost), else Docker Hub.
func RegistryHost(ref string) string {
	first, _, found := strings.Cut(ref, "/")
	if found && (strings.ContainsAny(first, ".:[") || first == "localhost") {
		return first
	}
	return "index.docker.io"
}

// LoopbackHost reports whether a registry host[:port] is on this machine's
// loopback: localhost, 127.0.0.0/8 or ::1. Only those may be reached over
// plain HTTP, and only with [insecure] allow = ["insecure_registry"].
func LoopbackHost(hostport string) bool {
	host := hostport
	if rest, ok := strings.CutPrefix(hostport, "["); ok {
		host, _, _ = strings.Cut(rest, "]")
	} else if h, port, ok := strings.Cut(hostport, ":"); ok && !strings.Contains(port, ":") {
		host = h
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}
