package profiles

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/safe-run/safe-run/manifest"
)

// maxProfileSize bounds what is read of a custom profile. Docker's default
// profile is 18 KiB; a path to /dev/zero must not fill memory.
const maxProfileSize = 1 << 20

// loadCustom reads a profile in Docker's JSON format, checks it, and
// resolves its conditions for t, caps and the kernel release.
func loadCustom(path string, t target, caps []string, kernel string) (*specs.LinuxSeccomp, error) {
	data, err := readProfile(path)
	if err != nil {
		return nil, err
	}
	return parseCustom(path, data, t, caps, kernel)
}

// parseCustom is loadCustom on a profile already read: path names it in
// errors.
func parseCustom(path string, data []byte, t target, caps []string, kernel string) (*specs.LinuxSeccomp, error) {
	var p dockerProfile
	d, err := decodeDocument(path, data, &p)
	if err != nil {
		return nil, err
	}
	if errs := d.check(&p); len(errs) > 0 {
		return nil, joinSorted(errs)
	}
	s, errs := d.resolve(&p, t, caps, kernel)
	if len(errs) > 0 {
		return nil, joinSorted(errs)
	}
	// Fewer comparisons for libseccomp to generate, the same decisions.
	s.Syscalls = mergeValueTests(s.Syscalls)
	return s, nil
}

func readProfile(path string) ([]byte, error) {
	// Stat before opening: opening a FIFO would wait for a writer.
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf(`seccomp profile: %w (use "default", "strict", "unconfined" or the path of a Docker-format JSON profile, relative to the manifest)`, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("seccomp profile %s: not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("seccomp profile: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxProfileSize+1))
	if err != nil {
		return nil, fmt.Errorf("seccomp profile: %w", err)
	}
	if len(data) > maxProfileSize {
		return nil, fmt.Errorf("seccomp profile %s: larger than 1 MiB, which no seccomp profile needs", path)
	}
	return data, nil
}

// joinSorted joins FieldErrors in file order.
func joinSorted(errs []*manifest.FieldError) error {
	slices.SortStableFunc(errs, func(a, b *manifest.FieldError) int {
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		return a.Column - b.Column
	})
	joined := make([]error, len(errs))
	for i, e := range errs {
		joined[i] = e
	}
	return errors.Join(joined...)
}

// actionWords and the functions after it list the words a profile may
// use, with runc v1.5.2 as the judge (libcontainer/seccomp/config.go).
func actionWords() []string {
	return []string{
		string(specs.ActErrno), string(specs.ActAllow), string(specs.ActKillProcess),
		string(specs.ActKillThread), string(specs.ActKill), string(specs.ActTrap),
		string(specs.ActTrace), string(specs.ActLog), string(specs.ActNotify),
	}
}

func opWords() []string {
	return []string{
		string(specs.OpEqualTo), string(specs.OpNotEqual), string(specs.OpLessThan),
		string(specs.OpLessEqual), string(specs.OpGreaterThan), string(specs.OpGreaterEqual),
		string(specs.OpMaskedEqual),
	}
}

func archWords() []string {
	return []string{
		string(specs.ArchX86_64), string(specs.ArchX86), string(specs.ArchX32),
		string(specs.ArchAARCH64), string(specs.ArchARM),
		string(specs.ArchMIPS), string(specs.ArchMIPS64), string(specs.ArchMIPS64N32),
		string(specs.ArchMIPSEL), string(specs.ArchMIPSEL64), string(specs.ArchMIPSEL64N32),
		string(specs.ArchPPC), string(specs.ArchPPC64), string(specs.ArchPPC64LE),
		string(specs.ArchS390), string(specs.ArchS390X), string(specs.ArchRISCV64),
		string(specs.ArchLOONGARCH64),
	}
}

// flagWords includes SECCOMP_FILTER_FLAG_TSYNC, which is in Docker's
// vocabulary; runc accepts and ignores it, since libseccomp-golang
// synchronises all threads anyway.
func flagWords() []string {
	return []string{
		string(specs.LinuxSeccompFlagLog), string(specs.LinuxSeccompFlagSpecAllow),
		string(specs.LinuxSeccompFlagWaitKillableRecv), "SECCOMP_FILTER_FLAG_TSYNC",
	}
}

// filterArchWords are the names includes.arches and excludes.arches use:
// libseccomp's, which Docker matches against the host's.
func filterArchWords() []string {
	return []string{
		"amd64", "x86", "x32", "arm64", "arm", "mips", "mipsel", "mips64",
		"mips64n32", "mipsel64", "mipsel64n32", "ppc", "ppc64", "ppc64le",
		"s390", "s390x", "riscv64", "loongarch64",
	}
}

// archHint is what an unknown architecture's message suggests.
const archHint = "use SCMP_ARCH_X86_64, SCMP_ARCH_X86, SCMP_ARCH_X32, SCMP_ARCH_AARCH64 or SCMP_ARCH_ARM; runc also knows the MIPS, PowerPC, s390, RISC-V and LoongArch ones"

// wordList lists words for a message: "A, B or C".
func wordList(words []string) string {
	if len(words) < 2 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

// maxErrno is the largest errno the kernel passes back from a filter
// (MAX_ERRNO in include/linux/err.h).
const maxErrno = 4095

// check collects every mistake in p that does not depend on the target.
func (d *document) check(p *dockerProfile) []*manifest.FieldError {
	var errs []*manifest.FieldError
	add := func(path, format string, args ...any) {
		errs = append(errs, d.errorf(path, format, args...))
	}

	notify := false
	for _, sc := range p.Syscalls {
		notify = notify || sc.Action == specs.ActNotify
	}

	switch a := p.DefaultAction; {
	case a == "":
		add("defaultAction", "missing (use SCMP_ACT_ERRNO to deny what the profile does not allow)")
	case a == specs.ActNotify:
		add("defaultAction", "SCMP_ACT_NOTIFY cannot be the default action: runc init writes to its parent after loading the filter, and would wait for the agent forever (use SCMP_ACT_ERRNO)")
	case !slices.Contains(actionWords(), string(a)):
		add("defaultAction", "%q is not a seccomp action (use %s)", a, wordList(actionWords()))
	}
	if e := p.DefaultErrnoRet; e != nil {
		switch {
		case p.DefaultAction != specs.ActErrno && p.DefaultAction != specs.ActTrace:
			add("defaultErrnoRet", "only SCMP_ACT_ERRNO and SCMP_ACT_TRACE return an errno (remove it, or change defaultAction)")
		case *e == 0:
			add("defaultErrnoRet", "0 would make every denied call succeed (use 1 for EPERM)")
		case *e > maxErrno:
			add("defaultErrnoRet", "%d is not an errno (use 1 to %d, e.g. 1 for EPERM)", *e, maxErrno)
		}
	}

	if len(p.Architectures) > 0 && len(p.ArchMap) > 0 {
		add("archMap", "use either architectures or archMap, not both")
	}
	for i, a := range p.Architectures {
		if !slices.Contains(archWords(), string(a)) {
			add(fmt.Sprintf("architectures[%d]", i), "%q is not a seccomp architecture (%s)", a, archHint)
		}
	}
	for i, m := range p.ArchMap {
		path := fmt.Sprintf("archMap[%d]", i)
		if m.Arch == "" {
			add(path+".architecture", "missing (%s)", archHint)
		} else if !slices.Contains(archWords(), string(m.Arch)) {
			add(path+".architecture", "%q is not a seccomp architecture (%s)", m.Arch, archHint)
		}
		for j, a := range m.SubArches {
			if !slices.Contains(archWords(), string(a)) {
				add(fmt.Sprintf("%s.subArchitectures[%d]", path, j), "%q is not a seccomp architecture (%s)", a, archHint)
			}
		}
	}
	for i, f := range p.Flags {
		if !slices.Contains(flagWords(), string(f)) {
			add(fmt.Sprintf("flags[%d]", i), "%q is not a seccomp filter flag runc knows (use %s)", f, wordList(flagWords()))
		}
	}
	if p.ListenerPath != "" && !filepath.IsAbs(p.ListenerPath) {
		add("listenerPath", "%q is not an absolute path (give the seccomp agent's socket as /path/to/socket)", p.ListenerPath)
	}
	if p.ListenerMetadata != "" && !notify {
		add("listenerMetadata", "no rule uses SCMP_ACT_NOTIFY, so no agent would receive it (remove it)")
	}

	for i, sc := range p.Syscalls {
		errs = append(errs, d.checkSyscall(fmt.Sprintf("syscalls[%d]", i), sc, p.ListenerPath != "")...)
	}
	return errs
}

func (d *document) checkSyscall(path string, sc dockerSyscall, listener bool) []*manifest.FieldError {
	var errs []*manifest.FieldError
	add := func(path, format string, args ...any) {
		errs = append(errs, d.errorf(path, format, args...))
	}

	names, namesPath := sc.Names, path+".names"
	switch {
	case sc.Name != "" && len(sc.Names) > 0:
		add(path+".name", "use either name or names, not both")
	case sc.Name != "":
		names, namesPath = []string{sc.Name}, path+".name"
	case len(sc.Names) == 0:
		add(namesPath, "missing (list the system calls the rule is for)")
	}
	for j, n := range names {
		p := namesPath
		if sc.Name == "" {
			p = fmt.Sprintf("%s[%d]", namesPath, j)
		}
		if !isSyscall(n) {
			add(p, "%q is not a Linux system call (check the spelling against syscalls(2))", n)
		}
	}

	switch a := sc.Action; {
	case a == "":
		add(path+".action", "missing (use %s)", wordList(actionWords()))
	case !slices.Contains(actionWords(), string(a)):
		add(path+".action", "%q is not a seccomp action (use %s)", a, wordList(actionWords()))
	case a == specs.ActNotify && slices.Contains(names, "write"):
		add(path+".action", `SCMP_ACT_NOTIFY cannot apply to "write": runc init writes to its parent after loading the filter, and would wait for the agent forever (give write its own rule)`)
	case a == specs.ActNotify && !listener:
		add(path+".action", "SCMP_ACT_NOTIFY needs listenerPath, the seccomp agent's socket")
	}
	if e := sc.ErrnoRet; e != nil {
		switch {
		case sc.Action != specs.ActErrno && sc.Action != specs.ActTrace:
			add(path+".errnoRet", "only SCMP_ACT_ERRNO and SCMP_ACT_TRACE return an errno (remove it, or change the action)")
		case *e > maxErrno:
			add(path+".errnoRet", "%d is not an errno (use 0 to %d, e.g. 1 for EPERM)", *e, maxErrno)
		}
	}

	for k, a := range sc.Args {
		p := fmt.Sprintf("%s.args[%d]", path, k)
		if a.Index > 5 {
			add(p+".index", "%d is not an argument index (use 0 to 5)", a.Index)
		}
		switch {
		case a.Op == "":
			add(p+".op", "missing (use %s)", wordList(opWords()))
		case !slices.Contains(opWords(), string(a.Op)):
			add(p+".op", "%q is not a seccomp comparison (use %s)", a.Op, wordList(opWords()))
		case a.Op == specs.OpMaskedEqual && a.ValueTwo&^a.Value != 0:
			add(p+".valueTwo", "%#x has bits outside the mask %#x in value, so the test never holds", a.ValueTwo, a.Value)
		case a.Op != specs.OpMaskedEqual && a.ValueTwo != 0:
			add(p+".valueTwo", "only SCMP_CMP_MASKED_EQ uses it (value is the mask, valueTwo what the masked argument must equal)")
		}
	}

	for _, f := range []struct {
		key    string
		filter *dockerFilter
	}{{"includes", sc.Includes}, {"excludes", sc.Excludes}} {
		if f.filter == nil {
			continue
		}
		p := path + "." + f.key
		for j, c := range f.filter.Caps {
			if !isCapability(c) {
				hint := "see capabilities(7)"
				if isCapability("CAP_" + c) {
					hint = "use CAP_" + c
				}
				add(fmt.Sprintf("%s.caps[%d]", p, j), "%q is not a Linux capability (%s)", c, hint)
			}
		}
		for j, a := range f.filter.Arches {
			if !slices.Contains(filterArchWords(), a) {
				add(fmt.Sprintf("%s.arches[%d]", p, j), "%q is not an architecture name (use amd64, x86, x32, arm64 or arm; libseccomp's names for the others)", a)
			}
		}
		if v := f.filter.MinKernel; v != "" {
			// Docker takes exactly "<major>.<minor>".
			if _, err := parseKernel(v); err != nil || strings.Count(v, ".") != 1 || strings.Trim(v, "0123456789.") != "" {
				add(p+".minKernel", "%q is not of the form \"<major>.<minor>\" (e.g. \"5.8\")", v)
			}
		}
	}
	return errs
}

// kernelVersion is a kernel's major and minor version; Docker ignores the
// rest, and so do we.
type kernelVersion struct{ major, minor int }

// parseKernel parses "5.8" or a release such as "6.1.0-18-amd64".
func parseKernel(s string) (kernelVersion, error) {
	major, rest, ok := strings.Cut(s, ".")
	if !ok {
		return kernelVersion{}, fmt.Errorf("%q has no minor version", s)
	}
	end := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' })
	if end < 0 {
		end = len(rest)
	}
	var v kernelVersion
	var err1, err2 error
	v.major, err1 = strconv.Atoi(major)
	v.minor, err2 = strconv.Atoi(rest[:end])
	if err := errors.Join(err1, err2); err != nil || v == (kernelVersion{}) {
		return kernelVersion{}, fmt.Errorf("%q is not a kernel version", s)
	}
	return v, nil
}

func (v kernelVersion) atLeast(w kernelVersion) bool {
	return v.major > w.major || v.major == w.major && v.minor >= w.minor
}

// resolve returns the OCI form of a checked profile for t, caps and the
// host kernel release, and refuses rules that would collide in libseccomp.
func (d *document) resolve(p *dockerProfile, t target, caps []string, kernel string) (*specs.LinuxSeccomp, []*manifest.FieldError) {
	var errs []*manifest.FieldError
	hostKernel, kernelErr := parseKernel(kernel)

	// holds evaluates the parts of a condition; all says whether all of
	// them must hold (includes) or any (excludes). An empty filter holds
	// for includes and not for excludes.
	holds := func(path string, f *dockerFilter, all bool) bool {
		var results []bool
		if len(f.Arches) > 0 {
			results = append(results, slices.Contains(f.Arches, t.goarch))
		}
		for _, c := range f.Caps {
			results = append(results, slices.Contains(caps, c))
		}
		if f.MinKernel != "" {
			if kernelErr != nil {
				why := fmt.Sprintf("the host kernel release %q is not a version", kernel)
				if kernel == "" {
					why = "the host kernel release is unknown (Options.Kernel is empty)"
				}
				errs = append(errs, d.errorf(path+".minKernel", "cannot be checked: %s", why))
				return false
			}
			v, _ := parseKernel(f.MinKernel)
			results = append(results, hostKernel.atLeast(v))
		}
		if all {
			return !slices.Contains(results, false)
		}
		return slices.Contains(results, true)
	}

	s := &specs.LinuxSeccomp{
		DefaultAction:    p.DefaultAction,
		DefaultErrnoRet:  p.DefaultErrnoRet,
		Architectures:    slices.Clone(p.Architectures),
		Flags:            slices.Clone(p.Flags),
		ListenerPath:     p.ListenerPath,
		ListenerMetadata: p.ListenerMetadata,
	}
	for _, m := range p.ArchMap {
		if m.Arch == t.native {
			s.Architectures = append([]specs.Arch{m.Arch}, m.SubArches...)
			break
		}
	}

	type origin struct {
		rule   string // syscalls[i]
		action string
	}
	seen := map[string]origin{} // runc rule key → where it was first set
	defaultAction := effectiveAction(p.DefaultAction, p.DefaultErrnoRet)
	for i, sc := range p.Syscalls {
		path := fmt.Sprintf("syscalls[%d]", i)
		if sc.Excludes != nil && holds(path+".excludes", sc.Excludes, false) {
			continue
		}
		if sc.Includes != nil && !holds(path+".includes", sc.Includes, true) {
			continue
		}
		names, namesPath := sc.Names, path+".names"
		if sc.Name != "" {
			names, namesPath = []string{sc.Name}, path+".name"
		}
		s.Syscalls = append(s.Syscalls, specs.LinuxSyscall{
			Names:    slices.Clone(names),
			Action:   sc.Action,
			ErrnoRet: sc.ErrnoRet,
			Args:     slices.Clone(sc.Args),
		})

		// runc skips a rule that does what the default does; two other
		// rules with the same argument tests and different actions make
		// libseccomp fail or keep only one of them.
		action := effectiveAction(sc.Action, sc.ErrnoRet)
		if action == defaultAction {
			continue
		}
		for j, n := range names {
			p := namesPath
			if sc.Name == "" {
				p = fmt.Sprintf("%s[%d]", namesPath, j)
			}
			for _, key := range ruleKeys(n, sc.Args) {
				first, ok := seen[key]
				if !ok {
					seen[key] = origin{path, action}
					continue
				}
				if first.action != action {
					errs = append(errs, d.errorf(p, "%q already gets %s from %s with the same argument tests (merge the two rules, or make their tests differ)", n, first.action, first.rule))
					break
				}
			}
		}
	}
	return s, errs
}
