package launcher_test

// Guest tests: what this host's kernel cannot show (AppArmor, a pure cgroup
// v2 hierarchy), shown in a Debian 6.1 kernel booted under QEMU (package
// internal/guest). One boot runs every check: a script starts safe-run on
// many manifests, prints each step's output between markers, and the test
// reads the steps back and judges them here, with the guest's output in
// every failure.

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/safe-run/safe-run/internal/guest"
	"github.com/safe-run/safe-run/internal/testenv"
	"github.com/safe-run/safe-run/ops"
)

// guestManifests are the services the guest runs, by name. Each gets the
// example rootfs (plus /bin/attempt) and, unless it says otherwise, these
// resources.
var guestManifests = map[string]string{
	// The example service's confinement probe, as on the host.
	"probe": `[process]
command = ["/bin/confinement", "-json"]
user = "1000:1000"

[resources]
memory = "64M"
memory_reservation = "32M"
cpus = 0.5
pids = 64

[[mounts]]
type = "tmpfs"
target = "/tmp"
size = "16M"
`,
	// Read from the guest's side while it runs.
	"limits": `[process]
command = ["/bin/sh", "-c", "echo up; exec sleep 60"]

[resources]
memory = "48M"
memory_reservation = "24M"
cpus = 0.25
pids = 32
`,
	// Writes, sockets and mounts the profile forbids, with SYS_ADMIN
	// present and seccomp and Landlock off so that only AppArmor stands
	// in the way (the default seccomp profile refuses pivot_root on its
	// own; a landlocked process may not mount at all, and Landlock, first
	// in the kernel's LSM order, would deny the exec and mknod itself).
	"deny": `[process]
command = ["/bin/sh", "-c", """
attempt write:/tmp/ok write:/data/ok write:/dev/shm/ok read:/run/secrets/db write:/dev/evil raw packet mount:/tmp umount:/tmp
cp /bin/busybox /data/bb && chmod 755 /data/bb && attempt exec:/data/bb
mkdir /tmp/old && attempt pivot_root:/tmp
cat /proc/self/attr/current; echo
"""]
user = "0:0"

[security]
capabilities = ["SYS_ADMIN"]
seccomp = "unconfined"
landlock = "off"

[[mounts]]
type = "tmpfs"
target = "/tmp"

[[mounts]]
type = "volume"
source = "deny-data"
target = "/data"

[secrets]
db = { file = "db.txt" }

[insecure]
reason = "shows that AppArmor denies mount even with SYS_ADMIN and no seccomp filter"
allow = ["dangerous_capabilities", "seccomp_unconfined", "landlock_off"]
`,
	// Landlock at the guest kernel's ABI 2, with AppArmor out of the way:
	// the volume is writable and mounted exec, yet what is written there
	// does not run; /dev is a writable tmpfs, yet nothing is made there.
	// The same, where the kernel must have Landlock.
	"landlock-required": `[process]
command = ["/bin/true"]

[security]
apparmor = "unconfined"
landlock_required = true

[insecure]
reason = "shows Landlock alone"
allow = ["apparmor_unconfined"]
`,
	// /var/up is a writable bind holding a socket a guest process hands
	// out a descriptor of a guest directory on: read beneath it by
	// /proc/self/fd/N, the file's real ancestors are not the container's.
	"landlock": guestLandlock("landlock", "", ""),
	// The control: the same with Landlock off, all of it succeeds.
	"landlock-off": guestLandlock("landlock-off", "landlock = \"off\"\n", `, "landlock_off"`),
	// The same with init = false: safe-run-init applies the ruleset and
	// execs the shell, which is PID 1.
	"landlock-noinit": `[process]
command = ["/bin/sh", "-c", """
echo "pid $$"
cp /bin/busybox /data/true && chmod 755 /data/true && attempt exec:/data/true
"""]
user = "0:0"
init = false

[security]
apparmor = "unconfined"

[[mounts]]
type = "volume"
source = "landlock-noinit-data"
target = "/data"

[insecure]
reason = "shows Landlock alone"
allow = ["apparmor_unconfined"]
`,
	// What a shell script does: the profile must allow all of it.
	"busybox": `[process]
command = ["/bin/sh", "-c", """
set -e
ls -la / /etc /dev /proc/self >/dev/null
ps >/dev/null; id; hostname; date >/dev/null; uname -a >/dev/null
cat /etc/passwd /proc/self/status /sys/fs/cgroup/memory.max >/dev/null
echo x >/dev/null; echo out >/dev/stdout; echo err >/dev/stderr; head -c 16 /dev/urandom | od >/dev/null
mkdir -p /tmp/a/b; echo hi >/tmp/a/b/f; mv /tmp/a/b/f /tmp/a/g; ln /tmp/a/g /tmp/a/h; ln -s g /tmp/a/s; rm -r /tmp/a
echo shm >/dev/shm/x; cat /dev/shm/x; rm /dev/shm/x
sh -c 'sleep 0.1 & wait; kill -0 $$'
echo done
"""]
user = "1000:1000"

[[mounts]]
type = "tmpfs"
target = "/tmp"
`,
	// NET_RAW declared: the profile allows raw and packet sockets.
	"rawok": `[process]
command = ["/bin/attempt", "raw", "packet"]
user = "0:0"

[security]
capabilities = ["NET_RAW"]
`,
	// Complain mode: what the rules do not allow is logged and permitted;
	// the deny rules still hold.
	"complain": `[process]
command = ["/bin/sh", "-c", "attempt write:/dev/evil mount:/tmp; cat /proc/self/attr/current; echo"]
user = "0:0"

[security]
capabilities = ["SYS_ADMIN"]
apparmor_mode = "complain"
landlock = "off"

[[mounts]]
type = "tmpfs"
target = "/tmp"

[insecure]
reason = "shows that AppArmor denies mount even in complain mode"
allow = ["dangerous_capabilities", "landlock_off"]
`,
	// A profile loaded by someone else, by name.
	"named": `[process]
command = ["/bin/sh", "-c", "cat /proc/self/attr/current; echo"]

[security]
apparmor = "guest-named"
`,
	"missing": `[process]
command = ["/bin/true"]

[security]
apparmor = "guest-missing"
`,
	"unconfined": `[process]
command = ["/bin/sh", "-c", "cat /proc/self/attr/current; echo"]

[security]
apparmor = "unconfined"

[insecure]
reason = "shows the acknowledged escape hatch"
allow = ["apparmor_unconfined"]
`,
	// Started in a cgroup of its own, as systemd's Delegate=yes does.
	"delegated": `[process]
command = ["/bin/sh", "-c", "cat /proc/self/cgroup /sys/fs/cgroup/memory.max"]

[resources]
memory = "40M"
cpus = 1.0
`,
	// A memory hog: killed by the OOM killer at its limit.
	"hog": `[process]
command = ["/bin/sh", "-c", "x=$(head -c 200000000 /dev/zero | tr '\\0' x); echo survived"]

[resources]
memory = "32M"
cpus = 1.0
`,
	// Forks refused at the pids limit while the service goes on: on
	// cgroup v2 the supervisor hears of it from pids.events (inotify),
	// well before its next poll of the cgroup. (A child OOM-killed is
	// no such case on v2: memory.oom.group takes the whole service.)
	"forks": `[process]
command = ["/bin/sh", "-c", "sleep 1; sh -c 'for i in 1 2 3 4 5 6 7 8 9 10; do sleep 3 & done' 2>/dev/null; echo survived; sleep 2"]

[resources]
memory = "32M"
cpus = 1.0
pids = 6
`,
	// A busy loop under a fifth of a CPU: throttled.
	"busy": `[process]
command = ["/bin/sh", "-c", "while :; do :; done & sleep 2; kill $!; cat /sys/fs/cgroup/cpu.stat"]

[resources]
memory = "32M"
cpus = 0.2
`,
}

// guestLandlock is the "landlock" manifest, with more [security] and
// [insecure] allow items.
func guestLandlock(name, security, allow string) string {
	return `[process]
command = ["/bin/sh", "-c", """
attempt write:/data/ok write:/dev/x write:/var/up/` + name + `
cp /bin/busybox /data/true && chmod 755 /data/true && attempt exec:/data/true
confinement -read-passed /var/up/sock:secret
"""]
user = "0:0"

[security]
apparmor = "unconfined"
` + security + `
[[mounts]]
type = "volume"
source = "` + name + `-data"
target = "/data"

[[mounts]]
type = "bind"
source = "/srv/up"
target = "/var/up"
read_only = false

[insecure]
reason = "shows Landlock alone"
allow = ["apparmor_unconfined"` + allow + `]
`
}

// guestServeDir starts what the "landlock" manifest's bind needs: a guest
// process handing out a descriptor of a directory with a file, on a socket
// in the bind's source.
const guestServeDir = `
		mkdir -m 0777 /srv/up
		mkdir -m 0755 /srv/secret
		echo "the guest's secret" >/srv/secret/secret
		/srv/rootfs/bin/confinement -serve-dir /srv/up/sock:/srv/secret &
		while [ ! -S /srv/up/sock ]; do sleep 0.1; done`

// guestSteps are the script's steps, in order: a name and busybox sh.
// Each step's stdout and stderr are printed between markers, then its
// exit status.
var guestSteps = []struct{ name, sh string }{
	{"spec", `safe-run spec /srv/m/probe.toml 2>/dev/null`},
	{"probe", `
		t0=$(cut -d' ' -f1 /proc/uptime)
		safe-run /srv/m/probe.toml
		code=$?
		t1=$(cut -d' ' -f1 /proc/uptime)
		echo "start took: $t0 $t1"
		exit $code`},
	{"probe cache", `
		echo "cache: $(stat -c '%Y %s %n' /var/lib/safe-run/apparmor/safe-run-probe/*)"
		echo "parser runs: $(grep -c . /tmp/parser.log)"`},
	{"probe again", `
		t0=$(cut -d' ' -f1 /proc/uptime)
		safe-run /srv/m/probe.toml >/dev/null
		t1=$(cut -d' ' -f1 /proc/uptime)
		echo "cache: $(stat -c '%Y %s %n' /var/lib/safe-run/apparmor/safe-run-probe/*)"
		echo "parser runs: $(grep -c . /tmp/parser.log)"
		echo "start took: $t0 $t1"`},
	{"compile and load by hand", `
		safe-run apparmor show /srv/m/probe.toml >/tmp/probe.aa
		t0=$(cut -d' ' -f1 /proc/uptime)
		/sbin/apparmor_parser --skip-cache --stdout --quiet </tmp/probe.aa >/tmp/probe.bin
		t1=$(cut -d' ' -f1 /proc/uptime)
		cat /tmp/probe.bin >/sys/kernel/security/apparmor/.replace
		t2=$(cut -d' ' -f1 /proc/uptime)
		echo "compile took: $t0 $t1"
		echo "load took: $t1 $t2"`},
	{"damaged cache", `
		for f in /var/lib/safe-run/apparmor/safe-run-probe/*; do echo garbage >"$f"; done
		safe-run /srv/m/probe.toml >/dev/null
		echo "exit: $?"
		echo "parser runs: $(grep -c . /tmp/parser.log)"`},
	{"limits", `
		safe-run /srv/m/limits.toml >/tmp/limits.out 2>&1 &
		pid=$!
		i=0
		while ! grep -q '^up$' /tmp/limits.out && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
		cg=$(find /sys/fs/cgroup -maxdepth 3 -type d -name safe-run-limits | head -n 1)
		echo "cgroup=$cg"
		for f in memory.max memory.low memory.swap.max memory.oom.group cpu.max cpu.weight pids.max; do echo "$f=$(cat "$cg/$f")"; done
		for p in $(cat "$cg/cgroup.procs"); do echo "label=$(cat /proc/$p/attr/current)"; done
		l=$(safe-run exec limits -- cat /proc/self/attr/current)
		echo "exec code=$?"
		echo "exec label=$l"
		echo "stats=$(safe-run stats limits --no-stream --format json --interval 200ms 2>&1 | tr -d ' \n')"
		kill -TERM $pid
		wait $pid
		echo "safe-run exit=$?"
		cat /tmp/limits.out`},
	{"busybox", `safe-run /srv/m/busybox.toml`},
	{"deny", `safe-run /srv/m/deny.toml; safe-run events deny`},
	{"landlock", guestServeDir + `
		safe-run /srv/m/landlock.toml
		echo "--- off"
		safe-run /srv/m/landlock-off.toml
		kill $!`},
	{"landlock-noinit", `safe-run /srv/m/landlock-noinit.toml`},
	{"rawok", `safe-run /srv/m/rawok.toml`},
	{"complain", `safe-run /srv/m/complain.toml`},
	{"named", `
		printf 'abi <abi/3.0>,\nprofile guest-named flags=(attach_disconnected,mediate_deleted,complain) {\n}\n' >/tmp/named.aa
		/sbin/apparmor_parser --replace --skip-cache --quiet /tmp/named.aa
		safe-run /srv/m/named.toml`},
	{"missing", `safe-run /srv/m/missing.toml`},
	{"unconfined", `safe-run /srv/m/unconfined.toml`},
	{"delegated", `
		mkdir /sys/fs/cgroup/svc
		sh -c 'echo $$ >/sys/fs/cgroup/svc/cgroup.procs && exec safe-run /srv/m/delegated.toml'
		echo "exit: $?"
		echo "subtree_control: $(cat /sys/fs/cgroup/svc/cgroup.subtree_control)"
		echo "left: $(cd /sys/fs/cgroup/svc && ls -d */)"`},
	{"hog", `safe-run /srv/m/hog.toml`},
	{"busy", `safe-run /srv/m/busy.toml`},
	{"forks", `safe-run /srv/m/forks.toml`},
	{"install", `
		safe-run apparmor install /srv/m/probe.toml
		cmp /etc/apparmor.d/safe-run-probe /tmp/probe.aa && echo "installed file is the generated profile"
		grep -x 'safe-run-probe (enforce)' /sys/kernel/security/apparmor/profiles`},
	{"rootless", `
		# A user with subordinate ids, and a cgroup delegated to it as
		# systemd's Delegate=yes makes one.
		echo 'dev:x:1000:1000:dev:/tmp/dev:/bin/sh' >>/etc/passwd
		echo 'dev:x:1000:' >>/etc/group
		echo 'dev:100000:65536' >>/etc/subuid
		echo 'dev:100000:65536' >>/etc/subgid
		mkdir -m 0700 /tmp/dev && chown dev:dev /tmp/dev
		mkdir /sys/fs/cgroup/dev
		chown dev:dev /sys/fs/cgroup/dev /sys/fs/cgroup/dev/cgroup.procs /sys/fs/cgroup/dev/cgroup.subtree_control /sys/fs/cgroup/dev/cgroup.threads
		echo "+cpu +memory +pids" >/sys/fs/cgroup/dev/cgroup.subtree_control
		chmod 755 /srv/rootfs
		# Each start alone in a fresh cgroup of the user's, as a systemd
		# scope would hold it.
		n=0
		as_dev() {
			n=$((n+1)); scope=/sys/fs/cgroup/dev/scope$n
			mkdir $scope && chown dev:dev $scope $scope/cgroup.procs $scope/cgroup.subtree_control $scope/cgroup.threads
			sh -c "echo \$\$ >$scope/cgroup.procs && exec su -s /bin/sh dev -c 'XDG_RUNTIME_DIR=/tmp/dev HOME=/tmp/dev exec safe-run $1'"
		}
		as_dev /srv/m/busybox.toml
		echo "not installed: exit $?"
		as_dev /srv/m/probe.toml
		echo "installed: exit $?"
		echo "cgroups left: $(find /sys/fs/cgroup/dev -name 'safe-run-*' | tr '\n' ' ')"
		as_dev doctor
		echo "rootless doctor: exit $?"`},
	{"doctor", `safe-run doctor; echo "doctor: exit $?"`},
	{"dmesg", `dmesg | grep 'apparmor="' | grep -v 'apparmor="STATUS"'`},
}

// guestPrelude sets the guest up as `make setup-user` sets up a host, and
// puts a wrapper in front of apparmor_parser that counts its runs.
const guestPrelude = `
# Kernel messages stay in the log (dmesg), off the console the test reads;
# and none is dropped by printk's rate limit.
dmesg -n 1
echo 0 >/proc/sys/kernel/printk_ratelimit
echo 'safe-run:x:999:999:safe-run:/nonexistent:/bin/false' >>/etc/passwd
echo 'safe-run:x:999:' >>/etc/group
echo 'safe-run:1073741824:67108864' >/etc/subuid
echo 'safe-run:1073741824:67108864' >/etc/subgid
mkdir -p /usr/local/sbin
printf '#!/bin/sh\necho "$*" >>/tmp/parser.log\nexec /sbin/apparmor_parser "$@"\n' >/usr/local/sbin/apparmor_parser
chmod 755 /usr/local/sbin/apparmor_parser
: >/tmp/parser.log
export PATH=/usr/local/sbin:$PATH
`

// guestStep is what one step printed, and its exit status.
type guestStep struct {
	out  string
	code int
}

func (s guestStep) lines() []string { return strings.Split(strings.TrimSpace(s.out), "\n") }

// value finds "key=value", "key: value" or "key value" (cpu.stat) in the
// step's output.
func (s guestStep) value(key string) string {
	for _, l := range s.lines() {
		for _, sep := range []string{"=", ": ", " "} {
			if v, ok := strings.CutPrefix(l, key+sep); ok {
				return strings.TrimSpace(v)
			}
		}
	}
	return ""
}

func TestInGuest(t *testing.T) {
	steps, console := runGuest(t, guestSteps, nil)
	for _, c := range guestChecks {
		t.Run(c.name, func(t *testing.T) {
			if err := c.check(steps); err != nil {
				t.Error(err)
			}
		})
	}
	if t.Failed() {
		t.Logf("guest console:\n%s", console)
	}
	logGuestNumbers(t, steps)
}

// runGuest boots the guest, with cmdline added to its kernel's, runs the
// steps in it and returns what each printed, and the whole console.
func runGuest(t *testing.T, steps []struct{ name, sh string }, cmdline []string) (map[string]guestStep, string) {
	t.Helper()
	testenv.Long(t)
	if err := guest.Check(); err != nil {
		testenv.Skip(t, "the guest cannot run here: %v", err)
	}
	dir := buildGuestFiles(t)

	var script strings.Builder
	script.WriteString(guestPrelude)
	for _, s := range steps {
		fmt.Fprintf(&script, "echo '<<< %s'\n(\n%s\n) 2>&1\necho \">>> %s $?\"\n", s.name, s.sh, s.name)
	}
	var console strings.Builder
	start := time.Now()
	status, err := guest.Run(t.Context(), guest.Options{
		Files: map[string]string{
			"/usr/bin/safe-run":         filepath.Join(dir, "bin", "safe-run"),
			"/usr/bin/safe-run-tools":   filepath.Join(dir, "safe-run-tools"),
			"/usr/bin/safe-run-init":    filepath.Join(dir, "bin", "safe-run-init"),
			"/usr/bin/safe-run-janitor": filepath.Join(dir, "bin", "safe-run-janitor"),
			"/srv/rootfs":               filepath.Join(dir, "rootfs"),
			"/srv/m":                    filepath.Join(dir, "m"),
		},
		// newuidmap and newgidmap, setuid, for the rootless run.
		Programs: map[string]string{"/usr/bin/newuidmap": "/usr/bin/newuidmap", "/usr/bin/newgidmap": "/usr/bin/newgidmap"},
		Script:   script.String(),
		// About 45 s alone here, 2 min beside six busy loops; a CI
		// run's other packages once held it past 4.
		Timeout: 8 * time.Minute,
		Stdout:  &console,
		Logger:  slog.New(slog.NewTextHandler(t.Output(), nil)),
		Cmdline: cmdline,
	})
	if errors.Is(err, guest.ErrUnavailable) {
		testenv.Skip(t, "the guest cannot run here: %v", err)
	}
	if err != nil {
		t.Fatalf("%v\nconsole:\n%s", err, console.String())
	}
	t.Logf("guest run took %s (status %d)", time.Since(start).Round(time.Millisecond), status)
	got := parseSteps(console.String())
	for _, s := range steps {
		if _, ok := got[s.name]; !ok {
			t.Fatalf("step %q did not finish in the guest; console:\n%s", s.name, console.String())
		}
	}
	return got, console.String()
}

// TestInGuestWithoutLandlock boots the guest's kernel with Landlock left
// out of its LSMs: a service runs, and the start report says Landlock is
// not enforced; a manifest that requires Landlock is refused.
func TestInGuestWithoutLandlock(t *testing.T) {
	steps, console := runGuest(t, []struct{ name, sh string }{
		{"lsm", "cat /sys/kernel/security/lsm; echo"},
		{"landlock", guestServeDir + "\n\t\tsafe-run /srv/m/landlock.toml; kill $!"},
		{"required", "safe-run /srv/m/landlock-required.toml"},
	}, []string{"lsm=lockdown,capability,yama,apparmor"})
	for _, c := range []struct {
		name  string
		check func() error
	}{
		{"the kernel runs without Landlock", func() error {
			if s := steps["lsm"]; strings.Contains(s.out, "landlock") || !strings.Contains(s.out, "apparmor") {
				return s.wrap(errors.New("want the LSMs without landlock"))
			}
			return nil
		}},
		{"the service runs, and the report says Landlock is not enforced", func() error {
			return steps["landlock"].has("write:/data/ok: ok", "write:/dev/x: ok", "exec:/data/true: ok", `read "the guest's secret\n"`,
				"Landlock not enforced: Landlock not in this kernel")
		}},
		{"landlock_required refuses the start", func() error {
			s := steps["required"]
			if s.code != 125 {
				return s.wrap(fmt.Errorf("exit %d, want 125", s.code))
			}
			return s.contains("security.landlock_required: this kernel has no Landlock")
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := c.check(); err != nil {
				t.Error(err)
			}
		})
	}
	if t.Failed() {
		t.Logf("guest console:\n%s", console)
	}
}

// guestChecks judge the steps. Each returns an error that quotes what the
// guest printed.
var guestChecks = []struct {
	name  string
	check func(map[string]guestStep) error
}{
	{"the probe runs under its profile, with the host's confinement", func(st map[string]guestStep) error {
		s := st["probe"]
		p, err := s.json()
		if err != nil {
			return err
		}
		var spec specs.Spec
		if err := json.Unmarshal([]byte(st["spec"].out), &spec); err != nil {
			return fmt.Errorf("safe-run spec in the guest: %w\n%s", err, st["spec"].out)
		}
		if spec.Linux == nil || spec.Linux.Seccomp == nil {
			return fmt.Errorf("safe-run spec in the guest has no seccomp filter")
		}
		want := map[string]any{
			"AppArmor": "safe-run-probe (enforce)",
			"UID":      1000.0, "GID": 1000.0,
			"CapEff": "0000000000000000", "CapPrm": "0000000000000000", "CapBnd": "0000000000000000",
			"CapInh": "0000000000000000", "CapAmb": "0000000000000000",
			"NoNewPrivs": "1", "Seccomp": "2", "RootWritable": false,
			"CgroupVersion": 2.0, "MemoryLimit": "67108864", "MemorySoft": "33554432",
			"CPUQuota": "2500 5000", "PidsLimit": "64",
			// safe-run-init loads the seccomp filter (seccomp_linux.go).
			"PID1": "/dev/init --control-fd 3 -- /bin/confinement -json",
		}
		var errs []error
		for k, v := range want {
			if p[k] != v {
				errs = append(errs, fmt.Errorf("%s = %v, want %v", k, p[k], v))
			}
		}
		if m, _ := p["UIDMap"].(string); m == "0 0 4294967295" || !strings.HasPrefix(m, "0 ") || !strings.HasSuffix(m, " 65536") {
			errs = append(errs, fmt.Errorf("uid_map %q: want container 0..65535 mapped onto an unprivileged range", m))
		}
		if ifs := fmt.Sprint(p["Interfaces"]); ifs != "[lo]" {
			errs = append(errs, fmt.Errorf("network interfaces %s, want only lo", ifs))
		}
		return s.wrap(errors.Join(errs...))
	}},
	{"a second start loads the cached profile without compiling", func(st map[string]guestStep) error {
		first, again := st["probe cache"], st["probe again"]
		if first.value("parser runs") != "1" {
			return first.wrap(fmt.Errorf("apparmor_parser ran %s times for the first start, want once", first.value("parser runs")))
		}
		if again.value("parser runs") != "1" {
			return again.wrap(fmt.Errorf("apparmor_parser ran again for the second start (%s runs in all)", again.value("parser runs")))
		}
		if e := first.value("cache"); !strings.Contains(e, "/var/lib/safe-run/apparmor/safe-run-probe/") || e != again.value("cache") {
			return again.wrap(fmt.Errorf("the cache entry (mtime size path) changed: %q before, %q after", e, again.value("cache")))
		}
		return nil
	}},
	{"a damaged cache entry is compiled again", func(st map[string]guestStep) error {
		s := st["damaged cache"]
		if s.value("exit") != "0" || s.value("parser runs") != "2" {
			return s.wrap(errors.New("want the start to succeed after one more compile"))
		}
		return nil
	}},
	{"cgroup v2 limits as declared, seen from the guest, the service and exec under its profile", func(st map[string]guestStep) error {
		s := st["limits"]
		var errs []error
		for k, v := range map[string]string{
			"cgroup": "/sys/fs/cgroup/safe-run-limits", "memory.max": "50331648", "memory.low": "25165824",
			"memory.swap.max": "0", "memory.oom.group": "1", "cpu.max": "1250 5000", "cpu.weight": "25", "pids.max": "32",
			"safe-run exit": "143",
			// safe-run exec's command runs under the service's profile.
			"exec code": "0", "exec label": "safe-run-limits (enforce)",
		} {
			if got := s.value(k); got != v {
				errs = append(errs, fmt.Errorf("%s = %q, want %q", k, got, v))
			}
		}
		labels := 0
		for _, l := range s.lines() {
			if v, ok := strings.CutPrefix(l, "label="); ok {
				labels++
				if v != "safe-run-limits (enforce)" {
					errs = append(errs, fmt.Errorf("a process of the service runs as %q", v))
				}
			}
		}
		if labels == 0 {
			errs = append(errs, errors.New("no process of the service found in its cgroup"))
		}
		// stats reads cgroup v2's files as it reads v1's.
		var stats []ops.Stats
		if err := json.Unmarshal([]byte(s.value("stats")), &stats); err != nil || len(stats) != 1 {
			errs = append(errs, fmt.Errorf("stats --format json: %w: %q", err, s.value("stats")))
		} else if st := stats[0]; st.MemoryLimit != 50331648 || st.PidsLimit != 32 || st.CPUs != 0.25 || st.Memory == 0 || st.Pids == 0 || st.MemoryPeak < st.Memory {
			errs = append(errs, fmt.Errorf("stats: %+v", st))
		}
		return s.wrap(errors.Join(errs...))
	}},
	{"a shell script runs without a denial", func(st map[string]guestStep) error {
		s := st["busybox"]
		if s.code != 0 || !strings.Contains(s.out, "\ndone\n") {
			return s.wrap(errors.New("want exit 0 and done"))
		}
		return nil
	}},
	{"the profile denies what the file system and capabilities would allow", func(st map[string]guestStep) error {
		// EACCES is AppArmor's answer; without it the writes and the
		// mount would succeed (/dev is the container's own tmpfs,
		// SYS_ADMIN is granted), and the sockets would fail with EPERM
		// for want of NET_RAW.
		return st["deny"].has(
			"write:/tmp/ok: ok", "write:/data/ok: ok", "write:/dev/shm/ok: ok", "read:/run/secrets/db: ok",
			"write:/dev/evil: EACCES", "raw: EACCES", "packet: EACCES", "mount:/tmp: EACCES", "umount:/tmp: EACCES",
			"exec:/data/bb: EACCES", "pivot_root:/tmp: EACCES", "safe-run-deny (enforce)")
	}},
	{"AppArmor's denials are shown and are events", func(st map[string]guestStep) error {
		// "pid N" in the service's namespace, or "host pid N" when the
		// process is gone before its record is read: each attempt is a
		// short-lived process.
		return st["deny"].has(
			"safe-run: deny: apparmor denied mknod /dev/evil ",
			" deny apparmor apparmor denied mknod /dev/evil ",
			" deny apparmor apparmor denied create inet raw socket ",
			" deny apparmor apparmor denied mount /tmp/ ")
	}},
	{"Landlock at ABI 2: what is written to a volume does not run, nothing is read out of the container's tree", func(st map[string]guestStep) error {
		// /dev is the container's own writable tmpfs: only Landlock
		// refuses the write (the "deny" step shows AppArmor's EACCES);
		// the control, with Landlock off, does all of it.
		s := st["landlock"]
		on, off, _ := strings.Cut(s.out, "\n--- off\n")
		var errs []error
		// A file of each run's own in the bind: the other's ids own
		// what one made there.
		for _, w := range []string{"write:/data/ok: ok", "write:/var/up/landlock: ok", "write:/dev/x: EACCES", "exec:/data/true: EACCES",
			"read secret beneath the passed directory: permission denied",
			"Landlock ABI 2 (file system)", "Landlock ABI 2: file system only (TCP rules need ABI 4, scoping ABI 6)",
			"Landlock denials surface as EACCES only: the kernel audits none at ABI 2 (audit needs ABI 7)"} {
			if !strings.Contains(on, w) {
				errs = append(errs, fmt.Errorf("Landlock on: missing %q", w))
			}
		}
		for _, w := range []string{"write:/data/ok: ok", "write:/var/up/landlock-off: ok", "write:/dev/x: ok", "exec:/data/true: ok",
			`read "the guest's secret\n"`, "Landlock OFF"} {
			if !strings.Contains(off, w) {
				errs = append(errs, fmt.Errorf("Landlock off (the control): missing %q", w))
			}
		}
		return s.wrap(errors.Join(errs...))
	}},
	{"Landlock at ABI 2 with init = false: applied before the service's exec", func(st map[string]guestStep) error {
		return st["landlock-noinit"].has("pid 1\n", "exec:/data/true: EACCES", "Landlock ABI 2 (file system)")
	}},
	{"NET_RAW declared: raw and packet sockets", func(st map[string]guestStep) error {
		return st["rawok"].has("raw: ok", "packet: ok")
	}},
	{"complain mode permits and logs, the deny rules hold", func(st map[string]guestStep) error {
		return st["complain"].has("write:/dev/evil: ok", "mount:/tmp: EACCES", "safe-run-complain (complain)",
			"AppArmor profile safe-run-complain in COMPLAIN mode")
	}},
	{"a loaded profile by name", func(st map[string]guestStep) error {
		return st["named"].has("AppArmor guest-named", "guest-named (complain)")
	}},
	{"a profile that is not loaded is an error", func(st map[string]guestStep) error {
		s := st["missing"]
		if s.code != 125 {
			return s.wrap(fmt.Errorf("exit %d, want 125", s.code))
		}
		return s.contains(`/srv/m/missing.toml:11: security.apparmor: profile "guest-missing" is not loaded in the kernel`)
	}},
	{"unconfined when [insecure] says so", func(st map[string]guestStep) error {
		return st["unconfined"].has("AppArmor UNCONFINED ([insecure] apparmor_unconfined)", "\nunconfined\n")
	}},
	{"in a delegated cgroup, safe-run nests the service beside its own leaf", func(st map[string]guestStep) error {
		s := st["delegated"]
		var errs []error
		for k, v := range map[string]string{"exit": "0", "left": "supervisor/"} {
			if got := s.value(k); got != v {
				errs = append(errs, fmt.Errorf("%s = %q, want %q", k, got, v))
			}
		}
		for _, c := range []string{"cpu", "memory", "pids"} {
			if !slices.Contains(strings.Fields(s.value("subtree_control")), c) {
				errs = append(errs, fmt.Errorf("controller %s not delegated below safe-run's cgroup", c))
			}
		}
		errs = append(errs, s.contains("cgroup v2 /svc/safe-run-delegated", "\n0::/\n", "\n41943040\n"))
		return s.wrap(errors.Join(errs...))
	}},
	{"a memory hog is OOM-killed and reported", func(st map[string]guestStep) error {
		s := st["hog"]
		if s.code != 137 {
			return s.wrap(fmt.Errorf("exit %d, want 137", s.code))
		}
		return s.contains("OOM-killed (memory limit 32M")
	}},
	{"a busy loop is throttled", func(st map[string]guestStep) error {
		s := st["busy"]
		if n, err := strconv.Atoi(s.value("nr_throttled")); err != nil || n == 0 {
			return s.wrap(errors.New("want nr_throttled > 0 in cpu.stat"))
		}
		return nil
	}},
	{"forks refused at the pids limit are a warning at once (pids.events, inotify)", func(st map[string]guestStep) error {
		s := st["forks"]
		if s.code != 0 {
			return s.wrap(fmt.Errorf("exit %d, want 0", s.code))
		}
		// The sample that finds the cgroup at its limit may come before
		// the kernel counts the refused fork: the warning then has no
		// count, and the count is not said again within the repeat
		// period.
		return s.contains("survived", "forks: reached its pids limit 6", "; raise resources.pids or find what forks without end")
	}},
	{"apparmor install", func(st map[string]guestStep) error {
		return st["install"].has(
			"installed AppArmor profile safe-run-probe in /etc/apparmor.d/safe-run-probe and loaded it in enforce mode",
			"installed file is the generated profile", "safe-run-probe (enforce)")
	}},
	{"rootless: the installed profile, limits in the delegated cgroup, the same probes", func(st map[string]guestStep) error {
		s := st["rootless"]
		if n := strings.Count(s.out, "AppArmor profile not installed"); n != 1 {
			return s.wrap(fmt.Errorf("%d starts refused for want of an installed profile, want 1 (busybox, not the installed probe)", n))
		}
		if err := s.contains("safe-run: AppArmor profile not installed: safe-run-busybox is not installed; loading AppArmor profiles needs root, so install it once as root: safe-run apparmor install /srv/m/busybox.toml",
			"not installed: exit 125", "installed: exit 0", "rootfs not id-mapped (rootless)",
			// Landlock needs no privilege: applied rootless too.
			"Landlock ABI 2 (file system)", "Landlock denials surface as EACCES only: the kernel audits none at ABI 2 (audit needs ABI 7)"); err != nil {
			return err
		}
		var p map[string]any
		for _, l := range s.lines() {
			if strings.HasPrefix(l, "{") {
				if err := json.Unmarshal([]byte(l), &p); err != nil {
					return s.wrap(err)
				}
			}
		}
		var errs []error
		for k, v := range map[string]any{"UID": 1000.0, "CapEff": "0000000000000000", "CapInh": "0000000000000000", "NoNewPrivs": "1",
			"Seccomp": "2", "RootWritable": false, "AppArmor": "safe-run-probe (enforce)", "CgroupVersion": 2.0,
			"MemoryLimit": "67108864", "MemorySoft": "33554432", "CPUQuota": "2500 5000", "PidsLimit": "64"} {
			if p[k] != v {
				errs = append(errs, fmt.Errorf("rootless probe: %s = %v, want %v", k, p[k], v))
			}
		}
		if fmt.Sprint(p["Interfaces"]) != "[lo]" {
			errs = append(errs, fmt.Errorf("rootless probe: interfaces %v, want only lo", p["Interfaces"]))
		}
		if v := s.value("cgroups left:"); v != "" {
			errs = append(errs, fmt.Errorf("container cgroups left under the delegated one: %q", v))
		}
		return s.wrap(errors.Join(errs...))
	}},
	{"doctor: everything a service needs, as root and rootless", func(st map[string]guestStep) error {
		if err := st["doctor"].contains("OK    cgroups", "OK    AppArmor", "OK    subordinate ids", "ABI 2: file system only (TCP rules need ABI 4, scoping of signals and abstract sockets ABI 6); denials surface as EACCES only (audit needs ABI 7)", "doctor: exit 0"); err != nil {
			return err
		}
		return st["rootless"].contains("safe-run doctor (rootless, as dev)", "delegated to you", "OK    newuidmap", "rootless doctor: exit")
	}},
	{"denials are in the kernel log", func(st map[string]guestStep) error {
		s := st["dmesg"]
		var errs []error
		for _, want := range []string{
			`apparmor="DENIED" operation="mknod" profile="safe-run-deny" name="/dev/evil"`,
			`apparmor="DENIED" operation="create" profile="safe-run-deny" .* family="inet" sock_type="raw"`,
			`apparmor="DENIED" operation="create" profile="safe-run-deny" .* family="packet"`,
			`apparmor="DENIED" operation="mount" .* profile="safe-run-deny" name="/tmp/"`,
			`apparmor="DENIED" operation="umount" profile="safe-run-deny" name="/tmp/"`,
			`apparmor="DENIED" operation="exec" profile="safe-run-deny" name="/data/bb"`,
			`apparmor="DENIED" operation="pivotroot" profile="safe-run-deny" name="/tmp/"`,
			`apparmor="ALLOWED" operation="mknod" profile="safe-run-complain" name="/dev/evil"`,
		} {
			if !regexp.MustCompile(want).MatchString(s.out) {
				errs = append(errs, fmt.Errorf("no line matching %s", want))
			}
		}
		for _, quiet := range []string{"probe", "busybox", "limits", "rawok", "busy"} {
			if strings.Contains(s.out, `profile="safe-run-`+quiet+`"`) {
				errs = append(errs, fmt.Errorf("the profile of %s, which does nothing forbidden, logged a denial", quiet))
			}
		}
		return s.wrap(errors.Join(errs...))
	}},
}

// logGuestNumbers reports the costs the guest measured.
func logGuestNumbers(t *testing.T, st map[string]guestStep) {
	took := func(s guestStep, key string) string {
		f := strings.Fields(s.value(key))
		if len(f) != 2 {
			return "?"
		}
		a, _ := strconv.ParseFloat(f[0], 64)
		b, _ := strconv.ParseFloat(f[1], 64)
		return (time.Duration((b - a) * float64(time.Second))).Round(10 * time.Millisecond).String()
	}
	t.Logf("safe-run doctor in the guest, as root:\n%s", st["doctor"].out)
	if _, rootless, ok := strings.Cut(st["rootless"].out, "safe-run doctor (rootless"); ok {
		t.Logf("safe-run doctor in the guest, rootless:\nsafe-run doctor (rootless%s", rootless)
	}
	t.Logf("in the guest (TCG): first start %s, second start (cached profile) %s; compiling the probe's profile %s, loading it %s (uptime has 10ms steps)",
		took(st["probe"], "start took"), took(st["probe again"], "start took"),
		took(st["compile and load by hand"], "compile took"), took(st["compile and load by hand"], "load took"))
}

func (s guestStep) wrap(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w\nexit %d, guest output:\n%s", err, s.code, s.out)
}

// has checks that the step exited 0 and printed every string.
func (s guestStep) has(want ...string) error {
	if s.code != 0 {
		return s.wrap(fmt.Errorf("exit %d, want 0", s.code))
	}
	return s.contains(want...)
}

// contains checks that the step printed every string.
func (s guestStep) contains(want ...string) error {
	var errs []error
	for _, w := range want {
		if !strings.Contains(s.out, w) {
			errs = append(errs, fmt.Errorf("missing %q", w))
		}
	}
	return s.wrap(errors.Join(errs...))
}

// json is the step's line of JSON, as the confinement probe prints it.
func (s guestStep) json() (map[string]any, error) {
	for _, l := range s.lines() {
		if strings.HasPrefix(l, "{") {
			var p map[string]any
			if err := json.Unmarshal([]byte(l), &p); err != nil {
				return nil, s.wrap(err)
			}
			return p, nil
		}
	}
	return nil, s.wrap(errors.New("no JSON line from the probe"))
}

// parseSteps reads the steps back from the console.
func parseSteps(console string) map[string]guestStep {
	steps := map[string]guestStep{}
	var name string
	var out strings.Builder
	sc := bufio.NewScanner(strings.NewReader(console))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if n, ok := strings.CutPrefix(line, "<<< "); ok {
			name = n
			out.Reset()
			continue
		}
		if rest, ok := strings.CutPrefix(line, ">>> "+name+" "); ok && name != "" {
			code, _ := strconv.Atoi(rest)
			steps[name] = guestStep{out: out.String(), code: code}
			name = ""
			continue
		}
		if name != "" {
			out.WriteString(line + "\n")
		}
	}
	return steps
}

// buildGuestFiles builds what the guest needs into a directory: static
// safe-run-tools (safe-run and the helpers are static already), the example
// rootfs with /bin/attempt, and the manifests.
func buildGuestFiles(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if _, err := testenv.Build(dir); err != nil {
		t.Fatal(err)
	}
	if err := guest.BuildStatic(t.Context(), "github.com/safe-run/safe-run/cmd/safe-run-tools", filepath.Join(dir, "safe-run-tools"), "seccomp"); err != nil {
		t.Fatal(err)
	}
	if _, err := testenv.ExampleRootfs(dir); err != nil {
		t.Fatal(err)
	}
	if err := testenv.StaticGo(filepath.Join(dir, "rootfs", "bin", "attempt"), "./launcher/testdata/attempt"); err != nil {
		t.Fatal(err)
	}
	m := filepath.Join(dir, "m")
	if err := os.Mkdir(m, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range guestManifests {
		text := fmt.Sprintf("version = 1\nname = %q\n\n[image]\nrootfs = \"/srv/rootfs\"\n\n%s", name, body)
		if !strings.Contains(body, "[resources]") {
			text += "\n[resources]\nmemory = \"64M\"\ncpus = 1.0\npids = 64\n"
		}
		if err := os.WriteFile(filepath.Join(m, name+".toml"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(m, "db.txt"), []byte("hunter2"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}
