package launcher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/console"
	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/manager"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/apparmor"
	"github.com/safe-run/safe-run/manifest"
	"github.com/safe-run/safe-run/network"
	"github.com/safe-run/safe-run/ops"
	"github.com/safe-run/safe-run/plan"
	"github.com/safe-run/safe-run/profiles"
)

// Options are what one run needs besides its job: where its output goes,
// and what the caller set up beforehand.
type Options struct {
	Stdio      Stdio
	Report     io.Writer // start report; nil for none
	Ending     io.Writer // the one line saying why the service did not end cleanly; nil for none
	Violations io.Writer // seccomp denials as they happen (seccomp_log); nil for none
	// Logger receives what goes wrong without failing the run (a
	// clean-up, a cache write); nil: discarded.
	Logger  *slog.Logger
	Signals *Signals // subscribed by the caller beforehand, and not ended by Run; nil: Run subscribes, and ends it

	Record *profiles.Recording // set by Record: record the calls the service makes

	accesses *accessWatch // set by Record: watch what Landlock would deny
}

// runOpts are one run's options: the caller's, the job as planned (a
// copy, whose Notes the run adds to; the one value from plan.Build on, no
// field of it carried over by hand), and what the run makes.
type runOpts struct {
	Options
	plan.Job
	net           *network.Attachment
	pub           *publisher // status, control socket, events
	execs         *execer    // starts safe-run exec's commands, once the container exists
	denials       io.Writer  // egress denials: Violations, and events
	landlockShown bool       // the kernel audits Landlock's denials, and safe-run reads them
}

// Run starts job's spec as a container, supervises it in the foreground
// and returns its exit status: its own code, or 128+N when signal N killed
// it. A cancelled ctx stops it: the stop signal, then SIGKILL after the
// stop timeout. Whatever happens, Run removes every cgroup, mount and file
// it created. The job must have passed Enforce.
func Run(ctx context.Context, job *plan.Job, o Options) (int, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if e := Stopped(ctx); e != nil {
		return 0, e
	}
	holdListenFDs(job) // before any child: the janitor, the container
	// Before any thread or child that should inherit it: the port
	// forwarder's, the container's processes.
	shortenSlices(o.Logger)
	spec, host := job.Spec, job.Placement
	// A network of its own: its namespace is made from here on, beside
	// everything else; the container waits for it (netStart.waitNamespace).
	var netns *network.Namespace
	if job.Network != nil {
		netns = network.StartNamespace()
		defer netns.Discard() // unless Attach took it
	}
	opts := runOpts{Options: o, Job: *job}
	opts.Notes = slices.Clone(job.Notes)
	// What finishes in the background once the container has exited
	// (the seccomp watcher's last records, the janitor's exit) is waited
	// for last, while the rest of the clean-up goes on.
	var ending sync.WaitGroup
	// The journal closes after those: the seccomp watcher's last
	// records, which may come after the exit on a loaded host, are
	// events too.
	defer func() { opts.pub.closeJournal() }()
	defer ending.Wait()
	early := startEarly(host, opts.Signals)
	defer early.stop()
	if err := os.MkdirAll(opts.Dirs.State, 0o711); err != nil {
		return 0, fmt.Errorf("creating state directory: %w", err)
	}
	began := time.Now()
	lock, err := lockName(opts.Dirs.State, opts.Name)
	if err != nil {
		return 0, err
	}
	// The soak measures every lock's wait from these lines (issue 19: a
	// start waits only on what its name guards).
	opts.Logger.Debug("name lock taken", "service", opts.Name, "lock_wait", time.Since(began))
	defer lock.release(opts.Logger)
	upperDir := filepath.Join(opts.Dirs.Data, "containers", opts.Name)
	if cleaned, err := cleanLeftovers(host, opts.Name, upperDir, opts.Logger); err != nil {
		return 0, err
	} else if cleaned {
		opts.Notes = append(opts.Notes, "cleaned up what a previous run that died had left")
	}
	var rangeLock *idRangeLock
	if !host.Rootless {
		var other string
		if rangeLock, other = holdIDRange(host.IDs, opts.Name); rangeLock != nil {
			defer rangeLock.release()
		} else if other != "" {
			opts.Notes = append(opts.Notes, fmt.Sprintf("its ids (%s) are in use by service %s, whose ids another data directory allotted: the two share host ids, and each other's seccomp denials; use one data directory per host (SAFE_RUN_DATA_DIR)", host.IDs, other))
		}
	}
	if err := preflightCommand(spec); err != nil {
		return 0, err
	}
	// Every process safe-run starts (apparmor_parser, the janitor) is born
	// in its cgroup: on v2, only once safe-run has moved into its
	// supervisor leaf, or one could be there when the cgroup, which must
	// hold no process to delegate controllers, enables them.
	if err := <-early.cgroup; err != nil {
		return 0, err
	}
	if err := loadAppArmor(ctx, spec, host, opts); err != nil {
		return 0, err
	}
	config, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{CgroupName: opts.Name, Spec: spec, RootlessCgroups: host.CgroupsWaived})
	if err != nil {
		return 0, fmt.Errorf("converting the spec: %w", err)
	}
	// Create does not carry RootlessCgroups over into the cgroup
	// configuration, where the manager reads it.
	config.Cgroups.Rootless = host.CgroupsWaived
	config.ParentDeathSignal = int(unix.SIGKILL)
	if err := os.Mkdir(host.StateDir, 0o711); err != nil {
		return 0, fmt.Errorf("creating state directory: %w", err)
	}
	// Closed last: a `safe-run stop` waits for that, with everything
	// cleaned up. Once what ends in the background has ended: the
	// watcher's last lines (what it drains once the service has exited,
	// its summaries of suppressed denials) go to the journal too.
	opts.pub = newPublisher(spec, host, opts)
	defer func() {
		ending.Wait()
		opts.pub.close()
	}()
	opts.denials = opts.pub.violations(ops.EventEgress, opts.Violations)
	opts.Violations = opts.pub.violations(ops.EventSeccomp, opts.Violations)
	var llNote string
	if opts.landlockShown, llNote = landlockAudit(opts, host); llNote != "" {
		opts.Notes = append(opts.Notes, llNote)
	}
	r := &run{spec: spec, config: config, host: host, opts: opts, upperDir: upperDir, early: early, lock: lock, ending: &ending}
	if r.init, err = newInitLink(spec, config, opts); err != nil {
		return 0, err
	}
	// The janitor goes last, once everything it would remove is gone.
	// It starts now: its fork and exec overlap the rest of the set-up.
	defer r.dismissJanitor()
	// Rootless, the service's network namespace is bind-mounted in this
	// process's mount namespace, under the state directory the janitor
	// removes: the janitor gets a copy of the mount namespace from before,
	// where that file is no mount point and can go. The network of a
	// bridge of its own dies with the rootless namespace: nothing for the
	// janitor to run then.
	// A named bridge's network is the user's shared namespace's, which
	// outlives this run: the janitor cleans up there as root's does on
	// the host.
	ownMounts := job.Network != nil && host.Rootless
	var then []string
	if !host.Rootless || job.Network != nil && job.Network.Bridge != "" {
		then = networkCleanup(job.Network)
	}
	removes := r.removeDirs()
	if rangeLock != nil {
		removes = append(removes, rangeLock.path)
	}
	if r.janitor, err = startJanitor(opts.JanitorPath, lock, removes, then, ownMounts); err != nil {
		return 0, fmt.Errorf("starting the janitor: %w", err)
	}
	if ownMounts {
		<-r.janitor.started
	}
	// After the network is detached (deferred below, so run before
	// this): rootless, its namespace file is under the state directory.
	defer func() {
		if !r.removed {
			r.removeState()
		}
	}()
	// The network is attached beside the rest of the set-up (the
	// janitor's start, the private mount namespace, the rootfs view);
	// locked waits for it where the container first needs it. It starts
	// after the janitor, which removes what a SIGKILLed safe-run leaves.
	r.net = startNetwork(ctx, job, opts, netns)
	// Before the janitor is dismissed; locked starts it beside the
	// container's destruction where it can.
	defer r.net.finish(opts.Logger)

	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		// The container is started from this OS thread and its
		// parent-death signal follows the thread, not the process; Go
		// retires idle threads, so the thread is locked for the whole
		// run. It is never unlocked: it carries the private mount
		// namespace and dies with this goroutine.
		runtime.LockOSThread()
		code, err := r.locked(ctx)
		done <- result{code, err}
	}()
	res := <-done
	return res.code, res.err
}

// loadAppArmor loads the service's generated AppArmor profile, which
// libcontainer applies when the container execs its first program.
func loadAppArmor(ctx context.Context, spec *specs.Spec, host plan.Placement, opts runOpts) error {
	p := opts.AppArmor
	if p == nil {
		return nil
	}
	if p.Name != spec.Process.ApparmorProfile {
		return fmt.Errorf("the spec applies AppArmor profile %q, but the profile to load is %s", spec.Process.ApparmorProfile, p.Name)
	}
	_, err := apparmor.Load(ctx, p, apparmor.LoadOptions{CacheDir: filepath.Join(opts.Dirs.Data, "apparmor"), Rootless: host.Rootless, Logger: opts.Logger})
	return err
}

// cleanLeftovers removes what a previous run of the same name left when it
// died before its janitor could act (the host crashed, or the janitor was
// killed too).
//
// Without a state directory, only the cgroup can be left: a janitor that
// could not empty it (a process moved into it from outside the
// container, the cgroup frozen) removes the state and keeps the cgroup.
// libcontainer then refused the start with "container's cgroup is not
// empty", naming neither the cgroup nor the fix (issue 19).
func cleanLeftovers(host plan.Placement, name, upperDir string, log *slog.Logger) (cleaned bool, err error) {
	if !host.CgroupsWaived {
		// The cgroup first: libcontainer's Destroy does not kill what a
		// private PID namespace's end left (a process moved in from
		// outside), and retries each hierarchy's rmdir for about a second,
		// ten hierarchies on cgroup v1: ten seconds of the start.
		if cleaned, err = cleanCgroup(host.CgroupPath, name); err != nil {
			return false, err
		}
	}
	if _, err := os.Stat(host.StateDir); errors.Is(err, fs.ErrNotExist) {
		return cleaned, nil
	}
	if c, err := libcontainer.Load(host.RuntimeDir(), name); err == nil {
		if err := c.Destroy(); err != nil {
			// What it leaves, RemoveAll takes next.
			log.Warn("destroying the container a previous run left", "name", name, "err", err)
		}
	}
	for _, d := range []string{host.StateDir, upperDir} {
		if err := os.RemoveAll(d); err != nil {
			return false, fmt.Errorf("cleaning up after a previous run of %s: %w", name, err)
		}
	}
	return true, nil
}

// preflightCommand fails early, with docker's exit codes, for a command
// that is not in the image, when no init stands in front of it to report
// that itself. A command under a mount target is left to the runtime.
func preflightCommand(spec *specs.Spec) error {
	args := plan.ServiceArgs(spec.Process.Args)
	rootfs := spec.Annotations[plan.AnnotationRootfs]
	if rootfs == "" || len(args) == 0 {
		return nil
	}
	name := args[0]
	candidates := []string{name}
	if !strings.Contains(name, "/") {
		candidates = nil
		for _, e := range spec.Process.Env {
			if p, ok := strings.CutPrefix(e, "PATH="); ok {
				for _, dir := range filepath.SplitList(p) {
					candidates = append(candidates, path.Join(dir, name))
				}
			}
		}
	} else if !path.IsAbs(name) {
		candidates = []string{path.Join(spec.Process.Cwd, name)}
	}
	for _, c := range candidates {
		for _, m := range spec.Mounts {
			if c == m.Destination || strings.HasPrefix(c, m.Destination+"/") {
				return nil
			}
		}
		f, err := pathrs.OpenInRoot(rootfs, c)
		if err != nil {
			continue
		}
		st, err := f.Stat()
		f.Close()
		if err != nil {
			continue
		}
		if st.IsDir() {
			if strings.Contains(name, "/") {
				return fmt.Errorf("%w: %s is a directory in the image (name the program in it)", ErrCommandNotExecutable, c)
			}
			continue // execvp goes on down PATH
		}
		if st.Mode().Perm()&0o111 == 0 {
			return fmt.Errorf("%w: %s is not executable in the image (chmod +x it, or name another program)", ErrCommandNotExecutable, c)
		}
		return nil
	}
	return fmt.Errorf("%w: %s is not in the image %s (check process.command, or the image's entrypoint, and its PATH)", ErrCommandNotFound, name, rootfs)
}

// run is one start of a container, from the private mount namespace on.
type run struct {
	spec     *specs.Spec
	config   *configs.Config
	host     plan.Placement
	opts     runOpts
	upperDir string
	early    *early
	lock     *nameLock
	cg       cgroups.Manager // the container's cgroup, once created
	janitor  *janitor        // started with the set-up, told the cgroups once known
	init     *initLink       // safe-run-init's socket, when it runs first
	removed  bool            // removeState has run
	net      *netStart       // the service's network, when it has one of its own
	ending   *sync.WaitGroup // what Run waits for last
}

// removeDirs are the directories of the run, removed when it ends.
func (r *run) removeDirs() []string { return []string{r.host.StateDir, r.upperDir} }

// removeState removes the run's directories.
func (r *run) removeState() {
	for _, d := range r.removeDirs() {
		if err := os.RemoveAll(d); err != nil {
			r.opts.Logger.Warn("removing state", "dir", d, "err", err)
		}
	}
	r.removed = true
}

// dismissJanitor tells the janitor, if it was started, that safe-run
// cleaned up itself; its exit is waited for last.
func (r *run) dismissJanitor() {
	if r.janitor != nil {
		r.janitor.dismiss(r.opts.Logger)
		r.ending.Go(r.janitor.reap)
	}
}

// locked does everything that needs the private mount namespace: it runs
// on one locked OS thread.
func (r *run) locked(ctx context.Context) (code int, err error) {
	spec, config, host, opts := r.spec, r.config, r.host, r.opts
	if r.init != nil {
		// A filter that could not be compiled never reached
		// safe-run-init, which then refused to start the service:
		// this says why.
		defer func() {
			if serr := r.init.sent(); serr != nil && err == nil {
				code, err = 0, serr
			}
			r.init.close()
		}()
	}
	// The seccomp watcher starts beside the rest of the set-up; the
	// container starts once it watches.
	var watch struct {
		stop func()
		err  error
	}
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		watch.stop, watch.err = watchSeccomp(spec, host, opts)
	}()
	joined := false
	defer func() {
		// A watcher the start never joined: the set-up failed first.
		if joined {
			return
		}
		<-watched
		if watch.err == nil {
			watch.stop()
		}
	}()
	if err := enterPrivateMountNamespace(); err != nil {
		return 0, err
	}
	var userns *os.File
	if !host.Rootless {
		f, err := r.early.usernsFile()
		if err != nil {
			return 0, err
		}
		defer f.Close()
		userns = f
	}
	note, err := rootfsView(spec, host, spec.Annotations[plan.AnnotationRootfs], r.upperDir, userns, networkFiles(opts.Network))
	if err != nil {
		return 0, err
	}
	if note != "" {
		opts.Notes = append(opts.Notes, note)
	}
	config.Rootfs = host.RootfsView()
	uid, gid := int(host.IDs.UID+spec.Process.User.UID), int(host.IDs.GID+spec.Process.User.GID)
	if secrets := plan.SecretFiles(spec); len(secrets) > 0 {
		if err := fillSecrets(host.SecretsDir(), secrets, uid, gid, opts.AllowSensitiveMounts); err != nil {
			return 0, err
		}
	}
	notify := newNotifier()
	defer notify.close()
	notify.ready = func() { opts.pub.event(ops.EventReady, "the service reported ready (sd_notify)", nil) }
	if hasMountSource(spec, host.NotifyHostDir()) {
		if err := notify.listen(host.NotifyHostDir(), uid, gid); err != nil {
			return 0, err
		}
	}
	// The network's namespace, made meanwhile, is first needed here:
	// pinMounts binds its generated /etc files, and the sysfs shows it.
	if err := r.net.waitNamespace(); err != nil {
		return 0, err
	}
	// From here an Attach that fails (a published port taken) removes the
	// namespace and files the set-up below uses (pinMounts, libcontainer):
	// whatever then fails is its consequence, the network's error the
	// cause.
	defer func() {
		if err != nil {
			if _, nerr := r.net.wait(); nerr != nil {
				code, err = 0, nerr
			}
		}
	}()
	// The rest of the network (its link, firewall, resolver and ports)
	// must be in place before anything of the service runs. Where
	// safe-run-init holds the service back until it is sent its ruleset
	// (initLink's hold), that is waited for once the container has
	// started: the container's own start, most of the time of a start,
	// goes on meanwhile (issue 16). Else here.
	held := r.net != nil && r.init != nil && r.init.hold != nil
	if !held {
		if err := r.networkAttached(&opts); err != nil {
			return 0, err
		}
	}
	if err := mountNetnsSysfs(spec, host); err != nil {
		return 0, err
	}
	if err := pinMounts(config, host, opts, uid, gid); err != nil {
		return 0, err
	}

	// Waited for after the container's destruction (deferred below),
	// which ends any exec'd command left.
	execs := &execer{spec: spec, host: host, init: r.init}
	defer execs.wait()
	container, err := libcontainer.Create(host.RuntimeDir(), opts.Name, config)
	if err != nil {
		return 0, fmt.Errorf("creating the container: %w", err)
	}
	defer func() {
		// The state goes while libcontainer removes the cgroups:
		// neither needs the other, and each is a millisecond of
		// system calls.
		// Rootless, the network's state is under the state directory
		// (plan's rootlessNetwork): it goes once the network is undone.
		// Either way off this thread, whose mount namespace holds the
		// rootfs view.
		netState := r.net != nil && host.Rootless
		removed := make(chan struct{})
		go func() {
			defer close(removed)
			if netState {
				<-r.net.closed
			}
			r.removeState()
		}()
		if err := container.Destroy(); err != nil {
			opts.Logger.Warn("destroying the container", "err", err)
		}
		// The network goes now if it has not started to already (see
		// the end of locked): no process of the service is left.
		r.net.startClose(opts.Logger)
		<-removed
	}()
	// The container's cgroup manager, from the paths Create worked out
	// (working them out is most of what making a manager costs on v1).
	state, err := container.State()
	if err != nil {
		return 0, err
	}
	if r.cg, err = manager.NewWithPaths(config.Cgroups, state.CgroupPaths); err != nil {
		return 0, fmt.Errorf("placing the container's cgroup: %w", err)
	}
	// Before they exist: container.Run creates them.
	if err := r.janitor.watchCgroups(slices.Collect(maps.Values(state.CgroupPaths))); err != nil {
		return 0, err
	}
	process, err := newProcess(spec.Process)
	if err != nil {
		return 0, err
	}
	if r.init != nil {
		r.init.attach(process)
	}
	if notify.relay != nil && notify.watchdog > 0 {
		// The service answers for the watchdog; it cannot match
		// WATCHDOG_PID from its PID namespace, so that is left unset.
		process.Env = append(process.Env, "WATCHDOG_USEC="+strconv.FormatInt(notify.watchdog.Microseconds(), 10))
	}

	var io *streams
	var hostTTY console.Console
	if spec.Process.Terminal {
		if hostTTY, err = console.ConsoleFromFile(os.Stdin); err != nil {
			opts.Notes = append(opts.Notes, "tty requested but stdin is not a terminal: using pipes")
			hostTTY = nil
		}
	}
	if hostTTY != nil {
		io, err = ttyStreams(process)
	} else {
		io, err = pipeStreams(process, opts.Stdio, uid, gid)
	}
	if err != nil {
		return 0, err
	}
	defer io.finish()

	// Subscribed before the start: a signal in between must not be lost.
	signals := r.early.signals.Wait()

	<-watched
	joined = true
	if watch.err != nil {
		return 0, watch.err
	}
	// Its last records settle while the container is destroyed.
	defer r.ending.Go(watch.stop)
	// Whatever the container leaves, once it runs, the janitor removes
	// should safe-run die.
	if err := r.janitor.running(); err != nil {
		return 0, err
	}
	// A SIGINT or SIGTERM so far ends the start here, before the
	// container's init exists: everything made is undone as after any
	// failure.
	if e := Stopped(ctx); e != nil {
		return 0, e
	}
	// The report goes out before the service can write a line of its own.
	if !held {
		report(opts, spec, host)
	}
	if err := container.Run(process); err != nil {
		io.started()
		return 0, fmt.Errorf("starting %s: %w", opts.Name, err)
	}
	io.started()
	if !host.CgroupsWaived {
		held, err := holdCgroup(r.cg, opts.Name)
		if err != nil {
			_ = container.Signal(unix.SIGKILL)
			_, _ = process.Wait()
			return 0, err
		}
		defer held.Close()
	}
	if hostTTY != nil {
		if err := io.attachTTY(opts.Stdio, hostTTY); err != nil {
			_ = container.Signal(unix.SIGKILL)
			_, _ = process.Wait()
			return 0, err
		}
	}
	pid, err := process.Pid()
	if err != nil {
		return 0, err
	}
	if held {
		if err := r.networkAttached(&opts); err != nil {
			// safe-run-init never got its ruleset: nothing of the
			// service ran.
			_ = container.Signal(unix.SIGKILL)
			_, _ = process.Wait()
			return 0, err
		}
		report(opts, spec, host)
	}
	r.init.started(pid, spec, opts)
	opts.pub.running(pid, state.CgroupPaths, opts)
	if notify.relay == nil {
		notify.send("READY=1\nSTATUS=running " + opts.Name)
		opts.pub.event(ops.EventReady, "started (the service does not report readiness)", nil)
	} else {
		notify.send("STATUS=started " + opts.Name + ", waiting for it to report ready")
	}
	stopWatchdog := make(chan struct{})
	defer close(stopWatchdog)
	notify.keepAlive(stopWatchdog)

	execs.container, execs.opts = container, opts
	opts.execs = execs
	stopWarnings := watchLimits(opts.Name, state.CgroupPaths, opts.Ending, opts.pub)
	code, err = supervise(ctx, container, process, signals, r.init.signalsTaken(pid), r.cg, notify, opts)
	stopWarnings()
	if err == nil && privatePIDs(spec) {
		// The network goes beside the container's destruction, once
		// no process of the service is left to use the moment its
		// rules are gone: its init has exited, and with it, in a PID
		// namespace of its own, every other process of it (the kernel
		// kills them and waits for them before init's exit completes).
		// Otherwise the deferred Destroy kills them first.
		r.net.startClose(opts.Logger)
	}
	return code, err
}

// networkAttached waits until the service's network is attached (see
// locked) and adds it to opts, for the report and the status.
func (r *run) networkAttached(opts *runOpts) error {
	a, err := r.net.wait()
	if err != nil || a == nil {
		return err
	}
	opts.net, r.opts.net = a, a
	opts.Notes = append(opts.Notes, a.Notes...)
	return nil
}

// privatePIDs says whether the container has a PID namespace of its own.
func privatePIDs(spec *specs.Spec) bool {
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.PIDNamespace {
			return ns.Path == ""
		}
	}
	return false
}

// watchSeccomp reports the service's seccomp denials while it runs
// (seccomp_log), serves the filter's notifications where safe-run added
// them, and feeds a recording. The returned function stops it once the
// service has exited.
func watchSeccomp(spec *specs.Spec, host plan.Placement, opts runOpts) (func(), error) {
	sc := spec.Linux.Seccomp
	t := profiles.Target{Name: opts.Name, Seccomp: sc, UID: host.IDs.UID, UIDs: host.IDs.Size, Rootless: host.Rootless,
		Landlock: opts.landlockShown, ActionsLogged: seccompActionsLogged()}
	if sc != nil && sc.ListenerPath == host.SeccompAgent() {
		t.Listener = sc.ListenerPath
	}
	// AppArmor's denials are reported with seccomp's (seccomp_log), as
	// root: rootless, the audit records are out of reach.
	if p := spec.Process.ApparmorProfile; p != "" && p != "unconfined" && opts.Violations != nil && !host.Rootless {
		t.AppArmor = p
	}
	switch {
	case opts.Record != nil:
		return opts.Record.Watch(t, opts.Violations)
	case t.Landlock, t.AppArmor != "":
	case sc == nil || t.Listener == "" && (opts.Violations == nil || !slices.Contains(sc.Flags, specs.LinuxSeccompFlagLog)):
		return func() {}, nil
	}
	return profiles.WatchViolations(t, opts.Violations)
}

func hasMountSource(spec *specs.Spec, source string) bool {
	for _, m := range spec.Mounts {
		if m.Source == source {
			return true
		}
	}
	return false
}

// pinMounts replaces the host path of every bind with a mount of the object
// it names, checked and pinned now (see pinMount); the container then binds
// what was checked, whatever the path points at by the time it mounts.
func pinMounts(config *configs.Config, host plan.Placement, opts runOpts, uid, gid int) error {
	stages := filepath.Join(host.StateDir, "mounts")
	if err := os.Mkdir(stages, 0o711); err != nil {
		return err
	}
	for i, m := range config.Mounts {
		if !m.IsBind() || strings.HasPrefix(m.Source, host.StateDir+"/") {
			continue // not a bind, or made by safe-run (secrets, notify socket)
		}
		allowSensitive := opts.AllowSensitiveMounts
		switch {
		case m.Source == host.InitPath:
			if err := checkInit(m.Source); err != nil {
				return err
			}
		case strings.HasPrefix(m.Source, host.VolumeDir+"/"):
			if err := ensureVolume(m.Source, host.IDs, uid, gid); err != nil {
				return err
			}
			allowSensitive = true // safe-run's own directory
		case m.Source == "/proc" || m.Source == "/sys" || m.Source == "/dev/mqueue":
			continue // a shared host namespace's file system, acknowledged in [insecure]
		case opts.Network != nil && strings.HasPrefix(m.Source, opts.Network.StateDir+"/"):
			allowSensitive = true // the service's generated /etc files, safe-run's own
		}
		stage := filepath.Join(stages, strconv.Itoa(i))
		if err := pinMount(m.Source, stage, m.Flags&unix.MS_RDONLY != 0, allowSensitive); err != nil {
			return fmt.Errorf("bind mount of %s at %s: %w", m.Source, m.Destination, err)
		}
		m.Source = stage
	}
	return nil
}

// checkInit refuses an init binary that someone other than root could
// have replaced: it runs as PID 1 of every container.
func checkInit(p string) error {
	st, err := os.Stat(p)
	if err != nil {
		return fmt.Errorf("the init binary: %w (install safe-run-init beside safe-run, or set init = false)", err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("the init binary %s is not a regular file", p)
	}
	if st.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("the init binary %s is writable by group or others (chmod go-w %s)", p, p)
	}
	return nil
}

// ensureVolume creates a named volume owned by the process user as mapped,
// and refuses one that belongs to another service's ids.
func ensureVolume(dir string, ids plan.IDMap, uid, gid int) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o711); err != nil {
		return err
	}
	err := os.Mkdir(dir, 0o700)
	if err == nil {
		return os.Lchown(dir, uid, gid)
	}
	if !errors.Is(err, fs.ErrExist) {
		return err
	}
	_, err = volumeOwned(dir, ids)
	return err
}

// volumeOwned says whether the volume dir exists, and refuses one that
// is no directory or belongs to another service's ids.
func volumeOwned(dir string, ids plan.IDMap) (exists bool, err error) {
	st, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !st.IsDir() {
		return true, fmt.Errorf("volume %s is not a directory (remove it, or use another volume name)", dir)
	}
	owner := st.Sys().(*syscall.Stat_t).Uid
	if owner < ids.UID || owner >= ids.UID+ids.Size {
		return true, fmt.Errorf("volume %s belongs to uid %d, outside this service's ids %s: a volume belongs to one service (use another volume name)", dir, owner, ids)
	}
	return true, nil
}

var rlimitTypes = map[string]int{"RLIMIT_CORE": unix.RLIMIT_CORE, "RLIMIT_NOFILE": unix.RLIMIT_NOFILE}

func newProcess(p *specs.Process) (*libcontainer.Process, error) {
	lp := &libcontainer.Process{
		Args:            p.Args,
		Env:             p.Env,
		UID:             int(p.User.UID),
		GID:             int(p.User.GID),
		Cwd:             p.Cwd,
		NoNewPrivileges: &p.NoNewPrivileges,
		AppArmorProfile: p.ApparmorProfile,
		Init:            true,
	}
	if c := p.Capabilities; c != nil {
		lp.Capabilities = &configs.Capabilities{Bounding: c.Bounding, Effective: c.Effective,
			Inheritable: c.Inheritable, Permitted: c.Permitted, Ambient: c.Ambient}
	}
	for _, g := range p.User.AdditionalGids {
		lp.AdditionalGroups = append(lp.AdditionalGroups, int(g))
	}
	for _, r := range p.Rlimits {
		t, ok := rlimitTypes[r.Type]
		if !ok {
			return nil, fmt.Errorf("unsupported rlimit %s", r.Type)
		}
		lp.Rlimits = append(lp.Rlimits, configs.Rlimit{Type: t, Hard: r.Hard, Soft: r.Soft})
	}
	return lp, nil
}

// supervise forwards signals until the container exits, and returns its
// status. The first SIGINT or SIGTERM (or ctx) stops the service gently,
// a second one kills it. Signals for the service are held until ready is
// closed (see initLink).
func supervise(ctx context.Context, c *libcontainer.Container, p *libcontainer.Process, signals chan os.Signal, ready <-chan struct{}, cg cgroups.Manager, notify *notifier, opts runOpts) (int, error) {
	exited := make(chan *os.ProcessState, 1)
	go func() {
		st, _ := p.Wait()
		exited <- st
	}()
	var (
		stopping    bool
		killed      string // why safe-run sent SIGKILL
		stopSignals int    // SIGINT and SIGTERM received
		timeout     <-chan time.Time
		// how long a stop waits before SIGKILL, and what set it
		stopAfter, stopAfterKey = opts.StopTimeout, "stop_timeout"
	)
	var held []os.Signal
	send := func(sig os.Signal) {
		if ready != nil {
			held = append(held, sig)
			return
		}
		_ = p.Signal(sig)
	}
	// ctx and the signal channel both see the first SIGINT or SIGTERM (cmd
	// cancels ctx on them): stopping is idempotent, and only a second
	// signal escalates.
	stop := func(why string, after time.Duration) {
		if stopping {
			return
		}
		stopping = true
		notify.send("STOPPING=1\nSTATUS=stopping " + opts.Name)
		opts.pub.stopping(why)
		send(unix.Signal(opts.StopSignal))
		timeout = time.After(after)
	}
	kill := func(why string) {
		killed = why
		_ = c.Signal(unix.SIGKILL)
	}
	ctxDone := ctx.Done()
	for {
		select {
		case <-ready:
			ready = nil
			for _, sig := range held {
				_ = p.Signal(sig)
			}
			held = nil
		case st := <-exited:
			return exitStatus(st, stopping, killed, cg, opts), nil
		case <-ctxDone:
			ctxDone = nil
			stop("safe-run was asked to stop", opts.StopTimeout)
		case <-timeout:
			kill(fmt.Sprintf("it did not stop within %s of %s (%s)", stopAfter, signalName(unix.Signal(opts.StopSignal)), stopAfterKey))
		case req := <-opts.pub.control():
			by := fmt.Sprintf("by uid %d", req.UID)
			switch {
			case req.Op == ops.OpStop && !stopping:
				if req.Timeout > 0 {
					stopAfter, stopAfterKey = req.Timeout, "safe-run stop -t"
				}
				if opts.Ending != nil {
					fmt.Fprintf(opts.Ending, "safe-run: %s: stop requested %s (safe-run stop)\n", opts.Name, by)
				}
				stop("safe-run stop "+by, stopAfter)
			case req.Op == ops.OpKill && unix.Signal(req.Signal) == unix.SIGKILL:
				opts.pub.event(ops.EventKill, "SIGKILL "+by, nil)
				kill("safe-run kill " + by)
			case req.Op == ops.OpKill:
				opts.pub.event(ops.EventKill, signalOf(req.Signal)+" "+by, nil)
				send(unix.Signal(req.Signal))
			case req.Op == ops.OpExec && stopping:
				req.Session.Fail(errors.New("the service is stopping"))
			case req.Op == ops.OpExec:
				// On this thread: it holds the rootfs view libcontainer
				// starts the command from.
				opts.execs.start(req)
			}
		case sig := <-signals:
			switch sig {
			case unix.SIGINT, unix.SIGTERM:
				if stopSignals++; stopSignals > 1 {
					kill("safe-run got a second " + signalName(sig.(unix.Signal)))
				}
				stop("safe-run got "+signalName(sig.(unix.Signal)), opts.StopTimeout)
			case unix.SIGCHLD, unix.SIGURG, unix.SIGPIPE, unix.SIGWINCH:
				// Go's own, or handled by the terminal code.
			default:
				send(sig)
			}
		}
	}
}

// exitStatus turns the container's end into safe-run's exit code and, when
// the end was not clean, one line saying why; killed says why safe-run
// killed it, if it did.
func exitStatus(st *os.ProcessState, stopping bool, killed string, cg cgroups.Manager, opts runOpts) int {
	code := 0
	if st != nil {
		code = st.ExitCode()
		if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
	}
	reason := "exited with code 0"
	say := func(format string, args ...any) {
		reason = fmt.Sprintf(format, args...)
		if opts.Ending != nil {
			fmt.Fprintf(opts.Ending, "safe-run: %s: %s\n", opts.Name, reason)
		}
	}
	defer func() { opts.pub.event(ops.EventExit, reason, &code) }()
	switch {
	case cg != nil && oomKills(cg) > 0:
		limit := "unknown"
		if c, err := cg.GetCgroups(); err == nil && c.Resources != nil && c.Resources.Memory > 0 {
			limit = manifest.Size(c.Resources.Memory).String()
		}
		dir := cg.Path("memory")
		if dir == "" {
			dir = cg.Path("") // v2
		}
		var victims []string
		if since := opts.pub.started(); since > 0 {
			victims, _ = oomVictims(dir, since)
		}
		opts.pub.event(ops.EventOOM, fmt.Sprintf("the kernel OOM-killed %d process(es) of it (memory limit %s)%s", oomKills(cg), limit, victimsText(victims)), nil)
		if code == 0 {
			// A child of the service was killed; the service
			// carried on and ended well.
			say("exited with code 0, but the kernel OOM-killed a process of it (memory limit %s; raise resources.memory or find the leak)", limit)
		} else {
			say("OOM-killed (memory limit %s; raise resources.memory or find the leak)", limit)
		}
	case killed != "":
		say("killed with SIGKILL: %s", killed)
	case stopping:
		say("stopped with %s (exit code %d)", signalName(unix.Signal(opts.StopSignal)), code)
	case code > 128 && code <= 128+64:
		say("killed by %s (exit code %d)", signalName(unix.Signal(code-128)), code)
	case code != 0:
		say("exited with code %d", code)
	}
	return code
}
