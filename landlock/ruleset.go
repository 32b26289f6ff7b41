package landlock

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/safe-run/safe-run/manifest"
)

// The access rights and flags of include/uapi/linux/landlock.h, by the ABI
// that introduced them.
const (
	FSExecute    uint64 = 1 << 0 // ABI 1
	FSWriteFile  uint64 = 1 << 1
	FSReadFile   uint64 = 1 << 2
	FSReadDir    uint64 = 1 << 3
	FSRemoveDir  uint64 = 1 << 4
	FSRemoveFile uint64 = 1 << 5
	FSMakeChar   uint64 = 1 << 6
	FSMakeDir    uint64 = 1 << 7
	FSMakeReg    uint64 = 1 << 8
	FSMakeSock   uint64 = 1 << 9
	FSMakeFifo   uint64 = 1 << 10
	FSMakeBlock  uint64 = 1 << 11
	FSMakeSym    uint64 = 1 << 12
	FSRefer      uint64 = 1 << 13 // ABI 2
	FSTruncate   uint64 = 1 << 14 // ABI 3
	FSIoctlDev   uint64 = 1 << 15 // ABI 5

	NetBindTCP    uint64 = 1 << 0 // ABI 4
	NetConnectTCP uint64 = 1 << 1

	ScopeAbstractUnixSocket uint64 = 1 << 0 // ABI 6
	ScopeSignal             uint64 = 1 << 1

	// RestrictSelfLogNewExecOn keeps auditing denials after execve
	// (ABI 7); without it the kernel logs only those of the program that
	// called landlock_restrict_self, here safe-run-init.
	RestrictSelfLogNewExecOn uint32 = 1 << 1
)

// MaxABI is the newest Landlock ABI this package knows; a newer kernel is
// used at this one (Landlock is backward compatible).
const MaxABI = 7

// FSRights are the file system rights the kernel handles at abi: all of
// them, so that a right not granted by a rule is denied.
func FSRights(abi int) uint64 {
	var m uint64
	if abi >= 1 {
		m = FSMakeSym<<1 - 1
	}
	if abi >= 2 {
		m |= FSRefer
	}
	if abi >= 3 {
		m |= FSTruncate
	}
	if abi >= 5 {
		m |= FSIoctlDev
	}
	return m
}

// Rights of the rules.
const (
	read    = FSReadFile | FSReadDir
	runs    = read | FSExecute
	write   = FSWriteFile | FSRemoveDir | FSRemoveFile | FSMakeDir | FSMakeReg | FSMakeSock | FSMakeFifo | FSMakeSym | FSRefer | FSTruncate
	device  = FSReadFile | FSWriteFile | FSTruncate
	fileMax = FSExecute | FSWriteFile | FSReadFile | FSTruncate | FSIoctlDev // what a rule on a non-directory may hold
)

// Ruleset is the Landlock confinement of one service at one ABI. It
// crosses from safe-run-tools to safe-run as JSON (plan.Job) and from
// safe-run to safe-run-init as Encode's bytes.
type Ruleset struct {
	ABI           int    // the kernel's ABI it was generated for, at most MaxABI
	HandledFS     uint64 // file system rights the kernel denies unless a rule grants them
	HandledNet    uint64 // network rights likewise; 0 before ABI 4
	Scoped        uint64 // IPC scopes; 0 before ABI 6
	RestrictFlags uint32 // flags of landlock_restrict_self
	Paths         []PathRule
	Ports         []PortRule
	// ConnectOpen says why TCP connect is not restricted, when the
	// kernel could but the manifest allows every port.
	ConnectOpen string `json:",omitempty"`
}

// PathRule grants Access beneath Path, a path inside the container.
type PathRule struct {
	Path   string
	Access uint64
	Why    string // what the place is, for show
}

// PortRule grants Access to a TCP port.
type PortRule struct {
	Port   uint16
	Access uint64
	Why    string
}

// Input is what the ruleset follows from.
type Input struct {
	Service *manifest.Service
	// Mounts and Devices are the spec's (plan.Spec): every mount the
	// container gets, the image's own and safe-run's.
	Mounts   []specs.Mount
	Devices  []specs.LinuxDevice
	Terminal bool
	// Image is the image's root file system, for the entries in which
	// programs may run; only directories that hold mount points are
	// listed.
	Image fs.FS
	ABI   int
}

// The device nodes libcontainer creates in every container
// (libcontainer/specconv AllowedDevices).
var defaultDevices = []string{"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty", "/dev/ptmx"}

// Generate returns the ruleset of in.Service at in.ABI, which must be 1 or
// more. It reads only the directories of in.Image that hold mount points.
func Generate(in Input) (*Ruleset, error) {
	if in.ABI < 1 {
		return nil, errors.New("landlock: no ruleset at ABI 0")
	}
	abi := min(in.ABI, MaxABI)
	r := &Ruleset{ABI: abi, HandledFS: FSRights(abi)}
	svc := in.Service
	rules := map[string]*PathRule{}
	add := func(p string, access uint64, why string) {
		if pr := rules[p]; pr != nil {
			pr.Access |= access
			return
		}
		rules[p] = &PathRule{Path: p, Access: access, Why: why}
	}
	if svc.Security.ReadOnlyRootfs {
		add("/", read, "everything the container shows: read")
	} else {
		add("/", read|write, "everything the container shows, the writable rootfs: read, write")
	}

	// Keyed by where each mount really is: runc resolves a destination
	// through the image's symbolic links (a mount at /var/run/x lands on
	// /run/x where /var/run links to /run), and so must the search for
	// the image entries that hold a mount.
	mounts := map[string]specs.Mount{}
	for _, m := range in.Mounts {
		mounts[resolve(in.Image, m.Destination)] = m
	}
	for _, dst := range slices.Sorted(maps.Keys(mounts)) {
		m := mounts[dst]
		switch {
		case dst == "/dev" || dst == "/proc" || dst == "/sys" || strings.HasPrefix(dst, "/sys/") || dst == "/dev/mqueue":
			// Read from "/"; devices below.
		case dst == "/dev/pts":
			access := device
			if in.Terminal {
				access |= FSIoctlDev
			}
			add(dst, access, "the pseudo-terminals")
		case slices.Contains(m.Options, "ro"):
			// A read-only bind, volume or secret: read from "/".
		case m.Type == "tmpfs":
			access := read | write
			why := "tmpfs: read, write, no execute"
			if !slices.Contains(m.Options, "noexec") {
				access |= FSExecute
				why = "tmpfs mounted exec: read, write, execute"
			}
			add(dst, access, why)
		case m.Type == "bind":
			add(dst, read|write, "writable "+bindKind(svc, dst)+": read, write, no execute")
		}
	}
	devs := slices.Clone(defaultDevices)
	for _, d := range in.Devices {
		devs = append(devs, d.Path)
	}
	if in.Terminal {
		devs = append(devs, "/dev/console")
	}
	for _, d := range devs {
		access := device
		if in.Terminal && (d == "/dev/tty" || d == "/dev/ptmx" || d == "/dev/console") {
			access |= FSIoctlDev
		}
		add(d, access, "device")
	}

	if err := imageEntries(in.Image, ".", mounts, add); err != nil {
		return nil, fmt.Errorf("landlock: listing the image: %w", err)
	}
	for _, p := range slices.Sorted(maps.Keys(rules)) {
		pr := *rules[p]
		pr.Access &= r.HandledFS
		if pr.Why == "device" {
			pr.Access &= fileMax
		}
		r.Paths = append(r.Paths, pr)
	}

	if abi >= 4 {
		network(r, svc)
	}
	if abi >= 6 {
		r.Scoped = ScopeAbstractUnixSocket | ScopeSignal
	}
	if abi >= 7 {
		r.RestrictFlags = RestrictSelfLogNewExecOn
	}
	return r, nil
}

// imageEntries grants read and execute on each entry of the image's
// directory dir (relative to the image root) that is not a mount point
// and holds none, and descends into those that hold one.
func imageEntries(img fs.FS, dir string, mounts map[string]specs.Mount, add func(string, uint64, string)) error {
	if img == nil {
		return nil
	}
	entries, err := fs.ReadDir(img, dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Type()&fs.ModeSymlink != 0 {
			continue
		}
		rel := path.Join(dir, e.Name())
		p := "/" + rel
		if _, ok := mounts[p]; ok {
			continue
		}
		if holdsMount(p, mounts) {
			if e.IsDir() {
				if err := imageEntries(img, rel, mounts, add); err != nil {
					return err
				}
			}
			continue
		}
		access := runs
		if !e.IsDir() {
			access = FSReadFile | FSExecute
		}
		add(p, access, "the image: read, execute")
	}
	return nil
}

// resolve returns p, an absolute path inside the image, with every
// symbolic link the image holds on the way resolved inside the image, as
// runc resolves a mount's destination (filepath-securejoin): ".." stops at
// the root, an absolute link starts again from it. What does not exist is
// kept as written.
func resolve(img fs.FS, p string) string {
	rest := strings.Split(strings.TrimPrefix(path.Clean("/"+p), "/"), "/")
	cur := "/"
	for hops := 0; len(rest) > 0; {
		c := rest[0]
		rest = rest[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			cur = path.Dir(cur)
			continue
		}
		next := path.Join(cur, c)
		target, err := readLink(img, next)
		if err != nil {
			cur = next
			continue
		}
		if hops++; hops > 40 {
			return path.Join(append([]string{next}, rest...)...)
		}
		if strings.HasPrefix(target, "/") {
			cur = "/"
		}
		rest = append(strings.Split(target, "/"), rest...)
	}
	return cur
}

// readLink reads the symbolic link at p, an absolute path inside img; an
// error when p is none.
func readLink(img fs.FS, p string) (string, error) {
	if img == nil {
		return "", fs.ErrNotExist
	}
	return fs.ReadLink(img, strings.TrimPrefix(p, "/"))
}

func holdsMount(dir string, mounts map[string]specs.Mount) bool {
	for m := range mounts {
		if strings.HasPrefix(m, dir+"/") {
			return true
		}
	}
	return false
}

// bindKind says what a writable bind at dst is in the manifest.
func bindKind(svc *manifest.Service, dst string) string {
	for _, m := range svc.Mounts {
		if path.Clean(m.Target) == dst {
			return m.Type
		}
	}
	return "bind"
}

// network fills in the TCP rules (ABI 4 and later).
func network(r *Ruleset, svc *manifest.Service) {
	r.HandledNet = NetBindTCP
	bind := map[uint16]string{}
	for i, p := range svc.Network.Published {
		if p.Proto == "tcp" {
			bind[p.ContainerPort] = fmt.Sprintf("network.ports[%d]", i)
		}
	}
	for i, p := range svc.Security.LandlockBind {
		if _, ok := bind[uint16(p)]; !ok {
			bind[uint16(p)] = fmt.Sprintf("security.landlock_bind[%d]", i)
		}
	}
	connect := map[uint16]string{}
	net := svc.Network
	switch {
	case net.Mode == manifest.NetworkHost:
		r.ConnectOpen = "host network: it reaches what the host reaches"
	case net.Mode == manifest.NetworkNone:
		// Loopback reaches only the service itself: its own ports.
		for p := range bind {
			connect[p] = "its own port, on loopback"
		}
	case net.Egress.All:
		r.ConnectOpen = `egress = "all"`
	case net.Bridge != "":
		r.ConnectOpen = fmt.Sprintf("bridge %q: its peers' ports are not known here", net.Bridge)
	default:
		for i, e := range net.Egress.Rules {
			if e.Proto != "" && e.Proto != "tcp" {
				continue
			}
			if e.Port == 0 {
				r.ConnectOpen = fmt.Sprintf("network.egress[%d] %q allows every port", i, e.String())
				break
			}
			if _, ok := connect[e.Port]; !ok {
				connect[e.Port] = fmt.Sprintf("network.egress[%d]", i)
			}
		}
		if _, ok := connect[53]; !ok {
			connect[53] = "DNS over TCP, to the bridge's resolver"
		}
	}
	if r.ConnectOpen == "" {
		r.HandledNet |= NetConnectTCP
	} else {
		clear(connect)
	}
	ports := map[uint16]bool{}
	for p := range bind {
		ports[p] = true
	}
	for p := range connect {
		ports[p] = true
	}
	for _, p := range slices.Sorted(maps.Keys(ports)) {
		pr := PortRule{Port: p}
		var why []string
		if w, ok := bind[p]; ok {
			pr.Access |= NetBindTCP
			why = append(why, "bind: "+w)
		}
		if w, ok := connect[p]; ok {
			pr.Access |= NetConnectTCP
			why = append(why, "connect: "+w)
		}
		pr.Why = strings.Join(why, "; ")
		r.Ports = append(r.Ports, pr)
	}
}
