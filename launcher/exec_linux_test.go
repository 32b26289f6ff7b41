package launcher

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

// TestExecFeed: exec's command gets the service's filter and ruleset from
// whichever loaded them, and is refused wherever it would get less.
func TestExecFeed(t *testing.T) {
	ne := binary.NativeEndian
	program := ne.AppendUint32(ne.AppendUint32(nil, 0), 1) // flags 0, one instruction
	program = append(program, 6, 0, 0, 0, 0, 0, 0xff, 0x7f)
	empty := ne.AppendUint64(nil, 0)
	ruleset := ne.AppendUint32(nil, 0) // none
	link := func(prog []byte, err error) *initLink {
		l := &initLink{fed: make(chan struct{}), program: prog, programErr: err, landlock: ruleset}
		close(l.fed)
		return l
	}
	for _, tc := range []struct {
		name                          string
		filtered, configHolds, landlk bool
		init                          *initLink
		feed                          []byte // nil: no safe-run-init
		err                           string
	}{
		{"init loaded the filter", true, false, true, link(program, nil), append(program, ruleset...), ""},
		{"libcontainer loads it, init the ruleset", true, true, true, link(empty, nil), append(empty, ruleset...), ""},
		{"no filter at all", false, false, false, link(empty, nil), append(empty, ruleset...), ""},
		{"the program went missing", true, false, true, link(empty, nil), nil, "seccomp program is not at hand"},
		{"the program never compiled", true, false, true, link(nil, errors.New("libseccomp")), nil, "the service's seccomp program: libseccomp"},
		{"init = false, libcontainer loads it", true, true, false, nil, nil, ""},
		{"init = false, filter taken", true, false, false, nil, nil, "seccomp filter is not at hand"},
		{"init = false, a ruleset", true, true, true, nil, nil, "Landlock ruleset needs safe-run-init"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			feed, err := execFeed(tc.filtered, tc.configHolds, tc.landlk, tc.init)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || string(feed) != string(tc.feed) || (feed == nil) != (tc.feed == nil) {
				t.Errorf("feed %x, %v; want %x", feed, err, tc.feed)
			}
		})
	}
}

func TestCommandName(t *testing.T) {
	for in, want := range map[string]string{"/bin/sh": "/bin/sh", "sh\nsafe-run: web: stopped": `"sh\nsafe-run: web: stopped"`, "x\x1b[2J": `"x\x1b[2J"`} {
		if got := commandName(in); got != want {
			t.Errorf("commandName(%q) = %s, want %s", in, got, want)
		}
	}
}
