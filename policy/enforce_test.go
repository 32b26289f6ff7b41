package policy

import (
	"fmt"
	"strings"
	"testing"

	"github.com/safe-run/safe-run/manifest"
)

// TestEnforce takes each manifest rule in turn: a manifest that trips it,
// the exact error Enforce returns for it, and the same manifest with the
// rule's [insecure] item, which Enforce lets through with the finding
// marked Accepted. Rules without an allow item only warn: Enforce never
// refuses them, and [insecure] cannot mark them accepted.
func TestEnforce(t *testing.T) {
	security := func(lines string) string { return edit("[resources]", "[security]\n"+lines+"\n[resources]") }
	bind := func(source, extra string) string {
		return base + "\n[[mounts]]\ntype = \"bind\"\nsource = \"" + source + "\"\ntarget = \"/data\"\n" + extra
	}
	tests := []struct {
		rule     string
		manifest string
		want     string // Enforce's error; "" for a rule that only warns
	}{
		{"SR001", edit(`memory = "256M"`+"\n", ""),
			`web.toml:11: resources.memory: missing: the service may use all of the host's memory [SR001 memory-limit] (set resources.memory, e.g. memory = "512M", or acknowledge it: [insecure] allow = ["no_resource_limits"] with a reason)`},
		{"SR002", edit("cpus = 0.5\n", ""),
			`web.toml:11: resources.cpus: missing: the service may use every CPU of the host [SR002 cpu-limit] (set resources.cpus, e.g. cpus = 1.0, or acknowledge it: [insecure] allow = ["no_resource_limits"] with a reason)`},
		{"SR003", base + "pids = 5000\n",
			`web.toml:14: resources.pids: 5000 processes is enough for a fork bomb to hurt the host [SR003 pids-limit] (lower resources.pids to what the service needs (default 1024), or acknowledge it: [insecure] allow = ["no_resource_limits"] with a reason)`},
		{"SR004", security(`capabilities = ["NET_BIND_SERVICE", "cap_sys_admin"]`),
			`web.toml:12: security.capabilities[1]: SYS_ADMIN is refused: mount, namespaces, BPF, and most of the kernel's admin interface [SR004 dangerous-capability] (remove the capability; most services need at most NET_BIND_SERVICE, or acknowledge it: [insecure] allow = ["dangerous_capabilities"] with a reason)`},
		{"SR005", bind("/var/lib/docker", ""),
			`web.toml:17: mounts[0].source: /var/lib/docker is refused: docker's images, containers and volumes [SR005 sensitive-mount] (bind only the files the service needs, or use a volume, or acknowledge it: [insecure] allow = ["sensitive_mounts"] with a reason)`},
		{"SR006", base + "\n[network]\nmode = \"host\"\n",
			`web.toml:16: network.mode: the host network namespace is shared [SR006 host-network] (use network.mode = "none", or acknowledge it: [insecure] allow = ["host_network"] with a reason)`},
		{"SR007", base + "\n[namespaces]\npid = \"host\"\n",
			`web.toml:16: namespaces.pid: the host PID namespace is shared [SR007 host-pid] (remove namespaces.pid; use safe-run exec or nsenter to debug, or acknowledge it: [insecure] allow = ["host_pid"] with a reason)`},
		{"SR008", base + "\n[namespaces]\nipc = \"host\"\n",
			`web.toml:16: namespaces.ipc: the host IPC namespace is shared [SR008 host-ipc] (remove namespaces.ipc, or acknowledge it: [insecure] allow = ["host_ipc"] with a reason)`},
		{"SR009", base + "\n[namespaces]\nuts = \"host\"\n",
			`web.toml:16: namespaces.uts: the host UTS namespace is shared [SR009 host-uts] (remove namespaces.uts, or acknowledge it: [insecure] allow = ["host_uts"] with a reason)`},
		{"SR010", security("no_new_privileges = false"),
			`web.toml:12: security.no_new_privileges: setuid binaries and file capabilities can raise privileges [SR010 new-privileges] (set security.no_new_privileges = true, or acknowledge it: [insecure] allow = ["new_privileges"] with a reason)`},
		{"SR011", security("read_only_rootfs = false"),
			`web.toml:12: security.read_only_rootfs: the service can change its own binaries and configuration [SR011 writable-rootfs] (set security.read_only_rootfs = true and mount a tmpfs or volume where the service writes, or acknowledge it: [insecure] allow = ["writable_rootfs"] with a reason)`},
		{"SR012", security(`seccomp = "unconfined"`),
			`web.toml:12: security.seccomp: every system call is allowed [SR012 seccomp-unconfined] (use seccomp = "default", or record a profile with safe-run profile record, or acknowledge it: [insecure] allow = ["seccomp_unconfined"] with a reason)`},
		{"SR013", security(`apparmor = "unconfined"`),
			`web.toml:12: security.apparmor: no AppArmor profile confines the service [SR013 apparmor-unconfined] (use apparmor = "generated", or acknowledge it: [insecure] allow = ["apparmor_unconfined"] with a reason)`},
		{"SR014", edit(`user = "1000:1000"`, "user = \"1000:1000\"\nenv = { API_TOKEN = \"x\" }"), ""},
		{"SR015", edit(`user = "1000:1000"`, `user = "root"`), ""},
		{"SR016", security(`apparmor_mode = "complain"`), ""},
		{"SR017", bind("/srv/data", "read_only = false\n"), ""},
	}
	byID := map[string]*Rule{}
	for _, r := range rules {
		byID[r.ID] = r
	}
	for _, tc := range tests {
		t.Run(tc.rule, func(t *testing.T) {
			rule := byID[tc.rule]
			svc := parse(t, tc.manifest)
			f := finding(t, svc, rule)
			if f.Accepted {
				t.Error("accepted without [insecure]")
			}
			err := Enforce(svc)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Errorf("Enforce:\n%s\nwant:\n%s", got, tc.want)
			}
			if rule.Allow == "" {
				if f.Refused() {
					t.Error("a rule without an allow item refuses")
				}
				return
			}
			if !f.Refused() {
				t.Error("not refused")
			}
			if fields := manifest.FieldErrors(err); len(fields) != 1 || fields[0].Line == 0 {
				t.Errorf("want one FieldError with a line, got %#v", fields)
			}
			// The same manifest, acknowledged.
			ack := parse(t, tc.manifest+"\n[insecure]\nreason = \"tested\"\nallow = [\""+rule.Allow+"\"]\n")
			if f := finding(t, ack, rule); !f.Accepted || f.Refused() {
				t.Errorf("acknowledged: Accepted %v, Refused %v", f.Accepted, f.Refused())
			}
			if err := Enforce(ack); err != nil {
				t.Errorf("acknowledged, Enforce: %v", err)
			}
		})
	}
}

// TestEnforceWarningsCannotBeAcknowledged: [insecure] has no item for a
// warning, so none marks it Accepted.
func TestEnforceWarningsCannotBeAcknowledged(t *testing.T) {
	svc := parse(t, edit(`user = "1000:1000"`, `user = "0"`)+"\n[insecure]\nreason = \"everything\"\nallow = [\""+strings.Join(manifest.AllowItems(), `", "`)+"\"]\n")
	f := finding(t, svc, ruleRootUser)
	if f.Accepted || f.Refused() {
		t.Errorf("SR015: Accepted %v, Refused %v", f.Accepted, f.Refused())
	}
}

// TestEnforceAll: several refusals come back together, sorted by line,
// each naming its rule and the item that would allow it.
func TestEnforceAll(t *testing.T) {
	text := edit("cpus = 0.5\n", "") + `
[security]
capabilities = ["SYS_PTRACE", "NET_ADMIN"]

[[mounts]]
type = "bind"
source = "/home/alice"
target = "/home"

[network]
mode = "host"
`
	err := Enforce(parse(t, text))
	var got []string
	for _, f := range manifest.FieldErrors(err) {
		_, id, _ := strings.Cut(f.Msg, "[")
		got = append(got, fmt.Sprintf("%d %s", f.Line, id[:5]))
	}
	want := "11 SR002, 15 SR004, 15 SR004, 19 SR005, 23 SR006"
	if strings.Join(got, ", ") != want {
		t.Errorf("got  %s\nwant %s\n%v", strings.Join(got, ", "), want, err)
	}
}

// finding returns the one finding of rule, failing if there is none.
func finding(t *testing.T, s *manifest.Service, rule *Rule) Finding {
	t.Helper()
	var found []Finding
	for _, f := range Findings(s) {
		if f.Rule == rule {
			found = append(found, f)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s: %d findings, want 1: %v", rule.ID, len(found), render(Findings(s)))
	}
	return found[0]
}

// TestEnforceOrder: refusals tied to no line (the [resources] table is
// missing altogether) come after the placed ones, as manifest errors do.
func TestEnforceOrder(t *testing.T) {
	text := edit("[resources]\nmemory = \"256M\"\ncpus = 0.5\n", "[network]\nmode = \"host\"\n")
	var got []string
	for _, f := range manifest.FieldErrors(Enforce(parse(t, text))) {
		_, id, _ := strings.Cut(f.Msg, "[")
		got = append(got, fmt.Sprintf("%d %s", f.Line, id[:5]))
	}
	if want := "12 SR006, 0 SR001, 0 SR002"; strings.Join(got, ", ") != want {
		t.Errorf("got  %s\nwant %s", strings.Join(got, ", "), want)
	}
}

// TestEnforceTodoReason: the placeholder reason safe-run import writes
// acknowledges nothing; the service does not run until someone replaces it.
func TestEnforceTodoReason(t *testing.T) {
	svc := parse(t, base+"\n[network]\nmode = \"host\"\n\n[insecure]\nreason = \"TODO: say in one sentence why this service needs what allow lists\"\nallow = [\"host_network\"]\n")
	want := `web.toml:19: insecure.reason: "TODO: say in one sentence why this service needs what allow lists": nobody has said yet why the service needs host_network [SR025 unreviewed-acknowledgement] (replace the TODO with one sentence saying why the service needs what [insecure] allows, or remove the loosening)`
	if err := Enforce(svc); err == nil || err.Error() != want {
		t.Errorf("Enforce:\n%v\nwant:\n%s", err, want)
	}
}
