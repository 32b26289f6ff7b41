package plan_test

// Spec tests: no root, no kernel features. Each manifest under
// testdata/spec is turned into an OCI runtime spec with fixed host facts
// and pinned as JSON beside it; the properties the hardening rests on are
// also asserted directly, so that a reviewed -update cannot quietly drop
// one.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/safe-run/safe-run/image"
	"github.com/safe-run/safe-run/manifest"
	"github.com/safe-run/safe-run/plan"
	"github.com/safe-run/safe-run/policy"

	"github.com/safe-run/safe-run/internal/testenv"
)

// hostFor returns the fixed host facts of a root run on a cgroup v1 (or
// hybrid) host, as Build would place them.
func hostFor(name string) plan.Placement {
	return plan.Placement{
		StateDir:   "/run/safe-run/" + name,
		VolumeDir:  "/var/lib/safe-run/volumes",
		InitPath:   "/usr/lib/safe-run/safe-run-init",
		IDs:        plan.IDMap{UID: 1 << 30, GID: 1 << 30, Size: 65536},
		CgroupPath: "safe-run-" + name,
	}
}

// hostV2 is the same on a pure cgroup v2 host, safe-run started by a
// systemd unit with Delegate=yes.
func hostV2(name string) plan.Placement {
	h := hostFor(name)
	h.CgroupV2 = true
	h.CgroupPath = "/system.slice/safe-run-" + name + ".service/safe-run-" + name
	return h
}

// hostRootless is a rootless run: safe-run in its own user namespace maps
// the container onto the same 65536 ids (0 = the user, 1.. = subordinate ids).
func hostRootless(name string) plan.Placement {
	h := hostV2(name)
	h.Rootless = true
	h.IDs = plan.IDMap{Size: 65536}
	h.StateDir = "/run/user/1000/safe-run/" + name
	h.VolumeDir = "/home/alice/.local/share/safe-run/volumes"
	return h
}

// testRootfs is the image every spec test uses: only /etc/passwd and
// /etc/group, for user names.
func testRootfs(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("testdata/rootfs")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// load parses testdata/spec/NAME.toml as if it lived in /srv/NAME (so the
// goldens hold no path of this checkout) and applies the policy, as
// Build does.
func load(t *testing.T, name string) *manifest.Service {
	t.Helper()
	path := filepath.Join("testdata", "spec", name+".toml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := manifest.Parse(path, "/srv/"+name, data)
	if err != nil {
		t.Fatal(err)
	}
	if err := policy.Enforce(svc); err != nil {
		t.Fatalf("policy refuses the test manifest: %v", err)
	}
	return svc
}

func buildSpec(t *testing.T, svc *manifest.Service, host plan.Placement) *specs.Spec {
	t.Helper()
	net := plan.NetworkOptions(svc, plan.Dirs{State: "/run/safe-run"})
	spec, err := plan.Spec(plan.Inputs{Service: svc, Image: &image.Image{Rootfs: testRootfs(t)}, Network: net}, host)
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

var specCases = []struct {
	golden, manifest string
	host             func(string) plan.Placement
}{
	{"minimal", "minimal", hostFor},
	{"minimal-v2", "minimal", hostV2},
	{"minimal-rootless", "minimal", hostRootless},
	{"full", "full", hostFor},
	{"full-v2", "full", hostV2},
	{"user-name", "user-name", hostFor},
	{"nonroot-cap", "nonroot-cap", hostFor},
	{"root-cap", "root-cap", hostFor},
	{"host-namespaces", "host-namespaces", hostFor},
	{"writable", "writable", hostFor},
	{"secrets", "secrets", hostFor},
	{"volumes", "volumes", hostFor},
	{"no-init-tty", "no-init-tty", hostFor},
	{"bridge", "bridge", hostFor},
}

func TestSpecGolden(t *testing.T) {
	for _, tc := range specCases {
		t.Run(tc.golden, func(t *testing.T) {
			svc := load(t, tc.manifest)
			spec := buildSpec(t, svc, tc.host(svc.Name))
			got, err := json.MarshalIndent(spec, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(bytes.ReplaceAll(got, []byte(testRootfs(t)), []byte("$ROOTFS")), '\n')
			testenv.Golden(t, filepath.Join("testdata", "spec", tc.golden+".json"), got)
		})
	}
}

// TestSpecHardening asserts, for every test manifest, what must hold of
// any spec safe-run runs.
func TestSpecHardening(t *testing.T) {
	for _, tc := range specCases {
		t.Run(tc.golden, func(t *testing.T) {
			svc := load(t, tc.manifest)
			host := tc.host(svc.Name)
			s := buildSpec(t, svc, host)
			p, l := s.Process, s.Linux

			has := func(typ specs.LinuxNamespaceType) bool {
				return slices.ContainsFunc(l.Namespaces, func(n specs.LinuxNamespace) bool {
					// Only the network namespace may be joined: the one
					// safe-run makes for a bridge service, under its state.
					return n.Type == typ && (n.Path == "" || typ == specs.NetworkNamespace && strings.HasPrefix(n.Path, "/run/safe-run/net/netns/"))
				})
			}
			for _, ns := range []specs.LinuxNamespaceType{specs.UserNamespace, specs.MountNamespace, specs.CgroupNamespace} {
				if !has(ns) {
					t.Errorf("no private %s namespace", ns)
				}
			}
			for ns, shared := range map[specs.LinuxNamespaceType]bool{
				specs.PIDNamespace:     svc.Namespaces.PID == "host",
				specs.IPCNamespace:     svc.Namespaces.IPC == "host",
				specs.UTSNamespace:     svc.Namespaces.UTS == "host",
				specs.NetworkNamespace: svc.Network.Mode == manifest.NetworkHost,
			} {
				if has(ns) == shared {
					t.Errorf("%s namespace private = %v, want %v", ns, has(ns), !shared)
				}
			}
			if len(l.UIDMappings) == 0 || len(l.GIDMappings) == 0 {
				t.Fatal("no id mappings")
			}
			var mapped uint32
			for _, m := range l.UIDMappings {
				mapped += m.Size
				if !host.Rootless && m.HostID == 0 {
					t.Errorf("container ids map onto host root: %+v", m)
				}
			}
			if mapped != 65536 || l.UIDMappings[0].ContainerID != 0 {
				t.Errorf("uid map %+v: want container 0..65535", l.UIDMappings)
			}
			if host.Rootless && len(l.UIDMappings) != 2 {
				t.Errorf("rootless uid map %+v: want 0 and 1.. as two extents", l.UIDMappings)
			}

			if s.Root.Readonly != svc.Security.ReadOnlyRootfs {
				t.Errorf("root readonly %v, manifest read_only_rootfs %v", s.Root.Readonly, svc.Security.ReadOnlyRootfs)
			}
			if s.Root.Path != host.StateDir+"/rootfs" {
				t.Errorf("root %s: want the read-only view under the state dir", s.Root.Path)
			}
			if p.NoNewPrivileges != svc.Security.NoNewPrivileges || !p.NoNewPrivileges {
				t.Error("no_new_privs is off")
			}
			for _, m := range []string{"/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/sys/firmware"} {
				if !slices.Contains(l.MaskedPaths, m) {
					t.Errorf("%s not masked", m)
				}
			}
			for _, r := range []string{"/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs"} {
				if !slices.Contains(l.ReadonlyPaths, r) {
					t.Errorf("%s not read-only", r)
				}
			}
			core := slices.IndexFunc(p.Rlimits, func(r specs.POSIXRlimit) bool { return r.Type == "RLIMIT_CORE" })
			if core < 0 || p.Rlimits[core].Hard != 0 || p.Rlimits[core].Soft != 0 {
				t.Errorf("RLIMIT_CORE not 0: %+v", p.Rlimits)
			}

			// Capabilities: exactly the declared set; inheritable and
			// ambient only for a non-root user, and then the same set.
			var declared []string
			for _, c := range svc.Security.Capabilities {
				declared = append(declared, string(c))
			}
			slices.Sort(declared)
			c := p.Capabilities
			for set, got := range map[string][]string{"bounding": c.Bounding, "effective": c.Effective, "permitted": c.Permitted} {
				if !slices.Equal(got, declared) {
					t.Errorf("%s capabilities %v, declared %v", set, got, declared)
				}
			}
			if p.User.UID == 0 {
				if len(c.Inheritable) != 0 || len(c.Ambient) != 0 {
					t.Errorf("root: inheritable %v, ambient %v: want none (CVE-2022-29162)", c.Inheritable, c.Ambient)
				}
			} else if !slices.Equal(c.Inheritable, declared) || !slices.Equal(c.Ambient, declared) {
				t.Errorf("user %d: inheritable %v, ambient %v, want the declared %v", p.User.UID, c.Inheritable, c.Ambient, declared)
			}

			if l.Resources == nil || l.Resources.Memory == nil || l.Resources.CPU == nil || l.Resources.Pids == nil {
				t.Fatalf("limits missing: %+v", l.Resources)
			}
			if lim, swap := *l.Resources.Memory.Limit, *l.Resources.Memory.Swap; lim != int64(svc.Resources.Memory) || swap != lim {
				t.Errorf("memory %d, swap %d: want %d and no swap on top", lim, swap, svc.Resources.Memory)
			}
			if quota, period := plan.CPUQuota(svc.Resources.CPUs); *l.Resources.CPU.Quota != quota || *l.Resources.CPU.Period != period {
				t.Errorf("cpu quota %d/%d, want %d/%d", *l.Resources.CPU.Quota, *l.Resources.CPU.Period, quota, period)
			}
			if *l.Resources.Pids.Limit != svc.Resources.Pids {
				t.Errorf("pids %d, want %d", *l.Resources.Pids.Limit, svc.Resources.Pids)
			}
			if oom := l.Resources.Unified["memory.oom.group"]; (oom == "1") != host.CgroupV2 {
				t.Errorf("memory.oom.group %q on cgroup v2 = %v", oom, host.CgroupV2)
			}
			if d := l.Resources.Devices; len(d) == 0 || d[0].Allow || d[0].Access != "rwm" {
				t.Errorf("devices %+v: the first rule must deny all", d)
			}
			if l.CgroupsPath != host.CgroupPath {
				t.Errorf("cgroupsPath %q, want %q", l.CgroupsPath, host.CgroupPath)
			}

			if want := svc.Name; svc.Namespaces.UTS != "host" && s.Hostname != want {
				t.Errorf("hostname %q, want %q", s.Hostname, want)
			}
			if s.Annotations[plan.AnnotationManifestDigest] != svc.Digest || !strings.HasPrefix(svc.Digest, "sha256:") {
				t.Errorf("manifest digest annotation %q", s.Annotations[plan.AnnotationManifestDigest])
			}
			for k, v := range svc.Labels {
				if s.Annotations[k] != v {
					t.Errorf("label %s not an annotation", k)
				}
			}

			for _, m := range s.Mounts {
				if m.Type != "bind" {
					continue
				}
				if slices.Contains(m.Options, "rbind") && m.Source != "/proc" && m.Source != "/sys" {
					t.Errorf("%s: rbind carries the host's submounts in", m.Destination)
				}
				if !slices.Contains(m.Options, "nosuid") || !slices.Contains(m.Options, "nodev") {
					t.Errorf("%s: bind without nosuid,nodev: %v", m.Destination, m.Options)
				}
			}
			for _, m := range s.Mounts {
				if m.Destination == "/sys" && !slices.Contains(m.Options, "ro") {
					t.Error("/sys is writable")
				}
				if m.Destination == "/sys/fs/cgroup" && !slices.Contains(m.Options, "ro") {
					t.Error("/sys/fs/cgroup is writable (CVE-2022-0492)")
				}
				// Writable by the container's root; with Landlock off
				// nothing else kept a program copied there from running.
				if (m.Destination == "/dev" || m.Destination == "/dev/shm") && (!slices.Contains(m.Options, "noexec") || !slices.Contains(m.Options, "nosuid")) {
					t.Errorf("%s: %v, want noexec and nosuid", m.Destination, m.Options)
				}
			}
			if svc.Process.Init != (p.Args[0] == plan.InitPath) {
				t.Errorf("init %v, args %v", svc.Process.Init, p.Args)
			}
			if p.Terminal != svc.Process.TTY {
				t.Errorf("terminal %v, tty %v", p.Terminal, svc.Process.TTY)
			}
		})
	}
}

// TestSpecMounts checks each kind of mount as the container gets it.
func TestSpecMounts(t *testing.T) {
	svc := load(t, "full")
	s := buildSpec(t, svc, hostFor(svc.Name))
	find := func(dst string) specs.Mount {
		t.Helper()
		for _, m := range s.Mounts {
			if m.Destination == dst {
				return m
			}
		}
		t.Fatalf("no mount at %s", dst)
		return specs.Mount{}
	}
	for _, tc := range []struct {
		dst, typ, src string
		opts          []string
	}{
		{"/tmp", "tmpfs", "tmpfs", []string{"nosuid", "nodev", "exec", "uid=1000", "mode=700", "size=16777216"}},
		{"/var/lib/app", "bind", "/var/lib/safe-run/volumes/data", []string{"bind", "rw", "nosuid", "nodev"}},
		{"/etc/app", "bind", "/srv/full/config", []string{"bind", "ro", "nosuid", "nodev"}},
		{"/run/secrets", "bind", "/run/safe-run/web/secrets", []string{"bind", "ro", "nosuid", "nodev", "noexec"}},
		{plan.InitPath, "bind", "/usr/lib/safe-run/safe-run-init", []string{"bind", "ro", "nosuid", "nodev"}},
	} {
		m := find(tc.dst)
		if m.Type != tc.typ || m.Source != tc.src || !slices.Equal(m.Options, tc.opts) {
			t.Errorf("%s: %s %s %v\nwant %s %s %v", tc.dst, m.Type, m.Source, m.Options, tc.typ, tc.src, tc.opts)
		}
	}
	if got := plan.SecretFiles(s); len(got) != 1 || got["db_password"] != "/etc/safe-run/secrets/db" {
		t.Errorf("SecretFiles %v", got)
	}
	// A tmpfs without exec is noexec.
	min := buildSpec(t, load(t, "volumes"), hostFor("store"))
	for _, m := range min.Mounts {
		if m.Destination == "/snapshots" && !slices.Contains(m.Options, "ro") {
			t.Errorf("read-only volume: %v", m.Options)
		}
		if m.Destination == "/import" && !slices.Contains(m.Options, "rw") {
			t.Errorf("read_only = false bind: %v", m.Options)
		}
	}
}

func TestSpecUser(t *testing.T) {
	for _, tc := range []struct {
		user string
		want specs.User
		home string
	}{
		{"", specs.User{UID: 0, GID: 0}, "/root"},
		{"0", specs.User{UID: 0, GID: 0}, "/root"},
		{"root", specs.User{UID: 0, GID: 0}, "/root"},
		{"1000:1000", specs.User{UID: 1000, GID: 1000}, "/home/app"},
		{"app", specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{4}}, "/home/app"},
		{"web", specs.User{UID: 1001, GID: 1001, AdditionalGids: []uint32{4, 110}}, "/srv/web"},
		{"web:log", specs.User{UID: 1001, GID: 4}, "/srv/web"},
		{"2000:2000", specs.User{UID: 2000, GID: 2000}, "/"},
	} {
		t.Run(tc.user, func(t *testing.T) {
			text := "version = 1\nname = \"u\"\n[image]\nrootfs = \"r\"\n[process]\ncommand = [\"/x\"]\n"
			if tc.user != "" {
				text += "user = \"" + tc.user + "\"\n"
			}
			svc, err := manifest.Parse("u.toml", "/srv/u", []byte(text+"[resources]\nmemory = \"64M\"\ncpus = 1\n"))
			if err != nil {
				t.Fatal(err)
			}
			s := buildSpec(t, svc, hostFor("u"))
			if u := s.Process.User; u.UID != tc.want.UID || u.GID != tc.want.GID || !slices.Equal(u.AdditionalGids, tc.want.AdditionalGids) {
				t.Errorf("user %+v, want %+v", u, tc.want)
			}
			if !slices.Contains(s.Process.Env, "HOME="+tc.home) {
				t.Errorf("env %v, want HOME=%s", s.Process.Env, tc.home)
			}
		})
	}
}

// TestSpecErrors: what only the spec stage can find, with the manifest's
// line.
func TestSpecErrors(t *testing.T) {
	base := "version = 1\nname = \"e\"\n[image]\nrootfs = \"r\"\n[process]\ncommand = [\"/x\"]\n"
	limits := "[resources]\nmemory = \"64M\"\ncpus = 1\n"
	rootless1 := hostFor("e")
	rootless1.Rootless, rootless1.IDs = true, plan.IDMap{Size: 1}
	for _, tc := range []struct {
		name, text string
		host       plan.Placement
		want       string
	}{
		{"unknown user", base + "user = \"nobody2\"\n" + limits, hostFor("e"),
			`e.toml:7: process.user: "nobody2": unable to find user nobody2: no matching entries in passwd file (use numeric ids such as "1000:1000", or add the user to the image's /etc/passwd)`},
		{"unknown group", base + "user = \"app:staff\"\n" + limits, hostFor("e"),
			`e.toml:7: process.user: "app:staff": unable to find group staff: no matching entries in group file (use a numeric gid such as "1000:1000", or add the group to the image's /etc/group)`},
		{"root and an unknown group", base + "user = \"root:nosuchgroup\"\n" + limits, hostFor("e"),
			`e.toml:7: process.user: "root:nosuchgroup": unable to find group nosuchgroup: no matching entries in group file (use a numeric gid such as "1000:1000", or add the group to the image's /etc/group)`},
		{"user by name outside the namespace", base + "user = \"big\"\n" + limits, hostFor("e"),
			`e.toml:7: process.user: "big" resolves to uid 70000, outside the container's ids 0-65535`},
		{"rootless with one id", base + "user = \"1000\"\n" + limits, rootless1,
			`e.toml:7: process.user: 1000:1000 cannot run: only the container's root is mapped, since you have no range in /etc/subuid and /etc/subgid (add one as root: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 $USER; or run as user = "0:0")`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc, err := manifest.Parse("e.toml", "/srv/e", []byte(tc.text))
			if err != nil {
				t.Fatal(err)
			}
			_, err = plan.Spec(plan.Inputs{Service: svc, Image: &image.Image{Rootfs: testRootfs(t)}}, tc.host)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("got  %v\nwant %s", err, tc.want)
			}
			if len(manifest.FieldErrors(err)) != 1 {
				t.Errorf("not a FieldError: %#v", err)
			}
		})
	}
}

// TestSpecImageEnv: an entry of the image's Env the runtime would refuse
// (libcontainer's init said only "invalid environment variable", after
// the start report) is refused with the spec, naming the image and the
// entries.
func TestSpecImageEnv(t *testing.T) {
	svc, err := manifest.Parse("i.toml", "/srv/i", []byte("version = 1\nname = \"i\"\n[image]\noci = \"img:v1\"\n[process]\ncommand = [\"/x\"]\n[resources]\nmemory = \"64M\"\ncpus = 1\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		env  []string
		want string
	}{
		{"good", []string{"A=1", "B=", "C=x=y", "PATH=/bin"}, ""},
		{"no name", []string{"A=1", "=x"}, `i.toml:3: image: /srv/i/img:v1: its config's Env holds "=x", not NAME=VALUE (fix the image's ENV, or rebuild it)`},
		{"no =", []string{"NOEQUALS"}, `i.toml:3: image: /srv/i/img:v1: its config's Env holds "NOEQUALS", not NAME=VALUE (fix the image's ENV, or rebuild it)`},
		{"a NUL", []string{"A\x00B=1", "C=x\x00"}, `i.toml:3: image: /srv/i/img:v1: its config's Env holds "A\x00B=1", "C=x\x00", not NAME=VALUE (fix the image's ENV, or rebuild it)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := &image.Image{Rootfs: testRootfs(t), Config: image.Config{Env: tc.env}}
			_, err := plan.Spec(plan.Inputs{Service: svc, Image: img}, hostFor("i"))
			if got := fmt.Sprint(err); (tc.want == "" && err != nil) || (tc.want != "" && got != tc.want) {
				t.Errorf("got  %v\nwant %s", err, tc.want)
			}
		})
	}
}

// TestSpecImageConfig: the image's entrypoint, environment and labels
// apply where the manifest says nothing, and the manifest wins where it
// does.
func TestSpecImageConfig(t *testing.T) {
	svc, err := manifest.Parse("i.toml", "/srv/i", []byte(`version = 1
name = "i"
[image]
rootfs = "r"
[process]
command = ["/bin/server"]
env = { MODE = "manifest" }
[resources]
memory = "64M"
cpus = 1
[labels]
owner = "manifest"
`))
	if err != nil {
		t.Fatal(err)
	}
	img := &image.Image{Rootfs: testRootfs(t), Digest: "sha256:abc", Config: image.Config{
		Env: []string{"PATH=/image/bin", "MODE=image", "IMAGE=1"}, WorkingDir: "/work",
		Labels: map[string]string{"owner": "image", "vendor": "image"},
	}}
	s, err := plan.Spec(plan.Inputs{Service: svc, Image: img}, hostFor("i"))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"HOSTNAME=i", "HOME=/root", "PATH=/image/bin", "IMAGE=1", "MODE=manifest"}; !slices.Equal(s.Process.Env, want) {
		t.Errorf("env %v\nwant %v", s.Process.Env, want)
	}
	if s.Process.Cwd != "/work" {
		t.Errorf("cwd %q, want the image's /work", s.Process.Cwd)
	}
	if s.Annotations["owner"] != "manifest" || s.Annotations["vendor"] != "image" || s.Annotations[plan.AnnotationImageDigest] != "sha256:abc" {
		t.Errorf("annotations %v", s.Annotations)
	}
}

// TestCPUQuota: the short period wherever the kernel's least quota (1 ms)
// allows it, the longer one below 0.2 CPUs, never past docker's 100 ms.
func TestCPUShares(t *testing.T) {
	for _, tc := range []struct {
		cpus           float64
		shares, weight uint64
	}{
		{0.001, 2, 1}, // the kernel's least
		{0.01, 10, 1}, // manifest.MinCPUs
		{0.5, 512, 50},
		{1, 1024, 100},
		{1.5, 1536, 150},
		{100, 102400, 10000},
		{256, 262144, 10000},
		{1024, 262144, 10000}, // manifest.MaxCPUs: the kernel's most
	} {
		if got := plan.CPUShares(tc.cpus); got != tc.shares {
			t.Errorf("cpus %g: shares %d, want %d", tc.cpus, got, tc.shares)
		}
		if got := plan.CPUWeight(tc.cpus); got != tc.weight {
			t.Errorf("cpus %g: weight %d, want %d", tc.cpus, got, tc.weight)
		}
	}
}

func TestCPUQuota(t *testing.T) {
	for _, tc := range []struct {
		cpus   float64
		quota  int64
		period uint64
	}{
		{0.01, 1000, 100000}, // manifest.MinCPUs
		{0.1, 1000, 10000},
		{0.15, 1000, 6667},
		{0.2, 1000, 5000},
		{0.5, 2500, 5000},
		{1.5, 7500, 5000},
		{1024, 5120000, 5000}, // manifest.MaxCPUs
	} {
		quota, period := plan.CPUQuota(tc.cpus)
		if quota != tc.quota || period != tc.period {
			t.Errorf("cpus %g: quota %d period %d, want %d %d", tc.cpus, quota, period, tc.quota, tc.period)
		}
		if quota < 1000 {
			t.Errorf("cpus %g: quota %d below the kernel's least, 1000", tc.cpus, quota)
		}
	}
}

// TestLookupUserRange: exec -u takes its user straight to LookupUser;
// an id outside the container's is named alone (a gid never given was
// shown as ":0").
func TestLookupUserRange(t *testing.T) {
	for spec, want := range map[string]string{
		"65536":   `"65536" resolves to uid 65536, outside the container's ids 0-65535`,
		"0:65536": `"0:65536" resolves to gid 65536, outside the container's ids 0-65535`,
		"big":     `"big" resolves to uid 70000, outside the container's ids 0-65535`,
	} {
		if _, _, err := plan.LookupUser(testRootfs(t), spec); fmt.Sprint(err) != want {
			t.Errorf("%s: %v, want %s", spec, err, want)
		}
	}
}
