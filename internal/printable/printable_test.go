package printable

import "testing"

func TestString(t *testing.T) {
	for in, want := range map[string]string{
		"plain /srv/web":        "plain /srv/web",
		"\x1b]0;TITLE\a":        `\x1b]0;TITLE\a`,
		"a\nb\tc":               `a\nb\tc`,
		"rtl \u202e txt":        `rtl \u202e txt`,
		"csi \x9b2J":            `csi \x9b2J`,
		"ok \uFFFD replacement": "ok \uFFFD replacement",
	} {
		if got := String(in); got != want {
			t.Errorf("String(%q) = %q, want %q", in, got, want)
		}
	}
	if got, want := Lines("one \x1b[2J\ntwo"), "one \\x1b[2J\ntwo"; got != want {
		t.Errorf("Lines = %q, want %q", got, want)
	}
}
