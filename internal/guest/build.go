package guest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// BuildStatic builds the Go package pkg (an import path, or a directory
// relative to the working directory) into out as a fully static binary, so
// that it runs in the guest, which has no libc of its own beyond what
// apparmor_parser needs.
//
// cgo stays on, because safe-run needs it for libseccomp (build tag
// "seccomp"); the external linker gets -static and so links
// /usr/lib/x86_64-linux-gnu/libseccomp.a from libseccomp-dev. The tags
// netgo and osusergo are always added: they replace glibc's resolver and
// user lookup, which cannot work from a static binary (glibc loads NSS
// modules dynamically). The result is checked to have no ELF interpreter.
func BuildStatic(ctx context.Context, pkg, out string, tags ...string) error {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return &MissingError{What: "the go command", Why: "to build " + pkg, Fix: "put the Go toolchain's bin directory on PATH", Err: err}
	}
	cmd := exec.CommandContext(ctx, goTool, "build",
		"-tags", strings.Join(append([]string{"netgo", "osusergo"}, tags...), ","),
		"-ldflags", "-extldflags -static",
		"-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	var output bytes.Buffer
	cmd.Stdout = &output
	cmd.Stderr = &output
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s(a static cgo build needs gcc and the static C libraries, e.g. apt-get install -y gcc libseccomp-dev)", pkg, err, output.String())
	}
	static, err := isStatic(out)
	if err != nil {
		return fmt.Errorf("checking %s: %w", out, err)
	}
	if !static {
		return fmt.Errorf("go build %s produced a dynamically linked %s; does a dependency's #cgo directive override -static?", pkg, out)
	}
	return nil
}

// Check reports, without booting, whether this host has the programs Run
// needs: QEMU, a static busybox and apparmor_parser. The kernel package is
// not checked, since that would download it. The error matches
// ErrUnavailable and joins every missing piece.
func Check() error {
	var errs []error
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		errs = append(errs, missingQEMU(err))
	}
	if _, err := findTools(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
