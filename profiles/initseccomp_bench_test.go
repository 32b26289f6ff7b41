//go:build linux && cgo && seccomp

package profiles

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/opencontainers/runc/libcontainer/seccomp"
	"github.com/opencontainers/runc/libcontainer/specconv"
	"golang.org/x/sys/unix"
)

// BenchmarkInitSeccomp measures what runc init spends on the filter when
// a container starts: libcontainer's seccomp.InitSeccomp (libseccomp
// building the rules, exporting BPF, runc's ENOSYS patch, loading). Each
// run loads the filter on a thread of its own that then exits, so the
// benchmark itself stays unfiltered: runc loads it without
// SECCOMP_FILTER_FLAG_TSYNC, for the calling thread only.
func BenchmarkInitSeccomp(b *testing.B) {
	for _, tc := range []struct {
		profile string
		log     bool
	}{{"default", true}, {"default", false}, {"strict", true}} {
		b.Run(fmt.Sprintf("%s/log=%v", tc.profile, tc.log), func(b *testing.B) {
			s, err := Seccomp(Options{Profile: tc.profile, Arch: runtime.GOARCH, Log: tc.log})
			if err != nil {
				b.Fatal(err)
			}
			cfg, err := specconv.SetupSeccomp(s)
			if err != nil {
				b.Fatal(err)
			}
			var cpu time.Duration
			for b.Loop() {
				errc := make(chan error)
				go func() {
					// Never unlocked: the thread exits with the
					// goroutine, and its filter with it.
					runtime.LockOSThread()
					if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
						errc <- err
						return
					}
					before := threadCPU()
					_, err := seccomp.InitSeccomp(cfg)
					cpu += threadCPU() - before
					errc <- err
				}()
				if err := <-errc; err != nil {
					b.Fatal(err)
				}
			}
			// The thread's own CPU time: on a busy machine it says more
			// than the wall clock.
			b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/op")
		})
	}
}

// threadCPU is the CPU time the calling thread has used.
func threadCPU() time.Duration {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_THREAD, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkSetupSeccomp measures the conversion of the spec's profile
// that safe-run itself does before starting the container.
func BenchmarkSetupSeccomp(b *testing.B) {
	s, err := Seccomp(Options{Profile: "default", Arch: runtime.GOARCH})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := specconv.SetupSeccomp(s); err != nil {
			b.Fatal(err)
		}
	}
}
