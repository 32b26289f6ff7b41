package audit

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/safe-run/safe-run/policy"
)

// Options say which engine to audit.
type Options struct {
	Host string // DOCKER_HOST syntax; "" means DefaultHost
	All  bool   // also containers that are not running (created, exited)
}

// Result is the audit of one engine: the daemon's report first, then one
// per container, by name.
type Result struct {
	Reports []*policy.Report
	// Notes say what audit could not find out (a listener it could not
	// probe, /proc it may not read): a finding that is missing for these
	// reasons is not a pass.
	Notes []string
}

// Audit judges the engine at opts.Host.
func Audit(ctx context.Context, opts Options) (*Result, error) {
	host := opts.Host
	if host == "" {
		host = DefaultHost
	}
	c, err := NewClient(host)
	if err != nil {
		return nil, err
	}
	if err := c.ping(ctx); err != nil {
		return nil, err
	}
	var info apiInfo
	if err := c.get(ctx, "/info", &info); err != nil {
		return nil, err
	}
	res := &Result{}
	d := &policy.Daemon{
		Endpoint: host,
		Version:  fmt.Sprintf("Docker Engine %s, API %s", info.ServerVersion, c.version),
	}
	for _, o := range info.SecurityOptions {
		switch name, _, _ := strings.Cut(strings.TrimPrefix(o, "name="), ","); name {
		case "rootless":
			d.Rootless = true
		case "userns":
			d.UsernsRemap = true
		case "seccomp":
			d.Seccomp = true
		case "apparmor":
			d.AppArmor = true
		}
	}
	res.Notes = append(res.Notes, probeDaemon(ctx, c, d)...)
	res.Reports = append(res.Reports, policy.CheckDaemon(d))

	var list []apiContainerSummary
	path := "/containers/json"
	if opts.All {
		path += "?all=1"
	}
	if err := c.get(ctx, path, &list); err != nil {
		return nil, err
	}
	var containers []*policy.Report
	for _, s := range list {
		var ins apiContainer
		if err := c.get(ctx, "/containers/"+s.ID+"/json", &ins); err != nil {
			// Gone between the list and the inspect: not an error.
			res.Notes = append(res.Notes, fmt.Sprintf("container %s: %v", short(s.ID), err))
			continue
		}
		ct := container(&ins)
		detail := short(ins.ID) + ", " + ins.Config.Image
		if s.State != "running" {
			detail += ", " + s.State
		}
		containers = append(containers, policy.CheckContainer(ct, detail))
	}
	slices.SortFunc(containers, func(a, b *policy.Report) int { return strings.Compare(a.Name, b.Name) })
	res.Reports = append(res.Reports, containers...)
	return res, nil
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// container turns an inspect answer into what the rules judge.
func container(ins *apiContainer) *policy.Container {
	h := ins.HostConfig
	c := &policy.Container{
		Name:            strings.TrimPrefix(ins.Name, "/"),
		Image:           ins.Config.Image,
		User:            ins.Config.User,
		Env:             ins.Config.Env,
		Privileged:      h.Privileged,
		CapAdd:          h.CapAdd,
		CapDrop:         h.CapDrop,
		NetworkMode:     h.NetworkMode,
		PidMode:         h.PidMode,
		IpcMode:         h.IpcMode,
		UTSMode:         h.UTSMode,
		UsernsMode:      h.UsernsMode,
		ReadonlyRootfs:  h.ReadonlyRootfs,
		Memory:          h.Memory,
		SecurityOpt:     h.SecurityOpt,
		AppArmorProfile: ins.AppArmorProfile,
	}
	for _, d := range h.Devices {
		c.Devices = append(c.Devices, d.PathOnHost)
	}
	switch {
	case h.NanoCpus > 0:
		c.CPUs = float64(h.NanoCpus) / 1e9
	case h.CPUQuota > 0:
		period := h.CPUPeriod
		if period == 0 {
			period = 100000
		}
		c.CPUs = float64(h.CPUQuota) / float64(period)
	case h.CpusetCpus != "":
		c.CPUs = float64(cpusetCount(h.CpusetCpus))
	}
	if h.PidsLimit != nil {
		c.PidsLimit = *h.PidsLimit
	}
	for _, port := range slices.Sorted(maps.Keys(h.PortBindings)) {
		num, proto, _ := strings.Cut(port, "/")
		for _, b := range h.PortBindings[port] {
			c.Ports = append(c.Ports, policy.ContainerPort{HostIP: b.HostIP, HostPort: b.HostPort, ContainerPort: num, Proto: proto})
		}
	}
	for _, m := range ins.Mounts {
		c.Mounts = append(c.Mounts, policy.ContainerMount{Type: m.Type, Source: m.Source, Target: m.Destination, ReadOnly: !m.RW})
	}
	return c
}

// cpusetCount counts the CPUs of a cpuset list such as 0-3,8.
func cpusetCount(s string) int {
	n := 0
	for _, part := range strings.Split(s, ",") {
		var a, b int
		if _, err := fmt.Sscanf(part, "%d-%d", &a, &b); err == nil && b >= a {
			n += b - a + 1
		} else if _, err := fmt.Sscanf(part, "%d", &a); err == nil {
			n++
		}
	}
	return n
}
