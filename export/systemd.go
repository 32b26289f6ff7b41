package export

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/safe-run/safe-run/manifest"
	"github.com/safe-run/safe-run/plan"
)

// stopMargin is what TimeoutStopSec adds to stop_timeout: after stop_timeout
// safe-run kills the container and cleans up (unmounts, cgroup removal),
// which takes milliseconds; systemd's SIGKILL to the whole unit is only for
// a safe-run that hangs.
const stopMargin = 5

// supervisorTasks is what TasksMax adds to the container's pids limit for
// safe-run itself (Go runtime threads, the libcontainer init it re-executes):
// the container's cgroup nests under the unit's, whose limit counts both.
const supervisorTasks = 64

// boundCaps are capabilities of the unit's bounding set and why safe-run
// uses them: one line of the unit's comment.
type boundCaps struct {
	caps []string
	why  string
}

// boundingSet is the capability bounding set the unit gives safe-run for
// s: what safe-run itself uses to run s as root, and nothing else. The
// candidates came from the kernel's cap_capable tracepoint while services
// ran; each group stayed because a feature broke under setpriv without it.
// TestSystemdBoundingSet runs each feature under exactly the unit's set
// (and shows the set units had before failing); CAP_MAC_ADMIN alone is
// unmeasured, as the test machines have no AppArmor. The service's own
// [security] capabilities need no room
// here: its user namespace starts with a full bounding set of its own
// (kernel/user_namespace.c, set_cred_user_ns), and safe-run, its owner,
// holds every capability in it, so it also signals and joins the service's
// processes without CAP_KILL (security/commoncap.c, cap_capable). Left out
// as measured unused: CAP_SYS_RESOURCE (only to raise RLIMIT_NOFILE's hard
// limit past safe-run's own, which systemd sets to 524288, above the
// service's 65536), CAP_NET_RAW (CAP_NET_ADMIN covers the IP_TRANSPARENT
// of the published ports' forwarders, net/ipv4/ip_sockglue.c), CAP_MKNOD
// (an image's device nodes are dropped, never made).
func boundingSet(s *manifest.Service) []boundCaps {
	set := []boundCaps{
		{[]string{"CAP_SYS_ADMIN"}, "namespaces, mounts, idmapped mounts"},
		{[]string{"CAP_SETUID", "CAP_SETGID"}, "writing the user namespace's id maps"},
		{[]string{"CAP_SYS_CHROOT", "CAP_SYS_PTRACE"}, "joining the container's mount namespace to mount into it"},
		{[]string{"CAP_CHOWN", "CAP_DAC_OVERRIDE"}, "state, volumes and secrets owned by the service's ids; the cgroups"},
		{[]string{"CAP_SYSLOG"}, "/dev/kmsg, which names the processes the OOM killer took"},
	}
	// The watcher reads denials of each of these from the kernel's audit
	// records (profiles/watch_linux.go): seccomp's where they are logged,
	// Landlock's and AppArmor's whenever they confine.
	if s.Security.SeccompLog || s.Security.Landlock != "off" || appArmorProfile(s) != "" {
		set = append(set, boundCaps{[]string{"CAP_AUDIT_READ", "CAP_AUDIT_CONTROL"},
			"the service's seccomp, Landlock and AppArmor denials, read from the audit socket, and whether the audit is on"})
	}
	if s.Network.Mode == manifest.NetworkBridge {
		set = append(set, boundCaps{[]string{"CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE"},
			"the bridge network (links, nftables), its DNS on port 53, host ports below 1024"})
	}
	switch {
	case s.Image.Rootfs == "":
		set = append(set, boundCaps{[]string{"CAP_FOWNER", "CAP_FSETID"},
			"unpacking the image: its users' files, setgid bits"})
	case !s.Security.ReadOnlyRootfs:
		set = append(set, boundCaps{[]string{"CAP_FOWNER"}, "removing the service's files from the writable rootfs"})
	}
	if appArmorProfile(s) != "" && s.Security.AppArmor == "generated" {
		set = append(set, boundCaps{[]string{"CAP_MAC_ADMIN"}, "loading the generated AppArmor profile"})
	}
	return set
}

// Systemd writes a unit that runs the service through safe-run. The unit
// hardens safe-run itself only with directives that were run for real
// under systemd with safe-run starting a container (see
// export/systemd_test.go); none of them installs a seccomp filter, since a
// filter on safe-run would be inherited by the container and confine it
// beyond what the manifest says.
func Systemd(p *plan.Job, opts Options) (*Output, error) {
	s := p.Service
	if !filepath.IsAbs(opts.SafeRun) {
		return nil, fmt.Errorf("the unit needs the absolute path of safe-run, not %q", opts.SafeRun)
	}
	var b strings.Builder
	comment := func(lines ...string) { writeComments(&b, lines...) }
	set := func(key, value string) { b.WriteString(key + "=" + value + "\n") }

	comment(header(p, "systemd")...)
	comment(fmt.Sprintf("Install as /etc/systemd/system/%s.service, then: systemctl daemon-reload && systemctl enable --now %s", s.Name, s.Name))
	b.WriteString("\n[Unit]\n")
	set("Description", unitEscape(s.Name)+" (safe-run)")

	b.WriteString("\n[Service]\n")
	comment(
		"safe-run stays the main process and supervises the container. It sends",
		"READY=1 once the service has started, or with [process] notify = true",
		"relays the service's own notifications, so only the main PID notifies.",
	)
	set("Type", "notify")
	set("NotifyAccess", "main")
	set("ExecStart", execQuote(opts.SafeRun)+" run "+execQuote(manifestPath(s)))
	comment("The container's cgroup nests under the unit's.")
	set("Delegate", "yes")
	comment(
		fmt.Sprintf("systemctl stop sends SIGTERM to safe-run alone; it stops the service with %s,", s.Process.StopSignal),
		fmt.Sprintf("kills it after stop_timeout (%s) and cleans up. SIGKILL for all only after that.", s.Process.StopTimeout),
	)
	set("KillMode", "mixed")
	set("TimeoutStopSec", strconv.FormatInt(seconds(s.Process.StopTimeout)+stopMargin, 10)+"s")
	comment(fmt.Sprintf("safe-run exits 128+N when the service dies of signal N: dying of %s is a clean stop.", s.Process.StopSignal))
	set("SuccessExitStatus", strconv.Itoa(128+s.Process.StopSignal.Number))
	set("Restart", s.Process.Restart)
	if s.Resources.Pids > 0 {
		comment(fmt.Sprintf("The service's pids limit (%d) plus safe-run's own threads.", s.Resources.Pids))
		set("TasksMax", strconv.FormatInt(s.Resources.Pids+supervisorTasks, 10))
	} else {
		set("TasksMax", "infinity")
	}

	b.WriteString("\n")
	comment(
		"Hardening of safe-run itself. It is root and keeps CAP_SYS_ADMIN, so the",
		"file system protections below guard against mistakes rather than a",
		"compromised supervisor; the bounding set and no_new_privs bind it.",
		"Left out because they break safe-run or confine the container beyond",
		"the manifest: PrivateUsers, ProtectKernelTunables, ProtectControlGroups,",
		"ProtectHostname, PrivateDevices, ProcSubset, RestrictNamespaces, and every",
		"directive that installs a seccomp filter (SystemCallFilter, ProtectKernelModules,",
		"ProtectKernelLogs, ProtectClock...): the container would inherit the filter.",
	)
	comment(
		"The bounding set holds what safe-run itself uses for this manifest. The",
		"service's own capabilities need no room here: its user namespace starts",
		"with a full bounding set of its own.",
	)
	var caps []string
	for _, g := range boundingSet(s) {
		comment("  " + strings.Join(g.caps, " ") + ": " + g.why)
		caps = append(caps, g.caps...)
	}
	slices.Sort(caps)
	set("CapabilityBoundingSet", strings.Join(slices.Compact(caps), " "))
	if s.Security.NoNewPrivileges {
		// Inherited by the container: only when the manifest keeps it too.
		set("NoNewPrivileges", "yes")
	}
	set("ProtectSystem", "strict")
	set("ProtectHome", "read-only")
	if under := tmpPaths(s); len(under) == 0 {
		set("PrivateTmp", "yes")
	} else {
		comment("No PrivateTmp: the service uses " + strings.Join(under, ", ") + ".")
	}
	comment("Where safe-run keeps state (/run/safe-run) and data (/var/lib/safe-run).")
	set("RuntimeDirectory", "safe-run")
	set("RuntimeDirectoryMode", "0711")
	set("RuntimeDirectoryPreserve", "yes")
	set("StateDirectory", "safe-run")
	set("StateDirectoryMode", "0711")
	if rw := writableBinds(s); len(rw) > 0 {
		comment("The service's writable binds.")
		quoted := make([]string, len(rw))
		for i, path := range rw {
			quoted[i] = execQuote(path)
		}
		set("ReadWritePaths", strings.Join(quoted, " "))
	}

	b.WriteString("\n[Install]\n")
	set("WantedBy", "multi-user.target")
	return &Output{Text: []byte(b.String())}, nil
}

// writableBinds are the host paths the service may write through binds.
func writableBinds(s *manifest.Service) []string {
	var out []string
	for _, m := range s.Mounts {
		if m.Type == manifest.MountBind && m.Writable() {
			out = append(out, m.Source)
		}
	}
	return out
}

// tmpPaths are the host paths of the service under /tmp or /var/tmp, which
// PrivateTmp would hide from safe-run.
func tmpPaths(s *manifest.Service) []string {
	paths := []string{manifestPath(s), s.Image.Rootfs}
	if s.Security.Seccomp != "" && filepath.IsAbs(s.Security.Seccomp) {
		paths = append(paths, s.Security.Seccomp)
	}
	for _, m := range s.Mounts {
		if m.Type == manifest.MountBind {
			paths = append(paths, m.Source)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(s.Secrets)) {
		paths = append(paths, s.Secrets[name].File)
	}
	var out []string
	for _, p := range paths {
		for _, tmp := range []string{"/tmp", "/var/tmp"} {
			if p == tmp || strings.HasPrefix(p, tmp+"/") {
				out = append(out, p)
			}
		}
	}
	return out
}

// execQuote writes one word of a unit's command line or path list: quoted
// when it holds a space, quote or backslash, with the specifier % and the
// variable $ doubled (systemd.service(5), "Command lines";
// systemd.unit(5), "Specifiers").
func execQuote(s string) string {
	s = unitEscape(s)
	s = strings.ReplaceAll(s, "$", "$$")
	if !strings.ContainsAny(s, " \t\"'\\;") {
		return s
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `"` + r.Replace(s) + `"`
}

// unitEscape doubles %, which starts a specifier everywhere in a unit.
func unitEscape(s string) string { return strings.ReplaceAll(s, "%", "%%") }
