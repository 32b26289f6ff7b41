//go:build linux && cgo && seccomp

package profiles

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cyphar/filepath-securejoin/pathrs-lite"
	"github.com/opencontainers/runc/libcontainer/capabilities"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/seccomp"
	"github.com/opencontainers/runc/libcontainer/specconv"
	"github.com/opencontainers/runc/libcontainer/system"
	"github.com/opencontainers/runc/libcontainer/utils"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/internal/testenv"
)

// childSpec tells the child what to load and run.
type childSpec struct {
	Profile string   // OCI seccomp JSON
	Fifo    string   // the exec fifo, as runc init has it
	NNP     bool     // no_new_privileges: the filter is loaded last
	UID     int      // without NNP: the user to change to after the filter
	Argv    []string // what to exec
}

// runChild plays the end of runc init (libcontainer/standard_init_linux.go,
// runc v1.5.2) around seccomp.InitSeccomp, with runc's own helpers where
// they are exported, then execs spec.Argv. What runc does after loading
// the filter must work under it.
func runChild(specJSON string) int {
	if err := child(specJSON); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	return 0 // not reached: child execs
}

func child(specJSON string) error {
	// The filter and no_new_privs are the calling thread's, and exec
	// keeps the thread that calls it: all of it on one thread, as runc
	// init's is (a busy host moved the goroutine between them).
	runtime.LockOSThread()
	var cs childSpec
	if err := json.Unmarshal([]byte(specJSON), &cs); err != nil {
		return err
	}
	data, err := os.ReadFile(cs.Profile)
	if err != nil {
		return err
	}
	var s specs.LinuxSeccomp
	if err := json.Unmarshal(data, &s); err != nil {
		return err
	}
	cfg, err := specconv.SetupSeccomp(&s)
	if err != nil {
		return fmt.Errorf("specconv.SetupSeccomp: %w", err)
	}

	// What runc init holds at this point: its sync socket, its log pipe,
	// and an O_PATH handle to the exec fifo.
	syncPipe, syncPeer, err := utils.NewSockPair("sync")
	if err != nil {
		return err
	}
	defer syncPeer.Close()
	logR, logW, err := os.Pipe()
	if err != nil {
		return err
	}
	defer logR.Close()
	fifo, err := os.OpenFile(cs.Fifo, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	pdeath, err := system.GetParentDeathSignal()
	if err != nil {
		return err
	}

	if !cs.NNP {
		// Without no_new_privileges runc loads the filter before it
		// changes user (finalizeNamespace), which needs CAP_SYS_ADMIN.
		if _, err := seccomp.InitSeccomp(cfg); err != nil {
			return fmt.Errorf("InitSeccomp: %w", err)
		}
		if err := finalizeNamespace(cs.UID); err != nil {
			return fmt.Errorf("after the filter, finalizeNamespace: %w", err)
		}
		if err := pdeath.Restore(); err != nil {
			return fmt.Errorf("after the filter, restoring the parent death signal: %w", err)
		}
	}
	if unix.Getppid() == 1 {
		return errors.New("parent died")
	}
	name, err := exec.LookPath(cs.Argv[0])
	if err != nil {
		return err
	}
	if cs.NNP {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return err
		}
		if _, err := seccomp.InitSeccomp(cfg); err != nil {
			return fmt.Errorf("InitSeccomp: %w", err)
		}
	}

	// From here on it is runc's common tail, under the filter.
	if err := syncPipe.Close(); err != nil {
		return fmt.Errorf("after the filter, closing the sync socket: %w", err)
	}
	if err := logW.Close(); err != nil {
		return fmt.Errorf("after the filter, closing the log pipe: %w", err)
	}
	f, err := pathrs.Reopen(fifo, unix.O_WRONLY|unix.O_CLOEXEC)
	if err != nil {
		return fmt.Errorf("after the filter, reopening the exec fifo: %w", err)
	}
	if _, err := f.Write([]byte("0")); err != nil {
		return fmt.Errorf("after the filter, writing the exec fifo: %w", err)
	}
	_ = f.Close()
	_ = fifo.Close()
	if err := utils.UnsafeCloseFrom(3); err != nil {
		return fmt.Errorf("after the filter, closing descriptors: %w", err)
	}
	return fmt.Errorf("after the filter, exec: %w", unix.Exec(name, cs.Argv, os.Environ()))
}

// finalizeNamespace does what runc's does, with its helpers: mark
// descriptors close-on-exec, drop capabilities and change user.
func finalizeNamespace(uid int) error {
	if err := utils.CloseExecFrom(3); err != nil {
		return err
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	w, err := capabilities.New(&configs.Capabilities{})
	if err != nil {
		return err
	}
	if err := w.ApplyBoundingSet(); err != nil {
		return err
	}
	if err := system.SetKeepCaps(); err != nil {
		return err
	}
	if err := unix.Setgroups(nil); err != nil {
		return err
	}
	if err := unix.Setgid(uid); err != nil {
		return err
	}
	if err := unix.Setuid(uid); err != nil {
		return err
	}
	if _, err := os.Getwd(); err != nil {
		return err
	}
	if err := system.ClearKeepCaps(); err != nil {
		return err
	}
	return w.ApplyCaps()
}

// busyboxScript is what a shell-script service does. It must run under
// the strict profile, and what the profile denies must fail.
const busyboxScript = `set -e
echo ok
ls / >/dev/null
d=$(mktemp -d)
echo hello >"$d/f"
[ "$(cat "$d/f" | wc -c)" -eq 6 ]
ln -s "$d/f" "$d/l"
readlink "$d/l" >/dev/null
mkdir "$d/sub"
rmdir "$d/sub"
chmod 600 "$d/f"
mv "$d/f" "$d/g"
rm -r "$d"
sleep 0.01 &
wait
[ "$(echo sub | tr a-z A-Z)" = SUB ]
date +%s >/dev/null
uname -a >/dev/null
id
grep Seccomp: /proc/self/status
if unshare -U true 2>/dev/null; then echo "unshare worked"; exit 1; fi
echo done
`

// TestStrictProfileRuns loads the strict profile in a child the way runc
// init does, and runs a busybox shell script and a static Go server under
// it: with no_new_privileges as root, and without it, changing to an
// unprivileged user after the filter is loaded, as runc then does.
func TestStrictProfileRuns(t *testing.T) {
	requireRoot(t)
	if testing.Short() {
		t.Skip("builds a Go program; skipped with -short")
	}
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		skipOrFail(t, "needs busybox in PATH")
	}
	dir := t.TempDir()
	goserver := filepath.Join(dir, "goserver")
	if err := testenv.StaticGo(goserver, "./profiles/testdata/goserver"); err != nil {
		t.Fatal(err)
	}
	// The unprivileged user must reach the programs and write a
	// temporary directory; t.TempDir makes both levels 0700.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tmp, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}

	s, err := Seccomp(Options{Profile: "strict", Arch: runtime.GOARCH, Log: true})
	if err != nil {
		t.Fatal(err)
	}
	profile := filepath.Join(dir, "strict.json")
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(profile, b, 0o644); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		cs   childSpec
		want []string
	}{
		{
			name: "busybox with no_new_privileges",
			cs:   childSpec{NNP: true, Argv: []string{busybox, "sh", "-c", busyboxScript}},
			want: []string{"ok\n", "uid=0(root)", "Seccomp:\t2", "done\n"},
		},
		{
			name: "busybox changing user after the filter",
			cs:   childSpec{UID: 65534, Argv: []string{busybox, "sh", "-c", busyboxScript}},
			want: []string{"ok\n", "uid=65534", "Seccomp:\t2", "done\n"},
		},
		{
			name: "static Go server with no_new_privileges",
			cs:   childSpec{NNP: true, Argv: []string{goserver}},
			want: []string{"goserver ok\n"},
		},
		{
			name: "static Go server changing user after the filter",
			cs:   childSpec{UID: 65534, Argv: []string{goserver}},
			want: []string{"goserver ok\n"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := tc.cs
			cs.Profile = profile
			cs.Fifo = filepath.Join(t.TempDir(), "exec.fifo")
			// As runc makes it: writable by the container's user.
			if err := unix.Mkfifo(cs.Fifo, 0o622); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(cs.Fifo, cs.UID, cs.UID); err != nil {
				t.Fatal(err)
			}
			out, err := runUnderFilter(t, cs, tmp)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			t.Logf("output:\n%s", out)
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

// runUnderFilter starts the child, plays runc's parent on the exec fifo,
// and returns the child's output.
func runUnderFilter(t *testing.T, cs childSpec, tmp string) (string, error) {
	spec, err := json.Marshal(cs)
	if err != nil {
		return "", err
	}
	var out bytes.Buffer
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), childEnv+"="+string(spec), "TMPDIR="+tmp)
	cmd.Stdout, cmd.Stderr = &out, &out
	// A grandchild that outlives the child keeps the output pipe open;
	// Wait must not wait for it forever.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	// runc start opens the fifo and reads the byte that lets init exec.
	fifoByte := make(chan error, 1)
	go func() {
		f, err := os.Open(cs.Fifo)
		if err != nil {
			fifoByte <- err
			return
		}
		defer f.Close()
		b, err := io.ReadAll(f)
		if err == nil && string(b) != "0" {
			err = fmt.Errorf("read %q from the exec fifo, want 0", b)
		}
		fifoByte <- err
	}()

	var childErr error
	select {
	case err := <-done:
		if err != nil {
			childErr = fmt.Errorf("child: %w", err)
		}
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		<-done
		childErr = errors.New("child still running after a minute")
	}
	select {
	case err := <-fifoByte:
		return out.String(), errors.Join(childErr, err)
	case <-time.After(time.Second):
		// Unblock the reader's open, which waits for a writer.
		if w, err := os.OpenFile(cs.Fifo, unix.O_WRONLY|unix.O_NONBLOCK, 0); err == nil {
			w.Close()
		}
		<-fifoByte
		return out.String(), errors.Join(childErr, errors.New("the child never wrote the exec fifo"))
	}
}
