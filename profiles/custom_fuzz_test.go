package profiles

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/safe-run/safe-run/manifest"
)

// FuzzCustom feeds the custom profile loader arbitrary JSON, seeded with
// every profile under testdata, good and bad. What it refuses is a list
// of FieldErrors placed within the file; what it loads is a filter runc
// takes (known actions, named calls, argument indexes 0-5), and loading
// twice gives the same filter. make fuzz runs it for 15s; longer by hand:
//
//	go test ./profiles -run '^$' -fuzz FuzzCustom -fuzztime 10m
func FuzzCustom(f *testing.F) {
	err := filepath.WalkDir("testdata", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".json") {
			return err
		}
		data, err := os.ReadFile(p)
		if err == nil {
			f.Add(data)
		}
		return err
	})
	if err != nil {
		f.Fatal(err)
	}
	actions := actionWords()
	f.Fuzz(func(t *testing.T, data []byte) {
		// Both targets, and capabilities that turn conditions on.
		goarch, caps := "amd64", []string{"CAP_NET_BIND_SERVICE"}
		if len(data)%2 == 1 {
			goarch, caps = "arm64", []string{"CAP_SYS_ADMIN", "CAP_SYS_PTRACE"}
		}
		tg, err := lookupTarget(goarch)
		if err != nil {
			t.Fatal(err)
		}
		s, err := parseCustom("fuzz.json", data, tg, caps, "6.1.0")
		if err != nil {
			checkProfileErrors(t, err, bytes.Count(data, []byte("\n"))+1)
			return
		}
		if !slices.Contains(actions, string(s.DefaultAction)) || s.DefaultAction == specs.ActNotify {
			t.Errorf("default action %q loaded", s.DefaultAction)
		}
		for i, sc := range s.Syscalls {
			if len(sc.Names) == 0 || !slices.Contains(actions, string(sc.Action)) {
				t.Errorf("syscalls[%d] loaded without names or with action %q: %+v", i, sc.Action, sc)
			}
			for _, a := range sc.Args {
				if a.Index > 5 {
					t.Errorf("syscalls[%d] loaded argument index %d", i, a.Index)
				}
			}
		}
		again, err := parseCustom("fuzz.json", data, tg, caps, "6.1.0")
		if err != nil || !reflect.DeepEqual(s, again) {
			t.Errorf("loaded twice, differently: %v\n%+v\n%+v", err, s, again)
		}
	})
}

// checkProfileErrors: every error is a FieldError of the file, on a line
// within it (or none), with a message.
func checkProfileErrors(t *testing.T, err error, nlines int) {
	fields := manifest.FieldErrors(err)
	if len(fields) == 0 {
		t.Fatalf("error is not a list of FieldErrors: %#v", err)
	}
	for _, fe := range fields {
		if fe.File != "fuzz.json" || fe.Msg == "" || fe.Line < 0 || fe.Line > nlines || fe.Column < 0 {
			t.Errorf("FieldError %+v: want the file, a line in 1..%d and a message", fe, nlines)
		}
	}
}
