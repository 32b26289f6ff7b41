package profiles

import (
	"strconv"
	"strings"
)

// Landlock denials: from ABI 7 the kernel audits what a Landlock domain
// denies, where its audit is on (auditd runs, or audit=1; Landlock checks
// audit_enabled, unlike seccomp), as two records (security/landlock/
// audit.c):
//
//	AUDIT_LANDLOCK_ACCESS  domain=195ba459b blockers=fs.write_file path="/dev/x" dev="tmpfs" ino=3
//	AUDIT_LANDLOCK_DOMAIN  domain=195ba459b status=allocated mode=enforcing pid=3021 uid=1073741824 exe="/dev/init" comm="init"
//
// The domain record follows the first access record of each domain, and
// names the host uid of the process that made it: the domain is the
// service's when that uid is one of its user namespace's. Its later
// access records carry only the domain. Each is reported as
//
//	safe-run: web: landlock denied write-file /dev/x
//
// at most linesPerSecond a second for each right.

// Audit record types of Landlock (<linux/audit.h>, Linux 6.15).
const (
	auditLandlockAccess = 1423
	auditLandlockDomain = 1424
)

// maxPendingDenials bounds the access records kept while their domain is
// not known yet: a domain record follows within the same event.
const maxPendingDenials = 64

// landlockDomains sorts access records by domain: the service's are
// reported, others' dropped.
type landlockDomains struct {
	uid, uids uint32          // the service's host uids
	ours      map[string]bool // domain id -> the service's
	pending   []landlockDenial
	report    func(blocker, object string)
}

type landlockDenial struct{ domain, blocker, object string }

func newLandlockDomains(uid, uids uint32, report func(blocker, object string)) *landlockDomains {
	return &landlockDomains{uid: uid, uids: uids, ours: map[string]bool{}, report: report}
}

// record handles one Landlock audit record of type typ.
func (d *landlockDomains) record(typ uint16, text string) {
	fields := auditFields(text)
	domain := fields.get("domain")
	if domain == "" {
		return
	}
	switch typ {
	case auditLandlockAccess:
		den := landlockDenial{domain: domain}
		den.blocker, den.object = describeLandlockAccess(fields)
		ours, known := d.ours[domain]
		switch {
		case ours:
			d.report(den.blocker, den.object)
		case !known:
			if len(d.pending) == maxPendingDenials {
				d.pending = d.pending[1:]
			}
			d.pending = append(d.pending, den)
		}
	case auditLandlockDomain:
		switch fields.get("status") {
		case "allocated":
			uid, ok := parseUint32(fields.get("uid"))
			ours := ok && uid >= d.uid && uid-d.uid < d.uids
			d.ours[domain] = ours
			kept := d.pending[:0]
			for _, p := range d.pending {
				switch {
				case p.domain != domain:
					kept = append(kept, p)
				case ours:
					d.report(p.blocker, p.object)
				}
			}
			d.pending = kept
		case "deallocated":
			delete(d.ours, domain)
		}
	}
}

// describeLandlockAccess says what an access record denied: the rights
// (blockers, "fs.write_file,fs.truncate" as "write-file truncate"), and
// on what, as the kernel's lsm_audit.c writes it (Linux 6.18):
//
//	fs.write_file path="/etc/app/x" dev="sda1" ino=3411   write-file /etc/app/x
//	fs.make_reg path="/dev" dev="tmpfs" ino=1             make-reg in /dev (the directory)
//	net.bind_tcp src=9999                                 bind-tcp port 9999
//	net.connect_tcp dest=80                               connect-tcp port 80
//	scope.signal opid=2311 ocomm="sleep"                  signal host pid 2311 (sleep)
//	scope.abstract_unix_socket path=00736f636b            abstract-unix-socket @sock
//
// and otherwise the record's other fields as they are, without the
// device and inode numbers.
func describeLandlockAccess(f fieldList) (blocker, object string) {
	var rights []string
	inDir := false
	for b := range strings.SplitSeq(f.get("blockers"), ",") {
		if _, name, ok := strings.Cut(b, "."); ok {
			b = name
		}
		// Making and removing are checked on the directory: the
		// record names it, not the entry.
		inDir = inDir || strings.HasPrefix(b, "make_") || strings.HasPrefix(b, "remove_")
		rights = append(rights, strings.ReplaceAll(b, "_", "-"))
	}
	blocker = strings.Join(rights, " ")
	if p := f.get("path"); p != "" {
		p = auditString(p)
		switch {
		case strings.HasPrefix(p, "\x00"):
			// An abstract unix socket's name, in hex from its NUL on.
			return blocker, "@" + strings.TrimRight(p[1:], "\x00")
		case inDir:
			return blocker, "in " + p
		}
		return blocker, p
	}
	for _, port := range []string{"src", "dest"} {
		if v := f.get(port); v != "" {
			return blocker, "port " + v
		}
	}
	if pid := f.get("opid"); pid != "" {
		if comm := f.get("ocomm"); comm != "" {
			return blocker, "host pid " + pid + " (" + auditString(comm) + ")"
		}
		return blocker, "host pid " + pid
	}
	var rest []string
	for _, kv := range f {
		switch kv[0] {
		case "domain", "blockers", "dev", "ino":
			continue
		}
		// Numbers as they are; a quoted string without its quotes
		// (what is in hex stays so: a number is not told apart).
		rest = append(rest, kv[0]+"="+strings.Trim(kv[1], `"`))
	}
	return blocker, strings.Join(rest, " ")
}

// fieldList is an audit record's key=value fields, in order.
type fieldList [][2]string

func auditFields(text string) fieldList {
	var out fieldList
	for f := range strings.FieldsSeq(text) {
		if k, v, ok := strings.Cut(f, "="); ok {
			out = append(out, [2]string{k, v})
		}
	}
	return out
}

func (f fieldList) get(key string) string {
	for _, kv := range f {
		if kv[0] == key {
			return kv[1]
		}
	}
	return ""
}

func parseUint32(s string) (uint32, bool) {
	n, err := strconv.ParseUint(s, 10, 32)
	return uint32(n), err == nil
}
