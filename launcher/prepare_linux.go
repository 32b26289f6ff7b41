package launcher

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/opencontainers/runc/libcontainer/apparmor"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/safe-run/safe-run/image"
	"github.com/safe-run/safe-run/manifest"
	"github.com/safe-run/safe-run/policy"
)

// Dirs are where safe-run keeps state (lost at reboot) and data (kept).
type Dirs struct {
	State string // /run/safe-run as root, $XDG_RUNTIME_DIR/safe-run rootless
	Data  string // /var/lib/safe-run as root, $XDG_DATA_HOME/safe-run rootless
}

// DefaultDirs returns the directories for the current user;
// SAFE_RUN_STATE_DIR and SAFE_RUN_DATA_DIR override them (tests, and
// several independent instances on one host).
func DefaultDirs() Dirs {
	d := Dirs{State: "/run/safe-run", Data: "/var/lib/safe-run"}
	if os.Geteuid() != 0 {
		if x := os.Getenv("XDG_RUNTIME_DIR"); x != "" {
			d.State = filepath.Join(x, "safe-run")
		}
		data := os.Getenv("XDG_DATA_HOME")
		if data == "" {
			home, _ := os.UserHomeDir()
			data = filepath.Join(home, ".local", "share")
		}
		d.Data = filepath.Join(data, "safe-run")
	}
	if v := os.Getenv("SAFE_RUN_STATE_DIR"); v != "" {
		d.State = v
	}
	if v := os.Getenv("SAFE_RUN_DATA_DIR"); v != "" {
		d.Data = v
	}
	return d
}

// Prepared is a service ready to run: what every stage decided, and the
// spec they add up to.
type Prepared struct {
	Service *manifest.Service
	Image   *image.Image
	Spec    *specs.Spec
	Host    Host
	Notes   []string // what this host does not enforce, for the start report
}

// PrepareOptions say where safe-run lives on this host.
type PrepareOptions struct {
	Dirs     Dirs
	InitPath string
	// Allocate records the service's user namespace range; without it
	// (safe-run spec) the range is only looked up.
	Allocate bool
	// Progress receives image pull and unpack progress; nil: none.
	Progress io.Writer
}

// Prepare runs every stage before the launcher on the manifest at path:
// load and validate, enforce the policy, resolve the image, choose the
// profiles, and build the spec.
func Prepare(ctx context.Context, path string, opts PrepareOptions) (*Prepared, error) {
	svc, err := manifest.Load(path)
	if err != nil {
		return nil, err
	}
	if err := policy.Enforce(svc); err != nil {
		return nil, err
	}
	img, err := image.Resolve(ctx, svc, image.Options{Dir: filepath.Join(opts.Dirs.Data, "images"), Progress: opts.Progress})
	if err != nil {
		return nil, err
	}
	p := &Prepared{Service: svc, Image: img, Notes: img.Notes}
	in := Inputs{Service: svc, Image: img}
	if in.Seccomp, err = seccompProfile(svc); err != nil {
		return nil, err
	}
	if in.AppArmor, err = p.appArmor(); err != nil {
		return nil, err
	}
	ids, err := AllocateIDs(opts.Dirs.Data, svc.Name, opts.Allocate)
	if err != nil {
		return nil, err
	}
	cgroupPath, v2, err := CgroupPlacement(svc.Name)
	if err != nil {
		return nil, err
	}
	p.Host = Host{
		StateDir:   filepath.Join(opts.Dirs.State, svc.Name),
		VolumeDir:  filepath.Join(opts.Dirs.Data, "volumes"),
		InitPath:   opts.InitPath,
		IDs:        ids,
		CgroupPath: cgroupPath,
		CgroupV2:   v2,
	}
	if p.Spec, err = Spec(in, p.Host); err != nil {
		return nil, err
	}
	p.Notes = append(p.Notes, fitRlimits(p.Spec)...)
	return p, nil
}

// appArmor names the profile to apply, or notes that the kernel has none.
func (p *Prepared) appArmor() (string, error) {
	sec := p.Service.Security
	if sec.AppArmor == "unconfined" {
		return "", nil
	}
	if !apparmor.IsEnabled() {
		if sec.AppArmorRequired {
			return "", fmt.Errorf("%w: %w", ErrHostCannotEnforce, p.Service.Errorf("security.apparmor_required",
				"this kernel has no AppArmor (run on a kernel with AppArmor enabled, or set apparmor_required = false)"))
		}
		p.Notes = append(p.Notes, "AppArmor not enforced: this kernel has no AppArmor")
		return "", nil
	}
	if sec.AppArmor == "generated" {
		return "safe-run-" + p.Service.Name, nil
	}
	return sec.AppArmor, nil
}

// seccompProfile is replaced by package profiles on merge.
func seccompProfile(svc *manifest.Service) (*specs.LinuxSeccomp, error) { return nil, nil }
