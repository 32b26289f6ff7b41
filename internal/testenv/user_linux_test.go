package testenv

import (
	"bytes"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// TestGrantTunShared: two grants that overlap, as tests of two packages
// running at once make: the first one out, which set the ACL, leaves it
// to the other; the last one out takes it away and restores the mode.
// (flock locks belong to the open file, so the two grants of one process
// lock as two processes' do.)
func TestGrantTunShared(t *testing.T) {
	RequireRoot(t)
	const tun = "/dev/net/tun"
	st, err := os.Stat(tun)
	if err != nil {
		Skip(t, "needs %s: %v", tun, err)
	}
	if st.Mode().Perm()&0o006 == 0o006 {
		Skip(t, "%s is mode %04o: anyone may open it, GrantTun grants nothing", tun, st.Mode().Perm())
	}
	uid, _ := EnsureUser(t, RootlessUser)
	granted := func() bool {
		b := make([]byte, 256)
		n, _ := unix.Getxattr(tun, "system.posix_acl_access", b)
		return n > 0 && bytes.Contains(b[:n], aclEntry(aclUser, 6, uid))
	}
	// The first grant, which sets the ACL, ends first.
	first, second := &grantHolder{TB: t}, &grantHolder{TB: t}
	GrantTun(first, uid)
	GrantTun(second, uid)
	if !granted() {
		t.Fatal("no ACL entry for the user")
	}
	first.end()
	if !granted() {
		t.Error("the first grant took the ACL away while the second one held it")
	}
	second.end()
	switch now, err := os.Stat(tun); {
	case granted():
		// Another package's test holds a grant still: it takes the
		// ACL away.
		t.Logf("the ACL stays: another test process holds a grant")
	case err != nil || now.Mode() != st.Mode():
		t.Errorf("the mode of %s is %v after the grants, was %v (%v)", tun, now.Mode(), st.Mode(), err)
	}
}

// grantHolder is a test whose end the test decides: its cleanups run at
// end.
type grantHolder struct {
	testing.TB
	cleanups []func()
}

func (g *grantHolder) Cleanup(f func()) { g.cleanups = append(g.cleanups, f) }

func (g *grantHolder) end() {
	for i := len(g.cleanups) - 1; i >= 0; i-- {
		g.cleanups[i]()
	}
}
