//go:build !(linux && cgo && seccomp)

package profiles

import "testing"

func TestSyscallTables(t *testing.T) {
	t.Skip("checking the tables against libseccomp needs cgo, libseccomp and go test -tags seccomp")
}

func TestProfilesBuild(t *testing.T) {
	t.Skip("building filters with libseccomp needs cgo, libseccomp and go test -tags seccomp")
}
