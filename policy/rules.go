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
	Advice   string // the seed advice it encodes
	CIS      string // CIS Docker Benchmark v1.6.0 control, where one matches
	PSS      string // Kubernetes Pod Security Standard control, where one matches
	Fix      string
}

// Rules is the catalogue, in ID order. IDs are never reused.
var Rules = []*Rule{
	ruleMemory, ruleCPU, rulePids, ruleDangerousCap, ruleSensitiveMount,
	ruleHostNetwork, ruleHostPID, ruleHostIPC, ruleHostUTS, ruleNewPrivileges,
	ruleWritableRootfs, ruleSeccompUnconfined, ruleAppArmorUnconfined,
	ruleSecretEnv, ruleRootUser, ruleAppArmorComplain, ruleWritableBind,
	ruleUnpinnedImage, ruleInsecureRegistry,
}

var (
	ruleMemory = &Rule{
		ID: "SR001", Name: "memory-limit", Severity: High, Allow: manifest.AllowNoResourceLimits,
		Title:  "no memory limit",
		Advice: "set -m on every service, otherwise one runaway process kills the entire node",
		CIS:    "5.10", Fix: `set resources.memory, e.g. memory = "512M"`,
	}
	ruleCPU = &Rule{
		ID: "SR002", Name: "cpu-limit", Severity: High, Allow: manifest.AllowNoResourceLimits,
		Title:  "no CPU limit",
		Advice: "set --cpus on every service, otherwise one runaway process starves the node",
		CIS:    "5.11", Fix: "set resources.cpus, e.g. cpus = 1.0",
	}
	rulePids = &Rule{
		ID: "SR003", Name: "pids-limit", Severity: Medium, Allow: manifest.AllowNoResourceLimits,
		Title:  "PIDs limit above 4096",
		Advice: "limits must be set manually: a fork bomb is a runaway process too",
		CIS:    "5.28", Fix: "lower resources.pids to what the service needs (default 1024)",
	}
	ruleDangerousCap = &Rule{
		ID: "SR004", Name: "dangerous-capability", Severity: Critical, Allow: manifest.AllowDangerousCapabilities,
		Title:  "capability that amounts to control of the host or kernel",
		Advice: "--cap-drop=ALL and add only what the service really does not work without",
		CIS:    "5.3", PSS: "baseline: Capabilities; restricted: Capabilities",
		Fix: "remove the capability; most services need at most NET_BIND_SERVICE",
	}
	ruleSensitiveMount = &Rule{
		ID: "SR005", Name: "sensitive-mount", Severity: Critical, Allow: manifest.AllowSensitiveMounts,
		Title:  "bind mount of a sensitive host path",
		Advice: "never mount /var/run/docker.sock, /etc, /var/lib/docker or / into a container; use designated volumes",
		CIS:    "5.5, 5.31", PSS: "baseline: HostPath Volumes",
		Fix: "bind only the files the service needs, or use a volume",
	}
	ruleHostNetwork = &Rule{
		ID: "SR006", Name: "host-network", Severity: High, Allow: manifest.AllowHostNetwork,
		Title:  "shares the host network namespace",
		Advice: "never use --network=host in regular services: an isolation anti-pattern",
		CIS:    "5.9", PSS: "baseline: Host Namespaces",
		Fix: `use network.mode = "none"`,
	}
	ruleHostPID = &Rule{
		ID: "SR007", Name: "host-pid", Severity: High, Allow: manifest.AllowHostPID,
		Title:  "shares the host PID namespace",
		Advice: "never use --pid=host; debug with nsenter instead",
		CIS:    "5.15", PSS: "baseline: Host Namespaces",
		Fix: "remove namespaces.pid; use safe-run exec or nsenter to debug",
	}
	ruleHostIPC = &Rule{
		ID: "SR008", Name: "host-ipc", Severity: High, Allow: manifest.AllowHostIPC,
		Title:  "shares the host IPC namespace",
		Advice: "a container is a set of private namespaces",
		CIS:    "5.16", PSS: "baseline: Host Namespaces",
		Fix: "remove namespaces.ipc",
	}
	ruleHostUTS = &Rule{
		ID: "SR009", Name: "host-uts", Severity: Medium, Allow: manifest.AllowHostUTS,
		Title:  "shares the host UTS namespace",
		Advice: "a container is a set of private namespaces",
		CIS:    "5.20",
		Fix:    "remove namespaces.uts",
	}
	ruleNewPrivileges = &Rule{
		ID: "SR010", Name: "new-privileges", Severity: High, Allow: manifest.AllowNewPrivileges,
		Title:  "processes may gain privileges (no_new_privileges off)",
		Advice: "setuid binaries and file capabilities must not raise privileges inside the container",
		CIS:    "5.25", PSS: "restricted: Privilege Escalation",
		Fix: "set security.no_new_privileges = true",
	}
	ruleWritableRootfs = &Rule{
		ID: "SR011", Name: "writable-rootfs", Severity: Medium, Allow: manifest.AllowWritableRootfs,
		Title:  "root filesystem is writable",
		Advice: "a read-only filesystem prevents malware deployment and configuration changes inside the container",
		CIS:    "5.12",
		Fix:    "set security.read_only_rootfs = true and mount a tmpfs or volume where the service writes",
	}
	ruleSeccompUnconfined = &Rule{
		ID: "SR012", Name: "seccomp-unconfined", Severity: High, Allow: manifest.AllowSeccompUnconfined,
		Title:  "no seccomp filter",
		Advice: "the kernel should refuse dangerous system calls even to an attacker inside the container",
		CIS:    "5.21", PSS: "baseline: Seccomp; restricted: Seccomp",
		Fix: `use seccomp = "default", or record a profile with safe-run profile record`,
	}
	ruleAppArmorUnconfined = &Rule{
		ID: "SR013", Name: "apparmor-unconfined", Severity: High, Allow: manifest.AllowAppArmorUnconfined,
		Title:  "no AppArmor profile",
		Advice: "AppArmor restricts what files and resources a program can reach",
		CIS:    "5.1", PSS: "baseline: AppArmor",
		Fix: `use apparmor = "generated"`,
	}
	ruleSecretEnv = &Rule{
		ID: "SR014", Name: "secret-in-env", Severity: Medium,
		Title:  "secret-looking environment variable",
		Advice: "secrets belong in runtime secrets, not in images or the environment",
		Fix:    "move the value to [secrets] and read it from /run/secrets/NAME",
	}
	ruleRootUser = &Rule{
		ID: "SR015", Name: "root-user", Severity: Low,
		Title:  "runs as root inside the container",
		Advice: "root inside the user namespace is unprivileged on the host, but still owns the container",
		CIS:    "4.1", PSS: "restricted: Running as Non-root",
		Fix: `set process.user, e.g. user = "1000:1000"`,
	}
	ruleAppArmorComplain = &Rule{
		ID: "SR016", Name: "apparmor-complain", Severity: Low,
		Title:  "AppArmor profile in complain mode (logs, does not enforce)",
		Advice: "complain mode is for staging a new service",
		Fix:    `set apparmor_mode = "enforce" once the log shows no denials`,
	}
	ruleWritableBind = &Rule{
		ID: "SR017", Name: "writable-bind", Severity: Low,
		Title:  "writable bind mount of a host path",
		Advice: "for stateful services use clearly designated volumes",
		CIS:    "5.5",
		Fix:    "use a volume, or read_only = true",
	}
	ruleUnpinnedImage = &Rule{
		ID: "SR018", Name: "unpinned-image", Severity: High, Allow: manifest.AllowUnpinnedImage,
		Title:  "registry image referenced by tag, not pinned by digest",
		Advice: "pin images by digest rather than tags: a tag can be moved to other content",
		// With the allowance, every start prints the digest the tag
		// resolves to, ready to pin.
		Fix: `pin it by digest: ref = "registry.example/web@sha256:<digest>"`,
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
)
