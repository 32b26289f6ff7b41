package policy

import (
	"fmt"
	"strings"

	"github.com/safe-run/safe-run/manifest"
)

// SeccompEscapes is SR012 for a custom seccomp profile, which the
// manifest's text cannot judge: the profile's file says what it allows.
// escapes is what the resolved profile lets through that the default
// profile refuses as an escape (profiles.Escapes: a default action that
// allows, unshare, mount, bpf, keyctl...). Such a profile is, for policy,
// no filter at all: refused unless [insecure] allows seccomp_unconfined.
// It returns nil when escapes is empty or acknowledged, and otherwise
// the refusal at security.seccomp, in Enforce's words.
func SeccompEscapes(s *manifest.Service, escapes []string) error {
	r := ruleSeccompUnconfined
	if len(escapes) == 0 || s.Allows(r.Allow) {
		return nil
	}
	// An allow-all profile lets through some 50: the first few say
	// enough.
	list := strings.Join(escapes, ", ")
	const most = 6
	if len(escapes) > most {
		list = fmt.Sprintf("%s and %d more", strings.Join(escapes[:most], ", "), len(escapes)-most)
	}
	// A RefusalError, so that check files it under SR012, not as an unusable path.
	return s.Errorf("security.seccomp", "%w", &RefusalError{Rule: r, What: fmt.Sprintf(
		"the profile %s lets through what the default profile refuses as escapes: %s; it counts as no filter",
		s.Security.Seccomp, list)})
}
