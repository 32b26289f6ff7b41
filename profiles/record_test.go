package profiles

import (
	"bytes"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"
)

// rulesFor returns the rules of s that name n.
func rulesFor(s *specs.LinuxSeccomp, n string) []specs.LinuxSyscall {
	var out []specs.LinuxSyscall
	for _, sc := range s.Syscalls {
		if slices.Contains(sc.Names, n) {
			out = append(out, sc)
		}
	}
	return out
}

func actionsFor(s *specs.LinuxSeccomp, n string) []string {
	var out []string
	for _, sc := range rulesFor(s, n) {
		out = append(out, effectiveAction(sc.Action, sc.ErrnoRet))
	}
	return out
}

func TestRecordingVariant(t *testing.T) {
	def, err := Seccomp(Options{Profile: "default", Arch: "amd64"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		listener string
		report   specs.LinuxSeccompAction
	}{
		{"root", "", specs.ActLog},
		{"rootless", "/run/safe-run/web/seccomp.sock", specs.ActNotify},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := NewRecording(def, RecordOptions{Arch: "amd64", Listener: tc.listener})
			if err != nil {
				t.Fatal(err)
			}
			v := r.Spec()
			if v.ListenerPath != tc.listener {
				t.Errorf("listenerPath %q, want %q", v.ListenerPath, tc.listener)
			}
			if !slices.Contains(v.Flags, specs.LinuxSeccompFlagLog) {
				t.Errorf("flags %v lack SECCOMP_FILTER_FLAG_LOG: denials would not show while recording", v.Flags)
			}
			if v.DefaultAction != specs.ActErrno {
				t.Errorf("default action %s: the variant must deny what the base denies", v.DefaultAction)
			}
			for n, want := range map[string][]string{
				"openat":  {string(tc.report)},                            // reported
				"write":   {string(specs.ActAllow)},                       // runtime call, never reported
				"futex":   {string(specs.ActAllow)},                       // runtime call
				"clone3":  {"SCMP_ACT_ERRNO(38)"},                         // glibc falls back to clone
				"unshare": nil,                                            // denied by default (root)
				"socket":  slices.Repeat([]string{string(tc.report)}, 12), // every family rule kept, reported
			} {
				got := actionsFor(v, n)
				if n == "unshare" && tc.listener != "" {
					want = []string{string(specs.ActNotify)} // a denial, reported
				}
				if !slices.Equal(got, want) {
					t.Errorf("%s: actions %v, want %v", n, got, want)
				}
			}
			// The clone rule keeps its namespace test.
			if rs := rulesFor(v, "clone"); len(rs) != 1 || len(rs[0].Args) != 1 || rs[0].Action != specs.ActAllow {
				t.Errorf("clone rules %+v, want the base's, allowed", rs)
			}
			if tc.listener != "" {
				for _, sc := range v.Syscalls {
					if sc.Action == specs.ActNotify && slices.Contains(sc.Names, "write") {
						t.Error("write notifies: libcontainer refuses it")
					}
				}
			}
			// Notifications: the base's allowed calls continue, the
			// a denial, reporteds do not.
			if !r.saw("openat") || r.saw("unshare") || r.saw("bogus") {
				t.Error("saw: openat must continue, unshare and unknown calls must not")
			}
		})
	}
}

func TestRecordedProfile(t *testing.T) {
	def, err := Seccomp(Options{Profile: "default", Arch: "amd64", Log: true})
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewRecording(def, RecordOptions{Arch: "amd64"})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"openat", "socket", "clone", "clone3", "execve", "unshare"} {
		r.saw(n)
	}
	if got, want := r.Used(), []string{"execve", "openat", "socket"}; !slices.Equal(got, want) {
		t.Errorf("used %v, want %v (clone is a runtime call, never reported; unshare is not the base's to allow; clone3 is never allowed)", got, want)
	}
	p, err := r.Profile()
	if err != nil {
		t.Fatal(err)
	}
	// clone is allowed with its namespace test, in a rule of its own;
	// safe-run-init's and runc init's calls are there, seen or not.
	want := append([]string{"execve", "openat"}, slices.DeleteFunc(slices.Clone(runtimeCalls), func(n string) bool { return n == "clone" })...)
	want = append(want, InitCalls("amd64")...)
	want = append(want, runcInitCalls...)
	slices.Sort(want)
	want = slices.Compact(want)
	if rs := rulesFor(p, "clone"); len(rs) != 1 || len(rs[0].Args) != 1 {
		t.Errorf("clone rules %+v, want the base's one with its namespace test", rs)
	}
	if got := p.Syscalls[0].Names; p.Syscalls[0].Action != specs.ActAllow || !slices.Equal(got, want) {
		t.Errorf("first rule %s %v, want SCMP_ACT_ALLOW %v", p.Syscalls[0].Action, got, want)
	}
	if len(p.Flags) != 0 {
		t.Errorf("flags %v, want none (seccomp_log adds the log flag)", p.Flags)
	}
	if n := len(rulesFor(p, "socket")); n != 12 {
		t.Errorf("%d socket rules, want the base's 12 address-family rules", n)
	}
	if got := actionsFor(p, "clone3"); !slices.Equal(got, []string{"SCMP_ACT_ERRNO(38)"}) {
		t.Errorf("clone3: %v, want ENOSYS", got)
	}
	if rulesFor(p, "unshare") != nil || rulesFor(p, "mmap2") != nil {
		t.Error("the profile allows calls that were not made")
	}
	if !slices.Equal(p.Architectures, def.Architectures) {
		t.Errorf("architectures %v, want the base's %v", p.Architectures, def.Architectures)
	}
	// It loads as a custom profile, as seccomp = "web.json" will.
	var buf bytes.Buffer
	if err := WriteDockerJSON(&buf, p); err != nil {
		t.Fatal(err)
	}
	path := t.TempDir() + "/web.json"
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	loaded, err := Seccomp(Options{Profile: path, Arch: "amd64"})
	if err != nil {
		t.Fatal(err)
	}
	if d := Diff(p, loaded); len(d) > 0 {
		t.Errorf("the written profile differs from the recorded one:\n%s", strings.Join(d, "\n"))
	}
}

func TestRecordUnconfined(t *testing.T) {
	for _, listener := range []string{"", "/run/x.sock"} {
		r, err := NewRecording(nil, RecordOptions{Arch: "amd64", Listener: listener})
		if err != nil {
			t.Fatal(err)
		}
		v := r.Spec()
		if listener == "" && v.DefaultAction != specs.ActLog {
			t.Errorf("root: default action %s, want SCMP_ACT_LOG", v.DefaultAction)
		}
		if listener != "" {
			if v.DefaultAction != specs.ActAllow || !slices.Equal(actionsFor(v, "unshare"), []string{string(specs.ActNotify)}) {
				t.Errorf("rootless: default %s, unshare %v; want SCMP_ACT_ALLOW and a notification", v.DefaultAction, actionsFor(v, "unshare"))
			}
		}
		r.saw("unshare")
		p, err := r.Profile()
		if err != nil {
			t.Fatal(err)
		}
		if p.DefaultAction != specs.ActErrno || !slices.Contains(p.Syscalls[0].Names, "unshare") {
			t.Errorf("recorded: default %s, allowed %v; want SCMP_ACT_ERRNO and unshare allowed", p.DefaultAction, p.Syscalls[0].Names)
		}
	}
}

func TestRecordingRefuses(t *testing.T) {
	base := &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Architectures: []specs.Arch{specs.ArchX86_64},
		Syscalls: []specs.LinuxSyscall{{Names: []string{"write", "read", "close"}, Action: specs.ActAllow}}}
	_, err := NewRecording(base, RecordOptions{Arch: "amd64", Listener: "/x.sock"})
	want := "recording without root: the profile does not allow recvfrom, which runc needs to hand the notifications over (allow them, or record as root)"
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %q", err, want)
	}
	base.ListenerPath = "/agent.sock"
	if _, err := NewRecording(base, RecordOptions{Arch: "amd64"}); err == nil {
		t.Error("a profile with its own agent was accepted")
	}
	r, err := NewRecording(nil, RecordOptions{Arch: "amd64"})
	if err != nil {
		t.Fatal(err)
	}
	r.incomplete(errLost)
	if _, err := r.Profile(); err == nil || !strings.Contains(err.Error(), "the recording is incomplete") {
		t.Errorf("an incomplete recording gave %v", err)
	}
}

type lostError struct{}

func (lostError) Error() string { return "lost" }

var errLost = lostError{}

func TestNotifyDenials(t *testing.T) {
	def, err := Seccomp(Options{Profile: "default", Arch: "amd64", Log: true})
	if err != nil {
		t.Fatal(err)
	}
	got, why := NotifyDenials(def, "/run/web/seccomp.sock")
	if why != "" || got.ListenerPath != "/run/web/seccomp.sock" {
		t.Fatalf("got listener %q, why %q", got.ListenerPath, why)
	}
	last := got.Syscalls[len(got.Syscalls)-1]
	if last.Action != specs.ActNotify || !slices.Contains(last.Names, "unshare") || !slices.Contains(last.Names, "mount") {
		t.Errorf("last rule %s %v, want notifications for unshare and mount", last.Action, last.Names)
	}
	for _, n := range []string{"clone", "personality", "write", "io_uring_setup_x"} {
		if slices.Contains(last.Names, n) {
			t.Errorf("%s notifies: the profile decides it with a rule of its own, or it is not a call", n)
		}
	}
	if len(def.Syscalls) == len(got.Syscalls) || def.ListenerPath != "" {
		t.Error("NotifyDenials changed its argument")
	}
	if d := Diff(def, got); !slices.Contains(d, "+ unshare: SCMP_ACT_NOTIFY") {
		t.Errorf("diff:\n%s", strings.Join(d, "\n"))
	}
	// Undone for an export: the profile as it was, whoever exports.
	if back := DropNotifyDenials(got, "/run/web/seccomp.sock"); !reflect.DeepEqual(back, def) {
		t.Errorf("DropNotifyDenials did not give the profile back: %s", strings.Join(Diff(def, back), "\n"))
	}
	if len(got.Syscalls) == len(def.Syscalls) || got.ListenerPath == "" {
		t.Error("DropNotifyDenials changed its argument")
	}
	for _, s := range []*specs.LinuxSeccomp{def, {DefaultAction: specs.ActErrno, ListenerPath: "/a", Syscalls: []specs.LinuxSyscall{{Names: []string{"mount"}, Action: specs.ActNotify}}}, nil} {
		if back := DropNotifyDenials(s, "/run/web/seccomp.sock"); back != s {
			t.Errorf("DropNotifyDenials changed a profile without safe-run's agent: %+v", back)
		}
	}

	for _, tc := range []struct {
		name string
		s    *specs.LinuxSeccomp
		why  string
	}{
		{"kill", &specs.LinuxSeccomp{DefaultAction: specs.ActKillProcess}, "its default action is SCMP_ACT_KILL_PROCESS, not SCMP_ACT_ERRNO"},
		{"agent", &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, ListenerPath: "/a"}, "it has a seccomp agent of its own"},
		{"handoff", &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{{Names: []string{"read", "write"}, Action: specs.ActAllow}}},
			"it does not allow close or recvfrom, which runc needs to hand notifications over"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, why := NotifyDenials(tc.s, "/x")
			if got != tc.s || why != tc.why {
				t.Errorf("why %q, want %q", why, tc.why)
			}
		})
	}
}

func TestDiff(t *testing.T) {
	eperm, enosys := uint(1), uint(38)
	a := &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, DefaultErrnoRet: &eperm, Architectures: []specs.Arch{specs.ArchX86_64},
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"read", "write", "mlock"}, Action: specs.ActAllow},
			{Names: []string{"socket"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{argEq(0, afInet)}},
			{Names: []string{"clone3"}, Action: specs.ActErrno, ErrnoRet: &enosys},
		}}
	b := &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86},
		Flags: []specs.LinuxSeccompFlag{specs.LinuxSeccompFlagLog},
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"read", "write", "getrandom", "socket"}, Action: specs.ActAllow},
			{Names: []string{"read"}, Action: specs.ActErrno}, // repeats the default: runc skips it
			{Names: []string{"clone3"}, Action: specs.ActErrno},
		}}
	want := []string{
		"architectures: SCMP_ARCH_X86_64 -> SCMP_ARCH_X86_64 SCMP_ARCH_X86",
		"flags: (none) -> SECCOMP_FILTER_FLAG_LOG",
		"~ clone3: SCMP_ACT_ERRNO(38) -> SCMP_ACT_ERRNO(1)",
		"+ getrandom: SCMP_ACT_ALLOW",
		"- mlock: SCMP_ACT_ALLOW",
		"~ socket: SCMP_ACT_ALLOW if arg0 in [2] -> SCMP_ACT_ALLOW",
	}
	if got := Diff(a, b); !slices.Equal(got, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := Diff(a, a); len(got) != 0 {
		t.Errorf("a profile differs from itself: %q", got)
	}
	if got := Diff(nil, a); len(got) == 0 || got[0] != "default action: SCMP_ACT_ALLOW -> SCMP_ACT_ERRNO(1)" {
		t.Errorf("unconfined to a: %q", got)
	}
}
