package image

import (
	"fmt"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/safe-run/safe-run/policy"
)

// secretNotes warns of secret-looking variables (policy.SecretLooking)
// that the image's config sets or that its build history shows: whoever
// has the image can read them, and a value passed to a build step may
// also sit in that step's layer. Values are never repeated.
func secretNotes(cfg *v1.ConfigFile) []string {
	var notes []string
	// Which history step made which layer: steps marked empty_layer
	// (ENV, LABEL, ...) made none.
	where := func(step int) string {
		n := 0
		for i, h := range cfg.History[:step+1] {
			if !h.EmptyLayer {
				n++
			}
			if i == step && !h.EmptyLayer && n <= len(cfg.RootFS.DiffIDs) {
				return fmt.Sprintf("history step %d, layer %d %s", step+1, n, cfg.RootFS.DiffIDs[n-1])
			}
		}
		return fmt.Sprintf("history step %d, no layer of its own", step+1)
	}
	stepSetting := func(key string) int {
		for i, h := range cfg.History {
			if slices.Contains(assignedNames(h.CreatedBy), key) {
				return i
			}
		}
		return -1
	}
	warned := map[string]bool{}
	for _, kv := range cfg.Config.Env {
		key, _, _ := strings.Cut(kv, "=")
		if !policy.SecretLooking(key) || warned[key] {
			continue
		}
		warned[key] = true
		from := ""
		if i := stepSetting(key); i >= 0 {
			from = " (set by " + where(i) + ")"
		}
		notes = append(notes, fmt.Sprintf("the image's config sets %s, which looks like a secret%s: anyone with the image can read it (pass secrets through [secrets])", key, from))
	}
	for i, h := range cfg.History {
		for _, key := range assignedNames(h.CreatedBy) {
			if !policy.SecretLooking(key) || warned[key] {
				continue
			}
			warned[key] = true
			notes = append(notes, fmt.Sprintf("the image was built with %s=... (%s), which looks like a secret: its value stays in the image's history and may be in the layer", key, where(i)))
		}
	}
	return notes
}

// assignedNames returns the NAME of every NAME=value in a history step's
// created_by ("ENV A=1", "|2 TOKEN=x B=y /bin/sh -c ...", "ARG KEY=...").
func assignedNames(s string) []string {
	var out []string
	for i := 0; i < len(s); i++ {
		if s[i] != '=' {
			continue
		}
		j := i
		for j > 0 && isNameByte(s[j-1]) {
			j--
		}
		if j < i && (j == 0 || !isNameByte(s[j-1])) && !(s[j] >= '0' && s[j] <= '9') {
			if name := s[j:i]; !slices.Contains(out, name) {
				out = append(out, name)
			}
		}
	}
	return out
}

func isNameByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
