package manifest

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// FieldError is one problem in a file safe-run reads (a manifest, a
// custom seccomp profile), located by file, line and key path. It prints
// as
//
//	service.toml:12: resources.memory: "12X" is not a size (use e.g. 512M)
//	web.json:12:5: syscalls[3].action: "SCMP_ACT_FOO" is not a seccomp action (use ...)
//
// Line is 0 when the problem is not tied to a line (a missing key); Column
// is 0 where only the line is known (TOML, whose parser gives no columns).
type FieldError struct {
	File   string
	Line   int
	Column int    // 1-based, in bytes
	Path   string // key path as written: resources.memory, mounts[1].target, syscalls[3].action
	Msg    string // what is wrong, then the fix in parentheses
	Err    error  // the cause, when Msg reports one (for errors.Is and errors.As); its text is in Msg
}

func (e *FieldError) Error() string {
	loc := e.File
	switch {
	case e.Line > 0 && e.Column > 0:
		loc = fmt.Sprintf("%s:%d:%d", e.File, e.Line, e.Column)
	case e.Line > 0:
		loc = fmt.Sprintf("%s:%d", e.File, e.Line)
	}
	if e.Path == "" {
		return loc + ": " + e.Msg
	}
	return loc + ": " + e.Path + ": " + e.Msg
}

func (e *FieldError) Unwrap() error { return e.Err }

// ParentPath strips the last key or index from a key path:
// mounts[1].target, mounts[1], mounts; a quoted key (env."A.B") is one key.
func ParentPath(path string) string {
	if strings.HasSuffix(path, "]") {
		if i := strings.LastIndexByte(path, '['); i >= 0 {
			return path[:i]
		}
	}
	if i := strings.LastIndexByte(path, '.'); i >= 0 && !strings.HasSuffix(path, `"`) {
		return path[:i]
	}
	if strings.HasSuffix(path, `"`) {
		if i := strings.LastIndex(path, `."`); i >= 0 {
			return path[:i]
		}
	}
	return ""
}

// fieldErrors collects the problems of one file.
type fieldErrors struct {
	file  string
	lines lineIndex
	errs  []*FieldError
	paths map[string]bool // paths in errs: a lookup, not a scan of errs per add
}

// add records a problem at path; the line comes from the key index, falling
// back to the nearest enclosing key that has one. A path that already has a
// problem (a value that did not decode), or lies below one, gets no second
// one: mounts = ["/tmp"] is one mistake, not also a missing type and target.
func (fe *fieldErrors) add(path, format string, args ...any) {
	fe.push(&FieldError{
		File: fe.file,
		Line: fe.lines.lineOf(path),
		Path: path,
		Msg:  fmt.Sprintf(format, args...),
	})
}

// push records e unless its path, or a path above it, has a problem.
func (fe *fieldErrors) push(e *FieldError) {
	for p := e.Path; p != ""; p = ParentPath(p) {
		if fe.paths[p] {
			return
		}
	}
	if fe.paths == nil {
		fe.paths = map[string]bool{}
	}
	if e.Path != "" {
		fe.paths[e.Path] = true
	}
	fe.errs = append(fe.errs, e)
}

// Merge joins the problems of one manifest found by several stages (its
// own validation, the policy, the host paths), so that a run reports them
// all at once: a key that already has a problem, or lies below one, gets
// no second one (a memory that did not parse is not also "missing"), and
// all come sorted by line. Errors without a key follow, as they are.
func Merge(errs ...error) error {
	fe := &fieldErrors{}
	var other []error
	var walk func(error)
	walk = func(err error) {
		switch e := err.(type) {
		case nil:
		case *FieldError:
			fe.push(e)
		case interface{ Unwrap() []error }:
			for _, inner := range e.Unwrap() {
				walk(inner)
			}
		default:
			other = append(other, err)
		}
	}
	for _, err := range errs {
		walk(err)
	}
	return errors.Join(fe.err(), errors.Join(other...))
}

// err returns all problems sorted by line (missing keys, line 0, last), or nil.
func (fe *fieldErrors) err() error {
	if len(fe.errs) == 0 {
		return nil
	}
	slices.SortStableFunc(fe.errs, func(a, b *FieldError) int {
		la, lb := a.Line, b.Line
		if la == 0 {
			la = 1 << 30
		}
		if lb == 0 {
			lb = 1 << 30
		}
		return cmp.Compare(la, lb)
	})
	errs := make([]error, len(fe.errs))
	for i, e := range fe.errs {
		errs[i] = e
	}
	return errors.Join(errs...)
}

// FieldErrors returns the individual problems inside an error returned by
// Load or Parse.
func FieldErrors(err error) []*FieldError {
	var out []*FieldError
	var walk func(error)
	walk = func(err error) {
		if fe, ok := err.(*FieldError); ok {
			out = append(out, fe)
			return
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
		}
	}
	walk(err)
	return out
}
