package export

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/safe-run/safe-run/image"
	"github.com/safe-run/safe-run/manifest"
	"github.com/safe-run/safe-run/plan"
	"github.com/safe-run/safe-run/policy"
	"github.com/safe-run/safe-run/profiles"

	"github.com/safe-run/safe-run/internal/testenv"
)

// manifests are the testdata manifests every exporter is run on.
var manifests = []string{"hardened", "root", "rootonly", "insecure", "bridged", "bridged-own"}

// goldenOpts are fixed, so that the goldens do not depend on this machine.
var goldenOpts = Options{SafeRun: "/usr/bin/safe-run", Dir: "/export"}

// testProfile stands in for the profile package profiles builds: small,
// with every field the Docker format carries.
func testProfile() *specs.LinuxSeccomp {
	errno := uint(1)
	return &specs.LinuxSeccomp{
		DefaultAction:   specs.ActErrno,
		DefaultErrnoRet: &errno,
		Architectures:   []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32},
		Flags:           []specs.LinuxSeccompFlag{specs.LinuxSeccompFlagLog},
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"accept4", "bind", "brk", "close", "execve", "exit_group", "futex", "getpid", "listen", "mmap", "read", "rt_sigaction", "write"}, Action: specs.ActAllow},
			{Names: []string{"personality"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 0, Op: specs.OpEqualTo}}},
		},
	}
}

// prepare runs the stages before export on a testdata manifest, with fixed
// host facts instead of this host's (plan.Build would look up user
// namespace ranges and cgroups) and testProfile as its seccomp profile.
func prepare(t testing.TB, name string) *plan.Job {
	t.Helper()
	return prepareFile(t, filepath.Join(testdata, name+".toml"))
}

// prepareFile is prepare for the manifest at path.
func prepareFile(t testing.TB, path string) *plan.Job {
	t.Helper()
	svc, err := manifest.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := policy.Enforce(svc); err != nil {
		t.Fatal(err)
	}
	img, err := image.Resolve(context.Background(), svc, image.Options{})
	if err != nil {
		t.Fatal(err)
	}
	in := plan.Inputs{Service: svc, Image: img, AppArmor: appArmorProfile(svc)}
	if svc.Security.Seccomp != "unconfined" {
		in.Seccomp = testProfile()
	}
	host := plan.Placement{
		StateDir:   "/run/safe-run/" + svc.Name,
		VolumeDir:  "/var/lib/safe-run/volumes",
		InitPath:   "/usr/lib/safe-run/safe-run-init",
		IDs:        plan.IDMap{UID: 1 << 30, GID: 1 << 30, Size: 65536},
		CgroupPath: "safe-run-" + svc.Name,
	}
	// plan refuses bridge mode until the runtime's networking merges; the
	// exports read the network from the manifest, not the spec.
	mode := svc.Network.Mode
	if mode == manifest.NetworkBridge {
		svc.Network.Mode = manifest.NetworkNone
	}
	spec, err := plan.Spec(in, host)
	svc.Network.Mode = mode
	if err != nil {
		t.Fatal(err)
	}
	return &plan.Job{Service: svc, Image: img, Spec: spec, Placement: host}
}

// testdata is the absolute directory the manifests are exported from.
var testdata string

// TestMain sets testdata. A systemd unit leaves out PrivateTmp when the
// service's files are under /tmp, so a checkout there (as CI's may be)
// would change the goldens: the manifests are then exported from a copy
// outside /tmp, in /var/lib for root (whose own cache directory is a
// sensitive path that manifests may not name) or the user's cache.
func TestMain(m *testing.M) {
	abs, err := filepath.Abs("testdata")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testdata = abs
	if strings.HasPrefix(abs, "/tmp/") || strings.HasPrefix(abs, "/var/tmp/") {
		parent := "/var/lib"
		if os.Geteuid() != 0 {
			if parent, err = os.UserCacheDir(); err == nil {
				err = os.MkdirAll(parent, 0o700)
			}
		}
		if err == nil {
			testdata, err = os.MkdirTemp(parent, "safe-run-export-test-")
		}
		if err == nil {
			var out []byte
			if out, err = exec.Command("cp", "-a", abs+"/.", testdata).CombinedOutput(); err != nil {
				err = fmt.Errorf("copying testdata outside /tmp: %w: %s", err, out)
			}
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	if testdata != abs {
		_ = os.RemoveAll(testdata)
	}
	os.Exit(code)
}

// golden compares got with testdata/golden/name, where the absolute path of
// testdata reads $TESTDATA; -update rewrites it.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	got = bytes.ReplaceAll(got, []byte(testdata), []byte("$TESTDATA"))
	testenv.Golden(t, filepath.Join("testdata", "golden", name), got)
}

// exports are the golden file suffixes of each export.
var exports = []struct {
	suffix string
	run    func(*plan.Job, Options) (*Output, error)
}{
	{"service", Systemd},
	{"docker.sh", Docker},
	{"compose.yaml", Compose},
	{"pod.yaml", Kubernetes},
	{"deployment.yaml", func(p *plan.Job, o Options) (*Output, error) {
		o.Kind = KindDeployment
		return Kubernetes(p, o)
	}},
}

func TestGolden(t *testing.T) {
	for _, m := range manifests {
		for _, e := range exports {
			t.Run(m+"."+e.suffix, func(t *testing.T) {
				out, err := e.run(prepare(t, m), goldenOpts)
				if err != nil {
					t.Fatal(err)
				}
				golden(t, m+"."+e.suffix, out.Text)
				for _, f := range out.Files {
					golden(t, f.Name, f.Data)
				}
				if len(out.Warnings) > 0 {
					golden(t, m+"."+e.suffix+".warnings", []byte(strings.Join(out.Warnings, "\n")+"\n"))
				}
			})
		}
	}
}

func TestExecQuote(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/usr/bin/safe-run", "/usr/bin/safe-run"},
		{"/srv/my app/web.toml", `"/srv/my app/web.toml"`},
		{"/srv/100%/web.toml", "/srv/100%%/web.toml"},
		{"/srv/$HOME/web.toml", "/srv/$$HOME/web.toml"},
		{`/srv/a"b\c`, `"/srv/a\"b\\c"`},
	} {
		if got := execQuote(tc.in); got != tc.want {
			t.Errorf("execQuote(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestShellQuote(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"--read-only", "--read-only"},
		{"GREETING=hello world", "'GREETING=hello world'"},
		{"it's", `'it'\''s'`},
		{"", "''"},
		{"$IMAGE", "'$IMAGE'"},
	} {
		if got := shellQuote(tc.in); got != tc.want {
			t.Errorf("shellQuote(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestDNSName(t *testing.T) {
	for _, tc := range []struct {
		in   string
		dots bool
		want string
	}{
		{"web", false, "web"},
		{"my_app.v2", false, "my-app-v2"},
		{"my_app.v2", true, "my-app.v2"},
		{"app_", true, "app"},
	} {
		if got := dnsName(tc.in, tc.dots); got != tc.want {
			t.Errorf("dnsName(%q, %v) = %q, want %q", tc.in, tc.dots, got, tc.want)
		}
	}
}

func TestKindRefused(t *testing.T) {
	_, err := Kubernetes(prepare(t, "hardened"), Options{Kind: "statefulset"})
	want := `kind "statefulset" is not a Kubernetes workload safe-run writes (use pod or deployment)`
	if err == nil || err.Error() != want {
		t.Errorf("err = %v, want %s", err, want)
	}
}

func TestTargetRefused(t *testing.T) {
	_, err := Export("podman", prepare(t, "hardened"), goldenOpts)
	want := `unknown export target "podman" (use one of systemd, docker, compose, kubernetes)`
	if err == nil || err.Error() != want {
		t.Errorf("err = %v, want %s", err, want)
	}
}

func TestSexagesimal(t *testing.T) {
	for s, want := range map[string]bool{
		"1000:1000": false, // :1000 is not a base-60 digit group
		"33:33":     true,  // www-data, read as 1983
		"10:30":     true,
		"1:2:3":     true,
		"-1:30.5":   true,
		"1000":      false,
		":30":       false,
		"a:30":      false,
		"10:60":     false,
		"10:30x":    false,
		"1_0:05":    true,
		"10:5:":     false,
	} {
		if got := sexagesimal(s); got != want {
			t.Errorf("sexagesimal(%q) = %v, want %v", s, got, want)
		}
	}
}

// TestSeccompOutputSameForRootless: the seccomp profile an export writes
// does not depend on who exports. A rootless run's spec notifies safe-run's
// own agent on this host of its denials (profiles.NotifyDenials); the
// export leaves that out, so the engine elsewhere gets the profile the
// manifest asks for, with no socket of this host's in it.
func TestSeccompOutputSameForRootless(t *testing.T) {
	job := prepare(t, "hardened")
	def, err := profiles.Seccomp(profiles.Options{Profile: "default", Arch: "amd64", Log: true})
	if err != nil {
		t.Fatal(err)
	}
	job.Spec.Linux.Seccomp = def
	asRoot, err := seccompOutput(job)
	if err != nil {
		t.Fatal(err)
	}
	notified, why := profiles.NotifyDenials(def, job.Placement.SeccompAgent())
	if why != "" || notified.ListenerPath == "" {
		t.Fatalf("the default profile takes no notifications: %s", why)
	}
	job.Spec.Linux.Seccomp = notified
	rootless, err := seccompOutput(job)
	if err != nil {
		t.Fatal(err)
	}
	if string(rootless.Data) != string(asRoot.Data) {
		t.Errorf("the rootless export's seccomp profile differs from root's")
	}
	for _, s := range []string{"listenerPath", "SCMP_ACT_NOTIFY", job.Placement.SeccompAgent()} {
		if strings.Contains(string(rootless.Data), s) {
			t.Errorf("the exported profile has %q", s)
		}
	}
}

// TestWriteComments: a comment quoting the manifest stays one comment
// line: a newline in a path would otherwise end it, and what follows
// would run in the docker script.
func TestWriteComments(t *testing.T) {
	var b strings.Builder
	writeComments(&b, "made from /srv/x\nrm -rf /srv", "\x1b[2J")
	if want := "# made from /srv/x\\nrm -rf /srv\n# \\x1b[2J\n"; b.String() != want {
		t.Errorf("writeComments wrote %q, want %q", b.String(), want)
	}
}
