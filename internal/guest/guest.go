package guest

import (
	"bytes"
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Options describes one guest run.
type Options struct {
	// Files maps guest paths to host paths copied into the guest's root
	// before the script runs: static binaries, data, whole directories
	// (a container rootfs). They are writable in the guest and may
	// replace what the harness puts there.
	Files map[string]string
	// Programs maps guest paths to dynamically linked host programs,
	// copied with the shared libraries ldd lists for them (e.g. the
	// setuid newuidmap of package uidmap). Modes, set-id bits included,
	// are kept.
	Programs map[string]string
	// Script is a busybox sh script run as root in the guest once it is
	// set up; its exit status is the run's.
	Script string
	// Modules are kernel modules to load besides overlay, which is always
	// loaded, by name (e.g. "veth"); their dependencies are loaded first.
	Modules []string
	// Memory is the guest's RAM as QEMU's -m takes it; default "1G".
	// The whole root filesystem lives in it, twice during boot.
	Memory string
	// Timeout bounds boot and script together; default 5m. The kernel
	// download, on first use, is bounded only by ctx.
	Timeout time.Duration
	// Stdout receives the guest console: the script's stdout and stderr,
	// and what the kernel prints despite "quiet". May be nil.
	Stdout io.Writer
	// Logger gets the kernel used, the boot time and the run time; nil
	// discards.
	Logger *slog.Logger
	// Cmdline is added to the kernel's command line, after the defaults
	// (cmdline): lsm=... boots a kernel without one of its LSMs.
	Cmdline []string
}

// The marker lines that init.sh prints carry a per-run nonce so that a
// script printing "SAFE_RUN_GUEST_EXIT=0" cannot fake its status.
const (
	readyMarker = "SAFE_RUN_GUEST_READY="
	exitMarker  = "SAFE_RUN_GUEST_EXIT="
)

// cmdline is the guest kernel's command line.
//
//   - No lsm= or security=: Debian's kernel enables AppArmor by default
//     (CONFIG_DEFAULT_SECURITY_APPARMOR, and apparmor before selinux in
//     CONFIG_LSM), so the guest runs the LSM stack a stock Debian 12 server
//     runs: lockdown,capability,landlock,yama,apparmor,tomoyo,bpf (TOMOYO
//     is inert without its policy). apparmor=1 is the default too; it is
//     spelled out because the guest exists for it. TestGuest checks that
//     AppArmor is active rather than trusting these defaults.
//   - cgroup_no_v1=all leaves every controller to the cgroup2 hierarchy
//     init.sh mounts, as on a systemd host with the unified hierarchy;
//     systemd.unified_cgroup_hierarchy=1 would mean nothing without systemd.
//   - panic=-1 reboots at once on a panic, and QEMU's -no-reboot turns
//     that into QEMU exiting, so a dead init is seen at once.
var cmdline = []string{
	"console=ttyS0", "quiet", "panic=-1",
	"apparmor=1",
	"cgroup_no_v1=all",
}

// Run boots the guest, runs opts.Script in it and returns the script's exit
// status. An error means the status is unknown: the guest could not be
// built or booted, or did not report before the timeout. Errors that mean a
// missing host piece match ErrUnavailable.
func Run(ctx context.Context, opts Options) (status int, err error) {
	if opts.Memory == "" {
		opts.Memory = "1G"
	}
	if opts.Timeout == 0 {
		opts.Timeout = 5 * time.Minute
	}
	if opts.Stdout == nil {
		opts.Stdout = io.Discard
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}

	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		return 0, missingQEMU(err)
	}
	tools, err := findTools()
	if err != nil {
		return 0, err
	}
	k, err := FetchKernel(ctx)
	if err != nil {
		return 0, err
	}
	log.Info("guest kernel", "package", k.Package, "version", k.Version)
	boot, err := k.Vmlinux(ctx)
	if err != nil {
		log.Warn("booting the compressed kernel, about 4s slower", "reason", err)
		boot = k.Vmlinuz
	}

	dir, err := os.MkdirTemp("", "safe-run-guest-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	nonce := make([]byte, 8)
	rand.Read(nonce)
	initrd := filepath.Join(dir, "initrd.cpio")
	if err := buildInitramfs(ctx, initrd, k, tools, opts, hex.EncodeToString(nonce)); err != nil {
		return 0, fmt.Errorf("building the guest initramfs: %w", err)
	}

	// One guest at a time on a machine: two TCG guests share the CPUs and
	// each runs at half speed, past its timeout; queued, each gets the
	// whole machine, and its timeout counts from its own start.
	if err := os.MkdirAll(CacheDir(), 0o755); err != nil {
		return 0, err
	}
	unlock, err := lockFile(ctx, filepath.Join(CacheDir(), "run.lock"))
	if err != nil {
		return 0, fmt.Errorf("waiting for the other guest to finish: %w", err)
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	// TCG, never KVM: the harness must behave the same on every machine,
	// and /dev/kvm inside a nested VM (as on this project's machines) can
	// exist yet hang.
	cmd := exec.CommandContext(ctx, qemu,
		"-accel", "tcg",
		"-cpu", "max", // with RDRAND, getrandom(2) in the guest never waits for entropy
		"-smp", "2",
		"-m", opts.Memory,
		"-nodefaults", "-no-user-config", // no NIC, VGA or disk to probe
		"-display", "none",
		"-serial", "stdio",
		"-no-reboot",
		"-kernel", boot,
		"-initrd", initrd,
		"-append", strings.Join(append(slices.Clone(cmdline), opts.Cmdline...), " "),
	)
	con := &console{out: opts.Stdout, nonce: hex.EncodeToString(nonce), start: time.Now(), status: -1, exited: make(chan struct{})}
	var stderr bytes.Buffer
	cmd.Stdout = con
	cmd.Stderr = &stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("starting %s: %w", qemu, err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	var qerr error
	select {
	case qerr = <-waited:
	case <-con.exited:
		// poweroff -f follows the marker; don't let a slow ACPI
		// shutdown cost the caller more than a moment.
		select {
		case qerr = <-waited:
		case <-time.After(10 * time.Second):
			cancel()
			<-waited //nolint:errcheck // killed by us: the console says how it ended
		}
	}
	con.mu.Lock()
	defer con.mu.Unlock()
	if con.status >= 0 {
		log.Info("guest finished", "status", con.status, "boot", con.ready.Round(time.Millisecond), "total", time.Since(con.start).Round(time.Millisecond))
		return con.status, nil
	}
	tail := strings.TrimSpace(strings.Join(con.tail, "\n"))
	if msg := strings.TrimSpace(stderr.String()); msg != "" {
		tail += "\nqemu: " + msg
	}
	exit := "QEMU exited"
	if qerr != nil {
		exit = "QEMU: " + qerr.Error()
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return 0, fmt.Errorf("guest did not finish within %s (raise Options.Timeout if it is merely slow); console tail:\n%s", opts.Timeout, tail)
	}
	if ctx.Err() != nil {
		return 0, fmt.Errorf("guest stopped: %w", context.Cause(ctx))
	}
	return 0, fmt.Errorf("guest stopped without reporting an exit status (%s); console tail:\n%s", exit, tail)
}

// console receives QEMU's stdout, the guest's serial console: it forwards
// lines, keeps the last few for errors, and watches for the markers.
type console struct {
	out   io.Writer
	nonce string
	start time.Time

	mu     sync.Mutex
	buf    []byte
	tail   []string
	ready  time.Duration // since start, when the script began
	status int           // -1 until the exit marker is seen
	exited chan struct{} // closed when the exit marker is seen
	once   sync.Once
}

const tailLines = 40

func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf = append(c.buf, p...)
	for {
		i := bytes.IndexByte(c.buf, '\n')
		if i < 0 {
			break
		}
		c.line(string(bytes.TrimRight(c.buf[:i], "\r")))
		c.buf = c.buf[i+1:]
	}
	return len(p), nil
}

func (c *console) line(s string) {
	c.tail = append(c.tail, s)
	if len(c.tail) > tailLines {
		c.tail = c.tail[1:]
	}
	// Kernel messages can land mid-line on a shared console, so the
	// markers are searched for, not matched whole.
	if i := strings.Index(s, readyMarker+c.nonce); i >= 0 {
		c.ready = time.Since(c.start)
		return
	}
	if i := strings.Index(s, exitMarker+c.nonce+":"); i >= 0 && c.status < 0 {
		f := strings.Fields(s[i+len(exitMarker+c.nonce+":"):])
		if len(f) > 0 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				c.status = n
				c.once.Do(func() { close(c.exited) })
				return
			}
		}
	}
	fmt.Fprintln(c.out, s)
}

func missingQEMU(err error) error {
	return &MissingError{What: "qemu-system-x86_64", Why: "to boot the guest", Fix: "apt-get install -y qemu-system-x86", Err: err}
}

// tools are the host programs copied into the guest.
type tools struct {
	busybox  string
	apparmor string // apparmor_parser
}

func findTools() (tools, error) {
	var t tools
	var errs []error
	bb, err := exec.LookPath("busybox")
	if err != nil {
		errs = append(errs, &MissingError{What: "busybox", Why: "as the guest's shell and tools", Fix: "apt-get install -y busybox-static", Err: err})
	} else if static, err := isStatic(bb); err != nil || !static {
		errs = append(errs, &MissingError{What: "a static busybox (" + bb + " is not one)", Why: "as the guest's shell and tools", Fix: "apt-get install -y busybox-static", Err: err})
	}
	t.busybox = bb
	// apparmor_parser is in /usr/sbin, often not on a user's PATH.
	for _, p := range []string{"apparmor_parser", "/usr/sbin/apparmor_parser", "/sbin/apparmor_parser"} {
		if t.apparmor, err = exec.LookPath(p); err == nil {
			break
		}
	}
	if t.apparmor == "" {
		errs = append(errs, &MissingError{What: "apparmor_parser", Why: "to load AppArmor profiles in the guest", Fix: "apt-get install -y apparmor"})
	}
	return t, errors.Join(errs...)
}

//go:embed init.sh
var initScript []byte
