//go:build linux && cgo && seccomp

package profiles

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/specconv"
	"github.com/opencontainers/runtime-spec/specs-go"
	libseccomp "github.com/seccomp/libseccomp-golang"
)

// libseccompArch is the name libseccomp-golang gives a spec architecture.
func libseccompArch(t *testing.T, a specs.Arch) libseccomp.ScmpArch {
	t.Helper()
	name := strings.ToLower(strings.TrimPrefix(string(a), "SCMP_ARCH_"))
	switch name {
	case "x86_64":
		name = "amd64"
	case "aarch64":
		name = "arm64"
	}
	arch, err := libseccomp.GetArchFromString(name)
	if err != nil {
		t.Fatal(err)
	}
	return arch
}

// TestSyscallTables checks syscalls.go against the host's libseccomp: every
// call libseccomp knows for an architecture is in our table for it, and
// every call in our table that libseccomp knows at all is one of that
// architecture's. Calls newer than the host's libseccomp are only logged.
func TestSyscallTables(t *testing.T) {
	all := []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32, specs.ArchAARCH64, specs.ArchARM,
		specs.ArchMIPS, specs.ArchMIPS64, specs.ArchPPC64LE, specs.ArchS390X, specs.ArchRISCV64}
	major, minor, micro := libseccomp.GetLibraryVersion()
	t.Logf("libseccomp %d.%d.%d", major, minor, micro)

	// known reports whether libseccomp has name on arch, with a real
	// number (it gives calls an architecture lacks negative ones).
	known := func(name string, arch libseccomp.ScmpArch) bool {
		nr, err := libseccomp.GetSyscallFromNameByArch(name, arch)
		return err == nil && nr >= 0
	}
	for _, a := range []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32, specs.ArchAARCH64, specs.ArchARM} {
		t.Run(string(a), func(t *testing.T) {
			arch := libseccompArch(t, a)
			ours := syscallSet(a)
			theirs := map[string]bool{}
			for nr := range 0x1000 {
				for _, base := range []int{0, 0x40000000, 0x0f0000} { // x32's bit, ARM's private calls
					name, err := libseccomp.ScmpSyscall(base + nr).GetNameByArch(arch)
					if err == nil && name != "" {
						theirs[name] = true
					}
				}
			}
			if len(theirs) < 250 {
				t.Fatalf("libseccomp names only %d calls for %s", len(theirs), a)
			}
			for n := range theirs {
				if !ours[n] {
					t.Errorf("libseccomp has %q on %s; add it to syscalls.go", n, a)
				}
			}
			var newer []string
			for n := range ours {
				if theirs[n] || known(n, arch) {
					continue
				}
				if slices.ContainsFunc(all, func(b specs.Arch) bool { return known(n, libseccompArch(t, b)) }) {
					if a != specs.ArchX32 { // our x32 table is x86_64's; see syscallNames
						t.Errorf("syscalls.go has %q on %s, which libseccomp puts on other architectures only", n, a)
					}
					continue
				}
				newer = append(newer, n)
			}
			slices.Sort(newer)
			t.Logf("newer than this libseccomp, ignored by runc here: %s", strings.Join(newer, " "))
		})
	}
}

// TestProfilesBuild builds every built-in profile into a BPF program with
// libseccomp, rule by rule as runc's InitSeccomp does, without loading it:
// libseccomp must accept every rule. It needs no privileges.
func TestProfilesBuild(t *testing.T) {
	for _, profile := range []string{"default", "strict"} {
		for _, arch := range []string{"amd64", "arm64"} {
			for _, caps := range capSets() {
				t.Run(fmt.Sprintf("%s/%s/%s", profile, arch, capsName(caps)), func(t *testing.T) {
					s, err := Seccomp(Options{Profile: profile, Arch: arch, Capabilities: caps, Log: true})
					if err != nil {
						t.Fatal(err)
					}
					cfg, err := specconv.SetupSeccomp(s)
					if err != nil {
						t.Fatalf("specconv.SetupSeccomp: %v", err)
					}
					if err := buildFilter(cfg); err != nil {
						t.Fatal(err)
					}
				})
			}
		}
	}
}

// buildFilter repeats what runc v1.5.2's InitSeccomp does with a config up
// to loading it (libcontainer/seccomp/seccomp_linux.go), and exports the
// program.
func buildFilter(cfg *configs.Seccomp) error {
	action := func(a configs.Action, errno *uint) (libseccomp.ScmpAction, error) {
		e := int16(errnoEPERM)
		if errno != nil {
			e = int16(*errno)
		}
		switch a {
		case configs.Allow:
			return libseccomp.ActAllow, nil
		case configs.Errno:
			return libseccomp.ActErrno.SetReturnCode(e), nil
		}
		return libseccomp.ActInvalid, fmt.Errorf("built-in profiles use allow and errno only, not %v", a)
	}
	def, err := action(cfg.DefaultAction, cfg.DefaultErrnoRet)
	if err != nil {
		return err
	}
	filter, err := libseccomp.NewFilter(def)
	if err != nil {
		return err
	}
	defer filter.Release()
	for _, a := range cfg.Architectures {
		arch, err := libseccomp.GetArchFromString(a)
		if err != nil {
			return err
		}
		if err := filter.AddArch(arch); err != nil {
			return fmt.Errorf("adding %s: %w", a, err)
		}
	}
	if err := filter.SetLogBit(true); err != nil {
		return err
	}
	for _, call := range cfg.Syscalls {
		act, err := action(call.Action, call.ErrnoRet)
		if err != nil {
			return err
		}
		if act == def {
			continue
		}
		nr, err := libseccomp.GetSyscallFromName(call.Name)
		if err != nil {
			continue // runc skips calls libseccomp does not know
		}
		var conds []libseccomp.ScmpCondition
		indexes := map[uint]int{}
		for _, a := range call.Args {
			op := map[configs.Operator]libseccomp.ScmpCompareOp{
				configs.EqualTo: libseccomp.CompareEqual, configs.NotEqualTo: libseccomp.CompareNotEqual,
				configs.GreaterThan: libseccomp.CompareGreater, configs.GreaterThanOrEqualTo: libseccomp.CompareGreaterEqual,
				configs.LessThan: libseccomp.CompareLess, configs.LessThanOrEqualTo: libseccomp.CompareLessOrEqual,
				configs.MaskEqualTo: libseccomp.CompareMaskedEqual,
			}[a.Op]
			c, err := libseccomp.MakeCondition(a.Index, op, a.Value, a.ValueTwo)
			if err != nil {
				return fmt.Errorf("%s: %w", call.Name, err)
			}
			conds = append(conds, c)
			indexes[a.Index]++
		}
		switch {
		case len(conds) == 0:
			err = filter.AddRule(nr, act)
		case len(indexes) < len(conds): // an argument tested twice: one rule per test
			for _, c := range conds {
				if err = filter.AddRuleConditional(nr, act, []libseccomp.ScmpCondition{c}); err != nil {
					break
				}
			}
		default:
			err = filter.AddRuleConditional(nr, act, conds)
		}
		if err != nil {
			return fmt.Errorf("adding the rule for %s: %w", call.Name, err)
		}
	}
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer devNull.Close()
	return filter.ExportBPF(devNull)
}
