package landlock

import (
	"fmt"
	"path"
	"strings"
)

// Access is one access a service made, as a recording saw it: file system
// rights on Path, a path inside the container, or network rights on Port
// (with Path empty).
type Access struct {
	Path   string
	Port   uint16
	Rights uint64 // FS* rights for a path, Net* rights for a port
}

// Denies returns the rights of a that r refuses: those it handles that no
// rule grants on a.Path or on a directory above it (Landlock grants by
// file hierarchy: a right on a directory holds for everything beneath),
// or on a.Port. Paths are compared as written: a recording sees each as
// the kernel resolved it, with no symbolic link left in it.
func (r *Ruleset) Denies(a Access) uint64 {
	if r == nil {
		return 0
	}
	if a.Path == "" {
		handled := a.Rights & r.HandledNet
		for _, p := range r.Ports {
			if p.Port == a.Port {
				handled &^= p.Access
			}
		}
		return handled
	}
	p := path.Clean("/" + a.Path)
	handled := a.Rights & r.HandledFS
	for _, rule := range r.Paths {
		if rule.Path == "/" || p == rule.Path || strings.HasPrefix(p, rule.Path+"/") {
			handled &^= rule.Access
		}
	}
	return handled
}

// Denial says in words what r refuses of a, e.g. "write-file /dev/x" or
// "bind-tcp port 9999"; "" when it refuses nothing.
func (r *Ruleset) Denial(a Access) string {
	d := r.Denies(a)
	switch {
	case d == 0:
		return ""
	case a.Path == "":
		return fmt.Sprintf("%s port %d", names(d, netNames), a.Port)
	}
	return names(d, fsNames) + " " + a.Path
}
