package ops

import (
	"errors"

	"golang.org/x/sys/unix"
)

// Sampler reads one service's cgroup counters again and again, as the
// supervisor's watch does every few seconds for the service's life: each
// file is opened once and read again with pread at offset 0, which makes
// the kernel generate it anew. One read system call a file, and none of
// the poller's: an open of a cgroup file (pollable) registers it with
// Go's poller, and costs eight calls and a wake of its thread each time.
// Not safe for concurrent use.
type Sampler struct {
	paths map[string]string
	fds   map[string]int // -1: the file could not be opened (the kernel lacks it)
	buf   []byte
}

// NewSampler returns a sampler of the cgroups in paths (Status.Cgroups).
func NewSampler(paths map[string]string) *Sampler {
	return &Sampler{paths: paths, fds: map[string]int{}, buf: make([]byte, 4096)}
}

// Read reads a sample.
func (s *Sampler) Read() (Sample, error) { return readSample(s.paths, s.pread) }

func (s *Sampler) pread(p string) ([]byte, error) {
	fd, ok := s.fds[p]
	if !ok {
		var err error
		if fd, err = unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0); err != nil {
			fd = -1
		}
		s.fds[p] = fd
	}
	if fd < 0 {
		return nil, unix.ENOENT
	}
	for {
		n, err := unix.Pread(fd, s.buf, 0)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return nil, err
		case n == len(s.buf):
			s.buf = make([]byte, 2*len(s.buf)) // memory.stat may outgrow it
			continue
		}
		return s.buf[:n], nil
	}
}

// Close closes the files.
func (s *Sampler) Close() {
	for _, fd := range s.fds {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
	s.fds = map[string]int{}
}
