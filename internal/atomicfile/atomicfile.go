// Package atomicfile replaces files whole: a reader, or the next start
// after a crash, sees the old file or the new one, never part of one.
package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// Write replaces path with data and mode perm: written to a temporary file
// beside it, synced, then renamed over it. The temporary file never
// outlives a failed Write, and path is then unchanged. Errors name path,
// not the temporary file, which is gone by the time anyone reads them
// ("write /run/safe-run/web/status.json: no space left on device").
func Write(path string, data []byte, perm os.FileMode) error {
	return namePath(path, write(path, data, perm, true))
}

// Replace is Write without the sync, for a file that need not outlive the
// host, only its writer: a reader still sees the old file or the new one,
// and the page cache keeps it when its writer dies. Network state under
// /run describes kernel objects a power loss takes with it, and a sync
// took about a millisecond per start on an ext4 /run.
func Replace(path string, data []byte, perm os.FileMode) error {
	return namePath(path, write(path, data, perm, false))
}

func write(path string, data []byte, perm os.FileMode, sync bool) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(perm)
	}
	if err == nil && sync {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func namePath(path string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return &fs.PathError{Op: pe.Op, Path: path, Err: pe.Err}
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return &fs.PathError{Op: "rename", Path: path, Err: le.Err}
	}
	return err
}
