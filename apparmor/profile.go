package apparmor

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"text/template"

	"github.com/safe-run/safe-run/manifest"
)

// NamePrefix starts the name of every profile safe-run generates:
// safe-run-NAME for the service NAME.
const NamePrefix = "safe-run-"

// Profile is the AppArmor confinement of one service.
type Profile struct {
	// Name is the profile the service runs under.
	Name string
	// Mode is "enforce" or "complain" for a generated profile; empty for
	// a profile loaded by someone else, which keeps its own mode.
	Mode string
	// Policy is the source of a generated profile, which Load compiles
	// and loads before the start; empty for a profile already loaded.
	Policy string
	// Manifest is the file the profile was generated from, for hints.
	Manifest string
}

// Host is what the kernel offers, as package host found it (host.Probe): the
// generator never looks at the host itself.
type Host struct {
	// Enabled: the kernel has AppArmor, enabled, with securityfs mounted.
	Enabled bool
	// NoSecurityfs: the kernel has AppArmor enabled, but securityfs, its
	// interface, is not mounted, so no profile can be loaded or applied.
	NoSecurityfs bool
	// Loaded maps the name of every loaded profile to its mode; nil when
	// unknown (the list is readable by root only).
	Loaded map[string]string
}

// Name is the name of service's generated profile.
func Name(service string) string { return NamePrefix + service }

// ForService decides the AppArmor confinement of svc on host. It returns
// nil when none applies, with a note for the start report saying why; and
// an error when the manifest asks for what the host cannot give.
func ForService(svc *manifest.Service, host Host) (p *Profile, note string, err error) {
	sec := svc.Security
	if sec.AppArmor == "unconfined" {
		if host.Enabled {
			note = "AppArmor UNCONFINED ([insecure] apparmor_unconfined)"
		}
		return nil, note, nil
	}
	if !host.Enabled {
		why, fix := "this kernel has no AppArmor", "run on a kernel with AppArmor enabled"
		if host.NoSecurityfs {
			why, fix = "AppArmor is in this kernel, but securityfs is not mounted", "as root: mount -t securityfs securityfs /sys/kernel/security"
		}
		if sec.AppArmorRequired {
			return nil, "", fmt.Errorf("%w: %w", ErrNotEnabled, svc.Errorf("security.apparmor_required",
				"%s (%s, or set apparmor_required = false)", why, fix))
		}
		note := "AppArmor not enforced: " + why
		if host.NoSecurityfs {
			note += " (" + fix + ")"
		}
		return nil, note, nil
	}
	if sec.AppArmor != "generated" {
		if sec.AppArmorMode == "complain" {
			return nil, "", svc.Errorf("security.apparmor_mode",
				`"complain" applies to the generated profile; %q keeps the mode it was loaded in (load it in complain mode with apparmor_parser -C, or remove apparmor_mode)`, sec.AppArmor)
		}
		if _, ok := host.Loaded[sec.AppArmor]; host.Loaded != nil && !ok {
			return nil, "", fmt.Errorf("%w: %w", ErrNotLoaded, svc.Errorf("security.apparmor",
				`profile %q is not loaded in the kernel (load it first, e.g. apparmor_parser -r /etc/apparmor.d/%s, or use apparmor = "generated")`, sec.AppArmor, sec.AppArmor))
		}
		return &Profile{Name: sec.AppArmor, Manifest: svc.File}, "", nil
	}
	p, err = Generated(svc)
	if err != nil {
		return nil, "", err
	}
	if p.Mode == "complain" {
		note = "AppArmor profile " + p.Name + " in COMPLAIN mode: denials are logged, not enforced (security.apparmor_mode)"
	}
	return p, note, nil
}

// Generated returns the profile safe-run generates for svc, whatever the
// host: what Load loads and Install installs.
func Generated(svc *manifest.Service) (*Profile, error) {
	if svc.Security.AppArmor != "generated" {
		return nil, svc.Errorf("security.apparmor", `is %q, so safe-run generates no profile for %s (set apparmor = "generated")`, svc.Security.AppArmor, svc.Name)
	}
	text, err := Generate(svc)
	if err != nil {
		return nil, err
	}
	return &Profile{Name: Name(svc.Name), Mode: svc.Security.AppArmorMode, Policy: text, Manifest: svc.File}, nil
}

// Generate writes the AppArmor profile of svc. The text depends on the
// manifest alone, never on the host.
func Generate(svc *manifest.Service) (string, error) {
	r := rules{
		Service:        svc.Name,
		Name:           Name(svc.Name),
		Flags:          "attach_disconnected,mediate_deleted",
		Deny:           "audit deny",
		Complain:       svc.Security.AppArmorMode == "complain",
		WritableRootfs: !svc.Security.ReadOnlyRootfs,
		Secrets:        len(svc.Secrets) > 0,
		TTY:            svc.Process.TTY,
		HostNetwork:    svc.Network.Mode == manifest.NetworkHost,
	}
	if r.Complain {
		r.Flags += ",complain"
		// The kernel holds a deny rule in complain mode only when the
		// rule is quiet: an audited one is logged as ALLOWED and lets
		// the access through (seen on Debian 12's 6.1 kernel, in the
		// guest of launcher's TestInGuest).
		r.Deny = "deny"
	}
	for _, c := range svc.Security.Capabilities {
		r.Capabilities = append(r.Capabilities, strings.ToLower(c.Short()))
		if c == "CAP_NET_RAW" {
			r.NetRaw = true
		}
	}
	slices.Sort(r.Capabilities)
	r.Capabilities = slices.Compact(r.Capabilities)
	for i, m := range svc.Mounts {
		mr, err := mountRules(m)
		if err != nil {
			return "", svc.Errorf(fmt.Sprintf("mounts[%d].target", i), "%w", err)
		}
		r.Mounts = append(r.Mounts, mr)
	}
	var b strings.Builder
	if err := profileTemplate().Execute(&b, r); err != nil {
		return "", err
	}
	return b.String(), nil
}

// rules are what the template needs, decided from the manifest.
type rules struct {
	Service, Name, Flags string
	Deny                 string // "audit deny": logged; "deny" in complain mode, where only it holds
	Complain             bool
	WritableRootfs       bool
	Mounts               []mountRule
	Secrets              bool
	TTY                  bool
	HostNetwork          bool
	NetRaw               bool
	Capabilities         []string
}

type mountRule struct {
	Target   string // as the manifest writes it, for the comment
	What     string // what is mounted there, for the comment
	Tree     string // the mount and everything below it
	Below    string // everything below it
	Writable bool
	Exec     bool // a tmpfs with options = ["exec"]
}

func mountRules(m manifest.Mount) (mountRule, error) {
	tree, err := quotePath(m.Target, "/{,**}")
	if err != nil {
		return mountRule{}, err
	}
	below, _ := quotePath(m.Target, "/**")
	mr := mountRule{Target: m.Target, Tree: tree, Below: below, Writable: m.Writable()}
	switch m.Type {
	case manifest.MountTmpfs:
		mr.What = "tmpfs"
		if m.Size != 0 {
			mr.What += " of " + m.Size.String()
		}
		mr.Exec = slices.Contains(m.Options, "exec")
	case manifest.MountVolume:
		mr.What = fmt.Sprintf("volume %q", m.Source)
	default:
		mr.What = "bind mount"
	}
	return mr, nil
}

// quotePath writes the literal path p followed by the glob suffix as an
// AppArmor path: bare when that is unambiguous, else quoted with every
// character that AppArmor would read as a glob, a variable or a quote
// escaped. Control characters cannot be written at all.
func quotePath(p, suffix string) (string, error) {
	plain := true
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c < 0x20 || c == 0x7f:
			return "", fmt.Errorf("%q holds a control character, which an AppArmor rule cannot name (rename the target)", p)
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', strings.IndexByte("/._+-", c) >= 0:
		case strings.IndexByte(`\"*?[]{}^`, c) >= 0:
			// Escaping { also keeps @{ from reading as a variable.
			b.WriteByte('\\')
			plain = false
		default:
			plain = false
		}
		b.WriteByte(c)
	}
	if plain {
		return p + suffix, nil
	}
	return `"` + b.String() + suffix + `"`, nil
}

// The template of every generated profile. Comments in it explain each rule
// to whoever reads the profile; these explain the code:
//
//   - /{,**}, not /**: AppArmor's ** needs at least one character, so /**
//     leaves out the root directory itself.
//   - umount names its paths: apparmor_parser 3.0.8 (Debian 12) compiles
//     "audit deny umount," into a rule that lets every mount and umount
//     through, where "audit deny umount /{,**}," denies them (seen in the
//     guest, see launcher's TestInGuest).
//
// It is parsed on first use: this package is linked into what libcontainer
// re-executes as every container's init, where it is never used.
var profileTemplate = sync.OnceValue(func() *template.Template {
	return template.Must(template.New("profile").Parse(profileText))
})

const profileText = `# AppArmor profile of the safe-run service "{{.Service}}".
#
# safe-run generates it from the service's manifest on every start and loads
# it before the service runs; "safe-run apparmor install" installs it for
# users without root. Change the manifest, not this file: each rule follows
# from what the manifest declares.
{{- if .Complain}}
#
# COMPLAIN mode (security.apparmor_mode): what the rules do not allow is
# logged as apparmor="ALLOWED" and permitted. The deny rules still hold,
# unlogged: the kernel holds only quiet denials in complain mode.
{{- end}}

# The policy ABI is pinned: the rules mean the same on every kernel.
abi <abi/3.0>,

profile {{.Name}} flags=({{.Flags}}) {
  # The image: read, map and run anything in it, in this profile.
{{- if .WritableRootfs}}
  # Its root file system is WRITABLE ([insecure] writable_rootfs).
  /{,**} rmix,
  /{,**} wlk,
{{- else}}
  # Its root file system is read-only, so whatever runs came with it.
  /{,**} rmix,
{{- end}}
{{- range .Mounts}}

  # {{.Target}}: {{.What}},
  {{- if .Writable}}
  {{- if .Exec}} writable, and executable (options = ["exec"]).
  {{.Tree}} rwlk,
  {{- else}} writable; what is written there never runs.
  {{.Tree}} rwlk,
  {{$.Deny}} {{.Below}} mx,
  {{- end}}
  {{- else}} read-only.
  {{- end}}
{{- end}}
{{- if .Secrets}}

  # /run/secrets: the service's secrets, read-only in every mode.
  {{.Deny}} /run/secrets/** wl,
{{- end}}

  # Devices every program uses, the terminal, and POSIX shared memory,
  # where what is written never runs either.
  /dev/null rw,
  /dev/zero rw,
  /dev/full rw,
  /dev/random rw,
  /dev/urandom rw,
  /dev/tty rw,
  /dev/pts/* rw,
{{- if .TTY}}
  /dev/console rw,
{{- end}}
  /dev/shm/** rwlk,
  {{.Deny}} /dev/shm/** mx,
  # Its own open files, reopened through /proc/self/fd, /dev/stdout or
  # /dev/stderr: a shell's ">/dev/stderr" asks to create the link itself,
  # and the file it reaches is checked under its own name.
  owner /proc/*/fd/* w,

  # Network: TCP and UDP over IPv4 and IPv6, local sockets, and netlink to
  # list interfaces and addresses.
{{- if .HostNetwork}}
  # The network is the HOST's ([insecure] host_network).
{{- end}}
  network inet stream,
  network inet dgram,
  network inet6 stream,
  network inet6 dgram,
  network unix,
  network netlink raw,
{{- if .NetRaw}}
  # Raw and packet sockets: NET_RAW is declared.
  network inet raw,
  network inet6 raw,
  network packet,
{{- else}}
  # No raw or packet sockets: NET_RAW is not declared.
{{- end}}
{{if .Capabilities}}
  # Capabilities: exactly the declared ones.
{{- range .Capabilities}}
  capability {{.}},
{{- end}}
{{- else}}
  # Capabilities: none is declared, so none is allowed.
{{- end}}

  # Signals and ptrace within the service; signals from safe-run, which
  # supervises it unconfined.
  signal (send, receive) peer={{.Name}},
  signal (receive) peer=unconfined,
  ptrace (read, trace, readby, tracedby) peer={{.Name}},

  # Never, in any mode{{if not .Complain}}, and always logged{{end}}.
  # Container escapes are made of these: mounts rearrange what the service
  # sees of the host; these /proc and /sys files reconfigure the kernel or
  # expose its memory; a process's mem and attr files write memory past its
  # page protections or change its confinement.
  {{.Deny}} mount,
  {{.Deny}} umount /{,**},
  {{.Deny}} pivot_root,
  {{.Deny}} /proc/sys/** wl,
  {{.Deny}} /proc/sysrq-trigger rwl,
  {{.Deny}} /proc/kcore rwl,
  {{.Deny}} /proc/kmem rwl,
  {{.Deny}} /proc/mem rwl,
  {{.Deny}} /proc/*/{,task/*/}{mem,attr/**} wl,
  {{.Deny}} /sys/** wl,
  {{.Deny}} /sys/firmware/** rwl,
  {{.Deny}} /sys/kernel/security/** rwl,
}
`
