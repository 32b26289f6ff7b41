package policy

import "github.com/safe-run/safe-run/manifest"

// Severity orders findings; a refusal is about severity only in the report.
type Severity int

const (
	Info Severity = iota
	Low
	Medium
	High
	Critical
)

func (s Severity) String() string {
	return [...]string{"info", "low", "medium", "high", "critical"}[s]
}

// Rule is one piece of advice turned into a check.
type Rule struct {
	ID       string // stable: SR001
	Name     string // stable, readable: memory-limit
	Title    string
	Severity Severity
	Allow    string // [insecure] allow item that acknowledges it; "" for advice that only warns
	Always   bool   // refused whatever [insecure] says: a manifest has no way to ask for it
	Advice   string // the seed advice it encodes
	CIS      string // CIS Docker Benchmark v1.6.0 control, where one matches
	PSS      string // Kubernetes Pod Security Standard control, where one matches
	Fix      string // in manifest terms
	// FixDocker is the fix in docker run terms, for containers that import
	// and audit judge; "" when Fix says it already.
	FixDocker string
}

// rules is the catalogue, in ID order. IDs are never reused. Callers
// reach it through Lookup and the reports.
var rules = []*Rule{
	ruleMemory, ruleCPU, rulePids, ruleDangerousCap, ruleSensitiveMount,
	ruleHostNetwork, ruleHostPID, ruleHostIPC, ruleHostUTS, ruleNewPrivileges,
	ruleWritableRootfs, ruleSeccompUnconfined, ruleAppArmorUnconfined,
	ruleSecretEnv, ruleRootUser, ruleAppArmorComplain, ruleWritableBind,
	ruleUnpinnedImage, ruleInsecureRegistry,
	rulePrivileged, ruleDefaultCaps, ruleHostDevice, ruleDefaultBridge,
	ruleHostUserns, ruleTodoReason,
	ruleDaemonTCP, ruleDaemonSocketMode, ruleDockerGroup, ruleDaemonRootful,
	ruleDaemonNoUserns,
	ruleHostNoAppArmor, ruleHostNoCgroups, ruleHostNoUserns,
	rulePublishAll, ruleEgressAll, ruleEgressMetadata, ruleHostNoAddress,
	ruleLandlockOff, ruleHostNoLandlock, ruleHostLandlockPartial,
	ruleUnusablePath, ruleHostConfigBind,
}

var (
	ruleMemory = &Rule{
		ID: "SR001", Name: "memory-limit", Severity: High, Allow: manifest.AllowNoResourceLimits,
		Title:  "no memory limit",
		Advice: "set -m on every service, otherwise one runaway process kills the entire node",
		CIS:    "5.11", Fix: `set resources.memory, e.g. memory = "512M"`,
		FixDocker: "run with -m, e.g. -m 512m",
	}
	ruleCPU = &Rule{
		ID: "SR002", Name: "cpu-limit", Severity: High, Allow: manifest.AllowNoResourceLimits,
		Title:  "no CPU limit",
		Advice: "set --cpus on every service, otherwise one runaway process starves the node",
		CIS:    "5.12", Fix: "set resources.cpus, e.g. cpus = 1.0",
		FixDocker: "run with --cpus, e.g. --cpus 1.0",
	}
	rulePids = &Rule{
		ID: "SR003", Name: "pids-limit", Severity: Medium, Allow: manifest.AllowNoResourceLimits,
		Title:  "no PIDs limit, or one above 4096",
		Advice: "limits must be set manually: a fork bomb is a runaway process too",
		CIS:    "5.29", Fix: "lower resources.pids to what the service needs (default 1024)",
		FixDocker: "run with --pids-limit, e.g. --pids-limit 256",
	}
	ruleDangerousCap = &Rule{
		ID: "SR004", Name: "dangerous-capability", Severity: Critical, Allow: manifest.AllowDangerousCapabilities,
		Title:  "capability that amounts to control of the host or kernel",
		Advice: "--cap-drop=ALL and add only what the service really does not work without",
		CIS:    "5.4", PSS: "baseline: Capabilities; restricted: Capabilities",
		Fix:       "remove the capability; most services need at most NET_BIND_SERVICE",
		FixDocker: "drop the --cap-add; most services need at most NET_BIND_SERVICE",
	}
	ruleSensitiveMount = &Rule{
		ID: "SR005", Name: "sensitive-mount", Severity: Critical, Allow: manifest.AllowSensitiveMounts,
		Title:  "bind mount of a sensitive host path",
		Advice: "never mount /var/run/docker.sock, /etc, /var/lib/docker or / into a container; use designated volumes",
		CIS:    "5.6, 5.32", PSS: "baseline: HostPath Volumes",
		Fix:       "bind only the files the service needs, or use a volume",
		FixDocker: "bind only the files the service needs (read-only), or use a named volume",
	}
	ruleHostNetwork = &Rule{
		ID: "SR006", Name: "host-network", Severity: High, Allow: manifest.AllowHostNetwork,
		Title:  "shares the host network namespace",
		Advice: "never use --network=host in regular services: an isolation anti-pattern",
		CIS:    "5.10", PSS: "baseline: Host Namespaces",
		Fix:       `use network.mode = "none"`,
		FixDocker: "run with --network none, or a user-defined network",
	}
	ruleHostPID = &Rule{
		ID: "SR007", Name: "host-pid", Severity: High, Allow: manifest.AllowHostPID,
		Title:  "shares the host PID namespace",
		Advice: "never use --pid=host; debug with nsenter instead",
		CIS:    "5.16", PSS: "baseline: Host Namespaces",
		Fix:       "remove namespaces.pid; use safe-run exec or nsenter to debug",
		FixDocker: "remove --pid host; debug with nsenter",
	}
	ruleHostIPC = &Rule{
		ID: "SR008", Name: "host-ipc", Severity: High, Allow: manifest.AllowHostIPC,
		Title:  "shares the host IPC namespace",
		Advice: "a container is a set of private namespaces",
		CIS:    "5.17", PSS: "baseline: Host Namespaces",
		Fix:       "remove namespaces.ipc",
		FixDocker: "remove --ipc host",
	}
	ruleHostUTS = &Rule{
		ID: "SR009", Name: "host-uts", Severity: Medium, Allow: manifest.AllowHostUTS,
		Title:  "shares the host UTS namespace",
		Advice: "a container is a set of private namespaces",
		CIS:    "5.21", PSS: "baseline: Host Namespaces",
		Fix:       "remove namespaces.uts",
		FixDocker: "remove --uts host",
	}
	ruleNewPrivileges = &Rule{
		ID: "SR010", Name: "new-privileges", Severity: High, Allow: manifest.AllowNewPrivileges,
		Title:  "processes may gain privileges (no_new_privileges off)",
		Advice: "setuid binaries and file capabilities must not raise privileges inside the container",
		CIS:    "5.26", PSS: "restricted: Privilege Escalation",
		Fix:       "set security.no_new_privileges = true",
		FixDocker: "run with --security-opt no-new-privileges",
	}
	ruleWritableRootfs = &Rule{
		ID: "SR011", Name: "writable-rootfs", Severity: Medium, Allow: manifest.AllowWritableRootfs,
		Title:     "root filesystem is writable",
		Advice:    "a read-only filesystem prevents malware deployment and configuration changes inside the container",
		CIS:       "5.13",
		Fix:       "set security.read_only_rootfs = true and mount a tmpfs or volume where the service writes",
		FixDocker: "run with --read-only and --tmpfs or volumes where the service writes",
	}
	ruleSeccompUnconfined = &Rule{
		ID: "SR012", Name: "seccomp-unconfined", Severity: High, Allow: manifest.AllowSeccompUnconfined,
		Title:  "no seccomp filter",
		Advice: "the kernel should refuse dangerous system calls even to an attacker inside the container",
		CIS:    "5.22", PSS: "baseline: Seccomp; restricted: Seccomp",
		Fix:       `use seccomp = "default", or record a profile with safe-run profile record`,
		FixDocker: "remove --security-opt seccomp=unconfined (docker then applies its default profile)",
	}
	ruleAppArmorUnconfined = &Rule{
		ID: "SR013", Name: "apparmor-unconfined", Severity: High, Allow: manifest.AllowAppArmorUnconfined,
		Title:  "no AppArmor profile",
		Advice: "AppArmor restricts what files and resources a program can reach",
		CIS:    "5.2", PSS: "baseline: AppArmor",
		Fix:       `use apparmor = "generated"`,
		FixDocker: "remove --security-opt apparmor=unconfined (docker then applies docker-default)",
	}
	ruleSecretEnv = &Rule{
		ID: "SR014", Name: "secret-in-env", Severity: Medium,
		Title:     "secret-looking environment variable",
		Advice:    "secrets belong in runtime secrets, not in images or the environment",
		Fix:       "move the value to [secrets] and read it from /run/secrets/NAME",
		FixDocker: "pass the value as a secret file (docker secrets, or a read-only bind of a 0400 file)",
	}
	ruleRootUser = &Rule{
		ID: "SR015", Name: "root-user", Severity: Low,
		Title:  "runs as root inside the container",
		Advice: "root inside the user namespace is unprivileged on the host, but still owns the container",
		CIS:    "4.1", PSS: "restricted: Running as Non-root",
		Fix:       `set process.user, e.g. user = "1000:1000"`,
		FixDocker: "run with --user, e.g. --user 1000:1000",
	}
	ruleAppArmorComplain = &Rule{
		ID: "SR016", Name: "apparmor-complain", Severity: Low,
		Title:  "AppArmor profile in complain mode (logs, does not enforce)",
		Advice: "complain mode is for staging a new service",
		Fix:    `set apparmor_mode = "enforce" once the log shows no denials`,
	}
	ruleWritableBind = &Rule{
		ID: "SR017", Name: "writable-bind", Severity: Low,
		Title:     "writable bind mount of a host path",
		Advice:    "for stateful services use clearly designated volumes",
		CIS:       "5.6",
		Fix:       "use a volume, or read_only = true",
		FixDocker: "add :ro to the bind, or use a named volume",
	}

	ruleUnpinnedImage = &Rule{
		ID: "SR018", Name: "unpinned-image", Severity: Medium, Allow: manifest.AllowUnpinnedImage,
		Title:     "image reference not pinned by digest",
		Advice:    "pin images by digest (image@sha256:...) rather than tags, which can be overwritten",
		Fix:       "pin the reference: ref = \"registry/repo@sha256:...\" (safe-run prints the digest it pulled)",
		FixDocker: "run the image by digest: IMAGE@sha256:... (docker images --digests shows it)",
	}
	// ruleInsecureRegistry is enforced when safe-run pulls: only the
	// registry's answer shows that it speaks plain HTTP. Plain HTTP is
	// never used for a registry that is not on loopback.
	ruleInsecureRegistry = &Rule{
		ID: "SR019", Name: "insecure-registry", Severity: High, Allow: manifest.AllowInsecureRegistry,
		Title:  "registry over plain HTTP (loopback registries only)",
		Advice: "pull images over an authenticated, encrypted channel",
		Fix:    "serve the registry over HTTPS",
	}

	// Rules below apply to what docker can express and a manifest cannot
	// (import and audit): containers, and the docker daemon itself.

	rulePrivileged = &Rule{
		ID: "SR020", Name: "privileged", Severity: Critical, Always: true,
		Title:  "privileged container",
		Advice: "never use --privileged in production: every capability, every host device, no seccomp or AppArmor",
		CIS:    "5.5", PSS: "baseline: Privileged Containers",
		Fix: "run without --privileged; add only the capabilities the service fails without",
	}
	ruleDefaultCaps = &Rule{
		ID: "SR021", Name: "default-capabilities", Severity: Medium,
		Title:  "keeps docker's default capabilities (no --cap-drop=ALL)",
		Advice: "start from --cap-drop=ALL and add only what the service really does not work without",
		CIS:    "5.4", PSS: "restricted: Capabilities",
		Fix: "run with --cap-drop=ALL and --cap-add for each capability the service needs (a manifest starts from none)",
	}
	ruleHostDevice = &Rule{
		ID: "SR022", Name: "host-device", Severity: High, Always: true,
		Title:  "host device exposed to the container",
		Advice: "privileged access to host devices lets a container reach the host",
		CIS:    "5.18",
		Fix:    "remove --device; safe-run passes no host devices",
	}
	ruleDefaultBridge = &Rule{
		ID: "SR023", Name: "default-bridge", Severity: Low,
		Title:  "on docker's default bridge network",
		Advice: "the default bridge connects all containers on the host; custom networks limit which containers can reach each other",
		CIS:    "5.30",
		Fix:    "use --network none, or a user-defined network for the services that must talk",
	}
	ruleHostUserns = &Rule{
		ID: "SR024", Name: "host-userns", Severity: High, Always: true,
		Title:  "shares the host user namespace",
		Advice: "a container is a set of private namespaces, USER included: container root must not be host root",
		CIS:    "5.31",
		Fix:    "remove --userns=host; safe-run always gives a service its own user namespace",
	}
	ruleTodoReason = &Rule{
		ID: "SR025", Name: "unreviewed-acknowledgement", Severity: High, Always: true,
		Title:  "[insecure] reason still a TODO",
		Advice: "every loosening is named, with a reason someone reviewed",
		Fix:    "replace the TODO with one sentence saying why the service needs what [insecure] allows, or remove the loosening",
	}
	ruleDaemonTCP = &Rule{
		ID: "SR026", Name: "daemon-tcp-unauthenticated", Severity: Critical,
		Title:  "docker daemon listens on TCP without TLS client authentication",
		Advice: "do not raise -H tcp://0.0.0.0:2375 without TLS and mTLS: anyone who reaches the port is root on the host",
		CIS:    "2.7",
		Fix:    "listen only on the unix socket (-H unix:///var/run/docker.sock), or use --tlsverify with client certificates",
	}
	ruleDaemonSocketMode = &Rule{
		ID: "SR027", Name: "daemon-socket-permissions", Severity: Critical,
		Title:  "docker socket open to users outside root and its group",
		Advice: "docker.sock is like root on the host: anyone with access to the socket can start a privileged container",
		CIS:    "3.15, 3.16",
		Fix:    "chown root:docker and chmod 660 the socket",
	}
	ruleDockerGroup = &Rule{
		ID: "SR028", Name: "docker-group-members", Severity: Medium,
		Title:  "users in the docker socket's group (each is root on the host)",
		Advice: "grant access to the docker group only with segregation-of-duties control",
		CIS:    "1.1.2",
		Fix:    "remove users who need not be root from the group (gpasswd -d USER docker); use rootless docker per user",
	}
	ruleDaemonRootful = &Rule{
		ID: "SR029", Name: "daemon-rootful", Severity: Low,
		Title:  "docker daemon runs as root (not rootless)",
		Advice: "rootless mode runs the daemon and containers in a user namespace, which limits runtime vulnerabilities",
		CIS:    "2.1",
		Fix:    "run dockerd in rootless mode (dockerd-rootless-setuptool.sh install), or run the services with safe-run",
	}
	ruleDaemonNoUserns = &Rule{
		ID: "SR030", Name: "daemon-no-userns-remap", Severity: Medium,
		Title:  "containers' root is the host's root (no user-namespace remapping)",
		Advice: "a container is a set of namespaces, USER included; root in a container should be unprivileged on the host",
		CIS:    "2.9",
		Fix:    `set "userns-remap": "default" in /etc/docker/daemon.json, or run dockerd rootless`,
	}
	ruleHostNoAppArmor = &Rule{
		ID: "SR031", Name: "host-no-apparmor", Severity: Medium,
		Title:  "the kernel has no AppArmor: no profile confines the service",
		Advice: "AppArmor per-program profiles are a second containment layer if namespace isolation is bypassed",
		CIS:    "5.2",
		Fix:    "boot a kernel with AppArmor enabled (apparmor=1 security=apparmor on the kernel command line)",
	}
	ruleHostNoCgroups = &Rule{
		ID: "SR032", Name: "host-no-cgroup-limits", Severity: High, Allow: manifest.AllowNoResourceLimits,
		Title:  "the host cannot enforce the service's cgroup limits",
		Advice: "limits must be set, and enforced: otherwise one runaway process kills the entire node",
		CIS:    "5.25",
		Fix:    "run safe-run where it may create cgroups with the memory, cpu and pids controllers (systemd-run --scope -p Delegate=yes)",
	}
	ruleHostNoUserns = &Rule{
		ID: "SR033", Name: "host-no-userns", Severity: Critical, Always: true,
		Title:  "the host gives safe-run no user namespace for the service",
		Advice: "a container is a set of namespaces, USER included; safe-run never runs a service without one",
		CIS:    "2.9",
		Fix:    "enable user namespaces (sysctl user.max_user_namespaces=15000) and give safe-run its id ranges (make setup-user)",
	}
)

// Networking: findings, not refusals. Each can be right for a service
// (a public web server publishes on every address), so none needs
// [insecure]; check and audit say what it exposes and the narrower way.
var (
	rulePublishAll = &Rule{
		ID: "SR034", Name: "publish-all-addresses", Severity: Medium,
		Title:     "port published on every address of the host",
		Advice:    "bind incoming container traffic to a specific host interface; docker's -p publishes on 0.0.0.0 and its DNAT bypasses the host's firewall",
		CIS:       "5.14",
		Fix:       `publish on 127.0.0.1 (the default: "8080:80") behind a proxy, or on the one address that must serve ("192.0.2.10:8080:80")`,
		FixDocker: "publish on one address: -p 127.0.0.1:8080:80, or -p 192.0.2.10:8080:80",
	}
	ruleEgressAll = &Rule{
		ID: "SR035", Name: "egress-all", Severity: Medium,
		Title:  "outbound connections to any address",
		Advice: "a compromised service must not reach whatever the host reaches: allow it only the destinations it needs",
		Fix:    `list what the service connects to: egress = ["10.0.0.0/8:5432/tcp", "api.example.com:443"]`,
	}
	ruleEgressMetadata = &Rule{
		ID: "SR036", Name: "egress-link-local", Severity: High,
		Title:  "outbound connections allowed to link-local addresses, the cloud metadata service among them",
		Advice: "169.254.169.254 hands out the instance's cloud credentials to whoever asks: a service must not reach it",
		Fix:    "remove the egress entry that covers 169.254.0.0/16, or narrow it to the addresses the service needs",
	}
)

// ruleHostNoAddress is a host rule: the manifest is fine, this host is not
// where it can run.
var ruleHostNoAddress = &Rule{
	ID: "SR037", Name: "host-no-address", Severity: Medium, Always: true,
	Title:  "a port is published on an address this host does not have",
	Advice: "bind incoming container traffic to a specific host interface, one the host has",
	CIS:    "5.14",
	Fix:    "publish on an address of this host (ip -brief address), on 127.0.0.1, or run the service where the address is",
}

// Landlock: the access-control layer every kernel since 5.13 has, rootless
// included (package landlock).
var (
	ruleLandlockOff = &Rule{
		ID: "SR038", Name: "landlock-off", Severity: High, Allow: manifest.AllowLandlockOff,
		Title:  "no Landlock ruleset",
		Advice: "restrict what files and ports a program can reach; Landlock does it where AppArmor is absent, rootless too",
		Fix:    `use landlock = "generated" (the default); declare the ports the service binds in landlock_bind`,
	}
	ruleHostNoLandlock = &Rule{
		ID: "SR039", Name: "host-no-landlock", Severity: Medium,
		Title:  "the kernel has no Landlock: no ruleset confines the service",
		Advice: "restrict what files and ports a program can reach; Landlock does it where AppArmor is absent, rootless too",
		Fix:    "boot a kernel with Landlock (5.13 or later, lsm= including landlock)",
	}
	ruleHostLandlockPartial = &Rule{
		ID: "SR040", Name: "host-landlock-partial", Severity: Info,
		Title:  "the kernel's Landlock ABI enforces only part of the ruleset",
		Advice: "restrict what files and ports a program can reach; Landlock does it where AppArmor is absent, rootless too",
		Fix:    "run on a newer kernel: TCP rules need Landlock ABI 4 (Linux 6.7), scoping of signals and abstract sockets ABI 6 (Linux 6.12)",
	}
)

// ruleUnusablePath is what a start refuses in the files a manifest names
// rather than in its text: a root directory or profile that is missing, a
// bind source that leads somewhere sensitive through a symlink. The
// checks are the start's own (launcher.CheckFiles, plan.SeccompProfile);
// check reports their refusals under this rule, so that a manifest safe-run
// would not run never passes check.
var ruleUnusablePath = &Rule{
	ID: "SR041", Name: "unusable-path", Severity: Critical, Always: true,
	Title:  "a file or directory the manifest names cannot be used: safe-run refuses to start",
	Advice: "every bad input gets one clear error naming what is wrong and how to fix it, before anything runs",
	Fix:    "correct the path, or create what it names (the message says which)",
}

// ruleHostConfigBind is SR005's advice (never mount /etc) where the file
// is not one that controls the host: a finding, not a refusal.
var ruleHostConfigBind = &Rule{
	ID: "SR042", Name: "host-config-bind", Severity: Medium,
	Title:     "bind mount of a host configuration file under /etc",
	Advice:    "never mount /var/run/docker.sock, /etc, /var/lib/docker or / into a container; use designated volumes",
	CIS:       "5.6",
	Fix:       "copy what the service needs into a directory of its own (or into the image) and bind that",
	FixDocker: "copy what the service needs into a directory of its own (or into the image) and bind that read-only",
}

// Lookup returns the rule with the ID (SR001) or name (memory-limit) key,
// or nil.
func Lookup(key string) *Rule {
	for _, r := range rules {
		if r.ID == key || r.Name == key {
			return r
		}
	}
	return nil
}
