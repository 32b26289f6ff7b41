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
	"time"

	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/host"
	"github.com/safe-run/safe-run/internal/atomicfile"
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

// idAllocations is the record of which service owns which slot; it keeps a
// service's ids stable across restarts, so its volumes stay its own.
type idAllocations map[string]IDMap

// AllocateIDs returns the user namespace of service name, allocating one
// from IDUser's ranges (in f) and recording it under dataDir when record is
// set: launcher.Enforce does, before a start. Without record (Build) it
// only reads the record, and shows what a start would allocate.
func AllocateIDs(f host.Facts, dataDir, name string, record bool) (IDMap, error) {
	m, _, err := allocateIDs(f, dataDir, name, record)
	return m, err
}

// RecordIDs is AllocateIDs with record set that also says how long it
// waited for ids.json's lock: 0 when the service had its ids, which takes
// no lock (the soak reads it, issue 19).
func RecordIDs(f host.Facts, dataDir, name string) (IDMap, time.Duration, error) {
	return allocateIDs(f, dataDir, name, true)
}

func allocateIDs(f host.Facts, dataDir, name string, record bool) (_ IDMap, lockWait time.Duration, _ error) {
	if f.IDUserUID == "" {
		return IDMap{}, lockWait, fmt.Errorf("%w: no user %q (create it once as root: %s)", host.ErrNoSubIDs, host.IDUser, host.SetupHint)
	}
	uidSlots, gidSlots := idSlots(f.SubUIDs, host.IDUser, f.IDUserUID), idSlots(f.SubGIDs, host.IDUser, f.IDUserUID)
	if len(uidSlots) == 0 || len(gidSlots) == 0 {
		return IDMap{}, lockWait, fmt.Errorf("%w: user %s has no range of %d ids in /etc/subuid and /etc/subgid that no other user shares (add one as root: usermod --add-subuids 1073741824-1140850687 --add-subgids 1073741824-1140850687 %s)",
			host.ErrNoSubIDs, host.IDUser, host.IDRangeSize, host.IDUser)
	}
	n := min(len(uidSlots), len(gidSlots))

	path := filepath.Join(dataDir, "ids.json")
	valid := func(m IDMap) bool {
		for i := range n {
			if uidSlots[i] == m.UID && gidSlots[i] == m.GID {
				return true
			}
		}
		return false
	}
	// A service that has its ids keeps them: no start removes a record
	// or changes a valid one, and ids.json is replaced whole by rename,
	// so one read without the lock shows them. A restart then waits on no other
	// start's allotment (50 first starts at once queue ~20 ms each behind
	// its fsync: the soak, issue 19). Anything else takes the lock.
	if data, err := os.ReadFile(path); err == nil {
		if allocs, err := readAllocations(data); err == nil {
			if m, ok := allocs[name]; ok && valid(m) {
				if record {
					// Its allotting start may have been killed between its
					// rename and its sync: this start syncs it before it
					// runs (on a clean file, a sync costs next to nothing).
					if err := syncIDsIn(dataDir, path); err != nil {
						return IDMap{}, lockWait, fmt.Errorf("syncing %s: %w", path, err)
					}
				}
				return m, lockWait, nil
			}
		}
	}
	var lock *os.File   // dataDir, locked, when record is set
	unlock := func() {} // releases lock's flock
	if record {
		if err := os.MkdirAll(dataDir, 0o711); err != nil {
			return IDMap{}, lockWait, err
		}
		// The directory itself is the lock: ids.json is replaced by
		// rename, so a lock on it would be on the old file.
		var err error
		lock, err = os.Open(dataDir)
		if err != nil {
			return IDMap{}, lockWait, err
		}
		defer lock.Close()
		began := time.Now()
		if unlock, err = flock.Lock(lock, unix.LOCK_EX); err != nil {
			return IDMap{}, lockWait, fmt.Errorf("locking %s: %w", dataDir, err)
		}
		defer unlock()
		lockWait = time.Since(began)
		// Only written under this lock: a temporary file here was left
		// by a safe-run killed while it wrote.
		stale, _ := filepath.Glob(filepath.Join(dataDir, ".tmp-ids.json*"))
		for _, f := range stale {
			os.Remove(f)
		}
	}
	allocs := idAllocations{}
	if data, err := os.ReadFile(path); err == nil {
		if allocs, err = readAllocations(data); err != nil {
			return IDMap{}, lockWait, fmt.Errorf("reading %s: %w (it records which service owns which ids, and so whose files are whose: restore it from a backup, or rewrite it from the owners of each service's volumes in %s; deleting it would hand services each other's ids)",
				path, err, filepath.Join(dataDir, "volumes"))
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return IDMap{}, lockWait, fmt.Errorf("reading %s: %w", path, err)
	}
	if m, ok := allocs[name]; ok && valid(m) {
		if record {
			// As on the path without the lock: synced before it runs.
			if err := syncIDs(path, lock); err != nil {
				return IDMap{}, lockWait, fmt.Errorf("syncing %s: %w", path, err)
			}
		}
		return m, lockWait, nil
	}
	used := map[uint32]bool{}
	for other, m := range allocs {
		if other != name {
			used[m.UID] = true
		}
	}
	for i := range n {
		if used[uidSlots[i]] {
			continue
		}
		m := IDMap{UID: uidSlots[i], GID: gidSlots[i], Size: host.IDRangeSize}
		if !record {
			return m, lockWait, nil
		}
		allocs[name] = m
		data, err := json.MarshalIndent(allocs, "", "  ")
		if err != nil {
			return IDMap{}, lockWait, err
		}
		// Written and renamed under the lock, synced after it (syncIDs): a first start
		// waited ~20 ms per first start queued before it, for their fsyncs (issue 19).
		if err := atomicfile.Replace(path, append(data, '\n'), 0o644); err != nil {
			// atomicfile leaves the old file whole and no temporary one.
			return IDMap{}, lockWait, fmt.Errorf("recording the ids of service %s in %s: %w (%s is unchanged; free space on its file system, or make it writable, and start again)",
				name, path, err, path)
		}
		unlock()
		if err := syncIDs(path, lock); err != nil {
			return IDMap{}, lockWait, fmt.Errorf("recording the ids of service %s in %s: %w (free space on its file system, or make it writable, and start again)", name, path, err)
		}
		return m, lockWait, nil
	}
	return IDMap{}, lockWait, fmt.Errorf("%w: all %d id ranges of user %s are allocated (add a range: usermod --add-subuids START-END --add-subgids START-END %s)", host.ErrNoSubIDs, n, host.IDUser, host.IDUser)
}

// syncIDs makes ids.json as it is now, and its name in dir, durable: the
// allotting start calls it after releasing the lock and before the
// container starts, so that other first starts do not queue behind its
// fsync. Why no service can then share an id range after a power loss:
//
//   - No start removes a record or changes one, so every later ids.json
//     holds every earlier record: the file synced here holds this
//     service's, whoever renamed it last.
//   - A service runs (and owns files in its range) only once its record is
//     on disk: the file and the directory entry are synced here before
//     AllocateIDs returns. Before, only the file's data was, and a power
//     loss could take the rename back after the service had run.
//   - A power loss between the rename and this sync may take the rename
//     back: ids.json is then an older file without this record, but the
//     service never ran, so its range carries no file of it; the next start
//     allots again. A record another start synced meanwhile is in the file
//     that start synced, which is later than any it read.
//   - The directory sync may carry a later start's rename whose file's data
//     is not yet on disk. On ext4 (data=ordered, auto_da_alloc) a rename
//     over an existing file commits that file's data with it; where a file
//     system does not, the file reads back empty or garbled, which
//     readAllocations refuses with the fix: detected, never read as free.
func syncIDs(path string, dir *os.File) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = dir.Sync()
	}
	return err
}

// syncIDsIn is syncIDs for a caller without the directory open.
func syncIDsIn(dataDir, path string) error {
	dir, err := os.Open(dataDir)
	if err != nil {
		return err
	}
	defer dir.Close()
	return syncIDs(path, dir)
}

// readAllocations reads ids.json, refusing what AllocateIDs never writes:
// a file that is not an object of services (null, a list, a truncated
// or zeroed file), a range of another size, and above all one range
// recorded for two services, which would share their files.
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
