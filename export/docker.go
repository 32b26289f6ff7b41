package export

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/safe-run/safe-run/manifest"
	"github.com/safe-run/safe-run/plan"
)

// Docker writes a shell script holding the hardened `docker run` line, and
// the seccomp profile beside it.
func Docker(p *plan.Job, opts Options) (*Output, error) {
	s, spec := p.Service, p.Spec
	out := &Output{}
	var notes []string
	note := func(lines ...string) { notes = append(notes, lines...) }
	var args [][]string
	arg := func(a ...string) { args = append(args, a) }

	arg("--detach")
	arg("--name", s.Name)
	if spec.Hostname != "" {
		arg("--hostname", spec.Hostname)
	}
	if s.Security.ReadOnlyRootfs {
		arg("--read-only")
	}
	arg("--cap-drop", "ALL")
	for _, c := range s.Security.Capabilities {
		arg("--cap-add", c.Short())
	}
	if s.Security.NoNewPrivileges {
		arg("--security-opt", "no-new-privileges")
	}
	seccomp, err := seccompOutput(p)
	if err != nil {
		return nil, err
	}
	switch {
	case seccomp != nil:
		out.Files = append(out.Files, *seccomp)
		arg("--security-opt", "seccomp="+filepath.Join(opts.Dir, seccomp.Name))
	case s.Security.Seccomp == "unconfined":
		arg("--security-opt", "seccomp=unconfined")
	}
	if name := appArmorProfile(s); name != "" {
		arg("--security-opt", "apparmor="+name)
		note(appArmorNote(s, name)...)
	} else {
		arg("--security-opt", "apparmor=unconfined")
	}
	out.Warnings = append(out.Warnings, dockerWarnings(p, "docker", seccomp == nil && s.Security.Seccomp != "unconfined")...)
	if s.Process.Notify {
		note(notifyNote)
	}
	resourceFlags(s, spec, arg, note, out)
	switch s.Network.Mode {
	case manifest.NetworkHost:
		arg("--network", "host")
	case manifest.NetworkBridge:
		arg("--network", dockerNetwork(s))
		for _, p := range s.Network.Published {
			arg("--publish", dockerPort(p))
		}
		for _, a := range s.Network.Resolvers {
			arg("--dns", a.String())
		}
		internal, notes, warnings := dockerNetworkPlan(s)
		create := "docker network create " + dockerNetwork(s)
		if internal {
			create = "docker network create --internal " + dockerNetwork(s)
		}
		note("Network: create it once: " + create)
		note(notes...)
		out.Warnings = append(out.Warnings, warnings...)
	default:
		arg("--network", "none")
	}
	for _, ns := range []struct{ flag, mode string }{{"--pid", s.Namespaces.PID}, {"--ipc", s.Namespaces.IPC}, {"--uts", s.Namespaces.UTS}} {
		if ns.mode == "host" {
			arg(ns.flag, "host")
		}
	}
	for _, m := range s.Mounts {
		switch m.Type {
		case manifest.MountTmpfs:
			arg("--tmpfs", m.Target+":"+strings.Join(tmpfsOptions(p, m), ","))
		case manifest.MountVolume:
			arg("--mount", mountOpt("volume", m.Source, m.Target, !m.Writable()))
			if m.Writable() && spec.Process.User.UID != 0 {
				note(fmt.Sprintf("Volume %s: docker creates it owned by root unless the image holds %s owned", m.Source, m.Target),
					fmt.Sprintf("by the user; give it to %d:%d once: docker run --rm --user 0 --mount type=volume,source=%s,target=/v IMAGE chown %d:%d /v",
						spec.Process.User.UID, spec.Process.User.GID, m.Source, spec.Process.User.UID, spec.Process.User.GID))
			}
		default:
			// --mount, not -v: -v creates a missing source as a directory.
			arg("--mount", mountOpt("bind", m.Source, m.Target, !m.Writable()))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(s.Secrets)) {
		arg("--mount", mountOpt("bind", s.Secrets[name].File, plan.SecretsPath+"/"+name, true))
	}
	l := labels(p)
	for _, k := range slices.Sorted(maps.Keys(l)) {
		arg("--label", k+"="+l[k])
	}
	if u := processUser(p); u != "" {
		arg("--user", u)
	}
	for _, g := range spec.Process.User.AdditionalGids {
		arg("--group-add", strconv.FormatUint(uint64(g), 10))
	}
	if w := processWorkdir(p); w != "" {
		arg("--workdir", w)
	}
	for _, k := range slices.Sorted(maps.Keys(s.Process.Env)) {
		arg("--env", k+"="+s.Process.Env[k])
	}
	if s.Process.Init {
		arg("--init")
	}
	if s.Process.TTY {
		arg("--tty")
	}
	arg("--stop-signal", s.Process.StopSignal.Name)
	arg("--stop-timeout", strconv.FormatInt(seconds(s.Process.StopTimeout), 10))
	arg("--restart", s.Process.Restart)
	cmd := command(p)
	if len(s.Process.Command) > 0 {
		// The manifest's command replaces the image's entrypoint and cmd.
		arg("--entrypoint", cmd[0])
	}

	var b strings.Builder
	b.WriteString("#!/bin/sh\n")
	writeComments(&b, header(p, "docker")...)
	image, imageNotes := dockerImage(s, p)
	imageNotes = append(imageNotes, unknownImageNote(p)...)
	writeComments(&b, append(append(warningLines(out), imageNotes...), notes...)...)
	b.WriteString("set -eu\n")
	if s.Image.Ref == "" && s.Image.Rootfs != "" {
		fmt.Fprintf(&b, "IMAGE=${IMAGE:-$(tar -C %s -c . | docker import -)}\n", shellQuote(p.Image.Rootfs))
	}
	b.WriteString("exec docker run")
	for _, a := range args {
		b.WriteString(" \\\n  ")
		for i, w := range a {
			if i > 0 {
				b.WriteString(" ")
			}
			b.WriteString(shellQuote(w))
		}
	}
	b.WriteString(" \\\n  " + image)
	// Without a command of the manifest's, the image's own entrypoint
	// and cmd: docker runs them as they are.
	if len(s.Process.Command) > 0 {
		for _, w := range cmd[1:] {
			b.WriteString(" " + shellQuote(w))
		}
	}
	b.WriteString("\n")
	out.Text = []byte(b.String())
	return out, nil
}

// warningLines are the export's warnings as lines of its header comment.
func warningLines(out *Output) []string {
	lines := make([]string, len(out.Warnings))
	for i, w := range out.Warnings {
		lines[i] = "WARNING: " + w
	}
	return lines
}

// rootWarning is the weakening docker and compose cannot undo themselves.
const rootWarning = "the process runs as root (uid 0): safe-run makes that an unprivileged host user through its user namespace, docker only when the daemon runs with userns-remap; without it this is the host's root, confined only by capabilities, seccomp and AppArmor (set [process] user, or enable userns-remap)"

// notifyNote says what becomes of [process] notify where nothing listens.
const notifyNote = "notify = true: docker does not pass NOTIFY_SOCKET; the service's readiness messages go nowhere (a HEALTHCHECK can stand in)."

// resourceFlags are the cgroup limits and rlimits.
func resourceFlags(s *manifest.Service, spec *specs.Spec, arg func(...string), note func(...string), out *Output) {
	r := s.Resources
	if r.Pids > 0 {
		arg("--pids-limit", strconv.FormatInt(r.Pids, 10))
	}
	if r.Memory > 0 {
		arg("--memory", r.Memory.String())
		// Swap equal to the limit: no swap on top of it.
		arg("--memory-swap", r.Memory.String())
	}
	if r.MemoryReservation > 0 {
		arg("--memory-reservation", r.MemoryReservation.String())
	}
	if r.CPUs > 0 {
		// The quota in safe-run's period, not --cpus (docker's 100 ms
		// period): see plan.CPUQuota.
		quota, period := plan.CPUQuota(r.CPUs)
		arg("--cpu-period", strconv.FormatUint(period, 10), "--cpu-quota", strconv.FormatInt(quota, 10))
		// The weight by cpus: see plan.CPUShares.
		arg("--cpu-shares", strconv.FormatUint(plan.CPUShares(r.CPUs), 10))
	}
	for _, rl := range spec.Process.Rlimits {
		name := strings.ToLower(strings.TrimPrefix(rl.Type, "RLIMIT_"))
		if rl.Soft == rl.Hard {
			arg("--ulimit", fmt.Sprintf("%s=%d", name, rl.Soft))
		} else {
			arg("--ulimit", fmt.Sprintf("%s=%d:%d", name, rl.Soft, rl.Hard))
		}
	}
}

// dockerImage is the image argument of docker run, and what the reader
// must know about it.
func dockerImage(s *manifest.Service, p *plan.Job) (string, []string) {
	switch {
	case s.Image.Ref != "":
		return shellQuote(s.Image.Ref), nil
	case s.Image.Rootfs != "":
		return `"$IMAGE"`, []string{
			"Image: the manifest names a root filesystem directory, not a registry",
			"image. Unless IMAGE is set, the script imports the directory and runs",
			"the image by its ID (sha256:...), which pins its content.",
		}
	}
	return `"${IMAGE:?set IMAGE to the image (docker load -i ARCHIVE prints it)}"`, []string{
		"Image: load the manifest's image into docker first and set IMAGE to its ID.",
	}
}

func appArmorNote(s *manifest.Service, name string) []string {
	var n []string
	if s.Security.AppArmor == "generated" {
		n = append(n, fmt.Sprintf("AppArmor: %s is safe-run's generated profile; load it on the docker host", name),
			"first (docker refuses to start a container whose profile is not loaded).")
	}
	if s.Security.AppArmorMode == "complain" {
		n = append(n, "AppArmor: docker has no complain mode of its own; load the profile in complain mode.")
	}
	return n
}

// tmpfsOptions are the tmpfs mount options of the spec.
func tmpfsOptions(p *plan.Job, m manifest.Mount) []string {
	for _, sm := range p.Spec.Mounts {
		if sm.Destination == m.Target && sm.Type == "tmpfs" {
			return sm.Options
		}
	}
	return nil
}

func mountOpt(typ, source, target string, readOnly bool) string {
	o := "type=" + typ + ",source=" + source + ",target=" + target
	if readOnly {
		o += ",readonly"
	}
	return o
}

func hasBinds(s *manifest.Service) bool {
	for _, m := range s.Mounts {
		if m.Type == manifest.MountBind {
			return true
		}
	}
	return false
}

// labels are the manifest's labels and safe-run's own record of where the
// container came from.
func labels(p *plan.Job) map[string]string {
	l := maps.Clone(p.Service.Labels)
	if l == nil {
		l = map[string]string{}
	}
	l[plan.AnnotationManifest] = manifestPath(p.Service)
	l[plan.AnnotationManifestDigest] = p.Service.Digest
	return l
}

// shellQuote quotes a word for sh when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./:=,+@%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// dockerNetwork is the docker network a bridge-mode service joins: its
// named bridge, or one of its own, as safe-run gives it.
func dockerNetwork(s *manifest.Service) string {
	if s.Network.Bridge != "" {
		return s.Network.Bridge
	}
	return s.Name + "-net"
}

// dockerPort writes a published port for -p and compose, the host address
// always given: docker's own default is every address.
func dockerPort(p manifest.Port) string {
	return fmt.Sprintf("%s:%d:%d/%s", p.HostIP, p.HostPort, p.ContainerPort, p.Proto)
}

// dockerNetworkPlan says whether the docker network of a bridge-mode
// service is internal (no way out: egress = "none"), what to know of it,
// and what of the manifest's [network] docker does not enforce.
func dockerNetworkPlan(s *manifest.Service) (internal bool, notes, warnings []string) {
	n := s.Network
	switch {
	case n.Egress.None() && len(n.Published) == 0:
		return true, []string{"Network: internal, as egress = \"none\": the service reaches only its peers."}, nil
	case n.Egress.None():
		warnings = append(warnings, "egress: docker publishes no port of a container on an internal network, so this one is not internal and the container reaches every address, where the manifest allows it only its peers and DNS: firewall it on the host (DOCKER-USER chain)")
	case len(n.Egress.Rules) > 0:
		warnings = append(warnings, "egress: docker cannot limit outbound connections to "+n.Egress.String()+"; the container reaches every address: firewall it on the host (DOCKER-USER chain)")
	}
	if len(n.Published) > 0 {
		warnings = append(warnings, "ports: docker's DNAT passes by the host's INPUT firewall; safe-run's forwarders do not")
	}
	return false, notes, warnings
}
