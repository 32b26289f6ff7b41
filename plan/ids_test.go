package plan

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/host"
	"github.com/safe-run/safe-run/internal/testenv"
)

// idFacts gives IDUser four ranges of uids and gids.
func idFacts() host.Facts {
	r := []host.SubIDRange{{Owner: host.IDUser, Start: 1 << 30, Count: 4 * host.IDRangeSize}}
	return host.Facts{IDUserUID: "999", SubUIDs: r, SubGIDs: r}
}

func slot(i uint32) IDMap {
	return IDMap{UID: 1<<30 + i*host.IDRangeSize, GID: 1<<30 + i*host.IDRangeSize, Size: host.IDRangeSize}
}

func allocate(t *testing.T, dir, name string, want IDMap) {
	t.Helper()
	m, err := AllocateIDs(idFacts(), dir, name, true)
	if err != nil || m != want {
		t.Fatalf("AllocateIDs(%s) = %+v, %v; want %+v", name, m, err, want)
	}
}

// noTemporaries: nothing but ids.json (and what the test put there) is
// left in dir.
func noTemporaries(t *testing.T, dir string) {
	t.Helper()
	tmp, _ := filepath.Glob(filepath.Join(dir, ".tmp-*"))
	if len(tmp) > 0 {
		t.Errorf("temporary files left: %v", tmp)
	}
}

// TestCorruptIDs: an ids.json AllocateIDs cannot have written is refused
// by every start and by plan (which only reads it) with the file and the
// fix, and left as it is: never replaced by a fresh record, which would
// hand services each other's ids and so each other's files.
func TestCorruptIDs(t *testing.T) {
	const fix = "(it records which service owns which ids, and so whose files are whose: restore it from a backup, or rewrite it from the owners of each service's volumes in DIR/volumes; deleting it would hand services each other's ids)"
	for _, tc := range []struct{ name, data, want string }{
		{"truncated", `{"web": {"UID": 1073741824,`, "unexpected end of JSON input"},
		{"empty", ``, "unexpected end of JSON input"},
		{"zeroed", "\x00\x00\x00\x00\x00\x00\x00\x00", "invalid character '\\x00' looking for beginning of value"},
		{"null", `null`, "not an object of services"},
		{"list", `[]`, "json: cannot unmarshal array into Go value of type plan.idAllocations"},
		{"one range for two services", `{"web": {"UID": 1073741824, "GID": 1073807360, "Size": 65536}, "db": {"UID": 1073741824, "GID": 1073741824, "Size": 65536}}`,
			"services db and web have the same uid range (1073741824)"},
		{"one gid range for two services", `{"web": {"UID": 1073741824, "GID": 1073807360, "Size": 65536}, "db": {"UID": 1073807360, "GID": 1073807360, "Size": 65536}}`,
			"services db and web have the same gid range (1073807360)"},
		{"a range of another size", `{"web": {"UID": 1073741824, "GID": 1073741824, "Size": 4294967295}}`, "service web has 4294967295 ids, not 65536"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "ids.json")
			if err := os.WriteFile(path, []byte(tc.data), 0o644); err != nil {
				t.Fatal(err)
			}
			want := "reading " + path + ": " + tc.want + " " + strings.ReplaceAll(fix, "DIR", dir)
			for _, record := range []bool{true, false} {
				for _, name := range []string{"web", "new"} {
					m, err := AllocateIDs(idFacts(), dir, name, record)
					if err == nil || err.Error() != want {
						t.Errorf("AllocateIDs(%s, record %v) = %+v, %v\nwant %s", name, record, m, err, want)
					}
				}
			}
			if got, _ := os.ReadFile(path); string(got) != tc.data {
				t.Errorf("ids.json changed: %q", got)
			}
			noTemporaries(t, dir)
		})
	}
}

// TestIDsNoSpace: ids.json on a full file system (a 1 MiB tmpfs): the
// start that would record a new service fails with the fix, ids.json
// keeps what it held, nothing half-written is left, services already
// recorded still start, and once there is room the new one does too.
func TestIDsNoSpace(t *testing.T) {
	dir := testenv.Tmpfs(t, 1<<20)
	path := filepath.Join(dir, "ids.json")
	allocate(t, dir, "web", slot(0))
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ballast := testenv.Fill(t, dir, 0)

	_, err = AllocateIDs(idFacts(), dir, "db", true)
	want := "recording the ids of service db in " + path + ": write " + path + ": no space left on device (" + path +
		" is unchanged; free space on its file system, or make it writable, and start again)"
	if err == nil || err.Error() != want {
		t.Errorf("AllocateIDs on a full disk: %v\nwant %s", err, want)
	}
	if got, _ := os.ReadFile(path); string(got) != string(before) {
		t.Errorf("ids.json changed on a full disk: %q -> %q", before, got)
	}
	noTemporaries(t, dir)
	allocate(t, dir, "web", slot(0)) // recorded: nothing to write

	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	allocate(t, dir, "db", slot(1))
	allocate(t, dir, "web", slot(0))
	noTemporaries(t, dir)
}

// TestIDsReadOnly: the same on a file system remounted read-only.
func TestIDsReadOnly(t *testing.T) {
	dir := testenv.Tmpfs(t, 1<<20)
	path := filepath.Join(dir, "ids.json")
	allocate(t, dir, "web", slot(0))
	if err := unix.Mount("", dir, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		t.Fatal(err)
	}
	_, err := AllocateIDs(idFacts(), dir, "db", true)
	want := "recording the ids of service db in " + path + ": open " + path + ": read-only file system (" + path +
		" is unchanged; free space on its file system, or make it writable, and start again)"
	if err == nil || err.Error() != want {
		t.Errorf("AllocateIDs on a read-only file system: %v\nwant %s", err, want)
	}
	allocate(t, dir, "web", slot(0))
	if err := unix.Mount("", dir, "", unix.MS_REMOUNT, ""); err != nil {
		t.Fatal(err)
	}
	allocate(t, dir, "db", slot(1))
	noTemporaries(t, dir)
}

// TestRecordedIDsTakeNoLock: a service whose ids are recorded gets them
// while another start holds ids.json's lock (a restart waits on no other
// service's allotment); a new service waits for the lock.
func TestRecordedIDsTakeNoLock(t *testing.T) {
	dir := t.TempDir()
	allocate(t, dir, "web", slot(0))
	lock, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	type res struct {
		m   IDMap
		err error
	}
	web, db := make(chan res, 1), make(chan res, 1)
	go func() { m, err := AllocateIDs(idFacts(), dir, "web", true); web <- res{m, err} }()
	go func() { m, err := AllocateIDs(idFacts(), dir, "db", true); db <- res{m, err} }()
	select {
	case r := <-web:
		if r.err != nil || r.m != slot(0) {
			t.Errorf("AllocateIDs(web) under another's lock = %+v, %v; want %+v", r.m, r.err, slot(0))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("AllocateIDs(web), recorded, waited on the lock")
	}
	select {
	case r := <-db:
		t.Fatalf("AllocateIDs(db), a new service, did not wait on the lock: %+v, %v", r.m, r.err)
	default:
	}
	unix.Flock(int(lock.Fd()), unix.LOCK_UN)
	if r := <-db; r.err != nil || r.m != slot(1) {
		t.Errorf("AllocateIDs(db) = %+v, %v; want %+v", r.m, r.err, slot(1))
	}
}
