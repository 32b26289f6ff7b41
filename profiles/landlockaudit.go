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
// on what: a path, else the record's other fields (a port, a signalled
// process), without the device and inode numbers.
func describeLandlockAccess(f fieldList) (blocker, object string) {
	var rights []string
	for b := range strings.SplitSeq(f.get("blockers"), ",") {
		if _, name, ok := strings.Cut(b, "."); ok {
			b = name
		}
		rights = append(rights, strings.ReplaceAll(b, "_", "-"))
	}
	blocker = strings.Join(rights, " ")
	if p := f.get("path"); p != "" {
		return blocker, auditString(p)
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
