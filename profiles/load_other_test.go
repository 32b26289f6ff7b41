//go:build !(linux && cgo && seccomp)

package profiles

import (
	"fmt"
	"os"
	"testing"
)

func runChild(string) int {
	fmt.Fprintln(os.Stderr, "the test binary was built without -tags seccomp and cannot load a filter")
	return 2
}

func TestStrictProfileRuns(t *testing.T) {
	skipOrFail(t, "loading a filter needs cgo, libseccomp and go test -tags seccomp")
}
