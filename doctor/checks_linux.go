package doctor

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/host"
)

// Host is what the checks read: the host's facts (package host, the
// same value check --host, plan and the launcher read), and the few things
// only doctor looks at (the uid mappers, XDG_RUNTIME_DIR, linger, overlay
// in /proc/filesystems and an overlay mount), read below Root, so that a
// test can stage a broken host in a directory.
type Host struct {
	Root  string // "/" on a real host
	Facts host.Facts
	Env   func(string) string
	// OverlayInUserns mounts an overlay inside a new user namespace, as
	// rootless safe-run does; nil means it cannot be tried here.
	OverlayInUserns func() error
}

// ThisHost describes the host safe-run runs on.
func ThisHost() Host {
	return Host{Root: "/", Facts: host.Probe(), Env: os.Getenv, OverlayInUserns: overlayInUserns}
}

func (h Host) path(p string) string { return filepath.Join(h.Root, p) }

func (h Host) read(p string) string {
	b, err := os.ReadFile(h.path(p))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// Diagnose runs every check.
func Diagnose(h Host) *Report {
	r := &Report{Rootless: h.Facts.UID != 0, User: h.Facts.User}
	add := func(c Check) { r.Checks = append(r.Checks, c) }
	add(h.kernel())
	add(h.userNamespaces(r.Rootless))
	add(h.subIDs(r.Rootless))
	if r.Rootless {
		add(h.mapper("newuidmap"))
		add(h.mapper("newgidmap"))
	}
	add(h.cgroups(r.Rootless))
	add(h.seccomp())
	add(h.appArmor())
	add(h.landlock())
	add(h.otherLSMs())
	if r.Rootless {
		add(h.overlay())
		add(h.pasta())
		add(h.publishable())
		add(h.runtimeDir())
		add(h.linger())
	} else {
		add(h.sysResource())
	}
	return r
}

func (h Host) kernel() Check {
	kernel := h.Facts.Kernel
	c := Check{Name: "kernel", Found: kernel}
	var major, minor int
	_, _ = fmt.Sscanf(kernel, "%d.%d", &major, &minor) // unparsed stays 0.0: too old
	switch v := major*1000 + minor; {
	case v >= 5019:
		c.Status = OK
	case v >= 5012:
		c.Status, c.Found = Warn, kernel+": idmapped mounts work, but not as overlay layers (5.19)"
		c.Fix = "upgrade to a kernel of 5.19 or later (Debian 12 ships 6.1)"
	default:
		c.Status, c.Found = Fail, kernel+": no idmapped mounts (5.12) or mount_setattr"
		c.Fix = "upgrade to a kernel of 5.19 or later (Debian 12 ships 6.1)"
	}
	return c
}

func (h Host) userNamespaces(rootless bool) Check {
	c := Check{Name: "user namespaces", Status: OK, Found: "enabled"}
	if h.Facts.Userns.Disabled {
		return Check{Name: c.Name, Status: Fail, Found: "disabled: user.max_user_namespaces = 0",
			Fix: "sysctl -w user.max_user_namespaces=15000 && echo user.max_user_namespaces=15000 > /etc/sysctl.d/90-userns.conf"}
	}
	if !rootless {
		return c
	}
	if h.Facts.Userns.UnprivilegedDisabled {
		return Check{Name: c.Name, Status: Fail, Found: "unprivileged user namespaces disabled: kernel.unprivileged_userns_clone = 0",
			Fix: "as root: sysctl -w kernel.unprivileged_userns_clone=1 && echo kernel.unprivileged_userns_clone=1 > /etc/sysctl.d/90-userns.conf"}
	}
	if h.Facts.AppArmor.RestrictsUserns {
		return Check{Name: c.Name, Status: Fail, Found: "AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns = 1, Ubuntu 23.10+)",
			Fix: "as root, allow safe-run alone: printf 'abi <abi/4.0>,\\ninclude <tunables/global>\\nprofile safe-run /usr/local/bin/safe-run flags=(unconfined) {\\n  userns,\\n}\\n' > /etc/apparmor.d/safe-run && apparmor_parser -r /etc/apparmor.d/safe-run"}
	}
	return c
}

func (h Host) subIDs(rootless bool) Check {
	owner, uid := h.Facts.User, strconv.Itoa(h.Facts.UID)
	c := Check{Name: "subordinate ids"}
	if !rootless {
		owner, uid = host.IDUser, h.Facts.IDUserUID
		if uid == "" {
			c.Status, c.Found = Fail, "no system user safe-run to own the services' id ranges"
			c.Fix = host.SetupHint
			return c
		}
	}
	var missing []string
	total := map[string]uint64{}
	for file, ranges := range map[string][]host.SubIDRange{"/etc/subuid": h.Facts.SubUIDs, "/etc/subgid": h.Facts.SubGIDs} {
		for _, r := range ranges {
			if r.Owner == owner || r.Owner == uid {
				total[file] += r.Count
			}
		}
	}
	for _, file := range []string{"/etc/subuid", "/etc/subgid"} {
		if total[file] < 65536 {
			missing = append(missing, file)
		}
	}
	if len(missing) == 0 {
		c.Status = OK
		c.Found = fmt.Sprintf("%s has %d subordinate uids, %d gids: %d services of 65536 ids", owner, total["/etc/subuid"], total["/etc/subgid"], min(total["/etc/subuid"], total["/etc/subgid"])/65536)
		if rootless {
			c.Found = fmt.Sprintf("%s has %d subordinate uids and %d gids", owner, total["/etc/subuid"], total["/etc/subgid"])
		}
		return c
	}
	c.Status = Fail
	c.Found = fmt.Sprintf("%s has no range of 65536 ids in %s", owner, strings.Join(missing, " and "))
	c.Fix = "as root: usermod --add-subuids 1073741824-1140850687 --add-subgids 1073741824-1140850687 safe-run"
	if rootless {
		c.Status = Warn
		c.Found += ": only the container's root can be mapped, to your own uid"
		c.Fix = fmt.Sprintf("as root: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 %s (pick a range no other user has)", owner)
	}
	return c
}

func (h Host) mapper(tool string) Check {
	c := Check{Name: tool}
	var p string
	for _, dir := range []string{"/usr/bin", "/bin", "/usr/sbin", "/usr/local/bin"} {
		if _, err := os.Stat(h.path(filepath.Join(dir, tool))); err == nil {
			p = filepath.Join(dir, tool)
			break
		}
	}
	if p == "" {
		c.Status, c.Found, c.Fix = Fail, "not installed", "as root: apt-get install uidmap"
		return c
	}
	st, err := os.Stat(h.path(p))
	if err != nil {
		c.Status, c.Found = Fail, err.Error()
		return c
	}
	s := st.Sys().(*syscall.Stat_t)
	if st.Mode()&os.ModeSetuid != 0 && s.Uid == 0 {
		c.Status, c.Found = OK, p+" is setuid root"
		return c
	}
	if capXattr(h.path(p)) {
		c.Status, c.Found = OK, p+" has file capabilities"
		return c
	}
	c.Status, c.Found = Fail, p+" is neither setuid root nor has file capabilities: it cannot map your subordinate ids"
	c.Fix = fmt.Sprintf("as root: chmod u+s %s (or setcap cap_set%sid+ep %s)", p, tool[3:4], p)
	return c
}

// pasta checks what a rootless service in bridge mode needs: pasta, which
// connects its network namespace to the host, and the tun device pasta
// opens inside it. Without them only network.mode "bridge" is refused.
func (h Host) pasta() Check {
	c := Check{Name: "rootless network"}
	switch {
	case h.Facts.Pasta == "":
		c.Status, c.Found, c.Fix = Warn, `pasta is not installed: network.mode "bridge" is refused without root`, "as root: apt-get install passt"
	case !h.Facts.TunUsable:
		c.Status, c.Found = Warn, h.Facts.TunProblem+`: pasta cannot connect a service's network: network.mode "bridge" is refused without root`
		c.Fix = "as root: chmod 0666 " + host.TunDevice + " (the kernel's default; a udev rule keeps it: KERNEL==\"tun\", MODE=\"0666\")"
	default:
		c.Status, c.Found = OK, h.Facts.Pasta+" and "+host.TunDevice+": bridge mode connects through pasta (named bridges: one namespace and one pasta for all your runs on them)"
	}
	return c
}

// publishable says which host ports a rootless service may publish: on a
// named bridge the outer safe-run binds them itself, as the user, and a
// bind below net.ipv4.ip_unprivileged_port_start needs root.
func (h Host) publishable() Check {
	c := Check{Name: "rootless ports", Status: OK}
	start := h.Facts.UnprivilegedPortStart
	switch {
	case start < 0:
		c.Found = "net.ipv4.ip_unprivileged_port_start unreadable: host ports below 1024 are likely refused without root"
	case start == 0:
		c.Found = "every host port can be published without root (net.ipv4.ip_unprivileged_port_start = 0)"
	default:
		c.Found = fmt.Sprintf("host ports from %d up can be published without root; below that only as root (net.ipv4.ip_unprivileged_port_start = %d)", start, start)
		if start > 80 {
			c.Fix = "only if services must publish lower ports without root, as root: sysctl -w net.ipv4.ip_unprivileged_port_start=80 (and in /etc/sysctl.d)"
		}
	}
	return c
}

func capXattr(p string) bool {
	buf := make([]byte, 64)
	n, err := unix.Getxattr(p, "security.capability", buf)
	return err == nil && n > 0
}

func (h Host) cgroups(rootless bool) Check {
	c := Check{Name: "cgroups"}
	cg := h.Facts.Cgroup
	if cg.Mode != host.CgroupV2 {
		kind := "v1"
		if cg.Mode == host.CgroupHybrid {
			kind = "hybrid (v1 controllers, v2 without them)"
		}
		if !rootless {
			c.Status, c.Found = OK, "cgroup "+kind+": limits go through the v1 controllers"
			return c
		}
		c.Status, c.Found = Fail, "cgroup "+kind+": v1 controllers cannot be delegated to a user, so rootless limits cannot be enforced"
		c.Fix = "boot with cgroup v2 only (systemd.unified_cgroup_hierarchy=1 on the kernel command line), or acknowledge [insecure] no_resource_limits per service"
		return c
	}
	own := cg.Own
	if own == "" {
		own = "/"
	}
	var missing []string
	for _, ctl := range []string{"cpu", "memory", "pids"} {
		if !cg.HasController(ctl) {
			missing = append(missing, ctl)
		}
	}
	owned := !rootless || cg.Delegated
	switch {
	case len(missing) == 0 && owned:
		c.Status, c.Found = OK, "cgroup v2; "+own+" has cpu, memory and pids"
		if rootless {
			c.Found += ", delegated to you"
		}
	case rootless:
		if !owned {
			missing = []string{"cpu", "memory", "pids"}
		}
		c.Status = Fail
		c.Found = fmt.Sprintf("cgroup v2, but %s is not delegated to you with %s", own, strings.Join(missing, ", "))
		c.Fix = "as root: mkdir -p /etc/systemd/system/user@.service.d && printf '[Service]\\nDelegate=cpu cpuset io memory pids\\n' > /etc/systemd/system/user@.service.d/delegate.conf && systemctl daemon-reload; then run safe-run under systemd-run --user --scope -p Delegate=yes"
	default:
		c.Status = Fail
		c.Found = fmt.Sprintf("cgroup v2, but %s lacks %s", own, strings.Join(missing, ", "))
		c.Fix = "enable them for safe-run's cgroup: run it as a systemd unit with Delegate=yes"
	}
	return c
}

func (h Host) seccomp() Check {
	c := Check{Name: "seccomp"}
	sc := h.Facts.Seccomp
	if !sc.Present {
		c.Status, c.Found, c.Fix = Fail, "the kernel has no seccomp", "use a kernel built with CONFIG_SECCOMP_FILTER (every distribution kernel is)"
		return c
	}
	log, notify := sc.Log, sc.Notify
	switch {
	case log && notify:
		c.Status, c.Found = OK, "filters, logging of denials, and user notification"
	case log:
		c.Status, c.Found = Warn, "filters and logging, but no user notification: rootless runs cannot show denials"
		c.Fix = "a kernel of 5.5 or later"
	default:
		c.Status, c.Found = Warn, "filters, but denials cannot be logged"
		c.Fix = "a kernel of 4.14 or later"
	}
	return c
}

func (h Host) appArmor() Check {
	c := Check{Name: "AppArmor"}
	switch aa := h.Facts.AppArmor; {
	case !aa.Enabled && !aa.NoSecurityfs:
		c.Status, c.Found = Warn, "not in this kernel: services run without their AppArmor profile (apparmor_required = true refuses them)"
		c.Fix = "boot a kernel with AppArmor (Debian's: apparmor=1 security=apparmor), or accept it: seccomp, capabilities and namespaces still apply"
	case aa.NoSecurityfs:
		c.Status, c.Found = Warn, "in this kernel, but securityfs is not mounted: profiles can be neither loaded nor applied, so services run without theirs"
		c.Fix = "as root: mount -t securityfs securityfs /sys/kernel/security (systemd mounts it at boot)"
	default:
		c.Status, c.Found = OK, "enabled: each service gets its generated profile"
	}
	return c
}

// landlock reports the kernel's Landlock ABI and what a service's
// generated ruleset enforces at it (package landlock).
func (h Host) landlock() Check {
	c := Check{Name: "Landlock"}
	switch abi := h.Facts.LandlockABI; {
	case abi == 0:
		c.Status, c.Found = Warn, "not in this kernel: services run without their Landlock ruleset (landlock_required = true refuses them)"
		c.Fix = "boot Linux 5.13 or later with landlock in its lsm= list, or accept it: seccomp, capabilities and namespaces still apply"
	case abi < 4:
		c.Status, c.Found = OK, fmt.Sprintf("ABI %d: file system only (TCP rules need ABI 4, scoping of signals and abstract sockets ABI 6); denials surface as EACCES only (audit needs ABI 7)", abi)
	case abi < 6:
		c.Status, c.Found = OK, fmt.Sprintf("ABI %d: file system and TCP bind/connect (scoping of signals and abstract sockets needs ABI 6); denials surface as EACCES only (audit needs ABI 7)", abi)
	case abi < 7:
		c.Status, c.Found = OK, fmt.Sprintf("ABI %d: file system, TCP bind/connect, scoping; denials surface as EACCES only (audit needs ABI 7)", abi)
	default:
		found := fmt.Sprintf("ABI %d: file system, TCP bind/connect, scoping", abi)
		switch h.Facts.Audit {
		case host.AuditOn:
			c.Status, c.Found = OK, found+"; denials audited (the kernel's audit is on): safe-run shows the service's as root, rootless they surface as EACCES only"
		case host.AuditOff:
			c.Status, c.Found = OK, found+"; denials surface as EACCES only: the kernel's audit is off, and Landlock audits nothing without it"
			c.Fix = "to see them in safe-run's output (as root): run auditd, or auditctl -e 1 (host-wide: every new process then carries an audit context until the next boot)"
		default:
			c.Status, c.Found = OK, found+"; denials surface as EACCES only rootless; as root they are shown where the kernel's audit is on (asking whether it is needs root)"
		}
	}
	return c
}

func (h Host) otherLSMs() Check {
	lsms := h.Facts.LSMs
	if lsms == nil {
		return Check{Name: "other LSMs", Status: Info, Found: "unknown: securityfs is not mounted, so /sys/kernel/security/lsm cannot be read"}
	}
	var notes []string
	if h.Facts.SELinux {
		notes = append(notes, "SELinux present: safe-run sets no SELinux labels (not a goal); its AppArmor and seccomp confinement do not depend on it")
	}
	if len(notes) == 0 {
		notes = append(notes, "no SELinux")
	}
	return Check{Name: "other LSMs", Status: Info, Found: strings.Join(notes, "; ")}
}

func (h Host) overlay() Check {
	c := Check{Name: "overlayfs in a user namespace"}
	if !strings.Contains(h.read("/proc/filesystems"), "overlay") {
		c.Status, c.Found, c.Fix = Fail, "overlay is not in /proc/filesystems", "as root: modprobe overlay && echo overlay > /etc/modules-load.d/overlay.conf"
		return c
	}
	if h.OverlayInUserns == nil {
		c.Status, c.Found = Info, "not tried here"
		return c
	}
	if err := h.OverlayInUserns(); err != nil {
		c.Status, c.Found = Fail, "mounting an overlay in a user namespace failed: "+err.Error()
		c.Fix = "a kernel of 5.11 or later, without a sysctl or LSM that forbids unprivileged overlay mounts"
		return c
	}
	c.Status, c.Found = OK, "works"
	return c
}

func (h Host) runtimeDir() Check {
	c := Check{Name: "XDG_RUNTIME_DIR"}
	dir := h.Env("XDG_RUNTIME_DIR")
	fix := fmt.Sprintf("log in through systemd-logind (ssh, a desktop or machinectl shell %s@), which creates /run/user/%d", h.Facts.User, h.Facts.UID)
	if dir == "" {
		c.Status, c.Found, c.Fix = Fail, "not set: safe-run keeps its state there", fix
		return c
	}
	st, err := os.Stat(h.path(dir))
	if err != nil {
		c.Status, c.Found, c.Fix = Fail, dir+" does not exist", fix
		return c
	}
	if int(st.Sys().(*syscall.Stat_t).Uid) != h.Facts.UID || st.Mode().Perm() != 0o700 {
		c.Status, c.Found, c.Fix = Fail, fmt.Sprintf("%s is not yours with mode 0700 (it is %v)", dir, st.Mode().Perm()), fix
		return c
	}
	c.Status, c.Found = OK, dir
	return c
}

func (h Host) linger() Check {
	if fileExists(h.path(filepath.Join("/var/lib/systemd/linger", h.Facts.User))) {
		return Check{Name: "systemd linger", Status: OK, Found: "enabled: your services outlive your logins"}
	}
	return Check{Name: "systemd linger", Status: Info, Found: "off: services started from your systemd user instance stop when you log out",
		Fix: "loginctl enable-linger " + h.Facts.User}
}

func (h Host) sysResource() Check {
	c := Check{Name: "CAP_SYS_RESOURCE", Status: OK, Found: "held: rlimits are set as the spec says"}
	if !h.Facts.CapSysResource {
		c.Status = Warn
		c.Found = "not held: RLIMIT_NOFILE's hard limit cannot be raised above safe-run's own"
		c.Fix = "run safe-run with CAP_SYS_RESOURCE (a container or sandbox around it withholds it)"
	}
	return c
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// overlayInUserns mounts an overlay in a fresh user and mount namespace, as
// rootless safe-run does, through util-linux's unshare.
func overlayInUserns() error {
	dir, err := os.MkdirTemp("", "safe-run-doctor-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	for _, d := range []string{"lower", "upper", "work", "merged"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			return err
		}
	}
	script := fmt.Sprintf("mount -t overlay overlay -o lowerdir=%[1]s/lower,upperdir=%[1]s/upper,workdir=%[1]s/work %[1]s/merged", dir)
	out, err := exec.Command("unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}
