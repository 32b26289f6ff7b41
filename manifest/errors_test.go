package manifest

import (
	"strings"
	"testing"
)

// base loads without error; every case edits it so that exactly the
// problem the case is about appears. Its lines are numbered for the
// expected messages:
//
//	1 version  2 name  4 [image]  5 rootfs  7 [process]  8 command
//	10 [resources]  11 memory  12 cpus; appended text starts at line 13,
//	still in [resources] until it opens a table.
const base = `version = 1
name = "web"

[image]
rootfs = "rootfs"

[process]
command = ["/bin/web"]

[resources]
memory = "256M"
cpus = 0.5
`

// with appends text to base, from line 13.
func with(text string) string { return base + text }

// edit replaces old (which must occur in base) by new.
func edit(old, new string) string {
	if !strings.Contains(base, old) {
		panic("edit: " + old + " is not in base")
	}
	return strings.Replace(base, old, new, 1)
}

// proc adds lines to [process], from line 9.
func proc(lines string) string {
	return edit("command = [\"/bin/web\"]\n", "command = [\"/bin/web\"]\n"+lines)
}

func parseErr(text string) string {
	_, err := Parse("web.toml", "/srv/web", []byte(text))
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestBaseLoads(t *testing.T) {
	if err := parseErr(base); err != "" {
		t.Fatal(err)
	}
}

type errCase struct {
	name, text string
	want       string // every line of the joined error
}

func runErrCases(t *testing.T, cases []errCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := parseErr(tc.text)
			if got != tc.want {
				t.Errorf("got:\n%s\nwant:\n%s\ngot (Go): %q", got, tc.want, got)
			}
		})
	}
}
