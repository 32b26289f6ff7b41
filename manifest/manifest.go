package manifest

import "slices"

// Service is a validated manifest, version 1, with every default filled in.
// The toml tags are the manifest's key names; the decoder refuses any key that
// has no field here.
type Service struct {
	Version    int               `toml:"version"`
	Name       string            `toml:"name"`
	Image      Image             `toml:"image"`
	Process    Process           `toml:"process"`
	Security   Security          `toml:"security"`
	Resources  Resources         `toml:"resources"`
	Mounts     []Mount           `toml:"mounts"`
	Network    Network           `toml:"network"`
	Namespaces Namespaces        `toml:"namespaces"`
	Secrets    map[string]Secret `toml:"secrets"`
	Labels     map[string]string `toml:"labels"` // keys under ReservedLabelPrefix are refused
	Insecure   Insecure          `toml:"insecure"`

	// Where the manifest came from; not TOML keys.
	File   string `toml:"-"` // path as given to Load
	Dir    string `toml:"-"` // absolute directory of File: relative paths start here
	Digest string `toml:"-"` // sha256:<hex> of the file's bytes

	lines lineIndex
}

// Image names exactly one source of the root filesystem.
type Image struct {
	Rootfs  string `toml:"rootfs"`  // directory, absolute after Load; never modified
	OCI     string `toml:"oci"`     // OCI image layout "dir:tag" (see SplitOCI), dir absolute after Load; ":tag" optional when it holds one image
	Archive string `toml:"archive"` // docker save or OCI archive, gzipped or not; absolute after Load
	Ref     string `toml:"ref"`     // registry reference; policy refuses it unpinned (SR018)
}

// Process is what runs inside the container and how it is stopped.
type Process struct {
	Command     []string          `toml:"command"`
	Env         map[string]string `toml:"env"`
	User        string            `toml:"user"`    // "uid[:gid]" or "name[:group]"; empty: the image's user, else 0
	Workdir     string            `toml:"workdir"` // absolute, resolved inside the container root
	Init        bool              `toml:"init"`    // a minimal init as PID 1
	TTY         bool              `toml:"tty"`
	Notify      bool              `toml:"notify"` // the service speaks sd_notify itself
	StopSignal  Signal            `toml:"stop_signal"`
	StopTimeout Duration          `toml:"stop_timeout"`
	Restart     string            `toml:"restart"` // no | on-failure | always; for exports
}

// Security holds the confinement settings.
type Security struct {
	Capabilities     []Capability `toml:"capabilities"` // added to an empty set
	NoNewPrivileges  bool         `toml:"no_new_privileges"`
	ReadOnlyRootfs   bool         `toml:"read_only_rootfs"`
	Seccomp          string       `toml:"seccomp"` // default | strict | unconfined | path to a JSON profile (absolute after Load)
	SeccompLog       bool         `toml:"seccomp_log"`
	AppArmor         string       `toml:"apparmor"`      // generated | unconfined | name of a loaded profile
	AppArmorMode     string       `toml:"apparmor_mode"` // enforce | complain
	AppArmorRequired bool         `toml:"apparmor_required"`
	// Landlock is "generated" (the ruleset follows from the manifest,
	// package landlock) or "off" ([insecure] landlock_off).
	Landlock         string `toml:"landlock"`
	LandlockRequired bool   `toml:"landlock_required"` // refuse to start where the kernel has no Landlock
	// LandlockBind are TCP ports the service may bind besides the
	// container ports of [network] ports: for a service that listens
	// without publishing (network mode none, or reached by its peers).
	LandlockBind []int `toml:"landlock_bind"`
}

// Resources are the cgroup limits. Zero means not set.
type Resources struct {
	Memory            Size    `toml:"memory"`
	MemoryReservation Size    `toml:"memory_reservation"`
	CPUs              float64 `toml:"cpus"`
	Pids              int64   `toml:"pids"`
}

// Mount types.
const (
	MountTmpfs  = "tmpfs"
	MountVolume = "volume"
	MountBind   = "bind"
)

// Mount is one [[mounts]] entry.
type Mount struct {
	Type     string   `toml:"type"`
	Target   string   `toml:"target"`
	Source   string   `toml:"source"`    // volume name, or host path (absolute after Load) for a bind
	ReadOnly *bool    `toml:"read_only"` // nil until Load applies the type's default
	Size     Size     `toml:"size"`      // tmpfs
	Mode     FileMode `toml:"mode"`      // tmpfs
	Options  []string `toml:"options"`   // tmpfs
}

// Writable reports whether the container may write to the mount.
func (m Mount) Writable() bool {
	if m.Type == MountTmpfs {
		for _, o := range m.Options {
			if o == "ro" {
				return false
			}
		}
		return true
	}
	return m.ReadOnly != nil && !*m.ReadOnly
}

// Network modes.
const (
	NetworkNone   = "none"
	NetworkHost   = "host"
	NetworkBridge = "bridge"
)

// Namespaces shares a host namespace when set to "host"; the default is a
// private namespace. The network namespace is [network] mode, and the user
// namespace is never shared.
type Namespaces struct {
	PID string `toml:"pid"`
	IPC string `toml:"ipc"`
	UTS string `toml:"uts"`
}

// Secret is a file on the host that the service reads at
// /run/secrets/NAME.
type Secret struct {
	File string `toml:"file"` // absolute after Load
}

// SecretFileKey is the key path of secret name's file, for errors about it.
func SecretFileKey(name string) string { return joinKey("secrets", name) + ".file" }

// Insecure names every loosening of the secure defaults, with one reason.
type Insecure struct {
	Reason string   `toml:"reason"`
	Allow  []string `toml:"allow"`
}

// The [insecure] allow items.
const (
	AllowHostNetwork           = "host_network"
	AllowHostPID               = "host_pid"
	AllowHostIPC               = "host_ipc"
	AllowHostUTS               = "host_uts"
	AllowDangerousCapabilities = "dangerous_capabilities"
	AllowNewPrivileges         = "new_privileges"
	AllowWritableRootfs        = "writable_rootfs"
	AllowNoResourceLimits      = "no_resource_limits"
	AllowSeccompUnconfined     = "seccomp_unconfined"
	AllowAppArmorUnconfined    = "apparmor_unconfined"
	AllowSensitiveMounts       = "sensitive_mounts"
	AllowUnpinnedImage         = "unpinned_image"
	AllowInsecureRegistry      = "insecure_registry"
	AllowSetuidBinaries        = "setuid_binaries"
	AllowLandlockOff           = "landlock_off"
)

// AllowItems returns every accepted [insecure] allow item, a new slice
// each call.
func AllowItems() []string { return slices.Clone(allowItems) }

var allowItems = []string{
	AllowHostNetwork, AllowHostPID, AllowHostIPC, AllowHostUTS,
	AllowDangerousCapabilities, AllowNewPrivileges, AllowWritableRootfs,
	AllowNoResourceLimits, AllowSeccompUnconfined, AllowAppArmorUnconfined,
	AllowSensitiveMounts, AllowUnpinnedImage, AllowInsecureRegistry,
	AllowSetuidBinaries, AllowLandlockOff,
}

// Allows reports whether [insecure] acknowledges item.
func (s *Service) Allows(item string) bool {
	for _, a := range s.Insecure.Allow {
		if a == item {
			return true
		}
	}
	return false
}

// defaults returns a Service holding every default of manifest v1; decoding
// overwrites what the file sets.
func defaults() Service {
	return Service{
		Process: Process{
			Init:        true,
			StopSignal:  Signal{"SIGTERM", 15},
			StopTimeout: Duration(10e9),
			Restart:     "on-failure",
		},
		Security: Security{
			NoNewPrivileges: true,
			ReadOnlyRootfs:  true,
			Seccomp:         "default",
			SeccompLog:      true,
			AppArmor:        "generated",
			AppArmorMode:    "enforce",
			Landlock:        "generated",
		},
		Resources: Resources{Pids: 1024},
		Network:   Network{Mode: NetworkNone},
	}
}

// ReservedLabelPrefix starts the annotations safe-run adds itself (the
// manifest's digest, the image's): a label may not pass for one of them.
const ReservedLabelPrefix = "run.safe-run."
