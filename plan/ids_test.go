package plan

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/host"
	"github.com/safe-run/safe-run/internal/testenv"
)

// idFacts gives IDUser n ranges of uids and gids (4 without n).
func idFacts(n ...uint64) host.Facts {
	count := uint64(4)
	if len(n) > 0 {
		count = n[0]
	}
	r := []host.SubIDRange{{Owner: host.IDUser, Start: 1 << 30, Count: count * host.IDRangeSize}}
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

func rangeFile(dir string, m IDMap) string {
	return filepath.Join(dir, "ids", "ranges", strconv.FormatUint(uint64(m.UID), 10))
}

func serviceFile(dir, name string) string { return filepath.Join(dir, "ids", "services", name) }

// noTemporaries: no temporary file is left anywhere under dir.
func noTemporaries(t *testing.T, dir string) {
	t.Helper()
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), ".tmp-") {
			t.Errorf("temporary file left: %s", path)
		}
		return nil
	})
}

// TestIDsRecorded: each service gets a range of its own, once: the same
// at every start, a record file per service hard-linked to its range's
// claim; plan (without record) shows what a start would allot and writes
// nothing.
func TestIDsRecorded(t *testing.T) {
	dir := t.TempDir()
	if m, err := AllocateIDs(idFacts(), dir, "web", false); err != nil || m != slot(0) {
		t.Fatalf("AllocateIDs(web) without record = %+v, %v", m, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "ids")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("AllocateIDs without record wrote: %v", err)
	}
	allocate(t, dir, "web", slot(0))
	allocate(t, dir, "db", slot(1))
	allocate(t, dir, "web", slot(0))
	if m, err := AllocateIDs(idFacts(), dir, "cache", false); err != nil || m != slot(2) {
		t.Errorf("AllocateIDs(cache) without record = %+v, %v; want %+v", m, err, slot(2))
	}
	for name, m := range map[string]IDMap{"web": slot(0), "db": slot(1)} {
		if owner, err := os.Readlink(rangeFile(dir, m)); owner != name {
			t.Errorf("%s's range's claim names %q: %v", name, owner, err)
		}
		r, err := readIDRecord(serviceFile(dir, name))
		if err != nil || r != (idRecord{name, m}) {
			t.Errorf("%s's record = %+v, %v", name, r, err)
		}
	}
	allocate(t, dir, "cache", slot(2))
	allocate(t, dir, "queue", slot(3))
	if _, err := AllocateIDs(idFacts(), dir, "more", true); err == nil || !strings.Contains(err.Error(), "all 4 id ranges of user safe-run are allocated") {
		t.Errorf("a fifth service: %v", err)
	}
	if _, err := os.Stat(serviceFile(dir, "more")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a refused service was recorded: %v", err)
	}
	noTemporaries(t, dir)
}

// TestConcurrentFirstStarts: 40 new services and 8 starts of one more,
// all at once, share no lock: each service gets a range of its own, the
// 8 the same one, and nothing else is claimed.
func TestConcurrentFirstStarts(t *testing.T) {
	dir := t.TempDir()
	f := idFacts(64)
	names := []string{}
	for i := range 40 {
		names = append(names, fmt.Sprintf("svc%d", i))
	}
	for range 8 {
		names = append(names, "same")
	}
	got := make([]IDMap, len(names))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, name := range names {
		wg.Go(func() {
			<-start
			m, err := AllocateIDs(f, dir, name, true)
			if err != nil {
				t.Errorf("AllocateIDs(%s): %v", name, err)
			}
			got[i] = m
		})
	}
	close(start)
	wg.Wait()
	owner := map[uint32]string{}
	for i, name := range names {
		if o, ok := owner[got[i].UID]; ok && o != name {
			t.Errorf("%s and %s got the same range %d", o, name, got[i].UID)
		}
		owner[got[i].UID] = name
	}
	claims, _ := os.ReadDir(filepath.Join(dir, "ids", "ranges"))
	records, _ := os.ReadDir(filepath.Join(dir, "ids", "services"))
	if len(claims) != 41 || len(records) != 41 {
		t.Errorf("%d claims and %d records for 41 services", len(claims), len(records))
	}
	noTemporaries(t, dir)
}

// TestKilledClaimTaken: a start killed after it claimed a range and
// before it recorded it leaves the claim: no other service gets that
// range, and the service's next start takes it.
func TestKilledClaimTaken(t *testing.T) {
	dir := t.TempDir()
	allocate(t, dir, "web", slot(0))
	if err := os.Symlink("db", rangeFile(dir, slot(1))); err != nil {
		t.Fatal(err)
	}
	allocate(t, dir, "cache", slot(2))
	allocate(t, dir, "db", slot(1))
	if r, err := readIDRecord(serviceFile(dir, "db")); err != nil || r != (idRecord{"db", slot(1)}) {
		t.Errorf("db's record = %+v, %v", r, err)
	}
}

// TestStaleRecordRefused: a record of a range that is no longer among
// the host's (its /etc/subuid changed) is refused with the fix, not
// replaced: the service's files belong to those ids.
func TestStaleRecordRefused(t *testing.T) {
	dir := t.TempDir()
	allocate(t, dir, "a", slot(0))
	allocate(t, dir, "b", slot(1))
	allocate(t, dir, "web", slot(2))
	record, claim := serviceFile(dir, "web"), rangeFile(dir, slot(2))
	want := record + " records uid range 1073872896 and gid range 1073872896 for service web, which are not a range of user safe-run in /etc/subuid and /etc/subgid that no other user shares (they changed): its files belong to those ids; give the ranges back to safe-run, or remove " + record + " and " + claim + " to give the service new ids (then chown its volumes' files to them)"
	// The host now has two ranges: web's third is gone.
	for _, rec := range []bool{false, true} {
		if m, err := AllocateIDs(idFacts(2), dir, "web", rec); err == nil || err.Error() != want {
			t.Errorf("web on a host without its range (record %v): %+v, %v\nwant %s", rec, m, err, want)
		}
	}
	if m, err := AllocateIDs(idFacts(8), dir, "web", true); err != nil || m != slot(2) {
		t.Errorf("web on a host with more ranges = %+v, %v; want its own %+v", m, err, slot(2))
	}
	// The fix: remove both, and the service gets a new range.
	for _, f := range []string{record, claim} {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	if m, err := AllocateIDs(idFacts(8), dir, "web", true); err != nil || m != slot(2) {
		t.Errorf("web once its record is removed = %+v, %v; want %+v", m, err, slot(2))
	}
}

// TestDamagedIDRecord: a record no start wrote is refused, with the file
// and the fix, by every start of its service and by plan, and left as it
// is: never replaced by a fresh one, and its range never given to
// another service.
func TestDamagedIDRecord(t *testing.T) {
	const fix = `(it records which ids service web owns, and so whose files are whose: restore it from a backup, or rewrite it as {"Service": "web", "UID": U, "GID": G, "Size": 65536} with the range whose claim names the service (ls -l DIR/ids/ranges), or the owner of its volumes' files in DIR/volumes (ls -ln); deleting it would give the service new ids, not those that own its files)`
	for _, tc := range []struct{ name, data, want string }{
		{"truncated", `{"Service": "web", "UID": 1073741824,`, "unexpected end of JSON input"},
		{"empty", ``, "unexpected end of JSON input"},
		{"zeroed", "\x00\x00\x00\x00\x00\x00\x00\x00", "invalid character '\\x00' looking for beginning of value"},
		{"null", `null`, "not a record of ids"},
		{"list", `[]`, "json: cannot unmarshal array into Go value of type plan.idRecord"},
		{"another service's", `{"Service": "db", "UID": 1073741824, "GID": 1073741824, "Size": 65536}`, `it names service "db"`},
		{"a range of another size", `{"Service": "web", "UID": 1073741824, "GID": 1073741824, "Size": 4294967295}`, "it gives 4294967295 ids, not 65536"},
		{"a range another service claims", "", "services db and web have the same uid range (1073741824): DIR/ids/ranges/1073741824 names db"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			allocate(t, dir, "web", slot(0))
			path := serviceFile(dir, "web")
			data := tc.data
			if tc.name == "a range another service claims" {
				if err := os.Remove(rangeFile(dir, slot(0))); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink("db", rangeFile(dir, slot(0))); err != nil {
					t.Fatal(err)
				}
				b, _ := os.ReadFile(path)
				data = string(b)
			} else if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
			want := "reading " + path + ": " + strings.ReplaceAll(tc.want+" "+fix, "DIR", dir)
			for _, record := range []bool{true, false} {
				m, err := AllocateIDs(idFacts(), dir, "web", record)
				if err == nil || err.Error() != want {
					t.Errorf("AllocateIDs(web, record %v) = %+v, %v\nwant %s", record, m, err, want)
				}
			}
			allocate(t, dir, "new", slot(1))
			if got, _ := os.ReadFile(path); string(got) != data {
				t.Errorf("the record changed: %q", got)
			}
			noTemporaries(t, dir)
		})
	}
}

// TestClaimRemovedByHand: a record whose claim is gone claims its range
// again, before any other service can take it.
func TestClaimRemovedByHand(t *testing.T) {
	dir := t.TempDir()
	allocate(t, dir, "web", slot(0))
	if err := os.Remove(rangeFile(dir, slot(0))); err != nil {
		t.Fatal(err)
	}
	allocate(t, dir, "web", slot(0))
	allocate(t, dir, "db", slot(1))
	if owner, err := os.Readlink(rangeFile(dir, slot(0))); owner != "web" {
		t.Errorf("web's claim is not back: %q, %v", owner, err)
	}
}

// TestLegacyIDsMoved: ids.json, where ids were recorded before, is moved
// into ids/ by the first start that records, under the lock that guarded
// it; the temporary files of a killed write of it go too.
func TestLegacyIDsMoved(t *testing.T) {
	dir := t.TempDir()
	legacy := filepath.Join(dir, "ids.json")
	if err := os.WriteFile(legacy, []byte(`{"web": {"UID": 1073807360, "GID": 1073807360, "Size": 65536}, "db": {"UID": 1073741824, "GID": 1073741824, "Size": 65536}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, ".tmp-ids.json1234")
	if err := os.WriteFile(stale, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if m, err := AllocateIDs(idFacts(), dir, "new", false); err != nil || m != slot(2) {
		t.Errorf("AllocateIDs(new) without record beside ids.json = %+v, %v; want %+v", m, err, slot(2))
	}
	if m, err := AllocateIDs(idFacts(), dir, "web", false); err != nil || m != slot(1) {
		t.Errorf("AllocateIDs(web) without record beside ids.json = %+v, %v; want %+v", m, err, slot(1))
	}
	// The lock that guarded ids.json: the move waits for it.
	lock, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		m, err := AllocateIDs(idFacts(), dir, "new", true)
		if err == nil && m != slot(2) {
			err = fmt.Errorf("got %+v, want %+v", m, slot(2))
		}
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("AllocateIDs(new) beside ids.json did not wait for its lock: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	unix.Flock(int(lock.Fd()), unix.LOCK_UN)
	if err := <-done; err != nil {
		t.Fatalf("AllocateIDs(new) beside ids.json: %v", err)
	}
	for _, f := range []string{legacy, stale} {
		if _, err := os.Stat(f); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s is still there: %v", f, err)
		}
	}
	allocate(t, dir, "web", slot(1))
	allocate(t, dir, "db", slot(0))
	allocate(t, dir, "new", slot(2))
	allocate(t, dir, "more", slot(3))
}

// TestCorruptLegacyIDs: an ids.json no safe-run wrote is refused by
// every start and by plan with the file and the fix, and left as it is.
func TestCorruptLegacyIDs(t *testing.T) {
	const fix = "(it records which service owns which ids, and so whose files are whose: restore it from a backup, or rewrite it from the owners of each service's volumes in DIR/volumes; deleting it would hand services each other's ids)"
	for _, tc := range []struct{ name, data, want string }{
		{"truncated", `{"web": {"UID": 1073741824,`, "unexpected end of JSON input"},
		{"empty", ``, "unexpected end of JSON input"},
		{"null", `null`, "not an object of services"},
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
			if _, err := os.Stat(filepath.Join(dir, "ids")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("ids/ made beside a corrupt ids.json: %v", err)
			}
		})
	}
}

// TestIDsNoSpace: ids on a full file system (a 1 MiB tmpfs): the start
// that would record a new service fails with the fix, claims nothing,
// leaves nothing half-written; services already recorded still start,
// and once there is room the new one does too.
func TestIDsNoSpace(t *testing.T) {
	dir := testenv.Tmpfs(t, 1<<20)
	allocate(t, dir, "web", slot(0))
	ballast := testenv.Fill(t, dir, 0)

	_, err := AllocateIDs(idFacts(), dir, "db", true)
	claim := rangeFile(dir, slot(1))
	want := "recording the ids of service db in " + filepath.Join(dir, "ids") + ": write " + serviceFile(dir, "db") + ": no space left on device (free space on its file system, or make it writable, and start again)"
	if err == nil || err.Error() != want {
		t.Errorf("AllocateIDs on a full disk: %v\nwant %s", err, want)
	}
	for _, f := range []string{claim, serviceFile(dir, "db")} {
		if _, err := os.Stat(f); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s after a full disk: %v", f, err)
		}
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
	allocate(t, dir, "web", slot(0))
	if err := unix.Mount("", dir, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		t.Fatal(err)
	}
	_, err := AllocateIDs(idFacts(), dir, "db", true)
	want := "recording the ids of service db in " + filepath.Join(dir, "ids") + ": symlink db " + rangeFile(dir, slot(1)) + ": read-only file system (free space on its file system, or make it writable, and start again)"
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

// TestLegacyIDsConflict: an ids.json that gives a range another service
// has already claimed in ids/ (a restored backup) is refused, naming
// both, and left in place.
func TestLegacyIDsConflict(t *testing.T) {
	dir := t.TempDir()
	allocate(t, dir, "db", slot(0))
	legacy := filepath.Join(dir, "ids.json")
	if err := os.WriteFile(legacy, []byte(`{"web": {"UID": 1073741824, "GID": 1073741824, "Size": 65536}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := AllocateIDs(idFacts(), dir, "new", true)
	want := "moving " + legacy + " to " + filepath.Join(dir, "ids") + ": it gives service web uid range 1073741824, which " + rangeFile(dir, slot(0)) + " claims for service \"db\": restore one of them from a backup"
	if err == nil || err.Error() != want {
		t.Errorf("AllocateIDs beside a conflicting ids.json: %v\nwant %s", err, want)
	}
	if _, err := os.Stat(legacy); err != nil {
		t.Errorf("ids.json: %v", err)
	}
	if _, err := os.Stat(serviceFile(dir, "new")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("new was recorded beside a conflicting ids.json: %v", err)
	}
}
