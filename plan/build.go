package plan

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/safe-run/safe-run/apparmor"
	"github.com/safe-run/safe-run/host"
	"github.com/safe-run/safe-run/image"
	"github.com/safe-run/safe-run/landlock"
	"github.com/safe-run/safe-run/manifest"
	"github.com/safe-run/safe-run/policy"
	"github.com/safe-run/safe-run/profiles"
)

// Options say where safe-run lives on this host.
type Options struct {
	Dirs        Dirs
	InitPath    string // safe-run-init
	JanitorPath string // safe-run-janitor
	// Progress receives image pull and unpack progress; nil: none.
	Progress io.Writer
	// Registry pulls images from registries (image.Options.Registry);
	// nil: an image.ref must be pinned and cached.
	Registry image.Connect
	// CheckPaths, when set, checks the manifest's host paths before the
	// image is resolved: a start passes launcher.CheckPaths, so that what
	// the launcher would refuse is refused before anything is pulled,
	// with the rootfs's problems, all at once. spec, export and check
	// leave it nil: they work on any host.
	CheckPaths func(context.Context, *manifest.Service) error
	// Logger receives what goes wrong without failing the plan (the image
	// cache's clean-ups); nil: discarded.
	Logger *slog.Logger
	// Elsewhere plans the job for another machine, as export does: the
	// image is never pulled (Registry is not used; an image.ref this
	// host has not cached is planned without its content, see
	// Job.ImageUnknown), and nothing of this host's own limits is
	// fitted into the spec (the RLIMIT hard limits safe-run could not
	// raise here: the spec keeps the manifest's, or safe-run's defaults).
	Elsewhere bool
	// NoImage plans without resolving the image at all (Job.ImageUnknown),
	// for what needs none: a systemd unit runs safe-run, which resolves
	// the image where the unit runs.
	NoImage bool
}

// Build runs every stage before the launcher on the manifest at path: load
// and validate, enforce the policy, resolve the image, choose the
// profiles, and build the spec, for the host f describes. It changes
// nothing on the host (an image pulled or unpacked goes to the cache), and
// records nothing.
//
// What the manifest asks and this host cannot give (limits without a
// delegated cgroup, required AppArmor, a user namespace range) does not
// fail Build: the job is planned as the run would be, and Job.Refused
// says why the run would be refused. spec and export work on any host;
// launcher.Enforce refuses before a start.
func Build(ctx context.Context, path string, f host.Facts, opts Options) (*Job, error) {
	svc, err := Load(path)
	if err != nil {
		return nil, err
	}
	if opts.CheckPaths != nil {
		if err := opts.CheckPaths(ctx, svc); err != nil {
			return nil, err
		}
	}
	img, unknown, err := resolveImage(ctx, svc, opts)
	if err != nil {
		return nil, err
	}
	j := &Job{
		Version:              JobVersion,
		Name:                 svc.Name,
		Dirs:                 opts.Dirs,
		JanitorPath:          opts.JanitorPath,
		StopSignal:           svc.Process.StopSignal.Number,
		StopTimeout:          time.Duration(svc.Process.StopTimeout),
		AllowSensitiveMounts: svc.Allows(manifest.AllowSensitiveMounts),
		Notes:                slices.Clone(img.Notes),
		Service:              svc,
		Image:                img,
		ImageUnknown:         unknown,
	}
	if unknown {
		// Planned from the manifest alone: nothing of the image to run.
		j.refused = append(j.refused, fmt.Errorf("%w: the image was not resolved (planned for another machine)", host.ErrCannotEnforce))
	}
	j.Network = NetworkOptions(svc, opts.Dirs)
	in := Inputs{Service: svc, Image: img, Network: j.Network, ImageUnknown: unknown}
	if in.Seccomp, err = SeccompProfile(svc, f); err != nil {
		return nil, err
	}
	if n := profiles.InitCallsNote(seccompOptions(svc, f)); n != "" {
		j.Notes = append(j.Notes, n)
	}
	if err := j.appArmor(f); err != nil {
		return nil, err
	}
	if j.AppArmor != nil {
		in.AppArmor = j.AppArmor.Name
	}
	j.Placement = Placement{
		StateDir:   filepath.Join(opts.Dirs.State, svc.Name),
		VolumeDir:  filepath.Join(opts.Dirs.Data, "volumes"),
		InitPath:   opts.InitPath,
		CgroupPath: cgroupPlacement(f.Cgroup, svc.Name),
		CgroupV2:   f.Cgroup.Mode == host.CgroupV2,
		Rootless:   f.Rootless(),
	}
	if j.Placement.Rootless {
		// Inside its own user namespace safe-run maps the container
		// onto the same ids; the namespace itself maps them onto the
		// user's uid and subordinate ids.
		j.Placement.IDs = IDMap{Size: f.RootlessIDSize()}
		j.rootlessCgroups(f.Cgroup)
		if j.Network != nil {
			j.rootlessNetwork(f)
		}
	} else if j.Placement.IDs, err = AllocateIDs(f, opts.Dirs.Data, svc.Name, false); err != nil {
		// The spec shows the size of the namespace; where its ids
		// would lie is what the host lacks.
		j.Placement.IDs = IDMap{Size: host.IDRangeSize}
		j.refused = append(j.refused, err)
	}
	if j.Placement.Rootless && svc.Security.SeccompLog {
		// The kernel's seccomp log is out of reach from safe-run's own
		// user namespace: the denials worth seeing come to it as
		// notifications instead (see the launcher's watchSeccomp).
		var why string
		if in.Seccomp, why = profiles.NotifyDenials(in.Seccomp, j.Placement.SeccompAgent()); why != "" {
			j.Notes = append(j.Notes, "seccomp denials NOT shown: without root the kernel's seccomp log is out of reach, and this profile cannot report them as notifications: "+why)
		}
	}
	if j.Spec, err = Spec(in, j.Placement); err != nil {
		return nil, err
	}
	if j.Placement.CgroupsWaived {
		// What runs has no limits and no cgroup of its own; the spec
		// says so rather than listing limits nobody enforces.
		j.Spec.Linux.Resources, j.Spec.Linux.CgroupsPath = nil, ""
	}
	if err := j.landlock(f.LandlockABI); err != nil {
		return nil, err
	}
	if !opts.Elsewhere {
		j.Notes = append(j.Notes, fitRlimits(j.Spec, f)...)
	}
	if cpus := svc.Resources.CPUs; f.CPUs > 0 && cpus > float64(f.CPUs) {
		// Docker refuses such a limit; a manifest may be written for a
		// bigger host, so safe-run only says it.
		j.Notes = append(j.Notes, fmt.Sprintf("cpus %g is more than this host's %d: the CPU limit never binds here", cpus, f.CPUs))
	}
	if mem := svc.Resources.Memory; f.Memory > 0 && uint64(mem) > f.Memory {
		j.Notes = append(j.Notes, fmt.Sprintf("memory %s is more than this host's %.1fG: the memory limit never binds here, the host's own OOM killer does", mem, float64(f.Memory)/(1<<30)))
	}
	return j, nil
}

// resolveImage resolves the service's image as opts say, and reports
// whether it is unknown: not resolved (NoImage), or an image.ref to be
// pulled where the job is planned for another machine (Elsewhere).
func resolveImage(ctx context.Context, svc *manifest.Service, opts Options) (*image.Image, bool, error) {
	if opts.NoImage {
		return &image.Image{}, true, nil
	}
	iopts := image.Options{Dir: filepath.Join(opts.Dirs.Data, "images"), Progress: opts.Progress, Registry: opts.Registry, Logger: opts.Logger}
	if opts.Elsewhere {
		// The cache only: an export must not need the network, nor
		// pull what runs elsewhere.
		iopts.Registry = nil
	}
	img, err := image.Resolve(ctx, svc, iopts)
	if opts.Elsewhere && errors.Is(err, image.ErrRegistryNeeded) {
		return &image.Image{}, true, nil
	}
	return img, false, err
}

// rootlessCgroups checks that the limits can be enforced without root: a
// cgroup v2 subtree delegated to the user with the controllers the limits
// need. Without it libcontainer would run the container with no cgroup at
// all, silently; safe-run refuses unless [insecure] waives the limits.
func (j *Job) rootlessCgroups(c host.Cgroup) {
	missing, where := undelegated(c, neededControllers(j.Service.Resources))
	if len(missing) == 0 {
		return
	}
	why := fmt.Sprintf("the controllers %s are not delegated to you in %s", strings.Join(missing, ", "), where)
	if !j.Service.Allows(manifest.AllowNoResourceLimits) {
		j.refused = append(j.refused, fmt.Errorf("%w: rootless limits: %s (fix: %s; or acknowledge it: [insecure] allow = [\"no_resource_limits\"] with a reason)",
			host.ErrCannotEnforce, why, delegationHint(c)))
		return
	}
	j.Placement.CgroupsWaived = true
	j.Notes = append(j.Notes, "limits NOT enforced ([insecure] no_resource_limits): "+why)
}

// neededControllers are the cgroup controllers the limits r use.
func neededControllers(r manifest.Resources) []string {
	var need []string
	if r.CPUs > 0 {
		need = append(need, "cpu")
	}
	if r.Memory > 0 || r.MemoryReservation > 0 {
		need = append(need, "memory")
	}
	return append(need, "pids")
}

// appArmor decides the service's AppArmor profile from what the kernel
// offers; generating it needs no root, loading it is left to the launcher.
func (j *Job) appArmor(f host.Facts) error {
	prof, note, err := apparmor.ForService(j.Service, apparmor.Host{Enabled: f.AppArmor.Enabled, NoSecurityfs: f.AppArmor.NoSecurityfs, Loaded: f.AppArmor.Loaded})
	if note != "" {
		j.Notes = append(j.Notes, note)
	}
	if errors.Is(err, apparmor.ErrNotEnabled) {
		j.refused = append(j.refused, fmt.Errorf("%w: %w", host.ErrCannotEnforce, err))
		return nil
	}
	j.AppArmor = prof
	return err
}

// landlock generates the service's Landlock ruleset, for the kernel's
// ABI, from the spec's mounts and the image's entries; safe-run-init
// applies it. With init = false libcontainer's init would exec the
// service itself, with no step between the mounts and that exec: the
// spec then starts safe-run-init with NoInitFlag, which applies the
// ruleset and execs the service in its own place.
func (j *Job) landlock(abi int) error {
	var img fs.FS
	if j.Image != nil && j.Image.Rootfs != "" {
		img = os.DirFS(j.Image.Rootfs)
	}
	r, note, err := landlock.ForService(landlock.Input{
		Service: j.Service, Mounts: j.Spec.Mounts, Devices: j.Spec.Linux.Devices,
		Terminal: j.Spec.Process.Terminal, Image: img, ABI: abi,
	})
	if note != "" {
		j.Notes = append(j.Notes, note)
	}
	if errors.Is(err, landlock.ErrNotInKernel) {
		j.refused = append(j.refused, fmt.Errorf("%w: %w", host.ErrCannotEnforce, err))
		return nil
	}
	j.Landlock = r
	if r != nil && !j.Service.Process.Init {
		j.Spec.Process.Args = append([]string{InitPath, NoInitFlag, "--"}, j.Spec.Process.Args...)
		j.Spec.Mounts = append(j.Spec.Mounts, initMount(j.Placement))
	}
	return err
}

// SeccompProfile builds the service's filter for this host's architecture
// and kernel.
func SeccompProfile(svc *manifest.Service, f host.Facts) (*specs.LinuxSeccomp, error) {
	opts := seccompOptions(svc, f)
	sc, err := profiles.Seccomp(opts)
	if len(manifest.FieldErrors(err)) > 0 {
		return nil, err // at their places in the profile: one position each
	}
	if err != nil {
		return nil, svc.Errorf("security.seccomp", "%w", err)
	}
	// A custom profile that lets an escape through is, for policy, no filter (SR012).
	if err := policy.SeccompEscapes(svc, profiles.Escapes(sc, opts.Capabilities, f.Arch)); err != nil {
		return nil, err
	}
	return sc, nil
}

// seccompOptions are the profile options of svc on the host f.
func seccompOptions(svc *manifest.Service, f host.Facts) profiles.Options {
	caps := make([]string, len(svc.Security.Capabilities))
	for i, c := range svc.Security.Capabilities {
		caps[i] = string(c)
	}
	return profiles.Options{
		Profile:      svc.Security.Seccomp,
		Dir:          svc.Dir,
		Capabilities: caps,
		Log:          svc.Security.SeccompLog,
		Arch:         f.Arch,
		Kernel:       f.Kernel,
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

// CheckWorkdir refuses a working directory that is not in a read-only
// image, before libcontainer's init tries to create it there and fails in
// its own words. One under a mount is left to the mount.
func CheckWorkdir(svc *manifest.Service, img *image.Image) error {
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
