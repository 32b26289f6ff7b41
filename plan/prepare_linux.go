package plan

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/apparmor"
	"github.com/safe-run/safe-run/image"
	"github.com/safe-run/safe-run/launcher"
	"github.com/safe-run/safe-run/manifest"
	"github.com/safe-run/safe-run/policy"
	"github.com/safe-run/safe-run/profiles"
)

// Prepared is a service ready to run: what every stage decided, and the
// spec they add up to.
type Prepared struct {
	Service  *manifest.Service
	Image    *image.Image
	AppArmor *apparmor.Profile // nil: none applies; Run loads a generated one
	Spec     *specs.Spec
	Host     launcher.Host
	Notes    []string // what this host does not enforce, for the start report
}

// Options say where safe-run lives on this host.
type Options struct {
	Dirs     launcher.Dirs
	InitPath string
	// Allocate records the service's user namespace range; without it
	// (safe-run spec) the range is only looked up.
	Allocate bool
	// Progress receives image pull and unpack progress; nil: none.
	Progress io.Writer
	// Registry pulls images from registries (image.Options.Registry);
	// nil: an image.ref must be pinned and cached.
	Registry image.Connect
}

// Prepare runs every stage before the launcher on the manifest at path:
// load and validate, enforce the policy, resolve the image, choose the
// profiles, and build the spec.
func Prepare(ctx context.Context, path string, opts Options) (*Prepared, error) {
	svc, err := Load(path)
	if err != nil {
		return nil, err
	}
	if opts.Allocate {
		if err := checkHostPaths(ctx, svc); err != nil {
			return nil, err
		}
	}
	img, err := image.Resolve(ctx, svc, image.Options{Dir: filepath.Join(opts.Dirs.Data, "images"), Progress: opts.Progress, Registry: opts.Registry})
	if err != nil {
		return nil, err
	}
	if opts.Allocate {
		if err := checkWorkdir(svc, img); err != nil {
			return nil, err
		}
	}
	p := &Prepared{Service: svc, Image: img, Notes: img.Notes}
	in := Inputs{Service: svc, Image: img}
	if in.Seccomp, err = seccompProfile(svc); err != nil {
		return nil, err
	}
	if p.AppArmor, err = p.appArmor(); err != nil {
		return nil, err
	}
	if p.AppArmor != nil {
		in.AppArmor = p.AppArmor.Name
	}
	cgroupPath, v2, err := launcher.CgroupPlacement(svc.Name)
	if err != nil {
		return nil, err
	}
	p.Host = launcher.Host{
		StateDir:   filepath.Join(opts.Dirs.State, svc.Name),
		VolumeDir:  filepath.Join(opts.Dirs.Data, "volumes"),
		InitPath:   opts.InitPath,
		CgroupPath: cgroupPath,
		CgroupV2:   v2,
		Rootless:   os.Geteuid() != 0 || launcher.RootlessIDs() > 0,
	}
	if p.Host.Rootless {
		// Inside its own user namespace safe-run maps the container
		// onto the same ids; the namespace itself maps them onto the
		// user's uid and subordinate ids.
		p.Host.IDs = launcher.IDMap{Size: launcher.RootlessIDSize()}
		if err := p.rootlessCgroups(); err != nil {
			return nil, err
		}
	} else if p.Host.IDs, err = launcher.AllocateIDs(opts.Dirs.Data, svc.Name, opts.Allocate); err != nil {
		return nil, err
	}
	if p.Host.Rootless && svc.Security.SeccompLog {
		// The kernel's seccomp log is out of reach from safe-run's own
		// user namespace: the denials worth seeing come to it as
		// notifications instead (see the launcher's watchSeccomp).
		var why string
		if in.Seccomp, why = profiles.NotifyDenials(in.Seccomp, p.Host.SeccompAgent()); why != "" {
			p.Notes = append(p.Notes, "seccomp denials NOT shown: without root the kernel's seccomp log is out of reach, and this profile cannot report them as notifications: "+why)
		}
	}
	if p.Spec, err = Spec(in, p.Host); err != nil {
		return nil, err
	}
	if p.Host.CgroupsWaived {
		// What runs has no limits and no cgroup of its own; the spec
		// says so rather than listing limits nobody enforces.
		p.Spec.Linux.Resources, p.Spec.Linux.CgroupsPath = nil, ""
	}
	p.Notes = append(p.Notes, launcher.FitRlimits(p.Spec, p.Host.Rootless)...)
	if cpus, host := svc.Resources.CPUs, runtime.NumCPU(); cpus > float64(host) {
		// Docker refuses such a limit; a manifest may be written for a
		// bigger host, so safe-run only says it.
		p.Notes = append(p.Notes, fmt.Sprintf("cpus %g is more than this host's %d: the CPU limit never binds here", cpus, host))
	}
	return p, nil
}

// rootlessCgroups checks that the limits can be enforced without root: a
// cgroup v2 subtree delegated to the user with the controllers the limits
// need. Without it libcontainer would run the container with no cgroup at
// all, silently; safe-run refuses unless [insecure] waives the limits.
func (p *Prepared) rootlessCgroups() error {
	r := p.Service.Resources
	var need []string
	if r.CPUs > 0 {
		need = append(need, "cpu")
	}
	if r.Memory > 0 || r.MemoryReservation > 0 {
		need = append(need, "memory")
	}
	need = append(need, "pids")
	missing, where := launcher.UndelegatedControllers(p.Host.CgroupV2, need)
	if len(missing) == 0 {
		return nil
	}
	why := fmt.Sprintf("the controllers %s are not delegated to you in %s", strings.Join(missing, ", "), where)
	if !p.Service.Allows(manifest.AllowNoResourceLimits) {
		return fmt.Errorf("%w: rootless limits: %s (fix: %s; or acknowledge it: [insecure] allow = [\"no_resource_limits\"] with a reason)",
			launcher.ErrHostCannotEnforce, why, launcher.DelegationHint(p.Host.CgroupV2))
	}
	p.Host.CgroupsWaived = true
	p.Notes = append(p.Notes, "limits NOT enforced ([insecure] no_resource_limits): "+why)
	return nil
}

// appArmor decides the service's AppArmor profile from what the kernel
// offers; generating it needs no root, loading it is left to Run.
func (p *Prepared) appArmor() (*apparmor.Profile, error) {
	prof, note, err := apparmor.ForService(p.Service, apparmor.Probe())
	if errors.Is(err, apparmor.ErrNotEnabled) {
		err = fmt.Errorf("%w: %w", launcher.ErrHostCannotEnforce, err)
	}
	if note != "" {
		p.Notes = append(p.Notes, note)
	}
	return prof, err
}

// seccompProfile builds the service's filter for this host's architecture
// and kernel.
func seccompProfile(svc *manifest.Service) (*specs.LinuxSeccomp, error) {
	caps := make([]string, len(svc.Security.Capabilities))
	for i, c := range svc.Security.Capabilities {
		caps[i] = string(c)
	}
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	sc, err := profiles.Seccomp(profiles.Options{
		Profile:      svc.Security.Seccomp,
		Dir:          svc.Dir,
		Capabilities: caps,
		Log:          svc.Security.SeccompLog,
		Arch:         runtime.GOARCH,
		Kernel:       unix.ByteSliceToString(uts.Release[:]),
	})
	if len(manifest.FieldErrors(err)) > 0 {
		return nil, err // at their places in the profile: one position each
	}
	if err != nil {
		return nil, svc.Errorf("security.seccomp", "%w", err)
	}
	return sc, nil
}

// Job is how the launcher runs p: with the state and data of dirs, the
// janitor at janitorPath, and no start report when quiet.
func (p *Prepared) Job(dirs launcher.Dirs, janitorPath string, quiet bool) *launcher.Job {
	return &launcher.Job{
		Spec:                 p.Spec,
		Host:                 p.Host,
		Name:                 p.Service.Name,
		StateRoot:            dirs.State,
		DataDir:              dirs.Data,
		JanitorPath:          janitorPath,
		StopSignal:           p.Service.Process.StopSignal.Number,
		StopTimeout:          time.Duration(p.Service.Process.StopTimeout),
		AllowSensitiveMounts: p.Service.Allows(manifest.AllowSensitiveMounts),
		AppArmor:             p.AppArmor,
		Notes:                p.Notes,
		Quiet:                quiet,
	}
}

// Load loads the manifest at path and enforces the policy on it,
// reporting the problems of both at once.
func Load(path string) (*manifest.Service, error) {
	svc, err := manifest.Load(path)
	if svc == nil {
		return nil, err
	}
	if err := manifest.Merge(err, policy.Enforce(svc)); err != nil {
		return nil, err
	}
	return svc, nil
}

// checkHostPaths refuses, before a start records anything (its id range,
// its state), a root directory, bind and secret sources the launcher
// would refuse when it mounts them, each error at its line of the
// manifest, all at once.
func checkHostPaths(ctx context.Context, svc *manifest.Service) error {
	allow := svc.Allows(manifest.AllowSensitiveMounts)
	var errs []error
	if svc.Image.Rootfs != "" {
		// Only a stat and the policy's path check: nothing is unpacked.
		if _, err := image.Resolve(ctx, svc, image.Options{}); err != nil {
			errs = append(errs, err)
		}
	}
	for i, m := range svc.Mounts {
		if m.Type != manifest.MountBind {
			continue
		}
		if err := launcher.CheckBindSource(m.Source, allow); err != nil {
			errs = append(errs, svc.Errorf(fmt.Sprintf("mounts[%d].source", i), "%w", err))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(svc.Secrets)) {
		if err := launcher.CheckSecretFile(svc.Secrets[name].File, allow); err != nil {
			errs = append(errs, svc.Errorf(manifest.SecretFileKey(name), "%w", err))
		}
	}
	return manifest.Merge(errs...)
}

// checkWorkdir refuses a working directory that is not in a read-only
// image, before libcontainer's init tries to create it there and fails in
// its own words. One under a mount is left to the mount.
func checkWorkdir(svc *manifest.Service, img *image.Image) error {
	cwd := workdir(svc, img)
	if !svc.Security.ReadOnlyRootfs || cwd == "/" {
		return nil
	}
	targets := manifest.ReservedTargets()
	for _, m := range svc.Mounts {
		targets = append(targets, m.Target)
	}
	for _, t := range targets {
		if cwd == t || strings.HasPrefix(cwd, t+"/") {
			return nil
		}
	}
	if h, err := pathrs.OpenInRoot(img.Rootfs, cwd); err == nil {
		st, err := h.Stat()
		h.Close()
		if err == nil && st.IsDir() {
			return nil
		}
	}
	if svc.Process.Workdir == "" {
		return svc.Errorf("image", "the image's working directory %s is not a directory in it (set process.workdir, or mount a tmpfs or volume there)", cwd)
	}
	return svc.Errorf("process.workdir", "%s is not a directory in the image (the root is read-only: create it in the image, or mount a tmpfs or volume there)", cwd)
}
