package launcher

import (
	"fmt"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/safe-run/safe-run/manifest"
)

// Host holds the facts about this host and this run that the spec depends
// on. Keeping them apart from the manifest lets tests pin the spec with fixed
// facts, and lets `safe-run spec` show what would run without root.
type Host struct {
	StateDir   string // this service's runtime state, e.g. /run/safe-run/web
	VolumeDir  string // where named volumes live, e.g. /var/lib/safe-run/volumes
	InitPath   string // host path of safe-run-init
	IDs        IDMap  // the service's user namespace
	CgroupPath string // OCI cgroupsPath: relative on cgroup v1 (nests per hierarchy), absolute on v2
	CgroupV2   bool
	// Rootless: safe-run runs in a user namespace of its own user (see
	// rootless_linux.go); the rootfs cannot be id-mapped.
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
)

// RootfsView is where the launcher presents the image's root filesystem,
// id-mapped and read-only, for the container.
func (h Host) RootfsView() string { return filepath.Join(h.StateDir, "rootfs") }

// runtimeDir is libcontainer's state root; its state is runtimeDir()/NAME.
func (h Host) runtimeDir() string { return filepath.Join(h.StateDir, "runtime") }

// SeccompAgent is the socket of safe-run's seccomp agent, where
// libcontainer hands over the filter's notification descriptor when
// safe-run added notifications to the filter (rootless seccomp_log, a
// rootless recording).
func (h Host) SeccompAgent() string { return filepath.Join(h.StateDir, "seccomp.sock") }

// SecretsDir is where the launcher fills the private tmpfs of secrets.
func (h Host) SecretsDir() string { return filepath.Join(h.StateDir, "secrets") }

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
func (h Host) IDMappings(base uint32) []specs.LinuxIDMapping {
	if h.Rootless && h.IDs.Size > 1 {
		return []specs.LinuxIDMapping{{ContainerID: 0, HostID: base, Size: 1}, {ContainerID: 1, HostID: base + 1, Size: h.IDs.Size - 1}}
	}
	return []specs.LinuxIDMapping{{ContainerID: 0, HostID: base, Size: h.IDs.Size}}
}

func (m IDMap) String() string {
	return fmt.Sprintf("0-%d -> %d-%d", m.Size-1, m.UID, m.UID+m.Size-1)
}
