package plan

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/safe-run/safe-run/apparmor"
	"github.com/safe-run/safe-run/image"
	"github.com/safe-run/safe-run/landlock"
	"github.com/safe-run/safe-run/manifest"
	"github.com/safe-run/safe-run/network"
)

// JobVersion is the version of Job's JSON, which crosses from
// safe-run-tools to safe-run (internal/handoff): a safe-run that reads
// another version refuses the job rather than guess.
const JobVersion = 1

// Job is one service planned for a run: everything the stages before the
// launcher decided, and the one value the launcher runs. It goes from
// Build to launcher.Enforce and launcher.Run unchanged in shape, in one
// process or, as JSON, across the exec from safe-run-tools to safe-run.
type Job struct {
	Version   int
	Name      string
	Spec      *specs.Spec
	Placement Placement // where the run lives on this host
	Dirs      Dirs      // safe-run's state and data, of all services
	// JanitorPath is safe-run-janitor, which cleans up should safe-run
	// die.
	JanitorPath string
	StopSignal  int // the number of [process] stop_signal
	StopTimeout time.Duration
	// AllowSensitiveMounts: [insecure] allows sensitive_mounts; the
	// launcher skips its real-path check of bind and secret sources.
	AllowSensitiveMounts bool
	// AppArmor is the profile to apply: loaded before the start when
	// generated; nil when none applies here.
	AppArmor *apparmor.Profile
	// Landlock is the ruleset safe-run-init applies before it runs the
	// service; nil when none applies here (Notes say why).
	Landlock *landlock.Ruleset
	// Notes are what this host does not enforce, for the start report.
	Notes []string
	// Network is what the launcher sets up on the host around the
	// container's start (network.Attach); nil in modes none and host.
	Network *network.Options

	// Service and Image are what Build decided from; they do not cross
	// the exec (the launcher needs neither).
	Service *manifest.Service `json:"-"`
	Image   *image.Image      `json:"-"`
	// ImageUnknown: the job was planned without the image's content
	// (Options.NoImage, or an uncached image.ref with Options.Elsewhere):
	// Image is empty, and the spec's user, working directory and
	// command are the manifest's alone; where the manifest leaves them to
	// the image they are placeholders (root, /, none). Such a job is
	// refused (Refused).
	ImageUnknown bool `json:"-"`

	// refused are the reasons this host would refuse the run (wrapping
	// host.ErrCannotEnforce or host.ErrNoSubIDs): Build plans it anyway,
	// for spec and export; launcher.Enforce returns them.
	refused []error
}

// Refused returns why this host would refuse to run the job, or nil.
func (j *Job) Refused() error { return errors.Join(j.refused...) }

// Check reports whether j is one this safe-run can run: the version it
// knows, a spec and a name.
func (j *Job) Check() error {
	switch {
	case j.Version != JobVersion:
		return fmt.Errorf("the job is of version %d, this safe-run runs version %d (install safe-run and safe-run-tools of one release)", j.Version, JobVersion)
	case j.Spec == nil || j.Name == "":
		return errors.New("the job names no spec or service")
	}
	return nil
}

// SetIDs gives the job the user namespace ids, as the launcher allocated
// them, and maps the spec onto them.
func (j *Job) SetIDs(ids IDMap) {
	j.Placement.IDs = ids
	j.Spec.Linux.UIDMappings = j.Placement.IDMappings(ids.UID)
	j.Spec.Linux.GIDMappings = j.Placement.IDMappings(ids.GID)
}

// Dirs are where safe-run keeps state (lost at reboot) and data (kept).
type Dirs struct {
	State string // /run/safe-run as root, $XDG_RUNTIME_DIR/safe-run rootless
	Data  string // /var/lib/safe-run as root, $XDG_DATA_HOME/safe-run rootless
}

// SysfsDir is where the launcher mounts a sysfs of the service's own
// network namespace, which the spec binds at /sys: the container cannot
// mount one itself, since its user namespace does not own that network
// namespace.
func (h Placement) SysfsDir() string { return filepath.Join(h.StateDir, "sys") }

// Placement is where one run lives on this host: the facts of the host and
// of this run that the spec depends on. Kept apart from the manifest, they
// let tests pin the spec with fixed values, and `safe-run spec` show what
// would run without root.
type Placement struct {
	StateDir   string // this service's runtime state, e.g. /run/safe-run/web
	VolumeDir  string // where named volumes live, e.g. /var/lib/safe-run/volumes
	InitPath   string // host path of safe-run-init
	IDs        IDMap  // the service's user namespace
	CgroupPath string // OCI cgroupsPath: relative on cgroup v1 (nests per hierarchy), absolute on v2
	CgroupV2   bool
	// Rootless: safe-run runs in a user namespace of its own user (see
	// internal/rootless); the rootfs cannot be id-mapped.
	Rootless bool
	// CgroupsWaived: the limits cannot be enforced here and [insecure]
	// acknowledges it; the container runs without its own cgroup.
	CgroupsWaived bool
}

// IDMap maps container ids 0..Size-1 onto host ids starting at UID and GID.
type IDMap struct {
	UID, GID uint32
	Size     uint32
}

// Annotation keys safe-run adds besides the manifest's labels.
const (
	AnnotationManifest       = manifest.ReservedLabelPrefix + "manifest"
	AnnotationManifestDigest = manifest.ReservedLabelPrefix + "manifest.digest"
	AnnotationImageDigest    = manifest.ReservedLabelPrefix + "image.digest"
	AnnotationRootfs         = manifest.ReservedLabelPrefix + "rootfs"  // the directory the read-only view presents
	AnnotationSeccomp        = manifest.ReservedLabelPrefix + "seccomp" // the profile the filter was built from
	AnnotationSecretPrefix   = manifest.ReservedLabelPrefix + "secret."
)

// Paths inside the container that safe-run owns.
const (
	InitPath    = "/dev/init"
	SecretsPath = "/run/secrets"
	NotifyDir   = "/run/notify"
	NotifyPath  = NotifyDir + "/notify.sock" // the socket the service sees in NOTIFY_SOCKET
)

// NoInitFlag follows safe-run-init's --control-fd where the manifest says
// init = false and a Landlock ruleset applies: safe-run-init loads the
// confinement, then execs the service in its own place, which stays PID 1
// (cmd/safe-run-init, exec_service).
const NoInitFlag = "--no-init"

// ServiceArgs is the service's own argv: args, a spec's process args,
// without safe-run-init in front of it.
func ServiceArgs(args []string) []string {
	if len(args) < 2 || args[0] != InitPath {
		return args
	}
	rest := args[1:]
	if rest[0] == NoInitFlag {
		rest = rest[1:]
	}
	if len(rest) > 0 && rest[0] == "--" {
		return rest[1:]
	}
	return args
}

// RootfsView is where the launcher presents the image's root filesystem,
// id-mapped and read-only, for the container.
func (h Placement) RootfsView() string { return filepath.Join(h.StateDir, "rootfs") }

// RuntimeDir is libcontainer's state root; its state is RuntimeDir()/NAME.
func (h Placement) RuntimeDir() string { return filepath.Join(h.StateDir, "runtime") }

// SeccompAgent is the socket of safe-run's seccomp agent, where
// libcontainer hands over the filter's notification descriptor when
// safe-run added notifications to the filter (rootless seccomp_log, a
// rootless recording).
func (h Placement) SeccompAgent() string { return filepath.Join(h.StateDir, "seccomp.sock") }

// SecretsDir is where the launcher fills the private tmpfs of secrets.
func (h Placement) SecretsDir() string { return filepath.Join(h.StateDir, "secrets") }

// NotifyHostDir holds the socket the service writes to, on the host.
func (h Placement) NotifyHostDir() string { return filepath.Join(h.StateDir, "notify") }

// SecretFiles returns the secrets a spec asks for: name -> host file.
func SecretFiles(spec *specs.Spec) map[string]string {
	out := map[string]string{}
	for k, v := range spec.Annotations {
		if name, ok := strings.CutPrefix(k, AnnotationSecretPrefix); ok {
			out[name] = v
		}
	}
	return out
}

// IDMappings maps container ids 0..Size-1 from base. Rootless, safe-run's
// own user namespace maps 0 to the user and 1.. to their subordinate ids;
// the kernel only accepts a nested extent that lies within one extent of
// its parent's map, so the container's map mirrors that split.
func (h Placement) IDMappings(base uint32) []specs.LinuxIDMapping {
	if h.Rootless && h.IDs.Size > 1 {
		return []specs.LinuxIDMapping{{ContainerID: 0, HostID: base, Size: 1}, {ContainerID: 1, HostID: base + 1, Size: h.IDs.Size - 1}}
	}
	return []specs.LinuxIDMapping{{ContainerID: 0, HostID: base, Size: h.IDs.Size}}
}

func (m IDMap) String() string {
	return fmt.Sprintf("0-%d -> %d-%d", m.Size-1, m.UID, m.UID+m.Size-1)
}
