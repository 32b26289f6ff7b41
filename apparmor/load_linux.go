package apparmor

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/internal/atomicfile"
)

// securityfs is AppArmor's interface to the kernel.
const securityfs = "/sys/kernel/security/apparmor"

// InstallDir is where Install puts profiles: AppArmor's own directory,
// which its boot service loads.
const InstallDir = "/etc/apparmor.d"

// loadedProfiles reads the kernel's list of profiles, lines of
// "NAME (MODE)".
func loadedProfiles() (map[string]string, error) {
	data, err := os.ReadFile(securityfs + "/profiles")
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		i := strings.LastIndex(line, " (")
		if i < 0 || !strings.HasSuffix(line, ")") {
			continue
		}
		out[line[:i]] = line[i+2 : len(line)-1]
	}
	return out, nil
}

// LoadOptions say where Load finds the compiler and keeps what it compiled.
type LoadOptions struct {
	// Rootless: safe-run runs in a user namespace of its own, root there
	// but with no power over the kernel's policy; only an installed
	// profile can be used.
	Rootless bool
	// CacheDir keeps compiled policy, CacheDir/NAME/KEY, where KEY is the
	// hash of the profile and of everything its compilation depends on.
	CacheDir string
	// Parser is apparmor_parser; by default it is looked up on PATH, then
	// in /usr/sbin and /sbin.
	Parser string
	Logger *slog.Logger
}

// LoadResult says what Load did.
type LoadResult struct {
	Compiled bool          // false: the compiled policy came from the cache
	Took     time.Duration // compiling (if it did) and loading
}

// Load makes p the kernel's profile of its name, before the service starts.
//
// As root it compiles p.Policy with apparmor_parser, once per content: the
// compiled policy is kept in opts.CacheDir under a hash of the profile, the
// parser, its configuration and the kernel's AppArmor features, so an
// unchanged profile is never compiled again on the same host. The policy is
// then written to securityfs (.replace), which replaces a loaded profile of
// the same name, and the kernel's list is checked for it in p.Mode.
//
// Without root nothing can be loaded: Load checks that root has installed
// this very profile (Install) and otherwise fails with ErrNotInstalled.
// A profile that is not generated (p.Policy empty) is left as it is.
func Load(ctx context.Context, p *Profile, opts LoadOptions) (LoadResult, error) {
	if p == nil || p.Policy == "" {
		return LoadResult{}, nil
	}
	if opts.Rootless || os.Geteuid() != 0 {
		return LoadResult{}, checkInstalled(p, InstallDir)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	start := time.Now()
	parser, err := findParser(opts.Parser)
	if err != nil {
		return LoadResult{}, err
	}
	key, err := cacheKey(p.Policy, parser, securityfs+"/features")
	if err != nil {
		return LoadResult{}, fmt.Errorf("AppArmor profile %s: %w", p.Name, err)
	}
	dir := filepath.Join(opts.CacheDir, p.Name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return LoadResult{}, fmt.Errorf("AppArmor cache: %w", err)
	}
	file := filepath.Join(dir, key)
	var res LoadResult
	policy, err := readCached(file)
	if errors.Is(err, errDamagedCache) {
		// Loaded, a damaged policy could be one the kernel still
		// takes, confining the service otherwise than its profile
		// says: never used, compiled again (issue 19).
		log.Warn("the cached AppArmor policy is damaged (its checksum does not match); compiling it again and replacing it", "profile", p.Name, "cache", file)
	}
	if err != nil {
		if policy, err = compileInto(ctx, parser, p, file); err != nil {
			return LoadResult{}, err
		}
		res.Compiled = true
	}
	if err := replace(policy); err != nil {
		if res.Compiled || errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
			return LoadResult{}, fmt.Errorf("loading AppArmor profile %s: %w", p.Name, err)
		}
		// The kernel refuses what it accepted before from this cache:
		// the entry is damaged, or the key missed a change. Compile
		// again, once.
		log.Warn("the kernel refused a cached AppArmor profile; compiling it again", "profile", p.Name, "cache", file, "err", err)
		if policy, err = compileInto(ctx, parser, p, file); err != nil {
			return LoadResult{}, err
		}
		res.Compiled = true
		if err := replace(policy); err != nil {
			return LoadResult{}, fmt.Errorf("loading AppArmor profile %s: %w", p.Name, err)
		}
	}
	if err := checkLoaded(p); err != nil {
		return LoadResult{}, err
	}
	res.Took = time.Since(start)
	// Only the current entry of this profile is worth keeping.
	if entries, err := os.ReadDir(dir); err == nil {
		for _, e := range entries {
			if e.Name() != key {
				if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
					log.Warn("removing an outdated compiled AppArmor profile", "profile", p.Name, "err", err)
				}
			}
		}
	}
	log.Info("AppArmor profile loaded", "profile", p.Name, "mode", p.Mode, "compiled", res.Compiled, "took", res.Took)
	return res, nil
}

// compileInto compiles p and keeps the result in file, replaced
// atomically so that a crash never leaves half a policy there.
func compileInto(ctx context.Context, parser string, p *Profile, file string) ([]byte, error) {
	policy, err := compile(ctx, parser, p)
	if err != nil {
		return nil, err
	}
	if err := writeCached(file, policy); err != nil {
		return nil, fmt.Errorf("AppArmor cache: %w", err)
	}
	return policy, nil
}

// errDamagedCache: a cache entry whose checksum does not match its policy.
var errDamagedCache = errors.New("damaged (its checksum does not match)")

// writeCached keeps policy in file, then its SHA-256, replaced atomically
// so that a crash never leaves half a policy there.
func writeCached(file string, policy []byte) error {
	sum := sha256.Sum256(policy)
	return atomicfile.Write(file, append(slices.Clone(policy), sum[:]...), 0o600)
}

// readCached returns the policy kept in file, fs.ErrNotExist when there
// is none, errDamagedCache when its checksum does not match: a file
// system, a hand or a bug changed it after writeCached.
func readCached(file string) ([]byte, error) {
	kept, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	if len(kept) <= sha256.Size {
		return nil, fmt.Errorf("%s: %w", file, errDamagedCache)
	}
	policy, sum := kept[:len(kept)-sha256.Size], kept[len(kept)-sha256.Size:]
	if got := sha256.Sum256(policy); !bytes.Equal(got[:], sum) {
		return nil, fmt.Errorf("%s: %w", file, errDamagedCache)
	}
	return policy, nil
}

// compile runs apparmor_parser on p's source and returns the binary policy
// the kernel loads. -K: the parser's own cache is not used (ours is keyed
// by content, not by file times); -S: the policy goes to stdout, not to
// the kernel.
func compile(ctx context.Context, parser string, p *Profile) ([]byte, error) {
	cmd := exec.CommandContext(ctx, parser, "--skip-cache", "--stdout", "--quiet")
	cmd.Stdin = strings.NewReader(p.Policy)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("compiling AppArmor profile %s with %s: %w: %s", p.Name, parser, err, strings.TrimSpace(stderr.String()))
	}
	if stdout.Len() == 0 {
		return nil, fmt.Errorf("compiling AppArmor profile %s with %s: no policy came out: %s", p.Name, parser, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// replace loads binary policy into the kernel, replacing a profile of the
// same name. The kernel takes a policy in a single write.
func replace(policy []byte) error {
	f, err := os.OpenFile(securityfs+"/.replace", os.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	_, err = f.Write(policy)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
		err = fmt.Errorf("%w (loading AppArmor policy needs CAP_MAC_ADMIN in the host's user namespace, unconfined)", err)
	}
	return err
}

// checkLoaded reads back the kernel's list: the profile must be there, in
// the mode the manifest asks for.
func checkLoaded(p *Profile) error {
	loaded, err := loadedProfiles()
	if err != nil {
		return fmt.Errorf("checking AppArmor profile %s: %w", p.Name, err)
	}
	mode, ok := loaded[p.Name]
	switch {
	case !ok:
		return fmt.Errorf("loading AppArmor profile %s: the kernel accepted it but does not list it", p.Name)
	case p.Mode != "" && mode != p.Mode:
		return fmt.Errorf("loading AppArmor profile %s: the kernel lists it in %s mode, not %s", p.Name, mode, p.Mode)
	}
	return nil
}

// cacheKey hashes what the compiled policy depends on: the profile, the
// parser binary, the parser's configuration and policy ABI files, and the
// kernel's AppArmor features (the parser compiles for them).
func cacheKey(policy, parser, features string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "safe-run apparmor cache 2\n")
	st, err := os.Stat(parser)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(h, "parser %s %d %d\n", parser, st.Size(), st.ModTime().UnixNano())
	for _, f := range []string{"/etc/apparmor/parser.conf", InstallDir + "/abi/3.0"} {
		data, err := os.ReadFile(f)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		fmt.Fprintf(h, "file %s %d\n%s", f, len(data), data)
	}
	if err := hashTree(h, features); err != nil {
		return "", fmt.Errorf("reading the kernel's AppArmor features: %w", err)
	}
	fmt.Fprintf(h, "policy %d\n%s", len(policy), policy)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// hashTree adds the names and contents of the files below root to h, in
// WalkDir's lexical order.
func hashTree(h hash.Hash, root string) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "feature %s %d\n%s", strings.TrimPrefix(p, root), len(data), data)
		return nil
	})
}

// findParser returns apparmor_parser, which lives in /usr/sbin and /sbin,
// often not on a user's PATH.
func findParser(explicit string) (string, error) {
	if explicit != "" {
		return explicit, nil
	}
	for _, c := range []string{"apparmor_parser", "/usr/sbin/apparmor_parser", "/sbin/apparmor_parser"} {
		if p, err := exec.LookPath(c); err == nil {
			return p, nil
		}
	}
	return "", errors.New("apparmor_parser not found, so the service's AppArmor profile cannot be loaded (install it: apt-get install apparmor)")
}

// checkInstalled is Load without root: the profile must be the one root
// installed in dir.
func checkInstalled(p *Profile, dir string) error {
	file := filepath.Join(dir, p.Name)
	data, err := os.ReadFile(file)
	what := "is not installed"
	if err == nil {
		if string(data) == p.Policy {
			return nil
		}
		what = "in " + file + " is not the one the manifest gives"
	}
	return fmt.Errorf("%w: %s %s; loading AppArmor profiles needs root, so install it once as root: safe-run apparmor install %s",
		ErrNotInstalled, p.Name, what, p.Manifest)
}

// InstallOptions say where Install puts a profile.
type InstallOptions struct {
	Dir    string // default InstallDir
	Parser string // default: as LoadOptions.Parser
	// Enabled: the host has AppArmor enabled, as package host probed it
	// (host.Facts.AppArmor.Enabled); without it Install refuses.
	Enabled bool
}

// Install writes p's source to opts.Dir/NAME, where AppArmor's boot
// service loads it, and loads it now (apparmor_parser -r -W, which also
// fills the system's own cache). Run as root, once per change of the
// manifest, it lets users without root start the service confined.
func Install(ctx context.Context, p *Profile, opts InstallOptions) (file string, err error) {
	if p == nil || p.Policy == "" {
		return "", errors.New("no generated AppArmor profile to install")
	}
	if !opts.Enabled {
		return "", fmt.Errorf("%w (install on a host with AppArmor enabled)", ErrNotEnabled)
	}
	dir := opts.Dir
	if dir == "" {
		dir = InstallDir
	}
	parser, err := findParser(opts.Parser)
	if err != nil {
		return "", err
	}
	file = filepath.Join(dir, p.Name)
	if err := atomicfile.Write(file, []byte(p.Policy), 0o644); err != nil {
		return "", fmt.Errorf("installing AppArmor profile %s: %w", p.Name, err)
	}
	out, err := exec.CommandContext(ctx, parser, "--replace", "--write-cache", "--quiet", file).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("loading AppArmor profile %s with %s: %w: %s", file, parser, err, strings.TrimSpace(string(out)))
	}
	return file, checkLoaded(p)
}
