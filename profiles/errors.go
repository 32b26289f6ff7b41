package profiles

import "fmt"

// FieldError is a mistake in a custom seccomp profile, at its place in the
// file. It prints as
//
//	web.json:12:5: syscalls[3].action: "SCMP_ACT_FOO" is not a seccomp action (use ...)
//
// Loading a profile reports all of them at once, joined with errors.Join in
// file order.
type FieldError struct {
	File   string
	Line   int    // 1-based
	Column int    // 1-based, in bytes
	Path   string // the key path, as in syscalls[3].action; empty for the file as a whole
	Msg    string
}

func (e *FieldError) Error() string {
	if e.Path == "" {
		return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Column, e.Msg)
	}
	return fmt.Sprintf("%s:%d:%d: %s: %s", e.File, e.Line, e.Column, e.Path, e.Msg)
}
