package host

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// Conditions callers branch on.
var (
	// ErrCannotEnforce: the host lacks what the manifest requires (cgroup
	// controllers, AppArmor) and [insecure] does not waive it.
	ErrCannotEnforce = errors.New("host cannot enforce the manifest")
	// ErrNoSubIDs: the host has no user namespace range for services.
	ErrNoSubIDs = errors.New("no subordinate ids for services")
)

// IDUser is the system user whose /etc/subuid and /etc/subgid ranges
// safe-run carves the services' user namespaces from. Owning the ranges
// through a dedicated user keeps them out of every login user's ranges,
// which useradd hands out from 100000 up.
const IDUser = "safe-run"

// IDRangeSize is the size of every service's user namespace: the 16-bit
// uid space images are built for.
const IDRangeSize = 65536

// SetupHint is the one-time set-up that gives IDUser its ranges.
const SetupHint = "useradd --system --no-create-home --shell /usr/sbin/nologin safe-run && " +
	"usermod --add-subuids 1073741824-1140850687 --add-subgids 1073741824-1140850687 safe-run"

// RootlessEnv tells a re-executed safe-run that it is the rootless inner
// one (see internal/rootless): "wait:SIZE" until the parent has written the
// id maps, then "ready:SIZE" once it is root in the namespace, SIZE ids
// being mapped.
const RootlessEnv = "_SAFE_RUN_ROOTLESS"

// RootlessNetEnv tells the rootless inner safe-run that the outer one put
// it in a network namespace of its own, connected to the host by pasta
// (see internal/rootless): there it is root over the network too, and
// connects a service's own bridge as root does. Its value is the
// connector: "pasta" for a namespace of this run's own, "shared" for the
// user's namespace that all their runs on named bridges share.
const RootlessNetEnv = "_SAFE_RUN_ROOTLESS_NET"

// RootlessNetShared is RootlessNetEnv's value in the user's shared
// namespace.
const RootlessNetShared = "shared"

// RootlessPortsEnv lists the published ports' sockets the outer safe-run
// bound on the host for an inner one in the shared namespace, as
// "FD=HOSTIP:PORT/PROTO" separated by commas.
const RootlessPortsEnv = "_SAFE_RUN_ROOTLESS_PORTS"

// TunDevice is the device pasta opens, inside the namespace it connects,
// for the namespace's end of its link.
const TunDevice = "/dev/net/tun"

// SupervisorLeaf is the cgroup v2 leaf safe-run moves itself into, so that
// its own cgroup can delegate controllers to the container's cgroup beside
// it: a v2 cgroup with processes cannot enable controllers for children.
const SupervisorLeaf = "supervisor"

// CgroupMode is how the host mounts its cgroups.
type CgroupMode string

const (
	CgroupV1     CgroupMode = "v1"
	CgroupHybrid CgroupMode = "hybrid" // v1 controllers, v2 without them
	CgroupV2     CgroupMode = "v2"
)

// Facts are what safe-run knows of the host, as one value.
type Facts struct {
	Kernel string // uname -r
	Arch   string // GOARCH
	CPUs   int
	Memory uint64 // bytes of RAM (sysinfo's total); 0 if unknown
	UID    int    // real uid
	EUID   int    // effective uid: 0 as root, and as the rootless inner safe-run
	User   string // name of UID, or UID as a number
	// InnerIDs is the size of the user namespace safe-run runs in when it
	// is the rootless inner process (RootlessEnv), 0 otherwise.
	InnerIDs uint32
	// InnerNet: the rootless inner safe-run runs in a network namespace
	// of its own that pasta connects to the host (RootlessNetEnv).
	InnerNet bool
	// InnerSharedNet: that namespace is the user's, shared by all their
	// runs on named bridges (RootlessNetShared); InnerPorts are the
	// sockets the outer safe-run bound for the published ports, fd by
	// "HOSTIP:PORT/PROTO" (RootlessPortsEnv).
	InnerSharedNet bool
	InnerPorts     map[string]int
	// Pasta is the path of pasta (Debian package passt), which connects
	// a rootless service's network to the host; "" when not installed.
	Pasta string
	// TunUsable: the user may open TunDevice, as pasta must; TunProblem
	// says why not.
	TunUsable  bool
	TunProblem string

	Cgroup   Cgroup
	AppArmor AppArmor
	// LSMs lists the active LSMs; nil when securityfs is not mounted.
	LSMs []string
	// SELinux: the kernel runs SELinux (among LSMs, or, where securityfs
	// is not mounted, its own file system is: /sys/fs/selinux/enforce).
	SELinux bool
	// UnprivilegedPortStart is net.ipv4.ip_unprivileged_port_start in
	// safe-run's network namespace: the lowest port a user may bind
	// without root, as a rootless run's published ports are bound; -1
	// when it cannot be read.
	UnprivilegedPortStart int
	// LandlockABI is the kernel's Landlock ABI version, 0 without it.
	LandlockABI int
	// Audit says whether the kernel's audit is on, which Landlock needs
	// to audit its denials (ABI 7): AuditOn, AuditOff, or AuditUnknown
	// when it cannot be asked (AUDIT_GET needs CAP_AUDIT_CONTROL in the
	// host's user namespace) or Landlock audits nothing anyway (ABI < 7).
	Audit   Audit
	Userns  Userns
	Seccomp Seccomp

	// SubUIDs and SubGIDs are /etc/subuid and /etc/subgid.
	SubUIDs, SubGIDs []SubIDRange
	// IDUserUID is IDUser's uid, "" when there is no such user.
	IDUserUID string

	// CapSysResource: safe-run holds CAP_SYS_RESOURCE, so it may raise
	// its hard rlimits for a container.
	CapSysResource bool
	// RlimitMax holds safe-run's own hard limits (RLIMIT_NOFILE,
	// RLIMIT_CORE), all it may give a container without CapSysResource.
	RlimitMax map[string]uint64
}

// Cgroup is the host's cgroup set-up as safe-run finds it.
type Cgroup struct {
	Mode CgroupMode
	// Own is safe-run's own v2 cgroup, without the supervisor leaf (""
	// when /proc/self/cgroup names none).
	Own string
	// Controllers are those safe-run may use: on v2 the ones available in
	// Own; on v1 those enabled in /proc/cgroups.
	Controllers []string
	// Delegated: on v2, safe-run's effective uid owns Own's cgroup.procs
	// and cgroup.subtree_control, as systemd's Delegate=yes leaves them.
	// On v1, it owns every controller hierarchy it needs (root does).
	Delegated bool
	// Unwritable lists, on v1, the controllers whose hierarchy safe-run
	// does not own.
	Unwritable []string
}

// AppArmor is what the kernel offers of AppArmor.
type AppArmor struct {
	// Enabled: the kernel has AppArmor, enabled, with securityfs
	// mounted: libcontainer's own test (apparmor.IsEnabled).
	Enabled bool
	// NoSecurityfs: AppArmor is enabled in the kernel, but securityfs,
	// its interface, is not mounted.
	NoSecurityfs bool
	// RestrictsUserns: kernel.apparmor_restrict_unprivileged_userns = 1
	// (Ubuntu 23.10 and later).
	RestrictsUserns bool
	// Loaded maps every loaded profile to its mode; nil when unknown (the
	// list is readable by root only).
	Loaded map[string]string
}

// Userns is what the kernel allows of user namespaces.
type Userns struct {
	// Disabled: user.max_user_namespaces is 0.
	Disabled bool
	// UnprivilegedDisabled: Debian's kernel.unprivileged_userns_clone
	// is 0.
	UnprivilegedDisabled bool
}

// Seccomp is what the kernel offers of seccomp.
type Seccomp struct {
	Present bool // filters (CONFIG_SECCOMP_FILTER)
	Log     bool // SECCOMP_RET_LOG
	Notify  bool // SECCOMP_RET_USER_NOTIF
	// ActionsLogged is the sysctl kernel.seccomp.actions_logged: the
	// actions whose decisions the kernel logs ("errno", "log", ...),
	// which seccomp_log and profile record depend on; nil when it
	// cannot be read.
	ActionsLogged []string
}

// SubIDRange is one line of /etc/subuid or /etc/subgid.
type SubIDRange struct {
	Owner        string // name or uid, as written
	Start, Count uint64
}

// Rootless reports whether safe-run runs without real root: as a user,
// or as the rootless inner safe-run in that user's namespace.
func (f Facts) Rootless() bool { return f.EUID != 0 || f.InnerIDs > 0 }

// MustEnterRootless reports whether safe-run runs without root and outside
// its own user namespace: a start must enter one first.
func (f Facts) MustEnterRootless() bool { return f.EUID != 0 && f.InnerIDs == 0 }

// UserSubIDs is the user's first range of at least IDRangeSize-1 ids in
// ranges, as much of it as a rootless run maps; count 0 when there is none.
func (f Facts) UserSubIDs(ranges []SubIDRange) (start, count uint64) {
	uid := strconv.Itoa(f.UID)
	for _, r := range ranges {
		if (r.Owner == f.User || r.Owner == uid) && r.Count >= IDRangeSize-1 {
			return r.Start, IDRangeSize - 1
		}
	}
	return 0, 0
}

// RootlessIDSize is the size of the user namespace a rootless run gets:
// the one it is in, or the one it would enter.
func (f Facts) RootlessIDSize() uint32 {
	if f.InnerIDs > 0 {
		return f.InnerIDs
	}
	_, uids := f.UserSubIDs(f.SubUIDs)
	_, gids := f.UserSubIDs(f.SubGIDs)
	if uids > 0 && gids > 0 {
		return IDRangeSize
	}
	return 1
}

// HasController reports whether the cgroup controller c is available.
func (c Cgroup) HasController(name string) bool { return slices.Contains(c.Controllers, name) }

// Read reads the facts that are files below root ("/" on a real host):
// all but the kernel release, the architecture, the CPUs, the Landlock ABI
// and the seccomp actions, which come from system calls (Probe). uid and
// euid are the ids to judge ownership and name the user by.
func Read(root string, uid, euid int) Facts {
	r := reader(root)
	f := Facts{UID: uid, EUID: euid, User: strconv.Itoa(uid), RlimitMax: map[string]uint64{}}
	for _, line := range r.lines("/etc/passwd") {
		p := strings.Split(line, ":")
		if len(p) < 3 {
			continue
		}
		if p[2] == strconv.Itoa(uid) && f.User == strconv.Itoa(uid) {
			f.User = p[0]
		}
		if p[0] == IDUser {
			f.IDUserUID = p[2]
		}
	}
	f.SubUIDs, _ = ReadSubIDs(r.path("/etc/subuid"))
	f.SubGIDs, _ = ReadSubIDs(r.path("/etc/subgid"))
	f.Cgroup = r.cgroup(euid)
	for _, dir := range []string{"/usr/bin", "/bin", "/usr/sbin", "/usr/local/bin"} {
		if r.exists(filepath.Join(dir, "pasta")) {
			f.Pasta = filepath.Join(dir, "pasta")
			break
		}
	}
	f.TunUsable, f.TunProblem = r.tun(uid, euid)
	f.AppArmor = r.appArmor()
	if list := r.read("/sys/kernel/security/lsm"); list != "" {
		f.LSMs = strings.Split(list, ",")
	}
	f.SELinux = slices.Contains(f.LSMs, "selinux") || r.exists("/sys/fs/selinux/enforce")
	f.UnprivilegedPortStart = -1
	if n, err := strconv.Atoi(r.read("/proc/sys/net/ipv4/ip_unprivileged_port_start")); err == nil {
		f.UnprivilegedPortStart = n
	}
	f.Userns = Userns{
		Disabled:             r.read("/proc/sys/user/max_user_namespaces") == "0",
		UnprivilegedDisabled: r.read("/proc/sys/kernel/unprivileged_userns_clone") == "0",
	}
	f.Seccomp.ActionsLogged = strings.Fields(r.read("/proc/sys/kernel/seccomp/actions_logged"))
	for _, line := range r.lines("/proc/self/status") {
		if strings.HasPrefix(line, "Seccomp:") {
			f.Seccomp.Present = true
		}
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			f.CapSysResource = err == nil && caps&(1<<capSysResource) != 0
		}
	}
	return f
}

// tun says whether the user may open TunDevice for reading and writing.
// Permissions are judged from the mode and owner, and, where the process
// reading is the user itself, by the kernel (access(2)), which sees ACLs
// too.
func (r reader) tun(uid, euid int) (bool, string) {
	p := r.path(TunDevice)
	st, err := os.Stat(p)
	if err != nil {
		return false, TunDevice + " does not exist"
	}
	s := st.Sys().(*syscall.Stat_t)
	mode := st.Mode().Perm()
	switch {
	case euid == 0 && uid == 0, mode&0o006 == 0o006, int(s.Uid) == uid && mode&0o600 == 0o600:
		return true, ""
	case os.Geteuid() == euid && syscall.Access(p, 6 /* R_OK|W_OK */) == nil:
		return true, ""
	}
	return false, fmt.Sprintf("%s is mode %04o, owner uid %d: you cannot open it", TunDevice, mode, s.Uid)
}

// capSysResource is CAP_SYS_RESOURCE's bit (linux/capability.h).
const capSysResource = 24

type reader string

func (r reader) path(p string) string { return filepath.Join(string(r), p) }

func (r reader) read(p string) string {
	b, err := os.ReadFile(r.path(p))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func (r reader) lines(p string) []string {
	s := r.read(p)
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func (r reader) exists(p string) bool {
	_, err := os.Stat(r.path(p))
	return err == nil
}

// owner is the uid owning p, -1 when it cannot be read.
func (r reader) owner(p string) int {
	st, err := os.Stat(r.path(p))
	if err != nil {
		return -1
	}
	return int(st.Sys().(*syscall.Stat_t).Uid)
}

// neededControllers are the controllers a service's limits use.
var neededControllers = []string{"cpu", "memory", "pids"}

func (r reader) cgroup(euid int) Cgroup {
	var c Cgroup
	switch {
	case r.exists("/sys/fs/cgroup/cgroup.controllers"):
		c.Mode = CgroupV2
	case r.exists("/sys/fs/cgroup/unified/cgroup.procs"):
		c.Mode = CgroupHybrid
	default:
		c.Mode = CgroupV1
	}
	for _, line := range r.lines("/proc/self/cgroup") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			if path.Base(p) == SupervisorLeaf {
				p = path.Dir(p)
			}
			c.Own = p
		}
	}
	if c.Mode == CgroupV2 {
		dir := filepath.Join("/sys/fs/cgroup", c.Own)
		c.Controllers = strings.Fields(r.read(filepath.Join(dir, "cgroup.controllers")))
		c.Delegated = c.Own != "" && r.owner(filepath.Join(dir, "cgroup.procs")) == euid &&
			(r.owner(filepath.Join(dir, "cgroup.subtree_control")) == euid || !r.exists(filepath.Join(dir, "cgroup.subtree_control")))
		return c
	}
	// /proc/cgroups: NAME HIERARCHY NUM_CGROUPS ENABLED.
	for _, line := range r.lines("/proc/cgroups") {
		fields := strings.Fields(line)
		if len(fields) == 4 && !strings.HasPrefix(fields[0], "#") && fields[3] == "1" {
			c.Controllers = append(c.Controllers, fields[0])
		}
	}
	for _, ctl := range neededControllers {
		if c.HasController(ctl) && r.owner(filepath.Join("/sys/fs/cgroup", ctl)) != euid {
			c.Unwritable = append(c.Unwritable, ctl)
		}
	}
	c.Delegated = len(c.Unwritable) == 0
	return c
}

func (r reader) appArmor() AppArmor {
	a := AppArmor{RestrictsUserns: r.read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == "1"}
	enabled := strings.HasPrefix(r.read("/sys/module/apparmor/parameters/enabled"), "Y")
	// As libcontainer's apparmor.IsEnabled decides, so that safe-run and
	// libcontainer never disagree about it.
	a.Enabled = enabled && r.exists("/sys/kernel/security/apparmor")
	a.NoSecurityfs = enabled && !a.Enabled
	if a.Enabled {
		if data, err := os.ReadFile(r.path("/sys/kernel/security/apparmor/profiles")); err == nil {
			a.Loaded = parseProfiles(string(data))
		}
	}
	return a
}

// parseProfiles reads the kernel's list of profiles, lines of
// "NAME (MODE)".
func parseProfiles(data string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(data), "\n") {
		i := strings.LastIndex(line, " (")
		if i < 0 || !strings.HasSuffix(line, ")") {
			continue
		}
		out[line[:i]] = line[i+2 : len(line)-1]
	}
	return out
}

// ReadSubIDs parses an /etc/subuid or /etc/subgid file; a missing file has
// no ranges.
func ReadSubIDs(path string) ([]SubIDRange, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []SubIDRange
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(strings.TrimSpace(sc.Text()), ":")
		if len(fields) != 3 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		start, err1 := strconv.ParseUint(fields[1], 10, 32)
		count, err2 := strconv.ParseUint(fields[2], 10, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		out = append(out, SubIDRange{Owner: fields[0], Start: start, Count: count})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return out, nil
}

// Audit is the state of the kernel's audit (Facts.Audit).
type Audit int

const (
	AuditUnknown Audit = iota
	AuditOff
	AuditOn
)
