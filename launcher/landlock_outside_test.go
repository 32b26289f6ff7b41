package launcher_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/internal/testenv"
	"github.com/safe-run/safe-run/landlock"
)

// TestLandlockPathsOutside: the ruleset grants read beneath the
// container's "/", yet a path can lead out of the container's tree: a
// magic link of /proc (/proc/PID/cwd, /root, /fd/N) resolves to wherever
// its process has it, and a descriptor passed over a unix socket in a
// bind reaches a host directory by /proc/self/fd/N. Landlock judges an
// open by the file's real ancestors, and the host's are not beneath the
// container's "/": each is denied with Landlock on, and read with it off
// (the controls show that nothing else stands in the way).
//
//   - host process: a host process of the service's host uid, in the
//     host's user namespace, its cwd a directory holding a file, read
//     as /proc/PID/cwd/secret with pid = "host". Refused with Landlock
//     off too: following another process's magic link is a ptrace
//     read (proc_fd_access_allowed), and the capability rules refuse it
//     to a process in another user namespace, without CAP_SYS_PTRACE in
//     the target's (cap_ptrace_access_check). The service's user
//     namespace guards this, not Landlock.
//   - in the service's user namespace: the same process entered into
//     the service's user namespace (nsenter -U, as the service's uid,
//     no capabilities; its cwd stays on the host), which the capability
//     rules let through. With Landlock on, the domain's ptrace scoping
//     (every ABI) refuses it, before the path rules would.
//   - passed descriptor: a host directory's descriptor sent over a unix
//     socket in a writable bind (SCM_RIGHTS); the service opens
//     /proc/self/fd/N/secret. Its own descriptor, so no ptrace check:
//     the path rules alone refuse it.
//
// Root and rootless alike.
func TestLandlockPathsOutside(t *testing.T) {
	setup(t)
	abi := testenv.RequireLandlock(t, 1)
	testenv.RequireTool(t, "nsenter")
	audited := abi >= 7
	if audited {
		testenv.EnableAudit(t) // the root runs' denials are shown
	}
	secretDir := t.TempDir()
	os.Chmod(secretDir, 0o755)
	const secret = "the host's secret\n"
	if err := os.WriteFile(filepath.Join(secretDir, "secret"), []byte(secret), 0o644); err != nil {
		t.Fatal(err)
	}
	procScript := "echo $$; read pid; cat /proc/$pid/cwd/secret 2>&1; echo end"
	procBody := fmt.Sprintf("[process]\ncommand = [\"/bin/sh\", \"-c\", %q]\nuser = \"1000:1000\"\n\n[namespaces]\npid = \"host\"\n", procScript)

	for _, rootless := range []bool{false, true} {
		t.Run(map[bool]string{false: "root", true: "rootless"}[rootless], func(t *testing.T) {
			var sr outsideRunner
			if rootless {
				sr = rootlessOutside(t)
			} else {
				sr = rootOutside(t)
			}
			// Each case starts what the service reads from once the
			// service has told its host pid, and says what it sends the
			// service, what the service prints when denied, and the
			// denial shown where the kernel audits it (root, ABI 7).
			type outcome struct{ sent, denied, shown string }
			for _, tc := range []struct {
				name  string
				body  string
				allow string // [insecure] items besides landlock_off
				bind  bool   // a writable bind at /var/up, with the socket
				start func(t *testing.T, servicePid int) outcome
				// offDenied: refused with Landlock off as well (by
				// the capability rules, as the comment above says).
				offDenied bool
				read      string // the service's last lines when it reads the secret
			}{
				{name: "host process", body: procBody, allow: `"host_pid"`, offDenied: true,
					start: func(t *testing.T, servicePid int) outcome {
						uid := strconv.Itoa(hostUID(t, servicePid))
						p := startIn(t, secretDir, "setpriv", "--reuid", uid, "--regid", uid, "--clear-groups", "sleep", "60")
						// The capability rules refuse it before Landlock
						// is asked: nothing is shown.
						return outcome{strconv.Itoa(p), fmt.Sprintf("cat: can't open '/proc/%d/cwd/secret': Permission denied\nend\n", p), ""}
					}},
				{name: "in the service's user namespace", body: procBody, allow: `"host_pid"`, read: "\n" + secret + "end\n",
					start: func(t *testing.T, servicePid int) outcome {
						p := startIn(t, secretDir, "nsenter", "-t", strconv.Itoa(servicePid), "-U", "-S", "1000", "-G", "1000", "sleep", "60")
						if u, s := hostUID(t, p), hostUID(t, servicePid); u != s {
							t.Fatalf("the entered process runs as host uid %d, the service as %d", u, s)
						}
						return outcome{strconv.Itoa(p), fmt.Sprintf("cat: can't open '/proc/%d/cwd/secret': Permission denied\nend\n", p),
							fmt.Sprintf("ptrace host pid %d (sleep)", p)}
					}},
				{name: "passed descriptor", bind: true, read: "\nread " + strconv.Quote(secret) + "\nend\n",
					body: "[process]\ncommand = [\"/bin/sh\", \"-c\", \"echo $$; read x; /bin/confinement -read-passed /var/up/sock:secret; echo end\"]\n",
					start: func(t *testing.T, _ int) outcome {
						return outcome{"go", "read secret beneath the passed directory: permission denied\nend\n", "read-file " + filepath.Join(secretDir, "secret")}
					}},
			} {
				t.Run(tc.name, func(t *testing.T) {
					name := "llout-" + strings.Fields(tc.name)[0]
					if rootless {
						name = "llrl" + name[2:]
					}
					body := tc.body
					if tc.bind {
						up := sr.bindDir(t, name)
						serveDirFD(t, filepath.Join(up, "sock"), secretDir)
						body += "\n[[mounts]]\ntype = \"bind\"\nsource = \"" + up + "\"\ntarget = \"/var/up\"\nread_only = false\n"
					}
					// The same name both times: the same host ids.
					for _, on := range []bool{true, false} {
						allow, b := tc.allow, body
						if !on {
							allow = strings.TrimPrefix(allow+`, "landlock_off"`, ", ")
							b += "\n[security]\nlandlock = \"off\"\n"
						}
						var o outcome
						r := sr.talk(t, sr.manifest(t, name, b, allow), func(servicePid int) string {
							o = tc.start(t, servicePid)
							return o.sent
						})
						if on || tc.offDenied {
							if !strings.HasSuffix(r.stdout, o.denied) {
								t.Errorf("Landlock on: %v: exit %d, want the read denied; got\n%swant\n%s%s", on, r.code, r.stdout, o.denied, r.stderr)
							}
						} else if !strings.HasSuffix(r.stdout, tc.read) {
							t.Errorf("Landlock off (the control): exit %d, want the secret read; got\n%swant\n%s%s", r.code, r.stdout, tc.read, r.stderr)
						}
						switch shown := "safe-run: " + name + ": landlock denied " + o.shown + "\n"; {
						case rootless:
							assertRootlessReport(t, r.stderr, abi, on)
						case !on:
							if !strings.Contains(r.stderr, "Landlock OFF") {
								t.Errorf("the start report does not say Landlock is off:\n%s", r.stderr)
							}
						case !strings.Contains(r.stderr, fmt.Sprintf("Landlock ABI %d (", min(abi, landlock.MaxABI))):
							t.Errorf("the start report does not say Landlock ABI %d:\n%s", min(abi, landlock.MaxABI), r.stderr)
						case audited && o.shown != "" && !strings.Contains(r.stderr, shown):
							t.Errorf("%q not shown:\n%s", shown, r.stderr)
						case o.shown == "" && strings.Contains(r.stderr, "landlock denied"):
							t.Errorf("a Landlock denial shown where the capability rules refused:\n%s", r.stderr)
						}
						sr.nothingLeft(t, name)
					}
				})
			}
		})
	}
}

// outsideRunner runs TestLandlockPathsOutside's services as root or as
// the rootless user.
type outsideRunner struct {
	manifest    func(t *testing.T, name, body, allow string) string
	cmd         func(ctx context.Context, manifest string) *exec.Cmd
	bindDir     func(t *testing.T, name string) string
	nothingLeft func(t *testing.T, name string)
}

func rootOutside(t *testing.T) outsideRunner {
	return outsideRunner{
		manifest: func(t *testing.T, name, body, allow string) string {
			if allow != "" {
				body += "\n[insecure]\nreason = \"the test reads through a path out of the container\"\nallow = [" + allow + "]\n"
			}
			return manifestFor(t, name, body)
		},
		cmd: func(ctx context.Context, m string) *exec.Cmd { return safeRun(t, ctx, m) },
		bindDir: func(t *testing.T, name string) string {
			up := filepath.Join(env.dir, "manifests", name, "up")
			os.MkdirAll(up, 0o777)
			os.Chmod(up, 0o777)
			return up
		},
		nothingLeft: assertNothingLeft,
	}
}

func rootlessOutside(t *testing.T) outsideRunner {
	h := newRootlessHome(t, "rootless-llout")
	return outsideRunner{
		manifest: func(t *testing.T, name, body, allow string) string {
			return h.manifestAllowing(name, body, "the test reads through a path out of the container", allow)
		},
		cmd: func(ctx context.Context, m string) *exec.Cmd { return h.cmd(ctx, m) },
		bindDir: func(t *testing.T, name string) string {
			up := filepath.Join(h.dir, name+"-up")
			os.MkdirAll(up, 0o700)
			os.Chown(up, int(h.u.uid), int(h.u.gid))
			return up
		},
		nothingLeft: h.assertNothingLeft,
	}
}

// talk starts safe-run on manifest m; the service writes its host pid
// first, and gets answer's line on its stdin.
func (sr outsideRunner) talk(t *testing.T, m string, answer func(servicePid int) string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := sr.cmd(ctx, m)
	in, err := c.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errOut testenv.Buffer
	c.Stderr = &errOut
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(out)
	line, err := r.ReadString('\n')
	pid, perr := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || perr != nil {
		c.Process.Kill()
		c.Wait()
		t.Fatalf("the service's pid: %q %v\n%s", line, err, errOut.String())
	}
	fmt.Fprintln(in, answer(pid))
	in.Close()
	rest, _ := io.ReadAll(r)
	c.Wait()
	return result{code: c.ProcessState.ExitCode(), stdout: line + string(rest), stderr: errOut.String()}
}

// hostUID is the host uid process pid runs as.
func hostUID(t *testing.T, pid int) int {
	t.Helper()
	st, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	if err != nil {
		t.Fatal(err)
	}
	return int(st.Sys().(*syscall.Stat_t).Uid)
}

// startIn starts a command on the host in dir, and ends it with the test.
// The command is to exec its last program without forking: its pid is
// that program's.
func startIn(t *testing.T, dir string, prog string, args ...string) int {
	t.Helper()
	c := exec.Command(prog, args...)
	c.Dir = dir
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Process.Kill()
		c.Wait()
	})
	// Until it has become the program (its comm changes at the exec).
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", c.Process.Pid)); string(comm) == args[len(args)-2]+"\n" {
			break
		}
	}
	return c.Process.Pid
}

// serveDirFD listens on a unix socket at path, open to anyone, and sends
// every client a descriptor of dir.
func serveDirFD(t *testing.T, path, dir string) {
	t.Helper()
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	os.Chmod(path, 0o777)
	go func() {
		for {
			c, err := ln.AcceptUnix()
			if err != nil {
				return
			}
			c.WriteMsgUnix([]byte{0}, unix.UnixRights(int(d.Fd())), nil)
			c.Close()
		}
	}()
}
