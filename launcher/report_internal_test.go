package launcher

import "testing"

// TestShellQuote: the report's command reads as what runs.
func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"nginx":       "nginx",
		"daemon off;": "'daemon off;'",
		"it's":        `'it'\''s'`,
		"":            "''",
		"$(hostname)": "'$(hostname)'",
		"--port=8080": "--port=8080",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}
