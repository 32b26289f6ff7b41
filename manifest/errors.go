package manifest

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
)

// FieldError is one problem in a manifest, located by file, line and key
// path. Line is 0 when the problem is not tied to a line (a missing key).
type FieldError struct {
	File string
	Line int
	Path string // key path as written in TOML: resources.memory, mounts[1].target
	Msg  string // what is wrong, then the fix in parentheses
}

func (e *FieldError) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc = fmt.Sprintf("%s:%d", e.File, e.Line)
	}
	if e.Path == "" {
		return loc + ": " + e.Msg
	}
	return loc + ": " + e.Path + ": " + e.Msg
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
	for p := e.Path; p != ""; p = parentPath(p) {
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
