package manifest

import (
	"fmt"
	"maps"
	"math"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode"

	"github.com/google/go-containerregistry/pkg/name"
)

var (
	// Lengths are checked apart: a counted repetition such as {0,62}
	// compiles into a large program, and package init runs on every
	// container start (libcontainer re-executes this binary).
	namePattern       = compileLater(`^[a-z0-9][a-z0-9_.-]*$`)
	volumePattern     = compileLater(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
	secretPattern     = compileLater(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)
	userPattern       = compileLater(`^[A-Za-z0-9_][A-Za-z0-9_.-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?$`)
	profileNamePatten = compileLater(`^[A-Za-z0-9_][A-Za-z0-9_./-]*$`)
	// No control character either: a name shows up in check's and
	// audit's reports, and an ESC or a newline in it could forge lines
	// there (found by a black-box probe).
	envKeyPattern = compileLater(`^[^=\x00-\x1f\x7f-\x{9f}]+$`)
)

// MinMemory is the smallest memory limit accepted, as docker's -m: below it
// the runtime's own set-up does not fit.
const MinMemory Size = 6 << 20

// MinCPUs and MaxCPUs bound resources.cpus: docker's smallest quota, and
// more CPUs than any host has.
const (
	MinCPUs = 0.01
	MaxCPUs = 1024
)

// DefaultTmpfsSize bounds a tmpfs that does not say its size. Its pages are
// charged to the service's memory limit either way; the bound makes the
// limit visible in the spec instead of "half the host's RAM".
const DefaultTmpfsSize Size = 64 << 20

// compileLater returns pattern's regexp, compiled on first use. Package
// manifest is linked into what libcontainer re-executes as every
// container's init, which never validates a manifest: compiling every
// pattern at package init cost about 1 ms there on each start.
func compileLater(pattern string) func() *regexp.Regexp {
	return sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(pattern) })
}

// ReservedTargets returns the paths safe-run mounts itself; a [[mounts]]
// target may not be one of them or lie below them. A function, not a
// variable: no caller can change the list for the others.
func ReservedTargets() []string {
	return []string{"/proc", "/sys", "/dev", "/run/secrets", "/run/notify"}
}

// validate checks what single values cannot: required keys, choices,
// combinations, and resolves relative paths against the manifest's
// directory. Security judgements (is this capability dangerous) belong to
// package policy.
func validate(s *Service, fe *fieldErrors) {
	switch {
	case s.Version == 0:
		fe.add("version", "missing (add version = 1 at the top of the file)")
	case s.Version != 1:
		fe.add("version", "%d is not supported (this safe-run reads manifest version 1)", s.Version)
	}
	switch {
	case s.Name == "":
		fe.add("name", `missing (add name = "web": lowercase letters, digits, '_', '.', '-')`)
	case len(s.Name) > 63 || !namePattern().MatchString(s.Name):
		fe.add("name", "%q is not a valid name (use 1-63 lowercase letters, digits, '_', '.', '-', starting with a letter or digit)", s.Name)
	}
	validateImage(s, fe)
	validateProcess(s, fe)
	validateSecurity(s, fe)
	validateResources(s, fe)
	validateMounts(s, fe)
	validateNetwork(s, fe)
	validateSecrets(s, fe)
	for _, k := range slices.Sorted(maps.Keys(s.Labels)) {
		switch {
		case strings.TrimSpace(k) == "":
			fe.add(joinKey("labels", k), "a label has an empty key (name it, e.g. \"org.opencontainers.image.source\")")
		case strings.ContainsFunc(k, isControl):
			fe.add(joinKey("labels", k), "%q contains a control character (name labels with letters, digits, '.', '-' and '_', e.g. \"org.opencontainers.image.source\")", k)
		case strings.HasPrefix(k, ReservedLabelPrefix):
			fe.add(joinKey("labels", k), "%s* is reserved for what safe-run records about the service (choose another key)", ReservedLabelPrefix)
		}
	}
	validateInsecure(s, fe)
}

// isControl reports a C0 or C1 control character, or DEL.
func isControl(r rune) bool { return unicode.Is(unicode.Cc, r) }

func (s *Service) abs(p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(s.Dir, p)
}

func validateImage(s *Service, fe *fieldErrors) {
	var set []string
	for _, src := range []struct{ key, val string }{
		{"rootfs", s.Image.Rootfs}, {"oci", s.Image.OCI}, {"archive", s.Image.Archive}, {"ref", s.Image.Ref},
	} {
		if src.val != "" {
			set = append(set, src.key)
		}
	}
	switch {
	case len(set) == 0:
		fe.add("image", "no image source (set exactly one of image.rootfs, image.oci, image.archive or image.ref)")
		return
	case len(set) > 1:
		fe.add("image."+set[1], "image.%s and image.%s are both set (keep exactly one image source)", set[0], set[1])
		return
	}
	switch set[0] {
	case "rootfs":
		s.Image.Rootfs = s.abs(s.Image.Rootfs)
	case "oci":
		dir, tag := SplitOCI(s.Image.OCI)
		i := strings.LastIndexByte(s.Image.OCI, ':')
		after := s.Image.OCI[i+1:]
		switch {
		case i > 0 && strings.HasSuffix(s.Image.OCI[:i], "@sha256"):
			// "dir@sha256:HEX" was taken for the directory "dir@sha256".
			fe.add("image.oci", `%q: an OCI layout's image is named by its tag, not by a digest (use oci = "%s:TAG" with a tag of its index.json; to pin by digest, ref = "registry/repo@sha256:...")`, s.Image.OCI, strings.TrimSuffix(s.Image.OCI[:i], "@sha256"))
		case i > 0 && tag == "" && (strings.HasPrefix(after, ".") || strings.HasPrefix(after, "/")):
			// "dir:../../x" was taken for a directory, which the
			// '..' then left: the part after ':' is a tag.
			fe.add("image.oci", `%q: the part after ':' is a tag, not a path (use oci = "layout-dir:tag"; a directory whose name holds ':' is written without a tag)`, s.Image.OCI)
		case dir == "":
			fe.add("image.oci", `%q names no directory (use oci = "layout-dir:tag", the directory relative to this file)`, s.Image.OCI)
		case strings.HasSuffix(s.Image.OCI, ":") || (tag != "" && !validTag(tag)):
			fe.add("image.oci", `%q: the tag after ':' is not a tag (use letters, digits, '_', '.', '-', e.g. oci = "layout-dir:latest")`, s.Image.OCI)
		default:
			s.Image.OCI = s.abs(dir)
			if tag != "" {
				s.Image.OCI += ":" + tag
			}
		}
	case "archive":
		s.Image.Archive = s.abs(s.Image.Archive)
	case "ref":
		validateRef(s.Image.Ref, fe)
	}
}

// SplitOCI splits an image.oci value "layout-dir:tag" at its last ':'. A
// last part holding a '/' belongs to the directory: "dir" alone has no tag.
func SplitOCI(v string) (dir, tag string) {
	i := strings.LastIndexByte(v, ':')
	if i < 0 || strings.Contains(v[i+1:], "/") {
		return v, ""
	}
	return v[:i], v[i+1:]
}

// validTag reports whether t is a tag as docker and OCI layouts write them.
func validTag(t string) bool {
	if len(t) > 128 || t == "" || t[0] == '.' || t[0] == '-' {
		return false
	}
	for _, c := range t {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// ValidRef reports whether ref is a registry reference safe-run can pull.
func ValidRef(ref string) bool {
	r, err := name.ParseReference(ref)
	// go-containerregistry takes "--privileged" for a repository on
	// docker.io; written into an exported docker run line as the image
	// argument, it would be read as an option.
	if err != nil || strings.Contains(ref, "://") || strings.HasPrefix(ref, "-") {
		return false
	}
	// It also takes any of [a-z0-9_.-/] as a repository path, "../.."
	// included, which would reach the registry as /v2/../../...: the
	// distribution spec's components only.
	for _, c := range strings.Split(r.Context().RepositoryStr(), "/") {
		if !pathComponent().MatchString(c) {
			return false
		}
	}
	return true
}

var pathComponent = compileLater(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*$`)

// validateRef checks the syntax of image.ref. Whether it is pinned by
// digest is a policy question (SR018 unpinned-image).
func validateRef(ref string, fe *fieldErrors) {
	const use = `use "registry.example/web@sha256:<64 hex digits>"`
	if strings.Contains(ref, "://") {
		fe.add("image.ref", "%q is not a registry reference: drop the URL scheme (%s)", ref, use)
		return
	}
	if !ValidRef(ref) {
		fe.add("image.ref", "%q is not a registry reference (%s)", ref, use)
		return
	}
	if _, dig, ok := strings.Cut(ref, "@"); ok && !strings.HasPrefix(dig, "sha256:") {
		fe.add("image.ref", "%q: only sha256 digests are accepted (%s)", ref, use)
	}
}

func validateProcess(s *Service, fe *fieldErrors) {
	p := &s.Process
	if len(p.Command) == 0 && s.Image.Rootfs != "" {
		fe.add("process.command", `missing (a rootfs directory has no entrypoint: set command = ["/bin/server", "--flag"])`)
	}
	for i, arg := range p.Command {
		if i == 0 && arg == "" {
			fe.add(indexPath("process.command", 0), "the program is empty (name the executable, e.g. \"/bin/server\")")
		}
		if strings.ContainsRune(arg, 0) {
			fe.add(indexPath("process.command", i), "contains a NUL byte (remove it)")
		}
	}
	for _, k := range slices.Sorted(maps.Keys(p.Env)) {
		v := p.Env[k]
		if !envKeyPattern().MatchString(k) {
			fe.add(joinKey("process.env", k), "%q is not a valid variable name (no '=' and no control character: use letters, digits and '_', e.g. LOG_LEVEL)", k)
		}
		if strings.ContainsRune(v, 0) {
			fe.add(joinKey("process.env", k), "value contains a NUL byte (remove it)")
		}
	}
	if p.User != "" {
		for _, msg := range UserProblems(p.User) {
			fe.add("process.user", "%s", msg)
		}
	}
	if p.Workdir != "" && !path.IsAbs(p.Workdir) {
		fe.add("process.workdir", "%q is relative (use an absolute path inside the container, e.g. \"/srv\")", p.Workdir)
	}
	switch p.StopSignal.Number {
	case 9:
		fe.add("process.stop_signal", "SIGKILL gives the service no chance to stop cleanly (use SIGTERM; safe-run sends SIGKILL itself after stop_timeout)")
	case 19:
		fe.add("process.stop_signal", "SIGSTOP does not stop a service, it pauses it (use SIGTERM)")
	}
	if p.StopTimeout <= 0 {
		fe.add("process.stop_timeout", "must be longer than zero (use e.g. \"10s\")")
	}
	if !slices.Contains([]string{"no", "on-failure", "always"}, p.Restart) {
		fe.add("process.restart", "%q is not a restart policy (use \"no\", \"on-failure\" or \"always\")", p.Restart)
	}
}

func validateSecurity(s *Service, fe *fieldErrors) {
	sec := &s.Security
	seen := map[Capability]bool{}
	for i, c := range sec.Capabilities {
		if seen[c] {
			fe.add(indexPath("security.capabilities", i), "%s is listed twice (keep one)", c.Short())
		}
		seen[c] = true
	}
	switch sec.Seccomp {
	case "default", "strict", "unconfined":
	case "":
		fe.add("security.seccomp", `is empty (use "default", "strict", a path to a profile.json, or "unconfined" with [insecure])`)
	default:
		if !strings.HasSuffix(sec.Seccomp, ".json") {
			fe.add("security.seccomp", `%q is not a profile (use "default", "strict", a path to a .json profile in docker's format, or "unconfined")`, sec.Seccomp)
		} else {
			sec.Seccomp = s.abs(sec.Seccomp)
		}
	}
	if sec.AppArmor == "" || !profileNamePatten().MatchString(sec.AppArmor) {
		fe.add("security.apparmor", `%q is not a profile (use "generated", the name of a loaded profile, or "unconfined" with [insecure])`, sec.AppArmor)
	}
	if sec.AppArmorMode != "enforce" && sec.AppArmorMode != "complain" {
		fe.add("security.apparmor_mode", `%q is not a mode (use "enforce", or "complain" while staging a new service)`, sec.AppArmorMode)
	}
	if sec.AppArmorRequired && sec.AppArmor == "unconfined" {
		fe.add("security.apparmor_required", `contradicts apparmor = "unconfined" (drop one of them)`)
	}
	if sec.Landlock != "generated" && sec.Landlock != "off" {
		fe.add("security.landlock", `%q is not a Landlock setting (use "generated", or "off" with [insecure] allow = ["landlock_off"])`, sec.Landlock)
	}
	if sec.LandlockRequired && sec.Landlock == "off" {
		fe.add("security.landlock_required", `contradicts landlock = "off" (drop one of them)`)
	}
	if sec.LandlockRequired && !sec.NoNewPrivileges {
		fe.add("security.landlock_required", `needs no_new_privileges = true: the kernel applies Landlock only with it (drop one of them)`)
	}
	seenPort := map[int]bool{}
	for i, p := range sec.LandlockBind {
		switch {
		case p < 1 || p > 65535:
			fe.add(indexPath("security.landlock_bind", i), "%d is not a TCP port (use 1-65535)", p)
		case seenPort[p]:
			fe.add(indexPath("security.landlock_bind", i), "%d is listed twice (keep one)", p)
		}
		seenPort[p] = true
	}
}

func validateResources(s *Service, fe *fieldErrors) {
	r := &s.Resources
	// Zero is what an absent limit decodes to; written out, it is a
	// mistake worth its own message rather than "missing".
	if _, set := fe.lines["resources.memory"]; set && r.Memory == 0 {
		fe.add("resources.memory", `0 sets no limit (use e.g. "512M"; to run without one, remove the key and acknowledge [insecure] allow = ["no_resource_limits"])`)
	}
	if _, set := fe.lines["resources.cpus"]; set && r.CPUs == 0 {
		fe.add("resources.cpus", `0 sets no limit (use e.g. 0.5; to run without one, remove the key and acknowledge [insecure] allow = ["no_resource_limits"])`)
	}
	if r.Memory != 0 && r.Memory < MinMemory {
		fe.add("resources.memory", "%s is below the minimum %s (the runtime itself needs a few MiB)", r.Memory, MinMemory)
	}
	if r.MemoryReservation != 0 && r.Memory != 0 && r.MemoryReservation > r.Memory {
		fe.add("resources.memory_reservation", "%s is above the hard limit memory = %s (a soft limit must be lower)", r.MemoryReservation, r.Memory)
	}
	if math.IsNaN(r.CPUs) {
		// TOML's nan compares false with everything: unchecked, it
		// passed every test below and the limit was silently dropped.
		fe.add("resources.cpus", "nan is not a number of CPUs (use e.g. 0.5 for half a CPU)")
	}
	if r.CPUs < 0 || (r.CPUs > 0 && r.CPUs < 0.01) {
		fe.add("resources.cpus", "%v is too small (use at least 0.01, e.g. 0.5 for half a CPU)", r.CPUs)
	}
	if r.CPUs > 1024 {
		fe.add("resources.cpus", "%v is more CPUs than any host has (use e.g. 2.0)", r.CPUs)
	}
	switch {
	case r.Pids < 0:
		// docker's --pids-limit -1 means no limit; here every service
		// has one.
		fe.add("resources.pids", "%d is not a number of processes: there is no unlimited (use e.g. 256; the default is 1024)", r.Pids)
	case r.Pids < 1:
		fe.add("resources.pids", "%d allows no process at all (use e.g. 256; the default is 1024)", r.Pids)
	case r.Pids < 2 && s.Process.Init:
		fe.add("resources.pids", "%d leaves no process for the service beside its init (use at least 2, or set process.init = false)", r.Pids)
	}
}

var tmpfsOption = compileLater(`^(ro|rw|exec|noexec|(uid|gid|nr_inodes)=[0-9]+)$`)

func validateMounts(s *Service, fe *fieldErrors) {
	targets := map[string]int{}
	for i := range s.Mounts {
		m := &s.Mounts[i]
		at := func(key string) string { return joinKey(indexPath("mounts", i), key) }
		switch m.Type {
		case MountTmpfs, MountVolume, MountBind:
		case "":
			fe.add(at("type"), `missing (use "tmpfs", "volume" or "bind")`)
		default:
			fe.add(at("type"), `%q is not a mount type (use "tmpfs", "volume" or "bind")`, m.Type)
		}
		switch {
		case m.Target == "":
			fe.add(at("target"), `missing (the absolute path inside the container, e.g. "/tmp")`)
		case !path.IsAbs(m.Target):
			fe.add(at("target"), "%q is relative (use an absolute path inside the container)", m.Target)
		case path.Clean(m.Target) != m.Target:
			fe.add(at("target"), "%q is not a clean path (write %q)", m.Target, path.Clean(m.Target))
		case m.Target == "/":
			fe.add(at("target"), `cannot replace the root filesystem (mount below it, e.g. "/data")`)
		default:
			for _, r := range ReservedTargets() {
				if m.Target == r || strings.HasPrefix(m.Target, r+"/") {
					fe.add(at("target"), "%s is set up by safe-run itself (choose another target)", r)
				}
			}
			if j, dup := targets[m.Target]; dup {
				fe.add(at("target"), "%s is already the target of mounts[%d] (each target once)", m.Target, j)
			}
			targets[m.Target] = i
		}
		if m.Type == MountTmpfs {
			validateTmpfs(m, at, fe)
			continue
		}
		for _, f := range []struct {
			key string
			set bool
		}{{"size", m.Size != 0}, {"mode", m.Mode != 0}, {"options", m.Options != nil}} {
			if f.set {
				fe.add(at(f.key), "applies only to tmpfs mounts (remove it)")
			}
		}
		if m.ReadOnly == nil {
			ro := m.Type == MountBind // binds are read-only unless the manifest says otherwise
			m.ReadOnly = &ro
		}
		switch m.Type {
		case MountVolume:
			if m.Source == "" {
				fe.add(at("source"), `missing (name the volume, e.g. source = "data")`)
			} else if len(m.Source) > 128 || !volumePattern().MatchString(m.Source) {
				fe.add(at("source"), "%q is not a volume name (letters, digits, '_', '.', '-'; for a host path use type = \"bind\")", m.Source)
			}
		case MountBind:
			if m.Source == "" {
				fe.add(at("source"), `missing (the host path to bind, e.g. source = "./config")`)
			} else {
				m.Source = s.abs(m.Source)
			}
		}
	}
}

func validateTmpfs(m *Mount, at func(string) string, fe *fieldErrors) {
	if m.Source != "" {
		fe.add(at("source"), "a tmpfs has no source (remove it)")
	}
	if m.ReadOnly != nil {
		fe.add(at("read_only"), `not used for tmpfs (an empty read-only tmpfs is useless; use options = ["ro"] if you mean it)`)
	}
	if _, set := fe.lines[at("size")]; set && m.Size == 0 {
		// To the kernel size=0 is no limit at all.
		fe.add(at("size"), `0 sets no limit (use e.g. "64M", or remove the key for the default %s)`, DefaultTmpfsSize)
	}
	if m.Size == 0 {
		m.Size = DefaultTmpfsSize
	}
	if m.Mode == 0 {
		m.Mode = 0o1777
	}
	for j, o := range m.Options {
		if !tmpfsOption().MatchString(o) {
			fe.add(indexPath(at("options"), j), "%q is not a tmpfs option safe-run accepts (use ro, rw, exec, noexec, uid=N, gid=N, nr_inodes=N; nosuid and nodev are always set)", o)
		}
	}
}

func validateSecrets(s *Service, fe *fieldErrors) {
	for _, name := range slices.Sorted(maps.Keys(s.Secrets)) {
		sec := s.Secrets[name]
		at := joinKey("secrets", name)
		if len(name) > 128 || !secretPattern().MatchString(name) {
			fe.add(at, "%q is not a secret name (it becomes a file name under /run/secrets: letters, digits, '_', '.', '-')", name)
		}
		if sec.File == "" {
			fe.add(at+".file", `missing (the host file holding the secret, e.g. %s = { file = "/etc/safe-run/secrets/%s" })`, at, name)
			continue
		}
		sec.File = s.abs(sec.File)
		s.Secrets[name] = sec
	}
}

func validateInsecure(s *Service, fe *fieldErrors) {
	for i, a := range s.Insecure.Allow {
		switch {
		case !slices.Contains(allowItems, a):
			fe.add(indexPath("insecure.allow", i), "%q is not an [insecure] allow item (use one of: %s)", a, strings.Join(allowItems, ", "))
		case slices.Index(s.Insecure.Allow, a) < i:
			fe.add(indexPath("insecure.allow", i), "%q is listed twice (keep one)", a)
		}
	}
	if len(s.Insecure.Allow) > 0 && strings.TrimSpace(s.Insecure.Reason) == "" {
		fe.add("insecure.reason", "missing (say in one sentence why this service needs what [insecure] allows)")
	}
}

func digits(s string) bool { return s != "" && strings.Trim(s, "0123456789") == "" }

// UserProblems says what is wrong with a user as process.user takes it,
// "uid[:gid]" or "name[:group]" with ids in the container's 0-65535, one
// message each; none for a good one. `safe-run exec -u` checks its user
// with it too: the same rules wherever a user is given.
func UserProblems(user string) []string {
	if !userPattern().MatchString(user) {
		return []string{fmt.Sprintf("%q is not a user (use \"uid[:gid]\" such as \"1000:1000\", or a name from the image's /etc/passwd)", user)}
	}
	var out []string
	for _, part := range strings.Split(user, ":") {
		if n, err := strconv.ParseUint(part, 10, 64); err == nil && n > 65535 {
			out = append(out, fmt.Sprintf("%d is outside the container's ids 0-65535 (the user namespace maps 65536 ids)", n))
		}
	}
	return out
}
