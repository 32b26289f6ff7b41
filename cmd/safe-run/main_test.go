package main

import "testing"

// TestRunArgs: safe-run runs a start itself only when its arguments cannot
// mean anything else; the rest goes to safe-run-tools unchanged.
func TestRunArgs(t *testing.T) {
	for _, tc := range []struct {
		args         []string
		path         string
		quiet, debug bool
	}{
		{[]string{"web.toml"}, "web.toml", false, false},
		{[]string{"-q", "/etc/safe-run/web.toml"}, "/etc/safe-run/web.toml", true, false},
		{[]string{"web.toml", "--quiet"}, "web.toml", true, false},
		{[]string{"run", "web"}, "web", false, false},
		{[]string{"run", "-q", "check"}, "check", true, false},
		{[]string{"--debug", "web.toml"}, "web.toml", false, true},
	} {
		path, f, ok := runArgs(tc.args)
		if !ok || path != tc.path || f.quiet != tc.quiet || f.debug != tc.debug {
			t.Errorf("%q: %q %+v %v, want %q quiet %v debug %v", tc.args, path, f, ok, tc.path, tc.quiet, tc.debug)
		}
	}
	for _, args := range [][]string{
		nil, {"run"}, {"check"}, {"version"}, {"web"}, {"--help"}, {"-h", "web.toml"},
		{"web.toml", "other.toml"}, {"run", "--quiet=false", "web.toml"}, {"spec", "web.toml"},
		{"-q"}, {"run", "--", "web.toml"},
	} {
		if path, _, ok := runArgs(args); ok {
			t.Errorf("%q: runs %q, want it left to safe-run-tools", args, path)
		}
	}
}
