package manifest

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Size is a number of bytes, written as docker's -m does: 512M and 512Mi both
// mean 512 MiB; K, G and T likewise, an optional trailing B is accepted.
type Size int64

var sizePattern = compileLater(`^([0-9]+(?:\.[0-9]+)?)\s*(?:([kKmMgGtT])[iI]?)?[bB]?$`)

func (s *Size) UnmarshalText(text []byte) error {
	v, err := ParseSize(string(text))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// ParseSize parses a size such as 512M, 1Gi or 1048576.
func ParseSize(text string) (Size, error) {
	m := sizePattern().FindStringSubmatch(strings.TrimSpace(text))
	if m == nil {
		return 0, fmt.Errorf("%q is not a size (use e.g. 512M)", text)
	}
	n, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a size (use e.g. 512M)", text)
	}
	shift := map[string]uint{"": 0, "K": 10, "M": 20, "G": 30, "T": 40}[strings.ToUpper(m[2])]
	bytes := n * float64(uint64(1)<<shift)
	if bytes >= math.MaxInt64 {
		return 0, fmt.Errorf("%q is too large (use e.g. 512M or 64G)", text)
	}
	return Size(bytes), nil
}

func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// String writes the size in the largest binary unit that divides it exactly.
func (s Size) String() string {
	for _, u := range []struct {
		suffix string
		shift  uint
	}{{"T", 40}, {"G", 30}, {"M", 20}, {"K", 10}} {
		if s != 0 && int64(s)%(1<<u.shift) == 0 {
			return strconv.FormatInt(int64(s)>>u.shift, 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(s), 10)
}

// Duration is a Go duration (10s, 1m30s); a bare number is an error because
// its unit would be a guess.
type Duration time.Duration

func (d *Duration) UnmarshalText(text []byte) error {
	s := strings.TrimSpace(string(text))
	if bareNumber(s) {
		return fmt.Errorf("%q has no unit (use e.g. %ss)", s, s)
	}
	v, err := time.ParseDuration(s)
	if err != nil && durationSyntax().MatchString(s) {
		// Written as a duration, but more than an int64 of
		// nanoseconds (about 292 years).
		return fmt.Errorf("%q is too large (at most %s)", s, time.Duration(math.MaxInt64).Truncate(time.Second))
	}
	if err != nil {
		return fmt.Errorf("%q is not a duration (use e.g. 10s or 1m30s)", s)
	}
	if v < 0 {
		return fmt.Errorf("%q is negative (use a positive duration such as 10s)", s)
	}
	*d = Duration(v)
	return nil
}

// durationSyntax is what time.ParseDuration reads, whatever the size.
var durationSyntax = compileLater(`^[-+]?([0-9]*(\.[0-9]*)?(ns|us|µs|μs|ms|s|m|h))+$`)

// bareNumber reports whether s is digits with at most one '.' and a sign:
// a duration missing its unit. (strconv.ParseFloat also takes "inf" and
// "nan", for which "use e.g. infs" was the advice.)
func bareNumber(s string) bool {
	s = strings.TrimLeft(s, "+-")
	return s != "" && s != "." && strings.Count(s, ".") <= 1 && strings.Trim(s, "0123456789.") == ""
}

func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }
func (d Duration) String() string               { return time.Duration(d).String() }

// Capability is a Linux capability name in its kernel spelling, CAP_X.
// CAP_NET_BIND_SERVICE, NET_BIND_SERVICE and net_bind_service are accepted.
type Capability string

func (c *Capability) UnmarshalText(text []byte) error {
	v, err := ParseCapability(string(text))
	if err != nil {
		return err
	}
	*c = v
	return nil
}

// ParseCapability returns the canonical CAP_X form of a capability name.
func ParseCapability(name string) (Capability, error) {
	n := strings.ToUpper(strings.TrimSpace(name))
	n = strings.TrimPrefix(n, "CAP_")
	if !slices.Contains(capabilityNames, n) {
		return "", fmt.Errorf("%q is not a Linux capability (use a name such as NET_BIND_SERVICE; see capabilities(7))", name)
	}
	return Capability("CAP_" + n), nil
}

// Short is the name without the CAP_ prefix, as docker and Kubernetes write it.
func (c Capability) Short() string { return strings.TrimPrefix(string(c), "CAP_") }

// capabilityNames are the capabilities of Linux 6.x (capabilities(7)).
// libcontainer drops an unknown name with only a log line, so the manifest
// refuses it instead.
var capabilityNames = []string{
	"CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL",
	"SETGID", "SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE",
	"NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
	"SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
	"SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME",
	"SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL",
	"SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM",
	"BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
}

// Signal is a signal number with its name; SIGTERM, TERM, term and 15 are
// accepted.
type Signal struct {
	Name   string // SIGTERM
	Number int
}

func (s *Signal) UnmarshalText(text []byte) error {
	v, err := ParseSignal(string(text))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// ParseSignal looks a signal up by name or number.
func ParseSignal(text string) (Signal, error) {
	t := strings.ToUpper(strings.TrimSpace(text))
	if n, err := strconv.Atoi(t); err == nil {
		for _, s := range signals {
			if s.Number == n {
				return s, nil
			}
		}
		return Signal{}, fmt.Errorf("%q is not a signal number (use a name such as SIGTERM)", text)
	}
	if !strings.HasPrefix(t, "SIG") {
		t = "SIG" + t
	}
	for _, s := range signals {
		if s.Name == t {
			return s, nil
		}
	}
	return Signal{}, fmt.Errorf("%q is not a signal (use a name such as SIGTERM, SIGINT or SIGQUIT)", text)
}

func (s Signal) MarshalText() ([]byte, error) { return []byte(s.Name), nil }
func (s Signal) String() string               { return s.Name }

// signals are the Linux (x86_64 and arm64) signals a service may be stopped
// with. SIGKILL and SIGSTOP are listed so that errors about them can be
// precise.
var signals = []Signal{
	{"SIGHUP", 1}, {"SIGINT", 2}, {"SIGQUIT", 3}, {"SIGILL", 4}, {"SIGTRAP", 5},
	{"SIGABRT", 6}, {"SIGBUS", 7}, {"SIGFPE", 8}, {"SIGKILL", 9}, {"SIGUSR1", 10},
	{"SIGSEGV", 11}, {"SIGUSR2", 12}, {"SIGPIPE", 13}, {"SIGALRM", 14},
	{"SIGTERM", 15}, {"SIGSTKFLT", 16}, {"SIGCHLD", 17}, {"SIGCONT", 18},
	{"SIGSTOP", 19}, {"SIGTSTP", 20}, {"SIGTTIN", 21}, {"SIGTTOU", 22},
	{"SIGURG", 23}, {"SIGXCPU", 24}, {"SIGXFSZ", 25}, {"SIGVTALRM", 26},
	{"SIGPROF", 27}, {"SIGWINCH", 28}, {"SIGIO", 29}, {"SIGPWR", 30}, {"SIGSYS", 31},
	{"SIGRTMIN", 34}, {"SIGRTMAX", 64},
}

// FileMode is a permission mode written as a string of octal digits, "1777".
// A TOML integer is refused: 1777 and 0o1777 cannot be told apart once
// parsed, and a decimal mode is almost always a mistake.
type FileMode uint32

func (m *FileMode) UnmarshalText(text []byte) error {
	s := strings.TrimPrefix(strings.TrimSpace(string(text)), "0o")
	v, err := strconv.ParseUint(s, 8, 32)
	if err != nil || v > 0o7777 {
		return fmt.Errorf("%q is not an octal mode (use e.g. \"1777\" or \"0755\")", string(text))
	}
	if v == 0 {
		// Zero means "not set" to the mounts that default it (a tmpfs
		// gets 1777): an explicit "0" must not turn into world-writable.
		return fmt.Errorf("%q gives no one access (use e.g. \"0700\" or \"1777\")", string(text))
	}
	*m = FileMode(v)
	return nil
}

func (m FileMode) MarshalText() ([]byte, error) { return []byte(m.String()), nil }
func (m FileMode) String() string               { return fmt.Sprintf("%04o", uint32(m)) }
