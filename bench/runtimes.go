package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// The service every runtime starts: /bin/true from example/rootfs with the
// limits a manifest must declare.
const (
	benchMemory = "64M"
	benchCPUs   = "1.0"
	benchPids   = 64
)

// safeRunEnv makes the state and data directories of the safe-run runs and
// returns the environment that points safe-run at them: the bench never
// touches the user's /run/safe-run or /var/lib/safe-run.
func (e *env) safeRunEnv() ([]string, error) {
	state, err := e.dir("safe-run", "state")
	if err != nil {
		return nil, err
	}
	data, err := e.dir("safe-run", "data")
	if err != nil {
		return nil, err
	}
	return append(os.Environ(), "SAFE_RUN_STATE_DIR="+state, "SAFE_RUN_DATA_DIR="+data), nil
}

// manifest writes a manifest for service name running command and returns
// its path.
func (e *env) manifest(name string, command []string, extra string) (string, error) {
	return e.manifestFrom(name, fmt.Sprintf("rootfs = %q", e.rootfs), command, extra)
}

// manifestFrom is manifest with another [image] source.
func (e *env) manifestFrom(name, image string, command []string, extra string) (string, error) {
	dir, err := e.dir("safe-run", "manifests")
	if err != nil {
		return "", err
	}
	q := make([]string, len(command))
	for i, c := range command {
		q[i] = fmt.Sprintf("%q", c)
	}
	text := fmt.Sprintf(`version = 1
name = %q

[image]
%s

[process]
command = [%s]
%s
[resources]
memory = %q
cpus = %s
pids = %d
`, name, image, strings.Join(q, ", "), extra, benchMemory, benchCPUs, benchPids)
	p := filepath.Join(dir, name+".toml")
	return p, os.WriteFile(p, []byte(text), 0o644)
}

func safeRunTrial(name, extra string) func(ctx context.Context, e *env) (*trial, error) {
	return func(ctx context.Context, e *env) (*trial, error) {
		envv, err := e.safeRunEnv()
		if err != nil {
			return nil, err
		}
		m, err := e.manifest(name, []string{"/bin/true"}, extra)
		if err != nil {
			return nil, err
		}
		note := ""
		if extra == "" {
			note = version(e.safeRun(), "version") + "; default manifest (safe-run-init is PID 1), " +
				"idmapped read-only rootfs view; its spec is the one the runc and crun rows run"
		}
		return &trial{run: timedRun(envv, e.safeRun(), "-q", m), note: note}, nil
	}
}

// ociBundle is the spec safe-run would run the bench service with, adapted
// for an OCI runtime CLI; shared by runc and crun.
type ociBundle struct {
	spec  *specs.Spec
	notes []string
}

var bundleOnce struct {
	sync.Once
	b   *ociBundle
	err error
}

// bundle builds, once, what runc and crun run: `safe-run spec` of the bench
// service, so that namespaces, mounts, masked paths, capabilities,
// no_new_privs, rlimits, seccomp and limits are the ones safe-run applies,
// with these changes:
//   - no init: the container runs /bin/true as PID 1;
//   - the rootfs is a copy with every owner shifted into the service's id
//     range, as the idmapped view shows it to the user namespace (neither
//     runc 1.1 nor crun 1.8 id-maps a rootfs);
//   - ociVersion 1.0.2, which crun 1.8 accepts (it refuses newer ones);
//   - no seccomp flags (runc 1.1 refuses them): the same filter, without
//     logging its denials.
func (e *env) bundle(ctx context.Context) (*ociBundle, error) {
	bundleOnce.Do(func() {
		bundleOnce.b, bundleOnce.err = e.makeBundle(ctx)
	})
	return bundleOnce.b, bundleOnce.err
}

func (e *env) makeBundle(ctx context.Context) (*ociBundle, error) {
	envv, err := e.safeRunEnv()
	if err != nil {
		return nil, err
	}
	m, err := e.manifest("bench", []string{"/bin/true"}, "")
	if err != nil {
		return nil, err
	}
	out, err := commandEnv(ctx, envv, e.safeRun(), "spec", m)
	if err != nil {
		return nil, fmt.Errorf("safe-run spec: %w", err)
	}
	var s specs.Spec
	if err := json.Unmarshal(out, &s); err != nil {
		return nil, fmt.Errorf("safe-run spec: %w", err)
	}
	b := &ociBundle{spec: &s}
	s.Version = "1.0.2"
	s.Annotations = nil
	if s.Linux.Seccomp != nil {
		// Debian's runc 1.1 refuses any seccomp flag; the filter is the
		// same without SECCOMP_FILTER_FLAG_LOG, which only logs denials.
		s.Linux.Seccomp.Flags = nil
	}
	// Also "/dev/init --no-init --" (init = false under Landlock).
	if a := s.Process.Args; len(a) > 2 && a[0] == "/dev/init" {
		if a[1] == "--no-init" {
			a = a[1:]
		}
		if a[1] == "--" {
			s.Process.Args = a[2:]
		}
	}
	var mounts []specs.Mount
	for _, mt := range s.Mounts {
		if mt.Destination != "/dev/init" {
			mounts = append(mounts, mt)
		}
	}
	s.Mounts = mounts
	if s.Process.ApparmorProfile != "" {
		b.notes = append(b.notes, "AppArmor profile dropped (safe-run loads its own)")
		s.Process.ApparmorProfile = ""
	}
	if s.Linux == nil || len(s.Linux.UIDMappings) != 1 || len(s.Linux.GIDMappings) != 1 {
		return nil, errors.New("safe-run spec: expected one uid and one gid mapping")
	}
	if s.Linux.Seccomp == nil {
		b.notes = append(b.notes, "no seccomp filter (safe-run's spec has none yet)")
	}
	base := s.Linux.UIDMappings[0].HostID
	rootfs := filepath.Join(e.tmp, "rootfs-shifted")
	if err := copyShifted(ctx, e.rootfs, rootfs, base); err != nil {
		return nil, fmt.Errorf("copying the rootfs: %w", err)
	}
	s.Root.Path = rootfs
	return b, nil
}

// writeBundle writes the bundle for one runtime: its own cgroup, so that
// runs of different runtimes never share one.
func (b *ociBundle) write(e *env, name string) (string, error) {
	dir, err := e.dir("bundles", name)
	if err != nil {
		return "", err
	}
	s := *b.spec
	l := *s.Linux
	l.CgroupsPath = "safe-run-bench-" + name
	s.Linux = &l
	return dir, writeJSON(filepath.Join(dir, "config.json"), &s)
}

func (b *ociBundle) note(v string) string {
	return strings.Join(append([]string{v, "safe-run's spec without init, rootfs copy shifted into the same id range"}, b.notes...), "; ")
}

// installedRunc is the distribution's runc.
func installedRunc(*env) (string, error) { return lookPath("runc") }

// moduleRunc is the runc CLI that make bench builds from the runc module
// in go.mod: the same libcontainer as safe-run, so what differs is only
// what each puts around it.
func moduleRunc(e *env) (string, error) {
	p := filepath.Join(e.repo, "bin", "runc-libcontainer")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s: %w (make bin/runc-libcontainer builds it)", p, errNotInstalled)
	}
	return p, nil
}

func runcTrial(find func(*env) (string, error)) func(context.Context, *env) (*trial, error) {
	return func(ctx context.Context, e *env) (*trial, error) {
		runc, err := find(e)
		if err != nil {
			return nil, err
		}
		b, err := e.bundle(ctx)
		if err != nil {
			return nil, err
		}
		dir, err := b.write(e, "runc")
		if err != nil {
			return nil, err
		}
		state, err := e.dir("runc-state")
		if err != nil {
			return nil, err
		}
		return &trial{
			run:  timedRun(nil, runc, "--root", state, "run", "--bundle", dir, "safe-run-bench-runc"),
			note: b.note(version(runc, "--version")),
		}, nil
	}
}

// hybridCgroups says whether this host mounts cgroup v1 controllers with a
// cgroup2 hierarchy at /sys/fs/cgroup/unified, which crun refuses.
func hybridCgroups() bool {
	var a, b unix.Statfs_t
	return unix.Statfs("/sys/fs/cgroup", &a) == nil && a.Type == unix.TMPFS_MAGIC &&
		unix.Statfs("/sys/fs/cgroup/unified", &b) == nil && b.Type == unix.CGROUP2_SUPER_MAGIC
}

// crunSetup writes crun's bundle and checks whether crun runs on this host
// as it is. On a hybrid host it does not (even with
// --cgroup-manager=disabled); then it runs in a mount namespace where a
// tmpfs hides /sys/fs/cgroup/unified, so that crun sees plain cgroup v1.
type crunSetup struct {
	crun, dir, state string
	refusal          string // crun's own error on the host as it is
	ver              string
	thread           *nsThread
	note             string
}

var crunOnce struct {
	sync.Once
	c   *crunSetup
	err error
}

func (e *env) crun(ctx context.Context) (*crunSetup, error) {
	crunOnce.Do(func() { crunOnce.c, crunOnce.err = e.makeCrun(ctx) })
	return crunOnce.c, crunOnce.err
}

func (e *env) makeCrun(ctx context.Context) (*crunSetup, error) {
	crun, err := lookPath("crun")
	if err != nil {
		return nil, err
	}
	b, err := e.bundle(ctx)
	if err != nil {
		return nil, err
	}
	c := &crunSetup{crun: crun, ver: version(crun, "--version")}
	if c.dir, err = b.write(e, "crun"); err != nil {
		return nil, err
	}
	if c.state, err = e.dir("crun-state"); err != nil {
		return nil, err
	}
	c.note = b.note(c.ver)
	if err := timedRun(nil, c.argv()...)(ctx); err == nil {
		return c, nil
	} else if !hybridCgroups() {
		return nil, err
	} else {
		c.refusal = err.Error()
	}
	c.thread, err = newNSThread(func() error {
		return unix.Mount("none", "/sys/fs/cgroup/unified", "tmpfs", 0, "")
	})
	if err != nil {
		return nil, fmt.Errorf("hiding /sys/fs/cgroup/unified from crun: %w", err)
	}
	e.defer_(c.thread.stop)
	return c, nil
}

func (c *crunSetup) argv() []string {
	return []string{c.crun, "--root", c.state, "run", "--bundle", c.dir, "safe-run-bench-crun"}
}

func crunTrial(ctx context.Context, e *env) (*trial, error) {
	c, err := e.crun(ctx)
	if err != nil {
		return nil, err
	}
	run := timedRun(nil, c.argv()...)
	if c.thread == nil {
		return &trial{run: run, note: c.note}, nil
	}
	return &trial{
		run: func(ctx context.Context) (err error) {
			c.thread.do(func() { err = run(ctx) })
			return err
		},
		note: c.note + "; refuses this hybrid host as it is (" + c.refusal +
			"), so it runs in a mount namespace, made once, where a tmpfs hides /sys/fs/cgroup/unified",
	}, nil
}

// crunWrappedTrial is what running crun on this host really costs per
// start: a fresh mount namespace and the tmpfs every time.
func crunWrappedTrial(ctx context.Context, e *env) (*trial, error) {
	c, err := e.crun(ctx)
	if err != nil {
		return nil, err
	}
	if c.thread == nil {
		return nil, errors.New("not needed: crun runs on this host as it is")
	}
	unshare, err := lookPath("unshare")
	if err != nil {
		return nil, err
	}
	script := "mount -t tmpfs none /sys/fs/cgroup/unified && exec " + strings.Join(c.argv(), " ")
	return &trial{
		run:  timedRun(nil, unshare, "-m", "sh", "-c", script),
		note: "the same, with `unshare -m sh -c 'mount -t tmpfs none /sys/fs/cgroup/unified && exec crun ...'` per start",
	}, nil
}

func bwrapTrial(ctx context.Context, e *env) (*trial, error) {
	bwrap, err := lookPath("bwrap")
	if err != nil {
		return nil, err
	}
	return &trial{
		run: timedRun(nil, bwrap, "--unshare-all", "--uid", "0", "--gid", "0", "--hostname", "bench",
			"--ro-bind", e.rootfs, "/", "--proc", "/proc", "--dev", "/dev", "--cap-drop", "ALL",
			"--new-session", "--die-with-parent", "/bin/true"),
		note: version(bwrap, "--version") + "; all namespaces, read-only root, no caps, no_new_privs; " +
			"but no cgroup limits, no seccomp, no masked /proc paths, and its user namespace maps only " +
			"the caller (uid 0 is host root without capabilities)",
	}, nil
}
