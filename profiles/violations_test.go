package profiles

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"
)

func TestParseAuditSeccomp(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       auditRecord
		ok         bool
	}{
		{
			// As this host's 6.18 kernel writes it.
			name: "errno",
			text: `audit(1795468841.704:424): auid=4294967295 uid=1073741824 gid=1073741824 ses=4294967295 pid=505 comm="unshare" exe="/bin/busybox" sig=0 arch=c000003e syscall=272 compat=0 ip=0x4815c7 code=0x50000`,
			want: auditRecord{uid: 1073741824, pid: 505, comm: "unshare", arch: auditArchX86_64, nr: 272, code: retErrno},
			ok:   true,
		},
		{
			name: "log, hex comm, LSM context",
			text: `audit(1.2:3): auid=1000 uid=1000 gid=1000 ses=2 subj=unconfined pid=77 comm=6D7920617070 exe="/app" sig=0 arch=40000003 syscall=102 compat=1 ip=0x1 code=0x7ffc0000`,
			want: auditRecord{uid: 1000, pid: 77, comm: "my app", arch: auditArchI386, nr: 102, code: retLog},
			ok:   true,
		},
		{
			name: "kill",
			text: `audit(1.2:3): auid=0 uid=0 gid=0 ses=1 pid=9 comm="x" exe="/x" sig=31 arch=c00000b7 syscall=117 compat=0 ip=0x1 code=0x80000000`,
			want: auditRecord{uid: 0, pid: 9, comm: "x", arch: auditArchAArch64, nr: 117, code: retKillProcess},
			ok:   true,
		},
		{name: "not seccomp", text: `audit(1.2:3): pid=1 uid=0 auid=0 ses=1 msg='op=login'`},
		{name: "bad number", text: `audit(1.2:3): uid=x pid=1 arch=c000003e syscall=1 code=0x0`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := parseAuditSeccomp(tc.text)
			if ok != tc.ok || ok && got != tc.want {
				t.Errorf("got %+v, %v; want %+v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestCallName(t *testing.T) {
	native, nativeNr := nativeAuditArch(), 272
	for _, tc := range []struct {
		name string
		arch uint32
		nr   int
		want string
	}{
		{"unshare", native, nativeNr, "unshare (syscall 272)"},
		{"socketcall", auditArchI386, 102, "socketcall (i386 syscall 102)"},
		{"unshare", auditArchX86_64, x32SyscallBit | 272, "unshare (x32 syscall 272)"},
		{"", native, 999, "syscall 999"},
	} {
		if got := callName(tc.name, tc.arch, tc.nr); got != tc.want && !(tc.arch == auditArchX86_64 && native != auditArchX86_64) {
			t.Errorf("callName(%q, %#x, %d) = %q, want %q", tc.name, tc.arch, tc.nr, got, tc.want)
		}
	}
}

// TestReporter pins the violation lines and their rate limit: five lines
// a second for each call, then one line for the rest once the second is
// over.
func TestReporter(t *testing.T) {
	var buf bytes.Buffer
	r := newReporter(&buf, "web")
	now := time.Unix(1000, 0)
	r.now = func() time.Time { return now }
	for i := range 8 {
		r.violation("unshare (syscall 272)", retErrno, who(event{pid: 7 + i, comm: "unshare"}))
	}
	r.violation("ptrace (syscall 101)", retKillProcess, who(event{host: 4242, comm: "gdb"}))
	r.flush(false) // the second is not over: no summary yet
	now = now.Add(1500 * time.Millisecond)
	r.flush(false)
	r.violation("unshare (syscall 272)", retErrno, who(event{pid: 20}))
	r.flush(true)
	want := `safe-run: web: seccomp denied unshare (syscall 272) pid 7 (unshare)
safe-run: web: seccomp denied unshare (syscall 272) pid 8 (unshare)
safe-run: web: seccomp denied unshare (syscall 272) pid 9 (unshare)
safe-run: web: seccomp denied unshare (syscall 272) pid 10 (unshare)
safe-run: web: seccomp denied unshare (syscall 272) pid 11 (unshare)
safe-run: web: seccomp denied ptrace (syscall 101) host pid 4242 (gdb): process killed (SIGSYS)
safe-run: web: seccomp denied unshare (syscall 272): 3 more suppressed
safe-run: web: seccomp denied unshare (syscall 272) pid 20
`
	if got := buf.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestENOSYSNotReported(t *testing.T) {
	def, err := Seccomp(Options{Profile: "default", Arch: "amd64"})
	if err != nil {
		t.Fatal(err)
	}
	got := enosysCalls(def)
	if len(got) != 1 || !got["clone3"] {
		t.Errorf("ENOSYS calls %v, want clone3 only", got)
	}
	if len(enosysCalls(&specs.LinuxSeccomp{})) != 0 || len(enosysCalls(nil)) != 0 {
		t.Error("ENOSYS calls in an empty profile")
	}
	if !strings.Contains(outcome(retTrap), "SIGSYS") || outcome(retErrno) != "" {
		t.Error("outcome")
	}
}
