package launcher

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"time"

	"github.com/safe-run/safe-run/host"
	"github.com/safe-run/safe-run/image"
	"github.com/safe-run/safe-run/manifest"
	"github.com/safe-run/safe-run/ops"
	"github.com/safe-run/safe-run/plan"
)

// Enforce refuses, before a start records anything, a job this host
// cannot run (plan.Job.Refused), a working directory the image lacks and
// mounts the runtime would refuse or misplace (plan.CheckMounts);
// then it allocates and records the service's user namespace range and
// maps the spec onto it. run and profile record call it, having planned
// the job with CheckPaths; spec, check and export do neither, so that
// they work on any host.
func Enforce(ctx context.Context, job *plan.Job, f host.Facts) error {
	_, err := EnforceWait(ctx, job, f)
	return err
}

// EnforceWait is Enforce that also says how long it waited for a lock on
// the ids (plan.RecordIDs), which --debug logs: none, but once after an
// upgrade, to move ids.json's records (issue 19).
func EnforceWait(ctx context.Context, job *plan.Job, f host.Facts) (idsLockWait time.Duration, err error) {
	if err := job.Refused(); err != nil {
		return 0, err
	}
	// The volumes are judged by the ids Build planned, before a new
	// service's are recorded: a refused start records nothing.
	if err := manifest.Merge(checkSocketPaths(job), plan.CheckWorkdir(job.Service, job.Image), plan.CheckMounts(job.Service, job.Image, job.Placement.VolumeDir), checkVolumes(job)); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if job.Placement.Rootless {
		return 0, nil
	}
	ids, wait, err := plan.RecordIDs(f, job.Dirs.Data, job.Name)
	if err != nil {
		return wait, err
	}
	job.SetIDs(ids)
	return wait, nil
}

// checkVolumes refuses, at its line of the manifest, a volume that
// another service's ids own; ensureVolume checks again on the directory
// it mounts.
func checkVolumes(job *plan.Job) error {
	var errs []error
	for i, m := range job.Service.Mounts {
		if m.Type != manifest.MountVolume {
			continue
		}
		dir := filepath.Join(job.Placement.VolumeDir, m.Source)
		if _, err := volumeOwned(dir, job.Placement.IDs); err != nil {
			errs = append(errs, job.Service.Errorf(fmt.Sprintf("mounts[%d].source", i), "%w", err))
		}
	}
	return manifest.Merge(errs...)
}

// CheckPaths refuses the root directory, bind and secret sources the
// launcher would refuse when it mounts them (see openChecked), each error
// at its line of the manifest, all at once. A start plans its job with it
// (plan.Options.CheckPaths): before the image is pulled or anything
// recorded.
func CheckPaths(ctx context.Context, svc *manifest.Service) error {
	errs := []error{CheckFiles(ctx, svc)}
	// The rootless inner safe-run in a network namespace of its own sees
	// only pasta's copy of the host's addresses: the outer one checked
	// these on the host (internal/rootless.Enter).
	if len(svc.Network.Published) > 0 && !host.Probe().InnerNet {
		addrs, err := host.Addresses()
		if err == nil {
			err = svc.CheckHostAddresses(addrs)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return manifest.Merge(errs...)
}

// CheckFiles is CheckPaths on the files the manifest names (its root
// directory, OCI layout or archive, bind and secret sources) without the
// host's addresses:
// safe-run check reports what it refuses, so that a manifest a start
// refuses never passes check.
func CheckFiles(ctx context.Context, svc *manifest.Service) error {
	allow := svc.Allows(manifest.AllowSensitiveMounts)
	var errs []error
	if svc.Image.Rootfs != "" {
		// Only a stat and the policy's path check: nothing is unpacked.
		if _, err := image.Resolve(ctx, svc, image.Options{}); err != nil {
			errs = append(errs, err)
		}
	} else if err := image.CheckSource(ctx, svc); err != nil {
		// Only a look at the layout's index or the archive's
		// identity, as Resolve takes first.
		errs = append(errs, err)
	}
	for i, m := range svc.Mounts {
		if m.Type != manifest.MountBind {
			continue
		}
		if err := CheckBindSource(m.Source, allow); err != nil {
			errs = append(errs, svc.Errorf(fmt.Sprintf("mounts[%d].source", i), "%w", err))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(svc.Secrets)) {
		if err := CheckSecretFile(svc.Secrets[name].File, allow); err != nil {
			errs = append(errs, svc.Errorf(manifest.SecretFileKey(name), "%w", err))
		}
	}
	return manifest.Merge(errs...)
}

// checkSocketPaths refuses a state directory and name whose sockets
// (the control socket, the seccomp agent's, the notify socket) could not
// be bound: the start failed halfway with "bind: invalid argument", and
// ps showed it starting with no pid.
func checkSocketPaths(job *plan.Job) error {
	h := job.Placement
	longest := filepath.Join(h.StateDir, ops.ControlFile)
	paths := []string{h.SeccompAgent()}
	if job.Service.Process.Notify {
		paths = append(paths, filepath.Join(h.NotifyHostDir(), notifySocket))
	}
	for _, p := range paths {
		if len(p) > len(longest) {
			longest = p
		}
	}
	if len(longest) <= ops.MaxSocketPath {
		return nil
	}
	return job.Service.Errorf("name", "the service's socket %s would be %d bytes long, more than the %d a unix socket's path may have (shorten it by %d: a state directory shorter than %s (SAFE_RUN_STATE_DIR, or XDG_RUNTIME_DIR without root), or a shorter name)",
		longest, len(longest), ops.MaxSocketPath, len(longest)-ops.MaxSocketPath, job.Dirs.State)
}
