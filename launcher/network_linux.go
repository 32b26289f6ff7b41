package launcher

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/network"
	"github.com/safe-run/safe-run/plan"
)

// attachNetwork connects the service to its bridge: its network namespace,
// address, firewall rules, resolver and published ports, at the paths the
// spec names. nil when the job has no network of its own to set up.
func attachNetwork(ctx context.Context, job *plan.Job, opts runOpts) (*network.Attachment, error) {
	if job.Network == nil {
		return nil, nil
	}
	if job.Placement.Rootless {
		start := time.Now()
		if err := waitUplink(ctx, uplinkTimeout); err != nil {
			return nil, fmt.Errorf("connecting %s to its network: %w", job.Name, err)
		}
		opts.Logger.Debug("pasta connected the network namespace", "waited", time.Since(start))
	}
	o := *job.Network
	o.Logger = opts.Logger
	o.Denials = opts.Violations
	a, err := network.Attach(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("connecting %s to its network: %w", job.Name, err)
	}
	return a, nil
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
