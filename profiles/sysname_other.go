//go:build !(linux && cgo && seccomp)

package profiles

// syscallName needs libseccomp: safe-run built without it (no cgo, or
// without -tags seccomp) cannot apply a filter either.
func syscallName(arch uint32, nr int) string { return "" }

const namesKnown = false
