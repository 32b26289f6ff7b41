// Package printable escapes what a terminal would act on rather than show,
// for every place safe-run prints what others wrote: a manifest's command
// and paths, a container's environment, an image's config.
package printable

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// String escapes C0 and C1 control characters, DEL, bytes that are not
// UTF-8 and the Unicode controls that reorder text (bidi overrides, as in
// "Trojan Source", CVE-2021-42574). They appear as Go escapes (\x1b, \n,
// \u202e); everything else is kept.
func String(s string) string {
	if !strings.ContainsFunc(s, unprintable) {
		return s
	}
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD"):
			// A byte that is not UTF-8: 0x9b is CSI where a
			// terminal reads 8-bit controls.
			fmt.Fprintf(&b, "\\x%02x", s[i])
		case unprintable(r):
			q := strconv.QuoteRune(r) // '\x1b', '\n', '\u202e'
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// Lines is String line by line: the newlines of a message of several
// lines are kept.
func Lines(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = String(l)
	}
	return strings.Join(lines, "\n")
}

func unprintable(r rune) bool {
	return unicode.Is(unicode.Cc, r) || unicode.Is(unicode.Bidi_Control, r) || r == utf8.RuneError
}
