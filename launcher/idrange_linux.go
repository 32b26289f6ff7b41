package launcher

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/plan"
)

// idRangeLocks is where every root run locks its id range for its life,
// whatever its state and data directories: a data directory allots ranges
// only among its own services, so two of them can hand one range to two
// services (the README asks for one per host). The start that finds its
// range locked says so in its report.
const idRangeLocks = "/run/safe-run-ids"

// idRangeLock is a run's lock on its id range: its file, and the file
// open and locked.
type idRangeLock struct {
	path string
	f    *os.File
}

// release lets the range go when the run ends, its file with it. A
// SIGKILLed run's file is the janitor's to remove (it is in its list).
func (l *idRangeLock) release() {
	os.Remove(l.path)
	l.f.Close()
}

// holdIDRange locks ids' range for the run; or, if a running service of
// another name holds it, returns that name. Neither if the lock cannot be
// had at all: the check is advice.
func holdIDRange(ids plan.IDMap, name string) (held *idRangeLock, other string) {
	if err := os.MkdirAll(idRangeLocks, 0o700); err != nil {
		return nil, ""
	}
	path := filepath.Join(idRangeLocks, strconv.FormatUint(uint64(ids.UID), 10))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, ""
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		data := make([]byte, 64)
		n, _ := f.ReadAt(data, 0)
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			if holder := strings.TrimSpace(string(data[:n])); holder != name {
				return nil, holder
			}
		}
		return nil, ""
	}
	held = &idRangeLock{path: path, f: f}
	if f.Truncate(0) != nil {
		held.release()
		return nil, ""
	}
	if _, err := f.WriteAt([]byte(name+"\n"), 0); err != nil {
		held.release()
		return nil, ""
	}
	return held, ""
}
