package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Binaries are safe-run and the helpers it ships, built for a test.
type Binaries struct {
	SafeRun, Tools, Init, Janitor string
}

// ModuleRoot is the directory of safe-run's go.mod.
func ModuleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out))), nil
}

// Build builds safe-run and the binaries it ships into dir/bin as `make
// build` does: safe-run (static) and safe-run-tools with cgo and the
// seccomp tag, the init and the janitor static from C against musl.
func Build(dir string) (Binaries, error) {
	root, err := ModuleRoot()
	if err != nil {
		return Binaries{}, err
	}
	bin := filepath.Join(dir, "bin")
	b := Binaries{SafeRun: filepath.Join(bin, "safe-run"), Tools: filepath.Join(bin, "safe-run-tools"),
		Init: filepath.Join(bin, "safe-run-init"), Janitor: filepath.Join(bin, "safe-run-janitor")}
	steps := []struct {
		cgo  string
		args []string
	}{
		{"1", []string{"go", "build", "-trimpath", "-tags", "seccomp netgo osusergo", "-ldflags", "-extldflags -static", "-o", b.SafeRun, "./cmd/safe-run"}},
		{"1", []string{"go", "build", "-trimpath", "-tags", "seccomp", "-o", b.Tools, "./cmd/safe-run-tools"}},
		{"", []string{"musl-gcc", "-static", "-Os", "-o", b.Init, "cmd/safe-run-init/safe-run-init.c"}},
		{"", []string{"musl-gcc", "-static", "-Os", "-o", b.Janitor, "cmd/safe-run-janitor/safe-run-janitor.c"}},
	}
	for _, s := range steps {
		if err := run(root, s.cgo, s.args...); err != nil {
			return Binaries{}, err
		}
	}
	// Every component must be traversable by a container's mapped root.
	return b, os.Chmod(bin, 0o755)
}

// ExampleRootfs builds the example image's root filesystem into dir, as
// `make example` does.
func ExampleRootfs(dir string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	confinement := filepath.Join(dir, "confinement")
	rootfs := filepath.Join(dir, "rootfs")
	if err := StaticGo(confinement, "./example/confinement"); err != nil {
		return "", err
	}
	return rootfs, run(root, "", "./example/mkrootfs.sh", rootfs, confinement)
}

// StaticGo builds the module's package pkg ("./profiles/testdata/sysprobe")
// into out without cgo: a static program that runs in any container.
func StaticGo(out, pkg string) error {
	root, err := ModuleRoot()
	if err != nil {
		return err
	}
	return run(root, "0", "go", "build", "-o", out, pkg)
}

func run(dir, cgo string, args ...string) error {
	c := exec.Command(args[0], args[1:]...)
	c.Dir = dir
	c.Env = os.Environ()
	if cgo != "" {
		c.Env = append(c.Env, "CGO_ENABLED="+cgo)
	}
	if out, err := c.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// LinkedPackages lists every package the package in the current directory
// links, as `make build` builds it (the seccomp tag).
func LinkedPackages(t testing.TB) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-tags", "seccomp", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	return strings.Fields(string(out))
}

// PureImports fails t when the package in the current directory, or
// anything it links, imports one of forbidden (a package, or a prefix
// ending in "/"), or when its own files import one of forbiddenDirect.
// The second list is for packages a dependency may link for parsing
// (go-containerregistry's name uses net.ParseIP) but the package itself
// must not call. It lists for every GOOS safe-run's pure packages promise
// to build on, so a Linux-only import behind a build tag shows too.
func PureImports(t testing.TB, forbidden, forbiddenDirect []string) {
	t.Helper()
	matches := func(pkg string, list []string) bool {
		for _, f := range list {
			if pkg == f || (strings.HasSuffix(f, "/") && strings.HasPrefix(pkg, f)) {
				return true
			}
		}
		return false
	}
	for _, goos := range []string{"linux", "darwin", "windows"} {
		c := exec.Command("go", "list", "-tags", "seccomp", "-deps", "-f", "{{.ImportPath}}:{{join .Imports \" \"}}", ".")
		c.Env = append(os.Environ(), "GOOS="+goos, "CGO_ENABLED=0")
		out, err := c.CombinedOutput()
		if err != nil {
			t.Fatalf("GOOS=%s go list -deps: %v\n%s", goos, err, out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		var bad []string
		for _, line := range lines {
			pkg, _, _ := strings.Cut(line, ":")
			if matches(pkg, forbidden) {
				bad = append(bad, pkg)
			}
		}
		// go list -deps prints the package itself last.
		self, imports, _ := strings.Cut(lines[len(lines)-1], ":")
		for _, imp := range strings.Fields(imports) {
			if matches(imp, forbiddenDirect) {
				bad = append(bad, self+" imports "+imp)
			}
		}
		if len(bad) > 0 {
			t.Errorf("GOOS=%s: %s links what a pure package must not:\n%s", goos, self, strings.Join(bad, "\n"))
		}
	}
}
