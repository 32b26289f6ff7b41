package guest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// Kernel is a Debian kernel package unpacked in the cache.
type Kernel struct {
	Package string // e.g. linux-image-6.1.0-56-amd64
	Version string // package version, e.g. 6.1.192-2
	Release string // what uname -r says in the guest, e.g. 6.1.0-56-amd64
	Dir     string // the unpacked package
	Vmlinuz string // Dir/boot/vmlinuz-<release>
	Modules string // Dir/lib/modules/<release>
}

// kernelPackage matches the Debian 12 kernel packages the guest boots: the
// 6.1 LTS series for amd64, signed or unsigned (both ship the same vmlinuz
// and modules; the signature only matters to UEFI Secure Boot). The ABI
// number in the middle grows with each security update.
var kernelPackage = regexp.MustCompile(`^linux-image-(6\.1\.0-([0-9]+)-amd64)(-unsigned)?$`)

// CacheDir is where kernels are unpacked: $SAFE_RUN_GUEST_CACHE, else
// /var/cache/safe-run-guest. One kernel takes about 400 MB there.
func CacheDir() string {
	if d := os.Getenv("SAFE_RUN_GUEST_CACHE"); d != "" {
		return d
	}
	return "/var/cache/safe-run-guest"
}

// FetchKernel returns the newest linux-image-6.1.0-*-amd64 that apt knows
// of, unpacked under CacheDir. The first call downloads it with
// `apt-get download` (about 70 MB) and unpacks it with `dpkg-deb -x`; later
// calls, from any process, reuse it. Without apt lists (or apt) it falls
// back to the newest kernel already in the cache, so an offline machine with
// a warm cache still boots.
func FetchKernel(ctx context.Context) (Kernel, error) {
	cache := CacheDir()
	pkg, version, err := newestKernelPackage(ctx)
	if err != nil {
		if k, ok := newestCachedKernel(cache); ok {
			return k, nil
		}
		return Kernel{}, err
	}
	k := kernelIn(cache, pkg, version)
	if k.complete() {
		return k, nil
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return Kernel{}, fmt.Errorf("creating kernel cache: %w (run as root, or set SAFE_RUN_GUEST_CACHE to a writable directory)", err)
	}
	// Parallel test binaries (go test ./... runs one per package) all want
	// the same kernel: one downloads, the others wait and then find it.
	unlock, err := lockFile(ctx, filepath.Join(cache, ".lock"))
	if err != nil {
		return Kernel{}, fmt.Errorf("locking kernel cache %s: %w", cache, err)
	}
	defer unlock()
	if k.complete() {
		return k, nil
	}
	if err := downloadKernel(ctx, cache, k); err != nil {
		return Kernel{}, fmt.Errorf("fetching kernel %s=%s: %w", pkg, version, err)
	}
	return k, nil
}

func kernelIn(cache, pkg, version string) Kernel {
	release := kernelPackage.FindStringSubmatch(pkg)[1]
	dir := filepath.Join(cache, pkg+"_"+version)
	return Kernel{
		Package: pkg,
		Version: version,
		Release: release,
		Dir:     dir,
		Vmlinuz: filepath.Join(dir, "boot", "vmlinuz-"+release),
		Modules: filepath.Join(dir, "lib", "modules", release),
	}
}

// complete reports whether k is fully unpacked. A cache entry appears only
// by rename, so its vmlinuz existing means all of it is there.
func (k Kernel) complete() bool {
	_, err := os.Stat(k.Vmlinuz)
	return err == nil
}

// newestKernelPackage asks apt for the kernel package with the highest ABI
// number that has an installable version.
func newestKernelPackage(ctx context.Context) (pkg, version string, err error) {
	out, err := runOutput(ctx, "", "apt-cache", "pkgnames", "linux-image-6.1.0-")
	if errors.Is(err, exec.ErrNotFound) {
		return "", "", &MissingError{What: "apt-cache", Why: "to find a Debian kernel package", Fix: "run on Debian 12 (bookworm), or set SAFE_RUN_GUEST_CACHE to a cache that already holds a kernel"}
	}
	if err != nil {
		return "", "", err
	}
	best := newestKernelName(strings.Fields(out))
	if best == "" {
		return "", "", &MissingError{What: "a linux-image-6.1.0-*-amd64 package in the apt lists", Why: "to boot the guest", Fix: "apt-get update (on Debian 12 bookworm, with bookworm-security in sources)"}
	}
	out, err = runOutput(ctx, "", "apt-cache", "policy", best)
	if err != nil {
		return "", "", err
	}
	for line := range strings.Lines(out) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Candidate:"); ok {
			version = strings.TrimSpace(v)
		}
	}
	if version == "" || version == "(none)" {
		return "", "", &MissingError{What: "an installable version of " + best, Why: "to boot the guest", Fix: "apt-get update"}
	}
	return best, version, nil
}

// newestKernelName returns the kernel package among names with the highest
// ABI number, or "" if there is none.
func newestKernelName(names []string) string {
	best, bestABI := "", -1
	for _, name := range names {
		m := kernelPackage.FindStringSubmatch(name)
		if m == nil {
			continue
		}
		abi, _ := strconv.Atoi(m[2])
		// Prefer the signed name at equal ABI: it is what linux-image-amd64
		// pulls in, so it is what a Debian 12 server really runs.
		if abi > bestABI || abi == bestABI && m[3] == "" {
			best, bestABI = name, abi
		}
	}
	return best
}

// newestCachedKernel returns the cached kernel with the highest ABI number.
func newestCachedKernel(cache string) (Kernel, bool) {
	entries, err := os.ReadDir(cache)
	if err != nil {
		return Kernel{}, false
	}
	var best Kernel
	bestABI := -1
	for _, e := range entries {
		pkg, version, ok := strings.Cut(e.Name(), "_")
		m := kernelPackage.FindStringSubmatch(pkg)
		if !ok || m == nil {
			continue
		}
		abi, _ := strconv.Atoi(m[2])
		if k := kernelIn(cache, pkg, version); abi > bestABI && k.complete() {
			best, bestABI = k, abi
		}
	}
	return best, bestABI >= 0
}

// downloadKernel unpacks the package into a temporary directory beside the
// cache entry and renames it into place, so an interrupted download leaves at
// most a .fetch-* directory, which the next download (under the same lock)
// removes, and never a half-unpacked kernel that looks complete.
func downloadKernel(ctx context.Context, cache string, k Kernel) error {
	stale, _ := filepath.Glob(filepath.Join(cache, ".fetch-*"))
	for _, s := range stale {
		os.RemoveAll(s)
	}
	tmp, err := os.MkdirTemp(cache, ".fetch-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	// As root, apt-get download warns that _apt cannot write to this 0700
	// directory and fetches as root instead. That is harmless; opening the
	// directory to _apt would open it to every local user too.
	if _, err := runOutput(ctx, tmp, "apt-get", "download", k.Package+"="+k.Version); err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return &MissingError{What: "apt-get", Why: "to download the kernel package", Fix: "run on Debian 12 (bookworm)", Err: err}
		}
		return err
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != 1 {
		return fmt.Errorf("apt-get download left %d .deb files in %s, expected 1", len(debs), tmp)
	}
	root := filepath.Join(tmp, "root")
	if _, err := runOutput(ctx, "", "dpkg-deb", "-x", debs[0], root); err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return &MissingError{What: "dpkg-deb", Why: "to unpack the kernel package", Fix: "apt-get install -y dpkg", Err: err}
		}
		return err
	}
	if err := os.Chmod(root, 0o755); err != nil {
		return err
	}
	rel := func(p string) string { return filepath.Join(root, strings.TrimPrefix(p, k.Dir)) }
	for _, p := range []string{k.Vmlinuz, k.Modules} {
		if _, err := os.Stat(rel(p)); errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s does not contain %s; is it a Debian kernel image package?", debs[0], strings.TrimPrefix(p, k.Dir+"/"))
		}
	}
	return os.Rename(root, k.Dir)
}

// runOutput runs a command in dir and returns its stdout; its error carries the
// command and its stderr.
func runOutput(ctx context.Context, dir, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if errors.Is(err, exec.ErrNotFound) {
		return "", err
	}
	if err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return string(out), nil
}
