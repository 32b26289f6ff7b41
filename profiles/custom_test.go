package profiles

import (
	"bytes"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/safe-run/safe-run/manifest"
)

// TestCustomErrors pins the message for each kind of mistake in a custom
// profile: the messages are what a user reads, so they are the contract.
func TestCustomErrors(t *testing.T) {
	for _, tc := range []struct {
		name, profile, want string
	}{
		{"actions", "bad/actions.json", `testdata/bad/actions.json:2:2: defaultAction: "SCMP_ACT_DENY" is not a seccomp action (use SCMP_ACT_ERRNO, SCMP_ACT_ALLOW, SCMP_ACT_KILL_PROCESS, SCMP_ACT_KILL_THREAD, SCMP_ACT_KILL, SCMP_ACT_TRAP, SCMP_ACT_TRACE, SCMP_ACT_LOG or SCMP_ACT_NOTIFY)
testdata/bad/actions.json:9:4: syscalls[3].action: "SCMP_ACT_FOO" is not a seccomp action (use SCMP_ACT_ERRNO, SCMP_ACT_ALLOW, SCMP_ACT_KILL_PROCESS, SCMP_ACT_KILL_THREAD, SCMP_ACT_KILL, SCMP_ACT_TRAP, SCMP_ACT_TRACE, SCMP_ACT_LOG or SCMP_ACT_NOTIFY)
testdata/bad/actions.json:11:3: syscalls[4].action: missing (use SCMP_ACT_ERRNO, SCMP_ACT_ALLOW, SCMP_ACT_KILL_PROCESS, SCMP_ACT_KILL_THREAD, SCMP_ACT_KILL, SCMP_ACT_TRAP, SCMP_ACT_TRACE, SCMP_ACT_LOG or SCMP_ACT_NOTIFY)`},
		{"arches", "bad/arches.json", `testdata/bad/arches.json:3:40: architectures[1]: "SCMP_ARCH_I386" is not a seccomp architecture (use SCMP_ARCH_X86_64, SCMP_ARCH_X86, SCMP_ARCH_X32, SCMP_ARCH_AARCH64 or SCMP_ARCH_ARM; runc also knows the MIPS, PowerPC, s390, RISC-V and LoongArch ones)
testdata/bad/arches.json:4:2: archMap: use either architectures or archMap, not both
testdata/bad/arches.json:5:4: archMap[0].architecture: "SCMP_ARCH_AMD64" is not a seccomp architecture (use SCMP_ARCH_X86_64, SCMP_ARCH_X86, SCMP_ARCH_X32, SCMP_ARCH_AARCH64 or SCMP_ARCH_ARM; runc also knows the MIPS, PowerPC, s390, RISC-V and LoongArch ones)
testdata/bad/arches.json:6:3: archMap[1].architecture: missing (use SCMP_ARCH_X86_64, SCMP_ARCH_X86, SCMP_ARCH_X32, SCMP_ARCH_AARCH64 or SCMP_ARCH_ARM; runc also knows the MIPS, PowerPC, s390, RISC-V and LoongArch ones)
testdata/bad/arches.json:8:39: flags[1]: "SECCOMP_FILTER_FLAG_NEW_LISTENER" is not a seccomp filter flag runc knows (use SECCOMP_FILTER_FLAG_LOG, SECCOMP_FILTER_FLAG_SPEC_ALLOW, SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV or SECCOMP_FILTER_FLAG_TSYNC)`},
		{"args", "bad/args.json", `testdata/bad/args.json:8:6: syscalls[0].args[0].index: 6 is not an argument index (use 0 to 5)
testdata/bad/args.json:9:30: syscalls[0].args[1].op: "SCMP_CMP_EQUAL" is not a seccomp comparison (use SCMP_CMP_EQ, SCMP_CMP_NE, SCMP_CMP_LT, SCMP_CMP_LE, SCMP_CMP_GT, SCMP_CMP_GE or SCMP_CMP_MASKED_EQ)
testdata/bad/args.json:10:5: syscalls[0].args[2].op: missing (use SCMP_CMP_EQ, SCMP_CMP_NE, SCMP_CMP_LT, SCMP_CMP_LE, SCMP_CMP_GT, SCMP_CMP_GE or SCMP_CMP_MASKED_EQ)
testdata/bad/args.json:11:30: syscalls[0].args[3].valueTwo: only SCMP_CMP_MASKED_EQ uses it (value is the mask, valueTwo what the masked argument must equal)
testdata/bad/args.json:12:32: syscalls[0].args[4].valueTwo: 0x100 has bits outside the mask 0xff in value, so the test never holds`},
		{"bad-literal", "bad/bad-literal.json", `testdata/bad/bad-literal.json:4:33: invalid character 'S' looking for beginning of value`},
		{"blank", "bad/blank.json", `testdata/bad/blank.json:1:1: the file is empty (want a seccomp profile in Docker's JSON format)`},
		{"conditions", "bad/conditions.json", `testdata/bad/conditions.json:4:74: syscalls[0].includes.caps[0]: "SYS_ADMIN" is not a Linux capability (use CAP_SYS_ADMIN)
testdata/bad/conditions.json:4:87: syscalls[0].includes.caps[1]: "CAP_ROOT" is not a Linux capability (see capabilities(7))
testdata/bad/conditions.json:5:81: syscalls[1].includes.arches[0]: "x86_64" is not an architecture name (use amd64, x86, x32, arm64 or arm; libseccomp's names for the others)
testdata/bad/conditions.json:6:66: syscalls[2].excludes.minKernel: "4" is not of the form "<major>.<minor>" (e.g. "5.8")
testdata/bad/conditions.json:7:63: syscalls[3].includes.minKernel: "v5.8" is not of the form "<major>.<minor>" (e.g. "5.8")
testdata/bad/conditions.json:8:75: syscalls[4].includes.minKernel: "5.8.1" is not of the form "<major>.<minor>" (e.g. "5.8")`},
		{"conflict", "bad/conflict.json", `testdata/bad/conflict.json:6:14: syscalls[2].names[0]: "write" already gets SCMP_ACT_ALLOW from syscalls[0] with the same argument tests (merge the two rules, or make their tests differ)
testdata/bad/conflict.json:8:14: syscalls[4].names[0]: "socket" already gets SCMP_ACT_ALLOW from syscalls[3] with the same argument tests (merge the two rules, or make their tests differ)`},
		{"default-errno", "bad/default-errno.json", `testdata/bad/default-errno.json:3:2: defaultErrnoRet: only SCMP_ACT_ERRNO and SCMP_ACT_TRACE return an errno (remove it, or change defaultAction)`},
		{"empty", "bad/empty.json", `testdata/bad/empty.json:1:1: the file is empty (want a seccomp profile in Docker's JSON format)`},
		{"errno", "bad/errno.json", `testdata/bad/errno.json:3:2: defaultErrnoRet: 0 would make every denied call succeed (use 1 for EPERM)
testdata/bad/errno.json:5:51: syscalls[0].errnoRet: only SCMP_ACT_ERRNO and SCMP_ACT_TRACE return an errno (remove it, or change the action)
testdata/bad/errno.json:6:52: syscalls[1].errnoRet: 5000 is not an errno (use 0 to 4095, e.g. 1 for EPERM)`},
		{"listener-unused", "bad/listener-unused.json", `testdata/bad/listener-unused.json:4:2: listenerMetadata: no rule uses SCMP_ACT_NOTIFY, so no agent would receive it (remove it)`},
		{"min-kernel", "bad/min-kernel.json", `testdata/bad/min-kernel.json:4:66: syscalls[0].includes.minKernel: cannot be checked: the host kernel release is unknown (Options.Kernel is empty)`},
		{"names", "bad/names.json", `testdata/bad/names.json:4:22: syscalls[0].names[1]: "opne" is not a Linux system call (check the spelling against syscalls(2))
testdata/bad/names.json:5:4: syscalls[1].name: use either name or names, not both
testdata/bad/names.json:6:4: syscalls[2].name: "wirte" is not a Linux system call (check the spelling against syscalls(2))
testdata/bad/names.json:7:4: syscalls[3].names: missing (list the system calls the rule is for)
testdata/bad/names.json:8:3: syscalls[4].names: missing (list the system calls the rule is for)`},
		{"not-object", "bad/not-object.json", `testdata/bad/not-object.json:1:1: want an object, not a list`},
		{"notify-default", "bad/notify-default.json", `testdata/bad/notify-default.json:2:2: defaultAction: SCMP_ACT_NOTIFY cannot be the default action: runc init writes to its parent after loading the filter, and would wait for the agent forever (use SCMP_ACT_ERRNO)`},
		{"notify-no-listener", "bad/notify-no-listener.json", `testdata/bad/notify-no-listener.json:5:24: syscalls[0].action: SCMP_ACT_NOTIFY needs listenerPath, the seccomp agent's socket`},
		{"notify-write", "bad/notify-write.json", `testdata/bad/notify-write.json:3:2: listenerPath: "agent.sock" is not an absolute path (give the seccomp agent's socket as /path/to/socket)
testdata/bad/notify-write.json:5:32: syscalls[0].action: SCMP_ACT_NOTIFY cannot apply to "write": runc init writes to its parent after loading the filter, and would wait for the agent forever (give write its own rule)`},
		{"repeated-key", "bad/repeated-key.json", `testdata/bad/repeated-key.json:6:2: defaultAction: repeated key (first set on line 2)`},
		{"syntax", "bad/syntax.json", `testdata/bad/syntax.json:4:50: a comma before ']': JSON allows no trailing comma (remove it)`},
		{"trailing-data", "bad/trailing-data.json", `testdata/bad/trailing-data.json:4:2: invalid character '}' after top-level value`},
		{"trailing", "bad/trailing.json", `testdata/bad/trailing.json:4:1: unexpected data after the profile's closing brace`},
		{"truncated", "bad/truncated.json", `testdata/bad/truncated.json:5:1: unexpected end of file (a bracket or brace is not closed)`},
		{"unknown-key", "bad/unknown-key.json", `testdata/bad/unknown-key.json:2:2: DefaultAction: unknown key (did you mean "defaultAction"?)
testdata/bad/unknown-key.json:4:63: syscalls[0].note: unknown key (use names, name, action, errnoRet, args, comment, includes, excludes)`},
		{"wrong-kind", "bad/wrong-kind.json", `testdata/bad/wrong-kind.json:3:2: defaultErrnoRet: want a whole number, not "1"
testdata/bad/wrong-kind.json:5:4: syscalls[0].names: want a list of strings, not "read"
testdata/bad/wrong-kind.json:6:24: syscalls[1].action: want a string, not a list
testdata/bad/wrong-kind.json:7:62: syscalls[2].args[0].index: -1 is not a whole number from 0 up
testdata/bad/wrong-kind.json:7:75: syscalls[2].args[0].value: 1.5 is not a whole number from 0 up
testdata/bad/wrong-kind.json:8:73: syscalls[3].args[0].value: 18446744073709551616 is too large
testdata/bad/wrong-kind.json:9:14: syscalls[4].names[0]: want a string, not 1
testdata/bad/wrong-kind.json:9:46: syscalls[4].includes: want an object, not a list`},
		{"directory", "bad", `seccomp profile testdata/bad: not a regular file`},
		{"missing", "missing.json", `seccomp profile: stat testdata/missing.json: no such file or directory (use "default", "strict", "unconfined" or the path of a Docker-format JSON profile, relative to the manifest)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Seccomp(Options{Profile: tc.profile, Dir: "testdata", Arch: "amd64"})
			if err == nil {
				t.Fatalf("got a profile with %d rules, want error\n%s", len(s.Syscalls), tc.want)
			}
			if err.Error() != tc.want {
				t.Errorf("got error\n%s\nwant\n%s", err, tc.want)
			}
		})
	}
}

func TestCustomErrorValues(t *testing.T) {
	_, err := Seccomp(Options{Profile: "missing.json", Dir: "testdata", Arch: "amd64"})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing profile: got %v, want an error that is fs.ErrNotExist", err)
	}

	_, err = Seccomp(Options{Profile: "bad/actions.json", Dir: "testdata", Arch: "amd64"})
	fe, ok := errors.AsType[*manifest.FieldError](err)
	if !ok {
		t.Fatalf("got %T, want a *manifest.FieldError in the error tree", err)
	}
	want := manifest.FieldError{File: "testdata/bad/actions.json", Line: 2, Column: 2, Path: "defaultAction",
		Msg: fe.Msg} // the message is pinned in TestCustomErrors
	if *fe != want {
		t.Errorf("got %+v, want %+v", *fe, want)
	}

	big := filepath.Join(t.TempDir(), "big.json")
	if err := os.WriteFile(big, bytes.Repeat([]byte(" "), maxProfileSize+1), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Seccomp(Options{Profile: big, Dir: "ignored for an absolute path", Arch: "amd64"})
	if want := "seccomp profile " + big + ": larger than 1 MiB, which no seccomp profile needs"; err == nil || err.Error() != want {
		t.Errorf("got error %v, want %q", err, want)
	}
}

// TestCustomConditions resolves testdata/custom/web.json, which has a rule
// for each kind of condition, for several capability sets, architectures
// and kernels.
func TestCustomConditions(t *testing.T) {
	for _, tc := range []struct {
		name          string
		opts          Options
		allowed, gone []string
	}{
		{
			name:    "amd64, no capabilities",
			opts:    Options{Arch: "amd64", Kernel: "6.1.0-18-amd64"},
			allowed: []string{"arch_prctl", "ptrace", "read", "setuid", "io_uring_setup"},
			gone:    []string{"chroot"},
		},
		{
			name:    "arm64 with CAP_SYS_CHROOT and CAP_NET_BIND_SERVICE",
			opts:    Options{Arch: "arm64", Kernel: "5.15", Capabilities: []string{"CAP_SYS_CHROOT", "CAP_NET_BIND_SERVICE"}},
			allowed: []string{"chroot", "ptrace"},
			gone:    []string{"arch_prctl", "setuid"},
		},
		{
			name: "old kernel",
			opts: Options{Arch: "amd64", Kernel: "4.4.0-210-generic"},
			gone: []string{"ptrace"},
		},
		{
			name: "newer kernel than the exclusion",
			opts: Options{Arch: "amd64", Kernel: "99.1"},
			gone: []string{"io_uring_setup"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := tc.opts
			opts.Profile, opts.Dir = "web.json", "testdata/custom"
			s, err := Seccomp(opts)
			if err != nil {
				t.Fatal(err)
			}
			d := decisions(s, nil)
			for _, n := range tc.allowed {
				if d[n] == "" {
					t.Errorf("%s is denied, want a rule for it", n)
				}
			}
			for _, n := range tc.gone {
				if d[n] != "" {
					t.Errorf("%s: %s, want no rule for it", n, d[n])
				}
			}
			wantArches := map[string]int{"amd64": 3, "arm64": 2}[opts.Arch]
			if len(s.Architectures) != wantArches {
				t.Errorf("architectures %v, want %d from archMap", s.Architectures, wantArches)
			}
		})
	}
}

// TestWriteDockerJSONRoundTrip writes profiles in Docker's format and loads
// them back as custom profiles: the result must be the same profile.
func TestWriteDockerJSONRoundTrip(t *testing.T) {
	for _, opts := range []Options{
		{Profile: "default", Arch: "amd64"},
		{Profile: "default", Arch: "arm64", Capabilities: []string{"CAP_NET_BIND_SERVICE"}, Log: true},
		{Profile: "default", Arch: "amd64", Capabilities: []string{"CAP_SYS_ADMIN", "CAP_SYS_PTRACE"}},
		{Profile: "strict", Arch: "amd64", Log: true},
		{Profile: "strict", Arch: "arm64"},
		{Profile: "testdata/custom/web.json", Arch: "amd64", Kernel: "6.1"},
	} {
		t.Run(opts.Profile+"/"+opts.Arch+"/"+capsName(opts.Capabilities), func(t *testing.T) {
			want, err := Seccomp(opts)
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if err := WriteDockerJSON(&buf, want); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "exported.json")
			if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			reload := opts
			reload.Profile = path
			got, err := Seccomp(reload)
			if err != nil {
				t.Fatalf("loading the written profile: %v", err)
			}
			if g, w := decisions(got, nil), decisions(want, nil); !maps.Equal(g, w) {
				for _, n := range slices.Sorted(maps.Keys(w)) {
					if g[n] != w[n] {
						t.Errorf("%s: %s after the round trip, %s before", n, orDenied(g[n]), orDenied(w[n]))
					}
				}
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("the profile changed in the round trip:\ngot  %+v\nwant %+v", got, want)
			}
		})
	}
}
