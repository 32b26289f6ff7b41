package policy

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/safe-run/safe-run/manifest"
)

// base trips no rule; each case edits it.
const base = `version = 1
name = "web"

[image]
rootfs = "rootfs"

[process]
command = ["/bin/web"]
user = "1000:1000"

[resources]
memory = "256M"
cpus = 0.5
`

func parse(t *testing.T, text string) *manifest.Service {
	t.Helper()
	s, err := manifest.Parse("web.toml", "/srv/web", []byte(text))
	if err != nil {
		t.Fatalf("manifest does not load: %v\n%s", err, text)
	}
	return s
}

// render writes findings as "line ID path: msg [accepted]" for exact comparison.
func render(fs []Finding) []string {
	var out []string
	for _, f := range fs {
		s := fmt.Sprintf("%d %s %s: %s", f.Line, f.Rule.ID, f.Path, f.Msg)
		if f.Accepted {
			s += " [accepted]"
		}
		out = append(out, s)
	}
	return out
}

func edit(pairs ...string) string {
	return strings.NewReplacer(pairs...).Replace(base)
}

func TestFindings(t *testing.T) {
	tests := []struct {
		name     string
		manifest string
		want     []string
	}{
		{"clean", base, nil},
		{"SR001 no memory", edit(`memory = "256M"`+"\n", ""),
			[]string{"11 SR001 resources.memory: missing: the service may use all of the host's memory"}},
		{"SR002 no cpus", edit("cpus = 0.5\n", ""),
			[]string{"11 SR002 resources.cpus: missing: the service may use every CPU of the host"}},
		{"SR001+SR002 accepted", edit("[resources]\nmemory = \"256M\"\ncpus = 0.5\n", `[insecure]
reason = "batch job sized by its scheduler"
allow = ["no_resource_limits"]
`), []string{
			"0 SR001 resources.memory: missing: the service may use all of the host's memory [accepted]",
			"0 SR002 resources.cpus: missing: the service may use every CPU of the host [accepted]",
		}},
		{"SR003 pids", edit("cpus = 0.5\n", "cpus = 0.5\npids = 10000\n"),
			[]string{"14 SR003 resources.pids: 10000 processes is enough for a fork bomb to hurt the host"}},
		{"SR004 dangerous capability", edit("[resources]", "[security]\ncapabilities = [\"NET_BIND_SERVICE\", \"SYS_ADMIN\"]\n\n[resources]"),
			[]string{"12 SR004 security.capabilities[1]: SYS_ADMIN is refused: mount, namespaces, BPF, and most of the kernel's admin interface"}},
		{"SR005 docker socket", base + "\n[[mounts]]\ntype = \"bind\"\nsource = \"/var/run/docker.sock\"\ntarget = \"/var/run/docker.sock\"\n",
			[]string{"17 SR005 mounts[0].source: /var/run/docker.sock is refused: a container engine socket is root on the host"}},
		{"SR005 host root, SR017 writable", base + "\n[[mounts]]\ntype = \"bind\"\nsource = \"/\"\ntarget = \"/host\"\nread_only = false\n", []string{
			"17 SR005 mounts[0].source: / is refused: the whole host filesystem",
			"19 SR017 mounts[0].read_only: / is writable from the container",
		}},
		{"SR005 host root as rootfs", edit(`rootfs = "rootfs"`, `rootfs = "/"`),
			[]string{"5 SR005 image.rootfs: / is refused as a root filesystem: the whole host filesystem; point rootfs at a directory made for the service"}},
		{"SR005 /proc as rootfs", edit(`rootfs = "rootfs"`, `rootfs = "/proc"`),
			[]string{"5 SR005 image.rootfs: /proc is refused as a root filesystem: the host's processes and kernel knobs; point rootfs at a directory made for the service"}},
		{"SR005 safe-run's data as rootfs", edit(`rootfs = "rootfs"`, `rootfs = "/var/lib/safe-run/volumes/x"`),
			[]string{"5 SR005 image.rootfs: /var/lib/safe-run/volumes/x is refused as a root filesystem: safe-run's own data: the services' id ranges, volumes and event journals; point rootfs at a directory made for the service"}},
		{"SR005 SR042 /etc binds", base + "\n[[mounts]]\ntype = \"bind\"\nsource = \"/etc/cron.d\"\ntarget = \"/c\"\n\n[[mounts]]\ntype = \"bind\"\nsource = \"/etc/nginx\"\ntarget = \"/n\"\n\n[[mounts]]\ntype = \"bind\"\nsource = \"/etc/localtime\"\ntarget = \"/etc/localtime\"\n", []string{
			"17 SR005 mounts[0].source: /etc/cron.d is refused: what the host runs as root on a schedule",
			"22 SR042 mounts[1].source: /etc/nginx is the host's configuration, shown to the container",
		}},
		{"SR017 writable bind", base + "\n[[mounts]]\ntype = \"bind\"\nsource = \"data\"\ntarget = \"/data\"\nread_only = false\n",
			[]string{"19 SR017 mounts[0].read_only: /srv/web/data is writable from the container"}},
		{"SR006 host network", base + "\n[network]\nmode = \"host\"\n",
			[]string{"16 SR006 network.mode: the host network namespace is shared"}},
		{"SR007 SR008 SR009 host namespaces", base + "\n[namespaces]\npid = \"host\"\nipc = \"host\"\nuts = \"host\"\n", []string{
			"16 SR007 namespaces.pid: the host PID namespace is shared",
			"17 SR008 namespaces.ipc: the host IPC namespace is shared",
			"18 SR009 namespaces.uts: the host UTS namespace is shared",
		}},
		{"SR010 new privileges", edit("[resources]", "[security]\nno_new_privileges = false\n\n[resources]"),
			[]string{"12 SR010 security.no_new_privileges: setuid binaries and file capabilities can raise privileges"}},
		{"SR011 writable rootfs", edit("[resources]", "[security]\nread_only_rootfs = false\n\n[resources]"),
			[]string{"12 SR011 security.read_only_rootfs: the service can change its own binaries and configuration"}},
		{"SR012 SR013 unconfined, accepted", edit("[resources]", "[security]\nseccomp = \"unconfined\"\napparmor = \"unconfined\"\n\n[resources]") +
			"\n[insecure]\nreason = \"profiling its syscalls\"\nallow = [\"seccomp_unconfined\", \"apparmor_unconfined\"]\n", []string{
			"12 SR012 security.seccomp: every system call is allowed [accepted]",
			"13 SR013 security.apparmor: no AppArmor profile confines the service [accepted]",
		}},
		{"SR014 secret env", edit(`user = "1000:1000"`, "user = \"1000:1000\"\nenv = { DB_PASSWORD = \"x\", API_KEY = \"y\", LOG_LEVEL = \"info\" }"), []string{
			"10 SR014 process.env.API_KEY: API_KEY looks like a secret; environment variables leak into logs, /proc and child processes",
			"10 SR014 process.env.DB_PASSWORD: DB_PASSWORD looks like a secret; environment variables leak into logs, /proc and child processes",
		}},
		{"SR015 root user", edit(`user = "1000:1000"`, `user = "0:0"`),
			[]string{"9 SR015 process.user: the service runs as root inside its user namespace"}},
		{"SR015 no user", edit(`user = "1000:1000"`+"\n", ""),
			[]string{"7 SR015 process: no process.user: the service runs as the image's user, or root"}},
		{"SR016 complain", edit("[resources]", "[security]\napparmor_mode = \"complain\"\n\n[resources]"),
			[]string{"12 SR016 security.apparmor_mode: denials are logged, not enforced"}},
		{"SR038 landlock off", edit("[resources]", "[security]\nlandlock = \"off\"\n\n[resources]"),
			[]string{"12 SR038 security.landlock: no Landlock ruleset restricts the service's files and ports"}},
		{"SR018 unpinned image", edit(`rootfs = "rootfs"`, `ref = "nginx:1.25"`),
			[]string{`5 SR018 image.ref: "nginx:1.25" is not pinned by digest: whoever can push that tag decides what runs`}},
		{"SR018 pinned image", edit(`rootfs = "rootfs"`, `ref = "nginx@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"`), nil},
		{"bridge on loopback, egress none", base + "\n[network]\nmode = \"bridge\"\nports = [\"8080:80\", \"192.0.2.1:8443:443\"]\n", nil},
		{"SR034 every address", base + "\n[network]\nmode = \"bridge\"\nports = [\"8080:80\", \"0.0.0.0:5353:53/udp\"]\n",
			[]string{`17 SR034 network.ports[1]: "0.0.0.0:5353:53/udp" publishes container port 53/udp on every address of the host, to whatever network reaches it`}},
		{"SR035 egress all", base + "\n[network]\nmode = \"bridge\"\negress = \"all\"\n",
			[]string{`17 SR035 network.egress: "all": the service may connect to any address the host reaches, its local networks and 169.254.169.254 included`}},
		{"SR035 SR036 egress list", base + "\n[network]\nmode = \"bridge\"\negress = [\"10.0.0.0/8:5432\", \"0.0.0.0/0:443\", \"169.254.169.254:80\", \"169.0.0.0/8\", \"api.example.com:443\"]\n", []string{
			`17 SR036 network.egress[2]: "169.254.169.254:80" covers link-local addresses, the cloud metadata service 169.254.169.254 among them`,
			`17 SR036 network.egress[3]: "169.0.0.0/8" covers link-local addresses, the cloud metadata service 169.254.169.254 among them`,
			`17 SR035 network.egress[1]: "0.0.0.0/0:443" is every address: the service may connect anywhere the host reaches`,
		}},
		{"SR025 TODO reason", base + "\n[network]\nmode = \"host\"\n\n[insecure]\nreason = \"TODO: why does it need the host network?\"\nallow = [\"host_network\"]\n", []string{
			"16 SR006 network.mode: the host network namespace is shared [accepted]",
			`19 SR025 insecure.reason: "TODO: why does it need the host network?": nobody has said yet why the service needs host_network`,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := Check(parse(t, tc.manifest), nil)
			got := render(r.Findings)
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("findings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestHostFindings(t *testing.T) {
	tests := []struct {
		name     string
		manifest string
		host     Host
		want     []string
	}{
		{"all there", base, Host{AppArmor: true}, nil},
		{"SR031 no AppArmor", base, Host{},
			[]string{"0 SR031 security.apparmor: this kernel has no AppArmor: the service runs without its profile (apparmor_required = true refuses to start instead)"}},
		{"SR031 required", edit("[resources]", "[security]\napparmor_required = true\n\n[resources]"), Host{},
			[]string{"12 SR031 security.apparmor_required: this kernel has no AppArmor, and the manifest requires it: safe-run will refuse to start"}},
		{"SR031 securityfs not mounted", base, Host{NoSecurityfs: true},
			[]string{"0 SR031 security.apparmor: securityfs is not mounted, so AppArmor, which this kernel has, cannot be used (mount -t securityfs securityfs /sys/kernel/security): the service runs without its profile (apparmor_required = true refuses to start instead)"}},
		{"SR031 unconfined anyway", edit("[resources]", "[security]\napparmor = \"unconfined\"\n\n[resources]") +
			"\n[insecure]\nreason = \"r\"\nallow = [\"apparmor_unconfined\"]\n", Host{}, nil},
		{"SR039 no Landlock", base, Host{AppArmor: true, NoLandlock: true},
			[]string{"0 SR039 security.landlock: this kernel has no Landlock: the service runs without its ruleset (landlock_required = true refuses to start instead)"}},
		{"SR039 Landlock required", edit("[resources]", "[security]\nlandlock_required = true\n\n[resources]"), Host{AppArmor: true, NoLandlock: true},
			[]string{"12 SR039 security.landlock_required: this kernel has no Landlock, and the manifest requires it: safe-run will refuse to start"}},
		{"SR040 ABI 2", base, Host{AppArmor: true, LandlockABI: 2},
			[]string{"0 SR040 security.landlock: this kernel's Landlock is ABI 2, file system only: TCP bind and connect are not restricted, nor signals and abstract sockets"}},
		{"SR040 ABI 4", base, Host{AppArmor: true, LandlockABI: 4},
			[]string{"0 SR040 security.landlock: this kernel's Landlock is ABI 4, file system and TCP: signals and abstract unix sockets outside the service are not scoped"}},
		{"ABI 6", base, Host{AppArmor: true, LandlockABI: 6}, nil},
		{"SR039 off", edit("[resources]", "[security]\nlandlock = \"off\"\n\n[resources]"), Host{AppArmor: true, NoLandlock: true}, nil},
		{"SR032 no cgroups", base, Host{AppArmor: true, Cgroups: "no memory controller"},
			[]string{"11 SR032 resources: no memory controller"}},
		{"SR033 no userns", base, Host{AppArmor: true, Userns: "user.max_user_namespaces is 0"},
			[]string{"0 SR033 : user.max_user_namespaces is 0"}},
		{"SR005 through a symlink", base + "\n[[mounts]]\ntype = \"bind\"\nsource = \"/srv/link\"\ntarget = \"/x\"\n",
			Host{AppArmor: true, RealPaths: map[string]string{"/srv/link": "/etc/shadow"}},
			[]string{"17 SR005 mounts[0].source: /srv/link is refused (through a symlink, it is /etc/shadow): the host's password hashes"}},
		{"SR005 symlink to a harmless path", base + "\n[[mounts]]\ntype = \"bind\"\nsource = \"/srv/link\"\ntarget = \"/x\"\n",
			Host{AppArmor: true, RealPaths: map[string]string{"/srv/link": "/srv/data"}}, nil},
		{"SR037 address not on this host", base + "\n[network]\nmode = \"bridge\"\nports = [\"8080:80\", \"192.0.2.1:81:81\", \"198.51.100.1:82:82\", \"0.0.0.0:83:83\"]\n",
			Host{AppArmor: true, Addresses: []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("192.0.2.1")}},
			[]string{"17 SR037 network.ports[2]: 198.51.100.1 is not an address of this host (publish on one it has, on 127.0.0.1, or on 0.0.0.0 for every address)"}},
		{"addresses not probed", base + "\n[network]\nmode = \"bridge\"\nports = [\"198.51.100.1:82:82\"]\n", Host{AppArmor: true}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := render(HostFindings(parse(t, tc.manifest), tc.host))
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("findings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// hardened is a docker container with every flag the rules ask for.
func hardened() *Container {
	return &Container{
		Name: "good", Image: "registry.example/web@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		User: "1000:1000", CapDrop: []string{"ALL"}, CapAdd: []string{"NET_BIND_SERVICE"},
		NetworkMode: "none", ReadonlyRootfs: true, Memory: 256 << 20, CPUs: 0.5, PidsLimit: 128,
		SecurityOpt: []string{"no-new-privileges:true"},
	}
}

func TestContainerFindings(t *testing.T) {
	tests := []struct {
		name string
		edit func(c *Container)
		want []string
	}{
		{"hardened", func(c *Container) {}, nil},
		{"SR020 privileged, and what it grants", func(c *Container) { c.Privileged = true; c.CapDrop = nil }, []string{
			"0 SR020 --privileged: every capability, every host device, no seccomp filter and no AppArmor profile",
			"0 SR004 --privileged: every capability, BPF, DAC_READ_SEARCH, MAC_ADMIN, NET_ADMIN, PERFMON, SYS_ADMIN, SYS_BOOT, SYS_MODULE, SYS_PTRACE, SYS_RAWIO among them",
			"0 SR022 --privileged: every device of the host is reachable from the container",
			"0 SR005 --privileged: /sys and /proc/sys are mounted writable, /proc unmasked: the host's kernel and device configuration",
			"0 SR012 --privileged: no seccomp filter: every system call is allowed",
			"0 SR013 --privileged: no AppArmor profile confines the container",
		}},
		{"SR010 privileged without no-new-privileges", func(c *Container) { c.Privileged = true; c.CapDrop, c.SecurityOpt = nil, nil }, []string{
			"0 SR020 --privileged: every capability, every host device, no seccomp filter and no AppArmor profile",
			"0 SR004 --privileged: every capability, BPF, DAC_READ_SEARCH, MAC_ADMIN, NET_ADMIN, PERFMON, SYS_ADMIN, SYS_BOOT, SYS_MODULE, SYS_PTRACE, SYS_RAWIO among them",
			"0 SR022 --privileged: every device of the host is reachable from the container",
			"0 SR005 --privileged: /sys and /proc/sys are mounted writable, /proc unmasked: the host's kernel and device configuration",
			"0 SR012 --privileged: no seccomp filter: every system call is allowed",
			"0 SR013 --privileged: no AppArmor profile confines the container",
			"0 SR010 --security-opt: no no-new-privileges: setuid binaries and file capabilities can raise privileges",
		}},
		{"SR004 cap-add", func(c *Container) { c.CapAdd = []string{"net_admin", "CAP_SYS_PTRACE", "CHOWN"} }, []string{
			"0 SR004 --cap-add: NET_ADMIN: reconfigures interfaces, routes and firewalls",
			"0 SR004 --cap-add: SYS_PTRACE: traces and injects code into other processes",
		}},
		{"SR004 cap-add ALL", func(c *Container) { c.CapAdd = []string{"ALL"} },
			[]string{"0 SR004 --cap-add: ALL adds every capability, BPF, DAC_READ_SEARCH, MAC_ADMIN, NET_ADMIN, PERFMON, SYS_ADMIN, SYS_BOOT, SYS_MODULE, SYS_PTRACE, SYS_RAWIO among them"}},
		{"SR021 default caps", func(c *Container) { c.CapDrop = []string{"NET_RAW"} },
			[]string{"0 SR021 --cap-drop: docker's 14 default capabilities (CHOWN, DAC_OVERRIDE, SETUID, NET_RAW, ...) are kept"}},
		{"SR022 device", func(c *Container) { c.Devices = []string{"/dev/kmsg"} },
			[]string{"0 SR022 --device: /dev/kmsg is reachable from the container"}},
		{"SR005 SR017 docker.sock", func(c *Container) {
			c.Mounts = []ContainerMount{{Type: "bind", Source: "/var/run/docker.sock", Target: "/var/run/docker.sock"}}
		}, []string{
			"0 SR005 --volume: /var/run/docker.sock is mounted at /var/run/docker.sock: a container engine socket is root on the host",
			"0 SR017 --volume: /var/run/docker.sock is writable from the container",
		}},
		{"SR005 SR042 /etc", func(c *Container) {
			c.Mounts = []ContainerMount{{Type: "bind", Source: "/etc/passwd", Target: "/etc/passwd", ReadOnly: true}, {Type: "bind", Source: "/etc/hosts", Target: "/etc/hosts", ReadOnly: true}}
		}, []string{
			"0 SR005 --volume: /etc/passwd is mounted at /etc/passwd: the host's users (writable, whoever edits it is root)",
			"0 SR042 --volume: /etc/hosts is mounted at /etc/hosts: the host's configuration, shown to the container",
		}},
		{"volume and read-only bind", func(c *Container) {
			c.Mounts = []ContainerMount{{Type: "volume", Source: "data", Target: "/data"}, {Type: "bind", Source: "/srv/conf", Target: "/etc/app", ReadOnly: true}}
		}, nil},
		{"SR006 host network", func(c *Container) { c.NetworkMode = "host" },
			[]string{"0 SR006 --network: the host network namespace is shared"}},
		{"SR023 default bridge", func(c *Container) { c.NetworkMode = "default" },
			[]string{"0 SR023 --network: every container on the default bridge can reach this one"}},
		{"user-defined network", func(c *Container) { c.NetworkMode = "backend" }, nil},
		{"SR034 published on every address", func(c *Container) {
			c.Ports = []ContainerPort{{HostPort: "8080", ContainerPort: "80", Proto: "tcp"}, {HostIP: "127.0.0.1", HostPort: "8443", ContainerPort: "443", Proto: "tcp"}, {HostIP: "0.0.0.0", HostPort: "53", ContainerPort: "53", Proto: "udp"}}
		}, []string{
			"0 SR034 --publish: container port 80/tcp is published on 0.0.0.0, every address of the host, and docker's DNAT passes by the host's INPUT firewall",
			"0 SR034 --publish: container port 53/udp is published on 0.0.0.0, every address of the host, and docker's DNAT passes by the host's INPUT firewall",
		}},
		{"host network publishes nothing", func(c *Container) {
			c.NetworkMode = "host"
			c.Ports = []ContainerPort{{HostPort: "8080", ContainerPort: "80", Proto: "tcp"}}
		}, []string{"0 SR006 --network: the host network namespace is shared"}},

		{"SR007 SR008 SR009 SR024 namespaces", func(c *Container) { c.PidMode, c.IpcMode, c.UTSMode, c.UsernsMode = "host", "host", "host", "host" }, []string{
			"0 SR007 --pid: the host PID namespace is shared",
			"0 SR008 --ipc: the host IPC namespace is shared",
			"0 SR009 --uts: the host UTS namespace is shared",
			"0 SR024 --userns: the host user namespace is shared",
		}},
		{"SR010 new privileges", func(c *Container) { c.SecurityOpt = []string{"no-new-privileges=false"} },
			[]string{"0 SR010 --security-opt: no no-new-privileges: setuid binaries and file capabilities can raise privileges"}},
		{"no-new-privileges spellings", func(c *Container) { c.SecurityOpt = []string{"no-new-privileges"} }, nil},
		{"SR012 SR013 unconfined", func(c *Container) { c.SecurityOpt = append(c.SecurityOpt, "seccomp=unconfined", "apparmor:unconfined") }, []string{
			"0 SR012 --security-opt: seccomp=unconfined: every system call is allowed",
			"0 SR013 --security-opt: apparmor=unconfined: no AppArmor profile confines the container",
		}},
		{"SR013 from inspect", func(c *Container) { c.AppArmorProfile = "unconfined" },
			[]string{"0 SR013 --security-opt: apparmor=unconfined: no AppArmor profile confines the container"}},
		{"SR011 writable root", func(c *Container) { c.ReadonlyRootfs = false },
			[]string{"0 SR011 --read-only: the container can change its own binaries and configuration"}},
		{"SR001 SR002 SR003 no limits", func(c *Container) { c.Memory, c.CPUs, c.PidsLimit = 0, 0, -1 }, []string{
			"0 SR001 --memory: no -m: the container may use all of the host's memory",
			"0 SR002 --cpus: no --cpus: the container may use every CPU of the host",
			"0 SR003 --pids-limit: no --pids-limit: a fork bomb takes the host's process table",
		}},
		{"SR003 high pids", func(c *Container) { c.PidsLimit = 5000 },
			[]string{"0 SR003 --pids-limit: 5000 processes is enough for a fork bomb to hurt the host"}},
		{"SR014 secret env", func(c *Container) { c.Env = []string{"POSTGRES_PASSWORD=x", "PATH=/bin", "POSTGRES_PASSWORD=y"} },
			[]string{"0 SR014 --env: POSTGRES_PASSWORD looks like a secret; environment variables leak into logs, docker inspect and child processes"}},
		{"SR015 root", func(c *Container) { c.User = "root" },
			[]string{"0 SR015 --user: the container runs as root"}},
		{"SR015 image user", func(c *Container) { c.User = "" },
			[]string{"0 SR015 --user: no --user: the container runs as the image's user, root unless the image says otherwise"}},
		{"SR018 tag", func(c *Container) { c.Image = "nginx:latest" },
			[]string{"0 SR018 IMAGE: \"nginx:latest\" is not pinned by digest: whoever can push that tag decides what runs"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := hardened()
			tc.edit(c)
			got := render(ContainerFindings(c))
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("findings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestDaemonFindings(t *testing.T) {
	safe := func() *Daemon {
		return &Daemon{Endpoint: "unix:///run/user/1000/docker.sock", Rootless: true, AppArmor: true, Seccomp: true,
			Socket: &Socket{Path: "/run/user/1000/docker.sock", Mode: 0o660, Owner: "alice", Group: "alice"}}
	}
	tests := []struct {
		name string
		edit func(d *Daemon)
		want []string
	}{
		{"rootless", func(d *Daemon) {}, nil},
		{"SR026 plain TCP", func(d *Daemon) { d.Listeners = []Listener{{Addr: "0.0.0.0:2375"}} },
			[]string{"0 SR026 tcp://0.0.0.0:2375: the API answers plain HTTP: whoever reaches 0.0.0.0:2375 is root on the host"}},
		{"SR026 TLS without client auth", func(d *Daemon) { d.Listeners = []Listener{{Addr: "10.0.0.1:2376", TLS: true}} },
			[]string{"0 SR026 tcp://10.0.0.1:2376: TLS without client certificates (no --tlsverify): whoever reaches 10.0.0.1:2376 is root on the host"}},
		{"mTLS", func(d *Daemon) { d.Listeners = []Listener{{Addr: "10.0.0.1:2376", TLS: true, ClientAuth: true}} }, nil},
		{"SR027 world-writable socket", func(d *Daemon) { d.Socket.Mode = 0o666 },
			[]string{"0 SR027 /run/user/1000/docker.sock: mode 0666: every local user can connect, and so is root on the host"}},
		{"SR028 group members", func(d *Daemon) { d.Socket.Group, d.Socket.Members = "docker", []string{"alice", "ci"} },
			[]string{"0 SR028 /run/user/1000/docker.sock: group docker (socket mode 0660): alice, ci"}},
		{"group members without group access", func(d *Daemon) { d.Socket.Mode, d.Socket.Members = 0o600, []string{"alice"} }, nil},
		{"SR029 SR030 rootful", func(d *Daemon) { d.Rootless = false }, []string{
			"0 SR029 dockerd: the daemon runs as root: a runtime escape is root on the host",
			"0 SR030 dockerd: no userns-remap: uid 0 in a container is uid 0 on the host",
		}},
		{"SR029 remapped", func(d *Daemon) { d.Rootless, d.UsernsRemap = false, true },
			[]string{"0 SR029 dockerd: the daemon runs as root: a runtime escape is root on the host"}},
		{"SR012 SR031 no seccomp, no AppArmor", func(d *Daemon) { d.Seccomp, d.AppArmor = false, false }, []string{
			"0 SR012 dockerd: the engine applies no seccomp profile: every container may make every system call",
			"0 SR031 dockerd: the engine's kernel has no AppArmor: no container is confined by a profile",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := safe()
			tc.edit(d)
			got := render(DaemonFindings(d))
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("findings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// TestEveryRuleTested keeps the tables above complete: every rule in the
// catalogue is tripped by at least one case.
func TestRulesCatalogue(t *testing.T) {
	ids := map[string]bool{}
	names := map[string]bool{}
	for i, r := range rules {
		if ids[r.ID] || names[r.Name] {
			t.Errorf("%s %s: duplicate ID or name", r.ID, r.Name)
		}
		ids[r.ID], names[r.Name] = true, true
		if i > 0 && rules[i-1].ID >= r.ID {
			t.Errorf("%s after %s: Rules must be in ID order", r.ID, rules[i-1].ID)
		}
		if r.Title == "" || r.Advice == "" || r.Fix == "" {
			t.Errorf("%s: title, advice and fix are required", r.ID)
		}
		if r.Allow != "" && !containsString(manifest.AllowItems(), r.Allow) {
			t.Errorf("%s: allow item %q is not one manifest accepts", r.ID, r.Allow)
		}
		if r.Allow != "" && r.Always {
			t.Errorf("%s: a rule is either acknowledgeable or always refused", r.ID)
		}
	}
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestRefuse: what a start's own checks refuse in the files a manifest
// names becomes a refused finding at its key, of the rule that refused it
// where one did; a key that has a refused finding already gets no second.
func TestRefuse(t *testing.T) {
	s := parse(t, base+"\n[[mounts]]\ntype = \"bind\"\nsource = \"/etc\"\ntarget = \"/e\"\n\n[[mounts]]\ntype = \"bind\"\nsource = \"link\"\ntarget = \"/l\"\n")
	r := Check(s, nil)
	r.Refuse(s, manifest.Merge(
		s.Errorf("image.rootfs", "/srv/web/rootfs does not exist (point rootfs at a directory holding the service's root filesystem)"),
		s.Errorf("mounts[0].source", "%w", SensitiveMountRefusal("/etc is refused: the host's configuration")),
		s.Errorf("mounts[1].source", "%w", SensitiveMountRefusal("/srv/web/link is refused (through a symlink, it is /etc): the host's configuration")),
		&manifest.FieldError{File: "/srv/web/p.json", Line: 3, Column: 5, Path: "syscalls[0].action", Msg: `"X" is not a seccomp action`},
	))
	want := []string{
		"0 SR041 security.seccomp: /srv/web/p.json:3:5: syscalls[0].action: \"X\" is not a seccomp action",
		"5 SR041 image.rootfs: /srv/web/rootfs does not exist (point rootfs at a directory holding the service's root filesystem)",
		"17 SR005 mounts[0].source: /etc is refused: the host's configuration",
		"22 SR005 mounts[1].source: /srv/web/link is refused (through a symlink, it is /etc): the host's configuration",
	}
	if got := render(r.Findings); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("findings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if score, _ := r.Score(); score != 40 {
		t.Errorf("score %d, want 40 (SR005 and SR041, critical)", score)
	}
	if f := (Gate{}).Failures([]*Report{r}); len(f) == 0 {
		t.Error("a manifest a start refuses passes the gate")
	}
}

// TestPrivilegedScoresWorst: --privileged grants everything the lesser
// flags grant, so it never scores better than any of them, whether the
// rest of the container is hardened or docker's defaults.
func TestPrivilegedScoresWorst(t *testing.T) {
	lesser := []struct {
		name string
		edit func(c *Container)
	}{
		{"--cap-add SYS_ADMIN", func(c *Container) { c.CapAdd = append(c.CapAdd, "SYS_ADMIN") }},
		{"--cap-add ALL", func(c *Container) { c.CapAdd = []string{"ALL"} }},
		{"--pid host", func(c *Container) { c.PidMode = "host" }},
		{"--device /dev/sda", func(c *Container) { c.Devices = []string{"/dev/sda"} }},
		{"--security-opt seccomp=unconfined", func(c *Container) { c.SecurityOpt = append(c.SecurityOpt, "seccomp=unconfined") }},
		{"--security-opt apparmor=unconfined", func(c *Container) { c.SecurityOpt = append(c.SecurityOpt, "apparmor=unconfined") }},
		{"-v /sys:/sys", func(c *Container) {
			c.Mounts = []ContainerMount{{Type: "bind", Source: "/sys", Target: "/sys", ReadOnly: true}}
		}},
	}
	bases := map[string]func() *Container{
		"hardened":        hardened,
		"docker defaults": func() *Container { return &Container{Name: "d", Image: "busybox"} },
	}
	score := func(c *Container) int {
		s, _ := CheckContainer(c, "").Score()
		return s
	}
	for bname, base := range bases {
		p := base()
		p.Privileged = true
		priv := score(p)
		for _, l := range lesser {
			c := base()
			l.edit(c)
			if s := score(c); priv > s {
				t.Errorf("%s: --privileged scores %d, better than %s (%d)", bname, priv, l.name, s)
			}
		}
	}
	// Hardened otherwise, it scores strictly worse than each.
	p := hardened()
	p.Privileged = true
	for _, l := range lesser {
		c := hardened()
		l.edit(c)
		if priv, s := score(p), score(c); priv >= s {
			t.Errorf("hardened: --privileged scores %d, not below %s (%d)", priv, l.name, s)
		}
	}
}
