package launcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/host"
	"github.com/safe-run/safe-run/manifest"
	"github.com/safe-run/safe-run/network"
	"github.com/safe-run/safe-run/plan"
)

// netStart is the service's network being attached beside the rest of the
// set-up, and later detached beside the container's destruction. Its
// methods do nothing for a job with no network of its own (nil).
type netStart struct {
	name   string
	svc    *manifest.Service // for an error's key; nil in a job handed over (plan.Job.Service)
	netns  string            // the namespace's path (network.Paths)
	made   chan struct{}     // closed once the namespace and its files exist, or Attach returned
	done   chan struct{}     // closed once Attach returned
	a      *network.Attachment
	ns     *os.File // the namespace, opened from the host's mount namespace (see bindHere)
	err    error
	once   sync.Once
	closed chan struct{} // closed once Close returned (or there was nothing to close)
}

// startNetwork starts connecting the service to its bridge: its network
// namespace, address, firewall rules, resolver and published ports, at
// the paths the spec names. nil when the job has no network of its own.
func startNetwork(ctx context.Context, job *plan.Job, opts runOpts, ns *network.Namespace) *netStart {
	if job.Network == nil {
		return nil
	}
	o := *job.Network
	o.Namespace = ns
	o.Logger = opts.Logger
	o.Denials = opts.denials
	n := &netStart{name: job.Name, svc: job.Service, made: make(chan struct{}), done: make(chan struct{}), closed: make(chan struct{})}
	n.netns, _ = network.Paths(o.StateDir, o.Service, o.Bridge)
	madeOnce := sync.OnceFunc(func() { close(n.made) })
	// Called by Attach on this goroutine, in the host's mount namespace (see below).
	o.NamespaceReady = func() {
		if f, err := os.Open(n.netns); err == nil {
			n.ns = f
		}
		madeOnce()
	}
	go func() {
		defer close(n.done)
		defer madeOnce()
		if job.Placement.Rootless && o.Bridge != "" && len(o.ListenFDs) < len(o.Ports) {
			// Bound here in the user's shared namespace, the ports would
			// be N's, out of the host's reach.
			n.err = fmt.Errorf("publishing its ports without root: the sockets the outer safe-run bound on the host did not reach this one (start it as safe-run SERVICE.toml)")
			return
		}
		// Not on the locked thread (a locked thread runs only its own
		// goroutine): in the host's mount namespace, where Attach
		// mounts the namespace file.
		if job.Placement.Rootless {
			start := time.Now()
			if n.err = waitUplink(ctx, uplinkTimeout); n.err != nil {
				return
			}
			opts.Logger.Debug("pasta connected the network namespace", "waited", time.Since(start))
		}
		if n.a, n.err = network.Attach(ctx, o); n.err != nil {
			return
		}
		if n.ns == nil {
			n.ns, n.err = os.Open(n.a.Netns)
		}
	}()
	return n
}

// holdListenFDs makes the sockets the outer safe-run bound for the
// published ports of a rootless service on a named bridge this process's
// alone from here on: close-on-exec, so that neither the janitor nor a
// container inherits them. Until now they stay open across execs: into
// safe-run-tools and back when the image is pulled at this start, whose
// hand-off of the job drops Options.ListenFDs; the job then gets them
// again from the environment, as plan gave them.
func holdListenFDs(job *plan.Job) {
	o := job.Network
	if o == nil || !job.Placement.Rootless || o.Bridge == "" || len(o.Ports) == 0 {
		return
	}
	if o.ListenFDs == nil {
		given := host.Probe().InnerPorts
		for _, p := range o.Ports {
			if fd, ok := given[plan.RootlessPortKey(p)]; ok {
				if o.ListenFDs == nil {
					o.ListenFDs = map[network.Port]int{}
				}
				o.ListenFDs[p] = fd
			}
		}
	}
	for _, fd := range o.ListenFDs {
		unix.CloseOnExec(fd)
	}
}

// bindHere makes the namespace file a mount of the service's network
// namespace in the calling thread's private mount namespace, which was
// made while Attach ran: its bind mount reaches that one only where the
// host's mounts propagate (shared), and libcontainer, started from this
// thread, joins the namespace by that path.
func (n *netStart) bindHere() error {
	if n == nil || n.ns == nil {
		return nil
	}
	defer func() {
		n.ns.Close()
		n.ns = nil
	}()
	var st unix.Statfs_t
	if err := unix.Statfs(n.netns, &st); err != nil {
		return fmt.Errorf("the service's network namespace: %w", err)
	}
	if st.Type == unix.NSFS_MAGIC {
		return nil // propagated
	}
	src := "/proc/thread-self/fd/" + strconv.Itoa(int(n.ns.Fd()))
	if err := unix.Mount(src, n.netns, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("the service's network namespace at %s: %w", n.netns, err)
	}
	return nil
}

// waitNamespace returns once the service's namespace and its /etc files
// exist, with the namespace bound in the calling thread's mount namespace
// (bindHere): what the container's set-up needs of the network. The rest
// of Attach (link, firewall, resolver, ports) goes on: wait says when it
// is done, which must come before anything of the service runs.
func (n *netStart) waitNamespace() error {
	if n == nil {
		return nil
	}
	<-n.made
	if n.ns == nil {
		// Attach failed first, or returned without calling back.
		if _, err := n.wait(); err != nil {
			return err
		}
	}
	return n.bindHere()
}

// wait returns the attachment once Attach is done; nil, nil without a
// network.
func (n *netStart) wait() (*network.Attachment, error) {
	if n == nil {
		return nil, nil
	}
	<-n.done
	if n.err != nil {
		if pe := (network.PortError{}); errors.As(n.err, &pe) && n.svc != nil {
			return nil, n.svc.Errorf("network.ports", "%w", n.err)
		}
		return nil, fmt.Errorf("connecting %s to its network: %w", n.name, n.err)
	}
	return n.a, nil
}

// startClose detaches the service in the background, once Attach is done.
// Call it once the service's processes are gone: until then its rules
// must stay. Later calls do nothing.
func (n *netStart) startClose(log *slog.Logger) {
	if n == nil {
		return
	}
	n.once.Do(func() {
		go func() {
			defer close(n.closed)
			<-n.done
			if n.ns != nil {
				n.ns.Close() // bindHere was not reached
			}
			if n.a == nil {
				return
			}
			if err := n.a.Close(); err != nil {
				log.Warn("removing the service's network", "err", err)
			}
		}()
	})
}

// finish detaches the service, if that has not started yet, and waits
// until it is done. Every path out of Run goes through it.
func (n *netStart) finish(log *slog.Logger) {
	if n == nil {
		return
	}
	n.startClose(log)
	<-n.closed
}

// networkFiles are the generated /etc files Attach writes, which may not
// exist yet while the rootfs view is made: their mount points are files.
func networkFiles(o *network.Options) []string {
	if o == nil {
		return nil
	}
	_, f := network.Paths(o.StateDir, o.Service, o.Bridge)
	return []string{f.ResolvConf, f.Hosts, f.Hostname}
}

// NetworkCleanupCommand is safe-run's hidden command that removes what
// dead services left of their networks: safe-run network-cleanup DIR.
const NetworkCleanupCommand = "network-cleanup"

// networkCleanup is what the janitor runs last should safe-run die: this
// very binary (safe-run) cleaning up the network state, whose leases then
// name a dead owner. nil when the service has no network of its own.
func networkCleanup(o *network.Options) []string {
	if o == nil {
		return nil
	}
	exe, err := os.Executable()
	if err != nil {
		// The next start on any bridge reclaims it instead.
		return nil
	}
	return []string{exe, NetworkCleanupCommand, o.StateDir}
}

// networkLine is the start report's line on the service's network.
func networkLine(a *network.Attachment, o *network.Options) string {
	bridge := "bridge " + o.Bridge
	if o.Bridge == "" {
		bridge = "a bridge of its own"
	}
	s := fmt.Sprintf("network: %s, address %s", bridge, a.Address)
	if len(o.Ports) > 0 {
		ports := make([]string, len(o.Ports))
		for i, p := range o.Ports {
			ports[i] = fmt.Sprintf("%s:%d->%d/%s", p.HostIP, p.HostPort, p.ContainerPort, p.Proto)
		}
		s += ", ports " + strings.Join(ports, " ")
	}
	switch {
	case o.Egress.All:
		s += ", egress all"
	case o.Egress.None():
		s += ", egress none (bridge peers and DNS only)"
	default:
		rules := make([]string, len(o.Egress.Rules))
		for i, r := range o.Egress.Rules {
			rules[i] = egressRuleText(r)
		}
		s += ", egress " + strings.Join(rules, " ")
	}
	return s
}

func egressRuleText(r network.EgressRule) string {
	s := r.Host
	if s == "" {
		s = r.Prefix.String()
	}
	if r.Port != 0 {
		s += fmt.Sprintf(":%d", r.Port)
	}
	if r.Proto != "" {
		s += "/" + r.Proto
	}
	return s
}

// mountNetnsSysfs mounts a sysfs of the spec's network namespace where the
// spec binds /sys from (plan.Placement.SysfsDir): the container cannot
// mount one itself, since its user namespace does not own that network
// namespace, and the host's /sys would show the host's interfaces. It runs
// on the locked thread, in its private mount namespace, so the mount goes
// with the thread; the thread's own network namespace is restored.
func mountNetnsSysfs(spec *specs.Spec, host plan.Placement) error {
	netnsPath := networkPath(spec)
	if netnsPath == "" || !hasMountSource(spec, host.SysfsDir()) {
		return nil
	}
	dir := host.SysfsDir()
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("sysfs for the service: %w", err)
	}
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return fmt.Errorf("sysfs for the service: %w", err)
	}
	defer self.Close()
	target, err := os.Open(netnsPath)
	if err != nil {
		return fmt.Errorf("sysfs for the service: %w", err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("sysfs for the service: entering %s: %w", netnsPath, err)
	}
	// sysfs shows the network namespace of the task that mounts it.
	mountErr := unix.Mount("sysfs", dir, "sysfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread is locked and dies with the run; nothing else
		// runs on it in the wrong namespace.
		return fmt.Errorf("sysfs for the service: leaving %s: %w", netnsPath, err)
	}
	if mountErr != nil {
		return fmt.Errorf("sysfs for the service: mounting: %w", mountErr)
	}
	return nil
}

// networkPath is the network namespace the spec joins, "" when it makes
// its own or shares the host's.
func networkPath(spec *specs.Spec) string {
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			return ns.Path
		}
	}
	return ""
}

// uplinkTimeout is how long a rootless start waits for pasta to connect
// its network namespace: pasta takes milliseconds.
const uplinkTimeout = 5 * time.Second

// waitUplink waits until this network namespace has a default route: the
// rootless inner safe-run's namespace, once pasta (started by the outer
// safe-run as soon as this one exists) has brought its link up. The
// service's subnet must avoid the host's, which pasta copies in, and its
// egress needs the route.
func waitUplink(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
		if err != nil {
			return fmt.Errorf("reading the routes pasta sets: %w", err)
		}
		for _, r := range routes {
			if r.Dst == nil || r.Dst.IP.IsUnspecified() && r.Dst.Mask != nil && net.IP(r.Dst.Mask).IsUnspecified() {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pasta did not connect the network namespace within %v (its own error, if any, is above)", timeout)
		case <-time.After(2 * time.Millisecond):
		}
	}
}
