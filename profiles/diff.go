package profiles

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/opencontainers/runtime-spec/specs-go"
)

// Diff lists what changes from profile a to profile b: the default
// action, the architectures and flags, and every call the two decide
// differently, as lines such as
//
//   - getrandom: SCMP_ACT_ALLOW
//   - mlock: SCMP_ACT_ALLOW
//     ~ socket: SCMP_ACT_ALLOW if 0 SCMP_CMP_EQ 0xa 0x0 -> SCMP_ACT_ALLOW
//
// "+" is a call b lets through and a does not, "-" the reverse, "~" a
// call both let through, or both deny, differently. Calls are compared as
// runc loads them: a rule that repeats the default action counts for
// nothing, and names the filter's architectures lack are ignored. A nil
// profile is unconfined. Equal profiles give no lines.
func Diff(a, b *specs.LinuxSeccomp) []string {
	unconfined := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow}
	if a == nil {
		a = unconfined
	}
	if b == nil {
		b = unconfined
	}
	var out []string
	if da, db := effectiveAction(a.DefaultAction, a.DefaultErrnoRet), effectiveAction(b.DefaultAction, b.DefaultErrnoRet); da != db {
		out = append(out, fmt.Sprintf("default action: %s -> %s", da, db))
	}
	if !slices.Equal(a.Architectures, b.Architectures) {
		out = append(out, fmt.Sprintf("architectures: %s -> %s", words(a.Architectures), words(b.Architectures)))
	}
	if fa, fb := slices.Sorted(slices.Values(a.Flags)), slices.Sorted(slices.Values(b.Flags)); !slices.Equal(fa, fb) {
		out = append(out, fmt.Sprintf("flags: %s -> %s", words(fa), words(fb)))
	}

	known := syscallSet(append(slices.Clone(a.Architectures), b.Architectures...)...)
	da, db := decisions(a, known), decisions(b, known)
	names := slices.Sorted(maps.Keys(da))
	for n := range db {
		if _, ok := da[n]; !ok {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	for _, n := range names {
		x, y := orDefault(da[n], a), orDefault(db[n], b)
		switch {
		case x == y:
		case !lets(x) && lets(y):
			out = append(out, fmt.Sprintf("+ %s: %s", n, y))
		case lets(x) && !lets(y):
			out = append(out, fmt.Sprintf("- %s: %s", n, x))
		default:
			out = append(out, fmt.Sprintf("~ %s: %s -> %s", n, x, y))
		}
	}
	return out
}

// orDefault is a call's decision, or the default action's when no rule
// decides it.
func orDefault(d string, s *specs.LinuxSeccomp) string {
	if d == "" {
		return effectiveAction(s.DefaultAction, s.DefaultErrnoRet)
	}
	return d
}

// lets reports whether a decision lets the call through, always or
// under some argument tests.
func lets(d string) bool {
	return strings.Contains(d, string(specs.ActAllow)) || strings.Contains(d, string(specs.ActLog)) ||
		strings.Contains(d, string(specs.ActNotify))
}

func words[T ~string](list []T) string {
	if len(list) == 0 {
		return "(none)"
	}
	s := make([]string, len(list))
	for i, w := range list {
		s[i] = string(w)
	}
	return strings.Join(s, " ")
}

// decisions maps every call s names to what the loaded filter does with
// it, as a string that compares equal when the outcome is the same:
// "SCMP_ACT_ALLOW", "SCMP_ACT_ALLOW if 0 SCMP_CMP_MASKED_EQ 0x7e020000 0x0",
// "SCMP_ACT_ALLOW if arg0 in [0 1 2 7]", "SCMP_ACT_ERRNO(38)". Rules that
// repeat the default action are left out, as runc skips them, and so are
// conditional allows of a call that is allowed outright. A call whose
// rules each test one argument, the same one, for values few enough to
// list, is described by the values they let through, whatever the tests
// (see mergeValueTests). Calls not in only, if only is not nil, are
// skipped.
func decisions(s *specs.LinuxSeccomp, only map[string]bool) map[string]string {
	def := effectiveAction(s.DefaultAction, s.DefaultErrnoRet)
	rules := map[string]map[string]bool{}
	type valueTests struct {
		action string
		index  uint
		values map[uint64]bool
		ok     bool
	}
	tests := map[string]*valueTests{}
	for _, sc := range s.Syscalls {
		action := effectiveAction(sc.Action, sc.ErrnoRet)
		if action == def {
			continue
		}
		for _, n := range sc.Names {
			if only != nil && !only[n] {
				continue
			}
			if rules[n] == nil {
				rules[n] = map[string]bool{}
			}
			for _, k := range ruleKeys(n, sc.Args) {
				test := strings.TrimPrefix(k, n+": ")
				if test == "" {
					rules[n][action] = true
				} else {
					rules[n][action+" if "+test] = true
				}
			}
			if len(sc.Args) == 0 {
				continue
			}
			vt := tests[n]
			if vt == nil {
				vt = &valueTests{action: action, index: sc.Args[0].Index, values: map[uint64]bool{}, ok: true}
				tests[n] = vt
			}
			values, ok := valueSet(sc.Args[0])
			vt.ok = vt.ok && ok && len(sc.Args) == 1 && vt.action == action && vt.index == sc.Args[0].Index
			for _, v := range values {
				vt.values[v] = true
			}
		}
	}
	out := map[string]string{}
	for n, set := range rules {
		var list []string
		if vt := tests[n]; vt != nil && vt.ok {
			for r := range set {
				if !strings.Contains(r, " if ") {
					list = append(list, r)
				}
			}
			if !set[vt.action] {
				var vs []string
				for _, v := range slices.Sorted(maps.Keys(vt.values)) {
					if v < 4096 {
						vs = append(vs, fmt.Sprint(v))
					} else {
						vs = append(vs, fmt.Sprintf("%#x", v))
					}
				}
				list = append(list, fmt.Sprintf("%s if arg%d in [%s]", vt.action, vt.index, strings.Join(vs, " ")))
			}
		} else {
			for r := range set {
				if strings.HasPrefix(r, string(specs.ActAllow)+" if ") && set[string(specs.ActAllow)] {
					continue
				}
				list = append(list, r)
			}
		}
		slices.Sort(list)
		out[n] = strings.Join(list, " | ")
	}
	return out
}

// orDenied names the decision for a call no rule mentions.
func orDenied(d string) string {
	if d == "" {
		return "denied (EPERM)"
	}
	return d
}
