package profiles

import (
	"bytes"
	"testing"
	"time"
)

// TestLandlockDenials pins how the kernel's Landlock audit records
// (security/landlock/audit.c, as the audit socket carries them) become
// lines: the service's domain is known from its domain record, which
// follows its first access record; another process's domain is dropped;
// each right gets at most five lines a second.
func TestLandlockDenials(t *testing.T) {
	var buf bytes.Buffer
	rep := newReporter(&buf, "web")
	now := time.Unix(1000, 0)
	rep.now = func() time.Time { return now }
	d := newLandlockDomains(1073741824, 65536, func(blocker, object string) {
		rep.limited(&buf, "landlock denied "+blocker, " "+object)
	})
	records := []struct {
		typ  uint16
		text string
	}{
		// Another sandbox on the host: its uid is not the service's.
		{auditLandlockAccess, `audit(1765011600.100:41): domain=1a6fdc66f blockers=fs.make_reg path="/tmp" dev="tmpfs" ino=1`},
		{auditLandlockDomain, `audit(1765011600.100:41): domain=1a6fdc66f status=allocated mode=enforcing pid=286 uid=0 exe="/root/sandboxer" comm="sandboxer"`},
		// The service's first denial, then its domain.
		{auditLandlockAccess, `audit(1765011600.200:42): domain=195ba459b blockers=fs.write_file path="/etc/app/x" dev="sda1" ino=3411`},
		{auditLandlockDomain, `audit(1765011600.200:42): domain=195ba459b status=allocated mode=enforcing pid=3021 uid=1073742824 exe="/dev/init" comm="init"`},
		{auditLandlockAccess, `audit(1765011600.300:43): domain=195ba459b blockers=fs.execute path="/data/true" dev="sda1" ino=77`},
		{auditLandlockAccess, `audit(1765011600.300:44): domain=1a6fdc66f blockers=fs.execute path="/tmp/x" dev="tmpfs" ino=2`},
		{auditLandlockAccess, `audit(1765011600.400:45): domain=195ba459b blockers=fs.make_reg,fs.truncate path=2F7661722F612062 dev="sda1" ino=9`},
		{auditLandlockAccess, `audit(1765011600.500:46): domain=195ba459b blockers=net.bind_tcp src=9999`},
		{auditLandlockAccess, `audit(1765011600.500:47): domain=195ba459b blockers=scope.signal opid=1 ocomm="systemd"`},
		{auditLandlockAccess, `audit(1765011600.500:48): domain=195ba459b blockers=net.connect_tcp dest=80`},
		{auditLandlockAccess, `audit(1765011600.500:49): domain=195ba459b blockers=scope.abstract_unix_socket path=00782D7331`},
		{auditLandlockAccess, `audit(1765011600.500:50): domain=195ba459b blockers=fs.remove_file path="/etc/app" dev="sda1" ino=3410`},
	}
	for _, r := range records {
		d.record(r.typ, r.text)
	}
	for range 7 {
		d.record(auditLandlockAccess, `audit(1765011600.600:48): domain=195ba459b blockers=fs.write_file path="/etc/app/y" dev="sda1" ino=3412`)
	}
	d.record(auditLandlockDomain, `audit(1765011601.000:49): domain=195ba459b status=deallocated denials=17`)
	d.record(auditLandlockAccess, `audit(1765011601.100:50): domain=195ba459b blockers=fs.write_file path="/etc/app/z" dev="sda1" ino=3413`)
	rep.flush(true)
	want := `safe-run: web: landlock denied write-file /etc/app/x
safe-run: web: landlock denied execute /data/true
safe-run: web: landlock denied make-reg truncate in /var/a b
safe-run: web: landlock denied bind-tcp port 9999
safe-run: web: landlock denied signal host pid 1 (systemd)
safe-run: web: landlock denied connect-tcp port 80
safe-run: web: landlock denied abstract-unix-socket @x-s1
safe-run: web: landlock denied remove-file in /etc/app
safe-run: web: landlock denied write-file /etc/app/y
safe-run: web: landlock denied write-file /etc/app/y
safe-run: web: landlock denied write-file /etc/app/y
safe-run: web: landlock denied write-file /etc/app/y
safe-run: web: landlock denied write-file: 3 more suppressed
`
	// The last record's domain is gone: it waits for a domain record
	// that never comes, and is not shown.
	if got := buf.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}
