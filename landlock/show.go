package landlock

import (
	"encoding/binary"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

var fsNames = []string{"execute", "write-file", "read-file", "read-dir", "remove-dir", "remove-file",
	"make-char", "make-dir", "make-reg", "make-sock", "make-fifo", "make-block", "make-sym",
	"refer", "truncate", "ioctl-dev"}

var netNames = []string{"bind-tcp", "connect-tcp"}

var scopeNames = []string{"abstract-unix-socket", "signal"}

func names(m uint64, all []string) string {
	var out []string
	for i, n := range all {
		if m&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, " ")
}

// Show writes r in words: what the kernel handles, and what each rule
// grants. Everything handled and not granted is denied.
func (r *Ruleset) Show(w io.Writer, service string) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "Landlock ruleset of %s at ABI %d\n", service, r.ABI)
	fmt.Fprintf(tw, "handled file system rights: %s\n", names(r.HandledFS, fsNames))
	if r.ABI >= 4 {
		fmt.Fprintf(tw, "handled network rights: %s\n", names(r.HandledNet, netNames))
	} else {
		fmt.Fprintf(tw, "network: not restricted (TCP rules need ABI 4)\n")
	}
	if r.ABI >= 6 {
		fmt.Fprintf(tw, "scoped (nothing outside the service): %s\n", names(r.Scoped, scopeNames))
	} else {
		fmt.Fprintf(tw, "scoping: none (abstract unix sockets and signals need ABI 6)\n")
	}
	if r.RestrictFlags&RestrictSelfLogNewExecOn != 0 {
		fmt.Fprintf(tw, "denials: in the kernel's audit log, when audit is enabled (ABI 7); EACCES to the service\n")
	} else {
		fmt.Fprintf(tw, "denials: EACCES only, not audited (audit needs ABI 7)\n")
	}
	fmt.Fprintf(tw, "granted (a right on a directory holds beneath it):\n")
	for _, p := range r.Paths {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", p.Path, names(p.Access, fsNames), p.Why)
	}
	for _, p := range r.Ports {
		fmt.Fprintf(tw, "  TCP %d\t%s\t%s\n", p.Port, names(p.Access, netNames), p.Why)
	}
	if r.ConnectOpen != "" {
		fmt.Fprintf(tw, "TCP connect: any port (%s)\n", r.ConnectOpen)
	}
	return tw.Flush()
}

// Limits of Encode, which safe-run-init checks too.
const (
	maxRules   = 4096
	maxPathLen = 4095
)

// Encode writes r as safe-run-init reads it from its control socket,
// in the machine's byte order: the ABI (0: no ruleset, and nothing
// follows), the landlock_restrict_self flags, the handled file system and
// network rights and the scopes, the number of path and port rules; then
// each path rule (rights, length, path without NUL), then each port rule
// (rights, port). A nil r encodes as no ruleset.
func (r *Ruleset) Encode() ([]byte, error) {
	ne := binary.NativeEndian
	if r == nil {
		return ne.AppendUint32(nil, 0), nil
	}
	if len(r.Paths) > maxRules || len(r.Ports) > maxRules {
		return nil, fmt.Errorf("landlock: %d path and %d port rules, more than %d", len(r.Paths), len(r.Ports), maxRules)
	}
	b := ne.AppendUint32(nil, uint32(r.ABI))
	b = ne.AppendUint32(b, r.RestrictFlags)
	b = ne.AppendUint64(b, r.HandledFS)
	b = ne.AppendUint64(b, r.HandledNet)
	b = ne.AppendUint64(b, r.Scoped)
	b = ne.AppendUint32(b, uint32(len(r.Paths)))
	b = ne.AppendUint32(b, uint32(len(r.Ports)))
	for _, p := range r.Paths {
		if len(p.Path) == 0 || len(p.Path) > maxPathLen || strings.IndexByte(p.Path, 0) >= 0 {
			return nil, fmt.Errorf("landlock: the path %q cannot be sent to safe-run-init", p.Path)
		}
		b = ne.AppendUint64(b, p.Access)
		b = ne.AppendUint32(b, uint32(len(p.Path)))
		b = append(b, p.Path...)
	}
	for _, p := range r.Ports {
		b = ne.AppendUint64(b, p.Access)
		b = ne.AppendUint64(b, uint64(p.Port))
	}
	return b, nil
}
