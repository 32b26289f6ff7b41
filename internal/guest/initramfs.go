package guest

import (
	"bufio"
	"context"
	"debug/elf"
	"fmt"
	"os"
	"path"
	"strings"
)

// buildInitramfs writes the guest's root filesystem to file as an
// uncompressed newc cpio archive. Uncompressed because decompressing in the
// guest under TCG costs more than QEMU reading a few more megabytes.
func buildInitramfs(ctx context.Context, file string, k Kernel, t tools, opts Options, nonce string) error {
	root := tree{}
	for _, d := range []string{"/bin", "/sbin", "/usr/bin", "/usr/sbin", "/etc", "/proc", "/sys", "/dev", "/run", "/var", "/lib/modules"} {
		root.dir(d, 0o755)
	}
	root.dir("/root", 0o700)
	root.dir("/tmp", 0o777|os.ModeSticky)
	// The kernel opens /dev/console for init's stdio before init can mount
	// devtmpfs; without this node init runs with no console at all.
	root.set("/dev/console", node{kind: kindCharDev, perm: 0o600, major: 5, minor: 1})
	root.data("/init", 0o755, initScript)
	root.data("/etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"))
	root.data("/etc/group", 0o644, []byte("root:x:0:\nnogroup:x:65534:\n"))

	if err := root.hostFile("/bin/busybox", t.busybox); err != nil {
		return err
	}
	applets, err := runOutput(ctx, "", t.busybox, "--list-full")
	if err != nil {
		return err
	}
	for a := range strings.FieldsSeq(applets) {
		if p := "/" + a; p != "/bin/busybox" && p != "/linuxrc" {
			root.symlink(p, "/bin/busybox")
		}
	}

	if err := addDynamic(ctx, root, "/sbin/apparmor_parser", t.apparmor); err != nil {
		return err
	}
	// What apparmor_parser reads besides the profile: the policy ABIs
	// profiles name (abi <abi/3.0>), the includes they use, and Debian's
	// parser.conf, which pins the feature set to
	// /usr/share/apparmor-features so that policy compiles the same on
	// every kernel. The guest parses as a Debian 12 server would.
	for _, p := range []string{"/etc/apparmor/parser.conf", "/etc/apparmor.d/abi", "/etc/apparmor.d/tunables", "/etc/apparmor.d/abstractions", "/usr/share/apparmor-features"} {
		if _, err := os.Stat(p); err == nil {
			if err := root.hostPath(p, p); err != nil {
				return err
			}
		}
	}

	ix, err := loadModuleIndex(k.Modules)
	if err != nil {
		return err
	}
	mods, err := ix.resolve(ctx, t.busybox, append(append([]string{}, defaultModules...), opts.Modules...))
	if err != nil {
		return err
	}
	var order strings.Builder
	for _, m := range mods {
		root.data("/lib/modules/"+m.name+".ko", 0o644, m.data)
		fmt.Fprintln(&order, m.name)
	}
	root.data("/etc/safe-run-guest/modules", 0o644, []byte(order.String()))
	root.data("/etc/safe-run-guest/nonce", 0o644, []byte(nonce+"\n"))
	root.data("/etc/safe-run-guest/script", 0o644, []byte(opts.Script))

	for gp, hp := range opts.Files {
		p, err := cleanGuestPath(gp)
		if err != nil {
			return err
		}
		if err := root.hostPath(p, hp); err != nil {
			return fmt.Errorf("Options.Files[%q]: %w", gp, err)
		}
	}

	for gp, hp := range opts.Programs {
		p, err := cleanGuestPath(gp)
		if err != nil {
			return err
		}
		if err := addDynamic(ctx, root, p, hp); err != nil {
			return fmt.Errorf("Options.Programs[%q]: %w", gp, err)
		}
	}

	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	if err := root.write(w); err != nil {
		f.Close()
		return err
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// addDynamic puts the dynamically linked program src at p, with the shared
// libraries and loader ldd lists for it, at the paths ldd names.
func addDynamic(ctx context.Context, root tree, p, src string) error {
	if err := root.hostFile(p, src); err != nil {
		return err
	}
	out, err := runOutput(ctx, "", "ldd", src)
	if err != nil {
		return fmt.Errorf("listing the libraries of %s: %w", src, err)
	}
	libs, err := parseLdd(out)
	if err != nil {
		return fmt.Errorf("ldd %s: %w", src, err)
	}
	for _, l := range libs {
		if err := root.hostFile(l, l); err != nil {
			return err
		}
	}
	return nil
}

// parseLdd returns the absolute library paths in ldd's output, which has one
// of these forms per line:
//
//	linux-vdso.so.1 (0x00007ffd...)              (in the kernel: skipped)
//	libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)
//	/lib64/ld-linux-x86-64.so.2 (0x...)
//	libfoo.so.1 => not found
func parseLdd(out string) ([]string, error) {
	var libs []string
	for line := range strings.Lines(out) {
		line = strings.TrimSpace(line)
		if name, target, ok := strings.Cut(line, " => "); ok {
			if strings.HasPrefix(target, "not found") {
				return nil, fmt.Errorf("library %s not found", name)
			}
			line = target
		}
		if f := strings.Fields(line); len(f) > 0 && path.IsAbs(f[0]) {
			libs = append(libs, f[0])
		}
	}
	return libs, nil
}

// isStatic reports whether the ELF program at p needs no dynamic loader.
func isStatic(p string) (bool, error) {
	f, err := elf.Open(p)
	if err != nil {
		return false, err
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return false, nil
		}
	}
	return true, nil
}
