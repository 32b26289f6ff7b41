package profiles

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	mobyseccomp "github.com/moby/profiles/seccomp"
	"github.com/opencontainers/runtime-spec/specs-go"
)

// dockerDifferences lists where the default profile decides differently
// from Docker's on purpose, by architecture ("" for both), capability set
// (as capsName prints it, "" for all) and call. TestDefaultMatchesDocker
// fails on a difference not listed here, and on an entry that no longer
// matches a difference.
var dockerDifferences = []struct {
	arch, caps, name string
	reason           string
}{
	// None: for amd64 and arm64 the default profile decides as Docker's
	// does, call by call, on the architectures both cover (x32 is
	// dockerArchDifferences'). Docker's ptrace rule, which depends on the
	// kernel, is compared for a kernel safe-run supports (dockerKernel);
	// argument tests are compared by the values they let through, so the
	// merged socket and personality rules compare equal (decisions).
}

// dockerArchDifferences lists the architectures Docker's default profile
// covers and ours leaves out, by GOARCH: a call of such an ABI is killed
// (libseccomp's bad-architecture action) instead of decided as Docker
// decides it.
var dockerArchDifferences = map[string][]specs.Arch{
	// x32: not built into most distributions' kernels, off by default in
	// Debian's, and all but unused; its section cost runc init about 18 ms
	// of CPU on every start (see builtin.compat, BenchmarkInitSeccomp).
	"amd64": {specs.ArchX32},
}

// dockerKernel is the kernel Docker's minKernel conditions are resolved
// for: any kernel safe-run supports gives the same result, as Docker's
// only condition is Linux 4.8.
var dockerKernel = mobyseccomp.KernelVersion{Kernel: 5, Major: 10}

// resolveDocker resolves Docker's profile for goarch and caps the way
// moby's setupSeccomp does, but for a given architecture and kernel
// instead of the host's.
func resolveDocker(t *testing.T, p *mobyseccomp.Seccomp, goarch string, caps []string) *specs.LinuxSeccomp {
	t.Helper()
	tgt, err := lookupTarget(goarch)
	if err != nil {
		t.Fatal(err)
	}
	kernelAtLeast := func(v *mobyseccomp.KernelVersion) bool {
		return dockerKernel.Kernel > v.Kernel || dockerKernel.Kernel == v.Kernel && dockerKernel.Major >= v.Major
	}
	s := p.LinuxSeccomp
	s.Syscalls = nil
	for _, a := range p.ArchMap {
		if a.Arch == tgt.native {
			s.Architectures = append([]specs.Arch{a.Arch}, a.SubArches...)
		}
	}
next:
	for _, call := range p.Syscalls {
		if f := call.Excludes; f != nil {
			if slices.Contains(f.Arches, goarch) {
				continue
			}
			for _, c := range f.Caps {
				if slices.Contains(caps, c) {
					continue next
				}
			}
			if f.MinKernel != nil && kernelAtLeast(f.MinKernel) {
				continue
			}
		}
		if f := call.Includes; f != nil {
			if len(f.Arches) > 0 && !slices.Contains(f.Arches, goarch) {
				continue
			}
			for _, c := range f.Caps {
				if !slices.Contains(caps, c) {
					continue next
				}
			}
			if f.MinKernel != nil && !kernelAtLeast(f.MinKernel) {
				continue
			}
		}
		s.Syscalls = append(s.Syscalls, call.LinuxSyscall)
	}
	return &s
}

// TestDefaultMatchesDocker compares, for every call either profile names,
// what our default profile and Docker's decide: allowed, allowed with
// which argument tests, or denied, and with which errno.
func TestDefaultMatchesDocker(t *testing.T) {
	used := make([]bool, len(dockerDifferences))
	for _, arch := range []string{"amd64", "arm64"} {
		for _, caps := range capSets() {
			t.Run(arch+"/"+capsName(caps), func(t *testing.T) {
				ours, err := Seccomp(Options{Profile: "default", Arch: arch, Capabilities: caps})
				if err != nil {
					t.Fatal(err)
				}
				docker := resolveDocker(t, mobyseccomp.DefaultProfile(), arch, caps)

				dockerArches := slices.DeleteFunc(slices.Clone(docker.Architectures), func(a specs.Arch) bool {
					return slices.Contains(dockerArchDifferences[arch], a)
				})
				if !slices.Equal(ours.Architectures, dockerArches) {
					t.Errorf("architectures: ours %v, Docker's %v less %v", ours.Architectures, docker.Architectures, dockerArchDifferences[arch])
				}
				if len(dockerArches) != len(docker.Architectures)-len(dockerArchDifferences[arch]) {
					t.Errorf("dockerArchDifferences[%s] = %v, but Docker's profile covers %v", arch, dockerArchDifferences[arch], docker.Architectures)
				}
				if effectiveAction(ours.DefaultAction, ours.DefaultErrnoRet) != effectiveAction(docker.DefaultAction, docker.DefaultErrnoRet) {
					t.Errorf("default action: ours %s, Docker's %s", effectiveAction(ours.DefaultAction, ours.DefaultErrnoRet), effectiveAction(docker.DefaultAction, docker.DefaultErrnoRet))
				}

				// Calls the filter's architectures do not have are
				// ignored by runc; Docker names some for other
				// architectures in its common list.
				known := syscallSet(docker.Architectures...)
				ourDecisions, dockerDecisions := decisions(ours, known), decisions(docker, known)
				names := slices.Sorted(maps.Keys(ourDecisions))
				for n := range dockerDecisions {
					if _, ok := ourDecisions[n]; !ok {
						names = append(names, n)
					}
				}
				slices.Sort(names)
				if len(names) < 300 {
					t.Fatalf("only %d calls compared; the comparison is broken", len(names))
				}
				for _, n := range names {
					o, d := orDenied(ourDecisions[n]), orDenied(dockerDecisions[n])
					if o == d {
						continue
					}
					i := slices.IndexFunc(dockerDifferences, func(e struct{ arch, caps, name, reason string }) bool {
						return e.name == n && (e.arch == "" || e.arch == arch) && (e.caps == "" || e.caps == capsName(caps))
					})
					if i < 0 {
						t.Errorf("%s: %s (fix the table in default.go, or list the difference in dockerDifferences with a reason)", n, ruleDiff(o, d))
						continue
					}
					used[i] = true
				}
			})
		}
	}
	for i, e := range dockerDifferences {
		if !used[i] {
			t.Errorf("dockerDifferences[%d] (%s) matches no difference any more; remove it", i, e.name)
		}
	}
}

// ruleDiff shows the rules only ours or only Docker's decision has.
func ruleDiff(ours, docker string) string {
	o, d := strings.Split(ours, " | "), strings.Split(docker, " | ")
	var onlyOurs, onlyDocker []string
	for _, r := range o {
		if !slices.Contains(d, r) {
			onlyOurs = append(onlyOurs, r)
		}
	}
	for _, r := range d {
		if !slices.Contains(o, r) {
			onlyDocker = append(onlyDocker, r)
		}
	}
	return fmt.Sprintf("only ours: %s; only Docker's: %s", strings.Join(onlyOurs, " | "), strings.Join(onlyDocker, " | "))
}

// TestDockerDefaultLoads loads Docker's own default profile, as the JSON
// file Docker ships, through our custom-profile loader, and checks that it
// decides as Docker does.
func TestDockerDefaultLoads(t *testing.T) {
	b, err := json.MarshalIndent(mobyseccomp.DefaultProfile(), "", "\t")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "docker-default.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	kernel := fmt.Sprintf("%d.%d.0-test", dockerKernel.Kernel, dockerKernel.Major)
	for _, arch := range []string{"amd64", "arm64"} {
		for _, caps := range capSets() {
			t.Run(arch+"/"+capsName(caps), func(t *testing.T) {
				got, err := Seccomp(Options{Profile: path, Arch: arch, Capabilities: caps, Kernel: kernel})
				if err != nil {
					t.Fatal(err)
				}
				want := resolveDocker(t, mobyseccomp.DefaultProfile(), arch, caps)
				if !slices.Equal(got.Architectures, want.Architectures) {
					t.Errorf("architectures: got %v, want %v", got.Architectures, want.Architectures)
				}
				g, w := decisions(got, nil), decisions(want, nil)
				if !maps.Equal(g, w) {
					for _, n := range slices.Sorted(maps.Keys(w)) {
						if g[n] != w[n] {
							t.Errorf("%s: got %s, want %s", n, orDenied(g[n]), orDenied(w[n]))
						}
					}
					for n := range g {
						if _, ok := w[n]; !ok {
							t.Errorf("%s: got %s, want denied", n, g[n])
						}
					}
				}
			})
		}
	}
}

// TestDockerNames checks that every call Docker's profile names is a call
// our tables know, so that no call is dropped from the comparison by a
// gap in them.
func TestDockerNames(t *testing.T) {
	for _, call := range mobyseccomp.DefaultProfile().Syscalls {
		for _, n := range call.Names {
			if !isSyscall(n) {
				t.Errorf("Docker's profile names %q, which syscalls.go does not know", n)
			}
		}
	}
	var onlyOther []string
	for _, call := range mobyseccomp.DefaultProfile().Syscalls {
		for _, n := range call.Names {
			if !syscallSet(specs.ArchX86_64, specs.ArchX86, specs.ArchAARCH64, specs.ArchARM)[n] {
				onlyOther = append(onlyOther, n)
			}
		}
	}
	t.Logf("Docker names these calls of other architectures, left out of the comparison: %s", strings.Join(onlyOther, " "))
}
