package profiles

import (
	"bytes"
	"fmt"
	"go/build"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/safe-run/safe-run/internal/testenv"
)

func TestGolden(t *testing.T) {
	for _, tc := range []struct {
		golden string
		opts   Options
	}{
		{"default-amd64.golden.json", Options{Profile: "default", Arch: "amd64", Log: true}},
		{"default-net-bind-service-arm64.golden.json", Options{Profile: "default", Arch: "arm64", Log: true, Capabilities: []string{"CAP_NET_BIND_SERVICE"}}},
		{"strict-amd64.golden.json", Options{Profile: "strict", Arch: "amd64", Log: true}},
		{"custom-web-amd64.golden.json", Options{Profile: "web.json", Dir: "testdata/custom", Arch: "amd64", Kernel: "6.1.0-18-amd64", Capabilities: []string{"CAP_NET_BIND_SERVICE"}}},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			s, err := Seccomp(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if err := WriteDockerJSON(&buf, s); err != nil {
				t.Fatal(err)
			}
			testenv.Golden(t, filepath.Join("testdata", tc.golden), buf.Bytes())
		})
	}
}

func TestOptionsErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"no profile", Options{Arch: "amd64"}, `seccomp: no profile given (use "default", "strict", "unconfined" or the path of a Docker-format JSON profile)`},
		{"no arch", Options{Profile: "default"}, "seccomp: no architecture given (set Options.Arch to runtime.GOARCH)"},
		{"unsupported arch", Options{Profile: "strict", Arch: "riscv64"}, `seccomp: architecture "riscv64" is not supported (use amd64 or arm64)`},
		{"cap without prefix", Options{Profile: "default", Arch: "amd64", Capabilities: []string{"NET_BIND_SERVICE"}}, `seccomp: capability "NET_BIND_SERVICE" must be given as "CAP_NET_BIND_SERVICE"`},
		{"unknown cap", Options{Profile: "default", Arch: "amd64", Capabilities: []string{"CAP_ROOT"}}, `seccomp: "CAP_ROOT" is not a Linux capability`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Seccomp(tc.opts)
			if err == nil {
				t.Fatalf("got a profile with %d rules, want error %q", len(s.Syscalls), tc.want)
			}
			if err.Error() != tc.want {
				t.Errorf("got error\n\t%s\nwant\n\t%s", err, tc.want)
			}
		})
	}
}

func TestUnconfined(t *testing.T) {
	s, err := Seccomp(Options{Profile: "unconfined"})
	if s != nil || err != nil {
		t.Errorf("got %v, %v; want nil, nil", s, err)
	}
	var buf bytes.Buffer
	if err := WriteDockerJSON(&buf, nil); err == nil {
		t.Errorf("WriteDockerJSON(nil) wrote %q, want an error", buf.String())
	}
}

func TestLogFlag(t *testing.T) {
	for _, profile := range []string{"default", "strict", "testdata/custom/web.json", "testdata/custom/logged.json"} {
		for _, log := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s log=%v", profile, log), func(t *testing.T) {
				s, err := Seccomp(Options{Profile: profile, Arch: "amd64", Log: log, Kernel: "6.1"})
				if err != nil {
					t.Fatal(err)
				}
				want := 0
				if log || strings.HasSuffix(profile, "logged.json") {
					want = 1 // logged.json asks for it itself, and it is not repeated
				}
				if n := count(s.Flags, specs.LinuxSeccompFlagLog); n != want {
					t.Errorf("flags %v: SECCOMP_FILTER_FLAG_LOG %d times, want %d", s.Flags, n, want)
				}
			})
		}
	}
}

func count[T comparable](list []T, v T) int {
	n := 0
	for _, x := range list {
		if x == v {
			n++
		}
	}
	return n
}

// TestBuiltinInvariants checks what libcontainer needs from the built-in
// profiles: denials return EPERM and never kill, every name is a call of
// the filter's architectures, and no call has two rules that libseccomp
// would refuse or silently merge.
func TestBuiltinInvariants(t *testing.T) {
	for _, profile := range []string{"default", "strict"} {
		for _, arch := range []string{"amd64", "arm64"} {
			for _, caps := range capSets() {
				t.Run(fmt.Sprintf("%s/%s/%s", profile, arch, capsName(caps)), func(t *testing.T) {
					s, err := Seccomp(Options{Profile: profile, Arch: arch, Capabilities: caps})
					if err != nil {
						t.Fatal(err)
					}
					if s.DefaultAction != specs.ActErrno || s.DefaultErrnoRet == nil || *s.DefaultErrnoRet != errnoEPERM {
						t.Errorf("default action %s errno %v, want SCMP_ACT_ERRNO with EPERM", s.DefaultAction, s.DefaultErrnoRet)
					}
					known := syscallSet(s.Architectures...)
					keys := map[string]string{}
					for i, sc := range s.Syscalls {
						if sc.Action != specs.ActAllow && sc.Action != specs.ActErrno {
							t.Errorf("syscalls[%d]: action %s, want SCMP_ACT_ALLOW or SCMP_ACT_ERRNO", i, sc.Action)
						}
						for _, n := range sc.Names {
							if !known[n] {
								t.Errorf("syscalls[%d]: %q is not a call of %v", i, n, s.Architectures)
							}
							for _, k := range ruleKeys(n, sc.Args) {
								if prev, ok := keys[k]; ok {
									t.Errorf("syscalls[%d]: rule %q repeats syscalls[%s]", i, k, prev)
								}
								keys[k] = fmt.Sprint(i)
							}
						}
					}
				})
			}
		}
	}
}

// capSets are the capability sets the profiles are checked with: none,
// each capability that changes Docker's profile alone, and some together.
func capSets() [][]string {
	sets := [][]string{
		nil,
		{"CAP_NET_BIND_SERVICE"},
		{"CAP_SYS_ADMIN", "CAP_SYS_PTRACE"},
		{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID",
			"CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SYS_CHROOT", "CAP_MKNOD", "CAP_AUDIT_WRITE",
			"CAP_SETFCAP"}, // Docker's default set
	}
	for _, c := range []string{"CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_BPF", "CAP_PERFMON", "CAP_SYS_TIME",
		"CAP_SYS_MODULE", "CAP_DAC_READ_SEARCH", "CAP_SYS_BOOT", "CAP_SYS_CHROOT", "CAP_SYS_PACCT",
		"CAP_SYS_RAWIO", "CAP_SYS_TTY_CONFIG", "CAP_SYS_NICE", "CAP_SYSLOG"} {
		sets = append(sets, []string{c})
	}
	var all []string
	for c := range strings.FieldsSeq(allCapabilities) {
		all = append(all, c)
	}
	return append(sets, all)
}

// allCapabilities is every capability isCapability knows;
// TestCapabilities checks the two agree.
const allCapabilities = `CAP_CHOWN CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_FOWNER CAP_FSETID
CAP_KILL CAP_SETGID CAP_SETUID CAP_SETPCAP CAP_LINUX_IMMUTABLE CAP_NET_BIND_SERVICE
CAP_NET_BROADCAST CAP_NET_ADMIN CAP_NET_RAW CAP_IPC_LOCK CAP_IPC_OWNER CAP_SYS_MODULE
CAP_SYS_RAWIO CAP_SYS_CHROOT CAP_SYS_PTRACE CAP_SYS_PACCT CAP_SYS_ADMIN CAP_SYS_BOOT
CAP_SYS_NICE CAP_SYS_RESOURCE CAP_SYS_TIME CAP_SYS_TTY_CONFIG CAP_MKNOD CAP_LEASE
CAP_AUDIT_WRITE CAP_AUDIT_CONTROL CAP_SETFCAP CAP_MAC_OVERRIDE CAP_MAC_ADMIN CAP_SYSLOG
CAP_WAKE_ALARM CAP_BLOCK_SUSPEND CAP_AUDIT_READ CAP_PERFMON CAP_BPF CAP_CHECKPOINT_RESTORE`

func capsName(caps []string) string {
	switch {
	case len(caps) == 0:
		return "none"
	case len(caps) > 20:
		return "all"
	case len(caps) > 3:
		return "docker"
	}
	return strings.Join(caps, "+")
}

// TestImports keeps the package's own code free of the container runtime
// and of Docker: it builds specs, and reads what the kernel reports about
// them (x/sys/unix for the audit socket and seccomp notifications,
// libseccomp to name call numbers as the filter did), and manifest, the
// stage before it, for the one FieldError type both report their files'
// mistakes with (manifest is pure: see its depcheck_test.go). Tests may
// use them.
func TestImports(t *testing.T) {
	allowed := []string{
		"github.com/safe-run/safe-run/manifest",
		"github.com/opencontainers/runtime-spec/specs-go",
		"golang.org/x/sys/unix",
		"github.com/seccomp/libseccomp-golang",
	}
	ctx := build.Default
	ctx.CgoEnabled = true
	ctx.BuildTags = []string{"seccomp"}
	for _, goos := range []string{"linux", "darwin"} {
		ctx.GOOS = goos
		pkg, err := ctx.ImportDir(".", 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range pkg.Imports {
			if strings.Contains(imp, ".") && !slices.Contains(allowed, imp) {
				t.Errorf("package profiles imports %s on %s; it may import only the standard library and %s", imp, goos, strings.Join(allowed, ", "))
			}
		}
	}
}
