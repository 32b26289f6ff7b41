// Package hosttest stages hosts for tests: the files package host reads,
// below a temporary root, for each kind of host safe-run meets.
package hosttest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/safe-run/safe-run/host"
)

// Kinds of host Stage knows.
const (
	V1Hybrid      = "v1 hybrid"      // root; v1 controllers, v2 without them (Debian 11, this CI machine)
	V2Delegated   = "v2 delegated"   // rootless, cgroup v2, delegated by systemd
	V2Undelegated = "v2 undelegated" // rootless, cgroup v2, owned by root
	NoAppArmor    = "no AppArmor"    // root, v2, a kernel without AppArmor
	NoSecurityfs  = "no securityfs"  // root, v2, AppArmor in the kernel but securityfs not mounted
)

// Kinds lists every kind, for table tests. A function, not a variable:
// no test can change the list for the others.
func Kinds() []string {
	return []string{V1Hybrid, V2Delegated, V2Undelegated, NoAppArmor, NoSecurityfs}
}

// UID is the rootless user of the staged hosts, alice.
const UID = 1000

// Stage writes a host of the given kind below a temporary directory and
// returns its root and its facts, as Probe would find them there. Staging
// files of another user needs root: Stage skips without it.
func Stage(t testing.TB, kind string) (root string, f host.Facts) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("staging a host's files of uid 1000 needs root")
	}
	root = t.TempDir()
	own := "/user.slice/user-1000.slice/user@1000.service/app.slice"
	files := map[string]string{
		"proc/sys/user/max_user_namespaces":            "15000",
		"proc/sys/net/ipv4/ip_unprivileged_port_start": "1024",
		"proc/self/status":                             "Name:\tsafe-run\nSeccomp:\t0\nCapEff:\t000001ffffffffff\n",
		"proc/self/cgroup":                             "0::" + own + "\n",
		"etc/passwd":                                   "root:x:0:0::/root:/bin/sh\nsafe-run:x:999:999::/:/usr/sbin/nologin\nalice:x:1000:1000::/home/alice:/bin/sh\n",
		"etc/subuid":                                   "alice:100000:65536\nsafe-run:1073741824:67108864\n",
		"etc/subgid":                                   "alice:100000:65536\nsafe-run:1073741824:67108864\n",
		"sys/module/apparmor/parameters/enabled":       "Y",
		"sys/kernel/security/lsm":                      "lockdown,capability,landlock,yama,apparmor,bpf",
		"sys/kernel/security/apparmor/profiles":        "",
	}
	uid := 0
	switch kind {
	case V1Hybrid:
		files["proc/self/cgroup"] = "12:pids:/system.slice/ssh.service\n4:memory:/system.slice/ssh.service\n0::/system.slice/ssh.service\n"
		files["proc/cgroups"] = "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpu\t3\t80\t1\nmemory\t4\t80\t1\npids\t12\t80\t1\n"
		files["sys/fs/cgroup/unified/cgroup.procs"] = ""
		for _, c := range []string{"cpu", "memory", "pids"} {
			files["sys/fs/cgroup/"+c+"/cgroup.procs"] = ""
		}
	case V2Delegated, V2Undelegated:
		uid = UID
		files["sys/fs/cgroup/cgroup.controllers"] = "cpuset cpu io memory pids"
		files["sys/fs/cgroup"+own+"/cgroup.controllers"] = "cpu memory pids"
		files["sys/fs/cgroup"+own+"/cgroup.procs"] = ""
		files["sys/fs/cgroup"+own+"/cgroup.subtree_control"] = ""
	case NoAppArmor, NoSecurityfs:
		files["proc/self/cgroup"] = "0::/system.slice/web.service\n"
		files["sys/fs/cgroup/cgroup.controllers"] = "cpuset cpu io memory pids"
		files["sys/fs/cgroup/system.slice/web.service/cgroup.controllers"] = "cpu memory pids"
		files["sys/fs/cgroup/system.slice/web.service/cgroup.procs"] = ""
		if kind == NoAppArmor {
			files["sys/module/apparmor/parameters/enabled"] = "N"
			files["sys/kernel/security/lsm"] = "lockdown,capability,landlock,yama,bpf"
			delete(files, "sys/kernel/security/apparmor/profiles")
		} else {
			delete(files, "sys/kernel/security/lsm")
			delete(files, "sys/kernel/security/apparmor/profiles")
		}
	default:
		t.Fatalf("hosttest: no host of kind %q", kind)
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
	if kind == V2Delegated {
		for _, p := range []string{"cgroup.procs", "cgroup.subtree_control"} {
			if err := os.Chown(filepath.Join(root, "sys/fs/cgroup", own, p), UID, UID); err != nil {
				t.Fatal(err)
			}
		}
	}
	f = host.Read(root, uid, uid)
	f.Kernel, f.Arch, f.CPUs, f.LandlockABI = "6.1.0-18-amd64", "amd64", 4, 6
	f.Seccomp.Log, f.Seccomp.Notify = true, true
	f.RlimitMax = map[string]uint64{"RLIMIT_NOFILE": 524288, "RLIMIT_CORE": 0}
	return root, f
}
