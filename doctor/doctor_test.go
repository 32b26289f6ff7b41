package doctor

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/safe-run/safe-run/host"
	"github.com/safe-run/safe-run/internal/testenv"
)

// fakeHost stages a healthy rootless host with cgroup v2 delegated to uid
// 1000 below dir; each case breaks one thing.
func fakeHost(t *testing.T) Host {
	t.Helper()
	root := t.TempDir()
	files := map[string]string{
		"proc/sys/user/max_user_namespaces": "15000",
		"proc/self/status":                  "Name:\tsafe-run\nSeccomp:\t0\nCapEff:\t000001ffffffffff\n",
		"proc/self/cgroup":                  "0::/user.slice/user-1000.slice/user@1000.service/app.slice\n",
		"proc/filesystems":                  "nodev\ttmpfs\nnodev\toverlay\n",
		"etc/passwd":                        "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n",
		"etc/subuid":                        "alice:100000:65536\n",
		"etc/subgid":                        "alice:100000:65536\n",
		"sys/fs/cgroup/cgroup.controllers":  "cpuset cpu io memory pids",
		"sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/app.slice/cgroup.controllers": "cpu memory pids",
		"sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/app.slice/cgroup.procs":       "",
		"sys/module/apparmor/parameters/enabled":                                                  "Y",
		"sys/kernel/security/lsm":                                                                 "lockdown,capability,landlock,yama,apparmor,bpf",
		"sys/kernel/security/apparmor/profiles":                                                   "",
		"usr/bin/newuidmap":                                                                       "",
		"usr/bin/newgidmap":                                                                       "",
		"usr/bin/pasta":                                                                           "",
		"dev/net/tun":                                                                             "",
		"var/lib/systemd/linger/alice":                                                            "",
	}
	for p, content := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(filepath.Join(root, "dev/net/tun"), 0o666)
	for _, tool := range []string{"newuidmap", "newgidmap"} {
		os.Chmod(filepath.Join(root, "usr/bin", tool), 0o755|os.ModeSetuid)
	}
	xdg := filepath.Join(root, "run/user/1000")
	os.MkdirAll(xdg, 0o700)
	os.Chmod(xdg, 0o700)
	h := Host{
		Root:            root,
		Env:             func(k string) string { return map[string]string{"XDG_RUNTIME_DIR": "/run/user/1000"}[k] },
		OverlayInUserns: func() error { return nil },
	}
	h.Facts = host.Read(root, 1000, 1000)
	h.Facts.Kernel = "6.1.0-18-amd64"
	h.Facts.Seccomp.Log, h.Facts.Seccomp.Notify = true, true
	h.Facts.LandlockABI = 6
	return h
}

// reread reads h's files again, after a case changed them, keeping the
// facts that come from system calls (as Probe does).
func reread(h Host) Host {
	f := host.Read(h.Root, h.Facts.UID, h.Facts.EUID)
	f.Kernel, f.LandlockABI = h.Facts.Kernel, h.Facts.LandlockABI
	f.Seccomp.Log, f.Seccomp.Notify = h.Facts.Seccomp.Log, h.Facts.Seccomp.Notify
	h.Facts = f
	return h
}

// rootlessHost is the staged host as user alice (uid 1000) sees it.
func rootlessHost(t *testing.T) Host {
	h := fakeHost(t)
	for _, p := range []string{"sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/app.slice/cgroup.procs", "run/user/1000"} {
		if err := os.Chown(filepath.Join(h.Root, p), 1000, 1000); err != nil {
			t.Fatal(err)
		}
	}
	return reread(h)
}

func find(r *Report, name string) Check {
	for _, c := range r.Checks {
		if c.Name == name {
			return c
		}
	}
	return Check{}
}

func TestHealthyRootlessHost(t *testing.T) {
	// Staging root-owned setuid helpers and files of uid 1000 needs root.
	testenv.RequireRoot(t)
	h := rootlessHost(t)
	r := Diagnose(h)
	if r.Degraded() {
		var buf bytes.Buffer
		r.WriteText(&buf)
		t.Errorf("a healthy host is degraded:\n%s", buf.String())
	}
}

func TestBrokenConditions(t *testing.T) {
	testenv.RequireRoot(t)
	for _, tc := range []struct {
		name   string
		break_ func(h *Host)
		check  string
		want   Check
	}{
		{
			name:   "subuid missing",
			break_: func(h *Host) { os.WriteFile(filepath.Join(h.Root, "etc/subuid"), nil, 0o644) },
			check:  "subordinate ids",
			want: Check{Name: "subordinate ids", Status: Warn,
				Found: "alice has no range of 65536 ids in /etc/subuid: only the container's root can be mapped, to your own uid",
				Fix:   "as root: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 alice (pick a range no other user has)"},
		},
		{
			name: "user namespaces disabled by sysctl",
			break_: func(h *Host) {
				os.WriteFile(filepath.Join(h.Root, "proc/sys/user/max_user_namespaces"), []byte("0"), 0o644)
			},
			check: "user namespaces",
			want: Check{Name: "user namespaces", Status: Fail, Found: "disabled: user.max_user_namespaces = 0",
				Fix: "sysctl -w user.max_user_namespaces=15000 && echo user.max_user_namespaces=15000 > /etc/sysctl.d/90-userns.conf"},
		},
		{
			name: "Ubuntu restricts unprivileged user namespaces",
			break_: func(h *Host) {
				os.MkdirAll(filepath.Join(h.Root, "proc/sys/kernel"), 0o755)
				os.WriteFile(filepath.Join(h.Root, "proc/sys/kernel/apparmor_restrict_unprivileged_userns"), []byte("1"), 0o644)
			},
			check: "user namespaces",
			want: Check{Name: "user namespaces", Status: Fail,
				Found: "AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns = 1, Ubuntu 23.10+)",
				Fix:   "as root, allow safe-run alone: printf 'abi <abi/4.0>,\\ninclude <tunables/global>\\nprofile safe-run /usr/local/bin/safe-run flags=(unconfined) {\\n  userns,\\n}\\n' > /etc/apparmor.d/safe-run && apparmor_parser -r /etc/apparmor.d/safe-run"},
		},
		{
			name: "controllers not delegated",
			break_: func(h *Host) {
				os.WriteFile(filepath.Join(h.Root, "sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/app.slice/cgroup.controllers"), []byte("pids"), 0o644)
			},
			check: "cgroups",
			want: Check{Name: "cgroups", Status: Fail,
				Found: "cgroup v2, but /user.slice/user-1000.slice/user@1000.service/app.slice is not delegated to you with cpu, memory",
				Fix:   "as root: mkdir -p /etc/systemd/system/user@.service.d && printf '[Service]\\nDelegate=cpu cpuset io memory pids\\n' > /etc/systemd/system/user@.service.d/delegate.conf && systemctl daemon-reload; then run safe-run under systemd-run --user --scope -p Delegate=yes"},
		},
		{
			name: "cgroup v1",
			break_: func(h *Host) {
				os.Remove(filepath.Join(h.Root, "sys/fs/cgroup/cgroup.controllers"))
				os.MkdirAll(filepath.Join(h.Root, "sys/fs/cgroup/memory"), 0o755)
			},
			check: "cgroups",
			want: Check{Name: "cgroups", Status: Fail,
				Found: "cgroup v1: v1 controllers cannot be delegated to a user, so rootless limits cannot be enforced",
				Fix:   "boot with cgroup v2 only (systemd.unified_cgroup_hierarchy=1 on the kernel command line), or acknowledge [insecure] no_resource_limits per service"},
		},
		{
			name:   "newuidmap not setuid",
			break_: func(h *Host) { os.Chmod(filepath.Join(h.Root, "usr/bin/newuidmap"), 0o755) },
			check:  "newuidmap",
			want: Check{Name: "newuidmap", Status: Fail,
				Found: "/usr/bin/newuidmap is neither setuid root nor has file capabilities: it cannot map your subordinate ids",
				Fix:   "as root: chmod u+s /usr/bin/newuidmap (or setcap cap_setuid+ep /usr/bin/newuidmap)"},
		},
		{
			name:   "newgidmap missing",
			break_: func(h *Host) { os.Remove(filepath.Join(h.Root, "usr/bin/newgidmap")) },
			check:  "newgidmap",
			want:   Check{Name: "newgidmap", Status: Fail, Found: "not installed", Fix: "as root: apt-get install uidmap"},
		},
		{
			name:   "no XDG_RUNTIME_DIR",
			break_: func(h *Host) { h.Env = func(string) string { return "" } },
			check:  "XDG_RUNTIME_DIR",
			want: Check{Name: "XDG_RUNTIME_DIR", Status: Fail, Found: "not set: safe-run keeps its state there",
				Fix: "log in through systemd-logind (ssh, a desktop or machinectl shell alice@), which creates /run/user/1000"},
		},
		{
			name: "no AppArmor",
			break_: func(h *Host) {
				os.WriteFile(filepath.Join(h.Root, "sys/module/apparmor/parameters/enabled"), []byte("N"), 0o644)
			},
			check: "AppArmor",
			want: Check{Name: "AppArmor", Status: Warn,
				Found: "not in this kernel: services run without their AppArmor profile (apparmor_required = true refuses them)",
				Fix:   "boot a kernel with AppArmor (Debian's: apparmor=1 security=apparmor), or accept it: seccomp, capabilities and namespaces still apply"},
		},
		{
			name:   "securityfs not mounted",
			break_: func(h *Host) { os.RemoveAll(filepath.Join(h.Root, "sys/kernel/security")) },
			check:  "AppArmor",
			want: Check{Name: "AppArmor", Status: Warn,
				Found: "in this kernel, but securityfs is not mounted: profiles can be neither loaded nor applied, so services run without theirs",
				Fix:   "as root: mount -t securityfs securityfs /sys/kernel/security (systemd mounts it at boot)"},
		},
		{
			name:   "no seccomp user notification",
			break_: func(h *Host) { h.Facts.Seccomp.Notify = false },
			check:  "seccomp",
			want: Check{Name: "seccomp", Status: Warn, Found: "filters and logging, but no user notification: rootless runs cannot show denials",
				Fix: "a kernel of 5.5 or later"},
		},
		{
			name:   "pasta missing",
			break_: func(h *Host) { os.Remove(filepath.Join(h.Root, "usr/bin/pasta")) },
			check:  "rootless network",
			want: Check{Name: "rootless network", Status: Warn, Found: `pasta is not installed: network.mode "bridge" is refused without root`,
				Fix: "as root: apt-get install passt"},
		},
		{
			name:   "tun device for root only",
			break_: func(h *Host) { os.Chmod(filepath.Join(h.Root, "dev/net/tun"), 0o600) },
			check:  "rootless network",
			want: Check{Name: "rootless network", Status: Warn,
				Found: `/dev/net/tun is mode 0600, owner uid 0: you cannot open it: pasta cannot connect a service's network: network.mode "bridge" is refused without root`,
				Fix:   `as root: chmod 0666 /dev/net/tun (the kernel's default; a udev rule keeps it: KERNEL=="tun", MODE="0666")`},
		},
		{
			name:   "old kernel",
			break_: func(h *Host) { h.Facts.Kernel = "5.10.0-28-amd64" },
			check:  "kernel",
			want: Check{Name: "kernel", Status: Fail, Found: "5.10.0-28-amd64: no idmapped mounts (5.12) or mount_setattr",
				Fix: "upgrade to a kernel of 5.19 or later (Debian 12 ships 6.1)"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := rootlessHost(t)
			tc.break_(&h)
			r := Diagnose(reread(h))
			if got := find(r, tc.check); got != tc.want {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
			if !r.Degraded() && tc.want.Status != Info {
				t.Error("not reported as degraded")
			}
		})
	}
}

func TestJSONReport(t *testing.T) {
	r := &Report{Rootless: true, User: "alice", Checks: []Check{{Name: "kernel", Status: OK, Found: "6.1"}}}
	var buf bytes.Buffer
	if err := r.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil || back.Checks[0].Status != OK || !strings.Contains(buf.String(), `"status": "ok"`) {
		t.Errorf("%v: %s", err, buf.String())
	}
}

func TestLandlockCheck(t *testing.T) {
	for _, tc := range []struct {
		abi    int
		audit  host.Audit
		status Status
		found  string
	}{
		{0, 0, Warn, "not in this kernel: services run without their Landlock ruleset (landlock_required = true refuses them)"},
		{2, 0, OK, "ABI 2: file system only (TCP rules need ABI 4, scoping of signals and abstract sockets ABI 6); denials surface as EACCES only (audit needs ABI 7)"},
		{4, 0, OK, "ABI 4: file system and TCP bind/connect (scoping of signals and abstract sockets needs ABI 6); denials surface as EACCES only (audit needs ABI 7)"},
		{6, 0, OK, "ABI 6: file system, TCP bind/connect, scoping; denials surface as EACCES only (audit needs ABI 7)"},
		{7, host.AuditOff, OK, "ABI 7: file system, TCP bind/connect, scoping; denials surface as EACCES only: the kernel's audit is off, and Landlock audits nothing without it"},
		{7, host.AuditOn, OK, "ABI 7: file system, TCP bind/connect, scoping; denials audited (the kernel's audit is on): safe-run shows the service's as root, rootless they surface as EACCES only"},
		{7, host.AuditUnknown, OK, "ABI 7: file system, TCP bind/connect, scoping; denials surface as EACCES only rootless; as root they are shown where the kernel's audit is on (asking whether it is needs root)"},
	} {
		var h Host
		h.Facts.LandlockABI, h.Facts.Audit = tc.abi, tc.audit
		if c := h.landlock(); c.Status != tc.status || c.Found != tc.found {
			t.Errorf("ABI %d: %v %q, want %v %q", tc.abi, c.Status, c.Found, tc.status, tc.found)
		}
	}
}

// TestPublishable: which host ports a rootless run may publish (the outer
// safe-run binds them as the user).
func TestPublishable(t *testing.T) {
	for _, tc := range []struct {
		value string // "" = no such file
		want  Check
	}{
		{"1024\n", Check{Name: "rootless ports", Status: OK, Found: "host ports from 1024 up can be published without root; below that only as root (net.ipv4.ip_unprivileged_port_start = 1024)",
			Fix: "only if services must publish lower ports without root, as root: sysctl -w net.ipv4.ip_unprivileged_port_start=80 (and in /etc/sysctl.d)"}},
		{"0\n", Check{Name: "rootless ports", Status: OK, Found: "every host port can be published without root (net.ipv4.ip_unprivileged_port_start = 0)"}},
		{"", Check{Name: "rootless ports", Status: OK, Found: "net.ipv4.ip_unprivileged_port_start unreadable: host ports below 1024 are likely refused without root"}},
	} {
		h := Host{Root: t.TempDir()}
		if tc.value != "" {
			p := filepath.Join(h.Root, "proc/sys/net/ipv4/ip_unprivileged_port_start")
			os.MkdirAll(filepath.Dir(p), 0o755)
			os.WriteFile(p, []byte(tc.value), 0o644)
		}
		h.Facts = host.Read(h.Root, 0, 0)
		if got := h.publishable(); got != tc.want {
			t.Errorf("%q: got %+v, want %+v", tc.value, got, tc.want)
		}
	}
}
