package guest

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// defaultModules are loaded in every guest. Of what a container needs today,
// Debian builds everything into the kernel (user, PID, mount and network
// namespaces, cgroup v2 and all its controllers, seccomp, AppArmor, tmpfs,
// devpts; see boot/config-* in the package) except overlayfs
// (CONFIG_OVERLAY_FS=m). Bridge networking, when it comes, needs veth and
// bridge too: tests ask for them with Options.Modules.
var defaultModules = []string{"overlay"}

// module is one kernel module ready for the initramfs.
type module struct {
	name string
	data []byte // uncompressed .ko
}

// moduleIndex finds the modules of one kernel release by name.
type moduleIndex struct {
	dir     string            // lib/modules/<release>
	files   map[string]string // canonical name -> path
	builtin map[string]bool
}

// modName canonicalises a module name as the kernel does: "-" and "_" are
// the same character in module names.
func modName(s string) string { return strings.ReplaceAll(s, "-", "_") }

var moduleExts = []string{".ko", ".ko.xz", ".ko.zst"}

func loadModuleIndex(dir string) (*moduleIndex, error) {
	ix := &moduleIndex{dir: dir, files: map[string]string{}, builtin: map[string]bool{}}
	err := filepath.WalkDir(filepath.Join(dir, "kernel"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		for _, ext := range moduleExts {
			if base := d.Name(); !d.IsDir() && strings.HasSuffix(base, ext) {
				ix.files[modName(strings.TrimSuffix(base, ext))] = p
				break
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("indexing kernel modules: %w", err)
	}
	// modules.builtin lists kernel/fs/foo/foo.ko for what is built in.
	if b, err := os.ReadFile(filepath.Join(dir, "modules.builtin")); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			ix.builtin[modName(strings.TrimSuffix(filepath.Base(sc.Text()), ".ko"))] = true
		}
	}
	return ix, nil
}

// resolve returns the named modules and everything they depend on, each
// once, dependencies first: the order insmod needs, since busybox insmod
// does not resolve dependencies itself. Built-in names are skipped.
//
// Dependencies come from the "depends=" field of each module's .modinfo
// section rather than from modules.dep, because Debian's package does not
// ship modules.dep: depmod writes it at install time.
func (ix *moduleIndex) resolve(ctx context.Context, busybox string, names []string) ([]module, error) {
	var out []module
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name string, chain []string) error
	visit = func(name string, chain []string) error {
		name = modName(name)
		switch state[name] {
		case 1:
			return fmt.Errorf("kernel modules depend on each other in a cycle: %s", strings.Join(append(chain, name), " -> "))
		case 2:
			return nil
		}
		p, ok := ix.files[name]
		if !ok {
			if ix.builtin[name] {
				state[name] = 2
				return nil
			}
			return fmt.Errorf("kernel module %q is neither built into the kernel nor under %s (look for its name with `find %s -name '*.ko*'`)", name, ix.dir, ix.dir)
		}
		state[name] = 1
		data, err := readModule(ctx, busybox, p)
		if err != nil {
			return err
		}
		deps, err := modDepends(data)
		if err != nil {
			return fmt.Errorf("reading %s: %w", p, err)
		}
		for _, d := range deps {
			if err := visit(d, append(chain, name)); err != nil {
				return err
			}
		}
		state[name] = 2
		out = append(out, module{name: name, data: data})
		return nil
	}
	for _, n := range names {
		if err := visit(n, nil); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// readModule returns the uncompressed module at p. Compressed modules are
// decompressed here on the host so that the guest needs nothing but plain
// insmod: whether busybox insmod reads compressed modules depends on how it
// was built. Debian's 6.1 modules are plain .ko (CONFIG_MODULE_COMPRESS_NONE);
// later Debian kernels compress them.
func readModule(ctx context.Context, busybox, p string) ([]byte, error) {
	var cmd *exec.Cmd
	switch {
	case strings.HasSuffix(p, ".ko"):
		return os.ReadFile(p)
	case strings.HasSuffix(p, ".ko.xz"):
		// busybox-static is required anyway. Its unxz reads what kbuild
		// writes for modules (xz --check=crc32 --lzma2=dict=1MiB, no BCJ
		// filter, unlike the kernel image).
		cmd = exec.CommandContext(ctx, busybox, "xz", "-dc", p)
	case strings.HasSuffix(p, ".ko.zst"):
		cmd = exec.CommandContext(ctx, "zstd", "-dcq", p)
	default:
		return nil, fmt.Errorf("%s: not a kernel module", p)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if errors.Is(err, exec.ErrNotFound) {
		return nil, &MissingError{What: "zstd", Why: "to decompress " + filepath.Base(p), Fix: "apt-get install -y zstd"}
	}
	if err != nil {
		return nil, fmt.Errorf("decompressing %s: %w: %s", p, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

// modDepends returns the "depends=" list from a module's .modinfo section,
// which is NUL-separated key=value strings (include/linux/moduleparam.h).
func modDepends(ko []byte) ([]string, error) {
	f, err := elf.NewFile(bytes.NewReader(ko))
	if err != nil {
		return nil, err
	}
	s := f.Section(".modinfo")
	if s == nil {
		return nil, errors.New("no .modinfo section: not a kernel module")
	}
	info, err := s.Data()
	if err != nil {
		return nil, err
	}
	for _, kv := range bytes.Split(info, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			if len(v) == 0 {
				return nil, nil
			}
			return strings.Split(string(v), ","), nil
		}
	}
	return nil, nil
}
