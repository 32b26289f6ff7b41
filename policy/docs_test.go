package policy

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/safe-run/safe-run/internal/testenv"
)

// seedAdvice is every piece of advice in the seeds (design.md: shared/seeds),
// in their order, with what covers it: rule IDs, a secure default, or a
// non-goal topic. TestRulesDoc fails if an ID or topic does not exist, and
// writes the table into docs/rules.md.
var seedAdvice = []struct {
	seed, advice string
	rules        []string
	dflt         string // the secure default that covers it, if any
	nonGoal      string
}{
	{"docker-level-security", "do not mount /var/run/docker.sock, /etc, /var/lib/docker into working containers", []string{"SR005", "SR042"}, "sensitive binds refused after resolving symlinks", ""},
	{"docker-level-security", "for stateful services use clearly designated volumes", []string{"SR017"}, "binds read-only by default; [[mounts]] type = \"volume\"", ""},
	{"docker-level-security", "a container is a set of namespaces: PID, NET, MNT, UTS, USER", []string{"SR006", "SR007", "SR008", "SR009", "SR024", "SR030", "SR033"}, "every namespace private, always a user namespace", ""},
	{"docker-level-security", "never use --pid=host and --network=host in regular services", []string{"SR006", "SR007"}, "network none, private PID namespace", ""},
	{"docker-level-security", "debug with nsenter, not by forwarding services to the host", nil, "", "SSH into containers"},
	{"docker-level-security", "set --cpus and -m on every service", []string{"SR001", "SR002", "SR003", "SR032"}, "memory and cpus required, pids 1024", ""},
	{"docker-level-security", "watch OOMKilled and CPU throttling, and review the limits", nil, "the supervisor warns, once a minute at most and as events, of CPU throttling in over a quarter of the last minute's periods, memory above 90% of the limit for 30 s, an OOM kill the service survives, the pids limit reached; safe-run stats and safe-run metrics: throttling, memory and OOM kills per service; the exit report says OOM-killed", ""},
	{"docker-level-security", "never use --privileged in production", []string{"SR020"}, "no privileged mode exists; import refuses it", ""},
	{"docker-level-security", "--cap-drop=ALL, and --cap-add only what the service does not work without (NET_BIND_SERVICE)", []string{"SR004", "SR021"}, "empty capability set plus declared ones", ""},
	{"docker-level-security", "seccomp and AppArmor: keep the default profile, tailor it for sensitive services", []string{"SR012", "SR013", "SR016", "SR031", "SR038", "SR039", "SR040"}, "default seccomp profile, generated AppArmor profile and Landlock ruleset", "tailored seccomp profiles"},
	{"docker-level-security", "turn on profile violation logging", nil, "seccomp_log = true", "tailored seccomp profiles"},
	{"docker-level-security", "docker.sock is like root on the host", []string{"SR005", "SR027", "SR028"}, "", ""},
	{"docker-level-security", "do not raise -H tcp://0.0.0.0:2375 without TLS and mTLS; only the unix socket", []string{"SR026"}, "", "docker daemon TLS set-up"},
	{"docker-level-security", "do not mount /var/run/docker.sock in working containers", []string{"SR005"}, "", ""},
	{"docker-level-security", "use a separate node with separate rules for CI runners", nil, "", "separate nodes for CI runners"},
	{"docker-level-security", "grant docker group access only with segregation-of-duties control", []string{"SR028"}, "", ""},
	{"docker-security-configuration", "patch Docker Engine and the host OS", nil, "", "patching the engine and the kernel"},
	{"docker-security-configuration", "the daemon socket must not be reachable remotely without HTTPS and authentication", []string{"SR026"}, "", "docker daemon TLS set-up"},
	{"docker-security-configuration", "-v /var/run/docker.sock:/var/run/docker.sock is a common escape", []string{"SR005"}, "", ""},
	{"docker-security-configuration", "rootless mode runs the daemon and containers in a user namespace", []string{"SR029", "SR030"}, "safe-run runs rootless with the same manifest", ""},
	{"docker-security-configuration", "no privileged containers in production (docker inspect .HostConfig.Privileged)", []string{"SR020", "SR022"}, "", ""},
	{"docker-security-configuration", "resource limits (--memory, --cpus) constrain resource abuse", []string{"SR001", "SR002", "SR003"}, "", ""},
	{"docker-security-configuration", "custom bridge networks limit which containers can reach each other", []string{"SR023"}, "network none by default", ""},
	{"docker-security-configuration", "namespaces are the foundation of isolation", []string{"SR006", "SR007", "SR008", "SR009", "SR024"}, "", ""},
	{"docker-security-configuration", "SELinux on Red Hat distributions", nil, "", "SELinux"},
	{"docker-security-configuration", "AppArmor per-program profiles on Debian distributions", []string{"SR013", "SR016", "SR031"}, "generated profile per service", ""},
	{"docker-security-configuration", "cgroups limit resource usage per container", []string{"SR001", "SR002", "SR003", "SR032"}, "", ""},
	{"docker-security-configuration", "seccomp limits system calls to an allowlist", []string{"SR012"}, "default profile", ""},
	{"docker-security-configuration", "run with a read-only filesystem (--read-only)", []string{"SR011"}, "read_only_rootfs = true", ""},
	{"docker-security-configuration", "profile the container's system calls and build an explicit allowlist", nil, "", "tailored seccomp profiles"},
	{"docker-security-configuration", "scan images for vulnerabilities; fail builds above a threshold (Scout, Snyk)", nil, "", "image scanning"},
	{"docker-security-configuration", "minimal base images (distroless, Alpine)", nil, "", "minimal and multi-stage images"},
	{"docker-security-configuration", "no secrets in Dockerfiles or layers; inject them at runtime", []string{"SR014"}, "[secrets] as 0400 files on tmpfs", "secrets in image layers"},
	{"docker-security-configuration", "multi-stage builds", nil, "", "minimal and multi-stage images"},
	{"docker-security-configuration", "private registries with RBAC; Content Trust signing", nil, "", "image signing and private registries"},
	{"docker-security-configuration", "pin images by digest rather than tags", []string{"SR018"}, "registry refs need @sha256:", ""},
	{"docker-security-configuration", "dedicated observability for hosts, engines and workloads", nil, "safe-run metrics: every service's CPU, throttling, memory, OOM kills, pids, network and block I/O, seccomp denials and warnings for Prometheus, labelled by service and manifest digest (loopback or unix socket, or node_exporter's textfile collector)", ""},
	{"docker-security-configuration", "runtime security tools (Falco, Tracee)", nil, "", "runtime threat detection"},
	{"docker-security-configuration", "no SSH access into containers", nil, "", "SSH into containers"},
	{"docker-security-configuration", "labels for licence, source, owner, data classification", nil, "[labels] become OCI annotations", "labels"},
}

// TestRulesDoc generates docs/rules.md from Rules and NonGoals, so the
// README's rule list cannot drift from the code.
func TestRulesDoc(t *testing.T) {
	ids := map[string]bool{}
	for _, r := range rules {
		ids[r.ID] = true
	}
	topics := map[string]bool{}
	for _, n := range nonGoals {
		topics[n.Topic] = true
	}
	covered := map[string]bool{}
	for _, a := range seedAdvice {
		// design.md: every line of advice is a check, a default (what
		// safe-run does without being asked) or a documented non-goal.
		if len(a.rules) == 0 && a.nonGoal == "" && a.dflt == "" {
			t.Errorf("%q: neither a rule, a default nor a non-goal", a.advice)
		}
		for _, id := range a.rules {
			if !ids[id] {
				t.Errorf("%q: no rule %s", a.advice, id)
			}
			covered[id] = true
		}
		if a.nonGoal != "" && !topics[a.nonGoal] {
			t.Errorf("%q: no non-goal %q", a.advice, a.nonGoal)
		}
		covered[a.nonGoal] = true
	}
	for _, n := range nonGoals {
		if !covered[n.Topic] {
			t.Errorf("non-goal %q answers no seed advice", n.Topic)
		}
	}

	var b strings.Builder
	b.WriteString(`# safe-run rules

Generated from ` + "`policy/rules.go`" + ` and ` + "`policy/nongoals.go`" + ` by ` + "`go test ./policy -update`" + `; do not edit.

` + "`safe-run check service.toml`" + ` judges a manifest, ` + "`safe-run import`" + ` the docker run line it
converts, and ` + "`safe-run audit`" + ` the containers and the daemon of a Docker engine, all by
these rules. IDs are stable and never reused. A rule with an ` + "`[insecure]`" + ` item refuses
the manifest unless the item is listed there with a reason; "always" rules name what a
manifest cannot ask for at all. Each rule a target trips deducts its severity's points
from 100 once: critical 30, high 15, medium 8, low 3.

CIS: CIS Docker Benchmark v1.6.0 control. PSS: Kubernetes Pod Security Standards.

| ID | name | severity | title | [insecure] | CIS | PSS |
|---|---|---|---|---|---|---|
`)
	for _, r := range rules {
		allow := r.Allow
		if r.Always {
			allow = "always refused"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", r.ID, r.Name, r.Severity, md(r.Title), md(allow), r.CIS, r.PSS)
	}
	b.WriteString("\nSR019 is reserved for `insecure-registry` (image stage).\n\n## Rules in detail\n")
	for _, r := range rules {
		fmt.Fprintf(&b, "\n### %s %s\n\n%s (%s).\n\n- advice: %s\n- fix: %s\n", r.ID, r.Name, capitalise(r.Title), r.Severity, r.Advice, r.Fix)
		if r.FixDocker != "" {
			fmt.Fprintf(&b, "- fix with docker run: %s\n", r.FixDocker)
		}
		if r.Allow != "" {
			fmt.Fprintf(&b, "- acknowledge: `[insecure] allow = [%q]`, with a reason\n", r.Allow)
		}
	}
	b.WriteString("\n## Non-goals\n\nSeed advice that no rule checks, and why.\n\n| topic | advice | why not a rule |\n|---|---|---|\n")
	for _, n := range nonGoals {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", n.Topic, md(n.Advice), md(n.Reason))
	}
	b.WriteString("\n## Seed advice, line by line\n\nEvery piece of advice in the seeds (`shared/seeds/`), and what covers it.\n\n| seed | advice | rules | default | non-goal |\n|---|---|---|---|---|\n")
	for _, a := range seedAdvice {
		rules := slices.Clone(a.rules)
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", a.seed, md(a.advice), strings.Join(rules, ", "), md(a.dflt), a.nonGoal)
	}
	testenv.Golden(t, filepath.Join("..", "docs", "rules.md"), []byte(b.String()))
}

func md(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

func capitalise(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
