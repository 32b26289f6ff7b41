package importer

import (
	"fmt"
	"net/netip"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/safe-run/safe-run/manifest"
	"github.com/safe-run/safe-run/policy"
)

// namespaces reads --network, -p, --dns and the host namespace flags.
func (s *spec) namespaces(network string, publish, dns []string, pid, ipc, uts, userns string) {
	s.c.NetworkMode, s.c.PidMode, s.c.IpcMode, s.c.UTSMode, s.c.UsernsMode = network, pid, ipc, uts, userns
	s.network = manifest.NetworkNone
	for _, p := range publish {
		if cp, ok := dockerPort(p); ok {
			s.c.Ports = append(s.c.Ports, cp)
		}
	}
	switch {
	case network == "host":
		s.network = manifest.NetworkHost
		s.allow(manifest.AllowHostNetwork, "--network host", policy.Lookup("host-network"), "carried over with [insecure] host_network")
		for _, p := range publish {
			s.note(Ignored, "--publish "+p, nil, "with the host network every port the service opens is on the host already")
		}
		publish = nil
	case network == "none":
		for _, p := range publish {
			s.note(Ignored, "--publish "+p, nil, "with --network none docker publishes nothing either")
		}
		publish = nil
	case strings.HasPrefix(network, "container:"), strings.HasPrefix(network, "service:"):
		s.note(Unsupported, "--network "+network, nil, "a service shares no other container's network namespace: give both the same bridge instead")
		publish = nil
	case network == "" || network == "bridge" || network == "default":
		if len(publish) == 0 {
			s.note(Default, "--network", nil, `network mode "none" (loopback only) filled in: docker's default bridge gave the container outbound network; if the service needs it, set mode = "bridge" and list what it connects to in egress`)
		}
	default:
		s.network = manifest.NetworkBridge
		s.bridge = bridgeName(network)
		text := "joins bridge " + strconv.Quote(s.bridge) + ": services on it reach each other by name"
		if s.bridge != network {
			text += " (docker's name, " + strconv.Quote(network) + ", is not a network name for safe-run: check that every service on it gets the same one)"
		}
		s.note(Default, "--network "+network, nil, text)
	}
	for _, p := range publish {
		port, err := manifest.ParsePort(p)
		if err != nil {
			s.note(Unsupported, "--publish "+p, nil, "not carried over: "+strings.TrimPrefix(err.Error(), strconv.Quote(p)+": "))
			continue
		}
		s.network = manifest.NetworkBridge
		body, _, _ := strings.Cut(p, "/")
		if strings.Count(body, ":") == 1 {
			// No host IP: docker publishes on every address. Written out,
			// the manifest keeps that meaning instead of safe-run's
			// 127.0.0.1, and check flags it.
			port.HostIP = netip.IPv4Unspecified()
			s.note(Default, "--publish "+p, policy.Lookup("publish-all-addresses"), fmt.Sprintf(`written as %q: docker publishes on every address of the host, and so does the manifest, explicitly; write %q for 127.0.0.1 only, safe-run's default`, portString(port), strings.TrimPrefix(portString(port), "0.0.0.0:")))
		}
		s.ports = append(s.ports, portString(port))
		if port.Proto == "tcp" {
			if s.published == nil {
				s.published = map[int]bool{}
			}
			s.published[int(port.ContainerPort)] = true
		}
	}
	if s.network == manifest.NetworkBridge {
		s.note(Default, "egress", nil, `egress = "none" filled in: docker let the container connect anywhere; safe-run lets it reach only its bridge's peers and DNS: list what it connects to, e.g. egress = ["10.0.0.0/8:5432/tcp", "api.example.com:443"]`)
	}
	for _, d := range dns {
		switch a, err := netip.ParseAddr(d); {
		case s.network != manifest.NetworkBridge:
			s.note(Ignored, "--dns "+d, nil, "only a service in bridge mode has resolvers to set")
		case err != nil || a.Is6() || a.IsLoopback():
			s.note(Unsupported, "--dns "+d, nil, "not carried over: resolvers must be IPv4 addresses the service's network reaches (not loopback); without dns the service uses the host's")
		default:
			s.dns = append(s.dns, a.String())
		}
	}
	for _, ns := range []struct {
		mode, flag, item, rule string
		set                    *string
	}{
		{pid, "--pid", manifest.AllowHostPID, "host-pid", &s.pid},
		{ipc, "--ipc", manifest.AllowHostIPC, "host-ipc", &s.ipc},
		{uts, "--uts", manifest.AllowHostUTS, "host-uts", &s.uts},
	} {
		switch {
		case ns.mode == "host":
			*ns.set = "host"
			s.allow(ns.item, ns.flag+" host", policy.Lookup(ns.rule), "carried over with [insecure] "+ns.item)
		case ns.mode == "", ns.mode == "private", ns.mode == "shareable", ns.mode == "none":
		default:
			s.note(Unsupported, ns.flag+" "+ns.mode, nil, "a service shares no other container's namespaces")
		}
	}
	switch userns {
	case "":
	case "host":
		s.note(Refused, "--userns host", policy.Lookup("host-userns"), "not carried over: safe-run always gives the service its own user namespace, so container root is unprivileged on the host")
	default:
		s.note(Ignored, "--userns "+userns, nil, "safe-run always gives the service its own user namespace")
	}
}

// maxExposeRange bounds the ports one --expose range adds to
// landlock_bind: a manifest lists each port.
const maxExposeRange = 64

// exposeFlags reads --expose PORT[-END][/PROTO]: docker records it as
// documentation only, but Landlock lets a service bind only the ports
// the manifest names, so the TCP ones go to landlock_bind.
func (s *spec) exposeFlags(vs []string) {
	for _, v := range vs {
		flag := "--expose " + v
		body, proto, _ := strings.Cut(v, "/")
		switch strings.ToLower(proto) {
		case "", "tcp":
		case "udp", "sctp":
			s.note(Ignored, flag, nil, "Landlock limits only TCP binds: the service binds "+proto+" ports without landlock_bind")
			continue
		default:
			s.note(Unsupported, flag, nil, "not a port (docker takes PORT[-END][/tcp|udp|sctp])")
			continue
		}
		lo, hi, isRange := strings.Cut(body, "-")
		if !isRange {
			hi = lo
		}
		a, err1 := strconv.Atoi(lo)
		b, err2 := strconv.Atoi(hi)
		switch {
		case err1 != nil || err2 != nil || a < 1 || b > 65535 || a > b:
			s.note(Unsupported, flag, nil, "not a port (docker takes PORT[-END][/tcp|udp|sctp])")
			continue
		case b-a >= maxExposeRange:
			s.note(Unsupported, flag, nil, fmt.Sprintf("a range of %d ports is not carried over: list the ports the service binds in [security] landlock_bind", b-a+1))
			continue
		}
		for p := a; p <= b; p++ {
			if !slices.Contains(s.expose, p) {
				s.expose = append(s.expose, p)
			}
		}
		s.note(Default, flag, nil, "written into [security] landlock_bind: Landlock lets the service bind only the container ports of [network] ports and landlock_bind")
	}
}

// landlockBind is what the manifest's landlock_bind lists: the exposed
// TCP ports, else the ports a known image listens on, without those
// ports publishes already.
func (s *spec) landlockBind() (ports []int, comment string) {
	src := s.expose
	if len(src) == 0 {
		if h := hintFor(s.c.Image); len(h.listens) > 0 {
			src, comment = h.listens, "the ports "+imageBase(s.c.Image)+" listens on (its image EXPOSEs them): Landlock lets it bind only these and the published ones"
		}
	}
	for _, p := range src {
		if !s.published[p] {
			ports = append(ports, p)
		}
	}
	if len(ports) == 0 {
		comment = ""
	}
	return ports, comment
}

// security reads --privileged, capabilities and --security-opt.
func (s *spec) security() {
	if s.c.Privileged {
		s.note(Refused, "--privileged", policy.Lookup("privileged"), privilegedAdvice(s))
	}
	for _, c := range s.c.CapAdd {
		n := strings.ToUpper(strings.TrimPrefix(strings.ToUpper(c), "CAP_"))
		if n == "ALL" {
			s.note(Refused, "--cap-add ALL", policy.Lookup("dangerous-capability"), "not carried over: name the capabilities the service needs")
			continue
		}
		cap, err := manifest.ParseCapability(n)
		if err != nil {
			s.note(Unsupported, "--cap-add "+c, nil, err.Error())
			continue
		}
		if why, bad := policy.DangerousCapability(cap); bad {
			s.allow(manifest.AllowDangerousCapabilities, "--cap-add "+c, policy.Lookup("dangerous-capability"), "carried over with [insecure] dangerous_capabilities: "+why)
		}
	}
	if !s.c.Privileged && !s.c.DropsAll() {
		s.note(Default, "--cap-drop", policy.Lookup("default-capabilities"), "docker's default capabilities are not carried over: the service gets only those it adds. An entrypoint that switches users (gosu, su-exec) needs SETUID and SETGID; one that chowns its data, CHOWN and FOWNER; a port below 1024, NET_BIND_SERVICE")
	}
	for _, o := range s.c.SecurityOpt {
		k, v, found := strings.Cut(o, "=")
		if !found {
			k, v, _ = strings.Cut(o, ":")
		}
		flag := "--security-opt " + o
		switch k {
		case "seccomp":
			switch {
			case v == "unconfined":
				s.seccomp = "unconfined"
				s.allow(manifest.AllowSeccompUnconfined, flag, policy.Lookup("seccomp-unconfined"), "carried over with [insecure] seccomp_unconfined")
			case strings.HasSuffix(v, ".json"):
				s.seccomp = s.abs(v)
				if !strings.HasPrefix(s.seccomp, "/") {
					s.note(Default, flag, nil, "a relative profile path is relative to the manifest's directory: check it")
				}
			default:
				s.note(Unsupported, flag, nil, "seccomp takes unconfined or a .json profile")
			}
		case "apparmor":
			s.apparmor = v
			if v == "unconfined" {
				s.allow(manifest.AllowAppArmorUnconfined, flag, policy.Lookup("apparmor-unconfined"), "carried over with [insecure] apparmor_unconfined")
			} else if v == "docker-default" {
				s.apparmor = ""
				s.note(Default, flag, nil, `written as apparmor = "generated": safe-run generates a profile per service`)
			}
		case "no-new-privileges":
			if v == "false" {
				s.note(Default, flag, policy.Lookup("new-privileges"), "not carried over: no_new_privileges = true is safe-run's default; acknowledge new_privileges if a setuid program must work")
			}
		case "label":
			s.note(Unsupported, flag, nil, "SELinux labels are not in manifest v1: safe-run confines with AppArmor")
		case "systempaths":
			s.note(Refused, flag, nil, "not carried over: safe-run always masks the kernel's /proc and /sys knobs")
		default:
			s.note(Unsupported, flag, nil, "security option "+k+" is not in manifest v1")
		}
	}
	if !s.c.ReadonlyRootfs {
		s.note(Default, "--read-only", policy.Lookup("writable-rootfs"), "the root filesystem is read-only (docker's was writable): a tmpfs is mounted at /tmp; mount tmpfs or volumes wherever else the service writes")
	}
}

// privilegedAdvice says what a privileged container may really need,
// from the rest of its command line and what the image is known for.
func privilegedAdvice(s *spec) string {
	var need []string
	if len(s.c.CapAdd) > 0 {
		need = append(need, "the capabilities it adds ("+strings.Join(s.c.CapAdd, ", ")+")")
	}
	for _, d := range s.c.Devices {
		need = append(need, "device "+d+" (safe-run passes no devices)")
	}
	hint := hintFor(s.c.Image)
	if hint.privileged != "" {
		need = append(need, hint.privileged)
	}
	text := "not carried over: --privileged gives every capability and host device and turns off seccomp and AppArmor"
	if len(need) > 0 {
		return text + ". The service may really need: " + strings.Join(need, "; ")
	}
	return text + ". Run the service without it and add, from its errors, only what it fails without: e.g. NET_ADMIN to configure networks, SYS_PTRACE to inspect other processes, read-only binds of the /sys or /proc paths a monitoring agent reads; host devices cannot be passed"
}

// hint is what is known about a popular image: where it writes, what its
// entrypoint needs.
type hint struct {
	tmpfs      []string // runtime directories it writes
	volumes    []string // data directories it declares as VOLUME
	caps       []string // capabilities its entrypoint needs when docker's defaults are gone
	why        string
	privileged string
	listens    []int // TCP ports its server listens on (the image's EXPOSE)
}

var hints = map[string]hint{
	"nginx":    {tmpfs: []string{"/var/cache/nginx", "/run"}, caps: []string{"CHOWN", "SETUID", "SETGID", "NET_BIND_SERVICE"}, why: "nginx's master creates its cache as root, binds port 80 and switches its workers to user nginx", listens: []int{80}},
	"postgres": {tmpfs: []string{"/var/run/postgresql"}, volumes: []string{"/var/lib/postgresql/data"}, caps: []string{"CHOWN", "FOWNER", "DAC_OVERRIDE", "SETUID", "SETGID"}, why: "the entrypoint chowns the data directory and switches to user postgres (gosu)", listens: []int{5432}},
	"redis":    {volumes: []string{"/data"}, caps: []string{"CHOWN", "SETUID", "SETGID"}, why: "the entrypoint chowns /data and switches to user redis (gosu)", listens: []int{6379}},
	"mysql":    {tmpfs: []string{"/var/run/mysqld"}, volumes: []string{"/var/lib/mysql"}, caps: []string{"CHOWN", "FOWNER", "DAC_OVERRIDE", "SETUID", "SETGID"}, why: "the entrypoint chowns its data and switches to user mysql (gosu)", listens: []int{3306, 33060}},
	"mariadb":  {tmpfs: []string{"/run/mysqld"}, volumes: []string{"/var/lib/mysql"}, caps: []string{"CHOWN", "FOWNER", "DAC_OVERRIDE", "SETUID", "SETGID"}, why: "the entrypoint chowns its data and switches to user mysql (gosu)", listens: []int{3306}},
	"mongo":    {volumes: []string{"/data/db", "/data/configdb"}, caps: []string{"CHOWN", "SETUID", "SETGID"}, why: "the entrypoint chowns its data and switches to user mongodb (gosu)", listens: []int{27017}},
	"grafana":  {volumes: []string{"/var/lib/grafana"}, listens: []int{3000}},
	"rabbitmq": {volumes: []string{"/var/lib/rabbitmq"}, caps: []string{"CHOWN", "SETUID", "SETGID"}, why: "the entrypoint switches to user rabbitmq", listens: []int{5672}},
	"cadvisor": {privileged: "read-only binds of /sys, /var/lib/docker and /var/run (it reads cgroup statistics) and device /dev/kmsg for OOM events; none of that needs --privileged"},
	"dind":     {privileged: "docker-in-docker really is a privileged daemon: run it on a host of its own, not as a service"},
	"docker":   {privileged: "docker-in-docker really is a privileged daemon: run it on a host of its own, not as a service"},
}

// hintFor finds the hint for an image reference: registry/library/nginx:1.25 -> nginx.
func hintFor(image string) hint {
	base := imageBase(image)
	if strings.HasSuffix(image, ":dind") || strings.Contains(image, ":dind-") || strings.Contains(image, "-dind") {
		return hints["dind"]
	}
	return hints[base]
}

// imageBase is the last path component of an image reference, without tag
// or digest.
func imageBase(image string) string {
	ref, _, _ := strings.Cut(image, "@")
	if i := strings.LastIndex(ref, "/"); i >= 0 {
		ref = ref[i+1:]
	}
	ref, _, _ = strings.Cut(ref, ":")
	return ref
}

// serviceName turns --name, or else the image's name, into a manifest name.
func serviceName(name, image string) string {
	if name == "" {
		name = imageBase(image)
	}
	n := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_', r == '.', r == '-':
			return r
		case r >= 'A' && r <= 'Z':
			return r + 'a' - 'A'
		}
		return '-'
	}, strings.TrimLeft(name, "/"))
	n = strings.TrimLeft(n, "_.-")
	if len(n) > 63 {
		n = n[:63]
	}
	if n == "" {
		n = "service"
	}
	return n
}

// result judges the docker command, fills in the secure defaults and
// writes the manifest.
func (s *spec) result(opts Options) (*Result, error) {
	name := serviceName(s.name, s.c.Image)
	if s.c.Name == "" {
		s.c.Name = name
	}
	docker := policy.CheckContainer(&s.c, s.c.Image)
	s.exported(name)
	if !policy.Pinned(s.c.Image) {
		s.allow(manifest.AllowUnpinnedImage, s.c.Image, policy.Lookup("unpinned-image"), "carried over with [insecure] unpinned_image: pin the digest safe-run prints on the first pull")
	}
	if s.c.Memory == 0 {
		s.note(Default, "--memory", policy.Lookup("memory-limit"), `memory = "512M" filled in as a guess: docker run set no limit; measure (docker stats) and adjust`)
	}
	if limit := s.memoryLimit(); s.reservation > limit {
		s.note(Unsupported, "--memory-reservation "+sizeString(s.reservation), nil, "above memory = "+sizeString(limit)+": a soft limit above the hard one limits nothing; not carried over")
	}
	if s.c.CPUs == 0 {
		s.note(Default, "--cpus", policy.Lookup("cpu-limit"), "cpus = 1.0 filled in as a guess: docker run set no limit")
	}
	switch {
	case s.c.PidsLimit > 4096:
		s.allow(manifest.AllowNoResourceLimits, fmt.Sprintf("--pids-limit %d", s.c.PidsLimit), policy.Lookup("pids-limit"), "carried over with [insecure] no_resource_limits")
	case s.c.PidsLimit <= 0 && s.c.PidsLimit != 0:
		s.note(Default, fmt.Sprintf("--pids-limit %d", s.c.PidsLimit), policy.Lookup("pids-limit"), "unlimited is not carried over: pids = 1024, safe-run's default, applies")
	}
	if s.c.User == "" {
		s.note(Default, "--user", policy.Lookup("root-user"), "no user: the service runs as the image's user, root unless the image says otherwise (root inside its user namespace only)")
	}
	if ports, _ := s.landlockBind(); len(ports) > 0 && len(s.expose) == 0 {
		s.note(Default, "landlock_bind", nil, fmt.Sprintf("landlock_bind = %v filled in: the ports %s listens on; Landlock lets a service bind only those and the container ports of [network] ports", ports, imageBase(s.c.Image)))
	} else if len(ports) == 0 && len(s.published) == 0 {
		s.note(Default, "landlock_bind", nil, "Landlock lets the service bind (listen on) only the container ports of [network] ports and [security] landlock_bind, and it publishes none: if it listens, list its TCP ports there, e.g. landlock_bind = [8080] (bind is refused with EACCES otherwise)")
	}
	if len(s.cmd) > 0 && !s.entrySet {
		s.note(Default, "COMMAND", nil, "docker passes these arguments to the image's ENTRYPOINT; process.command replaces ENTRYPOINT and CMD: if the image has an entrypoint (docker inspect -f '{{json .Config.Entrypoint}}' IMAGE), put it first")
	}
	if s.entrySet && len(s.entrypoint) == 0 {
		s.note(Default, "--entrypoint \"\"", nil, "the image's entrypoint is dropped: process.command is the command given")
	}
	return s.write(name, docker, opts)
}

// memoryLimit is the manifest's memory: --memory, or the guess written
// without it.
func (s *spec) memoryLimit() int64 {
	if s.c.Memory > 0 {
		return s.c.Memory
	}
	return 512 << 20
}

// exported reads back what a safe-run export writes for the manifest's
// own defaults, so that export -> import gives the manifest again.
func (s *spec) exported(name string) {
	if s.apparmor == "safe-run-"+name {
		s.apparmor = ""
		s.note(Default, "--security-opt apparmor=safe-run-"+name, nil, `safe-run's name for the profile it generates for this service (an export writes it): written as apparmor = "generated"`)
	}
	if !s.fromExport {
		return
	}
	if path.Base(s.seccomp) == name+".seccomp.json" {
		s.note(Default, "--security-opt seccomp="+s.seccomp, nil, `the profile a safe-run export writes from the manifest's: written as seccomp = "default"; if the manifest named a profile of its own, set seccomp to that`)
		s.seccomp = ""
	}
	if s.bridge == name+"-net" {
		s.bridge = ""
		s.note(Default, "--network "+name+"-net", nil, "the network a safe-run export makes for a service's own bridge: written as a bridge of its own (no bridge key)")
	}
}

// portString writes a port as the manifest does, the protocol only when
// it is not the default tcp.
func portString(p manifest.Port) string {
	s := fmt.Sprintf("%s:%d:%d", p.HostIP, p.HostPort, p.ContainerPort)
	if p.Proto != "tcp" {
		s += "/" + p.Proto
	}
	return s
}

// dockerPort reads docker's -p as docker does, for the rules that judge
// the command as given: ranges and random host ports included.
func dockerPort(p string) (policy.ContainerPort, bool) {
	body, proto, _ := strings.Cut(p, "/")
	if proto == "" {
		proto = "tcp"
	}
	var ip string
	if strings.HasPrefix(body, "[") {
		end := strings.Index(body, "]:")
		if end < 0 {
			return policy.ContainerPort{}, false
		}
		ip, body = body[1:end], body[end+2:]
	} else if strings.Count(body, ":") == 2 {
		ip, body, _ = strings.Cut(body, ":")
	}
	host, ctr, found := strings.Cut(body, ":")
	if !found {
		host, ctr = "", body
	}
	return policy.ContainerPort{HostIP: ip, HostPort: host, ContainerPort: ctr, Proto: proto}, true
}

// bridgeName turns a docker network's name into a bridge name: lower
// case, '_', '.', '-' kept, anything else '-', at most 31 characters.
func bridgeName(n string) string {
	b := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_', r == '.', r == '-':
			return r
		case r >= 'A' && r <= 'Z':
			return r + 'a' - 'A'
		}
		return '-'
	}, n)
	b = strings.TrimLeft(b, "_.-")
	if len(b) > 31 {
		b = b[:31]
	}
	if b == "" {
		b = "net"
	}
	return b
}
