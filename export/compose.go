package export

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/safe-run/safe-run/manifest"
	"github.com/safe-run/safe-run/plan"
)

// composeFile is the part of the Compose Specification the export writes;
// the json tags are the spec's keys.
type composeFile struct {
	Services map[string]composeService `json:"services"`
	Volumes  map[string]struct{}       `json:"volumes,omitempty"`
	Secrets  map[string]composeSecret  `json:"secrets,omitempty"`
	Networks map[string]composeNetwork `json:"networks,omitempty"`
}

// composeNetwork is named, so that services exported to separate files
// (each its own compose project) join the same network.
type composeNetwork struct {
	Name     string `json:"name"`
	Internal bool   `json:"internal,omitempty"`
}

type composeService struct {
	Image           string            `json:"image"`
	Entrypoint      []string          `json:"entrypoint,omitempty"`
	Command         []string          `json:"command,omitempty"`
	Hostname        string            `json:"hostname,omitempty"`
	User            string            `json:"user,omitempty"` // "": the image's
	GroupAdd        []string          `json:"group_add,omitempty"`
	WorkingDir      string            `json:"working_dir,omitempty"`
	Environment     map[string]string `json:"environment,omitempty"`
	ReadOnly        bool              `json:"read_only,omitempty"`
	CapDrop         []string          `json:"cap_drop"`
	CapAdd          []string          `json:"cap_add,omitempty"`
	SecurityOpt     []string          `json:"security_opt,omitempty"`
	PidsLimit       int64             `json:"pids_limit,omitempty"`
	MemLimit        string            `json:"mem_limit,omitempty"`
	MemswapLimit    string            `json:"memswap_limit,omitempty"`
	MemReservation  string            `json:"mem_reservation,omitempty"`
	CPUPeriod       uint64            `json:"cpu_period,omitempty"`
	CPUShares       uint64            `json:"cpu_shares,omitempty"`
	CPUQuota        int64             `json:"cpu_quota,omitempty"`
	Ulimits         map[string]any    `json:"ulimits,omitempty"`
	NetworkMode     string            `json:"network_mode,omitempty"`
	Networks        []string          `json:"networks,omitempty"`
	Ports           []composePort     `json:"ports,omitempty"`
	DNS             []string          `json:"dns,omitempty"`
	Pid             string            `json:"pid,omitempty"`
	Ipc             string            `json:"ipc,omitempty"`
	Uts             string            `json:"uts,omitempty"`
	Tmpfs           []string          `json:"tmpfs,omitempty"`
	Volumes         []composeVolume   `json:"volumes,omitempty"`
	Secrets         []string          `json:"secrets,omitempty"`
	Labels          map[string]string `json:"labels,omitempty"`
	Init            bool              `json:"init,omitempty"`
	TTY             bool              `json:"tty,omitempty"`
	StopSignal      string            `json:"stop_signal"`
	StopGracePeriod string            `json:"stop_grace_period"`
	Restart         string            `json:"restart"`
}

// composePort is the long syntax: no YAML 1.1 reading of "22:22" as a
// base-60 number, and the host address always written.
type composePort struct {
	Target    uint16 `json:"target"`
	Published string `json:"published"`
	HostIP    string `json:"host_ip"`
	Protocol  string `json:"protocol"`
}

type composeVolume struct {
	Type     string       `json:"type"`
	Source   string       `json:"source"`
	Target   string       `json:"target"`
	ReadOnly bool         `json:"read_only,omitempty"`
	Bind     *composeBind `json:"bind,omitempty"`
}

type composeBind struct {
	CreateHostPath bool `json:"create_host_path"`
}

type composeSecret struct {
	File string `json:"file"`
}

// Compose writes the compose service equivalent to the docker run line of
// Docker, and the seccomp profile beside it.
func Compose(p *plan.Job, opts Options) (*Output, error) {
	s, spec := p.Service, p.Spec
	out := &Output{}
	notes := []string{}
	c := composeService{
		Hostname:        spec.Hostname,
		ReadOnly:        s.Security.ReadOnlyRootfs,
		CapDrop:         []string{"ALL"},
		WorkingDir:      processWorkdir(p),
		Environment:     s.Process.Env,
		Labels:          labels(p),
		Init:            s.Process.Init,
		TTY:             s.Process.TTY,
		StopSignal:      s.Process.StopSignal.Name,
		StopGracePeriod: strconv.FormatInt(seconds(s.Process.StopTimeout), 10) + "s",
		Restart:         s.Process.Restart,
		NetworkMode:     "none",
		PidsLimit:       s.Resources.Pids,
	}
	if s.Resources.CPUs > 0 {
		// safe-run's period, not cpus's 100 ms: see plan.CPUQuota.
		c.CPUQuota, c.CPUPeriod = plan.CPUQuota(s.Resources.CPUs)
		// The weight by cpus: see plan.CPUShares.
		c.CPUShares = plan.CPUShares(s.Resources.CPUs)
	}
	c.User = processUser(p)
	for _, g := range spec.Process.User.AdditionalGids {
		c.GroupAdd = append(c.GroupAdd, strconv.FormatUint(uint64(g), 10))
	}
	for _, cp := range s.Security.Capabilities {
		c.CapAdd = append(c.CapAdd, cp.Short())
	}
	if s.Security.NoNewPrivileges {
		c.SecurityOpt = append(c.SecurityOpt, "no-new-privileges:true")
	}
	seccomp, err := seccompOutput(p)
	if err != nil {
		return nil, err
	}
	switch {
	case seccomp != nil:
		out.Files = append(out.Files, *seccomp)
		c.SecurityOpt = append(c.SecurityOpt, "seccomp:"+filepath.Join(opts.Dir, seccomp.Name))
	case s.Security.Seccomp == "unconfined":
		c.SecurityOpt = append(c.SecurityOpt, "seccomp:unconfined")
	}
	if name := appArmorProfile(s); name != "" {
		c.SecurityOpt = append(c.SecurityOpt, "apparmor:"+name)
		notes = append(notes, appArmorNote(s, name)...)
	} else {
		c.SecurityOpt = append(c.SecurityOpt, "apparmor:unconfined")
	}
	out.Warnings = append(out.Warnings, dockerWarnings(p, "compose", seccomp == nil && s.Security.Seccomp != "unconfined")...)
	if s.Process.Notify {
		notes = append(notes, notifyNote)
	}
	if m := s.Resources.Memory; m > 0 {
		c.MemLimit, c.MemswapLimit = composeSize(m), composeSize(m)
	}
	if m := s.Resources.MemoryReservation; m > 0 {
		c.MemReservation = composeSize(m)
	}
	for _, rl := range spec.Process.Rlimits {
		name := strings.ToLower(strings.TrimPrefix(rl.Type, "RLIMIT_"))
		if c.Ulimits == nil {
			c.Ulimits = map[string]any{}
		}
		if rl.Soft == rl.Hard {
			c.Ulimits[name] = rl.Soft
		} else {
			c.Ulimits[name] = map[string]uint64{"soft": rl.Soft, "hard": rl.Hard}
		}
	}
	f := composeFile{Services: map[string]composeService{}}
	switch s.Network.Mode {
	case manifest.NetworkHost:
		c.NetworkMode = "host"
	case manifest.NetworkBridge:
		// A network per bridge: services exported with the same bridge
		// share it when their files are merged.
		c.NetworkMode = ""
		net := dockerNetwork(s)
		c.Networks = []string{net}
		internal, netNotes, netWarnings := dockerNetworkPlan(s)
		f.Networks = map[string]composeNetwork{net: {Name: net, Internal: internal}}
		notes = append(notes, netNotes...)
		out.Warnings = append(out.Warnings, netWarnings...)
		for _, p := range s.Network.Published {
			c.Ports = append(c.Ports, composePort{Target: p.ContainerPort, Published: strconv.Itoa(int(p.HostPort)), HostIP: p.HostIP.String(), Protocol: p.Proto})
		}
		for _, a := range s.Network.Resolvers {
			c.DNS = append(c.DNS, a.String())
		}
	}
	if s.Namespaces.PID == "host" {
		c.Pid = "host"
	}
	if s.Namespaces.IPC == "host" {
		c.Ipc = "host"
	}
	if s.Namespaces.UTS == "host" {
		c.Uts = "host"
	}
	for _, m := range s.Mounts {
		switch m.Type {
		case manifest.MountTmpfs:
			c.Tmpfs = append(c.Tmpfs, m.Target+":"+strings.Join(tmpfsOptions(p, m), ","))
		case manifest.MountVolume:
			c.Volumes = append(c.Volumes, composeVolume{Type: "volume", Source: m.Source, Target: m.Target, ReadOnly: !m.Writable()})
			if f.Volumes == nil {
				f.Volumes = map[string]struct{}{}
			}
			f.Volumes[m.Source] = struct{}{}
		default:
			c.Volumes = append(c.Volumes, composeVolume{Type: "bind", Source: m.Source, Target: m.Target, ReadOnly: !m.Writable(),
				Bind: &composeBind{CreateHostPath: false}})
		}
	}
	for _, name := range slices.Sorted(maps.Keys(s.Secrets)) {
		c.Secrets = append(c.Secrets, name)
		if f.Secrets == nil {
			f.Secrets = map[string]composeSecret{}
		}
		f.Secrets[name] = composeSecret{File: s.Secrets[name].File}
	}
	cmd := command(p)
	if len(s.Process.Command) > 0 {
		// The manifest's command replaces the image's entrypoint and cmd;
		// an entrypoint set here clears the image's cmd.
		c.Entrypoint = cmd
	}
	// Else the image's own entrypoint and cmd, as compose runs them.
	switch {
	case s.Image.Ref != "":
		c.Image = s.Image.Ref
		notes = append(unknownImageNote(p), notes...)
	default:
		c.Image = composeImageVar
		notes = append([]string{
			"Image: the manifest names a root filesystem directory, not a registry",
			"image. Import it and run compose with the ID it prints, which pins it:",
			fmt.Sprintf("  IMAGE=$(tar -C %s -c . | docker import -) docker compose up -d", shellQuote(p.Image.Rootfs)),
		}, notes...)
	}
	f.Services[s.Name] = c
	// Every $ literal, but for the one variable the file means to have.
	y, err := toYAMLEdited(f, func(n *yaml.Node) { escapeDollars(n, composeImageVar) })
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	writeComments(&b, append(append(header(p, "compose"), warningLines(out)...), notes...)...)
	b.Write(y)
	out.Text = []byte(b.String())
	return out, nil
}

// composeImageVar is the image of a service whose manifest names a root
// filesystem: the ID docker import prints, which compose interpolates.
const composeImageVar = "${IMAGE:?set IMAGE to the image ID, see the comment at the top}"

// composeSize writes a size in bytes: compose reads "64M" in decimal or
// binary units depending on the implementation, a byte count never.
func composeSize(s manifest.Size) string { return strconv.FormatInt(int64(s), 10) }
