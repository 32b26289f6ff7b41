package importer

import (
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"

	"github.com/safe-run/safe-run/manifest"
	"github.com/safe-run/safe-run/policy"
)

func (s *spec) readMounts(volumes, mounts, tmpfs []string) error {
	for _, v := range volumes {
		if err := s.volumeFlag(v); err != nil {
			return err
		}
	}
	for _, m := range mounts {
		if err := s.mountFlag(m); err != nil {
			return err
		}
	}
	for _, t := range tmpfs {
		if err := s.tmpfsFlag(t); err != nil {
			return err
		}
	}
	return nil
}

// volumeFlag reads -v [SOURCE:]TARGET[:OPTIONS].
func (s *spec) volumeFlag(v string) error {
	flag := "--volume " + v
	parts := strings.Split(v, ":")
	var m mount
	var opts []string
	switch len(parts) {
	case 1:
		m.target = parts[0]
	case 2:
		// As docker reads it: SOURCE:TARGET, never TARGET:OPTIONS.
		m.source, m.target = parts[0], parts[1]
	case 3:
		m.source, m.target, opts = parts[0], parts[1], strings.Split(parts[2], ",")
	default:
		return fmt.Errorf("--volume %q is not [SOURCE:]TARGET[:OPTIONS]", v)
	}
	switch {
	case m.source == "":
		m.typ = manifest.MountVolume
	case isHostPath(m.source):
		m.typ = manifest.MountBind
	default:
		m.typ = manifest.MountVolume
	}
	for _, o := range opts {
		switch o {
		case "ro", "readonly":
			m.readOnly = true
		case "rw", "nocopy", "consistent", "cached", "delegated", "":
		case "z", "Z":
			s.note(Ignored, flag, nil, "SELinux relabelling (:"+o+") does not apply: safe-run confines with AppArmor")
		case "shared", "rshared", "slave", "rslave", "private", "rprivate":
			s.note(Unsupported, flag, nil, "mount propagation (:"+o+") is not in manifest v1: binds are private")
		default:
			s.note(Unsupported, flag, nil, "volume option :"+o+" is not in manifest v1")
		}
	}
	return s.addMount(m, flag)
}

// mountFlag reads --mount type=...,source=...,target=...
func (s *spec) mountFlag(v string) error {
	flag := "--mount " + v
	m := mount{typ: manifest.MountVolume}
	for _, kv := range strings.Split(v, ",") {
		k, val, hasVal := strings.Cut(kv, "=")
		switch strings.ToLower(k) {
		case "type":
			m.typ = val
		case "source", "src":
			m.source = val
		case "target", "dst", "destination":
			m.target = val
		case "readonly", "ro":
			m.readOnly = !hasVal || val == "true" || val == "1"
		case "tmpfs-size":
			n, err := manifest.ParseSize(val)
			if err != nil {
				return fmt.Errorf("--mount tmpfs-size: %w", err)
			}
			m.size = int64(n)
		case "tmpfs-mode":
			m.mode = val
		case "bind-propagation":
			s.note(Unsupported, flag, nil, "mount propagation is not in manifest v1: binds are private")
		case "volume-nocopy", "consistency", "bind-recursive", "bind-nonrecursive":
		case "volume-opt", "volume-driver", "volume-subpath", "tmpfs-options":
			s.note(Unsupported, flag, nil, k+" is not in manifest v1")
		default:
			return fmt.Errorf("--mount %q: unknown key %q", v, k)
		}
	}
	switch m.typ {
	case manifest.MountBind, manifest.MountVolume, manifest.MountTmpfs:
	default:
		s.note(Unsupported, flag, nil, "mount type "+m.typ+" is not in manifest v1 (bind, volume and tmpfs are)")
		return nil
	}
	return s.addMount(m, flag)
}

var tmpfsSizeK = regexp.MustCompile(`^[0-9]+[kKmMgG]?$`)

// tmpfsFlag reads --tmpfs TARGET[:OPTIONS].
func (s *spec) tmpfsFlag(v string) error {
	flag := "--tmpfs " + v
	target, opts, _ := strings.Cut(v, ":")
	m := mount{typ: manifest.MountTmpfs, target: target}
	for _, o := range strings.Split(opts, ",") {
		k, val, _ := strings.Cut(o, "=")
		switch k {
		case "", "nosuid", "nodev", "rw":
		case "size":
			if !tmpfsSizeK.MatchString(val) {
				return fmt.Errorf("--tmpfs %q: size %q is not a size", v, val)
			}
			n, err := manifest.ParseSize(val)
			if err != nil {
				return fmt.Errorf("--tmpfs %q: %w", v, err)
			}
			m.size = int64(n)
		case "mode":
			m.mode = val
		case "ro", "exec", "noexec":
			m.options = append(m.options, k)
		case "uid", "gid", "nr_inodes":
			m.options = append(m.options, o)
		case "suid", "dev":
			s.note(Unsupported, flag, nil, "tmpfs option "+k+" loosens safe-run's nosuid,nodev, which are always set")
		default:
			s.note(Unsupported, flag, nil, "tmpfs option "+o+" is not in manifest v1")
		}
	}
	return s.addMount(m, flag)
}

// abs makes a relative host path absolute from Options.Dir, as docker
// reads it from where it runs and compose from the compose file's
// directory; a manifest would read it from its own.
func (s *spec) abs(p string) string {
	if p == "" || path.IsAbs(p) || strings.HasPrefix(p, "~") || strings.HasPrefix(p, "$") || !path.IsAbs(s.dir) {
		return p
	}
	return path.Join(s.dir, p)
}

func isHostPath(src string) bool {
	return strings.HasPrefix(src, "/") || strings.HasPrefix(src, ".") || strings.HasPrefix(src, "~") || strings.HasPrefix(src, "$")
}

// addMount records a mount for both the rules and the manifest, or says
// why the manifest cannot have it.
func (s *spec) addMount(m mount, flag string) error {
	if m.target == "" || !path.IsAbs(m.target) {
		return fmt.Errorf("%s: the target %q is not an absolute path in the container", flag, m.target)
	}
	m.target = path.Clean(m.target)
	if m.typ != manifest.MountTmpfs {
		s.c.Mounts = append(s.c.Mounts, policy.ContainerMount{Type: m.typ, Source: m.source, Target: m.target, ReadOnly: m.readOnly})
	}
	given := m.source
	if m.typ == manifest.MountBind {
		m.source = s.abs(m.source)
	}
	if name, ok := strings.CutPrefix(m.target, "/run/secrets/"); ok && m.typ == manifest.MountBind && secretName.MatchString(name) && isHostPath(m.source) {
		// How docker and compose hand a service a secret: safe-run's
		// [secrets] does it, as a 0400 copy on a tmpfs.
		for _, sec := range s.secrets {
			if sec[0] == name {
				s.note(Unsupported, flag, nil, "secret "+name+" is given twice: the first is kept")
				return nil
			}
		}
		s.secrets = append(s.secrets, [2]string{name, m.source})
		s.note(Default, flag, nil, "written as [secrets] "+name+": safe-run copies the file to a tmpfs at /run/secrets/"+name+", 0400, owned by the service's user")
		return nil
	}
	for _, r := range manifest.ReservedTargets() {
		if m.target == r || strings.HasPrefix(m.target, r+"/") {
			s.note(Unsupported, flag, nil, r+" in the container is safe-run's own (it mounts a private one): mount somewhere else and point the service there")
			return nil
		}
	}
	if m.target == "/" {
		s.note(Unsupported, flag, nil, "a mount cannot replace the root filesystem")
		return nil
	}
	for _, o := range s.mounts {
		if o.target == m.target {
			s.note(Unsupported, flag, nil, m.target+" is already mounted by an earlier flag")
			return nil
		}
	}
	switch m.typ {
	case manifest.MountBind:
		if strings.HasPrefix(m.source, "~") || strings.HasPrefix(m.source, "$") {
			s.note(Default, flag, nil, m.source[:1]+" is not expanded in a manifest: write the absolute path")
		} else if !path.IsAbs(m.source) {
			s.note(Default, flag, nil, "a relative source is relative to the manifest's directory, not to where docker ran: check it")
		} else if given != m.source {
			s.note(Default, flag, nil, "the relative source is written as the absolute path "+m.source+": a manifest reads relative paths from its own directory")
		}
		if why, bad := policy.SensitivePath(m.source); bad && path.IsAbs(m.source) {
			s.allow(manifest.AllowSensitiveMounts, flag, policy.Lookup("sensitive-mount"), "carried over with [insecure] sensitive_mounts: "+why)
		}
		if !m.readOnly {
			r := policy.Lookup("writable-bind")
			m.comment = "TODO " + r.ID + " " + r.Name + ": read_only = true unless the service writes here"
			s.note(Default, flag, r, "carried over writable, as docker binds it; prefer read_only = true or a volume")
		}
	case manifest.MountVolume:
		if m.source == "" {
			m.anonymous = true
			m.comment = "docker made an anonymous volume here: named after the service and the target"
		} else if !volumeNamePattern.MatchString(m.source) {
			return fmt.Errorf("%s: %q is not a volume name", flag, m.source)
		}
	}
	s.mounts = append(s.mounts, m)
	return nil
}

// secretName is a manifest secret's name (manifest's secretPattern).
var secretName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

var volumeNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// volumeName names an anonymous volume after the service and its target:
// web, /var/lib/data -> web-var-lib-data. Two services never share one by
// accident (found by a black-box probe: two redis services both got
// "data", and the second could not use it).
func volumeName(service, target string) string {
	n := service + "-" + targetName(target)
	if len(n) > 128 {
		n = n[:128]
	}
	return n
}

// targetName turns a path into a name: /var/lib/data -> var-lib-data.
func targetName(target string) string {
	n := strings.Trim(strings.ReplaceAll(target, "/", "-"), "-")
	n = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '-' {
			return r
		}
		return '-'
	}, n)
	if n == "" {
		n = "data"
	}
	return n
}

func sizeString(n int64) string { return manifest.Size(n).String() }

func modeString(m string) (string, error) {
	v, err := strconv.ParseUint(strings.TrimPrefix(m, "0o"), 8, 32)
	if err != nil || v > 0o7777 {
		return "", fmt.Errorf("%q is not an octal mode", m)
	}
	return fmt.Sprintf("%04o", v), nil
}
