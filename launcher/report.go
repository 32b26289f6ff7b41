package launcher

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/safe-run/safe-run/internal/printable"
	"github.com/safe-run/safe-run/manifest"
	"github.com/safe-run/safe-run/plan"
)

// report writes the start report: what is enforced, and what is not.
func report(opts runOpts, spec *specs.Spec, host plan.Placement) {
	if opts.Report == nil {
		return
	}
	p := spec.Process
	args := plan.ServiceArgs(p.Args)
	// The manifest's command and paths are shown, not acted on: a
	// terminal escape in them is printed escaped.
	line := func(format string, a ...any) {
		fmt.Fprintf(opts.Report, "safe-run: %s: %s\n", opts.Name, printable.String(fmt.Sprintf(format, a...)))
	}
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = shellQuote(a)
	}
	cmd := strings.Join(quoted, " ")
	if len(cmd) > 60 {
		cmd = cmd[:57] + "..."
	}
	ids := host.IDs.String()
	if host.Rootless {
		ids = rootlessHostIDs(host.IDs)
	}
	line("starting %s as %d:%d, user namespace %s", cmd, p.User.UID, p.User.GID, ids)
	conf := confinement(spec)
	if opts.Landlock != nil {
		conf = append(conf, opts.Landlock.Summary())
	}
	line("%s", strings.Join(conf, ", "))
	line("%s", strings.Join(limits(spec, host), ", "))
	if opts.net != nil {
		line("%s", networkLine(opts.net, opts.Network))
	}
	for _, n := range opts.Notes {
		line("%s", n)
	}
}

// rootlessHostIDs says which host ids a rootless container runs as. Its ids
// map one to one onto those of safe-run's own user namespace, and
// /proc/self/uid_map, read from inside that namespace, says which host ids
// those are: the user's own uid for 0, subordinate ids for the rest.
func rootlessHostIDs(ids plan.IDMap) string {
	data, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return ids.String()
	}
	var host []string
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var inside, outside, count uint64
		if n, _ := fmt.Sscan(l, &inside, &outside, &count); n != 3 || inside >= uint64(ids.Size) {
			continue
		}
		if count == 1 {
			host = append(host, strconv.FormatUint(outside, 10))
		} else {
			host = append(host, fmt.Sprintf("%d-%d", outside, outside+count-1))
		}
	}
	if len(host) == 1 {
		return "0 -> host id " + host[0] + " (your uid)"
	}
	return fmt.Sprintf("0-%d -> host ids %s (your uid, then your subordinate ids)", ids.Size-1, strings.Join(host, ", "))
}

func confinement(spec *specs.Spec) []string {
	var out []string
	if spec.Root.Readonly {
		out = append(out, "read-only rootfs")
	} else {
		out = append(out, "WRITABLE rootfs")
	}
	caps := "no capabilities"
	if c := spec.Process.Capabilities; c != nil && len(c.Effective) > 0 {
		caps = "capabilities " + strings.Join(c.Effective, " ")
	}
	out = append(out, caps)
	if spec.Process.NoNewPrivileges {
		out = append(out, "no_new_privs")
	} else {
		out = append(out, "NEW PRIVILEGES allowed")
	}
	switch sc := spec.Linux.Seccomp; {
	case sc == nil:
		out = append(out, "seccomp UNCONFINED")
	default:
		s := "seccomp " + spec.Annotations[plan.AnnotationSeccomp]
		if slices.Contains(sc.Flags, specs.LinuxSeccompFlagLog) {
			s += " (denials logged)"
		}
		out = append(out, s)
	}
	if spec.Process.ApparmorProfile != "" {
		out = append(out, "AppArmor "+spec.Process.ApparmorProfile)
	}
	net := "network none (loopback only)"
	switch {
	case !hasNamespace(spec, specs.NetworkNamespace):
		net = "HOST network"
	case networkPath(spec) != "":
		net = "network bridge"
	}
	out = append(out, net)
	for _, ns := range []specs.LinuxNamespaceType{specs.PIDNamespace, specs.IPCNamespace, specs.UTSNamespace} {
		if !hasNamespace(spec, ns) {
			out = append(out, "HOST "+string(ns)+" namespace")
		}
	}
	return out
}

func limits(spec *specs.Spec, host plan.Placement) []string {
	r := spec.Linux.Resources
	if r == nil {
		return []string{"NO limits, no cgroup"}
	}
	var out []string
	if r.Memory != nil && r.Memory.Limit != nil {
		out = append(out, "memory "+manifest.Size(*r.Memory.Limit).String()+" (no swap)")
	} else {
		out = append(out, "NO memory limit")
	}
	if r.Memory != nil && r.Memory.Reservation != nil {
		out = append(out, "reservation "+manifest.Size(*r.Memory.Reservation).String())
	}
	if r.CPU != nil && r.CPU.Quota != nil && r.CPU.Period != nil {
		out = append(out, fmt.Sprintf("cpus %g", float64(*r.CPU.Quota)/float64(*r.CPU.Period)))
	} else {
		out = append(out, "NO cpu limit")
	}
	if r.Pids != nil && r.Pids.Limit != nil {
		out = append(out, fmt.Sprintf("pids %d", *r.Pids.Limit))
	}
	version := "cgroup v1"
	if host.CgroupV2 {
		version = "cgroup v2"
	}
	out = append(out, version+" "+spec.Linux.CgroupsPath)
	return out
}

func hasNamespace(spec *specs.Spec, t specs.LinuxNamespaceType) bool {
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == t {
			return true
		}
	}
	return false
}

// shellQuote quotes an argument as a shell would need it, so that the
// report's command reads as what runs: nginx -g 'daemon off;'.
func shellQuote(a string) string {
	if a != "" && !strings.ContainsAny(a, " \t\n'\"\\$;&|<>(){}*?[]#~`!") {
		return a
	}
	return "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
}
