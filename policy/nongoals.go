package policy

// NonGoal is advice from the seeds that safe-run deliberately does not
// check, with the reason. docs/rules.md lists them beside the rules.
type NonGoal struct {
	Topic  string
	Advice string // the seed advice
	Reason string // why no rule checks it, and what covers it instead
}

// nonGoals is every piece of seed advice that is not a rule.
var nonGoals = []NonGoal{
	{
		Topic:  "image scanning",
		Advice: "scan images for known vulnerabilities before use and before pushing; fail builds above a severity threshold (Docker Scout, Snyk)",
		Reason: "a CVE database and its updates are a product of their own; run a scanner in the image build. safe-run pins what was scanned (SR018 unpinned-image)",
	},
	{
		Topic:  "minimal and multi-stage images",
		Advice: "use minimal base images (distroless, Alpine) and multi-stage builds so the final image holds only runtime artefacts",
		Reason: "how an image is built is not visible in a manifest or a running container; a read-only root (SR011) and no capabilities limit what extra tools can do",
	},
	{
		Topic:  "secrets in image layers",
		Advice: "keep credentials, keys and certificates out of Dockerfiles and layers; intermediate layers keep deleted secrets",
		Reason: "layers are read by the image stage when it unpacks them (it warns about secret-looking config), not by check; secrets in the environment are SR014",
	},
	{
		Topic:  "image signing and private registries",
		Advice: "pull from private registries with RBAC; sign images (Content Trust) so tags cannot be changed unnoticed",
		Reason: "signature policy belongs to the registry and a verifier such as cosign; safe-run verifies every blob against the pinned digest (SR018)",
	},
	{
		Topic:  "patching the engine and the kernel",
		Advice: "patch Docker Engine and the host OS: a kernel exploit breaks out of an unprivileged container",
		Reason: "version currency needs a vulnerability feed; audit prints the engine version it talked to, and the distribution's updates do the rest",
	},
	{
		Topic:  "runtime threat detection",
		Advice: "runtime security tools (Falco, Tracee) detect unexpected processes, connections and privilege changes",
		Reason: "detection of attacks in progress needs a kernel sensor running all the time; safe-run prevents (seccomp, AppArmor, no capabilities) and logs seccomp denials",
	},
	{
		Topic:  "SSH into containers",
		Advice: "do not maintain SSH in containers; externalise logs and metrics; debug with nsenter",
		Reason: "a manifest does not show whether the image runs sshd; debugging goes through the service's namespaces with its confinement (safe-run exec), never a forwarded port",
	},
	{
		Topic:  "separate nodes for CI runners",
		Advice: "run CI runners on a separate node with separate rules",
		Reason: "placement is an operations decision; audit flags the runner container that mounts the docker socket (SR005)",
	},
	{
		Topic:  "SELinux",
		Advice: "SELinux labels give mandatory access control on Red Hat distributions",
		Reason: "safe-run generates AppArmor profiles (Debian family); on an SELinux host it says that no AppArmor confines the service (SR031)",
	},
	{
		Topic:  "tailored seccomp profiles",
		Advice: "profile the application under normal operation and build an explicit syscall allowlist; log violations",
		Reason: "whether a profile is tailored cannot be judged from its name; safe-run's default profile logs denials and profiles can be recorded. check refuses only no filter at all (SR012)",
	},
	{
		Topic:  "labels",
		Advice: "label images and containers with source, owner and data classification",
		Reason: "labels are information, not confinement; [labels] become OCI annotations, with the manifest's and image's digests",
	},
	{
		Topic:  "docker daemon TLS set-up",
		Advice: "use Docker's encrypted HTTPS socket with authentication for remote access",
		Reason: "issuing certificates is the operator's; audit finds a TCP listener that answers without a client certificate (SR026)",
	},
}
