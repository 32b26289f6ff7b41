package image

import (
	"bytes"
	"errors"
	"io/fs"
	"log/slog"
	"strings"
	"testing"
)

// A clean-up of the cache that fails is told, not dropped; one with
// nothing left to remove says nothing.
func TestCleanupFailuresAreLogged(t *testing.T) {
	var out bytes.Buffer
	c := &cache{dir: t.TempDir(), log: slog.New(slog.NewTextHandler(&out, nil))}
	c.warn("removing a lock", "/x/lock", fs.ErrPermission)
	c.warn("removing a lock", "/x/gone", fs.ErrNotExist)
	c.warn("removing a lock", "/x/ok", nil)
	got := out.String()
	if !strings.Contains(got, "image cache: removing a lock") || !strings.Contains(got, "/x/lock") || !strings.Contains(got, fs.ErrPermission.Error()) {
		t.Errorf("the failed clean-up was not logged:\n%s", got)
	}
	if strings.Contains(got, "/x/gone") || strings.Contains(got, "/x/ok") {
		t.Errorf("a clean-up with nothing to do was logged:\n%s", got)
	}
	(&cache{}).warn("no logger", "/x", errors.New("boom")) // must not panic
}
