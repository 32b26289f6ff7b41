package launcher

import (
	"crypto/sha256"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"testing"

	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/specconv"
	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/internal/testenv"
	"github.com/safe-run/safe-run/plan"
	"github.com/safe-run/safe-run/profiles"
)

// The launcher's three cgo surfaces each stand on a number; these
// benchmarks are how to measure it again (go test -tags seccomp -run '^$'
// -bench 'Seccomp|Userns' ./launcher, as root). Signal 34
// (signals_unhandled_linux.go) saves no time: without it the signal kills
// safe-run, so it has no benchmark.

// BenchmarkSeccompCompile is what every container's init spent on the
// default profile before the capture (libseccomp building the rules and
// its BPF, runc's -ENOSYS patch), plus the capture's own overhead: it is
// paid once per profile now.
func BenchmarkSeccompCompile(b *testing.B) {
	if !captureSupported() {
		b.Skip("this kernel has no seccomp user notification (Linux 5.0)")
	}
	cfg := benchSeccomp(b)
	for b.Loop() {
		if _, err := compileSeccomp(cfg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSeccompCached is what a start pays instead: the program read
// from DataDir/seccomp (safe-run-init loads it with one system call).
func BenchmarkSeccompCached(b *testing.B) {
	if !captureSupported() {
		b.Skip("this kernel has no seccomp user notification (Linux 5.0)")
	}
	cfg := benchSeccomp(b)
	dir := b.TempDir()
	file, err := seccompCacheFile(dir, cfg)
	if err != nil {
		b.Fatal(err)
	}
	prog, err := compileSeccomp(cfg)
	if err != nil {
		b.Fatal(err)
	}
	sum := sha256.Sum256(prog)
	if err := os.WriteFile(file, append(prog, sum[:]...), 0o600); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		f, err := seccompCacheFile(dir, cfg)
		if err != nil {
			b.Fatal(err)
		}
		if p, err := os.ReadFile(f); err != nil {
			b.Fatal(err)
		} else if _, ok := keptProgram(p); !ok {
			b.Fatal("no cached program")
		}
	}
}

func benchSeccomp(b *testing.B) *configs.Seccomp {
	s, err := profiles.Seccomp(profiles.Options{Profile: "default", Arch: runtime.GOARCH, Log: true})
	if err != nil {
		b.Fatal(err)
	}
	cfg, err := specconv.SetupSeccomp(s)
	if err != nil {
		b.Fatal(err)
	}
	return cfg
}

// BenchmarkUsernsHolder is usernsFD: the C clone (CLONE_VM, no exec) of a
// child in a new user namespace, mapped, its namespace opened.
func BenchmarkUsernsHolder(b *testing.B) {
	testenv.RequireRoot(b)
	ids := plan.IDMap{UID: 1 << 30, GID: 1 << 30, Size: 65536}
	for b.Loop() {
		f, err := usernsFD(ids)
		if err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}

// BenchmarkUsernsExec is what Go offers without cgo: fork and exec of a
// program (the smallest there is) in a new user namespace, mapped by the
// runtime, its namespace opened, killed and reaped.
func BenchmarkUsernsExec(b *testing.B) {
	testenv.RequireRoot(b)
	pause, err := exec.LookPath("sleep")
	if err != nil {
		b.Skip("no sleep(1) to exec")
	}
	for b.Loop() {
		cmd := exec.Command(pause, "infinity")
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Cloneflags:  unix.CLONE_NEWUSER,
			UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 1 << 30, Size: 65536}},
			GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 1 << 30, Size: 65536}},
			Pdeathsig:   unix.SIGKILL,
		}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		f, err := os.Open(filepath.Join("/proc", strconv.Itoa(cmd.Process.Pid), "ns", "user"))
		if err != nil {
			b.Fatal(err)
		}
		f.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
}
