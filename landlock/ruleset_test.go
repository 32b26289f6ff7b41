package landlock_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/safe-run/safe-run/image"
	"github.com/safe-run/safe-run/internal/testenv"
	"github.com/safe-run/safe-run/landlock"
	"github.com/safe-run/safe-run/manifest"
	"github.com/safe-run/safe-run/plan"
	"github.com/safe-run/safe-run/policy"
)

// testImage is a Debian-like root: merged /usr (bin is a link), and
// directories that the test manifests mount over or below.
var testImage = fstest.MapFS{
	"bin":                {Mode: fs.ModeSymlink, Data: []byte("usr/bin")},
	"usr/bin/server":     {Mode: 0o755},
	"usr/lib/x.so":       {},
	"etc/passwd":         {},
	"etc/app/app.conf":   {},
	"var/lib/dpkg/x":     {},
	"var/lib/app/.keep":  {},
	"var/cache/app/.k":   {},
	"var/log/x":          {},
	"srv/uploads/.keep":  {},
	"srv/ro/.keep":       {},
	"srv/www/index.html": {},
	"tmp/.keep":          {},
	"dev/.keep":          {},
	"proc/.keep":         {},
	"sys/.keep":          {},
	"run/.keep":          {},
	"entrypoint":         {Mode: 0o755},
	// Debian's /var/run: a mount at /var/run/x lands on /run/x.
	"var/run": {Mode: fs.ModeSymlink, Data: []byte("/run")},
}

// input builds what plan.Build would give the generator for
// testdata/NAME.toml: the policy applied, the spec's mounts and devices.
func input(t *testing.T, name string, abi int) landlock.Input {
	t.Helper()
	path := filepath.Join("testdata", name+".toml")
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
	host := plan.Placement{StateDir: "/run/safe-run/" + name, VolumeDir: "/var/lib/safe-run/volumes",
		InitPath: "/usr/lib/safe-run/safe-run-init", IDs: plan.IDMap{UID: 1 << 30, GID: 1 << 30, Size: 65536}}
	net := plan.NetworkOptions(svc, plan.Dirs{State: "/run/safe-run"})
	spec, err := plan.Spec(plan.Inputs{Service: svc, Image: &image.Image{Rootfs: t.TempDir()}, Network: net}, host)
	if err != nil {
		t.Fatal(err)
	}
	return landlock.Input{Service: svc, Mounts: spec.Mounts, Devices: spec.Linux.Devices,
		Terminal: spec.Process.Terminal, Image: testImage, ABI: abi}
}

func TestGolden(t *testing.T) {
	for _, name := range []string{"minimal", "full", "egress-all", "none-bind"} {
		for _, abi := range []int{1, 2, 4, 6, 7} {
			t.Run(fmt.Sprintf("%s/abi%d", name, abi), func(t *testing.T) {
				in := input(t, name, abi)
				r, err := landlock.Generate(in)
				if err != nil {
					t.Fatal(err)
				}
				var b bytes.Buffer
				if err := r.Show(&b, in.Service.Name); err != nil {
					t.Fatal(err)
				}
				testenv.Golden(t, filepath.Join("testdata", fmt.Sprintf("%s.abi%d.golden", name, abi)), b.Bytes())
			})
		}
	}
}

// TestProperties asserts what must hold of every generated ruleset,
// whatever the goldens say.
func TestProperties(t *testing.T) {
	for _, name := range []string{"minimal", "full", "egress-all", "none-bind"} {
		for abi := 1; abi <= 8; abi++ {
			in := input(t, name, abi)
			r, err := landlock.Generate(in)
			if err != nil {
				t.Fatal(err)
			}
			if r.HandledFS != landlock.FSRights(min(abi, landlock.MaxABI)) {
				t.Errorf("%s abi %d: handled %#x, want every right of the ABI", name, abi, r.HandledFS)
			}
			writable := map[string]bool{}
			for _, m := range in.Service.Mounts {
				if m.Writable() {
					writable[m.Target] = true
				}
			}
			for _, p := range r.Paths {
				if p.Access&^r.HandledFS != 0 {
					t.Errorf("%s abi %d: %s grants %#x, not handled", name, abi, p.Path, p.Access)
				}
				if p.Path == "/" && p.Access&landlock.FSExecute != 0 {
					t.Errorf("%s abi %d: / grants execute: it would hold on every writable place", name, abi)
				}
				if p.Access&landlock.FSWriteFile != 0 && p.Access&landlock.FSExecute != 0 && p.Path != "/tmp" {
					t.Errorf("%s abi %d: %s is writable and executable", name, abi, p.Path)
				}
				if p.Access&landlock.FSExecute != 0 {
					for w := range writable {
						if strings.HasPrefix(w+"/", p.Path+"/") && !(name == "full" && w == "/tmp") {
							t.Errorf("%s abi %d: execute on %s holds on the writable %s", name, abi, p.Path, w)
						}
					}
				}
				if p.Access&landlock.FSIoctlDev != 0 && !in.Terminal {
					t.Errorf("%s abi %d: device ioctls on %s without a terminal", name, abi, p.Path)
				}
			}
			if abi < 4 && (r.HandledNet != 0 || len(r.Ports) > 0) {
				t.Errorf("%s abi %d: network rules before ABI 4", name, abi)
			}
			if abi >= 4 && r.HandledNet&landlock.NetBindTCP == 0 {
				t.Errorf("%s abi %d: TCP bind not handled", name, abi)
			}
			if (abi >= 6) != (r.Scoped != 0) {
				t.Errorf("%s abi %d: scoped %#x", name, abi, r.Scoped)
			}
		}
	}
}

func TestForService(t *testing.T) {
	in := input(t, "minimal", 0)
	if r, note, err := landlock.ForService(in); r != nil || err != nil || note != "Landlock not enforced: Landlock not in this kernel" {
		t.Errorf("ABI 0: %v, %q, %v", r, note, err)
	}
	in.Service.Security.LandlockRequired = true
	_, _, err := landlock.ForService(in)
	if !errors.Is(err, landlock.ErrNotInKernel) || !strings.Contains(err.Error(), "minimal.toml: security.landlock_required: this kernel has no Landlock") {
		t.Errorf("ABI 0, required: %v", err)
	}
	in = input(t, "minimal", 2)
	if r, note, err := landlock.ForService(in); r == nil || err != nil || note != "Landlock ABI 2: file system only (TCP rules need ABI 4, scoping ABI 6)" {
		t.Errorf("ABI 2: %v, %q, %v", r, note, err)
	}
	// safe-run-init applies it with init = false as well, then execs
	// the service (plan.NoInitFlag).
	in.Service.Process.Init = false
	if r, _, err := landlock.ForService(in); r == nil || err != nil {
		t.Errorf("init = false: %v, %v", r, err)
	}
	in = input(t, "minimal", 7)
	in.Service.Security.NoNewPrivileges = false
	if r, note, _ := landlock.ForService(in); r != nil || note != "Landlock not enforced: no_new_privileges = false (Landlock needs no_new_privs)" {
		t.Errorf("new privileges: %v, %q", r, note)
	}
	in = input(t, "minimal", 7)
	in.Service.Security.Landlock = "off"
	if r, note, _ := landlock.ForService(in); r != nil || note != "Landlock OFF ([insecure] landlock_off)" {
		t.Errorf("off: %v, %q", r, note)
	}
	in = input(t, "none-bind", 7)
	r, note, _ := landlock.ForService(in)
	if got := r.Summary(); note != "" || got != "Landlock ABI 7 (file system, TCP bind 8080 8081, TCP connect restricted, scoped signals and abstract sockets)" {
		t.Errorf("summary %q, note %q", got, note)
	}
}

// TestSymlinkedMountTarget: a mount whose destination goes through a
// link of the image (/var/run -> /run) is where runc puts it, and the
// image entry holding it gets no execute.
func TestSymlinkedMountTarget(t *testing.T) {
	in := input(t, "minimal", 7)
	in.Mounts = append(in.Mounts, specs.Mount{Destination: "/var/run/x", Type: "tmpfs", Options: []string{"nosuid", "nodev", "noexec"}})
	r, err := landlock.Generate(in)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range r.Paths {
		if p.Path == "/run" || strings.HasPrefix(p.Path, "/run/") {
			got = append(got, fmt.Sprintf("%s %#x", p.Path, p.Access))
		}
	}
	want := []string{fmt.Sprintf("/run/.keep %#x", landlock.FSReadFile|landlock.FSExecute),
		fmt.Sprintf("/run/x %#x", landlock.FSReadFile|landlock.FSReadDir|landlock.FSWriteFile|landlock.FSRemoveDir|landlock.FSRemoveFile|
			landlock.FSMakeDir|landlock.FSMakeReg|landlock.FSMakeSock|landlock.FSMakeFifo|landlock.FSMakeSym|landlock.FSRefer|landlock.FSTruncate)}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("rules under /run:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestEncode(t *testing.T) {
	b, err := (*landlock.Ruleset)(nil).Encode()
	if err != nil || !bytes.Equal(b, []byte{0, 0, 0, 0}) {
		t.Errorf("nil: %x, %v", b, err)
	}
	r := &landlock.Ruleset{ABI: 4, HandledFS: 1, HandledNet: 3, Paths: []landlock.PathRule{{Path: "/tmp", Access: 1}}, Ports: []landlock.PortRule{{Port: 80, Access: 1}}}
	b, err = r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	ne := binary.NativeEndian
	want := ne.AppendUint32(nil, 4)
	want = ne.AppendUint32(want, 0)
	want = ne.AppendUint64(want, 1)
	want = ne.AppendUint64(want, 3)
	want = ne.AppendUint64(want, 0)
	want = ne.AppendUint32(want, 1)
	want = ne.AppendUint32(want, 1)
	want = ne.AppendUint64(want, 1)
	want = ne.AppendUint32(want, 4)
	want = append(want, "/tmp"...)
	want = ne.AppendUint64(want, 1)
	want = ne.AppendUint64(want, 80)
	if !bytes.Equal(b, want) {
		t.Errorf("got %x\nwant %x", b, want)
	}
	r.Paths[0].Path = "/a\x00b"
	if _, err := r.Encode(); err == nil {
		t.Error("a path with NUL encoded")
	}
}

// TestDenies: what a ruleset refuses of the accesses a recording saw, on
// the ruleset the full manifest gets at ABI 7 and at ABI 2 (no network
// rules).
func TestDenies(t *testing.T) {
	for _, tc := range []struct {
		abi  int
		a    landlock.Access
		want string
	}{
		{7, landlock.Access{Path: "/usr/bin/server", Rights: landlock.FSExecute | landlock.FSReadFile}, ""},
		{7, landlock.Access{Path: "/var/lib/app/db", Rights: landlock.FSWriteFile}, ""},
		{7, landlock.Access{Path: "/var/lib/app/tool", Rights: landlock.FSExecute}, "execute /var/lib/app/tool"},
		{7, landlock.Access{Path: "/tmp/tool", Rights: landlock.FSExecute}, ""},
		{7, landlock.Access{Path: "/dev/x", Rights: landlock.FSWriteFile}, "write-file /dev/x"},
		{7, landlock.Access{Path: "/dev/null", Rights: landlock.FSWriteFile}, ""},
		{7, landlock.Access{Path: "/dev/nullx", Rights: landlock.FSWriteFile}, "write-file /dev/nullx"},
		{7, landlock.Access{Path: "/srv/uploads/../x", Rights: landlock.FSWriteFile}, "write-file /srv/uploads/../x"},
		{7, landlock.Access{Path: "/srv/uploads/a/b", Rights: landlock.FSWriteFile | landlock.FSMakeReg}, ""},
		{7, landlock.Access{Port: 80, Rights: landlock.NetBindTCP}, ""},
		{7, landlock.Access{Port: 9999, Rights: landlock.NetBindTCP}, "bind-tcp port 9999"},
		{7, landlock.Access{Port: 80, Rights: landlock.NetConnectTCP}, "connect-tcp port 80"},
		{2, landlock.Access{Port: 9999, Rights: landlock.NetBindTCP}, ""},
		{2, landlock.Access{Path: "/dev/x", Rights: landlock.FSWriteFile | landlock.FSTruncate}, "write-file /dev/x"},
	} {
		t.Run(fmt.Sprintf("abi%d %s%d", tc.abi, tc.a.Path, tc.a.Port), func(t *testing.T) {
			r, err := landlock.Generate(input(t, "full", tc.abi))
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Denial(tc.a); got != tc.want {
				t.Errorf("Denial(%+v) = %q, want %q", tc.a, got, tc.want)
			}
		})
	}
	var none *landlock.Ruleset
	if d := none.Denies(landlock.Access{Path: "/x", Rights: landlock.FSWriteFile}); d != 0 {
		t.Errorf("no ruleset denies %#x", d)
	}
}
