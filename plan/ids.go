package plan

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/host"
	"github.com/safe-run/safe-run/internal/flock"
)

// idSlots lists the 65536-id slots in owner's ranges that overlap no other
// user's range.
func idSlots(ranges []host.SubIDRange, owner, ownerUID string) []uint32 {
	var slots []uint32
	for _, r := range ranges {
		if r.Owner != owner && r.Owner != ownerUID {
			continue
		}
	next:
		for s := r.Start; s+host.IDRangeSize <= r.Start+r.Count; s += host.IDRangeSize {
			for _, o := range ranges {
				if o.Owner != owner && o.Owner != ownerUID && s < o.Start+o.Count && o.Start < s+host.IDRangeSize {
					continue next
				}
			}
			slots = append(slots, uint32(s))
		}
	}
	return slots
}

// The record of which service owns which id range keeps a service's ids
// stable across restarts, so its volumes stay its own. It lives under the
// data directory, with no lock any two starts share (issue 19: 50 first
// starts at once queued on ids.json's):
//
//	ids/ranges/UID     the range's claim: a symbolic link to the name of
//	                   the service that has it, made by symlink(2), which
//	                   fails if another service has it
//	ids/services/NAME  the service's record, an idRecord: a start's lookup
//
// No start removes a claim or changes one, so a service keeps its range
// for good. Why no two services share a range, even after a power loss:
//
//   - A claim is made whole or not at all, and costs no write of data: a
//     start that loses the race for a range tries the next at once.
//   - The claim is synced before the record is made, and the record is
//     written and synced while it has no name (O_TMPFILE), then linked:
//     a record on disk is whole, and has its claim on disk.
//   - A service runs (and owns files in its range) only once its record
//     is synced. A power loss before may take the record or the claim
//     back, but then the service never ran; a claim without its record
//     is taken by its service's next start and by no other's.
const (
	idsDir      = "ids"
	rangesDir   = "ranges"
	servicesDir = "services"
	// legacyIDs is the single file ids were recorded in before: a start
	// moves its records into ids/ (migrateLegacyIDs).
	legacyIDs = "ids.json"
)

// idRecord is a service's record: its name and its range.
type idRecord struct {
	Service string
	IDMap
}

// idSpace is what allotting needs: the data directory and IDUser's slots
// (a slot's uid and gid ranges have the same index).
type idSpace struct {
	dataDir            string
	uidSlots, gidSlots []uint32
}

func (s idSpace) path(elem ...string) string {
	return filepath.Join(append([]string{s.dataDir, idsDir}, elem...)...)
}

func (s idSpace) rangeFile(uid uint32) string {
	return s.path(rangesDir, strconv.FormatUint(uint64(uid), 10))
}

// slot is the host's slot whose uid range starts at uid.
func (s idSpace) slot(uid uint32) (IDMap, bool) {
	for i := range min(len(s.uidSlots), len(s.gidSlots)) {
		if s.uidSlots[i] == uid {
			return IDMap{UID: uid, GID: s.gidSlots[i], Size: host.IDRangeSize}, true
		}
	}
	return IDMap{}, false
}

// valid says whether m is one of the host's slots: a record from before
// /etc/subuid or /etc/subgid changed may not be.
func (s idSpace) valid(m IDMap) bool {
	slot, ok := s.slot(m.UID)
	return ok && slot == m
}

// AllocateIDs returns the user namespace of service name, allocating one
// from IDUser's ranges (in f) and recording it under dataDir when record is
// set: launcher.Enforce does, before a start. Without record (Build) it
// only reads the record, and shows what a start would allocate.
func AllocateIDs(f host.Facts, dataDir, name string, record bool) (IDMap, error) {
	m, _, err := allocateIDs(f, dataDir, name, record)
	return m, err
}

// RecordIDs is AllocateIDs with record set that also says how long it
// waited for a lock: only the first start after an upgrade takes one, to
// move ids.json's records into ids/ (the soak reads it, issue 19).
func RecordIDs(f host.Facts, dataDir, name string) (IDMap, time.Duration, error) {
	return allocateIDs(f, dataDir, name, true)
}

func allocateIDs(f host.Facts, dataDir, name string, record bool) (_ IDMap, lockWait time.Duration, _ error) {
	if f.IDUserUID == "" {
		return IDMap{}, 0, fmt.Errorf("%w: no user %q (create it once as root: %s)", host.ErrNoSubIDs, host.IDUser, host.SetupHint)
	}
	s := idSpace{dataDir: dataDir, uidSlots: idSlots(f.SubUIDs, host.IDUser, f.IDUserUID), gidSlots: idSlots(f.SubGIDs, host.IDUser, f.IDUserUID)}
	if len(s.uidSlots) == 0 || len(s.gidSlots) == 0 {
		return IDMap{}, 0, fmt.Errorf("%w: user %s has no range of %d ids in /etc/subuid and /etc/subgid that no other user shares (add one as root: usermod --add-subuids 1073741824-1140850687 --add-subgids 1073741824-1140850687 %s)",
			host.ErrNoSubIDs, host.IDUser, host.IDRangeSize, host.IDUser)
	}
	// A restart: one read, no lock.
	if m, ok, err := s.recorded(name, record); ok || err != nil {
		return m, 0, err
	}
	legacy, err := readLegacyIDs(dataDir)
	if err != nil {
		return IDMap{}, 0, err
	}
	if !record {
		return s.preview(name, legacy)
	}
	if legacy != nil {
		if lockWait, err = s.migrateLegacyIDs(); err != nil {
			return IDMap{}, lockWait, err
		}
		if m, ok, err := s.recorded(name, record); ok || err != nil {
			return m, lockWait, err
		}
	}
	m, err := s.claim(name)
	if err != nil {
		err = fmt.Errorf("recording the ids of service %s in %s: %w (free space on its file system, or make it writable, and start again)", name, s.path(), err)
	}
	return m, lockWait, err
}

// recorded reads service name's record. ok is false when it has none,
// and err says why a record cannot be trusted or used (a range no longer
// among the host's): then no start of the service goes on, and no other
// start takes its range.
// With record set, it also makes sure the record is on disk (its
// allotting start may have been killed before its sync) and that its
// range is still claimed.
func (s idSpace) recorded(name string, record bool) (_ IDMap, ok bool, _ error) {
	path := s.path(servicesDir, name)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return IDMap{}, false, nil
	} else if err != nil {
		return IDMap{}, false, fmt.Errorf("reading %s: %w", path, err)
	}
	r, err := parseIDRecord(data)
	if err == nil && r.Service != name {
		err = fmt.Errorf("it names service %q", r.Service)
	}
	if err != nil {
		return IDMap{}, false, s.damaged(path, name, err)
	}
	claim := s.rangeFile(r.UID)
	if !s.valid(r.IDMap) {
		// Its files are those ids': giving it others would leave them to
		// no one it runs as, and silently.
		return IDMap{}, false, fmt.Errorf("%s records uid range %d and gid range %d for service %s, which are not a range of user %s in /etc/subuid and /etc/subgid that no other user shares (they changed): its files belong to those ids; give the ranges back to %s, or remove %s and %s to give the service new ids (then chown its volumes' files to them)",
			path, r.UID, r.GID, name, host.IDUser, host.IDUser, path, claim)
	}
	switch owner, err := os.Readlink(claim); {
	case errors.Is(err, fs.ErrNotExist):
		if !record {
			break
		}
		// Removed by hand: claim the range again. If another service
		// has claimed it since, reading again says so.
		if err := os.Symlink(name, claim); errors.Is(err, fs.ErrExist) {
			return s.recorded(name, record)
		} else if err != nil {
			return IDMap{}, false, fmt.Errorf("claiming the ids of service %s again: %w", name, err)
		}
		if err := syncDir(filepath.Dir(claim)); err != nil {
			return IDMap{}, false, err
		}
	case err != nil:
		return IDMap{}, false, fmt.Errorf("reading %s: %w (a range's claim is a symbolic link to the name of the service that has it: make it one, ln -sfn %s %s)", claim, err, name, claim)
	case owner != name:
		return IDMap{}, false, s.damaged(path, name, fmt.Errorf("services %s and %s have the same uid range (%d): %s names %s", owner, name, r.UID, claim, owner))
	}
	if record {
		if err := syncDir(filepath.Dir(path)); err != nil {
			return IDMap{}, false, fmt.Errorf("syncing %s: %w", filepath.Dir(path), err)
		}
	}
	return r.IDMap, true, nil
}

// damaged is the error for a record no start can trust, with the fix.
func (s idSpace) damaged(path, name string, err error) error {
	return fmt.Errorf("reading %s: %w (it records which ids service %s owns, and so whose files are whose: restore it from a backup, or rewrite it as {\"Service\": %q, \"UID\": U, \"GID\": G, \"Size\": %d} with the range whose claim names the service (ls -l %s), or the owner of its volumes' files in %s (ls -ln); deleting it would give the service new ids, not those that own its files)",
		path, err, name, name, host.IDRangeSize, s.path(rangesDir), filepath.Join(s.dataDir, "volumes"))
}

// preview is what a start of a service with no record would claim: the
// first slot no claim (nor ids.json, before its move) holds.
func (s idSpace) preview(name string, legacy idAllocations) (IDMap, time.Duration, error) {
	if m, ok := legacy[name]; ok && s.valid(m) {
		return m, 0, nil
	}
	claims, err := s.claims()
	if err != nil {
		return IDMap{}, 0, err
	}
	for owner, m := range legacy {
		claims[m.UID] = owner
	}
	for i := range min(len(s.uidSlots), len(s.gidSlots)) {
		if _, taken := claims[s.uidSlots[i]]; !taken {
			return IDMap{UID: s.uidSlots[i], GID: s.gidSlots[i], Size: host.IDRangeSize}, 0, nil
		}
	}
	return IDMap{}, 0, s.full()
}

func (s idSpace) full() error {
	return fmt.Errorf("%w: all %d id ranges of user %s are allocated (add a range: usermod --add-subuids START-END --add-subgids START-END %s)",
		host.ErrNoSubIDs, min(len(s.uidSlots), len(s.gidSlots)), host.IDUser, host.IDUser)
}

// claims lists the ranges claimed so far: their first uid, and the
// service each names ("" if its claim cannot be read: taken all the same).
func (s idSpace) claims() (map[uint32]string, error) {
	entries, err := os.ReadDir(s.path(rangesDir))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	claims := map[uint32]string{}
	for _, e := range entries {
		if uid, err := strconv.ParseUint(e.Name(), 10, 32); err == nil {
			owner, _ := os.Readlink(s.rangeFile(uint32(uid)))
			claims[uint32(uid)] = owner
		}
	}
	return claims, nil
}

// claim gives service name, which has no record, a range: one
// claimed for it by a start killed before it recorded it (or by another
// start of the same name right now), else the first free one. Whatever
// this start is killed after, no other service can take the range it
// claimed, and the service's next start finds it.
func (s idSpace) claim(name string) (IDMap, error) {
	for _, dir := range []string{rangesDir, servicesDir} {
		if err := os.MkdirAll(s.path(dir), 0o755); err != nil {
			return IDMap{}, err
		}
	}
	claims, err := s.claims()
	if err != nil {
		return IDMap{}, err
	}
	for uid, owner := range claims {
		if m, ok := s.slot(uid); ok && owner == name {
			return m, s.record(name, m, false)
		}
	}
	for i := range min(len(s.uidSlots), len(s.gidSlots)) {
		if _, taken := claims[s.uidSlots[i]]; taken {
			continue
		}
		m := IDMap{UID: s.uidSlots[i], GID: s.gidSlots[i], Size: host.IDRangeSize}
		err := os.Symlink(name, s.rangeFile(m.UID))
		if errors.Is(err, fs.ErrExist) {
			if owner, _ := os.Readlink(s.rangeFile(m.UID)); owner == name {
				return m, s.record(name, m, false) // another start of name's
			}
			continue
		}
		if err != nil {
			return IDMap{}, err
		}
		return m, s.record(name, m, true)
	}
	return IDMap{}, s.full()
}

// record writes service name's record of m, whose range it has claimed,
// and syncs it; the claim is synced first, whoever made it: a record on
// disk has its claim on disk. A stale record (of another range) is
// replaced. If the record cannot be written, a claim this start made
// (made) is taken back: a failed start leaves nothing.
func (s idSpace) record(name string, m IDMap, made bool) error {
	err := syncDir(s.path(rangesDir))
	if err == nil {
		err = s.writeRecord(name, m)
	}
	if err != nil && made {
		os.Remove(s.rangeFile(m.UID))
	}
	return err
}

func (s idSpace) writeRecord(name string, m IDMap) error {
	path := s.path(servicesDir, name)
	data, err := json.MarshalIndent(idRecord{Service: name, IDMap: m}, "", "  ")
	if err != nil {
		return err
	}
	fd, err := unix.Open(filepath.Dir(path), unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return &fs.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	if _, err := f.Write(append(data, '\n')); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	for {
		err := unix.Linkat(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", fd), unix.AT_FDCWD, path, unix.AT_SYMLINK_FOLLOW)
		if errors.Is(err, unix.EEXIST) {
			if r, rerr := readIDRecord(path); rerr == nil && r == (idRecord{name, m}) {
				break // another start of name's wrote it
			}
			if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			continue
		}
		if err != nil {
			return &fs.PathError{Op: "link", Path: path, Err: err}
		}
		break
	}
	return syncDir(filepath.Dir(path))
}

func readIDRecord(path string) (idRecord, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return idRecord{}, err
	}
	return parseIDRecord(data)
}

// parseIDRecord refuses what no start writes: not an object, or a range
// of another size.
func parseIDRecord(data []byte) (idRecord, error) {
	var r *idRecord
	if err := json.Unmarshal(data, &r); err != nil {
		return idRecord{}, err
	}
	if r == nil {
		return idRecord{}, errors.New("not a record of ids")
	}
	if r.Size != host.IDRangeSize {
		return idRecord{}, fmt.Errorf("it gives %d ids, not %d", r.Size, host.IDRangeSize)
	}
	return *r, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// idAllocations is ids.json's content: service name to range.
type idAllocations map[string]IDMap

// readLegacyIDs reads ids.json if it is still there, refusing what no
// safe-run wrote (see readAllocations).
func readLegacyIDs(dataDir string) (idAllocations, error) {
	path := filepath.Join(dataDir, legacyIDs)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	var allocs idAllocations
	if err == nil {
		allocs, err = readAllocations(data)
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w (it records which service owns which ids, and so whose files are whose: restore it from a backup, or rewrite it from the owners of each service's volumes in %s; deleting it would hand services each other's ids)",
			path, err, filepath.Join(dataDir, "volumes"))
	}
	return allocs, nil
}

// migrateLegacyIDs moves ids.json's records into ids/, under the data
// directory's lock (what guarded ids.json), then removes it and the
// temporary files a killed write of it left. It refuses a record whose
// range ids/ gives another service.
func (s idSpace) migrateLegacyIDs() (lockWait time.Duration, _ error) {
	dir, err := os.Open(s.dataDir)
	if err != nil {
		return 0, err
	}
	defer dir.Close()
	began := time.Now()
	unlock, err := flock.Lock(dir, unix.LOCK_EX)
	if err != nil {
		return 0, fmt.Errorf("locking %s: %w", s.dataDir, err)
	}
	defer unlock()
	lockWait = time.Since(began)
	allocs, err := readLegacyIDs(s.dataDir)
	if err != nil || allocs == nil {
		return lockWait, err // or moved by another start
	}
	path := filepath.Join(s.dataDir, legacyIDs)
	for _, dir := range []string{rangesDir, servicesDir} {
		if err := os.MkdirAll(s.path(dir), 0o755); err != nil {
			return lockWait, fmt.Errorf("moving %s to %s: %w", path, s.path(), err)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(allocs)) {
		m := allocs[name]
		if _, err := os.Stat(s.path(servicesDir, name)); err == nil {
			continue // recorded in ids/ already: that record stands
		}
		claim := s.rangeFile(m.UID)
		err := os.Symlink(name, claim)
		if errors.Is(err, fs.ErrExist) {
			if owner, _ := os.Readlink(claim); owner != name {
				return lockWait, fmt.Errorf("moving %s to %s: it gives service %s uid range %d, which %s claims for service %q: restore one of them from a backup",
					path, s.path(), name, m.UID, claim, owner)
			}
			err = nil
		}
		if err == nil {
			err = s.record(name, m, false)
		}
		if err != nil {
			return lockWait, fmt.Errorf("moving %s to %s: %w (free space on its file system, or make it writable, and start again)", path, s.path(), err)
		}
	}
	stale, _ := filepath.Glob(filepath.Join(s.dataDir, ".tmp-"+legacyIDs+"*"))
	for _, f := range append(stale, path) {
		if err := os.Remove(f); err != nil {
			return lockWait, err
		}
	}
	return lockWait, dir.Sync()
}

// readAllocations reads ids.json, refusing what no safe-run wrote: a file
// that is not an object of services (null, a list, a truncated or zeroed
// file), a range of another size, and above all one range recorded for
// two services, which would share their files.
func readAllocations(data []byte) (idAllocations, error) {
	var allocs idAllocations
	if err := json.Unmarshal(data, &allocs); err != nil {
		return nil, err
	}
	if allocs == nil {
		return nil, errors.New("not an object of services")
	}
	uids, gids := map[uint32]string{}, map[uint32]string{}
	for _, name := range slices.Sorted(maps.Keys(allocs)) {
		m := allocs[name]
		if m.Size != host.IDRangeSize {
			return nil, fmt.Errorf("service %s has %d ids, not %d", name, m.Size, host.IDRangeSize)
		}
		if other, dup := uids[m.UID]; dup {
			return nil, fmt.Errorf("services %s and %s have the same uid range (%d)", other, name, m.UID)
		}
		if other, dup := gids[m.GID]; dup {
			return nil, fmt.Errorf("services %s and %s have the same gid range (%d)", other, name, m.GID)
		}
		uids[m.UID], gids[m.GID] = name, name
	}
	return allocs, nil
}
