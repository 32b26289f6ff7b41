package plan

import (
	"maps"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/safe-run/safe-run/image"
	"github.com/safe-run/safe-run/manifest"
	"github.com/safe-run/safe-run/network"
)

// Inputs are what the stages before the spec decided.
type Inputs struct {
	Service  *manifest.Service
	Image    *image.Image
	Seccomp  *specs.LinuxSeccomp // nil: unconfined, which policy only lets through when acknowledged
	AppArmor string              // profile to apply; "" when none applies on this host
	Network  *network.Options    // bridge mode: the namespace and files network.Attach makes; nil otherwise
	// ImageUnknown: Image is empty, its content was not resolved (see
	// Job.ImageUnknown): a user name the image would resolve and a
	// command it would give are left as placeholders (root, none).
	ImageUnknown bool
}

const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Spec turns everything decided so far into one OCI runtime spec. It reads
// the image's /etc/passwd and /etc/group to resolve a user name, and nothing
// else from the host.
func Spec(in Inputs, host Placement) (*specs.Spec, error) {
	s, img := in.Service, in.Image
	user, err := resolveUser(s, img)
	if err != nil && in.ImageUnknown {
		user, err = resolvedUser{home: "/"}, nil
	}
	if err != nil {
		return nil, err
	}
	if user.spec.UID >= host.IDs.Size || user.spec.GID >= host.IDs.Size {
		fix := "it is outside the user namespace"
		if host.IDs.Size == 1 {
			fix = "only the container's root is mapped, since you have no range in /etc/subuid and /etc/subgid (add one as root: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 $USER; or run as user = \"0:0\")"
		}
		return nil, s.Errorf("process.user", "%d:%d cannot run: %s", user.spec.UID, user.spec.GID, fix)
	}
	args := s.Process.Command
	if len(args) == 0 {
		args = append(slices.Clone(img.Config.Entrypoint), img.Config.Cmd...)
	}
	if (len(args) == 0 || args[0] == "") && !in.ImageUnknown {
		return nil, s.Errorf("process.command", "missing, and the image names no program in its entrypoint or cmd (set command = [\"/bin/server\"])")
	}
	if s.Process.Init {
		args = append([]string{InitPath, "--"}, args...)
	}
	cwd := workdir(s, img)
	env, err := environment(s, img, user.home)
	if err != nil {
		return nil, err
	}

	spec := &specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: host.RootfsView(), Readonly: s.Security.ReadOnlyRootfs},
		Process: &specs.Process{
			Terminal:        s.Process.TTY,
			User:            user.spec,
			Args:            args,
			Env:             env,
			Cwd:             cwd,
			Capabilities:    capabilities(s.Security.Capabilities, user.spec.UID != 0),
			Rlimits:         slices.Clone(rlimits), // fitRlimits edits the spec's copy
			NoNewPrivileges: s.Security.NoNewPrivileges,
			ApparmorProfile: in.AppArmor,
		},
		Mounts:      mounts(s, in.Network, host),
		Annotations: annotations(s, img),
		Linux: &specs.Linux{
			UIDMappings:   host.IDMappings(host.IDs.UID),
			GIDMappings:   host.IDMappings(host.IDs.GID),
			Namespaces:    namespaces(s, in.Network),
			Resources:     resources(s, host.CgroupV2),
			CgroupsPath:   host.CgroupPath,
			Seccomp:       in.Seccomp,
			MaskedPaths:   maskedPaths,
			ReadonlyPaths: readonlyPaths,
		},
	}
	if s.Namespaces.UTS != "host" {
		spec.Hostname = s.Name
	}
	return spec, nil
}

// workdir is the service's working directory: the manifest's, else the
// image's, else /.
func workdir(s *manifest.Service, img *image.Image) string {
	switch {
	case s.Process.Workdir != "":
		return s.Process.Workdir
	case img.Config.WorkingDir != "":
		return img.Config.WorkingDir
	}
	return "/"
}

type resolvedUser struct {
	spec specs.User
	home string
}

// environment is the service's: safe-run's defaults, the image's over
// them, the manifest's over those. An entry of the image's config that
// the runtime would refuse (no name, no '=', a NUL) is refused here,
// before the start report: libcontainer's init said only "invalid
// environment variable", naming neither the image nor the entry.
func environment(s *manifest.Service, img *image.Image, home string) ([]string, error) {
	env := []string{defaultPath}
	if s.Namespaces.UTS != "host" {
		env = append(env, "HOSTNAME="+s.Name)
	}
	env = append(env, "HOME="+home)
	if s.Process.TTY {
		env = append(env, "TERM=xterm")
	}
	if s.Process.Notify {
		env = append(env, "NOTIFY_SOCKET="+NotifyPath)
	}
	set := func(kv string) {
		k, _, _ := strings.Cut(kv, "=")
		env = slices.DeleteFunc(env, func(e string) bool { return strings.HasPrefix(e, k+"=") })
		env = append(env, kv)
	}
	var bad []string
	for _, kv := range img.Config.Env {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || k == "" || strings.ContainsRune(kv, 0) {
			bad = append(bad, strconv.Quote(kv))
			continue
		}
		set(kv)
	}
	if len(bad) > 0 {
		return nil, s.Errorf("image", "%s: its config's Env holds %s, not NAME=VALUE (fix the image's ENV, or rebuild it)", imageName(s), strings.Join(bad, ", "))
	}
	for _, k := range slices.Sorted(maps.Keys(s.Process.Env)) {
		set(k + "=" + s.Process.Env[k])
	}
	return env, nil
}

// imageName is the image as the manifest names it.
func imageName(s *manifest.Service) string {
	i := s.Image
	for _, n := range []string{i.Rootfs, i.OCI, i.Archive, i.Ref} {
		if n != "" {
			return n
		}
	}
	return "the image"
}

// capabilities grants exactly the declared set. Inheritable stays empty
// (CVE-2022-29162: an inheritable set wider than intended let file
// capabilities raise privileges), except that the kernel only keeps ambient
// capabilities that are also inheritable; a non-root user, who would
// otherwise lose every capability at execve, gets the declared set in both,
// which is no more than it already holds.
func capabilities(caps []manifest.Capability, nonRoot bool) *specs.LinuxCapabilities {
	names := make([]string, len(caps))
	for i, c := range caps {
		names[i] = string(c)
	}
	slices.Sort(names)
	c := &specs.LinuxCapabilities{Bounding: names, Effective: names, Permitted: names}
	if nonRoot && len(names) > 0 {
		c.Ambient, c.Inheritable = names, names
	}
	return c
}

var rlimits = []specs.POSIXRlimit{
	{Type: "RLIMIT_CORE", Hard: 0, Soft: 0}, // a core dump of the service could hold its secrets
	{Type: "RLIMIT_NOFILE", Hard: 65536, Soft: 1024},
}

// maskedPaths and readonlyPaths are runc's and docker's defaults.
var maskedPaths = []string{
	"/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys",
	"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
	"/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
}

var readonlyPaths = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}

func namespaces(s *manifest.Service, net *network.Options) []specs.LinuxNamespace {
	ns := []specs.LinuxNamespace{{Type: specs.UserNamespace}, {Type: specs.MountNamespace}, {Type: specs.CgroupNamespace}}
	if s.Namespaces.PID != "host" {
		ns = append(ns, specs.LinuxNamespace{Type: specs.PIDNamespace})
	}
	if s.Namespaces.IPC != "host" {
		ns = append(ns, specs.LinuxNamespace{Type: specs.IPCNamespace})
	}
	if s.Namespaces.UTS != "host" {
		ns = append(ns, specs.LinuxNamespace{Type: specs.UTSNamespace})
	}
	switch {
	case net != nil:
		// Made and owned by safe-run, outside the container's user
		// namespace: what capabilities the container holds never apply
		// to its addresses, routes or firewall.
		path, _ := network.Paths(net.StateDir, net.Service, net.Bridge)
		ns = append(ns, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: path})
	case s.Network.Mode != manifest.NetworkHost:
		ns = append(ns, specs.LinuxNamespace{Type: specs.NetworkNamespace})
	}
	return ns
}

// The CFS period a cpus limit is a quota of: 5 ms, not docker's and
// systemd's 100 ms. A service that spends its quota at once on every CPU
// (a hog, or any burst of threads) holds all of them for quota/CPUs of
// each period, and every other service's wakeup waits behind it; in a
// period of 5 ms such a burst lasts at most 2.5 ms on 2 CPUs at cpus =
// 0.5, not 25 ms. Measured with the soak's hogs beside a web service,
// in 1 s slices taken in turn (README, Reliability): the web's p99 was
// 5.3-13 ms with the hogs in 5 ms periods against 8.4-44 ms in 100 ms
// ones (quiet: 1.3-3 ms). The longer period remains only where the
// kernel's least quota (1 ms) needs it, below 0.2 CPUs.
const (
	cpuPeriodShort = 5000   // µs
	cpuPeriodLong  = 100000 // µs, docker's
	cpuQuotaMin    = 1000   // µs, the kernel's least
)

// CPUShares is the CPU weight of a service of cpus, in cgroup v1's
// cpu.shares (1024 a CPU; CPUWeight on v2): its share of a contended CPU
// matches its quota, as Kubernetes sets it from a request. At the
// kernel's 1024, a service of 0.5 CPUs weighs as much as a host task
// entitled to a whole CPU: the fair scheduler advances a running task's
// virtual time in inverse proportion to its weight, and a task that
// wakes up preempts it only once it is ahead (EEVDF's eligibility), so a
// service spending its quota in a burst kept the CPU longer
// against every woken hop of a request beside it (README, Reliability:
// the soak's hogs beside a web service).
//
// Within the kernel's bounds, 2 to 262144 (kernel/sched/sched.h,
// MIN_SHARES and MAX_SHARES): runc turns a larger value into a cpu.weight
// over v2's 10000, which the kernel refuses.
func CPUShares(cpus float64) uint64 {
	return min(max(2, uint64(math.Round(cpus*1024))), 1<<18)
}

// CPUWeight is CPUShares in cgroup v2's cpu.weight: 100 a CPU, from 1 to
// 10000.
func CPUWeight(cpus float64) uint64 {
	return min(max(1, uint64(math.Round(cpus*100))), 10000)
}

// CPUQuota is the CFS quota and period, in µs, that enforce cpus.
func CPUQuota(cpus float64) (quota int64, period uint64) {
	period = cpuPeriodShort
	if need := uint64(math.Ceil(cpuQuotaMin / cpus)); need > period {
		period = min(need, cpuPeriodLong)
	}
	return int64(cpus * float64(period)), period
}

func resources(s *manifest.Service, v2 bool) *specs.LinuxResources {
	r := &specs.LinuxResources{
		Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
		Pids:    &specs.LinuxPids{Limit: &s.Resources.Pids},
	}
	if m := int64(s.Resources.Memory); m > 0 {
		// Swap equal to the limit: no swap on top of it.
		r.Memory = &specs.LinuxMemory{Limit: &m, Swap: &m}
	}
	if res := int64(s.Resources.MemoryReservation); res > 0 {
		if r.Memory == nil {
			r.Memory = &specs.LinuxMemory{}
		}
		r.Memory.Reservation = &res
	}
	if s.Resources.CPUs > 0 {
		quota, period := CPUQuota(s.Resources.CPUs)
		r.CPU = &specs.LinuxCPU{Quota: &quota, Period: &period}
		if v2 {
			// runc's conversion of shares to a weight is not
			// proportional (512 shares: weight 59, not 50).
			r.Unified = map[string]string{"cpu.weight": strconv.FormatUint(CPUWeight(s.Resources.CPUs), 10)}
		} else {
			shares := CPUShares(s.Resources.CPUs)
			r.CPU.Shares = &shares
		}
	}
	if v2 && r.Memory != nil {
		// Kill the whole service on OOM, not one random process of it.
		if r.Unified == nil {
			r.Unified = map[string]string{}
		}
		r.Unified["memory.oom.group"] = "1"
	}
	return r
}

func mounts(s *manifest.Service, net *network.Options, host Placement) []specs.Mount {
	// /dev is noexec (runc's default is not): the container's root may
	// write there, and with Landlock off nothing else kept a program
	// copied there from running. Its devices need no exec; safe-run-init
	// at /dev/init is a bind of its own, which keeps exec.
	ms := []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "noexec", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
	}
	// A shared host namespace cannot get a fresh instance of its file
	// system from inside a user namespace; it gets the host's, read-only
	// where the service has no business writing.
	if s.Namespaces.PID == "host" {
		ms[0] = specs.Mount{Destination: "/proc", Type: "bind", Source: "/proc", Options: []string{"rbind", "nosuid", "noexec", "nodev"}}
	}
	if s.Namespaces.IPC == "host" {
		ms[4] = specs.Mount{Destination: "/dev/mqueue", Type: "bind", Source: "/dev/mqueue", Options: []string{"bind", "nosuid", "noexec", "nodev"}}
	}
	if s.Network.Mode == manifest.NetworkHost {
		ms[5] = specs.Mount{Destination: "/sys", Type: "bind", Source: "/sys", Options: []string{"rbind", "nosuid", "noexec", "nodev", "ro"}}
	}
	if net != nil {
		// The launcher mounts a sysfs of the service's network namespace
		// there: one the container cannot mount (its user namespace
		// does not own that network namespace), showing its own
		// interfaces, not the host's.
		ms[5] = specs.Mount{Destination: "/sys", Type: "bind", Source: host.SysfsDir(), Options: []string{"bind", "nosuid", "noexec", "nodev", "ro"}}
		_, files := network.Paths(net.StateDir, net.Service, net.Bridge)
		for _, f := range []struct{ dst, src string }{{"/etc/resolv.conf", files.ResolvConf}, {"/etc/hosts", files.Hosts}, {"/etc/hostname", files.Hostname}} {
			ms = append(ms, specs.Mount{Destination: f.dst, Type: "bind", Source: f.src, Options: []string{"bind", "ro", "nosuid", "nodev", "noexec"}})
		}
	}
	for _, m := range s.Mounts {
		ms = append(ms, userMount(m, host))
	}
	if len(s.Secrets) > 0 {
		ms = append(ms, specs.Mount{Destination: SecretsPath, Type: "bind", Source: host.SecretsDir(),
			Options: []string{"bind", "ro", "nosuid", "nodev", "noexec"}})
	}
	if s.Process.Notify {
		ms = append(ms, specs.Mount{Destination: NotifyDir, Type: "bind", Source: host.NotifyHostDir(),
			Options: []string{"bind", "ro", "nosuid", "nodev", "noexec"}})
	}
	if s.Process.Init {
		ms = append(ms, initMount(host))
	}
	return ms
}

// initMount puts safe-run-init in the container, read-only: never the
// safe-run binary itself.
func initMount(host Placement) specs.Mount {
	return specs.Mount{Destination: InitPath, Type: "bind", Source: host.InitPath,
		Options: []string{"bind", "ro", "nosuid", "nodev"}}
}

func userMount(m manifest.Mount, host Placement) specs.Mount {
	switch m.Type {
	case manifest.MountTmpfs:
		// exec said out loud: docker's --tmpfs is noexec unless told
		// (the exports copy these options).
		opts := []string{"nosuid", "nodev", "noexec"}
		if slices.Contains(m.Options, "exec") {
			opts[2] = "exec"
		}
		for _, o := range m.Options {
			if o != "exec" && o != "noexec" {
				opts = append(opts, o)
			}
		}
		opts = append(opts, "mode="+strconv.FormatUint(uint64(m.Mode), 8), "size="+strconv.FormatInt(int64(m.Size), 10))
		return specs.Mount{Destination: m.Target, Type: "tmpfs", Source: "tmpfs", Options: opts}
	case manifest.MountVolume:
		return specs.Mount{Destination: m.Target, Type: "bind", Source: filepath.Join(host.VolumeDir, m.Source),
			Options: []string{"bind", rwOption(m), "nosuid", "nodev"}}
	default:
		// Not rbind: mounts below the source on the host stay out, so a
		// bind of /srv cannot carry a later mount of /var/lib/docker at
		// /srv/x into the container.
		return specs.Mount{Destination: m.Target, Type: "bind", Source: m.Source,
			Options: []string{"bind", rwOption(m), "nosuid", "nodev"}}
	}
}

func rwOption(m manifest.Mount) string {
	if m.Writable() {
		return "rw"
	}
	return "ro"
}

func annotations(s *manifest.Service, img *image.Image) map[string]string {
	a := map[string]string{}
	maps.Copy(a, img.Config.Labels)
	maps.Copy(a, s.Labels)
	a[AnnotationManifest] = s.File
	a[AnnotationManifestDigest] = s.Digest
	a[AnnotationRootfs] = img.Rootfs
	a[AnnotationSeccomp] = s.Security.Seccomp
	if img.Digest != "" {
		a[AnnotationImageDigest] = img.Digest
	}
	for name, sec := range s.Secrets {
		a[AnnotationSecretPrefix+name] = sec.File
	}
	return a
}
