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
	for p := path; p != ""; p = parentPath(p) {
		if fe.paths[p] {
			return
		}
	}
	if fe.paths == nil {
		fe.paths = map[string]bool{}
	}
	fe.paths[path] = true
	fe.errs = append(fe.errs, &FieldError{
		File: fe.file,
		Line: fe.lines.lineOf(path),
		Path: path,
		Msg:  fmt.Sprintf(format, args...),
	})
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
